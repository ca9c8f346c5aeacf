/* Unit tests for step retry policies: every backoff kind with its exact delays, the cap, overflow,
 * maxAttempts at its boundary, retryOn, failures without a status, and validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "workflows/retry.h"

static tb_retry_policy_t policy(tb_backoff b, int64_t initial, int64_t cap) {
  tb_retry_policy_t p = {
      .max_attempts = 10, .backoff = b, .initial_delay_ms = initial, .max_delay_ms = cap};
  return p;
}

static void test_delays_by_kind(void **state) {
  static const struct {
    tb_backoff kind;
    int64_t want[6]; /* after failed attempts 1..6, initial 1000, no cap */
  } cases[] = {
      {TB_BACKOFF_CONSTANT, {1000, 1000, 1000, 1000, 1000, 1000}},
      {TB_BACKOFF_LINEAR, {1000, 2000, 3000, 4000, 5000, 6000}},
      {TB_BACKOFF_EXPONENTIAL, {1000, 2000, 4000, 8000, 16000, 32000}},
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    tb_retry_policy_t p = policy(cases[c].kind, 1000, 0);
    for (int n = 1; n <= 6; n++) assert_int_equal(tb_retry_delay_ms(&p, n), cases[c].want[n - 1]);
  }
}

static void test_cap_and_overflow(void **state) {
  tb_retry_policy_t p = policy(TB_BACKOFF_EXPONENTIAL, 1000, 60000);
  assert_int_equal(tb_retry_delay_ms(&p, 6), 32000);
  assert_int_equal(tb_retry_delay_ms(&p, 7), 60000); /* 64 s capped */
  assert_int_equal(tb_retry_delay_ms(&p, 1000), 60000);
  p.max_delay_ms = 0; /* uncapped: saturates rather than overflowing */
  assert_int_equal(tb_retry_delay_ms(&p, 200), INT64_MAX);
  tb_retry_policy_t l = policy(TB_BACKOFF_LINEAR, INT64_MAX / 2, 0);
  assert_int_equal(tb_retry_delay_ms(&l, 3), INT64_MAX);
  tb_retry_policy_t z = policy(TB_BACKOFF_EXPONENTIAL, 0, 0);
  assert_int_equal(tb_retry_delay_ms(&z, 50), 0);
  assert_int_equal(tb_retry_delay_ms(&p, 0), 1000); /* attempt numbers start at 1 */
}

static void test_seed_policy(void **state) {
  tb_retry_policy_t p;
  tb_retry_policy_seed_default(&p);
  assert_int_equal(tb_retry_policy_validate(&p), TB_OK);
  /* A 429 on the first attempt: retried after 1 s. */
  tb_retry_decision_t d = tb_retry_decide(&p, 1, 429);
  assert_int_equal(d.retry, 1);
  assert_int_equal(d.delay_ms, 1000);
  assert_int_equal(tb_retry_decide(&p, 3, 503).delay_ms, 4000);
  /* A 400 is not in retryOn: no retry, whatever the attempt. */
  d = tb_retry_decide(&p, 1, 400);
  assert_int_equal(d.retry, 0);
  assert_string_equal(d.reason, "status not in retryOn");
  /* A timeout carries no status: retried. */
  assert_int_equal(tb_retry_decide(&p, 2, 0).retry, 1);
  /* maxAttempts 5: the 4th failure still retries, the 5th does not. */
  assert_int_equal(tb_retry_decide(&p, 4, 500).retry, 1);
  d = tb_retry_decide(&p, 5, 500);
  assert_int_equal(d.retry, 0);
  assert_string_equal(d.reason, "attempts exhausted");
}

static void test_retry_on_empty_means_any(void **state) {
  tb_retry_policy_t p = policy(TB_BACKOFF_CONSTANT, 10, 0);
  p.max_attempts = 2;
  assert_int_equal(tb_retry_decide(&p, 1, 418).retry, 1);
  assert_int_equal(tb_retry_decide(&p, 2, 418).retry, 0);
  p.max_attempts = 1; /* never retry */
  assert_int_equal(tb_retry_decide(&p, 1, 0).retry, 0);
}

static void test_validate(void **state) {
  tb_retry_policy_t p = policy(TB_BACKOFF_LINEAR, 1000, 5000);
  assert_int_equal(tb_retry_policy_validate(&p), TB_OK);
  p.max_attempts = 0;
  assert_int_equal(tb_retry_policy_validate(&p), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "maxAttempts"));
  p.max_attempts = 1000;
  assert_int_equal(tb_retry_policy_validate(&p), TB_OK);
  p.max_attempts = 1001;
  assert_int_equal(tb_retry_policy_validate(&p), TB_ERR_INVALID);
  p.max_attempts = 3;
  p.max_delay_ms = 999; /* below the initial delay */
  assert_int_equal(tb_retry_policy_validate(&p), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "maxDelay"));
  p.max_delay_ms = 1000;
  assert_int_equal(tb_retry_policy_validate(&p), TB_OK);
  p.initial_delay_ms = -1;
  assert_int_equal(tb_retry_policy_validate(&p), TB_ERR_INVALID);
  p.initial_delay_ms = 0;
  p.n_retry_on = 1;
  p.retry_on[0] = 99;
  assert_int_equal(tb_retry_policy_validate(&p), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "retryOn[0]"));
  p.retry_on[0] = 100;
  assert_int_equal(tb_retry_policy_validate(&p), TB_OK);
  p.retry_on[0] = 600;
  assert_int_equal(tb_retry_policy_validate(&p), TB_ERR_INVALID);
}

static void test_backoff_names(void **state) {
  tb_backoff b = TB_BACKOFF_CONSTANT;
  assert_int_equal(tb_backoff_parse("exponential", &b), TB_OK);
  assert_int_equal(b, TB_BACKOFF_EXPONENTIAL);
  assert_string_equal(tb_backoff_name(TB_BACKOFF_LINEAR), "linear");
  assert_int_equal(tb_backoff_parse("Exponential", &b), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "'Exponential'"));
  assert_int_equal(tb_backoff_parse(NULL, &b), TB_ERR_INVALID);
  assert_int_equal(b, TB_BACKOFF_EXPONENTIAL); /* unchanged on failure */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_delays_by_kind), cmocka_unit_test(test_cap_and_overflow),
      cmocka_unit_test(test_seed_policy),    cmocka_unit_test(test_retry_on_empty_means_any),
      cmocka_unit_test(test_validate),       cmocka_unit_test(test_backoff_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
