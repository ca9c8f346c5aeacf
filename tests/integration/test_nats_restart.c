/* Integration: the NATS server stops and comes back (same port, same store) while a worker is
 * busy. The worker survives as the same process, and every event is applied exactly once: none
 * lost (published before, during processing or after the restart), none applied twice. */
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 30000

/* A 5 s AckWait, so that a delivery lost with the connection comes back within the test rather
 * than after the default 5 minutes. Nothing else differs from the shipped tiers. */
static const char config_yaml[] = "redelivery_bound: 5s\n"
                                  "tiers:\n"
                                  "  - {name: critical, timeout: 5s, concurrency: 50}\n"
                                  "  - {name: high, timeout: 5s, concurrency: 30}\n"
                                  "  - {name: normal, timeout: 5s, concurrency: 15}\n"
                                  "  - {name: low, timeout: 5s, concurrency: 8}\n"
                                  "  - {name: background, timeout: 5s, concurrency: 5}\n";

static void test_server_restart(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t worker;
  char batch1[TB_H_PATH], batch2[TB_H_PATH];
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", config_yaml));
  tb_assert_ok(tb_h_write_events(h, "a.ndjson", "a", 0, 2000, NULL, batch1, sizeof(batch1)));
  tb_assert_ok(tb_h_write_events(h, "b.ndjson", "b", 0, 1000, NULL, batch2, sizeof(batch2)));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  /* Small batches keep the worker busy for longer, so that the stop lands mid-stream. */
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", "--set", "commit_batch_max=16", NULL));
  pid_t worker_pid = worker.pid;
  /* The worker has its store open once the schema exists. */
  assert_int_equal(tb_h_wait_sql(h, 0, 10000, "SELECT count(*) FROM processed"), 0);

  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", batch1, NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "published 2000 events");
  tb_h_result_free(&r);

  assert_true(tb_h_wait_sql(h, 1, 20000, "SELECT count(*) FROM processed") >= 1);
  tb_h_server_stop(h);
  int64_t at_stop = tb_h_sql_int(h, "SELECT count(*) FROM processed");
  print_message("server stopped with %lld of 2000 processed\n", (long long)at_stop);
  tb_h_sleep_ms(1000);
  assert_true(tb_h_child_alive(&worker));
  tb_assert_ok(tb_h_server_start(h));

  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", batch2, NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "published 1000 events");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_WORKSPACE"), 3000);

  assert_int_equal(tb_h_wait_sql(h, 3000, 60000, "SELECT count(*) FROM processed"), 3000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM processed"), 3000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE outcome='applied'"), 3000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), 3000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM activity_log"), 3000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE msg_id LIKE 'b-%%'"),
                   1000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);

  /* The same process did all of it: it reconnected rather than exiting. */
  assert_true(tb_h_child_alive(&worker));
  assert_int_equal(worker.pid, worker_pid);
  char *log = tb_h_child_stderr(&worker);
  tb_assert_contains(log, "worker ready");
  free(log);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_server_restart, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
