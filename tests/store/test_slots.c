/* Unit: seed 001's service slots (store/slots.h) on a real SQLite file opened by two stores, as
 * two worker processes open it: the limit counts the slots of both, a step taking its slot again
 * does not count against itself, expired slots stop counting, and release frees them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/status.h"
#include "store/slots.h"
#include "store/store.h"

#define NOW 1000000000LL
#define LATER (NOW + 60000000LL)

/* Takes a slot in a transaction of its own on |st|; returns *got. */
static int take(tb_store_t *st, const char *service, const char *wf, const char *step, int limit,
                int64_t now) {
  int got = -1;
  assert_int_equal(tb_store_begin(st), TB_OK);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "%s:%s:1", wf, step);
  assert_int_equal(
      tb_store_slot_acquire(st, service, wf, step, cmd, limit, now, LATER, LATER, &got, NULL),
      TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  return got;
}

static int64_t in_use(tb_store_t *st, const char *service, int64_t now) {
  int64_t n = -1;
  assert_int_equal(tb_store_slot_in_use(st, service, now, &n), TB_OK);
  return n;
}

static void release(tb_store_t *st, const char *wf, const char *step) {
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_store_slot_release(st, wf, step), TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
}

static void test_limit_across_connections(void **state) {
  (void)state;
  char path[] = "/tmp/tb-slots-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  unlink(path);
  tb_store_t *a = NULL, *b = NULL;
  assert_int_equal(tb_store_open(&a, path), TB_OK);
  assert_int_equal(tb_store_open(&b, path), TB_OK);

  /* Limit 2: one slot from each connection, then neither gets a third. */
  assert_int_equal(take(a, "pdf", "wf-1", "gen", 2, NOW), 1);
  assert_int_equal(take(b, "pdf", "wf-2", "gen", 2, NOW), 1);
  assert_int_equal(take(a, "pdf", "wf-3", "gen", 2, NOW), 0);
  assert_int_equal(take(b, "pdf", "wf-3", "gen", 2, NOW), 0);
  assert_int_equal(in_use(a, "pdf", NOW), 2);
  /* Another service has its own count. */
  assert_int_equal(take(b, "ai", "wf-3", "plan", 1, NOW), 1);
  assert_int_equal(take(a, "ai", "wf-4", "plan", 1, NOW), 0);
  /* A step that holds its slot may take it again (a retry's new command). */
  assert_int_equal(take(b, "pdf", "wf-1", "gen", 2, NOW), 1);
  assert_int_equal(in_use(a, "pdf", NOW), 2);

  /* Released on one connection, free on the other. */
  release(a, "wf-2", "gen");
  assert_int_equal(in_use(b, "pdf", NOW), 1);
  assert_int_equal(take(b, "pdf", "wf-3", "gen", 2, NOW), 1);
  /* Releasing what is not held does nothing. */
  release(b, "wf-9", "gen");
  assert_int_equal(in_use(a, "pdf", NOW), 2);

  /* Past their deadline slots stop counting (a run that never came back), and are dropped by
   * the next acquire. */
  assert_int_equal(in_use(a, "pdf", LATER), 0);
  assert_int_equal(take(a, "pdf", "wf-5", "gen", 1, LATER), 1);
  assert_int_equal(in_use(a, "pdf", NOW), 1);

  /* A run's every slot at once (cancel). */
  release(b, "wf-3", NULL);
  assert_int_equal(in_use(a, "ai", NOW), 0);

  tb_store_close(a);
  tb_store_close(b);
  unlink(path);
  char side[64];
  snprintf(side, sizeof(side), "%s-wal", path);
  unlink(side);
  snprintf(side, sizeof(side), "%s-shm", path);
  unlink(side);
}

/* Waiting steps get the slots in the order they first waited: a newer step never jumps the
 * line, however often it tries; a waiting row that is not renewed gives its place up. */
static void test_fifo_among_waiters(void **state) {
  (void)state;
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, ":memory:"), TB_OK);
  assert_int_equal(take(st, "ai", "wf-a", "plan", 1, NOW), 1);
  assert_int_equal(take(st, "ai", "wf-b", "plan", 1, NOW + 1), 0); /* waits since NOW + 1 */
  assert_int_equal(take(st, "ai", "wf-c", "plan", 1, NOW + 2), 0); /* waits since NOW + 2 */
  assert_int_equal(take(st, "ai", "wf-b", "plan", 1, NOW + 3), 0); /* keeps its place */
  assert_int_equal(in_use(st, "ai", NOW + 3), 1);                  /* waiters do not count */
  release(st, "wf-a", "plan");
  assert_int_equal(take(st, "ai", "wf-c", "plan", 1, NOW + 4), 0); /* wf-b is ahead */
  assert_int_equal(take(st, "ai", "wf-b", "plan", 1, NOW + 5), 1);
  release(st, "wf-b", "plan");
  assert_int_equal(take(st, "ai", "wf-c", "plan", 1, NOW + 6), 1);
  release(st, "wf-c", "plan");

  /* Limit 2 with one free slot: only the first in line may take it. */
  assert_int_equal(take(st, "pdf", "p1", "gen", 2, NOW), 1);
  assert_int_equal(take(st, "pdf", "p2", "gen", 2, NOW), 1);
  assert_int_equal(take(st, "pdf", "p3", "gen", 2, NOW + 1), 0);
  assert_int_equal(take(st, "pdf", "p4", "gen", 2, NOW + 2), 0);
  release(st, "p1", "gen");
  assert_int_equal(take(st, "pdf", "p4", "gen", 2, NOW + 3), 0);
  assert_int_equal(take(st, "pdf", "p3", "gen", 2, NOW + 3), 1);

  /* A waiter that stopped trying: its row expires (here at LATER) and the next may go. */
  release(st, "p2", "gen");
  release(st, "p3", "gen");
  assert_int_equal(take(st, "pdf", "p5", "gen", 2, LATER + 1), 1); /* p4's place expired */
  tb_store_close(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_limit_across_connections),
      cmocka_unit_test(test_fifo_among_waiters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
