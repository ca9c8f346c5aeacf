/* `tierbus dlq`: the dead letters. list and show read the database alone; replay republishes an
 * entry to its tier's subject (the normal path, same envelope id) so that it applies once; purge
 * removes entries and their TB_DLQ copies, only with --yes. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/dlq.h"
#include "cli/cli.h"
#include "codec/codec.h"
#include "core/clock.h"
#include "core/status.h"
#include "core/util.h"
#include "store/dlq.h"

static void dlq_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus dlq list [--reason R] [--tier T] [--since TIME] [--limit N] [--json]\n"
          "       tierbus dlq show ID [--json]\n"
          "       tierbus dlq replay ID|--all|FILTERS [--priority TIER]\n"
          "       tierbus dlq purge ID|--all|FILTERS --yes\n"
          "FILTERS: --reason R, --tier T, --since TIME. ID is an entry's message id or its\n"
          "number (first column of list). TIME is RFC 3339 (2026-01-02T15:04:05Z) or an age\n"
          "(90s, 30m, 2h, 7d). Reasons:\n");
  for (int c = 0; c < TB_DLQ__COUNT; c++)
    fprintf(out, "  %-15s %s%s\n", tb_dlq_class_name((tb_dlq_class)c),
            tb_dlq_class_meaning((tb_dlq_class)c),
            tb_dlq_class_replayable(tb_dlq_class_name((tb_dlq_class)c)) ? "" : " (not replayed)");
  fprintf(out, "examples:\n"
               "  tierbus dlq list --since 2h --tier critical\n"
               "  tierbus dlq show 12 --json\n"
               "  tierbus dlq replay --reason max_deliveries --priority high\n"
               "  tierbus dlq purge --since 30d --yes\n");
}

/* ---------------------------------------------------------------- options */

typedef struct dlq_opts {
  tb_dlq_filter_t f;
  const char *since, *priority, *id;
  int json, all, yes, filtered;
} dlq_opts_t;

/* Parses the subcommand's options; |allowed| names the ones it takes ("rtsljpay", see below) and
 * |want_id| how many positional IDs it takes (0 or 1). Returns TB_EXIT_OK, TB_EXIT_USAGE, or -1
 * after printing help. */
static int parse_opts(tb_cli_t *cli, int argc, char **argv, const char *allowed, int want_id,
                      dlq_opts_t *o) {
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"reason", required_argument, NULL, 'r'},
                                       {"tier", required_argument, NULL, 't'},
                                       {"since", required_argument, NULL, 's'},
                                       {"limit", required_argument, NULL, 'l'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"priority", required_argument, NULL, 'p'},
                                       {"all", no_argument, NULL, 'a'},
                                       {"yes", no_argument, NULL, 'y'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  memset(o, 0, sizeof(*o));
  int c;
  const char *tier = NULL, *reason = NULL;
  long limit = 0;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(cli, c, optarg)) continue;
    if (c == 'h') return dlq_usage(stdout), -1;
    if (c == '?' || strchr(allowed, c) == NULL) {
      if (c != '?')
        return tb_cli_usage_error(cli, "%s does not take %s", argv[0], argv[optind - 1]);
      return dlq_usage(stderr), TB_EXIT_USAGE;
    }
    switch (c) {
    case 'r':
      reason = optarg;
      break;
    case 't':
      tier = optarg;
      break;
    case 's':
      o->since = optarg;
      break;
    case 'l':
      if (tb_cli_parse_long(cli, "--limit", optarg, 1, 1000000000L, &limit) != TB_EXIT_OK)
        return TB_EXIT_USAGE;
      break;
    case 'j':
      o->json = 1;
      break;
    case 'p':
      o->priority = optarg;
      break;
    case 'a':
      o->all = 1;
      break;
    case 'y':
      o->yes = 1;
      break;
    }
  }
  if (optind < argc && want_id) o->id = argv[optind++];
  if (optind < argc) return tb_cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
  if (reason != NULL && tb_dlq_class_parse(reason) < 0) {
    char names[256];
    tb_dlq_class_list(names, sizeof(names));
    return tb_cli_usage_error(cli, "--reason: unknown reason '%s' (%s)", reason, names);
  }
  if (o->since != NULL && tb_time_parse_us(o->since, tb_wall_us(), &o->f.since_us) != TB_OK)
    return tb_cli_usage_error(cli, "--since: %s", tb_errdetail());
  o->f.reason_class = reason;
  o->f.tier = tier;
  o->f.limit = limit;
  o->filtered = reason != NULL || tier != NULL || o->since != NULL;
  return TB_EXIT_OK;
}

/* Loads config and store, then checks --tier and --priority against the config's tiers. */
static int open_checked(tb_cli_t *cli, dlq_opts_t *o) {
  int rc = tb_cli_load(cli);
  const char *bad = NULL, *what = NULL;
  int ti = rc == TB_EXIT_OK && o->f.tier ? tb_config_tier_index(&cli->cfg, o->f.tier) : -1;
  if (rc == TB_EXIT_OK && o->f.tier && ti < 0) bad = o->f.tier, what = "--tier";
  /* The filter compares stored names: an alias ("HIGH", "high-priority") or a job priority
   * number becomes the tier's name. */
  if (ti >= 0) o->f.tier = cli->cfg.tiers[ti].name;
  if (rc == TB_EXIT_OK && o->priority && tb_config_tier_index(&cli->cfg, o->priority) < 0)
    bad = o->priority, what = "--priority";
  if (bad != NULL) {
    char names[256];
    tb_cli_config_names(&cli->cfg, TB_CLI_TIERS, names, sizeof(names));
    return tb_cli_usage_error(cli, "%s: unknown tier '%s' (%s)", what, bad, names);
  }
  if (rc == TB_EXIT_OK) rc = tb_cli_open_store(cli);
  return rc;
}

/* ---------------------------------------------------------------- list / show */

typedef struct list_ctx {
  json_t *arr;           /* --json */
  tb_cli_table_t *table; /* else: printed once every row is in, each column as wide as needed */
  int n;
} list_ctx_t;

static int print_one(void *arg, const tb_dlq_entry_t *e) {
  list_ctx_t *lc = arg;
  lc->n++;
  if (lc->arr != NULL) {
    json_array_append_new(lc->arr, tb_dlq_entry_json(e, 0));
    return 0;
  }
  char at[40], no[24];
  tb_cli_fmt_time(e->at_us, at, sizeof(at));
  snprintf(no, sizeof(no), "%lld", (long long)e->no);
  tb_cli_table_add(lc->table, no, at, e->reason_class, e->tier,
                   e->event_type[0] ? e->event_type : "-", e->msg_id, e->error);
  return 0;
}

static int cmd_list(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus dlq list"};
  dlq_opts_t o;
  int rc = parse_opts(&cli, argc, argv, "rtslj", 0, &o);
  if (rc != TB_EXIT_OK) return rc < 0 ? TB_EXIT_OK : rc;
  rc = open_checked(&cli, &o);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  static const char *const headers[] = {">NO",   "AT (UTC)", "REASON",    "TIER",
                                        "EVENT", "MSG ID",   "LAST ERROR"};
  list_ctx_t lc = {.arr = o.json ? json_array() : NULL, .table = tb_cli_table_new(7, headers)};
  tb_status st = lc.table == NULL ? tb__fail(TB_ERR_NOMEM, "out of memory")
                                  : tb_store_dlq_list(cli.store, &o.f, print_one, &lc);
  if (st == TB_OK && !o.json) st = tb_cli_table_print(lc.table, stdout);
  tb_cli_table_free(lc.table);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  } else if (o.json) {
    json_dumpf(lc.arr, stdout, JSON_INDENT(2));
    printf("\n");
  } else {
    printf("%d entr%s\n", lc.n, lc.n == 1 ? "y" : "ies");
  }
  json_decref(lc.arr);
  tb_cli_close(&cli);
  return rc;
}

/* Prints |len| bytes as JSON when they are an envelope this catalogue decodes, else as hex. */
static void print_body(const tb_catalogue_t *cat, const void *data, size_t len) {
  tb_decoded_t d;
  if (tb_codec_decode(cat, data, len, &d) == TB_OK) {
    json_t *pj = NULL;
    if (tb_codec_payload_to_json(d.payload, &pj) == TB_OK) {
      char *text = json_dumps(pj, JSON_COMPACT);
      printf("envelope    id=%s type=%s tier=%s source=%s\npayload     %s\n", d.env->id,
             d.env->type, d.env->tier, d.env->source, text ? text : "?");
      free(text);
      json_decref(pj);
    }
    tb_decoded_free(&d);
    return;
  }
  printf("body        %zu bytes (not a decodable envelope):", len);
  for (size_t i = 0; i < len && i < 256; i++)
    printf("%s%02x", i % 32 == 0 ? "\n  " : "", ((const unsigned char *)data)[i]);
  printf("%s\n", len > 256 ? "\n  ..." : "");
}

static int cmd_show(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus dlq show"};
  dlq_opts_t o;
  int rc = parse_opts(&cli, argc, argv, "j", 1, &o);
  if (rc != TB_EXIT_OK) return rc < 0 ? TB_EXIT_OK : rc;
  if (o.id == NULL) return tb_cli_usage_error(&cli, "which entry? give its ID (see dlq list)");
  rc = open_checked(&cli, &o);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  tb_dlq_entry_t e;
  int found = 0;
  tb_status st = tb_store_dlq_get(cli.store, o.id, &e, &found);
  if (st != TB_OK || !found) {
    fprintf(stderr, "%s: error: %s\n", cli.prog,
            st != TB_OK ? tb_errdetail() : "no dead letter with that id or number");
    tb_cli_close(&cli);
    return TB_EXIT_FAIL;
  }
  if (o.json) {
    json_t *j = tb_dlq_entry_json(&e, 1);
    char *hex = malloc(2 * e.len + 1);
    for (size_t i = 0; hex != NULL && i < e.len; i++)
      snprintf(hex + 2 * i, 3, "%02x", ((const unsigned char *)e.payload)[i]);
    if (hex != NULL) hex[2 * e.len] = '\0';
    json_object_set_new(j, "payload_hex", hex ? json_string(hex) : json_null());
    free(hex);
    json_dumpf(j, stdout, JSON_INDENT(2));
    printf("\n");
    json_decref(j);
  } else {
    char at[40], rep[40];
    tb_cli_fmt_time(e.at_us, at, sizeof(at));
    tb_cli_fmt_time(e.replayed_us, rep, sizeof(rep));
    printf("no          %lld\nmsg id      %s\nreason      %s\nerror       %s\nevent       %s\n"
           "tier        %s\nsubject     %s\nfrom        %s seq %llu, %llu deliveries\n"
           "dlq copy    seq %llu\nat          %s\nreplays     %lld (last %s)\nheaders     %s\n",
           (long long)e.no, e.msg_id, e.reason_class, e.error, e.event_type[0] ? e.event_type : "-",
           e.tier, e.subject, e.stream, (unsigned long long)e.stream_seq,
           (unsigned long long)e.deliveries, (unsigned long long)e.dlq_seq, at,
           (long long)e.replays, rep, e.headers_json ? e.headers_json : "{}");
    print_body(cli.cat, e.payload, e.len);
  }
  tb_dlq_entry_free(&e);
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}

/* ---------------------------------------------------------------- selection */

/* The entries a replay or purge works on, copied out so that no read stays open while writing. */
typedef struct picked {
  tb_dlq_entry_t *v;
  int n, cap;
} picked_t;

static int pick_one(void *arg, const tb_dlq_entry_t *e) {
  picked_t *p = arg;
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 64;
    tb_dlq_entry_t *v = realloc(p->v, (size_t)cap * sizeof(*v));
    if (v == NULL) return 1;
    p->v = v;
    p->cap = cap;
  }
  /* Only what replay and purge read; the payload is read again per entry. */
  tb_dlq_entry_t *c = &p->v[p->n];
  memset(c, 0, sizeof(*c));
  c->msg_id = strdup(e->msg_id);
  c->dlq_seq = e->dlq_seq;
  if (c->msg_id == NULL) return 1;
  p->n++;
  return 0;
}

static void picked_free(picked_t *p) {
  for (int i = 0; i < p->n; i++) tb_dlq_entry_free(&p->v[i]);
  free(p->v);
}

/* Fills |p| with the entry named by o->id, or every entry matching the filters. TB_EXIT_USAGE
 * when neither an ID, a filter nor --all says which; TB_EXIT_FAIL for an unknown ID. */
static int select_entries(tb_cli_t *cli, const dlq_opts_t *o, picked_t *p) {
  memset(p, 0, sizeof(*p));
  if (o->id != NULL && (o->filtered || o->all))
    return tb_cli_usage_error(cli, "give an ID or filters (--reason, --tier, --since, --all), "
                                   "not both");
  if (o->id == NULL && !o->filtered && !o->all)
    return tb_cli_usage_error(cli, "which entries? give an ID, filters (--reason, --tier, "
                                   "--since) or --all");
  tb_status st;
  if (o->id != NULL) {
    tb_dlq_entry_t e;
    int found = 0;
    st = tb_store_dlq_get(cli->store, o->id, &e, &found);
    if (st == TB_OK && !found) {
      fprintf(stderr, "%s: error: no dead letter with id or number '%s'\n", cli->prog, o->id);
      return TB_EXIT_FAIL;
    }
    if (st == TB_OK) {
      pick_one(p, &e);
      tb_dlq_entry_free(&e);
    }
  } else {
    st = tb_store_dlq_list(cli->store, &o->f, pick_one, p);
  }
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli->prog, tb_errdetail());
    return TB_EXIT_FAIL;
  }
  return TB_EXIT_OK;
}

/* ---------------------------------------------------------------- replay */

typedef struct replay_counts {
  int replayed, applied, skipped, failed;
} replay_counts_t;

/* Replays entry |key| (tb_dlq_replay) and prints what happened to it. */
static void replay_one(tb_cli_t *cli, const dlq_opts_t *o, const char *key, replay_counts_t *c) {
  tb_dlq_replay_result_t r;
  tb_status st = tb_dlq_replay(cli->bus, cli->store, &cli->cfg, key, o->priority, &r);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %.200s: %s\n", cli->prog, r.msg_id ? r.msg_id : key,
            st == TB_ERR_NOT_FOUND ? "purged meanwhile" : tb_errdetail());
    c->failed++;
  } else if (r.outcome == TB_DLQ_SKIPPED) {
    printf("skipped  %-5lld %.80s: %s cannot apply unchanged\n", (long long)r.no, r.msg_id,
           r.reason_class);
    c->skipped++;
  } else if (r.outcome == TB_DLQ_ALREADY_APPLIED) {
    printf("applied  %-5lld %.80s: already applied by an earlier replay\n", (long long)r.no,
           r.msg_id);
    c->applied++;
  } else {
    printf("replayed %-5lld %.80s -> %s (round %lld, seq %llu%s)\n", (long long)r.no, r.msg_id,
           r.subject, (long long)r.round, (unsigned long long)r.seq,
           r.duplicate ? ", already sent" : "");
    c->replayed++;
  }
  tb_dlq_replay_result_clear(&r);
}

static int cmd_replay(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus dlq replay"};
  dlq_opts_t o;
  int rc = parse_opts(&cli, argc, argv, "rtspa", 1, &o);
  if (rc != TB_EXIT_OK) return rc < 0 ? TB_EXIT_OK : rc;
  picked_t p = {0};
  rc = open_checked(&cli, &o);
  if (rc == TB_EXIT_OK) rc = select_entries(&cli, &o, &p);
  if (rc == TB_EXIT_OK && p.n > 0) rc = tb_cli_connect(&cli);
  replay_counts_t c = {0};
  for (int i = 0; rc == TB_EXIT_OK && i < p.n && !tb_cli_stop; i++)
    replay_one(&cli, &o, p.v[i].msg_id, &c);
  if (rc == TB_EXIT_OK) {
    printf("replayed %d, already applied %d, skipped %d, failed %d\n", c.replayed, c.applied,
           c.skipped, c.failed);
    if (c.failed > 0) rc = TB_EXIT_FAIL;
  }
  picked_free(&p);
  tb_cli_close(&cli);
  return rc;
}

/* ---------------------------------------------------------------- purge */

static int cmd_purge(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus dlq purge"};
  dlq_opts_t o;
  int rc = parse_opts(&cli, argc, argv, "rtsay", 1, &o);
  if (rc != TB_EXIT_OK) return rc < 0 ? TB_EXIT_OK : rc;
  if (!o.yes)
    return tb_cli_usage_error(&cli, "purge deletes dead letters for good; add --yes (`dlq list` "
                                    "with the same filters shows what it would delete)");
  picked_t p = {0};
  rc = open_checked(&cli, &o);
  if (rc == TB_EXIT_OK) rc = select_entries(&cli, &o, &p);
  int need_bus = 0;
  for (int i = 0; i < p.n; i++) need_bus |= p.v[i].dlq_seq > 0;
  /* Connect first: an entry is not removed while its TB_DLQ copy cannot be. */
  if (rc == TB_EXIT_OK && need_bus) rc = tb_cli_connect(&cli);
  int purged = 0, failed = 0;
  for (int i = 0; rc == TB_EXIT_OK && i < p.n; i++) {
    tb_status st =
        p.v[i].dlq_seq > 0 ? tb_bus_dlq_delete(cli.bus, &cli.cfg, p.v[i].dlq_seq) : TB_OK;
    int removed = 0;
    if (st == TB_OK) st = tb_store_dlq_delete(cli.store, p.v[i].msg_id, &removed);
    if (st != TB_OK) {
      fprintf(stderr, "%s: error: %.200s: %s\n", cli.prog, p.v[i].msg_id, tb_errdetail());
      failed++;
    }
    purged += removed;
  }
  if (rc == TB_EXIT_OK) {
    printf("purged %d dead letter%s\n", purged, purged == 1 ? "" : "s");
    if (failed > 0) rc = TB_EXIT_FAIL;
  }
  picked_free(&p);
  tb_cli_close(&cli);
  return rc;
}

int tb_cmd_dlq(int argc, char **argv) {
  static const tb_cli_sub_t subs[] = {
      {"list", cmd_list}, {"show", cmd_show}, {"replay", cmd_replay}, {"purge", cmd_purge}};
  return tb_cli_run_subcommand("tierbus dlq", argc, argv, subs, (int)TB_COUNTOF(subs), dlq_usage);
}
