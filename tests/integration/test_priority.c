/* Integration: the dispatcher's priority as seen in the processed records. With a critical and a
 * background backlog and no aging, background work waits for the critical backlog (strict
 * priority); with aging on the background tier, background work is lifted and runs before the
 * critical backlog is done (no starvation). The inversion auditor counts zero either way. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 60000
#define STOP_BACKLOG 30000

/* Writes a config with tiers critical and background (concurrency 5 each, the given background
 * aging) and makes it current. capture/repository.sync defaults to normal and its name cannot be
 * an event_tiers key, so a normal tier ranked last holds it; the test's events (of that type,
 * whose handler only logs) name their tier explicitly. */
static void use_config(tb_h_t *h, const char *background_aging) {
  char *event_tiers = tb_h_event_tiers_yaml(h, "critical");
  assert_non_null(event_tiers);
  char yaml[8192];
  int n = snprintf(yaml, sizeof(yaml),
                   "tiers:\n"
                   "  - {name: critical, timeout: 60s, concurrency: 5, aging: 0s}\n"
                   "  - {name: background, timeout: 60s, concurrency: 5, aging: %s}\n"
                   "  - {name: normal, timeout: 60s, concurrency: 1, aging: 0s}\n"
                   "presets:\n"
                   "  all: [critical, background, normal]\n"
                   "%s",
                   background_aging, event_tiers);
  free(event_tiers);
  assert_true(n > 0 && (size_t)n < sizeof(yaml));
  tb_assert_ok(tb_h_use_config(h, "priority.yaml", yaml));
}

/* Server, init, and a backlog of |n_crit| critical and |n_bg| background events published
 * before any worker runs. */
static void preload(tb_h_t *h, int n_crit, int n_bg) {
  tb_h_result_t r;
  char path[TB_H_PATH];
  FILE *f = tb_h_fopen(h, "backlog.ndjson", path, sizeof(path));
  assert_non_null(f);
  for (int i = 0; i < n_bg; i++)
    fprintf(f,
            "{\"type\": \"capture/repository.sync\", \"priority\": \"background\", "
            "\"id\": \"bg-%05d\", \"payload\": {\"repository_id\": \"b%d\"}}\n",
            i, i);
  for (int i = 0; i < n_crit; i++)
    fprintf(f,
            "{\"type\": \"capture/repository.sync\", \"priority\": \"critical\", "
            "\"id\": \"cr-%05d\", \"payload\": {\"repository_id\": \"c%d\"}}\n",
            i, i);
  assert_int_equal(fclose(f), 0);
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_CRITICAL_WORKSPACE"), n_crit);
  assert_int_equal(tb_h_stream_msgs(h, "TB_BACKGROUND_WORKSPACE"), n_bg);
}

/* Runs a worker over the backlog until all |total| are processed, then stops it. */
static void drain(tb_h_t *h, int total) {
  tb_h_child_t worker;
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  assert_int_equal(tb_h_wait_sql(h, total, 60000, "SELECT count(*) FROM processed"), total);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE outcome='applied'"),
                   total);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
}

/* Sum of the per-tier "inversions" of `tierbus stats --json`. */
static int64_t stats_inversions(tb_h_t *h) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "stats", "--json", NULL);
  tb_assert_exit(r, 0);
  json_error_t jerr;
  json_t *root = json_loads(r.out, 0, &jerr);
  if (root == NULL) print_error("stats --json: %s\n%s\n", jerr.text, r.out);
  assert_non_null(root);
  json_t *tiers = json_object_get(root, "tiers");
  assert_int_equal(json_array_size(tiers), 3);
  int64_t sum = 0;
  size_t i;
  json_t *t;
  json_array_foreach(tiers, i, t) {
    json_t *inv = json_object_get(t, "inversions");
    assert_true(json_is_integer(inv));
    sum += json_integer_value(inv);
  }
  json_decref(root);
  tb_h_result_free(&r);
  return sum;
}

static void test_strict_priority(void **state) {
  tb_h_t *h = *state;
  use_config(h, "0s");
  preload(h, 200, 200);
  drain(h, 400);

  int64_t first_crit = tb_h_sql_int(h, "SELECT min(started_us) FROM processed WHERE "
                                       "tier='critical'");
  int64_t last_crit = tb_h_sql_int(h, "SELECT max(started_us) FROM processed WHERE "
                                      "tier='critical'");
  assert_true(first_crit > 0 && last_crit >= first_crit);
  /* No aging configured: every dispatch is by strict priority. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE reason<>'strict' OR "
                                   "boost<>0"),
                   0);
  /* The worker learns of the critical backlog before its first fetch returns, so no background
   * work starts before the last critical one. */
  int64_t before_last = tb_h_sql_int(h,
                                     "SELECT count(*) FROM processed WHERE tier='background' "
                                     "AND started_us < %lld",
                                     (long long)last_crit);
  print_message("background rows started before the last critical: %lld\n", (long long)before_last);
  assert_int_equal(before_last, 0);
  assert_int_equal(stats_inversions(h), 0);
}

static void test_aging_prevents_starvation(void **state) {
  tb_h_t *h = *state;
  use_config(h, "20ms");
  preload(h, 3000, 20);
  drain(h, 3020);

  int64_t last_crit = tb_h_sql_int(h, "SELECT max(started_us) FROM processed WHERE "
                                      "tier='critical'");
  int64_t aged = tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE tier='background' AND "
                                 "reason='aged'");
  int64_t aged_early = tb_h_sql_int(h,
                                    "SELECT count(*) FROM processed WHERE tier='background' AND "
                                    "reason='aged' AND boost>0 AND eff_tier='critical' AND "
                                    "started_us < %lld",
                                    (long long)last_crit);
  print_message("background: %lld aged, %lld of them before the last critical\n", (long long)aged,
                (long long)aged_early);
  assert_true(aged >= 1);
  /* Aging is the only reason with a boost, and a boost always comes with it. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE (reason='aged') <> "
                                   "(boost>0)"),
                   0);
  assert_true(aged_early >= 1);
  /* Critical work never needs lifting: it is the top tier. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE tier='critical' AND "
                                   "boost<>0"),
                   0);
  assert_int_equal(stats_inversions(h), 0);
}

/* A worker stopped in the middle of a critical backlog finishes its open batch and hands every
 * fetched message it has not started back to the stream: it does not spend its stop on the
 * background messages it prefetched, nor count an inversion for them (an earlier build held each
 * for the critical backlog that could no longer reach it, then counted the forced dispatch), and
 * nothing it held waits out an AckWait. */
static void test_stop_mid_backlog(void **state) {
  tb_h_t *h = *state;
  use_config(h, "0s");
  /* A backlog the worker cannot finish between the poll that sees 100 rows and the SIGTERM: at
   * 3,000 events a fast build was done before the signal landed. */
  preload(h, STOP_BACKLOG, 20);
  tb_h_child_t worker;
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  assert_true(tb_h_wait_sql(h, 100, 60000, "SELECT count(*) FROM processed") >= 100);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
  int64_t crit = tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE tier='critical'");
  int64_t bg = tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE tier='background'");
  print_message("stopped after %lld critical and %lld background\n", (long long)crit,
                (long long)bg);
  assert_true(crit < STOP_BACKLOG); /* the stop came during the backlog */
  assert_true(bg <= 5);             /* not the 20 it had fetched */
  assert_int_equal(stats_inversions(h), 0);
  /* What it had not started was given back at once: a new worker finishes the backlog well
   * inside the tiers' 60 s AckWait, which messages merely dropped would have waited out. */
  tb_assert_ok(tb_h_spawn(h, &worker, "worker2", "worker", NULL));
  assert_int_equal(tb_h_wait_sql(h, STOP_BACKLOG + 20, 45000, "SELECT count(*) FROM processed"),
                   STOP_BACKLOG + 20);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_strict_priority, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_aging_prevents_starvation, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_stop_mid_backlog, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
