/* Integration test of the outbox relay against a real nats-server -js: rows committed while no
 * relay runs (a crash between commit and publish) go out exactly once each; the same rows
 * relayed again (a crash between publish and delete) are dropped by the stream's dedupe window;
 * with the server down the rows stay and their attempts are counted, and they go out once the
 * server is back on the same port and store; stop drains what is due, and a commit hook kicks a
 * relay whose periodic wake is far away. */
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
#include "bus/server.h"
#include "core/clock.h"
#include "core/status.h"
#include "api/handler.h"
#include "engine/relay.h"
#include "store/store.h"

static char dir[64];
static char db[128];
static tb_server_t srv;
static tb_config_t cfg;
static tb_bus_t *bus;

static int setup(void **state) {
  strcpy(dir, "/tmp/tb-relay-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(db, sizeof(db), "%s/t.db", dir);
  assert_int_equal(tb_server_start(&srv, dir, 0, NULL, 10000), TB_OK);
  tb_config_init(&cfg);
  cfg.n_tiers = 1;
  strcpy(cfg.tiers[0].name, "normal");
  const char *domains[] = {"enrichment"};
  assert_int_equal(tb_config_set_domains(&cfg, domains, 1), TB_OK);
  assert_int_equal(tb_bus_connect(&bus, srv.url, "test-relay"), TB_OK);
  assert_int_equal(tb_bus_provision(bus, &cfg), TB_OK);
  return 0;
}

static int teardown(void **state) {
  tb_bus_destroy(bus);
  tb_server_stop(&srv, 5000);
  char cmd[96];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static uint64_t cmd_count(void) {
  jsStreamInfo *si = NULL;
  assert_int_equal(js_GetStreamInfo(&si, tb_bus_js(bus), "TB_CMD", NULL, NULL), NATS_OK);
  uint64_t n = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return n;
}

/* Checks stream message |seq| of TB_CMD: its Nats-Msg-Id, subject and body. */
static void expect_cmd(uint64_t seq, const char *id, const char *subject, const char *body) {
  natsMsg *m = NULL;
  assert_int_equal(js_GetMsg(&m, tb_bus_js(bus), "TB_CMD", seq, NULL, NULL), NATS_OK);
  const char *hid = NULL;
  assert_int_equal(natsMsgHeader_Get(m, "Nats-Msg-Id", &hid), NATS_OK);
  assert_string_equal(hid, id);
  assert_string_equal(natsMsg_GetSubject(m), subject);
  assert_int_equal(natsMsg_GetDataLength(m), (int)strlen(body));
  assert_memory_equal(natsMsg_GetData(m), body, strlen(body));
  natsMsg_Destroy(m);
}

static int64_t outbox_count(tb_store_t *st) {
  int64_t n = -1;
  assert_int_equal(tb_store_outbox_count(st, &n), TB_OK);
  return n;
}

/* Polls until the outbox holds |want| rows or |ms| pass; returns the last count. */
static int64_t wait_outbox(tb_store_t *st, int64_t want, int ms) {
  int64_t deadline = tb_mono_us() + (int64_t)ms * 1000, n;
  while ((n = outbox_count(st)) != want && tb_mono_us() < deadline) usleep(10000);
  return n;
}

static const char *const ids[] = {"wf1:submit:1", "wf2:submit:1", "wf3:notify:1"};
static const char *const subjects[] = {"tb.cmd.enrichment.submit", "tb.cmd.enrichment.submit",
                                       "tb.cmd.notify.send"};
static const char *const bodies[] = {"batch-1", "batch-2", "hello"};

static void add_rows(tb_store_t *st) {
  assert_int_equal(tb_store_begin(st), TB_OK);
  for (int i = 0; i < 3; i++)
    assert_int_equal(tb_store_outbox_add(st, subjects[i], ids[i], bodies[i], strlen(bodies[i]),
                                         i == 2 ? "{\"Tb-Cause-Id\":\"evt-7\"}" : NULL),
                     TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
}

static void test_relay_exactly_once(void **state) {
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, db), TB_OK);

  /* 1. Committed while no relay ran: the process "crashed" after commit, before publish. */
  add_rows(st);
  assert_int_equal(cmd_count(), 0);
  tb_relay_t *r = NULL;
  assert_int_equal(tb_relay_start(&r, db, bus, 20), TB_OK);
  assert_int_equal(wait_outbox(st, 0, 5000), 0);
  assert_int_equal(cmd_count(), 3);
  for (int i = 0; i < 3; i++) expect_cmd((uint64_t)i + 1, ids[i], subjects[i], bodies[i]);
  natsMsg *m = NULL;
  const char *cause = NULL;
  assert_int_equal(js_GetMsg(&m, tb_bus_js(bus), "TB_CMD", 3, NULL, NULL), NATS_OK);
  assert_int_equal(natsMsgHeader_Get(m, "Tb-Cause-Id", &cause), NATS_OK);
  assert_string_equal(cause, "evt-7");
  natsMsg_Destroy(m);
  tb_relay_stats_t rs;
  tb_relay_stats(r, &rs);
  assert_int_equal(rs.published, 3);
  assert_int_equal(rs.duplicates, 0);
  assert_int_equal(rs.failures, 0);

  /* 2. The same rows again: published, then "crashed" before the delete. The stream's window
   * drops the second copies; the relay counts them delivered and empties the outbox. */
  add_rows(st);
  tb_relay_kick(r);
  assert_int_equal(wait_outbox(st, 0, 5000), 0);
  assert_int_equal(cmd_count(), 3);
  tb_relay_stats(r, &rs);
  assert_int_equal(rs.published, 3);
  assert_int_equal(rs.duplicates, 3);

  /* 3. Server down: the rows stay, each failed attempt is counted with its error. */
  int port = srv.port;
  tb_server_stop(&srv, 5000);
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.email.send", "wf4:mail:1", "m4", 2, NULL),
                   TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.email.send", "wf5:mail:1", "m5", 2, NULL),
                   TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  tb_relay_kick(r);
  int64_t deadline = tb_mono_us() + 10 * 1000000LL;
  tb_outbox_row_t *rows = NULL;
  int n = 0, min_attempts = 0;
  while (min_attempts < 2 && tb_mono_us() < deadline) {
    usleep(20000);
    assert_int_equal(tb_store_outbox_next(st, INT64_MAX, 10, &rows, &n), TB_OK);
    assert_int_equal(n, 2);
    min_attempts = rows[0].attempts < rows[1].attempts ? rows[0].attempts : rows[1].attempts;
    if (min_attempts >= 2) {
      assert_string_equal(rows[0].msg_id, "wf4:mail:1");
      assert_non_null(rows[0].last_error);
      assert_non_null(strstr(rows[0].last_error, "tb.cmd.email.send"));
    }
    tb_store_outbox_free(rows, n);
  }
  assert_true(min_attempts >= 2);
  tb_relay_stats(r, &rs);
  assert_true(rs.failures >= 4);
  assert_int_equal(rs.published, 3);

  /* 4. Server back on the same port and store: delivered, once each, after the first three. */
  assert_int_equal(tb_server_start(&srv, dir, port, NULL, 10000), TB_OK);
  assert_int_equal(wait_outbox(st, 0, 20000), 0);
  assert_int_equal(cmd_count(), 5);
  expect_cmd(4, "wf4:mail:1", "tb.cmd.email.send", "m4");
  expect_cmd(5, "wf5:mail:1", "tb.cmd.email.send", "m5");
  tb_relay_stats(r, &rs);
  assert_int_equal(rs.published, 5);
  tb_relay_stop(r);
  tb_store_close(st);
}

/* A relay that would not wake for 60 s: a kick wakes it (the engine kicks after a commit whose
 * handlers emitted, as tb_handler_emit reports through ctx.emitted), and stop publishes what is
 * due before it returns. */
static void test_relay_kick_and_drain(void **state) {
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, db), TB_OK);
  tb_relay_t *r = NULL;
  assert_int_equal(tb_relay_start(&r, db, bus, 60000), TB_OK);
  tb_relay_stats_t rs;
  int64_t deadline = tb_mono_us() + 5000000;
  do { /* its first pass (nothing to do) runs at start */
    usleep(10000);
    tb_relay_stats(r, &rs);
  } while (rs.passes < 1 && tb_mono_us() < deadline);
  assert_int_equal(rs.passes, 1);

  /* Nothing wakes it but a kick. */
  usleep(200000);
  tb_relay_stats(r, &rs);
  assert_int_equal(rs.passes, 1);

  int emitted = 0;
  tb_handler_ctx_t ctx = {.store = st, .emitted = &emitted};
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_store_savepoint(st), TB_OK);
  assert_int_equal(tb_handler_emit(&ctx, "tb.cmd.crm.welcome", "c1:welcome", "w", 1), TB_OK);
  assert_int_equal(tb_store_release(st), TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  assert_int_equal(emitted, 1);
  tb_relay_kick(r);
  assert_int_equal(wait_outbox(st, 0, 3000), 0);
  assert_int_equal(cmd_count(), 1);
  expect_cmd(1, "c1:welcome", "tb.cmd.crm.welcome", "w");

  /* Committed with no kick, then stop at once: the stop's pass publishes it. */
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.crm.welcome", "c2:welcome", "w2", 2, NULL),
                   TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  int64_t t0 = tb_mono_us();
  tb_relay_stop(r);
  assert_true(tb_mono_us() - t0 < 2000000);
  assert_int_equal(outbox_count(st), 0);
  assert_int_equal(cmd_count(), 2);
  expect_cmd(2, "c2:welcome", "tb.cmd.crm.welcome", "w2");

  /* A relay needs a file: its own connection to ":memory:" would be another database. */
  assert_int_equal(tb_relay_start(&r, ":memory:", bus, 10), TB_ERR_INVALID);
  assert_int_equal(tb_relay_start(&r, db, bus, 0), TB_ERR_INVALID);
  tb_relay_stop(NULL);
  tb_store_close(st);
}

/* The deletes of acked rows are handed to the engine's batch (tb_relay_take_acked): a taker that
 * rolls back gives them back, the relay never publishes them again meanwhile, and with no taker
 * the relay deletes them itself after TB_RELAY_HANDOFF_MS. */
static void test_relay_acked_handoff(void **state) {
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, db), TB_OK);
  tb_relay_t *r = NULL;
  assert_int_equal(tb_relay_start(&r, db, bus, 60000), TB_OK);
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.crm.welcome", "h1:welcome", "h", 1, NULL),
                   TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  tb_relay_kick(r);
  int64_t deadline = tb_mono_us() + 3000000;
  while (cmd_count() < 1 && tb_mono_us() < deadline) usleep(1000);
  assert_int_equal(cmd_count(), 1);
  const int64_t *taken = NULL;
  int n = 0;
  deadline = tb_mono_us() + 3000000;
  /* The ack lands just after the publish; the relay's own delete waits 100 ms after it. On a
   * machine too slow to take it first, the row is gone already, which the rest checks too. */
  while ((n = tb_relay_take_acked(r, &taken)) == 0 && outbox_count(st) > 0 &&
         tb_mono_us() < deadline)
    usleep(1000);
  if (n > 0) {
    assert_int_equal(n, 1);
    assert_true(taken[0] > 0);
    assert_int_equal(outbox_count(st), 1);
    const int64_t *again = NULL;
    assert_int_equal(tb_relay_take_acked(r, &again), 0); /* one taker at a time */
    tb_relay_acked_settled(r, 0);                        /* rolled back: the relay keeps it */
    tb_relay_kick(r);
  }
  assert_int_equal(wait_outbox(st, 0, 3000), 0);
  assert_int_equal(cmd_count(), 1); /* published once */
  tb_relay_stop(r);
  tb_store_close(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_relay_exactly_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_relay_kick_and_drain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_relay_acked_handoff, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
