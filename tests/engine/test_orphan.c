/* In-process integration test against a real nats-server -js: a message whose last delivery is
 * taken by a worker that then dies (never acks) is announced by JetStream's max-deliveries
 * advisory; a running dispatcher must read it back and dead-letter it with its reason, once.
 * A message that was applied before its ack got lost must not be dead-lettered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus_fixture.h"

#include "api/publish.h"
#include "bus/bus.h"
#include "bus/server.h"
#include "core/clock.h"
#include "core/status.h"
#include "dispatch/dispatch.h"
#include "engine/engine.h"
#include "store/store.h"
#include "workflows/registry.h"

static bus_fixture_t fx;

static int setup(void **state) {
  /* AckWait: the dead worker's delivery expires after 1 s */
  bus_fixture_up(&fx, "orphan", 1000, 1);
  return 0;
}

static int teardown(void **state) {
  return bus_fixture_down(&fx);
}

/* Number of messages on the dead-letter stream. */
static uint64_t dlq_count(void) {
  jsStreamInfo *si = NULL;
  assert_int_equal(js_GetStreamInfo(&si, tb_bus_js(fx.bus), "TB_DLQ", NULL, NULL), NATS_OK);
  uint64_t n = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return n;
}

static void test_orphan_dead_lettered_once(void **state) {
  bus_fixture_publish(&fx, "evt-orphan-1", 1);
  bus_fixture_publish(&fx, "evt-applied-1", 1);
  /* Pre-record the second one as applied: its ack is what got lost. */
  char db[96];
  snprintf(db, sizeof(db), "%s/t.db", fx.dir);
  tb_store_t *store = NULL;
  assert_int_equal(tb_store_open(&store, db), TB_OK);
  assert_int_equal(tb_store_begin(store), TB_OK);
  tb_dispatch_record_t r = {.msg_id = "evt-applied-1",
                            .event_type = "MONTH_TRANSITION",
                            .tier = "normal",
                            .eff_tier = "normal",
                            .reason = "strict",
                            .outcome = TB_OUTCOME_APPLIED};
  assert_int_equal(tb_store_mark_processed(store, &r), TB_OK);
  assert_int_equal(tb_store_commit(store), TB_OK);

  /* The "worker that dies": takes both last deliveries and never answers. */
  tb_consumer_t *thief = NULL;
  natsMsg *buf[4];
  int got = 0;
  assert_int_equal(tb_consumer_open(&thief, fx.bus, &fx.cfg, "normal", "crm"), TB_OK);
  assert_int_equal(tb_consumer_fetch(thief, buf, 2, &got, 2000), TB_OK);
  if (got < 2) {
    int more = 0;
    assert_int_equal(tb_consumer_fetch(thief, buf + got, 2 - got, &more, 2000), TB_OK);
    got += more;
  }
  assert_int_equal(got, 2);
  for (int i = 0; i < got; i++) natsMsg_Destroy(buf[i]);

  tb_engine_t *engine = NULL;
  tb_dispatcher_t *disp = NULL;
  tb_worker_scope_t scope;
  tb_worker_scope_all(&fx.cfg, &scope);
  assert_int_equal(tb_engine_create(&engine, &fx.cfg, fx.cat, store, fx.bus, tb_registry_handler),
                   TB_OK);
  assert_int_equal(tb_dispatcher_start(&disp, &fx.cfg, fx.bus, engine, &scope), TB_OK);
  /* AckWait is 1 s; the advisory follows the expiry. */
  int64_t deadline = tb_mono_us() + 15 * 1000000LL;
  tb_engine_tier_stats_t ts;
  do {
    usleep(50000);
    tb_engine_tier_stats(engine, 0, &ts);
  } while (ts.dead < 1 && tb_mono_us() < deadline);
  usleep(1500000); /* room for a wrong second dead letter to show up */
  tb_dispatcher_stop(disp);
  tb_engine_tier_stats(engine, 0, &ts);
  assert_int_equal(ts.dead, 1);
  assert_int_equal(ts.processed, 0);
  assert_int_equal(dlq_count(), 1);

  natsMsg *dl = NULL;
  assert_int_equal(js_GetMsg(&dl, tb_bus_js(fx.bus), "TB_DLQ", 1, NULL, NULL), NATS_OK);
  const char *reason = NULL, *id = NULL;
  assert_int_equal(natsMsgHeader_Get(dl, "Tb-Dlq-Reason", &reason), NATS_OK);
  assert_non_null(strstr(reason, "no outcome"));
  assert_int_equal(natsMsgHeader_Get(dl, "Nats-Msg-Id", &id), NATS_OK);
  assert_string_equal(id, "dlq:evt-orphan-1");
  natsMsg_Destroy(dl);

  int seen = 0;
  assert_int_equal(tb_store_is_processed(store, "evt-orphan-1", &seen), TB_OK);
  assert_int_equal(seen, 1);
  tb_engine_destroy(engine);
  tb_consumer_close(thief);
  tb_store_close(store);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_orphan_dead_lettered_once, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
