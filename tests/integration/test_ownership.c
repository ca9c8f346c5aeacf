/* Integration: which database a command uses, and whose it is. Read-only commands never create a
 * database; TIERBUS_DATA_DIR carries the database as --data-dir does; a worker refuses a database
 * of another deployment, and a new empty one while the consumers have acked history. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "support/itest.h"

#define RUN_MS 30000

static int file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static void test_read_only_refuse_missing_db(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char missing[TB_H_PATH];
  tb_h_path(h, "nowhere/tierbus.db", missing, sizeof(missing));
  static const char *const cmds[][3] = {{"stats", NULL, NULL},
                                        {"workflows", "runs", NULL},
                                        {"priority", "show", "acme/repo"},
                                        {"schedule", "list", NULL},
                                        {"workflows", "show", "wf-x"}};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    tb_h_tierbus_raw(h, &r, RUN_MS, cmds[i][0], "--config", h->config, "--nats-url",
                     "nats://127.0.0.1:1", "--db", missing, cmds[i][1], cmds[i][2], NULL);
    print_message("%s %s: exit %d: %s", cmds[i][0], cmds[i][1] ? cmds[i][1] : "", r.status, r.err);
    tb_assert_exit(r, 1);
    tb_assert_contains(r.err, "no database at");
    tb_assert_contains(r.err, missing);
    tb_assert_contains(r.err, "(from --db)");
    tb_h_result_free(&r);
    assert_false(file_exists(missing));
  }
  /* trigger --wait checks before it publishes anything. */
  tb_h_tierbus_raw(h, &r, RUN_MS, "trigger", "ops.daily-stand-up", "--wait", "--config", h->config,
                   "--nats-url", "nats://127.0.0.1:1", "--db", missing, NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "no database at");
  tb_h_result_free(&r);
  assert_false(file_exists(missing));
}

/* TIERBUS_DATA_DIR=D and --data-dir D both mean the database D/tierbus.db. */
static void test_data_dir_env_carries_db(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char dir[TB_H_PATH], db[TB_H_PATH + 32];
  tb_h_path(h, "envdir", dir, sizeof(dir));
  snprintf(db, sizeof(db), "%s/tierbus.db", dir);
  tb_assert_ok(tb_h_server_start(h));
  setenv("TIERBUS_DATA_DIR", dir, 1);
  tb_h_tierbus_raw(h, &r, RUN_MS, "init", "--config", h->config, "--nats-url", h->url, NULL);
  unsetenv("TIERBUS_DATA_DIR");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_true(file_exists(db));
  /* The flag finds the same database. */
  tb_h_tierbus_raw(h, &r, RUN_MS, "stats", "--config", h->config, "--nats-url", h->url,
                   "--data-dir", dir, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* A database of deployment X on a server of deployment Y is refused, naming both. */
static void test_foreign_db_refused(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char other[TB_H_PATH];
  tb_h_path(h, "other.db", other, sizeof(other));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", "--db", other, NULL); /* the later --db wins */
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  char *x = NULL;
  {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(other, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT id FROM deployment", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    x = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  /* The server forgets X (as a new server would), and a new deployment Y takes it. */
  assert_int_equal(js_DeleteKeyValue(tb_h_js(h), "TB_DEPLOYMENT"), NATS_OK);
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  char *y = tb_h_sql_text(h, "SELECT id FROM deployment");
  assert_non_null(y);
  assert_string_not_equal(x, y);

  tb_h_tierbus(h, &r, RUN_MS, "worker", "--db", other, NULL);
  print_message("worker on the foreign database: exit %d: %s", r.status, r.err);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, x);
  tb_assert_contains(r.err, y);
  tb_assert_contains(r.err, other);
  tb_h_result_free(&r);
  free(x);
  free(y);
}

/* Events acked into the deployment's database; a worker on a new, empty database is refused and
 * leaves no file behind. */
static void test_new_db_with_acked_history_refused(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char batch[TB_H_PATH], fresh[TB_H_PATH];
  tb_h_path(h, "fresh.db", fresh, sizeof(fresh));
  tb_assert_ok(tb_h_write_events(h, "events.ndjson", "o", 0, 20, NULL, batch, sizeof(batch)));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", batch, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_h_child_t w;
  tb_assert_ok(tb_h_spawn(h, &w, "worker", "worker", NULL));
  assert_int_equal(tb_h_wait_sql(h, 20, 20000, "SELECT count(*) FROM processed"), 20);
  assert_int_equal(tb_h_child_term(&w, 20000), 0);
  char *id = tb_h_sql_text(h, "SELECT id FROM deployment");
  assert_non_null(id);

  tb_h_tierbus(h, &r, RUN_MS, "worker", "--db", fresh, NULL);
  print_message("worker on a new database: exit %d: %s", r.status, r.err);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "new and empty");
  tb_assert_contains(r.err, fresh);
  tb_assert_contains(r.err, id);
  tb_h_result_free(&r);
  assert_false(file_exists(fresh));
  free(id);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_read_only_refuse_missing_db, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_data_dir_env_carries_db, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_foreign_db_refused, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_new_db_with_acked_history_refused, tb_h_setup,
                                      tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
