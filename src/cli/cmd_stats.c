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

int tb_cmd_stats(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus stats"};
  int as_json = 0;
  static const struct option opts[] = {
      TB_CLI_COMMON_OPTIONS, {"json", no_argument, NULL, 'j'}, {0}};
  int c;
  while ((c = getopt_long(argc, argv, "j", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == 'j')
      as_json = 1;
    else
      return TB_EXIT_USAGE;
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
  if (!as_json)
    printf("%-11s %8s %8s %10s %7s %6s %6s  %-26s %-26s\n", "tier", "pending", "inflight",
           "processed", "failed", "dead", "inv", "start p50/p95/p99 ms", "commit p50/p95/p99 ms");
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
      printf("%-11s %8s %8s %10lld %7lld %6lld %6lld  %-26s %-26s\n", name, q1, q2,
             (long long)s.processed, (long long)s.failed, (long long)s.dead,
             (long long)s.inversions, l1, l2);
    }
  }
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

int tb_cmd_config(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus config"};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS, {0}};
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
    if (!tb_cli_common_opt(&cli, c, optarg)) return TB_EXIT_USAGE;
  const char *what = optind < argc ? argv[optind] : "check";
  if (strcmp(what, "check") != 0 && strcmp(what, "example") != 0)
    return tb_cli_usage_error(&cli, "unknown subcommand '%s' (check or example)", what);
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  if (strcmp(what, "example") == 0)
    tb_config_write_example(&cli.cfg, stdout);
  else
    printf("config ok: %s (%d tiers, nats %s, db %s)\n", tb_config_default_path(cli.config_path),
           cli.cfg.n_tiers, cli.cfg.nats_url, cli.cfg.db_path);
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}

int tb_cmd_events(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus events"};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS, {0}};
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
    if (!tb_cli_common_opt(&cli, c, optarg)) return TB_EXIT_USAGE;
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  printf("%-28s %-11s %-11s %-32s %s\n", "event", "domain", "tier", "message", "subject");
  for (size_t i = 0; i < tb_catalogue_count(cli.cat); i++) {
    const tb_event_def_t *ev = tb_catalogue_at(cli.cat, i);
    const char *tier = tb_config_event_tier(&cli.cfg, ev->name);
    char subject[256];
    tb_catalogue_subject(ev, tier ? tier : ev->default_tier, NULL, subject, sizeof(subject));
    printf("%-28s %-11s %-11s %-32s %s\n", ev->name, ev->domain, tier ? tier : ev->default_tier,
           ev->message, subject);
  }
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}
