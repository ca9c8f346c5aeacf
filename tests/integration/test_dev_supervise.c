/* Integration: `tierbus dev` supervises the nats-server it started. A server killed with SIGKILL
 * is restarted on the same store and port and processing resumes by itself, exactly once; a
 * server that cannot be restarted makes dev exit 1 with the reason instead of hanging. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/itest.h"

#define RUN_MS 30000

/* Starts dev on a reserved port with its own data dir (h->db as its database). The bus is locked:
 * commands reach dev's server with the secret in that data dir, so each publish names it. */
static void start_dev(tb_h_t *h, tb_h_child_t *dev, char *data_dir, size_t cap) {
  char port[16];
  assert_true(tb_h_reserve_port(h) > 0);
  snprintf(port, sizeof(port), "%d", h->port);
  tb_h_path(h, "dev", data_dir, cap);
  tb_assert_ok(tb_h_spawn_raw(h, dev, "dev", "dev", "--nats-port", port, "--data-dir", data_dir,
                              "--db", h->db, "--config", h->config, "--log-level", "info", NULL));
}

/* The pid of the newest server dev logged as started ("started nats-server pid N", "nats-server
 * restarted: pid N") past offset |after| of its stderr; 0 when none yet. *end gets the offset of
 * that line. */
static pid_t server_pid(tb_h_child_t *dev, size_t after, size_t *end) {
  static const char *const marks[] = {"started nats-server pid ", "nats-server restarted: pid "};
  char *err = tb_h_child_stderr(dev);
  pid_t pid = 0;
  size_t len = strlen(err);
  for (size_t k = 0; k < 2; k++)
    for (const char *q = err + (after < len ? after : len); (q = strstr(q, marks[k])) != NULL;
         q++) {
      pid = (pid_t)atoi(q + strlen(marks[k]));
      *end = (size_t)(q - err);
    }
  free(err);
  return pid;
}

/* Waits until dev logged a (re)started server after |after|; returns its pid. */
static pid_t wait_server(tb_h_child_t *dev, size_t after, size_t *end) {
  for (int i = 0; i < 300; i++) {
    pid_t pid = server_pid(dev, after, end);
    if (pid > 0) {
      tb_h_track_pid(pid);
      return pid;
    }
    tb_h_sleep_ms(50);
  }
  fail_msg("dev never logged a started nats-server");
  return 0;
}

/* Waits for dev's ready line: streams provisioned and the deployment checked. */
static void wait_ready(tb_h_child_t *dev) {
  for (int i = 0; i < 400; i++) {
    char *out = tb_h_read_file(dev->out_path);
    int ready = out != NULL && strstr(out, "tierbus dev ready") != NULL;
    free(out);
    if (ready) return;
    tb_h_sleep_ms(50);
  }
  fail_msg("dev never printed its ready line");
}

static void test_dev_restarts_killed_server(void **state) {
  tb_h_t *h = *state;
  enum { FIRST = 20000, SECOND = 2000 };
  tb_h_result_t r;
  tb_h_child_t dev;
  char dir[TB_H_PATH], a[TB_H_PATH], b[TB_H_PATH];
  tb_assert_ok(tb_h_write_events(h, "a.ndjson", "a", 0, FIRST, NULL, a, sizeof(a)));
  tb_assert_ok(tb_h_write_events(h, "b.ndjson", "b", 0, SECOND, NULL, b, sizeof(b)));
  start_dev(h, &dev, dir, sizeof(dir));
  size_t off = 0;
  pid_t first = wait_server(&dev, 0, &off);
  wait_ready(&dev);
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", a, "--data-dir", dir, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  int64_t seen = tb_h_wait_sql(h, 500, 20000, "SELECT count(*) FROM processed");
  assert_true(seen >= 500);
  kill(first, SIGKILL); /* dev's child: dev reaps it */
  print_message("killed nats-server %d with %lld of %d processed\n", (int)first, (long long)seen,
                FIRST);
  pid_t second = wait_server(&dev, off + 1, &off);
  assert_true(second != first);
  /* The restarted server takes the same secret: the publish below authenticates with the one
   * in dev's data directory, and the workers' connections reconnect with theirs. */
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", b, "--data-dir", dir, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, FIRST + SECOND, 45000, "SELECT count(*) FROM processed"),
                   FIRST + SECOND);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM activity_log"),
                   FIRST + SECOND);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), FIRST + SECOND);
  char *err = tb_h_child_stderr(&dev);
  tb_assert_contains(err, "died (signal 9)");
  tb_assert_contains(err, "nats-server restarted");
  free(err);
  assert_int_equal(tb_h_child_term(&dev, 20000), 0);
}

static void test_dev_exits_when_restart_fails(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t dev;
  char dir[TB_H_PATH], store[TB_H_PATH + 32], moved[TB_H_PATH + 32];
  start_dev(h, &dev, dir, sizeof(dir));
  size_t off = 0;
  char one[TB_H_PATH];
  tb_assert_ok(tb_h_write_events(h, "one.ndjson", "one", 0, 1, NULL, one, sizeof(one)));
  pid_t pid = wait_server(&dev, 0, &off);
  wait_ready(&dev);
  /* The workers run once they processed an event: the ready line comes before they start. */
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", one, "--data-dir", dir, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, 20000, "SELECT count(*) FROM processed"), 1);
  /* A file where the store directory was: no server can start on it. */
  snprintf(store, sizeof(store), "%s/jetstream", dir);
  snprintf(moved, sizeof(moved), "%s/jetstream.moved", dir);
  assert_int_equal(rename(store, moved), 0);
  FILE *f = fopen(store, "w");
  assert_non_null(f);
  fclose(f);
  kill(pid, SIGKILL);
  int64_t t0 = tb_h_now_ms();
  int status = tb_h_child_wait(&dev, 40000);
  char *err = tb_h_child_stderr(&dev);
  print_message("dev exited %d after %lld ms\n", status, (long long)(tb_h_now_ms() - t0));
  assert_int_equal(status, 1);
  tb_assert_contains(err, "could not be restarted after 5 attempts");
  free(err);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_dev_restarts_killed_server, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_dev_exits_when_restart_fails, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
