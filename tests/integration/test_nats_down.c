/* Integration: start-up against an absent NATS server fails fast and says where it looked, and
 * with a longer nats_connect_timeout it waits for a server that comes up late. */
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

static void test_unreachable_fails_fast(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  assert_true(tb_h_reserve_port(h) > 0); /* nothing listens there */
  tb_h_tierbus(h, &r, 15000, "init", "--set", "nats_connect_timeout=1s", NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "NATS is not reachable");
  tb_assert_contains(r.err, h->url);
  /* 1 s of retries plus start-up; well under the 10 s default, so the option took effect. */
  if (r.elapsed_ms > 3000) print_error("init took %lld ms\n", (long long)r.elapsed_ms);
  assert_true(r.elapsed_ms <= 3000);
  assert_true(r.elapsed_ms >= 900);
  tb_h_result_free(&r);

  /* 0s tries once and gives up at once. */
  tb_h_tierbus(h, &r, 15000, "publish", "CLIENT_CREATED", "--json", "{\"client_id\": \"c1\"}",
               "--set", "nats_connect_timeout=0s", NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, h->url);
  assert_true(r.elapsed_ms < 1500);
  tb_h_result_free(&r);

  /* The worker too. */
  tb_h_tierbus(h, &r, 15000, "worker", "--set", "nats_connect_timeout=1s", NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "NATS is not reachable");
  tb_assert_contains(r.err, h->url);
  tb_h_result_free(&r);
}

static void test_waits_for_late_server(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t init;
  assert_true(tb_h_reserve_port(h) > 0);
  tb_assert_ok(tb_h_spawn(h, &init, "init", "init", "--set", "nats_connect_timeout=15s", NULL));
  tb_h_sleep_ms(1500);
  assert_true(tb_h_child_alive(&init)); /* still retrying */
  int64_t t0 = tb_h_now_ms();
  tb_assert_ok(tb_h_server_start(h));
  int status = tb_h_child_wait(&init, 12000);
  if (status != 0) {
    tb_h_dump_logs(h, 20);
    if (status < 0) tb_h_child_kill(&init);
  }
  assert_int_equal(status, 0);
  /* It connected soon after the server came up, not at the end of its 15 s. */
  assert_true(tb_h_now_ms() - t0 < 5000);
  /* And it did its work: the streams exist, the first and the last it makes among them. */
  assert_int_equal(tb_h_stream_msgs(h, "TB_CRITICAL_CRM"), 0);
  assert_int_equal(tb_h_stream_msgs(h, "TB_BACKGROUND_WORKFLOW"), 0);
  assert_int_equal(tb_h_stream_msgs(h, "TB_DLQ"), 0);
  assert_int_equal(tb_h_stream_msgs(h, "TB_CMD"), 0);
  char *out = tb_h_read_file(init.out_path);
  tb_assert_contains(out, "TB_BACKGROUND_WORKFLOW");
  free(out);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_unreachable_fails_fast, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_waits_for_late_server, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
