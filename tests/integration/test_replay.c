/* Integration: replay and rebuild against a real nats-server and real SQLite files. History is
 * made by a worker (workspace membership events, whose repository-sync follow-ups go through the
 * outbox into the log, and capture events that append to the activity log); then replay must
 * have no second effect, --dry-run must change nothing, the filters must select what they say,
 * and a rebuild into an empty file, or into the deleted live file, must reach the live checksum. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/itest.h"

#define RUN_MS 60000
#define ADDS 600
#define CAPTURES 400

/* Events of the history: ADDS workspace additions, a removal of every third, and CAPTURES
 * capture events. Returns how many were published. */
static int publish_history(tb_h_t *h) {
  char path[TB_H_PATH];
  FILE *f = tb_h_fopen(h, "ws.ndjson", path, sizeof(path));
  assert_non_null(f);
  int n = 0;
  for (int i = 0; i < ADDS; i++, n++)
    fprintf(f,
            "{\"type\":\"WORKSPACE_REPO_ADDED\",\"payload\":{\"workspace_id\":\"w%d\","
            "\"repository_id\":\"r%d\"}}\n",
            i % 7, i);
  for (int i = 0; i < ADDS; i += 3, n++)
    fprintf(f,
            "{\"type\":\"WORKSPACE_REPO_REMOVED\",\"payload\":{\"workspace_id\":\"w%d\","
            "\"repository_id\":\"r%d\"}}\n",
            i % 7, i);
  fclose(f);
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  char batch[TB_H_PATH];
  tb_assert_ok(
      tb_h_write_events(h, "cap.ndjson", "cap", 0, CAPTURES, "normal", batch, sizeof(batch)));
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", batch, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  return n + CAPTURES;
}

/* Runs a worker (with the config setting |set|, "KEY=VALUE", unless NULL) until every message in
 * the tier streams is processed (follow-ups included) and the outbox is empty, then stops it.
 * Returns the number of messages in the log. */
static int64_t process_with(tb_h_t *h, const char *set) {
  tb_h_child_t w;
  if (set != NULL)
    tb_assert_ok(tb_h_spawn(h, &w, "worker", "worker", "--set", set, NULL));
  else
    tb_assert_ok(tb_h_spawn(h, &w, "worker", "worker", NULL));
  int64_t msgs = 0, done = 0, outbox = 1;
  tb_h_wait_settled(h, RUN_MS, &msgs, &done, &outbox);
  if (done != msgs) tb_h_dump_logs(h, 20);
  assert_int_equal(done, msgs);
  assert_int_equal(outbox, 0);
  assert_int_equal(tb_h_child_term(&w, 20000), 0);
  return msgs;
}

static int64_t process_all(tb_h_t *h) {
  return process_with(h, NULL);
}

/* `db checksum` of |db| (NULL: the test's database), as a new string. */
static char *checksum(tb_h_t *h, const char *db) {
  tb_h_result_t r;
  if (db)
    tb_h_tierbus(h, &r, RUN_MS, "db", "checksum", "--db", db, NULL);
  else
    tb_h_tierbus(h, &r, RUN_MS, "db", "checksum", NULL);
  tb_assert_exit(r, 0);
  assert_int_equal(strlen(r.out), 33);
  char *sum = strndup(r.out, 32);
  tb_h_result_free(&r);
  return sum;
}

/* Runs `tierbus replay ARGS` (NULL-terminated, at most 8) and checks its exit status. */
static void replay(tb_h_t *h, tb_h_result_t *r, int want, const char *a1, const char *a2,
                   const char *a3, const char *a4, const char *a5, const char *a6) {
  tb_h_tierbus(h, r, RUN_MS, "replay", a1, a2, a3, a4, a5, a6, NULL);
  tb_assert_exit(*r, want);
}

static void exec_sql(tb_h_t *h, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(h->db, &db), SQLITE_OK);
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
    print_error("%s: %s\n", sql, err);
    fail();
  }
  sqlite3_close(db);
}

static void test_replay_idempotent_dry_run(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);
  publish_history(h);
  int64_t msgs = process_all(h);
  char *live = checksum(h, NULL);
  char want[128];

  /* Everything already applied: a replay reads it all and applies nothing. */
  replay(h, &r, 0, NULL, NULL, NULL, NULL, NULL, NULL);
  snprintf(want, sizeof(want), "read %lld, applied 0, skipped as already processed %lld",
           (long long)msgs, (long long)msgs);
  tb_assert_contains(r.out, want);
  tb_h_result_free(&r);
  char *after = checksum(h, NULL);
  assert_string_equal(after, live);
  free(after);

  /* Lose 50 capture events' effects and records (as a restore from an old backup would): the
   * dry run names them and changes nothing; the replay puts them back once; a second replay has
   * no second effect. */
  exec_sql(h, "DELETE FROM activity_log WHERE msg_id IN (SELECT msg_id FROM processed WHERE "
              "event_type = 'capture/repository.sync' ORDER BY msg_id LIMIT 50);"
              "DELETE FROM processed WHERE msg_id IN (SELECT msg_id FROM processed WHERE "
              "event_type = 'capture/repository.sync' ORDER BY msg_id LIMIT 50);");
  int64_t activity = tb_h_sql_int(h, "SELECT count(*) FROM activity_log");
  char *lost = checksum(h, NULL);
  assert_string_not_equal(lost, live);
  replay(h, &r, 0, "--dry-run", NULL, NULL, NULL, NULL, NULL);
  tb_assert_contains(r.out, "would apply 50,");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), activity);
  char *dry = checksum(h, NULL);
  assert_string_equal(dry, lost);
  replay(h, &r, 0, "--tier", "normal", NULL, NULL, NULL, NULL);
  tb_assert_contains(r.out, "applied 50,");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), activity + 50);
  replay(h, &r, 0, NULL, NULL, NULL, NULL, NULL, NULL);
  tb_assert_contains(r.out, "applied 0,");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), activity + 50);
  char *back = checksum(h, NULL);
  assert_string_equal(back, live);

  /* --force re-runs only handlers safe to re-apply, and they leave the state as it was. */
  replay(h, &r, 0, "--force", "--event", "WORKSPACE_REPO_ADDED", NULL, NULL, NULL);
  snprintf(want, sizeof(want), "read %d, applied %d (forced)", ADDS, ADDS);
  tb_assert_contains(r.out, want);
  tb_h_result_free(&r);
  replay(h, &r, 0, "--force", "--tier", "normal", NULL, NULL, NULL);
  tb_assert_contains(r.out, "applied 0,"); /* the capture handler is not safe to re-apply */
  tb_h_result_free(&r);
  char *forced = checksum(h, NULL);
  assert_string_equal(forced, live);
  tb_h_tierbus(h, &r, RUN_MS, "replay", "--list-safe", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "workspace.repo_added");
  tb_assert_not_contains(r.out, "activity");
  tb_h_result_free(&r);

  /* `db prune` keeps to the dedupe horizon, deletes only what is older, and records where it
   * cut so that a replay does not trust the absence of a record before it. */
  tb_h_tierbus(h, &r, RUN_MS, "db", "prune", "--older-than", "1s", NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "shorter than the dedupe horizon");
  tb_h_result_free(&r);
  exec_sql(h, "UPDATE processed SET committed_us = committed_us - 400 * 86400000000 WHERE msg_id "
              "IN (SELECT msg_id FROM processed ORDER BY msg_id LIMIT 7)");
  int64_t records = tb_h_sql_int(h, "SELECT count(*) FROM processed");
  tb_h_tierbus(h, &r, RUN_MS, "db", "prune", "--older-than", "30d", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "pruned 7 processed records");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed"), records - 7);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM prune_horizon"), 1);
  free(live);
  free(lost);
  free(dry);
  free(back);
  free(forced);
}

static void test_replay_filters_and_usage(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);
  publish_history(h);
  process_all(h);
  char want[128];

  replay(h, &r, 0, "--event", "WORKSPACE_REPO_REMOVED", "--dry-run", NULL, NULL, NULL);
  snprintf(want, sizeof(want), "read %d,", ADDS / 3);
  tb_assert_contains(r.out, want);
  tb_h_result_free(&r);
  /* The normal tier holds the capture events and the medium repositories' sync jobs. */
  int64_t normal = tb_h_tier_msgs(h, "normal");
  assert_true(normal >= CAPTURES);
  replay(h, &r, 0, "--subject", "tb.evt.normal.>", "--dry-run", NULL, NULL, NULL);
  snprintf(want, sizeof(want), "read %lld,", (long long)normal);
  tb_assert_contains(r.out, want);
  tb_h_result_free(&r);
  replay(h, &r, 0, "--tier", "high", "--subject", "tb.evt.*.workspace.>", "--limit", "25");
  tb_assert_contains(r.out, "read 25, applied 0, skipped as already processed 25");
  tb_h_result_free(&r);
  replay(h, &r, 0, "--subject", "tb.evt.high.workspace.>", "--from-seq", "11", "--to-seq", "20");
  tb_assert_contains(r.out, "read 10,");
  tb_h_result_free(&r);
  replay(h, &r, 0, "--since", "1h", "--tier", "normal", NULL, NULL);
  snprintf(want, sizeof(want), "read %lld,", (long long)normal);
  tb_assert_contains(r.out, want);
  tb_h_result_free(&r);
  replay(h, &r, 0, "--since", "2000-01-01T00:00:00Z", "--until", "2000-01-02T00:00:00+01:00", NULL,
         NULL);
  tb_assert_contains(r.out, "read 0,");
  tb_h_result_free(&r);

  /* Bad arguments: exit 2, naming the problem. */
  replay(h, &r, 2, "--tier", "urgent", NULL, NULL, NULL, NULL);
  tb_assert_contains(r.err, "unknown tier 'urgent'");
  tb_h_result_free(&r);
  replay(h, &r, 2, "--since", "yesterday", NULL, NULL, NULL, NULL);
  tb_assert_contains(r.err, "--since");
  tb_h_result_free(&r);
  replay(h, &r, 2, "--since", "1h", "--from-seq", "3", NULL, NULL);
  tb_assert_contains(r.err, "exclude each other");
  tb_h_result_free(&r);
  replay(h, &r, 2, "--event", "NO_SUCH_EVENT", NULL, NULL, NULL, NULL);
  tb_assert_contains(r.err, "unknown event type 'NO_SUCH_EVENT'");
  tb_h_result_free(&r);
  replay(h, &r, 2, "--limit", "0", NULL, NULL, NULL, NULL);
  tb_assert_contains(r.err, "--limit");
  tb_h_result_free(&r);
  replay(h, &r, 2, "--tier", "high", "--subject", "tb.evt.low.>", NULL, NULL);
  tb_assert_contains(r.err, "matches no stream");
  tb_h_result_free(&r);
  replay(h, &r, 2, "--dry-run", "--force", NULL, NULL, NULL, NULL);
  tb_h_result_free(&r);
}

static void test_rebuild_checksum(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);
  publish_history(h);
  int64_t msgs = process_all(h);
  char *live = checksum(h, NULL);
  char fresh[TB_H_PATH], want[128];
  tb_h_path(h, "rebuilt.db", fresh, sizeof(fresh));

  tb_h_tierbus(h, &r, RUN_MS, "rebuild", "--db", fresh, NULL);
  tb_assert_exit(r, 0);
  snprintf(want, sizeof(want), "read %lld, applied %lld", (long long)msgs, (long long)msgs);
  tb_assert_contains(r.out, want);
  snprintf(want, sizeof(want), "checksum %s", live);
  tb_assert_contains(r.out, want);
  tb_h_result_free(&r);
  char *rebuilt = checksum(h, fresh);
  assert_string_equal(rebuilt, live);
  /* Nothing was sent again: the log holds what it held. */
  assert_int_equal(tb_h_all_tier_msgs(h), msgs);

  /* A target with state is refused. */
  tb_h_tierbus(h, &r, RUN_MS, "rebuild", "--db", fresh, NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "not empty");
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, RUN_MS, "rebuild", NULL);
  tb_assert_exit(r, 2);
  tb_h_result_free(&r);

  /* The live file deleted while tierbus is stopped: rebuild restores it. */
  char wal[TB_H_PATH + 8], shm[TB_H_PATH + 8];
  snprintf(wal, sizeof(wal), "%s-wal", h->db);
  snprintf(shm, sizeof(shm), "%s-shm", h->db);
  assert_int_equal(unlink(h->db), 0);
  unlink(wal);
  unlink(shm);
  tb_h_tierbus(h, &r, RUN_MS, "rebuild", "--db", h->db, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  char *restored = checksum(h, NULL);
  assert_string_equal(restored, live);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM outbox"), 0);
  assert_int_equal(tb_h_all_tier_msgs(h), msgs);
  free(live);
  free(rebuilt);
  free(restored);
}

/* Seed 002's workspace_add sync: each burst of adds queued a full priority sync through the
 * outbox, debounced by a lease. The syncs are in the log like any follow-up, so a rebuild
 * (which queues nothing) still reaches the live checksum. */
static void test_rebuild_with_workspace_add_sync(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);
  publish_history(h);
  int64_t msgs = process_with(h, "workspace_add_sync=true");
  int64_t syncs = tb_h_sql_int(h, "SELECT count(*) FROM priority_sync_runs");
  print_message("%lld messages, %lld priority sync runs\n", (long long)msgs, (long long)syncs);
  assert_true(syncs > 0);
  char *live = checksum(h, NULL);
  char fresh[TB_H_PATH];
  tb_h_path(h, "rebuilt.db", fresh, sizeof(fresh));
  tb_h_tierbus(h, &r, RUN_MS, "rebuild", "--db", fresh, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  char *rebuilt = checksum(h, fresh);
  assert_string_equal(rebuilt, live);
  assert_int_equal(tb_h_all_tier_msgs(h), msgs);
  free(rebuilt);
  free(live);
}

/* A snapshot bounds a rebuild: restored, it replays each stream only from the position it
 * recorded, and still reaches the live checksum. */
static void test_rebuild_from_snapshot(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);
  publish_history(h);
  int64_t before = process_all(h);
  char snap[TB_H_PATH], fresh[TB_H_PATH], path[TB_H_PATH];
  tb_h_path(h, "snap.db", snap, sizeof(snap));
  tb_h_path(h, "from-snap.db", fresh, sizeof(fresh));
  tb_h_tierbus(h, &r, RUN_MS, "db", "snapshot", "--out", snap, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  /* History after the snapshot. */
  FILE *f = tb_h_fopen(h, "more.ndjson", path, sizeof(path));
  assert_non_null(f);
  for (int i = 0; i < 100; i++)
    fprintf(f,
            "{\"type\":\"WORKSPACE_REPO_ADDED\",\"payload\":{\"workspace_id\":\"w-after\","
            "\"repository_id\":\"after-%d\"}}\n",
            i);
  fclose(f);
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  int64_t total = process_all(h);
  assert_true(total > before);
  char *live = checksum(h, NULL);

  tb_h_tierbus(h, &r, RUN_MS, "rebuild", "--db", fresh, "--from-snapshot", snap, NULL);
  tb_assert_exit(r, 0);
  long long read = -1;
  const char *at = strstr(r.out, "read ");
  if (at != NULL) sscanf(at, "read %lld", &read);
  print_message("rebuild from the snapshot read %lld of %lld messages\n", read, (long long)total);
  assert_true(read >= total - before && read < total); /* the log after the snapshot, not all */
  tb_h_result_free(&r);
  char *rebuilt = checksum(h, fresh);
  assert_string_equal(rebuilt, live);
  free(rebuilt);
  free(live);
}

int main(void) {
  tb_h_watchdog(170);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_replay_idempotent_dry_run, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_replay_filters_and_usage, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_rebuild_checksum, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_rebuild_with_workspace_add_sync, tb_h_setup,
                                      tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_rebuild_from_snapshot, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
