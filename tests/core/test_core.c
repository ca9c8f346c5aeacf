/* Unit tests for src/core: status table, duration parsing, the latency histogram, monotonic waits
 * and the background-thread loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <cmocka.h>

#include "core/bgthread.h"
#include "core/clock.h"
#include "core/hist.h"
#include "core/status.h"
#include "core/sync.h"

static void test_status_text(void **state) {
  assert_string_equal(tb_strerror(TB_OK), "ok");
  assert_string_equal(tb_err_name(TB_ERR_DECODE), "ERR_DECODE");
  /* What a stub returns, so that a user reads "not implemented", never "invalid argument". */
  assert_string_equal(tb_strerror(TB_ERR_NOT_IMPLEMENTED), "not implemented");
  assert_string_equal(tb_err_name(TB_ERR_NOT_IMPLEMENTED), "ERR_NOT_IMPLEMENTED");
  assert_string_equal(tb_strerror((tb_status)9999), "unknown status");
  assert_int_equal(tb__fail(TB_ERR_IO, "disk %d", 3), TB_ERR_IO);
  assert_string_equal(tb_errdetail(), "disk 3");
  /* The current detail as an argument: prefixed, repeated, or kept under another status. */
  assert_int_equal(tb__fail(TB_ERR_CONFIG, "x.yaml: %s", tb_errdetail()), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "x.yaml: disk 3");
  tb__fail(TB_ERR_IO, "%s / %s", tb_errdetail(), tb_errdetail());
  assert_string_equal(tb_errdetail(), "x.yaml: disk 3 / x.yaml: disk 3");
  assert_int_equal(tb__fail(TB_ERR_UNAVAILABLE, "%s", tb_errdetail()), TB_ERR_UNAVAILABLE);
  assert_string_equal(tb_errdetail(), "x.yaml: disk 3 / x.yaml: disk 3");
  /* A detail longer than the buffer is cut, and still terminated; prefixing it keeps it so. */
  char long_text[3000];
  memset(long_text, 'a', sizeof(long_text) - 1);
  long_text[sizeof(long_text) - 1] = '\0';
  tb__fail(TB_ERR_IO, "%s", long_text);
  size_t cap = strlen(tb_errdetail());
  assert_true(cap > 0 && cap < sizeof(long_text) - 1);
  tb__fail(TB_ERR_IO, "p: %s", tb_errdetail());
  assert_int_equal(strlen(tb_errdetail()), cap);
  assert_memory_equal(tb_errdetail(), "p: aaa", 6);
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

/* ------------------------------------------------------------------------------------------------
 * Background threads
 * --------------------------------------------------------------------------------------------- */

/* What a test tick saw: how often it ran, how often with |stopping|, and when it first ran. */
typedef struct ticks {
  atomic_int n;
  atomic_int n_stopping;
  atomic_llong first_us;
  int64_t next;    /* what the tick returns while not stopping */
  int drain_ticks; /* stopping ticks before it returns TB_BGTHREAD_EXIT */
  int exit_after;  /* > 0: return TB_BGTHREAD_EXIT from this tick on */
} ticks_t;

static int64_t count_tick(void *arg, int stopping) {
  ticks_t *t = arg;
  int n = atomic_fetch_add(&t->n, 1) + 1;
  if (n == 1) atomic_store(&t->first_us, tb_mono_us());
  if (stopping)
    return atomic_fetch_add(&t->n_stopping, 1) + 1 >= t->drain_ticks ? TB_BGTHREAD_EXIT : 0;
  if (t->exit_after > 0 && n >= t->exit_after) return TB_BGTHREAD_EXIT;
  return t->next;
}

/* Waits up to 5 s for |t| to reach |n| ticks; returns whether it did. */
static int wait_ticks(ticks_t *t, int n) {
  for (int64_t end = tb_mono_us() + 5000000; tb_mono_us() < end; tb_sleep_us(1000))
    if (atomic_load(&t->n) >= n) return 1;
  return 0;
}

/* Every way to start wrong is a status with a detail, and leaves *out alone; stopping NULL (the
 * handle of a thread never started) is a no-op. */
static void test_bgthread_start_rejects(void **state) {
  ticks_t t = {.next = TB_BGTHREAD_PERIODIC};
  tb_bgthread_t *bg = (tb_bgthread_t *)&t; /* a sentinel: must survive the failures */
  assert_int_equal(tb_bgthread_start(&bg, &(tb_bgthread_opts_t){.name = "x", .interval_ms = 10}),
                   TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "x: no tick"));
  assert_int_equal(
      tb_bgthread_start(&bg, &(tb_bgthread_opts_t){.name = "x", .tick = count_tick, .arg = &t}),
      TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "interval 0 ms"));
  assert_int_equal(tb_bgthread_start(&bg, NULL), TB_ERR_INVALID);
  assert_ptr_equal(bg, (tb_bgthread_t *)&t);
  assert_int_equal(atomic_load(&t.n), 0);
  tb_bgthread_stop(NULL);
  tb_bgthread_kick(NULL);
}

/* A periodic thread ticks at once, then once per interval and not before it; a stop ends it
 * without another tick. */
static void test_bgthread_periodic(void **state) {
  ticks_t t = {.next = TB_BGTHREAD_PERIODIC};
  tb_bgthread_t *bg = NULL;
  int64_t t0 = tb_mono_us();
  assert_int_equal(tb_bgthread_start(&bg, &(tb_bgthread_opts_t){.name = "periodic",
                                                                .tick = count_tick,
                                                                .arg = &t,
                                                                .interval_ms = 30}),
                   TB_OK);
  assert_true(wait_ticks(&t, 3));
  int64_t took = tb_mono_us() - t0;
  tb_bgthread_stop(bg);
  assert_true(atomic_load(&t.first_us) - t0 < 30000); /* the first tick did not wait */
  assert_true(took >= 2 * 30000);                     /* two full intervals between three ticks */
  assert_int_equal(atomic_load(&t.n_stopping), 0);
}

/* delay_first: the first tick comes one interval in, so a stop before then runs none; a kick
 * brings it forward. */
static void test_bgthread_delay_first_and_kick(void **state) {
  ticks_t t = {.next = TB_BGTHREAD_PERIODIC};
  tb_bgthread_t *bg = NULL;
  tb_bgthread_opts_t o = {
      .name = "delayed", .tick = count_tick, .arg = &t, .interval_ms = 60000, .delay_first = 1};
  assert_int_equal(tb_bgthread_start(&bg, &o), TB_OK);
  tb_sleep_us(20000);
  tb_bgthread_stop(bg);
  assert_int_equal(atomic_load(&t.n), 0);

  assert_int_equal(tb_bgthread_start(&bg, &o), TB_OK);
  tb_sleep_us(20000);
  assert_int_equal(atomic_load(&t.n), 0);
  tb_bgthread_kick(bg);
  assert_true(wait_ticks(&t, 1));
  tb_bgthread_kick(bg); /* the interval is a minute: only a kick makes the second tick */
  assert_true(wait_ticks(&t, 2));
  tb_bgthread_stop(bg);
  assert_int_equal(atomic_load(&t.n), 2);
}

/* A draining thread goes on ticking with |stopping| after the stop until its tick says it is
 * done; a tick that returns TB_BGTHREAD_EXIT ends the thread, which a stop still joins. */
static void test_bgthread_drain_and_exit(void **state) {
  ticks_t t = {.next = TB_BGTHREAD_PERIODIC, .drain_ticks = 3};
  tb_bgthread_t *bg = NULL;
  assert_int_equal(tb_bgthread_start(&bg, &(tb_bgthread_opts_t){.name = "drain",
                                                                .tick = count_tick,
                                                                .arg = &t,
                                                                .interval_ms = 60000,
                                                                .drain = 1}),
                   TB_OK);
  assert_true(wait_ticks(&t, 1));
  tb_bgthread_stop(bg);
  assert_int_equal(atomic_load(&t.n_stopping), 3);
  assert_int_equal(atomic_load(&t.n), 4);

  ticks_t e = {.next = 0, .exit_after = 5}; /* 0: tick again at once, until the fifth */
  assert_int_equal(tb_bgthread_start(&bg, &(tb_bgthread_opts_t){.name = "exit",
                                                                .tick = count_tick,
                                                                .arg = &e,
                                                                .interval_ms = 60000}),
                   TB_OK);
  assert_true(wait_ticks(&e, 5));
  tb_sleep_us(20000);
  assert_int_equal(atomic_load(&e.n), 5);
  tb_bgthread_kick(bg); /* the thread has ended: a kick is harmless */
  tb_bgthread_stop(bg);
  assert_int_equal(atomic_load(&e.n), 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_text),
      cmocka_unit_test(test_duration),
      cmocka_unit_test(test_hist_buckets_monotonic),
      cmocka_unit_test(test_hist_quantiles),
      cmocka_unit_test(test_cond_wait_times_out),
      cmocka_unit_test(test_bgthread_start_rejects),
      cmocka_unit_test(test_bgthread_periodic),
      cmocka_unit_test(test_bgthread_delay_first_and_kick),
      cmocka_unit_test(test_bgthread_drain_and_exit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
