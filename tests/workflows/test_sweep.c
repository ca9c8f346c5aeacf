/* Unit tests for the stuck-run sweeper pass (tb_wf_sweep) against a real in-memory store: the
 * seed's two thresholds fire in turn and each only once per run, even when the run's tier is put
 * back by hand; a run at the top tier or finished is left alone; the run's continuation is re-sent
 * on the new tier under the same message id (one outbox row, not two). */
#include "wf_harness.h"

#include "core/clock.h"
#include "store/escalation.h"
#include "store/workflow.h"
#include "workflows/escalation.h"

#define H_US (3600LL * 1000 * 1000)

/* Starts ops.await-enrichment |id| (built-in rules, seed tiers) in its own transaction. */
static void start(world_t *w, const char *id) {
  json_t *input = json_pack("{s:s}", "enrichment_id", "e-1");
  int started = 0;
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_wf_start(&w->ctx, tb_wf_find("ops.await-enrichment"), id, NULL, input, NULL,
                               NULL, 0, &started),
                   TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  assert_int_equal(started, 1);
  json_decref(input);
}

static int sweep(world_t *w, int64_t at_us) {
  int n = -1;
  assert_int_equal(tb_wf_sweep(w->st, &w->cfg, w->cat, at_us, &n), TB_OK);
  return n;
}

static void expect_tier(world_t *w, const char *id, const char *tier) {
  tb_wf_row_t row;
  int found = 0;
  assert_int_equal(tb_store_wf_get(w->st, id, &row, &found), TB_OK);
  assert_int_equal(found, 1);
  assert_string_equal(row.tier, tier);
  tb_store_wf_row_clear(&row);
}

/* The one outbox row of run |id|'s continuation |seq|: its subject must be |subject|. */
static void expect_continuation(world_t *w, const char *id, int seq, const char *subject) {
  tb_outbox_row_t *rows = NULL;
  int n = 0, hits = 0;
  char want_id[128];
  snprintf(want_id, sizeof(want_id), "wf:%s:%d", id, seq);
  assert_int_equal(tb_store_outbox_next(w->st, INT64_MAX, 100, &rows, &n), TB_OK);
  for (int i = 0; i < n; i++) {
    if (strcmp(rows[i].msg_id, want_id) != 0) continue;
    hits++;
    assert_string_equal(rows[i].subject, subject);
  }
  tb_store_outbox_free(rows, n);
  assert_int_equal(hits, 1);
}

static int count_rule(void *arg, const tb_wf_escalation_t *e) {
  char *buf = arg;
  size_t len = strlen(buf);
  snprintf(buf + len, 512 - len, "%s%s>%s:%s:%s", len ? " " : "", e->from_tier, e->to_tier, e->rule,
           e->source);
  return 0;
}

static void expect_escalations(world_t *w, const char *id, const char *want) {
  char buf[512] = "";
  assert_int_equal(tb_store_wf_escalations(w->st, id, count_rule, buf), TB_OK);
  assert_string_equal(buf, want);
}

static void test_thresholds_fire_once_each(void **state) {
  world_t *w = *state;
  start(w, "s1");
  expect_tier(w, "s1", "normal");
  expect_continuation(w, "s1", 1, "tb.evt.normal.ops.workflow-step");
  int64_t t0 = tb_wall_us();

  assert_int_equal(sweep(w, t0 + 5 * H_US), 0); /* under 6 h */
  expect_tier(w, "s1", "normal");
  assert_int_equal(sweep(w, t0 + 7 * H_US), 1);
  expect_tier(w, "s1", "high");
  expect_continuation(w, "s1", 1, "tb.evt.high.ops.workflow-step");
  assert_int_equal(sweep(w, t0 + 8 * H_US), 0);
  assert_int_equal(sweep(w, t0 + 25 * H_US), 1);
  expect_tier(w, "s1", "critical");
  expect_continuation(w, "s1", 1, "tb.evt.critical.ops.workflow-step");
  assert_int_equal(sweep(w, t0 + 26 * H_US), 0);
  expect_escalations(w, "s1", "normal>high:stuck-6h:sweeper high>critical:stuck-24h:sweeper");

  /* Put back by hand, the run is not escalated again: both thresholds have fired for it. */
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_wf_set_tier(w->st, "s1", "normal"), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  assert_int_equal(sweep(w, t0 + 30 * H_US), 0);
  expect_tier(w, "s1", "normal");
  int fired = 0;
  assert_int_equal(tb_store_wf_escalation_fired(w->st, "s1", "stuck-6h", &fired), TB_OK);
  assert_int_equal(fired, 1);
  assert_int_equal(tb_store_wf_escalation_fired(w->st, "s1", "customer-facing", &fired), TB_OK);
  assert_int_equal(fired, 0);
}

/* Straight past 24 h: one escalation to critical, by the 24 h rule. */
static void test_long_stuck_goes_straight_to_critical(void **state) {
  world_t *w = *state;
  start(w, "s2");
  assert_int_equal(sweep(w, tb_wall_us() + 30 * H_US), 1);
  expect_tier(w, "s2", "critical");
  expect_escalations(w, "s2", "normal>critical:stuck-24h:sweeper");
}

/* Finished and top-tier runs are not looked at; the sweeper also needs a stuck rule at all. */
static void test_left_alone(void **state) {
  world_t *w = *state;
  start(w, "done");
  assert_int_equal(tb_wf_cancel(w->st, "done", "test"), TB_OK);
  json_t *input = json_pack("{s:s}", "enrichment_id", "e-2");
  int started = 0;
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_wf_start(&w->ctx, tb_wf_find("ops.await-enrichment"), "top", "critical",
                               input, NULL, NULL, 0, &started),
                   TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  json_decref(input);
  assert_int_equal(sweep(w, tb_wall_us() + 48 * H_US), 0);
  expect_escalations(w, "done", "");
  expect_escalations(w, "top", "");

  /* Rules without a stuck threshold: the pass does nothing. */
  static tb_config_t none;
  none = w->cfg;
  none.n_escalation = 1;
  memset(&none.escalation[0], 0, sizeof(none.escalation[0]));
  snprintf(none.escalation[0].name, sizeof(none.escalation[0].name), "cf");
  none.escalation[0].customer_facing = 1;
  snprintf(none.escalation[0].tier, sizeof(none.escalation[0].tier), "high");
  start(w, "s3");
  int n = -1;
  assert_int_equal(tb_wf_sweep(w->st, &none, w->cat, tb_wall_us() + 48 * H_US, &n), TB_OK);
  assert_int_equal(n, 0);
  expect_tier(w, "s3", "normal");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_thresholds_fire_once_each, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_long_stuck_goes_straight_to_critical, world_setup,
                                      world_teardown),
      cmocka_unit_test_setup_teardown(test_left_alone, world_setup, world_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
