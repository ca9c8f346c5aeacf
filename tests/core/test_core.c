/* Unit tests for src/core: status table, duration parsing and the latency histogram. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/hist.h"
#include "core/status.h"
#include "core/sync.h"

static void test_status_text(void **state) {
  assert_string_equal(tb_strerror(TB_OK), "ok");
  assert_string_equal(tb_err_name(TB_ERR_DECODE), "ERR_DECODE");
  assert_string_equal(tb_strerror((tb_status)9999), "unknown status");
  assert_int_equal(tb__fail(TB_ERR_IO, "disk %d", 3), TB_ERR_IO);
  assert_string_equal(tb_errdetail(), "disk 3");
}

static void test_duration(void **state) {
  static const struct {
    const char *text;
    int64_t ms;
  } ok[] = {{"24h", 86400000}, {"30m", 1800000}, {"60s", 60000},   {"250ms", 250},
            {"0s", 0},         {"1500", 1500},   {"2d", 172800000}};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    int64_t v = -1;
    assert_int_equal(tb_duration_parse_ms(ok[i].text, &v), TB_OK);
    assert_int_equal(v, ok[i].ms);
  }
  static const char *bad[] = {
      "", "h", "-5s", "5x", "5 s", "99999999999999999999h", "9999999999999999h"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int64_t v = -1;
    assert_int_equal(tb_duration_parse_ms(bad[i], &v), TB_ERR_INVALID);
    assert_int_equal(v, -1);
    assert_non_null(strstr(tb_errdetail(), "duration"));
  }
}

static void test_hist_buckets_monotonic(void **state) {
  int prev = -1;
  for (int64_t v = 0; v < 5000000; v += (v < 100 ? 1 : v / 50)) {
    int b = tb_hist_bucket(v);
    assert_true(b >= prev);
    assert_true(tb_hist_bucket_upper(b) >= v); /* the bucket's bound covers the value */
    prev = b;
  }
  assert_int_equal(tb_hist_bucket(-5), 0);
  assert_int_equal(tb_hist_bucket(INT64_MAX), TB_HIST_BUCKETS - 1);
}

static void test_hist_quantiles(void **state) {
  static tb_hist_t h, g;
  tb_hist_reset(&h);
  assert_int_equal(tb_hist_quantile(&h, 0.99), 0);
  for (int i = 1; i <= 1000; i++) tb_hist_add(&h, i);
  int64_t p50 = tb_hist_quantile(&h, 0.50), p99 = tb_hist_quantile(&h, 0.99);
  assert_true(p50 >= 500 && p50 <= 500 * 1.04);
  assert_true(p99 >= 990 && p99 <= 1000);
  assert_int_equal(tb_hist_quantile(&h, 1.0), 1000);
  tb_hist_reset(&g);
  tb_hist_add(&g, 100000);
  tb_hist_merge(&g, &h);
  assert_int_equal(g.total, 1001);
  assert_int_equal(tb_hist_quantile(&g, 1.0), 100000);
}

/* A timed wait nobody signals ends with ETIMEDOUT, and not before its time on the monotonic
 * clock (a lower bound only: how late it wakes is the scheduler's business). */
static void test_cond_wait_times_out(void **state) {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv;
  assert_int_equal(tb_cond_init(&cv), 0);
  pthread_mutex_lock(&mu);
  int64_t t0 = tb_mono_us();
  int rc;
  do rc = tb_cond_wait_ms(&cv, &mu, 20); /* spurious wakeups are allowed: wait again */
  while (rc == 0);
  int64_t waited = tb_mono_us() - t0;
  assert_int_equal(rc, ETIMEDOUT);
  assert_true(waited >= 20000);
  /* A negative wait is a deadline already passed: it times out at once. */
  do rc = tb_cond_wait_ms(&cv, &mu, -5);
  while (rc == 0);
  assert_int_equal(rc, ETIMEDOUT);
  pthread_mutex_unlock(&mu);
  pthread_cond_destroy(&cv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_text),
      cmocka_unit_test(test_duration),
      cmocka_unit_test(test_hist_buckets_monotonic),
      cmocka_unit_test(test_hist_quantiles),
      cmocka_unit_test(test_cond_wait_times_out),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
