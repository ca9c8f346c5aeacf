/* cmocka glue for the integration tests: the harness plus assertions that print the evidence
 * (the command's output, the text searched) when they fail, since a bare "0 != 2" from a child
 * process says nothing about why. */
#ifndef TB_TESTS_SUPPORT_ITEST_H
#define TB_TESTS_SUPPORT_ITEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "support/harness.h"

/* Fails unless |needle| occurs in |hay|, printing both. */
#define tb_assert_contains(hay, needle)                                                            \
  do {                                                                                             \
    const char *tb_hay_ = (hay), *tb_needle_ = (needle);                                           \
    if (tb_hay_ == NULL || strstr(tb_hay_, tb_needle_) == NULL) {                                  \
      print_error("expected to find \"%s\" in:\n%s\n", tb_needle_, tb_hay_ ? tb_hay_ : "(null)");  \
      fail();                                                                                      \
    }                                                                                              \
  } while (0)

/* Fails unless |needle| is absent from |hay|. */
#define tb_assert_not_contains(hay, needle)                                                        \
  do {                                                                                             \
    const char *tb_hay_ = (hay), *tb_needle_ = (needle);                                           \
    if (tb_hay_ != NULL && strstr(tb_hay_, tb_needle_) != NULL) {                                  \
      print_error("did not expect \"%s\" in:\n%s\n", tb_needle_, tb_hay_);                         \
      fail();                                                                                      \
    }                                                                                              \
  } while (0)

/* Fails unless the run |r| (a tb_h_result_t) exited with |code|, printing its output. */
#define tb_assert_exit(r, code)                                                                    \
  do {                                                                                             \
    const tb_h_result_t *tb_r_ = &(r);                                                             \
    if (tb_r_->status != (code)) {                                                                 \
      print_error("exit status %d, expected %d%s\n--- stdout ---\n%s\n--- stderr ---\n%s\n",       \
                  tb_r_->status, (code), tb_r_->timed_out ? " (timed out)" : "",                   \
                  tb_r_->out ? tb_r_->out : "", tb_r_->err ? tb_r_->err : "");                     \
      fail();                                                                                      \
    }                                                                                              \
  } while (0)

/* Fails unless the harness call returned TB_OK. */
#define tb_assert_ok(expr) assert_int_equal((int)(expr), (int)TB_OK)

/* Starts the test's nats-server and runs `tierbus init` against it, which must exit 0. */
static inline void tb_it_start_and_init(tb_h_t *h) {
  tb_h_result_t r;
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, 20000, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* Fails unless the shipped config's tiers hold |c|, |hi|, |n|, |l| and |b| messages (critical
 * ... background), each summed over its domains' streams, naming the first that does not. */
static inline void tb_assert_streams(tb_h_t *h, int64_t c, int64_t hi, int64_t n, int64_t l,
                                     int64_t b) {
  static const char *const tiers[] = {"critical", "high", "normal", "low", "background"};
  const int64_t want[] = {c, hi, n, l, b};
  for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
    int64_t got = tb_h_tier_msgs(h, tiers[i]);
    if (got != want[i])
      print_error("tier %s holds %lld messages, expected %lld\n", tiers[i], (long long)got,
                  (long long)want[i]);
    assert_int_equal(got, want[i]);
  }
}

#endif
