/* Integration: seed 001's JOB_PRIORITY numbers (CRITICAL 1, HIGH 3, NORMAL 5, LOW 7) wherever a
 * tier is accepted, read through the shipped config's tiers' job_priority: `publish --priority`,
 * an NDJSON line's priority as text or as a JSON number, `trigger --priority`, `dlq list --tier`
 * and `schedule add --priority` (test_schedule). Each message is found on the tier's streams;
 * a number no tier takes exits 2 and publishes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/itest.h"

#define RUN_MS 20000

static void test_numbers_route_to_tiers(void **state) {
  tb_h_t *h = *state;
  tb_it_start_and_init(h);
  tb_h_result_t r;

  tb_h_tierbus(h, &r, RUN_MS, "publish", "CLIENT_CREATED", "--json",
               "{\"client_id\": \"c-7\", \"user_id\": \"u\"}", "--priority", "7", "--id", "p7",
               NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_tier_msgs(h, "low"), 1);

  /* A number between two tiers' never gets a more urgent tier than asked: 2 is high. */
  tb_h_tierbus(h, &r, RUN_MS, "publish", "CLIENT_CREATED", "--json",
               "{\"client_id\": \"c-2\", \"user_id\": \"u\"}", "--priority", "2", "--id", "p2",
               NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_tier_msgs(h, "high"), 1);

  /* Past every tier's number: refused, nothing published. */
  tb_h_tierbus(h, &r, RUN_MS, "publish", "CLIENT_CREATED", "--json",
               "{\"client_id\": \"c-10\", \"user_id\": \"u\"}", "--priority", "10", NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown tier '10'");
  tb_h_result_free(&r);

  /* NDJSON: the seed's number as JSON, and as text. */
  char path[TB_H_PATH];
  tb_assert_ok(tb_h_write_file(
      h, "lines.ndjson",
      "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"client_id\": \"n-1\"}, \"priority\": 1, "
      "\"id\": \"n1\"}\n"
      "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"client_id\": \"n-5\"}, \"priority\": \"5\", "
      "\"id\": \"n5\"}\n",
      path, sizeof(path)));
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_tier_msgs(h, "critical"), 1);
  assert_int_equal(tb_h_tier_msgs(h, "normal"), 1);

  /* trigger: the run's execute-workflow goes to the number's tier. */
  tb_h_tierbus(h, &r, RUN_MS, "trigger", "ops.daily-stand-up", "--priority", "3", "--id", "t3",
               NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_tier_msgs(h, "high"), 2);

  /* A filter takes a number too. */
  tb_h_tierbus(h, &r, RUN_MS, "dlq", "list", "--tier", "3", "--json", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, RUN_MS, "dlq", "list", "--tier", "11", NULL);
  tb_assert_exit(r, 2);
  tb_h_result_free(&r);

  tb_assert_streams(h, 1, 2, 1, 1, 0);
}

int main(void) {
  tb_h_watchdog(100);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_numbers_route_to_tiers, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
