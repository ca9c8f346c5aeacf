/* `tierbus stats`, `tierbus config` and `tierbus events`: read-only views. Stats joins the
 * JetStream consumer figures (pending, in flight) with the counters and latency histograms that
 * every worker process writes to the shared SQLite file. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/hist.h"
#include "core/status.h"
#include "core/util.h"
#include "store/escalation.h"
#include "store/repo.h"

/* Adds one rule's escalation count to a JSON object. */
static int add_count(void *arg, const char *rule, int64_t n) {
  return json_object_set_new(arg, rule, json_integer((json_int_t)n)) != 0;
}

/* Adds one command service's circuit breaker (seed 000) to a JSON array. */
static int add_breaker(void *arg, const tb_breaker_t *b) {
  int64_t now = tb_wall_us();
  json_t *v = json_pack("{s:s,s:s,s:i,s:I,s:I,s:i,s:I,s:s}", "service", b->service, "state",
                        b->open_until_us > now ? "open" : "closed", "failures", b->failures,
                        "open_until_us", (json_int_t)b->open_until_us, "opened_us",
                        (json_int_t)b->opened_us, "trips", b->trips, "held", (json_int_t)b->held,
                        "last_error", b->last_error);
  return v == NULL || json_array_append_new(arg, v) != 0;
}

static json_t *hist_json(const tb_hist_t *h) {
  return json_pack("{s:I,s:f,s:f,s:f,s:f}", "count", (json_int_t)h->total, "p50_ms",
                   tb_hist_quantile(h, 0.50) / 1000.0, "p95_ms", tb_hist_quantile(h, 0.95) / 1000.0,
                   "p99_ms", tb_hist_quantile(h, 0.99) / 1000.0, "max_ms", h->max / 1000.0);
}

static void stats_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus stats [--json] [--db PATH | --data-dir DIR] [--nats-url URL]\n"
          "                     [--config FILE]\n"
          "Per tier: pending and in flight (from the consumers; n/a when NATS does not answer\n"
          "within 2 s), processed, failed, dead-lettered, inversions, and publish -> start and\n"
          "publish -> commit latency percentiles; then repository priority inversions and\n"
          "escalations per rule. Read-only: a missing database is an error, never created.\n"
          "  --json   the same figures as one JSON object\n"
          "examples:\n"
          "  tierbus stats --data-dir var\n"
          "  tierbus stats --json | jq '.tiers[] | {tier, pending}'\n");
}

int tb_cmd_stats(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus stats"};
  int as_json = 0;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == 'j')
      as_json = 1;
    else if (c == 'h')
      return stats_usage(stdout), TB_EXIT_OK;
    else
      return stats_usage(stderr), TB_EXIT_USAGE;
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  cli.cfg.nats_connect_timeout_ms = 2000; /* stats should answer quickly; figures stay partial */
  int have_nats = tb_cli_connect(&cli) == TB_EXIT_OK;
  rc = tb_cli_open_store(&cli);
  if (rc != TB_EXIT_OK) {
    tb_cli_close(&cli);
    return rc;
  }
  json_t *tiers = json_array();
  static const char *const headers[] = {"TIER",
                                        ">PENDING",
                                        ">IN FLIGHT",
                                        ">PROCESSED",
                                        ">FAILED",
                                        ">DEAD",
                                        ">INV",
                                        ">START P50/P95/P99 MS",
                                        ">COMMIT P50/P95/P99 MS"};
  tb_cli_table_t *table = tb_cli_table_new(9, headers);
  for (int i = 0; i < cli.cfg.n_tiers && rc == TB_EXIT_OK; i++) {
    const char *name = cli.cfg.tiers[i].name;
    static tb_store_tier_stats_t s;
    tb_status st = tb_store_tier_stats(cli.store, name, &s);
    if (st != TB_OK) {
      fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
      rc = TB_EXIT_FAIL;
      break;
    }
    uint64_t pending = 0, ack_pending = 0, redelivered = 0;
    int have_q = have_nats && tb_consumer_pending(cli.bus, &cli.cfg, name, NULL, &pending,
                                                  &ack_pending, &redelivered) == TB_OK;
    json_t *t = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}", "tier", name, "processed",
                          (json_int_t)s.processed, "failed", (json_int_t)s.failed, "dead_lettered",
                          (json_int_t)s.dead, "duplicates", (json_int_t)s.redelivered, "inversions",
                          (json_int_t)s.inversions, "stale", (json_int_t)s.stale,
                          "latency_publish_to_start", hist_json(&s.start),
                          "latency_publish_to_commit", hist_json(&s.commit));
    if (have_q) {
      json_object_set_new(t, "pending", json_integer((json_int_t)pending));
      json_object_set_new(t, "in_flight", json_integer((json_int_t)ack_pending));
      json_object_set_new(t, "redelivered", json_integer((json_int_t)redelivered));
    } else {
      json_object_set_new(t, "pending", json_null());
      json_object_set_new(t, "in_flight", json_null());
    }
    json_array_append_new(tiers, t);
    if (!as_json) {
      char q1[16] = "n/a", q2[16] = "n/a", l1[64], l2[64];
      if (have_q) {
        snprintf(q1, sizeof(q1), "%llu", (unsigned long long)pending);
        snprintf(q2, sizeof(q2), "%llu", (unsigned long long)ack_pending);
      }
      snprintf(l1, sizeof(l1), "%.2f/%.2f/%.2f", tb_hist_quantile(&s.start, .5) / 1000.0,
               tb_hist_quantile(&s.start, .95) / 1000.0, tb_hist_quantile(&s.start, .99) / 1000.0);
      snprintf(l2, sizeof(l2), "%.2f/%.2f/%.2f", tb_hist_quantile(&s.commit, .5) / 1000.0,
               tb_hist_quantile(&s.commit, .95) / 1000.0,
               tb_hist_quantile(&s.commit, .99) / 1000.0);
      char n1[24], n2[24], n3[24], n4[24];
      snprintf(n1, sizeof(n1), "%lld", (long long)s.processed);
      snprintf(n2, sizeof(n2), "%lld", (long long)s.failed);
      snprintf(n3, sizeof(n3), "%lld", (long long)s.dead);
      snprintf(n4, sizeof(n4), "%lld", (long long)s.inversions);
      if (table) tb_cli_table_add(table, name, q1, q2, n1, n2, n3, n4, l1, l2);
    }
  }
  if (rc == TB_EXIT_OK && !as_json &&
      (table == NULL || tb_cli_table_print(table, stdout) != TB_OK)) {
    fprintf(stderr, "%s: error: out of memory\n", cli.prog);
    rc = TB_EXIT_FAIL;
  }
  tb_cli_table_free(table);
  /* Seed 002: repositories whose stored priority disagrees with the rules (target zero). */
  int64_t repo_inversions = 0;
  if (rc == TB_EXIT_OK &&
      tb_store_repo_inversions(cli.store, 0, NULL, NULL, &repo_inversions, NULL) != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  }
  if (rc == TB_EXIT_OK && !as_json)
    printf("repository priority inversions: %lld (tierbus priority inversions)\n",
           (long long)repo_inversions);
  /* Seed 000: escalations per rule, over every run. */
  json_t *esc = json_object();
  if (rc == TB_EXIT_OK && tb_store_escalation_counts(cli.store, add_count, esc) != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  }
  if (rc == TB_EXIT_OK && !as_json) {
    printf("escalations:");
    const char *rule;
    json_t *v;
    json_object_foreach(esc, rule, v) printf(" %s=%lld", rule, (long long)json_integer_value(v));
    printf("%s\n", json_object_size(esc) == 0 ? " none" : "");
  }
  /* Seed 000: each command service's circuit breaker, open or closed. */
  json_t *breakers = json_array();
  if (rc == TB_EXIT_OK && tb_store_breaker_list(cli.store, add_breaker, breakers) != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  }
  if (rc == TB_EXIT_OK && !as_json) {
    printf("circuit breakers:%s\n", json_array_size(breakers) == 0 ? " none" : "");
    size_t i;
    json_t *b;
    json_array_foreach(breakers, i, b) {
      char until[40];
      tb_cli_fmt_time(json_integer_value(json_object_get(b, "open_until_us")), until,
                      sizeof(until));
      int open = strcmp(json_string_value(json_object_get(b, "state")), "open") == 0;
      printf("  %s %s%s%s (trips %lld, held %lld, failures %lld)%s%s\n",
             json_string_value(json_object_get(b, "service")), open ? "OPEN" : "closed",
             open ? " until " : "", open ? until : "",
             (long long)json_integer_value(json_object_get(b, "trips")),
             (long long)json_integer_value(json_object_get(b, "held")),
             (long long)json_integer_value(json_object_get(b, "failures")),
             json_string_length(json_object_get(b, "last_error")) ? "; last: " : "",
             json_string_value(json_object_get(b, "last_error")));
    }
  }
  if (rc == TB_EXIT_OK && as_json) {
    json_t *root =
        json_pack("{s:o,s:o,s:b,s:s,s:I,s:O}", "tiers", tiers, "escalations", esc, "nats_reachable",
                  have_nats, "db", cli.cfg.db_path, "repository_priority_inversions",
                  (json_int_t)repo_inversions, "circuit_breakers", breakers);
    esc = NULL;
    json_dumpf(root, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(root);
  } else {
    json_decref(tiers);
  }
  json_decref(esc);
  json_decref(breakers);
  if (rc == TB_EXIT_OK && !as_json && !have_nats)
    printf("(NATS not reachable at %s: pending and in-flight unknown)\n", cli.cfg.nats_url);
  tb_cli_close(&cli);
  return rc;
}

static void config_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus config [check] [--config FILE] [--set KEY=VALUE ...]\n"
          "       tierbus config example\n"
          "check (the default) loads the config file (--config, TIERBUS_CONFIG, else\n"
          "config/tierbus.yaml), the environment and the flags, validates them and says which\n"
          "file it read; a bad value exits 2 naming the file, line and key. example prints\n"
          "every option with its default, bounds and meaning.\n"
          "examples:\n"
          "  tierbus config check --config /etc/tierbus.yaml\n"
          "  tierbus config check --set max_payload=2097152\n"
          "  tierbus config example > tierbus.yaml\n");
}

/* `config check` and `config example`: the same loading, then a verdict or the example. */
static int config_run(int argc, char **argv, int example) {
  tb_cli_t cli = {.prog = example ? "tierbus config example" : "tierbus config check"};
  static const struct option opts[] = {
      TB_CLI_COMMON_OPTIONS, {"help", no_argument, NULL, 'h'}, {0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'h') return config_usage(stdout), TB_EXIT_OK;
    if (!tb_cli_common_opt(&cli, c, optarg)) return config_usage(stderr), TB_EXIT_USAGE;
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  if (example)
    tb_config_write_example(&cli.cfg, stdout);
  else
    printf("config ok: %s (%d tiers, nats %s, db %s)\n", tb_config_default_path(cli.config_path),
           cli.cfg.n_tiers, cli.cfg.nats_url, cli.cfg.db_path);
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}

static int config_check(int argc, char **argv) {
  return config_run(argc, argv, 0);
}

static int config_example(int argc, char **argv) {
  return config_run(argc, argv, 1);
}

int tb_cmd_config(int argc, char **argv) {
  static const tb_cli_sub_t subs[] = {{"check", config_check}, {"example", config_example}};
  /* `tierbus config [options]` alone is `config check`; --help alone is the command's help. */
  if (tb__cli_sub_visitor == NULL && tb_cli_find_subcommand(argc, argv) == 0 &&
      !tb_cli_wants_help(argc, argv)) {
    char *check_argv[argc + 2];
    check_argv[0] = "check";
    for (int i = 1; i < argc; i++) check_argv[i] = argv[i];
    check_argv[argc] = NULL;
    return config_check(argc, check_argv);
  }
  return tb_cli_run_subcommand("tierbus config", argc, argv, subs, (int)TB_COUNTOF(subs),
                               config_usage);
}

static void events_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus events [--json] [--domain D] [--config FILE]\n"
          "The event catalogue: each event's name, domain, tier (the config's event_tiers, else\n"
          "the catalogue's default), protobuf message and the subject it is published on.\n"
          "  --domain D   only the events of domain D\n"
          "  --json       one JSON array, an object per event\n"
          "examples:\n"
          "  tierbus events --domain crm\n"
          "  tierbus events --json | jq -r '.[].name'\n");
}

int tb_cmd_events(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus events"};
  int as_json = 0;
  const char *domain = NULL;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"json", no_argument, NULL, 'j'},
                                       {"domain", required_argument, NULL, 'd'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "jd:h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == 'j')
      as_json = 1;
    else if (c == 'd')
      domain = optarg;
    else if (c == 'h')
      return events_usage(stdout), TB_EXIT_OK;
    else
      return events_usage(stderr), TB_EXIT_USAGE;
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  if (domain != NULL && tb_config_domain_index(&cli.cfg, domain) < 0) {
    char names[512];
    tb_cli_config_names(&cli.cfg, TB_CLI_DOMAINS, names, sizeof(names));
    rc = tb_cli_usage_error(&cli, "unknown domain '%s' (domains: %s)", domain, names);
    tb_cli_close(&cli);
    return rc;
  }
  static const char *const headers[] = {"EVENT", "DOMAIN", "TIER", "MESSAGE", "SUBJECT"};
  tb_cli_table_t *table = tb_cli_table_new(5, headers);
  json_t *all = json_array();
  for (size_t i = 0; i < tb_catalogue_count(cli.cat); i++) {
    const tb_event_def_t *ev = tb_catalogue_at(cli.cat, i);
    if (domain != NULL && strcmp(ev->domain, domain) != 0) continue;
    const char *tier = tb_config_event_tier(&cli.cfg, ev->name);
    if (tier == NULL) tier = ev->default_tier;
    char subject[256];
    tb_catalogue_subject(ev, tier, NULL, subject, sizeof(subject));
    if (table) tb_cli_table_add(table, ev->name, ev->domain, tier, ev->message, subject);
    json_array_append_new(all,
                          json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", ev->name, "domain", ev->domain,
                                    "tier", tier, "message", ev->message, "subject", subject));
  }
  if (as_json) {
    json_dumpf(all, stdout, JSON_INDENT(2));
    putchar('\n');
  } else if (table == NULL || tb_cli_table_print(table, stdout) != TB_OK) {
    fprintf(stderr, "%s: error: out of memory\n", cli.prog);
    rc = TB_EXIT_FAIL;
  }
  json_decref(all);
  tb_cli_table_free(table);
  tb_cli_close(&cli);
  return rc;
}
