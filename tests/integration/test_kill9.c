/* Integration: a worker killed with SIGKILL in the middle of its batches loses nothing and applies
 * nothing twice. A new worker picks up the killed one's unacknowledged messages after their
 * AckWait; those already committed are recognised by their processed record. */
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 30000
#define EVENTS 5000

/* A 3 s AckWait (redelivery_bound), so that the killed worker's in-flight messages come back
 * within the test rather than after the default 30 s. */
static const char config_yaml[] = "redelivery_bound: 3s\n"
                                  "tiers:\n"
                                  "  - {name: critical, timeout: 3s, concurrency: 50}\n"
                                  "  - {name: high, timeout: 3s, concurrency: 30}\n"
                                  "  - {name: normal, timeout: 3s, concurrency: 15}\n"
                                  "  - {name: low, timeout: 3s, concurrency: 8}\n"
                                  "  - {name: background, timeout: 3s, concurrency: 5}\n";

static void test_kill9_mid_batch(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t first, second;
  char batch[TB_H_PATH];
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", config_yaml));
  tb_assert_ok(tb_h_write_events(h, "events.ndjson", "k", 0, EVENTS, NULL, batch, sizeof(batch)));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", batch, NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "published 5000 events");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_WORKSPACE"), EVENTS);

  tb_assert_ok(tb_h_spawn(h, &first, "worker1", "worker", "--set", "commit_batch_max=64", NULL));
  int64_t seen = tb_h_wait_sql(h, 201, 20000, "SELECT count(*) FROM processed");
  assert_true(seen > 200);
  tb_h_child_kill(&first);
  assert_int_equal(first.status, 128 + 9);
  int64_t at_kill = tb_h_sql_int(h, "SELECT count(*) FROM processed");
  print_message("worker killed with %lld of %d processed\n", (long long)at_kill, EVENTS);
  /* It died mid-stream, with work left for the second worker (else the test proves little). */
  assert_true(at_kill < EVENTS);
  /* Its messages fetched but not acknowledged are still owed by the consumer. */
  int64_t ack_pending = -1;
  assert_int_equal(tb_h_consumer_info(h, "TB_HIGH_WORKSPACE", NULL, NULL, NULL, &ack_pending), 0);
  print_message("unacknowledged at the kill: %lld\n", (long long)ack_pending);

  tb_assert_ok(tb_h_spawn(h, &second, "worker2", "worker", "--set", "commit_batch_max=64", NULL));
  assert_int_equal(tb_h_wait_sql(h, EVENTS, 60000, "SELECT count(*) FROM processed"), EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM processed"), EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE outcome='applied'"),
                   EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM activity_log"), EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);

  /* Everything is acknowledged once the redeliveries settle. */
  int64_t deadline = tb_h_now_ms() + 10000;
  uint64_t pending = 1;
  do {
    assert_int_equal(tb_h_consumer_info(h, "TB_HIGH_WORKSPACE", NULL, NULL, &pending, &ack_pending),
                     0);
    if (pending == 0 && ack_pending == 0) break;
    tb_h_sleep_ms(50);
  } while (tb_h_now_ms() < deadline);
  assert_int_equal(pending, 0);
  assert_int_equal(ack_pending, 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), EVENTS);
  assert_int_equal(tb_h_child_term(&second, 20000), 0);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_kill9_mid_batch, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
