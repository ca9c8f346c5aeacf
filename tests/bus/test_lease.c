/* Integration test of leases (bus/lease.h) against a real nats-server -js: one holder at a time,
 * renewal keeps it, a holder that stops renewing has stopped acting before a contender takes
 * over, a release hands over at once, and the listing shows who holds what. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/bus.h"
#include "bus/lease.h"
#include "bus/server.h"
#include "core/clock.h"
#include "core/status.h"

#define TTL_MS 1000
#define STEP_MS 50

typedef struct fixture {
  char dir[64];
  tb_server_t srv;
  tb_config_t cfg;
  tb_bus_t *bus[2]; /* one connection per contender, as two processes would have */
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  strcpy(f->dir, "/tmp/tb-lease-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(tb_server_start(&f->srv, f->dir, 0, NULL, 10000), TB_OK);
  tb_config_init(&f->cfg);
  for (int i = 0; i < 2; i++) assert_int_equal(tb_bus_connect(&f->bus[i], f->srv.url, "t"), TB_OK);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  for (int i = 0; i < 2; i++) tb_bus_destroy(f->bus[i]);
  tb_server_stop(&f->srv, 5000);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  if (system(cmd) != 0) return -1;
  free(f);
  return 0;
}

static tb_lease_t *open_lease(fixture_t *f, int i, const char *holder) {
  tb_lease_t *l = NULL;
  assert_int_equal(tb_lease_open(&l, f->bus[i], &f->cfg, "duty", holder, TTL_MS), TB_OK);
  return l;
}

static int tick(tb_lease_t *l) {
  int held = -1;
  assert_int_equal(tb_lease_tick(l, &held), TB_OK);
  assert_int_equal(held, tb_lease_held(l));
  return held;
}

/* Both tick for three ttls: the first to ask holds throughout, the other never does. */
static void test_one_holder(void **state) {
  fixture_t *f = *state;
  tb_lease_t *a = open_lease(f, 0, "a"), *b = open_lease(f, 1, "b");
  assert_int_equal(tb_lease_held(a), 0);
  assert_int_equal(tick(a), 1);
  int64_t end = tb_mono_us() + 3 * TTL_MS * 1000;
  while (tb_mono_us() < end) {
    assert_int_equal(tick(b), 0);
    assert_int_equal(tick(a), 1);
    tb_sleep_us(STEP_MS * 1000);
  }
  tb_lease_close(a);
  tb_lease_close(b);
}

/* The holder stops renewing (a process frozen or killed). The contender takes over no sooner
 * than a ttl after it first saw the last renewal, and by then the old holder has stopped acting;
 * once the old holder ticks again it learns it lost. */
static void test_takeover_after_ttl(void **state) {
  fixture_t *f = *state;
  tb_lease_t *a = open_lease(f, 0, "a"), *b = open_lease(f, 1, "b");
  assert_int_equal(tick(a), 1);
  assert_int_equal(tick(b), 0); /* b sees a's revision from here */
  int64_t seen = tb_mono_us();
  int64_t took = 0;
  while (took == 0 && tb_mono_us() - seen < 3 * TTL_MS * 1000) {
    tb_sleep_us(STEP_MS * 1000);
    int a_acting = tb_lease_held(a);
    if (tick(b)) {
      took = tb_mono_us();
      /* Never both: a had stopped before b started. */
      assert_int_equal(a_acting, 0);
      assert_int_equal(tb_lease_held(a), 0);
    }
  }
  assert_true(took != 0);
  assert_true(took - seen >= TTL_MS * 1000);
  assert_true(took - seen < TTL_MS * 1000 + 1000000);
  /* a comes back: b holds now, and b renewing keeps a out. */
  for (int i = 0; i < 5; i++) {
    assert_int_equal(tick(a), 0);
    assert_int_equal(tick(b), 1);
  }
  tb_lease_close(a);
  tb_lease_close(b);
}

/* A released lease is free at once: no ttl to wait. */
static void test_release_hands_over(void **state) {
  fixture_t *f = *state;
  tb_lease_t *a = open_lease(f, 0, "a"), *b = open_lease(f, 1, "b");
  assert_int_equal(tick(a), 1);
  assert_int_equal(tick(b), 0);
  tb_lease_release(a);
  assert_int_equal(tb_lease_held(a), 0);
  assert_int_equal(tick(b), 1);
  assert_int_equal(tick(a), 0);
  tb_lease_close(b); /* closing releases too */
  assert_int_equal(tick(a), 1);
  tb_lease_close(a);
}

/* The listing names each lease, its holder (none once released) and its ttl. */
static void test_list(void **state) {
  fixture_t *f = *state;
  tb_lease_info_t li[4];
  int n = -1;
  assert_int_equal(tb_lease_list(f->bus[0], &f->cfg, li, 4, &n), TB_OK);
  assert_int_equal(n, 0); /* no bucket yet */
  tb_lease_t *a = open_lease(f, 0, "host/1/ab");
  tb_lease_t *c = NULL;
  assert_int_equal(tb_lease_open(&c, f->bus[1], &f->cfg, "another", "host/2/cd", 5000), TB_OK);
  assert_int_equal(tick(a), 1);
  assert_int_equal(tick(c), 1);
  tb_lease_release(c);
  assert_int_equal(tb_lease_list(f->bus[0], &f->cfg, li, 4, &n), TB_OK);
  assert_int_equal(n, 2);
  assert_string_equal(li[0].name, "another");
  assert_string_equal(li[0].holder, "");
  assert_string_equal(li[1].name, "duty");
  assert_string_equal(li[1].holder, "host/1/ab");
  assert_int_equal(li[1].ttl_ms, TTL_MS);
  assert_true(li[1].revision > 0);
  tb_lease_close(a);
  tb_lease_close(c);
}

static void test_bad_arguments(void **state) {
  fixture_t *f = *state;
  tb_lease_t *l = NULL;
  assert_int_equal(tb_lease_open(&l, f->bus[0], &f->cfg, "a b", "h", TTL_MS), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "a b"));
  assert_int_equal(tb_lease_open(&l, f->bus[0], &f->cfg, "", "h", TTL_MS), TB_ERR_INVALID);
  assert_int_equal(tb_lease_open(&l, f->bus[0], &f->cfg, "x", "", TTL_MS), TB_ERR_INVALID);
  assert_int_equal(tb_lease_open(&l, f->bus[0], &f->cfg, "x", "h", 299), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "299"));
  assert_null(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_one_holder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_takeover_after_ttl, setup, teardown),
      cmocka_unit_test_setup_teardown(test_release_hands_over, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
