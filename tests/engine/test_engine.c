/* The engine's effectively-once contract, run with fake handlers against a real nats-server -js
 * and a real SQLite file: a handler's writes commit with the processed record or not at all, a
 * rolled-back batch runs its handlers again on redelivery, a duplicate never reaches its
 * handler, and a handler that rejects or is missing sends the message to the dead letters with
 * its writes undone. The engine is handed the fake lookup at creation; no real handler runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "bus_fixture.h"

#include "api/publish.h"
#include "bus/bus.h"
#include "bus/server.h"
#include "core/status.h"
#include "engine/engine.h"
#include "store/store.h"

static bus_fixture_t fx;
static char db_path[96];
static tb_store_t *store;
static tb_consumer_t *consumer;

/* ---- the fake handlers ---- */

typedef enum { FAKE_OK, FAKE_REJECT, FAKE_MISSING } fake_mode;
static fake_mode mode;
static int calls;

/* Writes one activity row (a state change the test can count), then succeeds or rejects. */
static tb_status fake_handler(const tb_handler_ctx_t *ctx) {
  calls++;
  tb_activity_t a = {.msg_id = ctx->msg->env->id,
                     .event_type = ctx->msg->def->name,
                     .tier = ctx->tier,
                     .key = "fake"};
  tb_status st = tb_store_activity(ctx->store, &a);
  if (st != TB_OK) return st;
  int reject = mode == FAKE_REJECT || strncmp(ctx->msg->env->id, "bad-", 4) == 0;
  return reject ? tb__fail(TB_ERR_INVALID, "fake handler rejects it") : TB_OK;
}

static tb_handler_fn fake_lookup(const char *name) {
  return mode == FAKE_MISSING ? NULL : fake_handler;
}

/* ---- fixtures ---- */

static int setup(void **state) {
  bus_fixture_up(&fx, "engine", 30000, 5);
  assert_int_equal(tb_consumer_open(&consumer, fx.bus, &fx.cfg, "normal", "crm"), TB_OK);
  snprintf(db_path, sizeof(db_path), "%s/t.db", fx.dir);
  assert_int_equal(tb_store_open(&store, db_path), TB_OK);
  mode = FAKE_OK;
  calls = 0;
  return 0;
}

static int teardown(void **state) {
  tb_store_close(store);
  tb_consumer_close(consumer);
  return bus_fixture_down(&fx);
}

/* Fetches exactly |n| deliveries into |w| (as the dispatcher would hand them over). */
static void fetch(tb_work_t *w, int n) {
  natsMsg *buf[8];
  int got = 0;
  while (got < n) {
    int more = 0;
    assert_int_equal(tb_consumer_fetch(consumer, buf + got, n - got, &more, 5000), TB_OK);
    got += more;
  }
  int crm = tb_config_domain_index(&fx.cfg, "crm"); /* the consumer's domain */
  assert_true(crm >= 0);
  for (int i = 0; i < n; i++) {
    memset(&w[i], 0, sizeof(w[i]));
    w[i].msg = buf[i];
    w[i].domain = crm;
    w[i].reason = "strict";
  }
}

/* Runs |n| fetched deliveries through one batch: apply each, then commit (or roll back when
 * |abort|), then settle. */
static void run_batch(tb_engine_t *e, tb_work_t *w, int n, int abort) {
  tb_work_t *items[8];
  assert_int_equal(tb_engine_begin(e), TB_OK);
  for (int i = 0; i < n; i++) {
    items[i] = &w[i];
    assert_int_equal(tb_engine_apply(e, &w[i]), TB_OK);
  }
  if (abort)
    tb_engine_abort(e, items, n);
  else
    assert_int_equal(tb_engine_commit(e, items, n), TB_OK);
  for (int i = 0; i < n; i++) tb_engine_settle(e, &w[i]);
}

/* Committed rows of |sql| (one integer), read on a connection of its own. */
static int64_t count(const char *sql) {
  sqlite3 *db = NULL;
  sqlite3_stmt *stmt = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return n;
}

/* ---- tests ---- */

static void test_applied_once(void **state) {
  tb_engine_t *e = NULL;
  assert_int_equal(tb_engine_create(&e, &fx.cfg, fx.cat, store, fx.bus, fake_lookup), TB_OK);
  tb_work_t w[2];

  bus_fixture_publish(&fx, "evt-a", 1);
  bus_fixture_publish(&fx, "evt-b", 1);
  fetch(w, 2);
  run_batch(e, w, 2, 0);
  assert_int_equal(calls, 2);
  assert_int_equal(count("SELECT count(*) FROM activity_log WHERE key = 'fake'"), 2);
  assert_int_equal(count("SELECT count(*) FROM processed WHERE outcome = 'applied'"), 2);

  /* A batch rolled back (say the disk failed at commit) leaves nothing, is nak'ed, and its
   * redelivery runs the handler again: the first run's write never happened. */
  bus_fixture_publish(&fx, "evt-c", 1);
  fetch(w, 1);
  run_batch(e, w, 1, 1);
  assert_int_equal(calls, 3);
  assert_int_equal(count("SELECT count(*) FROM activity_log WHERE msg_id = 'evt-c'"), 0);
  fetch(w, 1);
  run_batch(e, w, 1, 0);
  assert_int_equal(calls, 4);
  assert_int_equal(count("SELECT count(*) FROM activity_log WHERE msg_id = 'evt-c'"), 1);

  /* The same event id again, past the stream's dedupe: the processed record stops it before the
   * handler. */
  bus_fixture_publish(&fx, "evt-a", 0);
  fetch(w, 1);
  run_batch(e, w, 1, 0);
  assert_int_equal(calls, 4);
  assert_int_equal(count("SELECT count(*) FROM activity_log WHERE msg_id = 'evt-a'"), 1);
  tb_engine_tier_stats_t ts;
  tb_engine_tier_stats(e, 0, &ts);
  assert_int_equal(ts.processed, 3);
  assert_int_equal(ts.duplicates, 1);
  assert_int_equal(ts.dead, 0);
  /* The stored counters carry the domain of the consumer each message came from. The rolled
   * back batch counted nothing; its redelivery counted as one. */
  assert_int_equal(count("SELECT value FROM tier_counters WHERE domain = 'crm' AND "
                         "name = 'processed'"),
                   3);
  assert_int_equal(count("SELECT value FROM tier_counters WHERE domain = 'crm' AND "
                         "name = 'redelivered'"),
                   1);
  assert_int_equal(count("SELECT value FROM tier_counters WHERE domain = 'crm' AND "
                         "name = 'redeliveries'"),
                   1);
  assert_int_equal(count("SELECT count(*) FROM tier_counters WHERE domain <> 'crm'"), 0);
  tb_engine_destroy(e);
}

static void test_rejected_and_missing(void **state) {
  tb_engine_t *e = NULL;
  assert_int_equal(tb_engine_create(&e, &fx.cfg, fx.cat, store, fx.bus, fake_lookup), TB_OK);
  tb_work_t w[1];

  /* A handler that rejects: its write is undone, the message is dead-lettered with the reason.
   * It ran twice: in the batch without savepoints, then alone in its own when the batch was
   * applied again. */
  mode = FAKE_REJECT;
  bus_fixture_publish(&fx, "evt-r", 1);
  fetch(w, 1);
  run_batch(e, w, 1, 0);
  assert_int_equal(calls, 2);
  assert_int_equal(w[0].fate, TB_FATE_TERM);
  assert_int_equal(count("SELECT count(*) FROM activity_log WHERE msg_id = 'evt-r'"), 0);
  assert_int_equal(count("SELECT count(*) FROM dead_letters WHERE msg_id = 'evt-r' AND reason "
                         "LIKE '%fake handler rejects it%'"),
                   1);

  /* No handler bound to the catalogue's name: dead-lettered, naming it; nothing ran. A work item
   * of no known domain is counted under none. */
  mode = FAKE_MISSING;
  bus_fixture_publish(&fx, "evt-m", 1);
  fetch(w, 1);
  w[0].domain = -1;
  run_batch(e, w, 1, 0);
  assert_int_equal(calls, 2);
  assert_int_equal(count("SELECT count(*) FROM dead_letters WHERE msg_id = 'evt-m' AND reason "
                         "LIKE 'no handler%'"),
                   1);
  tb_engine_tier_stats_t ts;
  tb_engine_tier_stats(e, 0, &ts);
  assert_int_equal(ts.dead, 2);
  assert_int_equal(ts.processed, 0);
  assert_int_equal(count("SELECT value FROM tier_counters WHERE domain = 'crm' AND name = 'dead'"),
                   1);
  assert_int_equal(count("SELECT value FROM tier_counters WHERE domain = '' AND name = 'dead'"), 1);
  tb_engine_destroy(e);
}

/* Publishes a body that is no envelope on the stream's subject, under Nats-Msg-Id |id|. */
static void publish_junk(const char *id) {
  json_t *payload = json_pack("{s:s,s:s}", "client_id", "c1", "user_id", "u1");
  tb_publish_req_t req = {.event = "MONTH_TRANSITION", .payload = payload, .tier = "normal"};
  tb_prepared_t p;
  assert_int_equal(tb_publish_prepare(&fx.cfg, fx.cat, &req, &p), TB_OK);
  assert_int_equal(tb_bus_publish(fx.bus, p.subject, id, "\xff\xff\xff", 3, NULL, NULL, NULL),
                   TB_OK);
  tb_prepared_free(&p);
  json_decref(payload);
}

/* A batch runs without a savepoint per message until a handler fails; then it is rolled back and
 * applied again with one, so that the failing message's writes are undone alone. The messages
 * before it still apply once, and what happens once per delivery happens once: the dead-letter
 * copy of a malformed message dead-lettered earlier in the batch, the counters, the figures. */
static void test_failure_redoes_the_batch(void **state) {
  tb_engine_t *e = NULL;
  assert_int_equal(tb_engine_create(&e, &fx.cfg, fx.cat, store, fx.bus, fake_lookup), TB_OK);
  tb_work_t w[4];
  bus_fixture_publish(&fx, "ok-1", 1);
  publish_junk("junk-2");
  bus_fixture_publish(&fx, "bad-3", 1);
  bus_fixture_publish(&fx, "ok-4", 1);
  fetch(w, 4);
  run_batch(e, w, 4, 0);
  /* ok-1 and bad-3 ran once without savepoints, then again with them, then ok-4. */
  assert_int_equal(calls, 5);
  assert_int_equal(w[0].fate, TB_FATE_ACK);
  assert_int_equal(w[1].fate, TB_FATE_TERM);
  assert_int_equal(w[2].fate, TB_FATE_TERM);
  assert_int_equal(w[3].fate, TB_FATE_ACK);
  assert_int_equal(count("SELECT count(*) FROM activity_log WHERE msg_id = 'ok-1'"), 1);
  assert_int_equal(count("SELECT count(*) FROM activity_log WHERE msg_id = 'bad-3'"), 0);
  assert_int_equal(count("SELECT count(*) FROM activity_log WHERE msg_id = 'ok-4'"), 1);
  assert_int_equal(count("SELECT count(*) FROM processed WHERE outcome = 'applied'"), 2);
  assert_int_equal(count("SELECT count(*) FROM processed WHERE outcome = 'dead'"), 2);
  /* One copy each in the dead-letter stream, in order, though the malformed one was dead-lettered
   * again when the batch was applied again. */
  assert_int_equal(count("SELECT dlq_seq FROM dead_letters WHERE reason LIKE '%not a "
                         "tierbus.v1.Envelope%'"),
                   1);
  assert_int_equal(count("SELECT dlq_seq FROM dead_letters WHERE msg_id = 'bad-3'"), 2);
  assert_int_equal(count("SELECT value FROM tier_counters WHERE name = 'processed'"), 2);
  assert_int_equal(count("SELECT value FROM tier_counters WHERE name = 'dead'"), 2);
  assert_int_equal(count("SELECT value FROM tier_counters WHERE name = 'failed'"), 1);
  tb_engine_tier_stats_t ts;
  tb_engine_tier_stats(e, 0, &ts);
  assert_int_equal(ts.processed, 2);
  assert_int_equal(ts.dead, 2);
  assert_int_equal(ts.start.total, 3); /* the three decodable ones, once each */

  /* The next batch runs without savepoints again, and applies once. */
  bus_fixture_publish(&fx, "ok-5", 1);
  fetch(w, 1);
  run_batch(e, w, 1, 0);
  assert_int_equal(calls, 6);
  assert_int_equal(count("SELECT count(*) FROM processed WHERE outcome = 'applied'"), 3);
  tb_engine_destroy(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_failure_redoes_the_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_applied_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rejected_and_missing, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
