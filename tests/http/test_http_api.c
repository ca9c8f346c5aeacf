/* Integration: the HTTP API's endpoints, each with its success and its errors, against a real
 * nats-server, a real worker and the SQLite file they share, driven with libcurl. What the API
 * answers is checked against what happened: the stream a run's event landed in, the tier the
 * worker gave the run, the rows in the database. The guards every endpoint shares (401, 413,
 * malformed JSON) are test_http.c's. */
#include <stdio.h>
#include <stdlib.h>

#include "http_client.h"
#include "support/envelope.h"
#include "tierbus/v1/envelope.pb-c.h"

#define WAIT_MS 30000

static void start_all(tb_h_t *h, tb_h_child_t *api, tb_h_child_t *worker) {
  tb_it_start_and_init(h);
  start_api(h, api);
  tb_assert_ok(tb_h_spawn(h, worker, "worker", "worker", NULL));
}

static void stop_all(tb_h_child_t *api, tb_h_child_t *worker) {
  assert_int_equal(tb_h_child_term(worker, 20000), 0);
  assert_int_equal(tb_h_child_term(api, 10000), 0);
}

/* Posts |body| to |path| and checks the run's tier and the rule that chose it. */
static void start_run(const char *path, const char *body, long status, const char *tier,
                      const char *rule) {
  json_t *j = call_json("POST", path, body, status);
  if (strcmp(jstr(j, "tier"), tier) != 0 || strcmp(jstr(j, "rule"), rule) != 0) {
    char *text = json_dumps(j, 0);
    print_error("%s: expected tier %s by %s, got %s\n", body, tier, rule, text);
    free(text);
  }
  assert_string_equal(jstr(j, "tier"), tier);
  assert_string_equal(jstr(j, "rule"), rule);
  json_decref(j);
}

/* ---------------------------------------------------------------- execute and monitoring */

static void test_execute_and_monitoring(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t api, worker;
  start_all(h, &api, &worker);
  const char *wp = "/api/execute-workflow-with-priority", *wa = "/api/execute-workflow";

  /* Seed 000's shape with an explicit priority. */
  json_t *j = call_json("POST", wp,
                        "{\"workflowType\": \"ops.daily-stand-up\", \"args\": {\"message\": "
                        "\"hi\"}, \"priority\": \"low\", \"expedite\": false, \"id\": \"run-low\"}",
                        201);
  assert_string_equal(jstr(j, "runId"), "run-low");
  assert_string_equal(jstr(j, "tier"), "low");
  assert_string_equal(jstr(j, "rule"), "priority");
  assert_true(json_is_null(json_object_get(j, "escalation")));
  assert_string_equal(jstr(j, "subject"), "tb.evt.low.ops.execute-workflow");
  assert_false(json_is_true(json_object_get(j, "duplicate")));
  json_decref(j);
  assert_int_equal(tb_h_stream_msgs(h, "TB_LOW_OPS"), 1);
  /* The same id again starts nothing: the stream had the event. */
  j = call_json("POST", wp,
                "{\"workflowType\": \"ops.daily-stand-up\", \"priority\": \"low\", \"id\": "
                "\"run-low\"}",
                200);
  assert_true(json_is_true(json_object_get(j, "duplicate")));
  json_decref(j);
  assert_int_equal(tb_h_stream_msgs(h, "TB_LOW_OPS"), 1);

  /* Automatic assignment, then each kind of escalation; the rule that chose the tier is named. */
  start_run(wa, "{\"workflowType\": \"ops.daily-stand-up\", \"id\": \"run-auto\"}", 201, "normal",
            "workflow_tiers");
  start_run(wa,
            "{\"workflowType\": \"ops.daily-stand-up\", \"id\": \"run-cf\", \"context\": "
            "{\"isCustomerFacing\": true}}",
            201, "high", "customer-facing");
  start_run(wa,
            "{\"workflowType\": \"ops.daily-stand-up\", \"id\": \"run-exp\", \"expedite\": true}",
            201, "critical", "expedite");
  /* An explicit priority is honoured both ways (issue 12): background with high business
   * impact stays background, though the rules alone would say critical. */
  j = call_json("POST", wp,
                "{\"workflowType\": \"ops.daily-stand-up\", \"id\": \"run-bi\", \"priority\": "
                "\"background\", \"context\": {\"businessImpact\": \"high\"}}",
                201);
  assert_string_equal(jstr(j, "tier"), "background");
  assert_string_equal(jstr(j, "rule"), "priority");
  assert_string_equal(jstr(j, "requestedTier"), "background");
  assert_string_equal(jstr(j, "automaticTier"), "critical");
  json_decref(j);
  start_run(wa,
            "{\"workflowType\": \"ops.daily-stand-up\", \"id\": \"run-retry\", \"context\": "
            "{\"isFailedRetry\": true, \"hoursStuck\": 7.5}}",
            201, "high", "failed-retry");
  /* Seed 000's positional args reach the run as input.args. */
  start_run(wa,
            "{\"workflowType\": \"ops.daily-stand-up\", \"id\": \"run-args\", \"args\": "
            "[{\"message\": \"x\"}, {\"origin\": \"email\"}]}",
            201, "normal", "workflow_tiers");

  /* The worker gives every run the tier the API announced. */
  assert_int_equal(
      tb_h_wait_sql(h, 7, WAIT_MS, "SELECT count(*) FROM workflows WHERE status = 'completed'"), 7);
  static const char *const want[][2] = {{"run-low", "low"},       {"run-auto", "normal"},
                                        {"run-cf", "high"},       {"run-exp", "critical"},
                                        {"run-bi", "background"}, {"run-retry", "high"},
                                        {"run-args", "normal"}};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    char *tier = tb_h_sql_text(h, "SELECT tier FROM workflows WHERE id = '%s'", want[i][0]);
    assert_non_null(tier);
    if (strcmp(tier, want[i][1]) != 0)
      print_error("run %s: the worker ran it on %s, the API said %s\n", want[i][0], tier,
                  want[i][1]);
    assert_string_equal(tier, want[i][1]);
    free(tier);
  }
  char *input = tb_h_sql_text(h, "SELECT json_extract(data, '$.input.args[1].origin') FROM "
                                 "workflows WHERE id = 'run-args'");
  assert_non_null(input);
  assert_string_equal(input, "email");
  free(input);
  /* ... and each argument's fields are the input's own, as the seed's workflows read them. */
  input = tb_h_sql_text(h, "SELECT json_extract(data, '$.input.message') || ' ' || "
                           "json_extract(data, '$.input.origin') FROM workflows "
                           "WHERE id = 'run-args'");
  assert_non_null(input);
  assert_string_equal(input, "x email");
  free(input);
  /* The run keeps the rule that chose its tier, and GET shows it. */
  char *rule =
      tb_h_sql_text(h, "SELECT tier_rule || ' ' || requested_tier || ' ' || "
                       "automatic_tier FROM workflow_context WHERE workflow_id = 'run-bi'");
  assert_non_null(rule);
  assert_string_equal(rule, "priority background critical");
  free(rule);
  j = call_json("GET", "/api/workflows/run-bi", NULL, 200);
  json_t *td = json_object_get(j, "tier_decision");
  assert_string_equal(json_string_value(json_object_get(td, "rule")), "priority");
  assert_string_equal(json_string_value(json_object_get(td, "automatic_tier")), "critical");
  assert_true(json_is_integer(json_object_get(td, "deadline_us")));
  json_decref(j);

  /* dryRun: the same decision, nothing published. Seed 000's names work: a camelCase type, a
   * task queue in any case; a priority floor (the shipped config's customer-support: high)
   * keeps an explicit low from lowering customer support. */
  int64_t all_before = tb_h_all_tier_msgs(h);
  j = call_json("POST", wp,
                "{\"workflowType\": \"customerSupportMessageWorkflow\", \"priority\": "
                "\"LOW-priority\", \"dryRun\": true, \"args\": [{\"to\": \"a@b.c\"}]}",
                200);
  assert_true(json_is_true(json_object_get(j, "dryRun")));
  assert_string_equal(jstr(j, "workflowType"), "ops.customer-support-message");
  assert_string_equal(jstr(j, "tier"), "high");
  assert_string_equal(jstr(j, "rule"), "priority_floors");
  assert_string_equal(jstr(j, "requestedTier"), "low");
  assert_string_equal(jstr(j, "automaticTier"), "high");
  assert_true(json_is_true(json_object_get(json_object_get(j, "context"), "isCustomerFacing")));
  json_decref(j);
  j = call_json("POST", wa,
                "{\"workflowType\": \"dailyStandUpWorkflow\", \"taskQueue\": \"default\", "
                "\"dryRun\": true}",
                200);
  assert_string_equal(jstr(j, "tier"), "normal");
  assert_string_equal(jstr(j, "rule"), "task-queue");
  json_decref(j);
  j = call_json("POST", wp,
                "{\"workflowType\": \"leadAttentionWorkflow\", \"priority\": \"Critical\", "
                "\"dryRun\": true}",
                200);
  assert_string_equal(jstr(j, "tier"), "critical");
  assert_string_equal(jstr(j, "rule"), "priority");
  json_decref(j);
  expect_400("POST", wa, "{\"workflowType\": \"ops.daily-stand-up\", \"dryRun\": 1}", "dryRun");
  expect_400("POST", wa, "{\"workflowType\": \"ops.daily-stand-up\", \"taskQueue\": \"x\"}",
             "taskQueue");
  assert_int_equal(tb_h_all_tier_msgs(h), all_before);

  /* Every refusal names its field, and nothing more reaches a stream. */
  int64_t before = tb_h_tier_msgs(h, "normal");
  expect_400("POST", wa, "{\"args\": {}}", "workflowType");
  expect_400("POST", wa, "{\"workflowType\": \"ops.daily-standup\"}", "workflowType");
  expect_400("POST", wa, "{\"workflowType\": 7}", "workflowType");
  expect_400("POST", wa, "{\"workflowType\": \"\"}", "workflowType");
  expect_400("POST", wa, "{\"workflowType\": \"ops.daily-stand-up\", \"args\": \"x\"}", "args");
  expect_400("POST", wa, "{\"workflowType\": \"ops.daily-stand-up\", \"priority\": \"high\"}",
             "priority");
  expect_400("POST", wa, "{\"workflowType\": \"ops.daily-stand-up\", \"expedite\": \"yes\"}",
             "expedite");
  expect_400("POST", wa, "{\"workflowType\": \"ops.daily-stand-up\", \"id\": \"a b\"}", "id");
  expect_400("POST", wa, "{\"workflowType\": \"ops.daily-stand-up\", \"bogus\": 1}", "bogus");
  expect_400("POST", wa, "{\"workflowType\": \"ops.daily-stand-up\", \"context\": []}", "context");
  expect_400("POST", wa,
             "{\"workflowType\": \"ops.daily-stand-up\", \"context\": {\"hoursStuck\": \"x\"}}",
             "context.hoursStuck");
  expect_400("POST", wa,
             "{\"workflowType\": \"ops.daily-stand-up\", \"context\": {\"hoursStuck\": -1}}",
             "context.hoursStuck");
  expect_400("POST", wa,
             "{\"workflowType\": \"ops.daily-stand-up\", \"context\": {\"businessImpact\": "
             "\"huge\"}}",
             "context.businessImpact");
  expect_400("POST", wa,
             "{\"workflowType\": \"ops.daily-stand-up\", \"context\": {\"nope\": true}}",
             "context.nope");
  expect_400("POST", wa,
             "{\"workflowType\": \"ops.daily-stand-up\", \"args\": {\"customer_facing\": 3}}",
             "args");
  expect_400("POST", wp, "{\"workflowType\": \"ops.daily-stand-up\"}", "priority");
  expect_400("POST", wp, "{\"workflowType\": \"ops.daily-stand-up\", \"priority\": \"urgent\"}",
             "priority");
  assert_int_equal(tb_h_tier_msgs(h, "normal"), before);

  /* Seed 000's monitoring: the runs by tier, escalations, queues and utilisation. */
  j = call_json("GET", "/api/monitoring?window=1h&history=5", NULL, 200);
  json_t *tiers = json_object_get(j, "tiers");
  assert_int_equal(json_array_size(tiers), 5);
  for (size_t i = 0; i < 5; i++) {
    json_t *t = json_array_get(tiers, i);
    const char *name = jstr(t, "tier");
    json_t *runs = json_object_get(t, "runs");
    int64_t finished = json_integer_value(json_object_get(runs, "finished"));
    /* run-bi ran on background as asked (an explicit priority is honoured both ways). */
    int64_t expect_finished = strcmp(name, "critical") == 0 ? 1
                              : strcmp(name, "high") == 0   ? 2
                              : strcmp(name, "normal") == 0 ? 2
                              : strcmp(name, "low") == 0    ? 1
                                                            : 1;
    if (finished != expect_finished)
      print_error("tier %s: %lld runs finished, expected %lld\n", name, (long long)finished,
                  (long long)expect_finished);
    assert_int_equal(finished, expect_finished);
    if (finished > 0) {
      double p50 = json_number_value(json_object_get(runs, "p50_ms"));
      double p99 = json_number_value(json_object_get(runs, "p99_ms"));
      assert_true(p50 >= 0 && p99 >= p50);
    }
    assert_true(json_is_number(json_object_get(t, "utilisation")));
    assert_non_null(json_object_get(json_object_get(t, "queue"), "depth"));
    assert_true(json_is_array(json_object_get(t, "utilisation_history")));
  }
  json_t *esc = json_object_get(json_object_get(j, "escalations"), "by_tier");
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(esc, "high"), "customer-facing")), 1);
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(esc, "critical"), "expedite")), 1);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "escalations"), "total")),
                   3);
  json_decref(j);
  expect_400("GET", "/api/monitoring?window=soon", NULL, "window");
  expect_400("GET", "/api/monitoring?window=31d", NULL, "window");
  expect_400("GET", "/api/monitoring?history=61", NULL, "history");
  expect_400("GET", "/api/monitoring?tier=high", NULL, "tier");

  /* The same families in the Prometheus text. */
  http_res_t r = call("GET", "/metrics", NULL, NULL);
  assert_int_equal(r.status, 200);
  tb_assert_contains(r.body,
                     "tierbus_escalations_total{tier=\"high\",rule=\"customer-facing\"} 1\n");
  tb_assert_contains(r.body, "tierbus_escalations_total{tier=\"critical\",rule=\"expedite\"} 1\n");
  tb_assert_contains(r.body,
                     "tierbus_workflow_runs_finished{tier=\"normal\",status=\"completed\"} 2\n");
  tb_assert_contains(r.body,
                     "tierbus_workflow_run_duration_seconds{tier=\"normal\",quantile=\"0.99\"}");
  tb_assert_contains(r.body, "tierbus_workflows{tier=\"high\",status=\"waiting\"} 0\n");
  tb_assert_contains(r.body, "tierbus_queue_depth{tier=\"high\",domain=\"ops\"} 0\n");
  tb_assert_contains(r.body, "tierbus_in_flight{tier=\"critical\",domain=\"crm\"} 0\n");
  tb_assert_contains(r.body, "tierbus_tier_utilisation_ratio{tier=\"high\"} 0\n");
  tb_assert_contains(r.body, "tierbus_tier_concurrency{tier=\"critical\"} 50\n");
  tb_assert_contains(r.body, "\ntierbus_outbox_due 0\n");
  tb_assert_contains(r.body, "\ntierbus_outbox_lag_seconds 0.000000\n");
  tb_assert_contains(r.body, "\ntierbus_repository_priority_inversions 0\n");
  tb_assert_contains(r.body, "\ntierbus_nats_connected 1\n");
  tb_assert_contains(r.body, "# TYPE tierbus_scheduler_runs gauge\n");
  free(r.body);
  stop_all(&api, &worker);
}

/* ---------------------------------------------------------------- runs: list, get, cancel, retry
 */

/* Every run id over all pages of |query| ("" or "&status=..."), |limit| per page. */
static json_t *all_pages(const char *query, int limit, int *pages) {
  json_t *ids = json_array();
  char path[1024], cursor[256] = "";
  *pages = 0;
  for (;;) {
    snprintf(path, sizeof(path), "/api/workflows?limit=%d%s%s%s", limit, query,
             cursor[0] ? "&cursor=" : "", cursor);
    json_t *j = call_json("GET", path, NULL, 200);
    json_t *rows = json_object_get(j, "workflows");
    assert_true((int)json_array_size(rows) <= limit);
    for (size_t i = 0; i < json_array_size(rows); i++)
      json_array_append_new(ids, json_string(jstr(json_array_get(rows, i), "id")));
    (*pages)++;
    json_t *next = json_object_get(j, "next_cursor");
    if (json_is_null(next)) {
      json_decref(j);
      return ids;
    }
    snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
    json_decref(j);
    assert_true(*pages < 50);
  }
}

static void test_runs(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t api, worker;
  start_all(h, &api, &worker);
  char body[256];
  for (int i = 1; i <= 5; i++) {
    snprintf(body, sizeof(body),
             "{\"workflowType\": \"ops.sleep\", \"args\": {\"duration\": \"1h\"}, \"id\": \"s%d\"}",
             i);
    json_decref(call_json("POST", "/api/execute-workflow", body, 201));
  }
  /* A duration that is not one fails the sleep step for good. */
  json_decref(call_json("POST", "/api/execute-workflow",
                        "{\"workflowType\": \"ops.sleep\", \"args\": {\"duration\": \"nope\"}, "
                        "\"id\": \"f1\"}",
                        201));
  assert_int_equal(
      tb_h_wait_sql(h, 5, WAIT_MS, "SELECT count(*) FROM workflows WHERE status = 'sleeping'"), 5);
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflows WHERE id = 'f1' AND status = "
                                 "'failed'"),
                   1);

  /* Pages: every run once, newest first, whatever the page size. */
  int pages = 0;
  json_t *ids = all_pages("", 2, &pages);
  assert_int_equal(json_array_size(ids), 6);
  assert_int_equal(pages, 3);
  for (size_t i = 0; i < 6; i++)
    for (size_t k = i + 1; k < 6; k++)
      assert_string_not_equal(json_string_value(json_array_get(ids, i)),
                              json_string_value(json_array_get(ids, k)));
  assert_string_equal(json_string_value(json_array_get(ids, 0)), "f1"); /* the newest */
  json_decref(ids);
  ids = all_pages("", 6, &pages);
  assert_int_equal(json_array_size(ids), 6);
  assert_int_equal(pages, 1);
  json_decref(ids);
  ids = all_pages("&status=sleeping", 4, &pages);
  assert_int_equal(json_array_size(ids), 5);
  assert_int_equal(pages, 2);
  json_decref(ids);
  ids = all_pages("&status=failed&type=ops.sleep", 4, &pages);
  assert_int_equal(json_array_size(ids), 1);
  json_decref(ids);
  ids = all_pages("&type=ops.daily-stand-up", 4, &pages);
  assert_int_equal(json_array_size(ids), 0);
  json_decref(ids);
  expect_400("GET", "/api/workflows?limit=0", NULL, "limit");
  expect_400("GET", "/api/workflows?limit=501", NULL, "limit");
  expect_400("GET", "/api/workflows?limit=ten", NULL, "limit");
  expect_400("GET", "/api/workflows?status=done", NULL, "status");
  expect_400("GET", "/api/workflows?cursor=not-a-cursor", NULL, "cursor");
  expect_400("GET", "/api/workflows?cursor=cmVwbzpyMQ", NULL, "cursor"); /* a repository cursor */
  expect_400("GET", "/api/workflows?state=failed", NULL, "state");
  expect_400("GET", "/api/workflows?limit=1&limit=2", NULL, "limit");

  /* One run: its state, step history and escalations. */
  json_t *j = call_json("GET", "/api/workflows/f1", NULL, 200);
  json_t *wf = json_object_get(j, "workflow");
  assert_string_equal(jstr(wf, "status"), "failed");
  assert_string_equal(jstr(wf, "step_name"), "nap");
  tb_assert_contains(jstr(wf, "error"), "nope");
  json_t *hist = json_object_get(j, "history");
  int nap_failed = 0;
  for (size_t i = 0; i < json_array_size(hist); i++) {
    json_t *row = json_array_get(hist, i);
    nap_failed |=
        strcmp(jstr(row, "name"), "nap") == 0 && strcmp(jstr(row, "status"), "failed") == 0;
  }
  if (!nap_failed) {
    char *text = json_dumps(hist, 0);
    print_error("no failed attempt of step nap in the history: %s\n", text);
    free(text);
  }
  assert_true(nap_failed);
  assert_true(json_is_array(json_object_get(j, "escalations")));
  json_decref(j);
  http_res_t r = call("GET", "/api/workflows/nope", NULL, TOKEN);
  expect(&r, 404, "no workflow 'nope'");
  expect_400("GET", "/api/workflows/f1?full=1", NULL, "full");

  /* Cancel: once, then 409 naming the status; an unknown run is 404. */
  j = call_json("POST", "/api/workflows/s1/cancel", "{\"reason\": \"from the test\"}", 200);
  assert_string_equal(jstr(j, "was"), "sleeping");
  json_decref(j);
  char *st = tb_h_sql_text(h, "SELECT status || ' ' || error FROM workflows WHERE id = 's1'");
  assert_non_null(st);
  assert_string_equal(st, "cancelled from the test");
  free(st);
  r = call("POST", "/api/workflows/s1/cancel", NULL, TOKEN);
  expect(&r, 409, "already cancelled");
  r = call("POST", "/api/workflows/nope/cancel", NULL, TOKEN);
  expect(&r, 404, "no workflow 'nope'");
  expect_400("POST", "/api/workflows/s2/cancel", "{\"reason\": 5}", "reason");
  expect_400("POST", "/api/workflows/s2/cancel", "{\"why\": \"x\"}", "why");
  st = tb_h_sql_text(h, "SELECT status FROM workflows WHERE id = 's2'");
  assert_string_equal(st, "sleeping");
  free(st);

  /* Seed 001's delayed jobs: the four sleeps' timers wait in the outbox on background. */
  j = call_json("GET", "/api/jobs/metrics", NULL, 200);
  json_t *bg =
      json_object_get(json_object_get(json_object_get(j, "data"), "queueMetrics"), "background");
  assert_int_equal(json_integer_value(json_object_get(bg, "delayed")), 4);
  json_decref(j);

  /* Retry a failed job by id: its run, from the failed step, escalated as a failed retry. */
  j = call_json("POST", "/api/jobs/f1/retry", NULL, 202);
  assert_string_equal(jstr(j, "kind"), "workflow");
  assert_string_equal(jstr(j, "from_tier"), "background");
  assert_string_equal(jstr(j, "tier"), "high");
  assert_string_equal(jstr(j, "rule"), "failed-retry");
  assert_string_equal(jstr(j, "step"), "nap");
  json_decref(j);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_escalations WHERE workflow_id "
                                   "= 'f1' AND source = 'retry' AND to_tier = 'high'"),
                   1);
  /* It fails again (the same bad duration), now on high; then an explicit tier may lower it. */
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflows WHERE id = 'f1' AND status = "
                                 "'failed' AND tier = 'high'"),
                   1);
  j = call_json("POST", "/api/jobs/f1/retry", "{\"priority\": \"low\"}", 202);
  assert_string_equal(jstr(j, "tier"), "low");
  json_decref(j);
  r = call("POST", "/api/jobs/s2/retry", NULL, TOKEN);
  expect(&r, 409, "cannot retry");
  r = call("POST", "/api/jobs/nope/retry", NULL, TOKEN);
  expect(&r, 404, "no workflow run and no dead letter 'nope'");
  expect_400("POST", "/api/jobs/f1/retry", "{\"priority\": \"urgent\"}", "priority");
  expect_400("POST", "/api/jobs/f1/retry", "{\"priority\": 1}", "priority");
  stop_all(&api, &worker);
}

/* ---------------------------------------------------------------- dead letters */

static void test_dlq(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t api, worker;
  start_all(h, &api, &worker);
  static const char garbage[] = "\x07garbage\xff\x00tail";
  assert_int_equal(tb_h_publish_raw(h, "tb.evt.normal.crm.CLIENT_CREATED", "garbage-1", garbage,
                                    sizeof(garbage)),
                   0);
  uint8_t *env = NULL;
  size_t len = tb_h_pack_envelope("nope-1", "NOPE", "low", "test_http_api", NULL, 0, &env);
  assert_non_null(env);
  assert_int_equal(tb_h_publish_raw(h, "tb.evt.low.ops.NOPE", "nope-1", env, len), 0);
  free(env);
  assert_int_equal(tb_h_wait_sql(h, 2, WAIT_MS, "SELECT count(*) FROM dead_letters"), 2);

  json_t *j = call_json("GET", "/api/dlq", NULL, 200);
  assert_int_equal(json_integer_value(json_object_get(j, "count")), 2);
  json_decref(j);
  j = call_json("GET", "/api/dlq?reason=malformed", NULL, 200);
  json_t *entries = json_object_get(j, "entries");
  assert_int_equal(json_array_size(entries), 1);
  assert_string_equal(jstr(json_array_get(entries, 0), "msg_id"), "garbage-1");
  assert_string_equal(jstr(json_array_get(entries, 0), "subject"),
                      "tb.evt.normal.crm.CLIENT_CREATED");
  json_decref(j);
  j = call_json("GET", "/api/dlq?tier=low&since=1h&limit=5", NULL, 200);
  entries = json_object_get(j, "entries");
  assert_int_equal(json_array_size(entries), 1);
  assert_string_equal(jstr(json_array_get(entries, 0), "reason"), "unknown_event");
  int64_t no = json_integer_value(json_object_get(json_array_get(entries, 0), "no"));
  json_decref(j);
  j = call_json("GET", "/api/dlq?since=2999-01-01T00:00:00Z", NULL, 200);
  assert_int_equal(json_integer_value(json_object_get(j, "count")), 0);
  json_decref(j);
  expect_400("GET", "/api/dlq?reason=bogus", NULL, "reason");
  expect_400("GET", "/api/dlq?tier=urgent", NULL, "tier");
  expect_400("GET", "/api/dlq?since=yesterday", NULL, "since");
  expect_400("GET", "/api/dlq?limit=0", NULL, "limit");
  expect_400("GET", "/api/dlq?class=malformed", NULL, "class");

  /* A malformed body cannot apply unchanged: 409, nothing sent. */
  int64_t copies = tb_h_tier_msgs(h, "low");
  http_res_t r = call("POST", "/api/dlq/garbage-1/replay", NULL, TOKEN);
  expect(&r, 409, "malformed cannot apply unchanged");
  /* An unknown event may (its type could be deployed since): replayed to its subject. */
  j = call_json("POST", "/api/dlq/nope-1/replay", NULL, 202);
  assert_string_equal(jstr(j, "outcome"), "replayed");
  assert_string_equal(jstr(j, "subject"), "tb.evt.low.ops.NOPE");
  assert_int_equal(json_integer_value(json_object_get(j, "round")), 1);
  json_decref(j);
  assert_int_equal(tb_h_tier_msgs(h, "low"), copies + 1);
  /* It fails again and comes back to the same entry, replayed once so far. */
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM dead_letters WHERE msg_id = 'nope-1' AND "
                                 "replays = 1 AND at_us > replayed_us"),
                   1);
  /* The jobs route takes a dead letter's number too, and a tier for the copy. */
  char path[64];
  snprintf(path, sizeof(path), "/api/jobs/%lld/retry", (long long)no);
  j = call_json("POST", path, "{\"priority\": \"normal\"}", 202);
  assert_string_equal(jstr(j, "kind"), "dead_letter");
  assert_string_equal(jstr(j, "subject"), "tb.evt.normal.ops.NOPE");
  assert_int_equal(json_integer_value(json_object_get(j, "round")), 2);
  json_decref(j);
  assert_int_equal(tb_h_stream_msgs(h, "TB_NORMAL_OPS"), 1);
  r = call("POST", "/api/dlq/no-such-entry/replay", NULL, TOKEN);
  expect(&r, 404, "no dead letter");
  expect_400("POST", "/api/dlq/nope-1/replay", "{\"priority\": \"urgent\"}", "priority");
  expect_400("POST", "/api/dlq/nope-1/replay", "{\"tier\": \"low\"}", "tier");
  stop_all(&api, &worker);
}

/* ---------------------------------------------------------------- repositories */

static void add_repo(const char *ws, const char *repo) {
  char body[256];
  snprintf(body, sizeof(body),
           "{\"type\": \"WORKSPACE_REPO_ADDED\", \"payload\": {\"workspace_id\": \"%s\", "
           "\"repository_id\": \"%s\"}}",
           ws, repo);
  json_decref(call_json("POST", "/api/events", body, 201));
}

/* Every repository id over all pages of |query|. */
static void repo_pages(const char *query, int limit, const char *want) {
  char path[1200], cursor[512] = "", got[512] = "";
  for (int pages = 0; pages < 20; pages++) {
    snprintf(path, sizeof(path), "/api/repositories?limit=%d%s%s%s", limit, query,
             cursor[0] ? "&cursor=" : "", cursor);
    json_t *j = call_json("GET", path, NULL, 200);
    json_t *rows = json_object_get(j, "repositories");
    for (size_t i = 0; i < json_array_size(rows); i++)
      snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", got[0] ? "," : "",
               jstr(json_array_get(rows, i), "repository_id"));
    json_t *next = json_object_get(j, "next_cursor");
    int last = json_is_null(next);
    if (!last) snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
    json_decref(j);
    if (last) break;
  }
  if (strcmp(got, want) != 0) print_error("repositories%s: got %s, want %s\n", query, got, want);
  assert_string_equal(got, want);
}

static void test_repositories(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t api, worker;
  start_all(h, &api, &worker);
  add_repo("w1", "r1");
  add_repo("w1", "r2");
  add_repo("w2", "r2");
  add_repo("w2", "octo/repo");
  tb_h_result_t res;
  tb_h_tierbus(h, &res, 20000, "priority", "set", "r3", "--override", "low", "--create", NULL);
  tb_assert_exit(res, 0);
  tb_h_result_free(&res);
  assert_int_equal(tb_h_wait_sql(h, 4, WAIT_MS,
                                 "SELECT count(*) FROM processed WHERE event_type = "
                                 "'WORKSPACE_REPO_ADDED'"),
                   4);
  assert_int_equal(tb_h_wait_sql(h, 4, WAIT_MS, "SELECT count(*) FROM tracked_repositories"), 4);

  repo_pages("", 50, "octo/repo,r1,r2,r3");
  repo_pages("", 1, "octo/repo,r1,r2,r3");
  repo_pages("&priority=high", 2, "octo/repo,r1,r2");
  repo_pages("&priority=low", 2, "r3");
  repo_pages("&workspace=w2", 1, "octo/repo,r2");
  repo_pages("&workspace=w9", 1, "");
  expect_400("GET", "/api/repositories?priority=urgent", NULL, "priority");
  expect_400("GET", "/api/repositories?limit=1001", NULL, "limit");
  expect_400("GET", "/api/repositories?cursor=d2Y6Mg", NULL, "cursor"); /* a workflows cursor */
  expect_400("GET", "/api/repositories?owner=x", NULL, "owner");

  json_t *j = call_json("GET", "/api/repositories/r2", NULL, 200);
  assert_string_equal(jstr(j, "priority"), "high");
  assert_string_equal(jstr(j, "expected_priority"), "high");
  assert_int_equal(json_integer_value(json_object_get(j, "priority_score")), 100);
  assert_int_equal(json_integer_value(json_object_get(j, "workspace_count")), 2);
  json_t *ws = json_object_get(j, "workspaces");
  assert_int_equal(json_array_size(ws), 2);
  assert_string_equal(jstr(json_array_get(ws, 0), "workspace_id"), "w1");
  assert_string_equal(jstr(json_array_get(ws, 1), "workspace_id"), "w2");
  assert_true(json_array_size(json_object_get(j, "audit")) >= 1);
  json_decref(j);
  /* An id with a slash, percent-encoded in the path. */
  j = call_json("GET", "/api/repositories/octo%2Frepo?audit=1", NULL, 200);
  assert_string_equal(jstr(j, "repository_id"), "octo/repo");
  assert_int_equal(json_array_size(json_object_get(j, "audit")), 1);
  json_decref(j);
  j = call_json("GET", "/api/repositories/r3", NULL, 200);
  assert_string_equal(jstr(j, "manual_override"), "low");
  assert_int_equal(json_array_size(json_object_get(j, "workspaces")), 0);
  json_decref(j);
  http_res_t r = call("GET", "/api/repositories/r404", NULL, TOKEN);
  expect(&r, 404, "not tracked");
  expect_400("GET", "/api/repositories/r1?audit=-1", NULL, "audit");

  /* Seed 002's distribution: three workspace repositories high, one tracked-only low. */
  j = call_json("GET", "/api/priority/distribution", NULL, 200);
  json_t *groups = json_object_get(j, "groups");
  assert_int_equal(json_array_size(groups), 2);
  assert_true(json_is_true(json_object_get(json_array_get(groups, 0), "is_workspace_repo")));
  assert_string_equal(jstr(json_array_get(groups, 0), "priority"), "high");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(groups, 0), "count")), 3);
  assert_string_equal(jstr(json_array_get(groups, 1), "priority"), "low");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(groups, 1), "overrides")), 1);
  json_t *totals = json_object_get(j, "totals");
  assert_int_equal(json_integer_value(json_object_get(totals, "tracked")), 4);
  assert_int_equal(json_integer_value(json_object_get(totals, "tracked_only_repos")), 1);
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(j, "inversions"), "repositories")), 0);
  json_decref(j);
  expect_400("GET", "/api/priority/distribution?by=tier", NULL, "by");

  /* The syncs: none yet, then the one `priority sync` ran, in the seed's SyncResult names. */
  j = call_json("GET", "/api/priority/syncs", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j, "syncs")), 0);
  assert_true(json_is_null(json_object_get(j, "running")));
  json_decref(j);
  tb_h_tierbus(h, &res, 20000, "priority", "sync", NULL);
  tb_assert_exit(res, 0);
  tb_h_result_free(&res);
  j = call_json("GET", "/api/priority/syncs?limit=5", NULL, 200);
  json_t *sync = json_array_get(json_object_get(j, "syncs"), 0);
  assert_non_null(sync);
  assert_string_equal(jstr(sync, "status"), "completed");
  assert_int_equal(json_integer_value(json_object_get(sync, "workspaceRepos")), 3);
  assert_int_equal(json_integer_value(json_object_get(sync, "trackedOnlyRepos")), 1);
  assert_int_equal(json_integer_value(json_object_get(sync, "priorityChanges")), 0);
  json_decref(j);
  expect_400("GET", "/api/priority/syncs?limit=0", NULL, "limit");

  /* Seed 002's success rate of repository jobs, workspace vs tracked-only: the four jobs the
   * priority changes queued all applied. */
  assert_int_equal(tb_h_wait_sql(h, 4, WAIT_MS,
                                 "SELECT count(*) FROM activity_log WHERE event_type = "
                                 "'capture/repository.sync'"),
                   4);
  j = call_json("GET", "/api/monitoring", NULL, 200);
  json_t *jobs = json_object_get(j, "repository_jobs");
  json_t *wsj = json_object_get(jobs, "workspace"), *tr = json_object_get(jobs, "tracked_only");
  assert_int_equal(json_integer_value(json_object_get(wsj, "succeeded")), 3);
  assert_int_equal(json_integer_value(json_object_get(wsj, "failed")), 0);
  assert_int_equal(json_integer_value(json_object_get(tr, "succeeded")), 1);
  assert_true(json_number_value(json_object_get(wsj, "success_rate")) == 100.0);
  assert_false(json_is_true(json_object_get(jobs, "truncated")));
  json_decref(j);

  /* The same four jobs in the activity log, each payload rendered from its stored bytes. */
  j = call_json("GET", "/api/activity?event=capture/repository.sync&limit=10", NULL, 200);
  assert_int_equal(json_integer_value(json_object_get(j, "count")), 4);
  json_t *row = json_array_get(json_object_get(j, "rows"), 0);
  json_t *payload = json_object_get(row, "payload");
  assert_non_null(json_string_value(json_object_get(payload, "repository_id")));
  assert_string_equal(json_string_value(json_object_get(row, "key")),
                      json_string_value(json_object_get(payload, "repository_id")));
  assert_null(json_object_get(row, "payload_error"));
  json_decref(j);
  expect_400("GET", "/api/activity?event=NO_SUCH_EVENT", NULL, "event");
  expect_400("GET", "/api/activity?limit=0", NULL, "limit");
  stop_all(&api, &worker);
}

int main(void) {
  tb_h_watchdog(280);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_execute_and_monitoring, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_runs, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_dlq, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_repositories, tb_h_setup, tb_h_teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
