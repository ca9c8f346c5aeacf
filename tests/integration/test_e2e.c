/* Integration: the whole path from `tierbus publish` through a running worker into SQLite, for
 * seed 002's workspace repository priority and the activity log, plus publisher dedupe by id and
 * the per-tier figures of `tierbus stats --json`. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 20000
#define WAIT_MS 20000

static void publish(tb_h_t *h, const char *event, const char *json, const char *id,
                    const char *expect_out) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", event, "--json", json, "--id", id, "--priority", "high",
               NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, expect_out);
  tb_assert_not_contains(r.out, "duplicate=true");
  tb_h_result_free(&r);
}

/* Asserts the tracked_repositories row of |repo|. */
static void assert_repo(tb_h_t *h, const char *repo, const char *priority, int score, int is_ws,
                        int count) {
  char *p =
      tb_h_sql_text(h, "SELECT priority FROM tracked_repositories WHERE repository_id='%s'", repo);
  assert_non_null(p);
  assert_string_equal(p, priority);
  free(p);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT priority_score FROM tracked_repositories "
                                "WHERE repository_id='%s'",
                                repo),
                   score);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT is_workspace_repo FROM tracked_repositories "
                                "WHERE repository_id='%s'",
                                repo),
                   is_ws);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT workspace_count FROM tracked_repositories "
                                "WHERE repository_id='%s'",
                                repo),
                   count);
}

/* The "processed" figure of |tier| in `stats --json` output, or -1. */
static int64_t stats_processed(json_t *root, const char *tier) {
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(root, "tiers"), i, t) {
    if (strcmp(json_string_value(json_object_get(t, "tier")), tier) == 0)
      return json_integer_value(json_object_get(t, "processed"));
  }
  return -1;
}

static void test_end_to_end(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t worker;
  /* A priority change queues a repository-sync job; here they all go to the low tier, so that the
   * high tier's sequence numbers and counts below are exactly the published events
   * (test_repo_sync checks the jobs' own tiers). */
  tb_assert_ok(tb_h_config_edit(h, "e2e1.yaml", "repo_tier_high: high", "repo_tier_high: low"));
  tb_assert_ok(
      tb_h_config_edit(h, "e2e.yaml", "repo_tier_medium: normal", "repo_tier_medium: low"));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));

  /* The config's event_tiers put the workspace events on high; the repository sync (an event
   * whose handler only logs: a CLIENT_CREATED would start a workflow) is sent there too. */
  publish(h, "WORKSPACE_REPO_ADDED", "{\"workspace_id\": \"ws1\", \"repository_id\": \"r1\"}",
          "add-ws1-r1",
          "tier=high subject=tb.evt.high.workspace.WORKSPACE_REPO_ADDED seq=1 "
          "id=add-ws1-r1");
  publish(h, "WORKSPACE_REPO_ADDED", "{\"workspace_id\": \"ws2\", \"repository_id\": \"r1\"}",
          "add-ws2-r1", "seq=2");
  publish(h, "WORKSPACE_REPO_REMOVED", "{\"workspace_id\": \"ws1\", \"repository_id\": \"r1\"}",
          "rm-ws1-r1", "subject=tb.evt.high.workspace.WORKSPACE_REPO_REMOVED seq=3");
  publish(h, "capture/repository.sync",
          "{\"repository_id\": \"r9\", \"repository_name\": \"Acme/app\"}", "client-c1",
          "subject=tb.evt.high.workspace.repository-sync seq=4");

  assert_int_equal(tb_h_wait_sql(h, 4, WAIT_MS, "SELECT count(*) FROM processed WHERE tier='high'"),
                   4);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE outcome='applied' "
                                   "AND tier='high'"),
                   4);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);

  assert_repo(h, "r1", "high", 100, 1, 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workspace_repositories"), 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workspace_repositories "
                                   "WHERE workspace_id='ws2' AND repository_id='r1'"),
                   1);
  /* The first change made r1 tracked and high; every row of its trail names a message. */
  assert_true(tb_h_sql_int(h, "SELECT count(*) FROM priority_audit WHERE repository_id='r1'") >= 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM priority_audit WHERE repository_id='r1' "
                                   "AND old_priority IS NULL AND new_priority='high' "
                                   "AND msg_id='add-ws1-r1'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM priority_audit WHERE msg_id IS NULL"), 0);

  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE tier='high'"), 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE msg_id='client-c1' AND "
                                   "event_type='capture/repository.sync' AND tier='high'"),
                   1);
  /* The activity handler stores the payload's bytes; `tierbus activity` renders them. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE tier='high' AND "
                                   "payload_json IS NULL AND length(payload) > 0"),
                   1);
  tb_h_tierbus(h, &r, 30000, "activity", "--key", "r9", "--json", NULL);
  tb_assert_exit(r, 0);
  json_t *rows = json_loads(r.out, 0, NULL);
  assert_int_equal(json_array_size(rows), 1);
  json_t *row = json_array_get(rows, 0);
  assert_string_equal(json_string_value(json_object_get(row, "msg_id")), "client-c1");
  assert_string_equal(json_string_value(json_object_get(row, "tier")), "high");
  tb_assert_contains(
      json_string_value(json_object_get(json_object_get(row, "payload"), "repository_name")),
      "Acme");
  json_decref(rows);
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, 30000, "activity", "--event", "capture/repository.sync", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "key r9");
  tb_assert_contains(r.out, "Acme");
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, 30000, "activity", "--event", "NO_SUCH_EVENT", NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown event type 'NO_SUCH_EVENT'");
  tb_h_result_free(&r);

  /* Removed from its last workspace: downgraded to medium, with an audit row saying so. */
  publish(h, "WORKSPACE_REPO_REMOVED", "{\"workspace_id\": \"ws2\", \"repository_id\": \"r1\"}",
          "rm-ws2-r1", "seq=5");
  assert_int_equal(tb_h_wait_sql(h, 5, WAIT_MS, "SELECT count(*) FROM processed WHERE tier='high'"),
                   5);
  assert_repo(h, "r1", "medium", 50, 0, 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workspace_repositories"), 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM priority_audit WHERE repository_id='r1' "
                                   "AND old_priority='high' AND new_priority='medium' "
                                   "AND msg_id='rm-ws2-r1'"),
                   1);

  /* The same id twice: the stream drops the second copy and says so; one effect. */
  publish(h, "capture/repository.sync", "{\"repository_id\": \"c2\"}", "client-dup", "seq=6");
  tb_h_tierbus(h, &r, RUN_MS, "publish", "capture/repository.sync", "--json",
               "{\"repository_id\": \"c2\"}", "--id", "client-dup", "--priority", "high", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "id=client-dup duplicate=true");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_WORKSPACE"), 6);
  assert_int_equal(tb_h_tier_msgs(h, "high"), 6);
  assert_int_equal(tb_h_wait_sql(h, 6, WAIT_MS, "SELECT count(*) FROM processed WHERE tier='high'"),
                   6);
  tb_h_sleep_ms(300); /* a second effect, if any, would land now */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE msg_id='client-dup'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE tier='high'"), 6);

  /* The two priority changes of r1 (tracked high, then medium) each queued one job. */
  assert_int_equal(tb_h_wait_sql(h, 2, WAIT_MS,
                                 "SELECT count(*) FROM processed WHERE tier='low' "
                                 "AND event_type='capture/repository.sync'"),
                   2);

  /* stats --json: per-tier processed counts agree with the processed table. */
  tb_h_tierbus(h, &r, RUN_MS, "stats", "--json", NULL);
  tb_assert_exit(r, 0);
  json_error_t jerr;
  json_t *root = json_loads(r.out, 0, &jerr);
  if (root == NULL) print_error("stats --json: %s\n%s\n", jerr.text, r.out);
  assert_non_null(root);
  assert_true(json_is_true(json_object_get(root, "nats_reachable")));
  assert_int_equal(json_array_size(json_object_get(root, "tiers")), 5);
  assert_int_equal(stats_processed(root, "high"), 6);
  assert_int_equal(stats_processed(root, "critical"), 0);
  assert_int_equal(stats_processed(root, "normal"), 0);
  assert_int_equal(stats_processed(root, "low"), 2);
  assert_int_equal(json_integer_value(json_object_get(root, "repository_priority_inversions")), 0);
  assert_int_equal(stats_processed(root, "background"), 0);
  json_t *high = NULL;
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(root, "tiers"), i, t) {
    if (strcmp(json_string_value(json_object_get(t, "tier")), "high") == 0) high = t;
  }
  assert_non_null(high);
  assert_int_equal(json_integer_value(json_object_get(high, "dead_lettered")), 0);
  assert_int_equal(json_integer_value(json_object_get(high, "inversions")), 0);
  assert_int_equal(json_integer_value(json_object_get(high, "pending")), 0);
  json_decref(root);
  tb_h_result_free(&r);

  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_end_to_end, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
