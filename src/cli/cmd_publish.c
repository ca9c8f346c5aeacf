/* `tierbus publish`: one event from --json, or a batch from an NDJSON file published at full speed
 * with async acks. Input is validated whole before anything is sent: a bad line publishes
 * nothing. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/publish.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "core/status.h"
#include "workflows/priority.h"
#include "workflows/wf.h"

static void publish_usage(FILE *out) {
  fprintf(
      out,
      "usage: tierbus publish EVENT --json '{...}' [--priority TIER] [--id ID]\n"
      "                       [--correlation-id C] [--workflow-id W]\n"
      "       tierbus publish --file EVENTS.ndjson\n"
      "Each NDJSON line: {\"type\": EVENT, \"payload\": {...}, \"priority\"?: TIER, \"id\"?: ID,\n"
      "                   \"correlation_id\"?: C, \"workflow_id\"?: W}\n"
      "The batch is checked whole before anything is sent (a bad line publishes nothing);\n"
      "a line whose id the stream already holds is a duplicate: named, and not stored again.\n"
      "examples:\n"
      "  tierbus publish CLIENT_CREATED --json '{\"client_id\": \"c1\"}'\n"
      "  tierbus publish WORKSPACE_REPO_ADDED --json '{\"workspace_id\": \"w1\", "
      "\"repository_id\": \"r1\"}' \\\n"
      "      --priority critical --id evt-1\n"
      "  tierbus publish --file events.ndjson\n"
      "  tierbus events   # every EVENT with its tier\n");
}

/* What the catalogue cannot say and the worker would dead-letter: an execute-workflow naming no
 * registered workflow. NULL when |req| is fine, else the problem (static until the next call). */
static const char *semantic_error(const tb_publish_req_t *req) {
  static char why[320];
  if (req->event == NULL || strcmp(req->event, "execute-workflow") != 0) return NULL;
  json_t *t = json_object_get(req->payload, "workflow_type");
  if (t == NULL) t = json_object_get(req->payload, "workflowType");
  const char *type = json_string_value(t);
  if (type == NULL || type[0] == '\0') return NULL; /* the codec reports it as missing */
  if (tb_wf_find(type) != NULL) return NULL;
  snprintf(why, sizeof(why),
           "execute-workflow: unknown workflow_type '%.200s' (see tierbus workflows list)", type);
  return why;
}

/* Seed 002's lookup before queueing: a capture/repository.sync published without a priority goes
 * to the tier of the repository's priority and carries its priority metadata
 * (tb_repo_route_sync_job), read from the deployment's database when it exists (publish never
 * creates one; without it the job routes as medium). |req| then borrows |rt|. *routed (may be
 * NULL) = 1 when it was routed. TB_EXIT_FAIL after saying why when the database cannot be read. */
static int route_repo_job(tb_cli_t *cli, tb_publish_req_t *req, tb_repo_route_t *rt, int *routed) {
  int r = 0;
  if (routed) *routed = 0;
  if (req->event == NULL || strcmp(req->event, "capture/repository.sync") != 0 || req->tier)
    return TB_EXIT_OK;
  struct stat sb;
  if (cli->store == NULL && stat(cli->cfg.db_path, &sb) == 0) {
    int rc = tb_cli_open_store(cli);
    if (rc != TB_EXIT_OK) return rc;
  }
  if (tb_repo_route_sync_job(cli->store, &cli->cfg, req, rt, &r) != TB_OK) {
    fprintf(stderr, "%s: error: repository priority lookup: %s\n", cli->prog, tb_errdetail());
    return TB_EXIT_FAIL;
  }
  if (routed) *routed = r;
  return TB_EXIT_OK;
}

/* Reads one NDJSON line into a request (tb_publish_req_from_json). The request borrows strings
 * from |line|. */
static int line_to_req(tb_cli_t *cli, const char *file, int lineno, json_t *line,
                       tb_publish_req_t *req) {
  if (tb_publish_req_from_json(line, req, NULL) != TB_OK)
    return tb_cli_usage_error(cli, "%s:%d: %s", file, lineno, tb_errdetail());
  return TB_EXIT_OK;
}

/* Lines named one by one when some were not acknowledged; a count says how many more. */
#define FAILED_SHOWN 10
/* Duplicate lines named one by one (a whole file published again would name every line). */
#define DUPLICATES_SHOWN 100

/* Publishes the |n| prepared lines (their line numbers in |linenos|) and says how it went:
 * TB_EXIT_OK when every one is in the stream, else TB_EXIT_FAIL after printing the counts and
 * the first lines that failed, with why. */
static int publish_prepared(tb_cli_t *cli, const tb_prepared_t *all, const int *linenos, size_t n,
                            const char *path, const char *noun, tb_pub_report_t *rep,
                            double *secs_out) {
  if (n > INT_MAX)
    return tb_cli_usage_error(cli, "%s: more than %d %s in one file", path, INT_MAX, noun);
  tb_pub_item_t *items = calloc(n, sizeof(*items));
  if (items == NULL) return tb_cli_usage_error(cli, "out of memory");
  for (size_t i = 0; i < n; i++) {
    items[i].subject = all[i].subject;
    items[i].msg_id = all[i].id;
    items[i].data = all[i].buf;
    items[i].len = all[i].len;
  }
  tb_pub_retry_t retry;
  tb_pub_retry_init(&retry, &cli->cfg);
  int64_t t0 = tb_mono_us();
  tb_status st = tb_bus_publish_batch(cli->bus, items, (int)n, &retry, rep);
  *secs_out = (double)(tb_mono_us() - t0) / 1e6;
  int rc = TB_EXIT_OK;
  /* A duplicate is not a failure (ids deduplicate, which is what makes a second run safe), but
   * the user who published a line twice should learn which line it was: on stderr, so that
   * stdout stays the summary (publish) or the list of runs (trigger --batch). A line found
   * stored only when it was sent again after a lost ack is this run's own copy, not a duplicate
   * of the user's: the summary counts those apart ("sent again after a lost ack"). */
  long long dups = 0;
  for (size_t i = 0; i < n; i++)
    if (items[i].st == TB_OK && items[i].duplicate && items[i].sends <= 1 &&
        ++dups <= DUPLICATES_SHOWN)
      fprintf(stderr, "%s: %s:%d: duplicate: id %s is already in the stream, not stored again\n",
              cli->prog, path, linenos[i], all[i].id);
  if (dups > DUPLICATES_SHOWN)
    fprintf(stderr, "%s: ... and %lld more duplicate lines\n", cli->prog, dups - DUPLICATES_SHOWN);
  if (st != TB_OK) {
    fprintf(stderr,
            "%s: error: %lld of %zu %s not acknowledged by the stream (one whose ack was "
            "lost may be stored all the same), %lld acknowledged (%lld new, %lld duplicates); "
            "publishing the file again "
            "is safe (ids deduplicate). First failure: %s\n",
            cli->prog, (long long)rep->failed, n, noun, (long long)(rep->stored + rep->duplicates),
            (long long)rep->stored, (long long)rep->duplicates, tb_errdetail());
    int shown = 0;
    for (size_t i = 0; i < n && shown < FAILED_SHOWN; i++)
      if (items[i].st != TB_OK) {
        fprintf(stderr, "%s: %s:%d (id %s) not acknowledged: %s\n", cli->prog, path, linenos[i],
                all[i].id, items[i].err);
        shown++;
      }
    if (rep->failed > shown)
      fprintf(stderr, "%s: ... and %lld more not acknowledged\n", cli->prog,
              (long long)(rep->failed - shown));
    rc = TB_EXIT_FAIL;
  }
  free(items);
  return rc;
}

int tb_cli_publish_ndjson(tb_cli_t *cli, const char *path, tb_cli_ndjson_fn prepare, void *arg,
                          const char *noun, tb_pub_report_t *rep, double *secs_out) {
  memset(rep, 0, sizeof(*rep));
  *secs_out = 0;
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (f == NULL) return tb_cli_usage_error(cli, "cannot read %s: %s", path, strerror(errno));
  size_t cap = 1024, n = 0;
  tb_prepared_t *all = malloc(cap * sizeof(*all));
  int *linenos = malloc(cap * sizeof(*linenos)); /* for naming a line that was not published */
  char *line = NULL;
  size_t linecap = 0;
  int lineno = 0, rc = TB_EXIT_OK;
  while (rc == TB_EXIT_OK && all != NULL && linenos != NULL && getline(&line, &linecap, f) > 0) {
    lineno++;
    if (line[strspn(line, " \t\r\n")] == '\0') continue; /* blank lines are allowed */
    json_error_t jerr;
    json_t *obj = json_loads(line, 0, &jerr);
    if (obj == NULL) {
      rc = tb_cli_usage_error(cli, "%s:%d: bad JSON at column %d: %s", path, lineno, jerr.column,
                              jerr.text);
      break;
    }
    if (n == cap) {
      tb_prepared_t *grown = realloc(all, cap * 2 * sizeof(*all));
      if (grown != NULL) all = grown;
      int *grown_nos = grown ? realloc(linenos, cap * 2 * sizeof(*linenos)) : NULL;
      if (grown_nos == NULL) {
        json_decref(obj);
        rc = tb_cli_usage_error(cli, "out of memory at line %d", lineno);
        break;
      }
      linenos = grown_nos;
      cap *= 2;
    }
    rc = prepare(cli, arg, path, lineno, obj, &all[n]);
    if (rc == TB_EXIT_OK) linenos[n++] = lineno;
    json_decref(obj);
  }
  free(line);
  if (f != stdin) fclose(f);
  if (all == NULL || linenos == NULL) rc = tb_cli_usage_error(cli, "out of memory");
  if (rc == TB_EXIT_OK && n == 0) rc = tb_cli_usage_error(cli, "%s: no %s", path, noun);
  if (rc == TB_EXIT_OK) rc = tb_cli_connect(cli);
  if (rc == TB_EXIT_OK) rc = publish_prepared(cli, all, linenos, n, path, noun, rep, secs_out);
  for (size_t i = 0; i < n; i++) tb_prepared_free(&all[i]);
  free(all);
  free(linenos);
  return rc;
}

/* tb_cli_ndjson_fn of `publish --file`: one event per line. */
static int prepare_event(tb_cli_t *cli, void *arg, const char *file, int lineno, json_t *obj,
                         tb_prepared_t *out) {
  (void)arg;
  tb_publish_req_t req;
  tb_repo_route_t rt;
  int rc = line_to_req(cli, file, lineno, obj, &req);
  if (rc == TB_EXIT_OK) rc = route_repo_job(cli, &req, &rt, NULL);
  if (rc != TB_EXIT_OK) return rc;
  if (tb_publish_prepare(&cli->cfg, cli->cat, &req, out) != TB_OK)
    return tb_cli_usage_error(cli, "%s:%d: %s", file, lineno, tb_errdetail());
  const char *why = semantic_error(&req);
  if (why != NULL) {
    tb_prepared_free(out);
    return tb_cli_usage_error(cli, "%s:%d: %s", file, lineno, why);
  }
  return TB_EXIT_OK;
}

static int publish_file(tb_cli_t *cli, const char *path) {
  tb_pub_report_t rep;
  double secs = 0;
  int rc = tb_cli_publish_ndjson(cli, path, prepare_event, NULL, "events", &rep, &secs);
  if (rc != TB_EXIT_OK) return rc;
  long long n = (long long)(rep.stored + rep.duplicates);
  /* The format is read by scripts and tests: the duplicate lines are named on stderr. */
  printf("published %lld events in %.3f s (%.0f events/s): %lld new, %lld duplicates, 0 failed", n,
         secs, secs > 0 ? (double)n / secs : 0.0, (long long)rep.stored, (long long)rep.duplicates);
  /* Acks lost with a server that went away: say so, and what the resends found. */
  if (rep.resent > 0)
    printf("; %lld sent again after a lost ack (%lld of them already stored), %d rounds",
           (long long)rep.resent, (long long)rep.resent_duplicates, rep.rounds);
  printf("\n");
  return rc;
}

int tb_cmd_publish(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus publish"};
  const char *json = NULL, *file = NULL;
  tb_publish_req_t req = {0};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"json", required_argument, NULL, 'j'},
                                       {"file", required_argument, NULL, 'f'},
                                       {"priority", required_argument, NULL, 'p'},
                                       {"id", required_argument, NULL, 'i'},
                                       {"correlation-id", required_argument, NULL, 'c'},
                                       {"workflow-id", required_argument, NULL, 'w'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "j:f:p:i:c:w:h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case 'j':
      json = optarg;
      break;
    case 'f':
      file = optarg;
      break;
    case 'p':
      req.tier = optarg;
      break;
    case 'i':
      req.id = optarg;
      break;
    case 'c':
      req.correlation_id = optarg;
      break;
    case 'w':
      req.workflow_id = optarg;
      break;
    case 'h':
      publish_usage(stdout);
      return TB_EXIT_OK;
    default:
      publish_usage(stderr);
      return TB_EXIT_USAGE;
    }
  }
  if (file != NULL) {
    if (json || req.tier || req.id || req.correlation_id || req.workflow_id || optind < argc)
      return tb_cli_usage_error(
          &cli, "--file takes no EVENT, --json or per-event options (put them in the file)");
  } else {
    if (optind >= argc) return publish_usage(stderr), TB_EXIT_USAGE;
    if (json == NULL) return tb_cli_usage_error(&cli, "--json '{...}' is required");
    if (optind + 1 < argc)
      return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind + 1]);
    req.event = argv[optind];
  }
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  if (file != NULL) {
    rc = publish_file(&cli, file);
    tb_cli_close(&cli);
    return rc;
  }

  json_error_t jerr;
  json_t *payload = json_loads(json, 0, &jerr);
  tb_prepared_t p;
  if (payload == NULL) {
    rc = tb_cli_usage_error(&cli, "--json: bad JSON at column %d: %s", jerr.column, jerr.text);
  } else if (!json_is_object(payload)) {
    rc = tb_cli_usage_error(&cli, "--json: expected a JSON object with the event's fields");
  } else {
    req.payload = payload;
    tb_repo_route_t rt;
    int routed = 0;
    rc = route_repo_job(&cli, &req, &rt, &routed);
    tb_status st = rc == TB_EXIT_OK ? tb_publish_prepare(&cli.cfg, cli.cat, &req, &p) : TB_OK;
    const char *why = rc == TB_EXIT_OK && st == TB_OK ? semantic_error(&req) : NULL;
    if (rc != TB_EXIT_OK) {
      /* the lookup said why */
    } else if (st != TB_OK) {
      rc = tb_cli_usage_error(&cli, "%s", tb_errdetail());
    } else if (why != NULL) {
      tb_prepared_free(&p);
      rc = tb_cli_usage_error(&cli, "%s", why);
    } else {
      rc = tb_cli_connect(&cli);
      uint64_t seq = 0;
      int dup = 0;
      if (rc == TB_EXIT_OK) {
        st = tb_publish_send(cli.bus, &p, &seq, &dup);
        if (st != TB_OK) {
          fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
          rc = TB_EXIT_FAIL;
        } else {
          printf("tier=%s subject=%s seq=%llu id=%s%s", p.tier, p.subject, (unsigned long long)seq,
                 p.id, dup ? " duplicate=true" : "");
          if (routed)
            printf(" repository_priority=%s%s", rt.priority, rt.tracked ? "" : " (not tracked)");
          putchar('\n');
        }
      }
      tb_prepared_free(&p);
    }
  }
  json_decref(payload);
  tb_cli_close(&cli);
  return rc;
}
