/* `tierbus trigger WORKFLOW --json-input '{...}'` (seed 004): validates everything it can before
 * anything is sent, publishes one execute-workflow event on the run's tier and prints the
 * workflow id; with --wait it then polls the run in SQLite until it finishes. The id is chosen
 * here, not by the worker, so it can be printed (and waited for) before any worker runs it.
 * `trigger --batch F.ndjson` (seed 000's mixed-priority batch) does the same for every line of a
 * file in one call, each run on its own tier, and publishes nothing if any line is bad. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/codec.h"
#include "api/publish.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "core/status.h"
#include "store/workflow.h"
#include "workflows/trigger.h"
#include "workflows/view.h"
#include "workflows/wf.h"

#define POLL_US 50000
#define DEFAULT_WAIT_MS 60000
#define MAX_WAIT_MS (7LL * 24 * 3600 * 1000)

enum { EXIT_WAIT_TIMEOUT = 3 };

static void trigger_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus trigger WORKFLOW [--json-input '{...}'] [--KEY VALUE]...\n"
          "                       [--priority TIER] [--task-queue QUEUE] [--id ID] [--expedite]\n"
          "                       [--wait [--timeout S] | --explain]\n"
          "       tierbus trigger --batch FILE.ndjson [--expedite]\n"
          "Starts a registered workflow (see `tierbus workflows list`) by publishing an\n"
          "execute-workflow event, and prints the new run's id.\n"
          "  --json-input J   the workflow's input, a JSON object (default {}), or seed 000's\n"
          "                   args array ([emailData, {...}]: kept as input.args, and its\n"
          "                   objects' fields become input fields)\n"
          "  --KEY VALUE      any other long option is an input field (dashes become '_';\n"
          "                   VALUE is a number, true, false or null when it parses as one,\n"
          "                   '\"12345\"' is the text 12345, anything else is text):\n"
          "                   trigger ops.send-email --to a@b.c --template welcome\n"
          "  --priority TIER  run on this tier instead of the workflow's default\n"
          "  --task-queue Q   route the run to queue Q: a tier name, or a worker preset from the\n"
          "                   config (the preset's first tier; a tier wins over a preset of the\n"
          "                   same name)\n"
          "  --id ID          the run's id (1 to %d of A-Z a-z 0-9 . _ -); default wf-<random>.\n"
          "                   Triggering an id again does not start a second run.\n"
          "  --expedite       run on the most urgent tier the escalation rules name (seed 000)\n"
          "  --batch FILE     one run per NDJSON line: {\"workflow\": NAME, \"input\"?: {...} or\n"
          "                   \"args\"?: [...],\n"
          "                   \"priority\"?: TIER, \"id\"?: ID, \"expedite\"?: BOOL}; prints\n"
          "                   \"ID TIER WORKFLOW\" per run; a bad line (named by its number)\n"
          "                   publishes nothing\n"
          "WORKFLOW may be seed 000's name (customerSupportMessageWorkflow); TIER and QUEUE\n"
          "take seed 000's task queues (critical-priority, default, ...) in any case.\n"
          "Without --priority/--task-queue the escalation rules raise the workflow's tier\n"
          "(customer_facing, business_impact, expedite); an explicit tier is honoured both\n"
          "ways, except that config's priority_floors keeps a workflow from going lower.\n"
          "  --explain        print the tier, the rule that chose it, and what the rules alone\n"
          "                   would give; publish nothing\n"
          "  --wait           poll the run until it finishes; print its status and result\n"
          "  --timeout S      how long --wait waits: seconds, or a duration (500ms, 2m); "
          "default 60\n"
          "exit status: 0 triggered (with --wait: completed), 1 failed or cancelled (or NATS /\n"
          "database unavailable), 2 bad usage or input (nothing published), 3 --wait timed out\n"
          "or was interrupted (the run goes on).\n"
          "examples:\n"
          "  tierbus trigger subscriber-enrichment --json-input '{\"email\": \"a@b.c\"}' --wait\n"
          "  tierbus trigger ops.customer-support-message --priority critical --id ticket-9\n"
          "  tierbus trigger --batch runs.ndjson\n",
          TB_WF_TRIGGER_ID_MAX);
}

/* ---------------------------------------------------------------- validation */

/* Reports an unknown workflow name with the registered names closest to it (a typo, a missing
 * domain prefix), or all of them when none is close. Returns TB_EXIT_USAGE. */
static int unknown_workflow(tb_cli_t *cli, const char *name) {
  char why[1600];
  tb_wf_unknown_message(name, why, sizeof(why));
  return tb_cli_usage_error(cli, "%s", why);
}

/* Parses --json-input into a new object (*out). On failure prints the JSON error with its line
 * and column, or the type that was given instead of an object, and returns TB_EXIT_USAGE. */
static int parse_input(tb_cli_t *cli, const char *text, json_t **out) {
  json_error_t jerr;
  json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
  if (v == NULL)
    return tb_cli_usage_error(cli, "--json-input: bad JSON at line %d, column %d: %s", jerr.line,
                              jerr.column, jerr.text);
  if (!json_is_object(v) && !json_is_array(v)) {
    int rc = tb_cli_usage_error(cli,
                                "--json-input: expected a JSON object (the workflow's input) or "
                                "an array (seed 000's args), got %s",
                                tb_json_kind(v));
    json_decref(v);
    return rc;
  }
  *out = v;
  return TB_EXIT_OK;
}

/* The command line's names for the inputs that tb_wf_trigger_prepare checks. */
static const tb_wf_trigger_names_t cli_names = {.workflow = "WORKFLOW",
                                                .input = "--json-input",
                                                .priority = "--priority",
                                                .queue = "--task-queue",
                                                .id = "--id"};

/* ---------------------------------------------------------------- --wait */

typedef struct last_ok {
  char step[TB_WF_NAME_MAX];
  char *result; /* JSON text the history recorded for it, or NULL; owned */
} last_ok_t;

/* Remembers the last step attempt that ended "ok" with a result: a bookkeeping step after it
 * (a log line, which records none) does not hide what the run produced. */
static int keep_last_ok(void *arg, const tb_wf_hist_t *h) {
  last_ok_t *lo = arg;
  if (h->status == NULL || strcmp(h->status, "ok") != 0) return 0;
  if (h->result == NULL || strcmp(h->result, "null") == 0) return 0;
  char *copy = h->result ? strdup(h->result) : NULL;
  if (h->result && copy == NULL) return 1;
  free(lo->result);
  lo->result = copy;
  snprintf(lo->step, sizeof(lo->step), "%s", h->name ? h->name : "");
  return 0;
}

/* Prints the finished run's status and its result: data.steps.<last step> (the history says
 * which step ran last) and, when several steps recorded one, all of data.steps; or the error.
 * Returns the exit code for the status. */
static int report(tb_cli_t *cli, const tb_wf_row_t *row) {
  double secs =
      row->finished_us > row->created_us ? (double)(row->finished_us - row->created_us) / 1e6 : 0.0;
  if (strcmp(row->status, "completed") != 0) {
    printf("workflow %s %s at step %s (attempt %d) after %.3f s\n", row->id, row->status,
           tb_wf_step_name(row->name, row->step), row->attempt, secs);
    printf("%s: %s\n", strcmp(row->status, "failed") == 0 ? "error" : "reason",
           row->error ? row->error : "(none recorded)");
    return TB_EXIT_FAIL;
  }
  printf("workflow %s completed in %.3f s\n", row->id, secs);
  last_ok_t lo = {{0}, NULL};
  if (tb_store_wf_history(cli->store, row->id, keep_last_ok, &lo) != TB_OK)
    fprintf(stderr, "%s: warning: cannot read the history of %s: %s\n", cli->prog, row->id,
            tb_errdetail());
  json_t *data = row->data ? json_loads(row->data, 0, NULL) : NULL;
  json_t *steps = json_object_get(data, "steps");
  if (lo.step[0] == '\0') {
    /* No history: the last key of data.steps (jansson keeps insertion order) with a value. */
    const char *key;
    json_t *v;
    json_object_foreach(steps, key, v) {
      if (!json_is_null(v)) snprintf(lo.step, sizeof(lo.step), "%s", key);
    }
  }
  json_t *value = json_object_get(steps, lo.step);
  char *text = value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  if (lo.step[0] == '\0')
    printf("result: null (no step recorded one)\n");
  else
    printf("result (step %s): %s\n", lo.step, text ? text : lo.result ? lo.result : "null");
  free(text);
  /* The last step is often bookkeeping (a log line); every step's result is one line away. */
  char *all = json_object_size(steps) > 1 ? json_dumps(steps, JSON_COMPACT) : NULL;
  if (all) printf("steps: %s\n", all);
  free(all);
  json_decref(data);
  free(lo.result);
  return TB_EXIT_OK;
}

/* Polls run |id| until it finishes or |timeout_ms| passes (or SIGINT/SIGTERM). Returns the exit
 * code: report()'s for a finished run, EXIT_WAIT_TIMEOUT otherwise, TB_EXIT_FAIL when the
 * database fails. */
static int wait_for(tb_cli_t *cli, const char *id, const char *tier, int64_t timeout_ms) {
  int64_t t0 = tb_mono_us(), deadline = t0 + timeout_ms * 1000;
  tb_wf_row_t row;
  int found = 0;
  for (;;) {
    tb_status st = tb_store_wf_get(cli->store, id, &row, &found);
    if (st != TB_OK && st != TB_ERR_BUSY) {
      fprintf(stderr, "%s: error: reading workflow %s: %s\n", cli->prog, id, tb_errdetail());
      return TB_EXIT_FAIL;
    }
    if (st == TB_OK && found && tb_wf_status_final(row.status)) break;
    if (tb_mono_us() >= deadline || tb_cli_stop) {
      const char *why = tb_cli_stop ? "interrupted" : "timed out";
      if (st == TB_OK && found)
        fprintf(stderr,
                "%s: %s after %.3f s: workflow %s is still %s at step %s (attempt %d); it goes "
                "on (tierbus workflows show %s)\n",
                cli->prog, why, (double)(tb_mono_us() - t0) / 1e6, id, row.status,
                tb_wf_step_name(row.name, row.step), row.attempt, id);
      else
        fprintf(stderr,
                "%s: %s: workflow %s has not started: no worker took its execute-workflow event "
                "from tier %s yet (is a worker running on %s with --db %s?)\n",
                cli->prog, why, id, tier, tier, cli->cfg.db_path);
      if (found) tb_store_wf_row_clear(&row);
      return EXIT_WAIT_TIMEOUT;
    }
    if (found) tb_store_wf_row_clear(&row);
    tb_sleep_us(POLL_US);
  }
  int rc = report(cli, &row);
  tb_store_wf_row_clear(&row);
  return rc;
}

/* "90" is seconds (the documented unit); anything else is a duration ("500ms", "2m"). */
static int parse_timeout(tb_cli_t *cli, const char *arg, int64_t *out_ms) {
  int64_t ms = -1;
  char *end = NULL;
  long long secs = strtoll(arg, &end, 10);
  if (*arg != '\0' && *end == '\0')
    ms = secs >= 0 && secs <= MAX_WAIT_MS / 1000 ? secs * 1000 : -1;
  else if (tb_duration_parse_ms(arg, &ms) != TB_OK)
    ms = -1;
  if (ms <= 0 || ms > MAX_WAIT_MS)
    return tb_cli_usage_error(
        cli, "--timeout: expected seconds or a duration from 1ms to 7d, got '%s'", arg);
  *out_ms = ms;
  return TB_EXIT_OK;
}

/* ---------------------------------------------------------------- one run */

/* Everything about one run that can be checked before it is sent, then its execute-workflow
 * event prepared in |out| (tb_wf_trigger_prepare: the tier from |priority| / |queue| / the
 * workflow's default, raised by the escalation rules, so the event itself travels on the run's
 * tier); the run's id goes to |id| (TB_ID_MAX) and its tier to *tier (borrowed from the config).
 * TB_EXIT_USAGE after printing what is wrong; |out| is then untouched. |input| is a JSON
 * object (borrowed). */
static int prepare_run(tb_cli_t *cli, const tb_workflow_def_t *def, const json_t *input,
                       const char *priority, const char *queue, const char *id_arg, int expedite,
                       char *id, const char **tier, tb_prepared_t *out, tb_wf_triggered_t *why) {
  tb_wf_trigger_t t = {.workflow = def->name,
                       .input = input,
                       .priority = priority,
                       .queue = queue,
                       .id = id_arg,
                       .expedite = expedite,
                       .customer_facing = -1,
                       .source = "tierbus-cli",
                       .names = &cli_names};
  tb_wf_triggered_t res;
  if (tb_wf_trigger_prepare(&cli->cfg, cli->cat, &t, &res, out) != TB_OK)
    return tb_cli_usage_error(cli, "%s", tb_errdetail());
  snprintf(id, TB_ID_MAX, "%s", res.id);
  *tier = res.tier;
  if (why != NULL) *why = res;
  return TB_EXIT_OK;
}

/* ---------------------------------------------------------------- --batch */

/* The runs of a batch, for the report printed once all are acknowledged. */
typedef struct batch {
  char (*ids)[TB_ID_MAX];
  const char **tiers, **names;
  size_t n, cap;
  int expedite_all; /* --expedite: every line is expedited */
} batch_t;

/* One batch line (see prepare_line); messages are prefixed by cli->prog, which names the line. */
static int line_run(tb_cli_t *cli, batch_t *b, json_t *line, tb_prepared_t *out) {
  if (!json_is_object(line)) return tb_cli_usage_error(cli, "expected a JSON object");
  const char *name = NULL, *priority = NULL, *id = NULL;
  json_t *input = NULL;
  int expedite = 0;
  const char *key;
  json_t *val;
  json_object_foreach(line, key, val) {
    if (strcmp(key, "workflow") == 0 || strcmp(key, "priority") == 0 || strcmp(key, "id") == 0) {
      if (!json_is_string(val)) return tb_cli_usage_error(cli, "'%s' must be a string", key);
      const char **slot = key[0] == 'p' ? &priority : key[0] == 'i' ? &id : &name;
      *slot = json_string_value(val);
    } else if (strcmp(key, "input") == 0 || strcmp(key, "args") == 0) {
      /* "args": seed 000's mixed-priority batch passes each run's argument array. */
      if (!json_is_object(val) && !json_is_array(val))
        return tb_cli_usage_error(cli, "'%s' must be a JSON object or an array, got %s", key,
                                  tb_json_kind(val));
      if (input != NULL) return tb_cli_usage_error(cli, "give 'input' or 'args', not both");
      input = val;
    } else if (strcmp(key, "expedite") == 0) {
      if (!json_is_boolean(val)) return tb_cli_usage_error(cli, "'expedite' must be true or false");
      expedite = json_is_true(val);
    } else {
      return tb_cli_usage_error(
          cli, "unknown key '%s' (expected workflow, input or args, priority, id, expedite)", key);
    }
  }
  if (name == NULL) return tb_cli_usage_error(cli, "missing 'workflow'");
  const tb_workflow_def_t *def = tb_wf_find(name);
  if (def == NULL) return unknown_workflow(cli, name);
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    char(*ids)[TB_ID_MAX] = realloc(b->ids, cap * sizeof(*ids));
    if (ids != NULL) b->ids = ids;
    const char **tiers = ids ? realloc(b->tiers, cap * sizeof(*tiers)) : NULL;
    if (tiers != NULL) b->tiers = tiers;
    const char **names = tiers ? realloc(b->names, cap * sizeof(*names)) : NULL;
    if (names == NULL) return tb_cli_usage_error(cli, "out of memory");
    b->names = names;
    b->cap = cap;
  }
  int rc = prepare_run(cli, def, input, priority, NULL, id, expedite || b->expedite_all,
                       b->ids[b->n], &b->tiers[b->n], out, NULL);
  if (rc != TB_EXIT_OK) return rc;
  b->names[b->n++] = def->name;
  return TB_EXIT_OK;
}

/* tb_cli_ndjson_fn of `trigger --batch`: one run per line. Every message about the line starts
 * with "tierbus trigger: FILE:LINE:". */
static int prepare_line(tb_cli_t *cli, void *arg, const char *file, int lineno, json_t *line,
                        tb_prepared_t *out) {
  char label[PATH_MAX + 64];
  snprintf(label, sizeof(label), "%s: %s:%d", cli->prog, file, lineno);
  const char *saved = cli->prog;
  cli->prog = label;
  int rc = line_run(cli, arg, line, out);
  cli->prog = saved;
  return rc;
}

static int run_batch(tb_cli_t *cli, const char *path, int expedite_all) {
  batch_t b = {.expedite_all = expedite_all};
  tb_pub_report_t rep;
  double secs = 0;
  int rc = tb_cli_publish_ndjson(cli, path, prepare_line, &b, "workflow runs", &rep, &secs);
  if (rc == TB_EXIT_OK) {
    for (size_t i = 0; i < b.n; i++) printf("%s %s %s\n", b.ids[i], b.tiers[i], b.names[i]);
    fprintf(stderr, "%s: triggered %lld runs in %.3f s\n", cli->prog,
            (long long)(rep.stored + rep.duplicates), secs);
  }
  free(b.ids);
  free(b.tiers);
  free(b.names);
  return rc;
}

/* ---------------------------------------------------------------- --explain */

/* Prints how run |r| would be placed, and sends nothing (seed 000: "implement logging to track
 * priority decisions"): the tier, the rule that chose it, what was asked, what the rules alone
 * give, and the context they saw. */
static void explain(const tb_wf_triggered_t *r, const char *typed, const tb_prepared_t *p) {
  const tb_esc_input_t *c = &r->context;
  printf("workflow   %s", r->def->name);
  if (strcmp(typed, r->def->name) != 0) printf(" (given as %s)", typed);
  printf("\nrun id     %s\n", r->id);
  printf("tier       %s\n", r->tier);
  printf("rule       %s\n", r->rule);
  printf("requested  %s%s%s\n", r->requested_tier ? r->requested_tier : "-",
         r->requested_tier ? " by " : "", r->requested_tier ? r->assigned_by : "");
  printf("automatic  %s\n", r->automatic_tier);
  printf("base       %s (%s)\n", r->base_tier, r->assigned_by);
  printf("escalated  %s\n", r->escalated_by ? r->escalated_by : "-");
  printf("context    customer_facing=%s business_impact=%s failed_retry=%s expedite=%s\n",
         c->customer_facing ? "true" : "false",
         c->business_impact && c->business_impact[0] ? c->business_impact : "-",
         c->failed_retry ? "true" : "false", c->expedite ? "true" : "false");
  printf("subject    %s\n", p->subject);
  printf("(explain: nothing was published)\n");
}

/* ---------------------------------------------------------------- free-form parameters */

/* `trigger NAME --key value` (seed 004): every long option that is not one of |opts| is an input
 * field. Moves them out of argv (which keeps the rest, in order, with *argc updated) into
 * |params| as key -> JSON value: the value as JSON when it parses as a number, true, false,
 * null or a quoted string, else the text. Dashes in the key become underscores (input fields are
 * snake_case). TB_EXIT_USAGE for a parameter without a value or given twice. */
static int take_params(tb_cli_t *cli, int *argc, char **argv, const struct option *opts,
                       json_t *params) {
  int out = 1;
  for (int i = 1; i < *argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) { /* the rest is positional: keep it as it is */
      while (i < *argc) argv[out++] = argv[i++];
      break;
    }
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      argv[out++] = argv[i];
      continue;
    }
    const char *eq = strchr(a + 2, '=');
    size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    const struct option *known = NULL;
    for (const struct option *o = opts; o->name != NULL; o++)
      if (strlen(o->name) == len && strncmp(o->name, a + 2, len) == 0) known = o;
    if (known != NULL) {
      argv[out++] = argv[i];
      if (known->has_arg == required_argument && eq == NULL && i + 1 < *argc)
        argv[out++] = argv[++i];
      continue;
    }
    char key[128];
    if (len == 0 || len >= sizeof(key))
      return tb_cli_usage_error(cli, "'%s': a parameter name is 1 to %zu characters", a,
                                sizeof(key) - 1);
    memcpy(key, a + 2, len);
    key[len] = '\0';
    for (char *k = key; *k; k++)
      if (*k == '-') *k = '_';
    const char *text = eq ? eq + 1 : (i + 1 < *argc ? argv[++i] : NULL);
    if (text == NULL)
      return tb_cli_usage_error(cli, "--%s: a parameter needs a value (--%s VALUE)", key, key);
    if (json_object_get(params, key) != NULL)
      return tb_cli_usage_error(cli, "--%s: given twice", key);
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    /* A quoted JSON string ('"12345"') is the way to pass digits as text. */
    if (v == NULL ||
        !(json_is_number(v) || json_is_boolean(v) || json_is_null(v) || json_is_string(v))) {
      json_decref(v);
      v = json_string(text);
    }
    if (v == NULL || json_object_set_new(params, key, v) != 0)
      return tb_cli_usage_error(cli, "--%s: not a valid UTF-8 value", key);
  }
  *argc = out;
  argv[out] = NULL;
  return TB_EXIT_OK;
}

/* ---------------------------------------------------------------- the command */

int tb_cmd_trigger(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus trigger"};
  const char *input_text = NULL, *priority = NULL, *queue = NULL, *id_arg = NULL;
  const char *timeout_arg = NULL, *batch_file = NULL;
  int wait = 0, expedite = 0, do_explain = 0, rc;
  int64_t timeout_ms = DEFAULT_WAIT_MS;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"json-input", required_argument, NULL, 'j'},
                                       {"priority", required_argument, NULL, 'p'},
                                       {"task-queue", required_argument, NULL, 'q'},
                                       {"id", required_argument, NULL, 'i'},
                                       {"wait", no_argument, NULL, 'w'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"expedite", no_argument, NULL, 'e'},
                                       {"batch", required_argument, NULL, 'b'},
                                       {"explain", no_argument, NULL, 'x'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  json_t *params = json_object();
  if (params == NULL) return tb_cli_usage_error(&cli, "out of memory");
  if ((rc = take_params(&cli, &argc, argv, opts, params)) != TB_EXIT_OK)
    return json_decref(params), rc;
  int c;
  while ((c = getopt_long(argc, argv, "j:p:q:i:wt:eb:h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case 'j':
      input_text = optarg;
      break;
    case 'p':
      priority = optarg;
      break;
    case 'q':
      queue = optarg;
      break;
    case 'i':
      id_arg = optarg;
      break;
    case 'w':
      wait = 1;
      break;
    case 't':
      timeout_arg = optarg;
      break;
    case 'e':
      expedite = 1;
      break;
    case 'b':
      batch_file = optarg;
      break;
    case 'x':
      do_explain = 1;
      break;
    case 'h':
      json_decref(params);
      trigger_usage(stdout);
      return TB_EXIT_OK;
    default:
      json_decref(params);
      trigger_usage(stderr);
      return TB_EXIT_USAGE;
    }
  }
  size_t n_params = json_object_size(params);
  if (batch_file != NULL) {
    /* Each line carries its own workflow, input, priority and id. */
    const char *extra = optind < argc         ? argv[optind]
                        : input_text          ? "--json-input"
                        : priority            ? "--priority"
                        : queue               ? "--task-queue"
                        : id_arg              ? "--id"
                        : wait || timeout_arg ? "--wait"
                        : do_explain          ? "--explain"
                        : n_params            ? "a --KEY VALUE parameter"
                                              : NULL;
    json_decref(params);
    if (extra != NULL)
      return tb_cli_usage_error(&cli,
                                "--batch takes the workflow, input, priority and id from each "
                                "line; '%s' cannot be given with it",
                                extra);
    if ((rc = tb_cli_load(&cli)) != TB_EXIT_OK) return rc;
    rc = run_batch(&cli, batch_file, expedite);
    tb_cli_close(&cli);
    return rc;
  }
  rc = TB_EXIT_OK;
  if (optind >= argc)
    rc = (trigger_usage(stderr), TB_EXIT_USAGE);
  else if (optind + 1 < argc)
    rc = tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind + 1]);
  else if (timeout_arg && !wait)
    rc = tb_cli_usage_error(&cli, "--timeout needs --wait");
  else if (do_explain && wait)
    rc = tb_cli_usage_error(&cli, "--explain starts nothing, so there is nothing to --wait for");
  else if (timeout_arg)
    rc = parse_timeout(&cli, timeout_arg, &timeout_ms);
  if (rc != TB_EXIT_OK) return json_decref(params), rc;

  /* Everything the user typed is checked before the config is read or NATS is touched. */
  const char *name = argv[optind];
  const tb_workflow_def_t *def = tb_wf_find(name);
  if (def == NULL) return json_decref(params), unknown_workflow(&cli, name);
  if (input_text == NULL) input_text = "{}";
  json_t *input = NULL;
  rc = parse_input(&cli, input_text, &input);
  /* --KEY VALUE parameters are fields of the input object; one field given both ways is refused
   * rather than one of them silently winning. */
  const char *key;
  json_t *v;
  json_object_foreach(params, key, v) {
    if (rc != TB_EXIT_OK) break;
    if (!json_is_object(input))
      rc = tb_cli_usage_error(&cli,
                              "--%s: parameters are input fields, but --json-input is an "
                              "array (seed 000's args); give one or the other",
                              key);
    else if (json_object_get(input, key) != NULL)
      rc = tb_cli_usage_error(&cli, "--%s: '%s' is given both in --json-input and as a parameter",
                              key, key);
    else
      json_object_set(input, key, v);
  }
  json_decref(params);
  if (rc != TB_EXIT_OK) return json_decref(input), rc;
  if ((rc = tb_cli_load(&cli)) != TB_EXIT_OK) return json_decref(input), rc;

  const char *tier = NULL;
  char id[TB_ID_MAX];
  tb_prepared_t p;
  tb_wf_triggered_t why;
  int prepared = 0;
  rc = prepare_run(&cli, def, input, priority, queue, id_arg, expedite, id, &tier, &p, &why);
  json_decref(input);
  if (rc == TB_EXIT_OK) prepared = 1;
  if (rc == TB_EXIT_OK && do_explain) {
    explain(&why, name, &p);
    tb_prepared_free(&p);
    tb_cli_close(&cli);
    return TB_EXIT_OK;
  }
  /* An id is one run: a run of another workflow type under the same id would never start (the
   * stream and the store both take the id as already triggered), so say so now. The database is
   * read only when it exists (trigger never creates one); --wait needs it, so it opens it
   * anyway, and a database that cannot be opened fails the command before anything starts. */
  tb_wf_row_t prior;
  int existed = 0;
  if (rc == TB_EXIT_OK && (wait || access(cli.cfg.db_path, F_OK) == 0)) {
    rc = tb_cli_open_store(&cli);
    if (rc == TB_EXIT_OK && tb_store_wf_get(cli.store, id, &prior, &existed) == TB_OK && existed) {
      if (strcmp(prior.name, def->name) != 0)
        rc = tb_cli_usage_error(&cli,
                                "--id %s is already a run of workflow %s (%s); a run id names "
                                "one run, so choose another id",
                                id, prior.name, prior.status);
      else
        fprintf(stderr, "%s: note: workflow %s already exists (%s, %s); not started again\n",
                cli.prog, id, prior.name, prior.status);
      tb_store_wf_row_clear(&prior);
    }
  }
  if (rc == TB_EXIT_OK) rc = tb_cli_connect(&cli);
  if (rc == TB_EXIT_OK) {
    uint64_t seq = 0;
    int dup = 0;
    tb_status st = tb_publish_send(cli.bus, &p, &seq, &dup);
    if (st != TB_OK) {
      fprintf(stderr, "%s: error: publishing execute-workflow for %s: %s\n", cli.prog, id,
              tb_errdetail());
      rc = TB_EXIT_FAIL;
    } else {
      printf("%s\n", id);
      fflush(stdout);
      if (dup && !existed)
        fprintf(stderr,
                "%s: note: %s was already triggered (the stream dropped the duplicate); not "
                "started again\n",
                cli.prog, id);
    }
  }
  if (prepared) tb_prepared_free(&p);
  if (rc == TB_EXIT_OK && wait) {
    tb_cli_trap_signals();
    rc = wait_for(&cli, id, tier, timeout_ms);
  }
  tb_cli_close(&cli);
  return rc;
}
