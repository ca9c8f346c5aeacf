/* Integration: seed 000's escalation through real workers and the CLI. The sweeper raises a run
 * that waits too long (its threshold shortened in the test's config) exactly once, even across
 * worker restarts, and its pending timeout then fires on the escalated tier; `workflows retry`
 * escalates a failed run by the rules or puts it on --priority, and refuses unknown, unfailed
 * runs and bad tiers; `trigger --batch` lands every run on its own tier, and a bad line
 * publishes nothing. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 20000

#define TB(cmd, ...) tb_h_tierbus(h, &r, RUN_MS, cmd, __VA_ARGS__, NULL)

/* The shipped config with its escalation rules replaced by |rules| (YAML list items). */
static void use_rules(tb_h_t *h, const char *rules) {
  char *yaml = tb_h_read_file(h->config);
  assert_non_null(yaml);
  char *start = strstr(yaml, "\nescalation:\n");
  char *end = strstr(yaml, "\n# Worker presets");
  assert_non_null(start);
  assert_non_null(end);
  size_t cap = strlen(yaml) + strlen(rules) + 64;
  char *out = malloc(cap);
  assert_non_null(out);
  snprintf(out, cap, "%.*s\nescalation:\n%s%s", (int)(start - yaml), yaml, rules, end);
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", out));
  free(out);
  free(yaml);
}

/* ---------------------------------------------------------------- the sweeper */

static void test_sweeper_across_restart(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t w1, w2, w3;
  use_rules(h, "  - {name: failed-retry, failed_retry: true, tier: high}\n"
               "  - {name: stuck-2s, stuck: 2s, tier: high}\n");
  tb_it_start_and_init(h);
  /* A worker without the sweeper lets the run start waiting (10 s timeout) on normal. */
  tb_assert_ok(tb_h_spawn(h, &w1, "w1", "worker", "--set", "escalation_sweep=0s", NULL));
  TB("trigger", "ops.await-enrichment", "--id", "slow", "--json-input",
     "{\"enrichment_id\": \"e-slow\", \"timeout\": \"10s\"}");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, 10000,
                                 "SELECT count(*) FROM workflows WHERE id = 'slow' AND "
                                 "status = 'waiting'"),
                   1);
  assert_int_equal(tb_h_child_term(&w1, 10000), 0);
  int64_t seq = tb_h_sql_int(h, "SELECT seq FROM workflows WHERE id = 'slow'");
  char *subject =
      tb_h_sql_text(h, "SELECT subject FROM outbox WHERE msg_id = 'wf:slow:%lld'", (long long)seq);
  assert_non_null(subject);
  assert_string_equal(subject, "tb.evt.normal.ops.workflow-step");
  free(subject);
  int64_t due = tb_h_sql_int(h, "SELECT next_attempt_us FROM outbox WHERE msg_id = 'wf:slow:%lld'",
                             (long long)seq);
  assert_true(due > 0);

  /* Past the threshold, a restarted worker's sweeper raises it once. */
  tb_h_sleep_ms(2500);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_escalations"), 0);
  tb_assert_ok(tb_h_spawn(h, &w2, "w2", "worker", "--set", "escalation_sweep=200ms", NULL));
  assert_int_equal(tb_h_wait_sql(h, 1, 10000, "SELECT count(*) FROM workflow_escalations"), 1);
  char *esc = tb_h_sql_text(h, "SELECT workflow_id || ' ' || from_tier || ' ' || to_tier || ' ' "
                               "|| rule || ' ' || source FROM workflow_escalations");
  assert_non_null(esc);
  assert_string_equal(esc, "slow normal high stuck-2s sweeper");
  free(esc);
  char *tier = tb_h_sql_text(h, "SELECT tier FROM workflows WHERE id = 'slow'");
  assert_string_equal(tier, "high");
  free(tier);
  /* The pending timeout is the continuation: re-sent on high, due when it was. */
  subject =
      tb_h_sql_text(h, "SELECT subject FROM outbox WHERE msg_id = 'wf:slow:%lld'", (long long)seq);
  assert_non_null(subject);
  assert_string_equal(subject, "tb.evt.high.ops.workflow-step");
  free(subject);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT next_attempt_us FROM outbox WHERE msg_id = 'wf:slow:%lld'",
                                (long long)seq),
                   due);
  assert_int_equal(tb_h_child_term(&w2, 10000), 0);

  /* Another restart: the threshold has fired for this run, so it does not fire again while the
   * run goes on waiting past it. */
  tb_assert_ok(tb_h_spawn(h, &w3, "w3", "worker", "--set", "escalation_sweep=200ms", NULL));
  tb_h_sleep_ms(1500);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_escalations"), 1);
  assert_int_equal(tb_h_wait_sql(h, 1, 20000,
                                 "SELECT count(*) FROM workflows WHERE id = 'slow' AND "
                                 "status = 'failed'"),
                   1);
  /* The timeout ran on high; it was published once, and nothing else went to high. */
  char *ran_on = tb_h_sql_text(h, "SELECT tier FROM workflow_history WHERE workflow_id = 'slow' "
                                  "AND status = 'timeout'");
  assert_non_null(ran_on);
  assert_string_equal(ran_on, "high");
  free(ran_on);
  /* normal: execute-workflow, which ran the first step too (same tier, same domain). */
  tb_assert_streams(h, 0, 1, 1, 0, 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_escalations"), 1);

  TB("workflows", "show", "slow");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "normal -> high  rule stuck-2s (sweeper): stuck ");
  tb_h_result_free(&r);
  TB("stats", "--json");
  tb_assert_exit(r, 0);
  json_t *root = json_loads(r.out, 0, NULL);
  assert_non_null(root);
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(root, "escalations"), "stuck-2s")), 1);
  json_decref(root);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_child_term(&w3, 10000), 0);
}

/* ---------------------------------------------------------------- retry */

/* Triggers ops.await-enrichment |id| with |extra| input fields and a 1 s timeout, and waits for
 * it to fail (nothing answers the wait). */
static void failed_run(tb_h_t *h, const char *id, const char *extra) {
  tb_h_result_t r;
  char input[256];
  snprintf(input, sizeof(input), "{\"enrichment_id\": \"e-%s\", \"timeout\": \"1s\"%s}", id, extra);
  TB("trigger", "ops.await-enrichment", "--id", id, "--json-input", input);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, 15000,
                                 "SELECT count(*) FROM workflows WHERE id = '%s' AND "
                                 "status = 'failed'",
                                 id),
                   1);
}

/* Waits for run |id| to fail for the |n|th time and returns the tier its last attempt ran on. */
static char *nth_failure_tier(tb_h_t *h, const char *id, int n) {
  assert_int_equal(tb_h_wait_sql(h, n, 15000,
                                 "SELECT count(*) FROM workflow_history WHERE workflow_id = '%s' "
                                 "AND status = 'timeout'",
                                 id),
                   n);
  tb_h_wait_sql(h, 1, 15000,
                "SELECT count(*) FROM workflows WHERE id = '%s' AND status = "
                "'failed'",
                id);
  return tb_h_sql_text(h,
                       "SELECT tier FROM workflow_history WHERE workflow_id = '%s' AND "
                       "status = 'timeout' ORDER BY id DESC LIMIT 1",
                       id);
}

static void test_retry(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t worker;
  tb_it_start_and_init(h);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));

  failed_run(h, "r1", "");
  TB("workflows", "retry", "r1");
  tb_assert_exit(r, 0);
  assert_string_equal(r.out, "retrying r1 from step await on high (escalated from normal by "
                             "rule failed-retry); failure 1\n");
  tb_h_result_free(&r);
  char *tier = nth_failure_tier(h, "r1", 2);
  assert_string_equal(tier, "high");
  free(tier);

  TB("workflows", "retry", "r1", "--priority", "critical");
  tb_assert_exit(r, 0);
  assert_string_equal(r.out, "retrying r1 from step await on critical (was high; --priority); "
                             "failure 2\n");
  tb_h_result_free(&r);
  tier = nth_failure_tier(h, "r1", 3);
  assert_string_equal(tier, "critical");
  free(tier);

  /* On the top tier already: the rules cannot raise it, and never lower it. */
  TB("workflows", "retry", "r1");
  tb_assert_exit(r, 0);
  assert_string_equal(r.out, "retrying r1 from step await on critical; failure 3\n");
  tb_h_result_free(&r);
  tier = nth_failure_tier(h, "r1", 4);
  assert_string_equal(tier, "critical");
  free(tier);

  /* A customer-facing run starts on high (rule customer-facing) and its retry goes critical. */
  failed_run(h, "r2", ", \"customer_facing\": true");
  TB("workflows", "retry", "r2");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "on critical (escalated from high by rule "
                            "failed-retry-customer-facing)");
  tb_h_result_free(&r);
  tier = nth_failure_tier(h, "r2", 2);
  assert_string_equal(tier, "critical");
  free(tier);
  TB("workflows", "show", "r2");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "normal -> high  rule customer-facing (start): customer-facing\n");
  tb_assert_contains(r.out, "high -> critical  rule failed-retry-customer-facing (retry): "
                            "customer-facing, failed retry");
  tb_assert_contains(r.out, "retried from step await on critical (failure 1; last error: step "
                            "await: timed out waiting for enrichment-complete)");
  tb_h_result_free(&r);

  /* Refusals: an unknown id and a run that has not failed exit 1; a bad tier or no id exit 2. */
  TB("workflows", "retry", "nope");
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "no workflow 'nope'");
  tb_h_result_free(&r);
  TB("trigger", "ops.await-enrichment", "--id", "r3", "--json-input",
     "{\"enrichment_id\": \"e-r3\", \"timeout\": \"1h\"}");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, 10000,
                                 "SELECT count(*) FROM workflows WHERE id = 'r3' "
                                 "AND status = 'waiting'"),
                   1);
  TB("workflows", "retry", "r3");
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "cannot retry: workflow 'r3' is waiting, not failed");
  tb_h_result_free(&r);
  TB("workflows", "retry", "r1", "--priority", "urgent");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--priority: unknown tier 'urgent' (tiers: critical, high, normal, "
                            "low, background)");
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, RUN_MS, "workflows", "retry", NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "which workflow?");
  tb_h_result_free(&r);

  /* Escalations per rule in the stats: r1 (failed-retry, --priority), r2 (two). */
  TB("stats", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "escalations: customer-facing=1 failed-retry=1 "
                            "failed-retry-customer-facing=1 priority=1\n");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_child_term(&worker, 10000), 0);
}

/* ---------------------------------------------------------------- trigger --batch */

static void test_batch(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char good[PATH_MAX], bad[PATH_MAX], bad2[PATH_MAX];
  tb_it_start_and_init(h);
  tb_assert_ok(tb_h_write_file(
      h, "good.ndjson",
      "{\"workflow\": \"ops.daily-operations\", \"id\": \"b-ops\"}\n"
      "{\"workflow\": \"ops.customer-support-message\", \"input\": {\"to\": \"a@b.c\"}, "
      "\"id\": \"b-support\"}\n"
      "\n"
      "{\"workflow\": \"ops.sleep\", \"priority\": \"critical\", \"id\": \"b-sleep\"}\n"
      "{\"workflow\": \"ops.build-campaigns\", \"id\": \"b-campaigns\"}\n"
      "{\"workflow\": \"ops.daily-stand-up\", \"expedite\": true, \"id\": \"b-urgent\"}\n"
      "{\"workflow\": \"ops.lead-attention\", \"input\": {\"business_impact\": \"high\"}, "
      "\"id\": \"b-lead\"}\n"
      "{\"workflow\": \"ops.daily-stand-up\", \"id\": \"b-standup\"}\n",
      good, sizeof(good)));
  tb_assert_ok(tb_h_write_file(h, "bad.ndjson",
                               "{\"workflow\": \"ops.sleep\"}\n"
                               "{\"workflow\": \"ops.nope\"}\n",
                               bad, sizeof(bad)));
  tb_assert_ok(tb_h_write_file(h, "bad2.ndjson",
                               "{\"workflow\": \"ops.sleep\"}\n"
                               "{\"workflow\": \"ops.sleep\"}\n"
                               "{\"workflow\": \"ops.sleep\", \"priority\": \"urgent\"}\n",
                               bad2, sizeof(bad2)));

  /* A bad line anywhere publishes nothing, and its number is named. */
  TB("trigger", "--batch", bad);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "bad.ndjson:2: unknown workflow 'ops.nope'");
  assert_string_equal(r.out, "");
  tb_h_result_free(&r);
  TB("trigger", "--batch", bad2);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "bad2.ndjson:3: --priority: unknown tier 'urgent'");
  tb_h_result_free(&r);
  TB("trigger", "--batch", good, "ops.sleep");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "'ops.sleep' cannot be given with it");
  tb_h_result_free(&r);
  tb_assert_streams(h, 0, 0, 0, 0, 0);

  /* One call, seven runs, each on its own tier. */
  TB("trigger", "--batch", good);
  tb_assert_exit(r, 0);
  assert_string_equal(r.out, "b-ops background ops.daily-operations\n"
                             "b-support high ops.customer-support-message\n"
                             "b-sleep critical ops.sleep\n"
                             "b-campaigns low ops.build-campaigns\n"
                             "b-urgent critical ops.daily-stand-up\n"
                             "b-lead critical ops.lead-attention\n"
                             "b-standup normal ops.daily-stand-up\n");
  tb_h_result_free(&r);
  tb_assert_streams(h, 3, 1, 1, 1, 1);

  /* The workers start every run on the tier its event came on. */
  tb_h_child_t worker;
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  assert_int_equal(tb_h_wait_sql(h, 7, 15000, "SELECT count(*) FROM workflows"), 7);
  char *tiers = tb_h_sql_text(h, "SELECT group_concat(id || '=' || tier, ' ') FROM (SELECT id, "
                                 "tier FROM workflows ORDER BY id)");
  assert_non_null(tiers);
  assert_string_equal(tiers, "b-campaigns=low b-lead=critical b-ops=background b-sleep=critical "
                             "b-standup=normal b-support=high b-urgent=critical");
  free(tiers);
  char *rules = tb_h_sql_text(h, "SELECT group_concat(workflow_id || '=' || rule, ' ') FROM "
                                 "(SELECT workflow_id, rule FROM workflow_escalations "
                                 "ORDER BY workflow_id)");
  assert_non_null(rules);
  assert_string_equal(rules, "b-lead=high-business-impact b-urgent=expedite");
  free(rules);
  assert_int_equal(tb_h_child_term(&worker, 10000), 0);
}

int main(void) {
  tb_h_watchdog(170);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_batch, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_retry, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_sweeper_across_restart, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
