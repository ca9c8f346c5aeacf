/* Integration: two worker processes share the durable consumers and the SQLite file. Workspace
 * membership changes for the same repository land on either worker in any order, yet the final
 * priorities are those of publish order, every event is applied exactly once, and both workers
 * did part of the work (each reports its own count in its log). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 30000
/* Enough events that both workers' pull requests are served: at 400, a worker sometimes applied
 * only 3 of them, one fetch short of none. */
#define N_R 1000
#define N_S 500
#define EVENTS (3 * N_R + 2 * N_S)

static void add_line(FILE *f, const char *event, const char *ws, const char *repo, int *n) {
  fprintf(f,
          "{\"type\": \"%s\", \"id\": \"e%05d\", \"payload\": {\"workspace_id\": \"%s\", "
          "\"repository_id\": \"%s\"}}\n",
          event, (*n)++, ws, repo);
}

/* Waits until the worker's log shows a progress line, and returns the "high=" count of its
 * latest one (the worker logs its own totals every 10 s), or -1. */
static int64_t reported_high(const tb_h_child_t *c) {
  char *log = tb_h_child_stderr(c);
  int64_t v = -1;
  for (const char *p = strstr(log, "processed:"); p != NULL; p = strstr(p + 1, "processed:")) {
    const char *high = strstr(p, " high=");
    if (high != NULL) v = strtoll(high + 6, NULL, 10);
  }
  free(log);
  return v;
}

static int log_has(const tb_h_child_t *c, const char *text) {
  char *log = tb_h_child_stderr(c);
  int has = strstr(log, text) != NULL;
  free(log);
  return has;
}

static void test_two_workers_share(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t w1, w2;
  char batch[TB_H_PATH], repo[32];
  FILE *f = tb_h_fopen(h, "events.ndjson", batch, sizeof(batch));
  assert_non_null(f);
  int n = 0;
  for (int i = 1; i <= N_R; i++) {
    snprintf(repo, sizeof(repo), "r%d", i);
    add_line(f, "WORKSPACE_REPO_ADDED", "ws1", repo, &n);
    add_line(f, "WORKSPACE_REPO_REMOVED", "ws1", repo, &n);
    add_line(f, "WORKSPACE_REPO_ADDED", "ws2", repo, &n);
  }
  for (int i = 1; i <= N_S; i++) {
    snprintf(repo, sizeof(repo), "s%d-x", i);
    add_line(f, "WORKSPACE_REPO_ADDED", "ws1", repo, &n);
    add_line(f, "WORKSPACE_REPO_REMOVED", "ws1", repo, &n);
  }
  assert_int_equal(fclose(f), 0);
  assert_int_equal(n, EVENTS);

  /* The repository-sync jobs that priority changes queue go to the background tier here, so that
   * the high tier carries exactly the published events. */
  tb_assert_ok(
      tb_h_config_edit(h, "c1.yaml", "repo_tier_high: high", "repo_tier_high: background"));
  tb_assert_ok(
      tb_h_config_edit(h, "c.yaml", "repo_tier_medium: normal", "repo_tier_medium: background"));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_assert_ok(tb_h_spawn(h, &w1, "worker1", "worker", NULL));
  tb_assert_ok(tb_h_spawn(h, &w2, "worker2", "worker", NULL));
  int64_t deadline = tb_h_now_ms() + 15000;
  while (!(log_has(&w1, "worker ready") && log_has(&w2, "worker ready")) && tb_h_child_alive(&w1) &&
         tb_h_child_alive(&w2) && tb_h_now_ms() < deadline)
    tb_h_sleep_ms(20);
  if (!(log_has(&w1, "worker ready") && log_has(&w2, "worker ready"))) {
    tb_h_dump_logs(h, 20);
    fail_msg("the workers did not both start (exit status %d and %d; -1 = running)", w1.status,
             w2.status);
  }

  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", batch, NULL);
  tb_assert_exit(r, 0);
  char published[64];
  snprintf(published, sizeof(published), "published %d events", EVENTS);
  tb_assert_contains(r.out, published);
  tb_h_result_free(&r);

  assert_int_equal(
      tb_h_wait_sql(h, EVENTS, 60000, "SELECT count(*) FROM processed WHERE tier='high'"), EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM processed WHERE "
                                   "tier='high'"),
                   EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE tier NOT IN ('high', "
                                   "'background')"),
                   0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE tier='high'"), EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);

  /* Every r: high (score 100), in one workspace, and that workspace is ws2. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM tracked_repositories"), N_R + N_S);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM tracked_repositories WHERE repository_id "
                                   "GLOB 'r*' AND priority='high' AND priority_score=100 AND "
                                   "is_workspace_repo=1 AND workspace_count=1"),
                   N_R);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workspace_repositories WHERE repository_id "
                                "GLOB 'r*' AND workspace_id='ws2'"),
                   N_R);
  /* Every s-x: medium (score 50), in no workspace. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM tracked_repositories WHERE repository_id "
                                   "GLOB 's*-x' AND priority='medium' AND priority_score=50 AND "
                                   "is_workspace_repo=0 AND workspace_count=0"),
                   N_S);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workspace_repositories"), N_R);

  /* Who did what: each worker logs its own applied count every 10 s. Together they applied each
   * event once, and each applied some. */
  int64_t c1 = -1, c2 = -1;
  deadline = tb_h_now_ms() + 25000;
  while (tb_h_now_ms() < deadline) {
    c1 = reported_high(&w1);
    c2 = reported_high(&w2);
    if (c1 >= 0 && c2 >= 0 && c1 + c2 == EVENTS) break;
    tb_h_sleep_ms(200);
  }
  print_message("worker1 applied %lld, worker2 applied %lld\n", (long long)c1, (long long)c2);
  assert_int_equal(c1 + c2, EVENTS);
  assert_true(c1 > 0);
  assert_true(c2 > 0);

  /* The shared figures add both processes up. */
  tb_h_tierbus(h, &r, RUN_MS, "stats", "--json", NULL);
  tb_assert_exit(r, 0);
  json_t *root = json_loads(r.out, 0, NULL);
  assert_non_null(root);
  json_t *high = json_array_get(json_object_get(root, "tiers"), 1);
  assert_string_equal(json_string_value(json_object_get(high, "tier")), "high");
  assert_int_equal(json_integer_value(json_object_get(high, "processed")), EVENTS);
  json_decref(root);
  tb_h_result_free(&r);

  assert_int_equal(tb_h_child_term(&w1, 20000), 0);
  assert_int_equal(tb_h_child_term(&w2, 20000), 0);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_two_workers_share, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
