/* Unit tests for the dispatch policy: strict priority, aging at its exact boundaries, FIFO among
 * equals, holds for a higher tier's backlog, and the inversion auditor (which must catch a bad
 * pick, so it is fed bad picks on purpose). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dispatch/dispatch.h"

static tb_config_t cfg;

/* critical (no aging), high (aging 1s), normal (2s), low (5s), background (10s). */
static int setup(void **state) {
  tb_config_init(&cfg);
  static const struct {
    const char *name;
    int64_t aging_ms;
  } tiers[] = {
      {"critical", 0}, {"high", 1000}, {"normal", 2000}, {"low", 5000}, {"background", 10000}};
  cfg.n_tiers = 5;
  for (int i = 0; i < 5; i++) {
    strcpy(cfg.tiers[i].name, tiers[i].name);
    cfg.tiers[i].aging_ms = tiers[i].aging_ms;
    cfg.tiers[i].concurrency = 5;
  }
  return 0;
}

#define S 1000000LL /* one second in us */

static void test_effective_boundaries(void **state) {
  assert_int_equal(tb_dispatch_effective(&cfg, 0, 100 * S), 0); /* critical never moves */
  assert_int_equal(tb_dispatch_effective(&cfg, 4, 0), 4);
  assert_int_equal(tb_dispatch_effective(&cfg, 4, -5), 4);         /* clock skew: no boost */
  assert_int_equal(tb_dispatch_effective(&cfg, 4, 10 * S - 1), 4); /* just under one interval */
  assert_int_equal(tb_dispatch_effective(&cfg, 4, 10 * S), 3);     /* exactly one interval */
  assert_int_equal(tb_dispatch_effective(&cfg, 4, 39 * S), 1);
  assert_int_equal(tb_dispatch_effective(&cfg, 4, 40 * S), 0);
  assert_int_equal(tb_dispatch_effective(&cfg, 4, 4000 * S), 0); /* never above tier 0 */
  cfg.tiers[4].aging_ms = 0;
  assert_int_equal(tb_dispatch_effective(&cfg, 4, 4000 * S), 4); /* aging disabled */
  cfg.tiers[4].aging_ms = 10000;
}

static void test_choose_strict(void **state) {
  int64_t now = 1000 * S;
  tb_ready_head_t h[5] = {{0}};
  tb_choice_t c = tb_dispatch_choose(&cfg, h, now);
  assert_int_equal(c.tier, -1);
  h[4] = (tb_ready_head_t){.present = 1,
                           .ready_mono_us = now - 5 * S}; /* background waited 5 s: not yet aged */
  h[1] = (tb_ready_head_t){.present = 1, .ready_mono_us = now};
  c = tb_dispatch_choose(&cfg, h, now);
  assert_int_equal(c.tier, 1);
  assert_int_equal(c.boost, 0);
  assert_string_equal(c.reason, "strict");
  assert_int_equal(tb_dispatch_audit(&cfg, h, now, &c), 0);
}

static void test_choose_aged(void **state) {
  int64_t now = 1000 * S;
  tb_ready_head_t h[5] = {{0}};
  h[2] = (tb_ready_head_t){.present = 1, .ready_mono_us = now}; /* fresh normal */
  h[4] = (tb_ready_head_t){
      .present = 1, .ready_mono_us = now - 30 * S}; /* background aged 3 intervals: effective 1 */
  tb_choice_t c = tb_dispatch_choose(&cfg, h, now);
  assert_int_equal(c.tier, 4);
  assert_int_equal(c.eff_tier, 1);
  assert_int_equal(c.boost, 3);
  assert_string_equal(c.reason, "aged");
  assert_int_equal(tb_dispatch_audit(&cfg, h, now, &c), 0);
  /* Equal effective tiers: the one waiting longer goes first. */
  h[1] = (tb_ready_head_t){.present = 1, .ready_mono_us = now - 1};
  c = tb_dispatch_choose(&cfg, h, now);
  assert_int_equal(c.tier, 4);
  h[1].ready_mono_us = now - 31 * S; /* high waited longer still (and aged itself to 0) */
  c = tb_dispatch_choose(&cfg, h, now);
  assert_int_equal(c.tier, 1);
  assert_int_equal(c.eff_tier, 0);
}

/* The aging bound is the moment a waiting message overtakes every fresher critical message:
 * one microsecond earlier a fresh critical head still runs first. */
static void test_aging_bound(void **state) {
  assert_int_equal(tb_dispatch_aging_bound_us(&cfg, 0), -1); /* the top tier needs no aging */
  assert_int_equal(tb_dispatch_aging_bound_us(&cfg, 1), 1 * S);
  assert_int_equal(tb_dispatch_aging_bound_us(&cfg, 2), 4 * S);
  assert_int_equal(tb_dispatch_aging_bound_us(&cfg, 3), 15 * S);
  assert_int_equal(tb_dispatch_aging_bound_us(&cfg, 4), 40 * S);
  int64_t now = 1000 * S;
  for (int t = 1; t < 5; t++) {
    int64_t bound = tb_dispatch_aging_bound_us(&cfg, t);
    tb_ready_head_t h[5] = {{0}};
    h[0] = (tb_ready_head_t){.present = 1, .ready_mono_us = now - 1}; /* critical, just ready */
    h[t] = (tb_ready_head_t){.present = 1, .ready_mono_us = now - bound + 1};
    assert_int_equal(tb_dispatch_choose(&cfg, h, now).tier, 0);
    h[t].ready_mono_us = now - bound;
    tb_choice_t c = tb_dispatch_choose(&cfg, h, now);
    assert_int_equal(c.tier, t);
    assert_int_equal(c.eff_tier, 0);
  }
  cfg.tiers[3].aging_ms = 0;
  assert_int_equal(tb_dispatch_aging_bound_us(&cfg, 3), -1); /* aging off: no bound */
}

/* The caps: prefetch when above the concurrency; while the first tier flows, lower tiers hold
 * prefetch_yield (or their concurrency when larger), never more than their own cap. */
static void test_caps(void **state) {
  cfg.prefetch = 128;
  cfg.prefetch_yield = 32;
  cfg.tiers[0].concurrency = 50;
  cfg.tiers[1].concurrency = 200;
  assert_int_equal(tb_dispatch_ready_cap(&cfg, 0), 128);
  assert_int_equal(tb_dispatch_ready_cap(&cfg, 1), 200);
  assert_int_equal(tb_dispatch_ready_cap(&cfg, 4), 128);
  assert_int_equal(tb_dispatch_yield_cap(&cfg, 0), 128); /* the first tier never yields */
  assert_int_equal(tb_dispatch_yield_cap(&cfg, 1), 200); /* its concurrency stays */
  assert_int_equal(tb_dispatch_yield_cap(&cfg, 4), 32);
  cfg.prefetch_yield = 0;
  assert_int_equal(tb_dispatch_yield_cap(&cfg, 4), 5);
  cfg.prefetch_yield = 1000; /* above prefetch: no yield */
  assert_int_equal(tb_dispatch_yield_cap(&cfg, 4), 128);
  cfg.prefetch = 0;
  assert_int_equal(tb_dispatch_ready_cap(&cfg, 4), 5);
  assert_int_equal(tb_dispatch_yield_cap(&cfg, 4), 5);
}

static void test_audit_catches_bad_picks(void **state) {
  int64_t now = 1000 * S;
  tb_ready_head_t h[5] = {{0}};
  h[0] = (tb_ready_head_t){.present = 1, .ready_mono_us = now};
  h[3] = (tb_ready_head_t){.present = 1, .ready_mono_us = now};
  h[4] = (tb_ready_head_t){.present = 1, .ready_mono_us = now};
  tb_choice_t bad = {.tier = 4, .eff_tier = 4, .boost = 0, .reason = "strict"};
  assert_int_equal(tb_dispatch_audit(&cfg, h, now, &bad), 2); /* critical and low outrank it */
  tb_choice_t good = tb_dispatch_choose(&cfg, h, now);
  assert_int_equal(good.tier, 0);
  assert_int_equal(tb_dispatch_audit(&cfg, h, now, &good), 0);
  /* A tier with nothing ready but backlog and free slots also outranks a lower pick. */
  tb_ready_head_t b[5] = {{0}};
  b[1] = (tb_ready_head_t){.backlog = 1};
  b[3] = (tb_ready_head_t){.present = 1, .ready_mono_us = now};
  tb_choice_t c = tb_dispatch_choose(&cfg, b, now);
  assert_int_equal(c.tier, 3);
  assert_int_equal(tb_dispatch_audit(&cfg, b, now, &c), 1);
}

static void test_must_wait(void **state) {
  int64_t now = 1000 * S;
  tb_ready_head_t h[5] = {{0}};
  h[3] = (tb_ready_head_t){.present = 1, .ready_mono_us = now};
  tb_choice_t c = tb_dispatch_choose(&cfg, h, now);
  assert_int_equal(tb_dispatch_must_wait(&cfg, h, &c), 0);
  h[0].backlog = 1; /* critical is about to arrive */
  assert_int_equal(tb_dispatch_must_wait(&cfg, h, &c), 1);
  h[0].backlog = 0;
  h[4].backlog = 1; /* a lower tier's backlog never holds a higher pick */
  assert_int_equal(tb_dispatch_must_wait(&cfg, h, &c), 0);
  h[3].backlog = 1; /* nor does the chosen tier's own */
  assert_int_equal(tb_dispatch_must_wait(&cfg, h, &c), 0);
  /* An aged pick at effective 0 waits for nobody. */
  tb_ready_head_t a[5] = {{0}};
  a[4] = (tb_ready_head_t){.present = 1, .ready_mono_us = now - 40 * S};
  a[1].backlog = 1;
  c = tb_dispatch_choose(&cfg, a, now);
  assert_int_equal(c.eff_tier, 0);
  assert_int_equal(tb_dispatch_must_wait(&cfg, a, &c), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_effective_boundaries, setup),
      cmocka_unit_test_setup(test_choose_strict, setup),
      cmocka_unit_test_setup(test_choose_aged, setup),
      cmocka_unit_test_setup(test_aging_bound, setup),
      cmocka_unit_test_setup(test_audit_catches_bad_picks, setup),
      cmocka_unit_test_setup(test_must_wait, setup),
      cmocka_unit_test_setup(test_caps, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
