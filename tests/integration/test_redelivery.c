/* Integration: the redelivery bound. The consumers' AckWait is redelivery_bound (3 s here), not
 * the tiers' handler timeouts (5 minutes here, the shipped value for high): a worker killed with
 * SIGKILL releases what it held within the bound, and a live worker keeps what it holds, however
 * long it holds it, with in-progress acks. After the kills the state's checksum equals that of
 * the same log rebuilt without them. */
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 30000
#define BOUND_MS 3000

static const char config_yaml[] = "redelivery_bound: 3s\n"
                                  "tiers:\n"
                                  "  - {name: critical, timeout: 2m, concurrency: 50}\n"
                                  "  - {name: high, timeout: 5m, concurrency: 30}\n"
                                  "  - {name: normal, timeout: 15m, concurrency: 15}\n"
                                  "  - {name: low, timeout: 30m, concurrency: 8}\n"
                                  "  - {name: background, timeout: 60m, concurrency: 5}\n";

/* AckWait of the high tier's workspace consumer in ms, -1 if it cannot be read. */
static int64_t ack_wait_ms(tb_h_t *h) {
  jsConsumerInfo *ci = NULL;
  if (js_GetConsumerInfo(&ci, tb_h_js(h), "TB_HIGH_WORKSPACE", "tb-high-workspace", NULL, NULL) !=
      NATS_OK)
    return -1;
  int64_t ms = ci->Config->AckWait / 1000000;
  jsConsumerInfo_Destroy(ci);
  return ms;
}

static void setup_events(tb_h_t *h, int events, char *batch, size_t cap) {
  tb_h_result_t r;
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", config_yaml));
  tb_assert_ok(tb_h_write_events(h, "events.ndjson", "k", 0, events, NULL, batch, cap));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(ack_wait_ms(h), BOUND_MS); /* the bound, not the tier's 5 min */
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", batch, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* `init` moves consumers created with another bound to the configured one. */
static void test_init_updates_ack_wait(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", config_yaml));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", "--set", "redelivery_bound=45s", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(ack_wait_ms(h), 45000);
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(ack_wait_ms(h), BOUND_MS);
}

/* A worker killed again and again through the run: nothing lost, no effect twice, and the last
 * one's stranded messages come back within the bound (with the tier's 5 min AckWait they would wait
 * 5 minutes). */
static void test_kill_loop_within_bound(void **state) {
  tb_h_t *h = *state;
  enum { EVENTS = 40000, KILLS = 4 };
  char batch[TB_H_PATH];
  setup_events(h, EVENTS, batch, sizeof(batch));
  tb_h_child_t w;
  char name[32];
  int64_t last_kill = 0, at_kill = 0;
  for (int k = 0; k <= KILLS; k++) {
    snprintf(name, sizeof(name), "worker%d", k);
    tb_assert_ok(tb_h_spawn(h, &w, name, "worker", "--set", "commit_batch_max=64", NULL));
    if (k == KILLS) break;
    /* Each kill after the worker got through its share, so that every kill strands messages
     * mid-stream and the last one leaves a sixth of the run behind. */
    tb_h_wait_sql(h, (int64_t)(k + 1) * EVENTS / (KILLS + 2), 20000,
                  "SELECT count(*) FROM processed");
    int64_t ack_pending = 0;
    tb_h_consumer_info(h, "TB_HIGH_WORKSPACE", NULL, NULL, NULL, &ack_pending);
    tb_h_child_kill(&w);
    last_kill = tb_h_now_ms();
    at_kill = tb_h_sql_int(h, "SELECT count(*) FROM processed");
    print_message("kill %d: %lld processed, %lld unacked\n", k + 1, (long long)at_kill,
                  (long long)ack_pending);
  }
  assert_true(at_kill < EVENTS); /* the last kill left work, and stranded messages, behind */
  assert_int_equal(tb_h_wait_sql(h, EVENTS, 20000, "SELECT count(*) FROM processed"), EVENTS);
  int64_t took = tb_h_now_ms() - last_kill;
  print_message("all %d processed %lld ms after the last kill (bound %d ms)\n", EVENTS,
                (long long)took, BOUND_MS);
  /* The bound, plus the rest of the backlog's processing and the test's polling. */
  assert_true(took < BOUND_MS + 7000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM processed"), EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM activity_log"), EVENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);
  assert_int_equal(tb_h_child_term(&w, 20000), 0);
  /* The state equals a run without kills: the same log rebuilt into an empty database by one
   * uninterrupted pass reaches the same checksum. */
  char clean[TB_H_PATH];
  tb_h_path(h, "clean.db", clean, sizeof(clean));
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "rebuild", "--db", clean, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  char sums[2][64];
  for (int i = 0; i < 2; i++) {
    if (i == 0)
      tb_h_tierbus(h, &r, RUN_MS, "db", "checksum", NULL);
    else
      tb_h_tierbus(h, &r, RUN_MS, "db", "checksum", "--db", clean, NULL);
    tb_assert_exit(r, 0);
    snprintf(sums[i], sizeof(sums[i]), "%.32s", r.out);
    tb_h_result_free(&r);
  }
  print_message("checksum after the kills %s, of a run without them %s\n", sums[0], sums[1]);
  assert_string_equal(sums[0], sums[1]);
}

/* The database's write lock is held for three bounds while the worker holds a ready queue and an
 * open batch: its in-progress acks keep every message, so nothing is delivered twice. */
static void test_held_messages_renewed(void **state) {
  tb_h_t *h = *state;
  /* The first events create the database; the lock is taken once they are in, and the rest are
   * published only then, so the worker holds them whatever its speed (taking the lock while it
   * ran found it, under ASan and on a fast run alike, already done). */
  enum { FIRST = 100, EVENTS = 3000 };
  char batch[TB_H_PATH];
  setup_events(h, FIRST, batch, sizeof(batch));
  tb_h_child_t w;
  tb_assert_ok(tb_h_spawn(h, &w, "worker", "worker", "--set", "commit_batch_max=16", "--set",
                          "prefetch=256", NULL));
  assert_int_equal(tb_h_wait_sql(h, FIRST, 20000, "SELECT count(*) FROM processed"), FIRST);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(h->db, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  int64_t held_from = tb_h_sql_int(h, "SELECT count(*) FROM processed");
  char more[TB_H_PATH];
  tb_assert_ok(
      tb_h_write_events(h, "more.ndjson", "m", 0, EVENTS - FIRST, NULL, more, sizeof(more)));
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", more, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_h_sleep_ms(3 * BOUND_MS);
  int64_t ack_pending = 0;
  tb_h_consumer_info(h, "TB_HIGH_WORKSPACE", NULL, NULL, NULL, &ack_pending);
  print_message("held the write lock for %d ms at %lld processed, %lld unacked\n", 3 * BOUND_MS,
                (long long)held_from, (long long)ack_pending);
  assert_true(ack_pending > 0); /* it really held messages past the AckWait */
  assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(tb_h_wait_sql(h, EVENTS, 30000, "SELECT count(*) FROM processed"), EVENTS);
  uint64_t delivered = 0;
  assert_int_equal(tb_h_consumer_info(h, "TB_HIGH_WORKSPACE", NULL, &delivered, NULL, NULL), 0);
  assert_int_equal(delivered, EVENTS); /* no redelivery at all */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), EVENTS);
  assert_int_equal(tb_h_child_term(&w, 20000), 0);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_init_updates_ack_wait, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_kill_loop_within_bound, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_held_messages_renewed, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
