/* Integration: periodic snapshots. A worker with snapshot_interval 1s takes snapshots in the
 * background while events keep arriving, into <data_dir>/snapshots, keeping snapshot_keep of
 * them; each records the stream positions of its moment. A rebuild from one taken mid-load, and
 * from the newest (`rebuild --from-snapshot` without a file), replays only the log after it and
 * reaches the live checksum. `db snapshot` without --out adds one to the same directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/itest.h"

#define RUN_MS 60000
#define WAVES 6
#define WAVE_EVENTS 4000
#define KEEP 3

/* Names of the snapshot files in |dir| (snapshot-*.db, not .part), oldest first; returns how
 * many, at most |cap|. The harness's own `ls` through tb_h_execv keeps this free of dirent. */
static int list_snapshots(tb_h_t *h, const char *dir, char names[][TB_H_PATH], int cap) {
  tb_h_result_t r;
  tb_h_execv(h, &r, RUN_MS, (const char *const[]){"/bin/ls", "-1", dir, NULL});
  int n = 0;
  for (char *line = strtok(r.out, "\n"); line != NULL && n < cap; line = strtok(NULL, "\n")) {
    size_t len = strlen(line);
    if (strncmp(line, "snapshot-", 9) == 0 && len > 3 && strcmp(line + len - 3, ".db") == 0)
      snprintf(names[n++], TB_H_PATH, "%s/%s", dir, line);
  }
  tb_h_result_free(&r);
  return n; /* ls sorts by name, and the names sort by time */
}

/* count(*) of |table| in the SQLite file |path|, -1 on failure. */
static int64_t file_count(const char *path, const char *table) {
  sqlite3 *db = NULL;
  int64_t n = -1;
  char sql[128];
  snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
  sqlite3_stmt *q = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    n = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return n;
}

/* `db checksum` of |db| (NULL: the test's database) into |sum|. */
static void checksum(tb_h_t *h, const char *db, char sum[33]) {
  tb_h_result_t r;
  if (db)
    tb_h_tierbus(h, &r, RUN_MS, "db", "checksum", "--db", db, NULL);
  else
    tb_h_tierbus(h, &r, RUN_MS, "db", "checksum", NULL);
  tb_assert_exit(r, 0);
  snprintf(sum, 33, "%.32s", r.out);
  tb_h_result_free(&r);
}

/* The number after "read " in a rebuild's summary, -1 when absent. */
static long long rebuild_read(const char *out) {
  long long read = -1;
  const char *at = strstr(out, "rebuild: read ");
  if (at != NULL) sscanf(at, "rebuild: read %lld", &read);
  return read;
}

/* Publishes wave |w|: capture events on the normal tier, and in the first wave workspace
 * membership changes (whose repository-sync jobs the worker publishes through the outbox). */
static void publish_wave(tb_h_t *h, int w) {
  tb_h_result_t r;
  char path[TB_H_PATH], name[32];
  if (w == 0) {
    FILE *f = tb_h_fopen(h, "members.ndjson", path, sizeof(path));
    assert_non_null(f);
    for (int i = 0; i < 600; i++)
      fprintf(f,
              "{\"type\":\"WORKSPACE_REPO_ADDED\",\"payload\":{\"workspace_id\":\"w%d\","
              "\"repository_id\":\"r%d\"}}\n",
              i % 7, i);
    for (int i = 0; i < 600; i += 3)
      fprintf(f,
              "{\"type\":\"WORKSPACE_REPO_REMOVED\",\"payload\":{\"workspace_id\":\"w%d\","
              "\"repository_id\":\"r%d\"}}\n",
              i % 7, i);
    assert_int_equal(fclose(f), 0);
    tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
    tb_assert_exit(r, 0);
    tb_h_result_free(&r);
  }
  snprintf(name, sizeof(name), "wave%d.ndjson", w);
  char prefix[16];
  snprintf(prefix, sizeof(prefix), "w%d", w);
  tb_assert_ok(tb_h_write_events(h, name, prefix, 0, WAVE_EVENTS, "normal", path, sizeof(path)));
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* How many snapshots the worker logged as taken so far. */
static int snapshots_logged(tb_h_child_t *w) {
  char *err = tb_h_child_stderr(w);
  int n = 0;
  for (const char *p = err; (p = strstr(p, ".db taken in ")) != NULL; p++) n++;
  free(err);
  return n;
}

static void test_periodic_snapshots(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char data[TB_H_PATH], dir[TB_H_PATH + 16], keep[16];
  tb_h_path(h, "data", data, sizeof(data));
  snprintf(dir, sizeof(dir), "%s/snapshots", data);
  snprintf(keep, sizeof(keep), "snapshot_keep=%d", KEEP);
  tb_it_start_and_init(h);
  tb_h_child_t w;
  tb_assert_ok(tb_h_spawn(h, &w, "worker", "worker", "--data-dir", data, "--set",
                          "snapshot_interval=1s", "--set", keep, NULL));
  static char names[64][TB_H_PATH];
  char mid[TB_H_PATH];
  tb_h_path(h, "mid.db", mid, sizeof(mid));
  /* Events keep arriving while the snapshots are taken: after the second wave the test waits
   * for a snapshot and keeps a copy of it, whose positions lie inside the history. */
  for (int wave = 0; wave < WAVES; wave++) {
    publish_wave(h, wave);
    if (wave != 1) continue;
    int n = 0;
    for (int64_t deadline = tb_h_now_ms() + 20000; n == 0 && tb_h_now_ms() < deadline;)
      if ((n = list_snapshots(h, dir, names, 64)) == 0) tb_h_sleep_ms(50);
    if (n == 0) tb_h_dump_logs(h, 20);
    assert_true(n > 0);
    tb_h_execv(h, &r, RUN_MS, (const char *const[]){"/bin/cp", names[n - 1], mid, NULL});
    tb_assert_exit(r, 0);
    tb_h_result_free(&r);
  }
  /* Everything processed, follow-ups included. */
  int64_t msgs = 0, done = 0, outbox = 1;
  tb_h_wait_settled(h, RUN_MS, &msgs, &done, &outbox);
  if (done != msgs) tb_h_dump_logs(h, 20);
  assert_int_equal(done, msgs);
  assert_int_equal(outbox, 0);
  /* More were taken than are kept: the old ones were deleted as new ones came. */
  for (int64_t deadline = tb_h_now_ms() + 20000;
       snapshots_logged(&w) <= KEEP && tb_h_now_ms() < deadline;)
    tb_h_sleep_ms(100);
  int taken = snapshots_logged(&w);
  assert_true(taken > KEEP);
  assert_int_equal(tb_h_child_term(&w, 20000), 0);
  int n = list_snapshots(h, dir, names, 64);
  print_message("%d snapshots taken at 1 s intervals during a %lld-message run, %d kept\n", taken,
                (long long)msgs, n);
  assert_int_equal(n, KEEP);
  /* Each a whole database with every tier stream's position. */
  for (int i = 0; i < n; i++) assert_true(file_count(names[i], "snapshot_positions") >= 5);
  int64_t mid_done = file_count(mid, "processed");
  print_message("the snapshot kept mid-load holds %lld of %lld processed messages\n",
                (long long)mid_done, (long long)msgs);
  assert_true(mid_done >= 0 && mid_done < msgs);
  char live[33], rebuilt[33];
  checksum(h, NULL, live);

  /* From the mid-load snapshot: only what came after it is replayed, and the state is the live
   * one. */
  char fresh[TB_H_PATH];
  tb_h_path(h, "from-mid.db", fresh, sizeof(fresh));
  tb_h_tierbus(h, &r, RUN_MS, "rebuild", "--db", fresh, "--from-snapshot", mid, NULL);
  tb_assert_exit(r, 0);
  long long read = rebuild_read(r.out);
  print_message("rebuild from the mid-load snapshot read %lld of %lld messages\n", read,
                (long long)msgs);
  assert_true(read >= msgs - mid_done && read < msgs);
  tb_h_result_free(&r);
  checksum(h, fresh, rebuilt);
  assert_string_equal(rebuilt, live);

  /* From the newest, found by itself. */
  tb_h_path(h, "from-latest.db", fresh, sizeof(fresh));
  tb_h_tierbus(h, &r, RUN_MS, "rebuild", "--db", fresh, "--from-snapshot", "--data-dir", data,
               NULL);
  tb_assert_exit(r, 0);
  char want[TB_H_PATH + 64];
  snprintf(want, sizeof(want), "rebuild: from snapshot %s", names[n - 1]);
  tb_assert_contains(r.out, want);
  tb_h_result_free(&r);
  checksum(h, fresh, rebuilt);
  assert_string_equal(rebuilt, live);

  /* One by hand joins them, and the directory still keeps KEEP. */
  tb_h_tierbus(h, &r, RUN_MS, "db", "snapshot", "--data-dir", data, NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, dir);
  tb_h_result_free(&r);
  char newest[TB_H_PATH];
  snprintf(newest, sizeof(newest), "%s", names[n - 1]);
  assert_int_equal(list_snapshots(h, dir, names, 64), KEEP);
  assert_true(strcmp(names[KEEP - 1], newest) > 0);

  /* No snapshot to pick: refused, naming the directory. */
  char empty[TB_H_PATH];
  tb_h_path(h, "empty", empty, sizeof(empty));
  tb_h_path(h, "from-none.db", fresh, sizeof(fresh));
  tb_h_tierbus(h, &r, RUN_MS, "rebuild", "--db", fresh, "--from-snapshot", "--data-dir", empty,
               NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "no snapshot in");
  tb_h_result_free(&r);
}

/* snapshot_interval 0s takes none; a value under a second is refused as a typo. */
static void test_snapshot_config(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "config", "check", "--set", "snapshot_interval=500ms", NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "snapshot_interval");
  tb_assert_contains(r.err, "at least 1s");
  tb_h_result_free(&r);
  char data[TB_H_PATH], dir[TB_H_PATH + 16];
  tb_h_path(h, "data", data, sizeof(data));
  snprintf(dir, sizeof(dir), "%s/snapshots", data);
  tb_it_start_and_init(h);
  tb_h_child_t w;
  tb_assert_ok(tb_h_spawn(h, &w, "worker", "worker", "--data-dir", data, "--set",
                          "snapshot_interval=0s", NULL));
  assert_int_equal(tb_h_wait_sql(h, 0, 10000, "SELECT count(*) FROM processed"), 0);
  tb_h_sleep_ms(2000);
  assert_int_equal(tb_h_child_term(&w, 20000), 0);
  static char names[4][TB_H_PATH];
  assert_int_equal(list_snapshots(h, dir, names, 4), 0);
}

int main(void) {
  tb_h_watchdog(170);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_periodic_snapshots, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_snapshot_config, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
