/* Integration: seed 002's repository-sync jobs and full sync through a real nats-server and a
 * running worker. A priority change (a workspace event, `priority set`, `priority sync`) queues a
 * capture/repository.sync that the worker's relay publishes on the tier of the new priority, with
 * the score and the reasons in the envelope; the workspace/priorities.sync event runs the sync
 * workflow; a sync held by another process (a lease row) is not run twice. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec/catalogue.h"
#include "codec/codec.h"
#include "support/itest.h"

#define RUN_MS 20000
#define WAIT_MS 20000

static void run_ok(tb_h_t *h, const char *expect, const char *cmd, const char *a1, const char *a2,
                   const char *a3, const char *a4) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, cmd, a1, a2, a3, a4, NULL);
  tb_assert_exit(r, 0);
  if (expect) tb_assert_contains(r.out, expect);
  tb_h_result_free(&r);
}

/* Jobs of |repo| processed on |tier| so far. */
static int64_t jobs_on(tb_h_t *h, const char *tier, const char *repo, int64_t want) {
  return tb_h_wait_sql(h, want, WAIT_MS,
                       "SELECT count(*) FROM activity_log WHERE "
                       "event_type='capture/repository.sync' AND tier='%s' AND key='%s'",
                       tier, repo);
}

/* The envelope of the last message on |stream|: type, priority score and metadata, as
 * "type score k=v,k=v". */
static void last_envelope(tb_h_t *h, const tb_catalogue_t *cat, const char *stream, char *buf,
                          size_t cap) {
  int64_t n = tb_h_stream_msgs(h, stream);
  assert_true(n >= 1);
  natsMsg *m = tb_h_stream_get(h, stream, (uint64_t)n);
  assert_non_null(m);
  tb_decoded_t d;
  assert_int_equal(tb_codec_decode(cat, (const uint8_t *)natsMsg_GetData(m),
                                   (size_t)natsMsg_GetDataLength(m), &d),
                   TB_OK);
  size_t used = (size_t)snprintf(buf, cap, "%s %d ", d.env->type, d.env->priority_score);
  for (size_t k = 0; k < d.env->n_metadata && used < cap; k++)
    used += (size_t)snprintf(buf + used, cap - used, "%s%s=%s", k ? "," : "",
                             d.env->metadata[k]->key, d.env->metadata[k]->value);
  tb_decoded_free(&d);
  natsMsg_Destroy(m);
}

static void exec_db(tb_h_t *h, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(h->db, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) fail_msg("%s: %s", sql, err);
  sqlite3_close(db);
}

static void test_jobs_on_their_tiers_and_the_sync(void **state) {
  tb_h_t *h = *state;
  tb_catalogue_t *cat = NULL;
  assert_int_equal(tb_catalogue_load(&cat), TB_OK);
  tb_h_result_t r;
  tb_h_child_t worker;
  tb_assert_ok(tb_h_server_start(h));
  run_ok(h, NULL, "init", NULL, NULL, NULL, NULL);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  char env[512];

  /* added to a workspace: high, its job on the high tier with score 100 */
  run_ok(h, "seq=1", "publish", "WORKSPACE_REPO_ADDED", "--json",
         "{\"workspace_id\": \"w1\", \"repository_id\": \"rA\"}", NULL);
  assert_int_equal(jobs_on(h, "high", "rA", 1), 1);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_WORKSPACE"), 2);
  assert_int_equal(tb_h_tier_msgs(h, "high"), 2);
  last_envelope(h, cat, "TB_HIGH_WORKSPACE", env, sizeof(env));
  assert_string_equal(env, "capture/repository.sync 100 repository_priority=high,"
                           "is_workspace_repo=true,workspace_count=1,original_priority=none");

  /* removed from its only workspace: medium, job on normal with score 50 */
  run_ok(h, "seq=3", "publish", "WORKSPACE_REPO_REMOVED", "--json",
         "{\"workspace_id\": \"w1\", \"repository_id\": \"rA\"}", NULL);
  assert_int_equal(jobs_on(h, "normal", "rA", 1), 1);
  last_envelope(h, cat, "TB_NORMAL_WORKSPACE", env, sizeof(env));
  assert_string_equal(env, "capture/repository.sync 50 repository_priority=medium,"
                           "is_workspace_repo=false,workspace_count=0,original_priority=high");

  /* an operator marks another repository low from the CLI (another process): job on low */
  run_ok(h, "rB: low (score 25), override none, marked low yes", "priority", "set", "rB",
         "--mark-low", "--create");
  assert_int_equal(jobs_on(h, "low", "rB", 1), 1);
  last_envelope(h, cat, "TB_LOW_WORKSPACE", env, sizeof(env));
  assert_string_equal(env, "capture/repository.sync 25 repository_priority=low,"
                           "is_workspace_repo=false,workspace_count=0,original_priority=none");

  /* drift: rA stored high while in no workspace; the inversion check sees it, the sync fixes it
   * and queues its job on normal */
  exec_db(h, "UPDATE tracked_repositories SET priority='high', priority_score=100, "
             "is_workspace_repo=1 WHERE repository_id='rA'");
  tb_h_tierbus(h, &r, RUN_MS, "priority", "inversions", "--check", NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.out, "disagree with the rules): 1");
  tb_assert_contains(r.out, "rA");
  tb_assert_contains(r.out, "seed query (is_workspace_repo and not high, overrides included): 0");
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, RUN_MS, "stats", "--json", NULL);
  tb_assert_exit(r, 0);
  json_t *root = json_loads(r.out, 0, NULL);
  assert_non_null(root);
  assert_int_equal(json_integer_value(json_object_get(root, "repository_priority_inversions")), 1);
  json_decref(root);
  tb_h_result_free(&r);

  tb_h_tierbus(h, &r, RUN_MS, "priority", "sync", "--json", NULL);
  tb_assert_exit(r, 0);
  root = json_loads(r.out, 0, NULL);
  assert_non_null(root);
  assert_int_equal(json_integer_value(json_object_get(root, "workspaceRepos")), 0);
  assert_int_equal(json_integer_value(json_object_get(root, "trackedOnlyRepos")), 2);
  assert_int_equal(json_integer_value(json_object_get(root, "priorityChanges")), 1);
  assert_int_equal(json_array_size(json_object_get(root, "errors")), 0);
  json_decref(root);
  tb_h_result_free(&r);
  assert_int_equal(jobs_on(h, "normal", "rA", 2), 2);
  run_ok(h, "disagree with the rules): 0", "priority", "inversions", "--check", NULL, NULL);
  run_ok(h, "priority sync: in no workspace; stored high/100", "priority", "show", "rA", NULL,
         NULL);

  /* the event runs the sync workflow on the worker */
  exec_db(h, "UPDATE tracked_repositories SET priority='low', priority_score=25 "
             "WHERE repository_id='rA'");
  run_ok(h, NULL, "publish", "workspace/priorities.sync", "--json", "{\"reason\": \"cron\"}", NULL);
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM priority_sync_runs WHERE trigger='cron' "
                                 "AND status='completed' AND priority_changes=1"),
                   1);
  assert_int_equal(jobs_on(h, "normal", "rA", 3), 3);
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflows WHERE "
                                 "name='workspace.priority-sync' AND status='completed'"),
                   1);

  /* another process holds the lease: the CLI does not run (exit 3), nor does the workflow */
  exec_db(h, "INSERT INTO job_leases(name, owner, acquired_us, expires_us) VALUES("
             "'workspace-priority-sync', 'elsewhere', 0, 9000000000000000)");
  tb_h_tierbus(h, &r, RUN_MS, "priority", "sync", NULL);
  tb_assert_exit(r, 3);
  tb_assert_contains(r.err, "not run: priority sync already running (held by elsewhere");
  tb_h_result_free(&r);
  run_ok(h, NULL, "publish", "workspace/priorities.sync", "--json", "{\"reason\": \"manual\"}",
         NULL);
  assert_int_equal(tb_h_wait_sql(h, 2, WAIT_MS,
                                 "SELECT count(*) FROM workflows WHERE "
                                 "name='workspace.priority-sync' AND status='completed'"),
                   2);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflows WHERE "
                                   "name='workspace.priority-sync' AND data LIKE "
                                   "'%%already running%%elsewhere%%'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM priority_sync_runs"), 2);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);

  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
  tb_catalogue_destroy(cat);
}

/* Two `tierbus priority sync` processes started together on a table large enough that their
 * syncs would overlap: one runs, the other is refused with exit 3, and the changes are written
 * once. Process start-up alone is no line-up (under ASan, with another test on the other core,
 * one process once finished before the other asked), so the test holds the write lock while
 * both start: both then wait to take the lease, the winner takes it when the test lets go, and
 * the loser reads it between its short waits for the lock and is refused. */
static void test_two_processes_one_sync(void **state) {
  tb_h_t *h = *state;
  tb_assert_ok(tb_h_server_start(h));
  run_ok(h, NULL, "init", NULL, NULL, NULL, NULL);
  run_ok(h, NULL, "stats", NULL, NULL, NULL, NULL); /* creates the database */
  /* 60k tracked repositories still at the default, 30% of them in a workspace: the backfill
   * takes many batches, far longer than the loser's 50 ms waits for the lock. */
  exec_db(h, "BEGIN;"
             "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < 60000) "
             "INSERT INTO tracked_repositories(repository_id, updated_at) "
             "SELECT printf('repo-%06d', i), 0 FROM k;"
             "INSERT INTO workspace_repositories(workspace_id, repository_id, added_at) "
             "SELECT printf('ws-%03d', rowid % 500), repository_id, 0 FROM tracked_repositories "
             "WHERE rowid % 10 < 3;"
             "COMMIT;");
  sqlite3 *gate = NULL;
  assert_int_equal(sqlite3_open(h->db, &gate), SQLITE_OK);
  assert_int_equal(sqlite3_exec(gate, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  tb_h_child_t a, b;
  tb_assert_ok(tb_h_spawn(h, &a, "sync-a", "priority", "sync", "--json", NULL));
  tb_assert_ok(tb_h_spawn(h, &b, "sync-b", "priority", "sync", "--json", NULL));
  tb_h_sleep_ms(1500); /* both reach the lease; the stores' busy timeout is 5 s */
  assert_int_equal(sqlite3_exec(gate, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(gate);
  int sa = tb_h_child_wait(&a, 100000), sb = tb_h_child_wait(&b, 100000);
  int64_t runs = tb_h_sql_int(h, "SELECT count(*) FROM priority_sync_runs");
  print_message("exit statuses: %d and %d, %lld sync run(s)\n", sa, sb, (long long)runs);
  if (runs == 1) {
    assert_true((sa == 0 && sb == 3) || (sa == 3 && sb == 0));
  } else {
    /* One process was so late that the other had finished: two runs are then right, but only
     * one after the other, and the second finds nothing to change. */
    assert_int_equal(runs, 2);
    assert_true(sa == 0 && sb == 0);
    assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM priority_sync_runs r1, "
                                     "priority_sync_runs r2 WHERE r1.id < r2.id AND "
                                     "r2.started_us < r1.finished_us"),
                     0);
  }
  assert_int_equal(tb_h_sql_int(h, "SELECT sum(priority_changes) FROM priority_sync_runs"), 18000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM tracked_repositories "
                                   "WHERE priority='high' AND is_workspace_repo=1"),
                   18000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM priority_audit"), 18000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM job_leases"), 0);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_jobs_on_their_tiers_and_the_sync, tb_h_setup,
                                      tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_two_processes_one_sync, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
