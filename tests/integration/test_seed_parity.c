/* Integration: issue 12's seed 000, 003 and 004 items through the real CLI, a real nats-server,
 * real workers, the simulator and the SQLite file they share. Seed 000's names are aliases (task
 * queues in any case, camelCase workflow types, argument arrays); an explicit priority is
 * honoured both ways except under a priority floor, and the run keeps the rule that decided;
 * `trigger --explain` decides without publishing; email sending runs at high. Seed 003:
 * enrichment-complete resumes by workflow_id, also when it arrives before the wait. Seed 004:
 * `trigger NAME --key value`, the shared activities send_sms and update_analytics, `worker
 * --task-queue`, `--max-concurrent-activities` and space-separated `--domains`. Also `trigger
 * --wait` printing the last step that produced a result, and an id another workflow type
 * already used refused with its name. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 30000

#define TB(cmd, ...) tb_h_tierbus(h, &r, RUN_MS, cmd, __VA_ARGS__, NULL)

/* ---------------------------------------------------------------- decisions, no worker */

static void test_aliases_and_explain(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);

  /* A camelCase type and a free-form parameter; the customer-facing rule names high, which the
   * type's own tier already is. */
  TB("trigger", "customerSupportMessageWorkflow", "--to", "a@b.c", "--explain");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "workflow   ops.customer-support-message (given as "
                            "customerSupportMessageWorkflow)\n");
  tb_assert_contains(r.out, "tier       high\n");
  tb_assert_contains(r.out, "rule       workflow_tiers\n");
  tb_assert_contains(r.out, "customer_facing=true");
  tb_assert_contains(r.out, "subject    tb.evt.high.ops.execute-workflow\n");
  tb_h_result_free(&r);

  /* Task queues in any case: "default" is normal's task_queue, "<tier>-priority" every tier's. */
  TB("trigger", "dailyStandUpWorkflow", "--task-queue", "DEFAULT", "--explain");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "tier       normal\nrule       task-queue\n");
  tb_h_result_free(&r);

  /* Lowering is honoured: the rules alone say normal. */
  TB("trigger", "ops.daily-stand-up", "--priority", "Background-Priority", "--explain");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "tier       background\nrule       priority\n");
  tb_assert_contains(r.out, "requested  background by priority\nautomatic  normal\n");
  tb_h_result_free(&r);

  /* ... and so is raising, past what the rules say. */
  TB("trigger", "ops.daily-stand-up", "--priority", "CRITICAL", "--explain");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "tier       critical\nrule       priority\n");
  tb_h_result_free(&r);

  /* Except under a floor: the shipped config keeps customer support at high at least. */
  TB("trigger", "customerSupportMessageWorkflow", "--priority", "low", "--explain");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "tier       high\nrule       priority_floors\n");
  tb_assert_contains(r.out, "requested  low by priority\n");
  tb_h_result_free(&r);

  /* Email sending is high (seed 000), by its category in workflow_tiers. */
  TB("trigger", "ops.send-email", "--explain");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "tier       high\nrule       workflow_tiers\n");
  tb_h_result_free(&r);

  /* Nothing above was published. */
  tb_assert_streams(h, 0, 0, 0, 0, 0);

  /* Refusals: exit 2, nothing published. */
  TB("trigger", "ops.daily-stand-up", "--priority", "urgent");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--priority: unknown tier 'urgent'");
  tb_h_result_free(&r);
  TB("trigger", "ops.send-email", "--to");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--to: a parameter needs a value");
  tb_h_result_free(&r);
  TB("trigger", "ops.send-email", "--to", "a@b.c", "--json-input", "{\"to\": \"c@d.e\"}");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "'to' is given both in --json-input and as a parameter");
  tb_h_result_free(&r);
  TB("trigger", "ops.send-email", "--to", "a@b.c", "--to", "c@d.e");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--to: given twice");
  tb_h_result_free(&r);
  TB("trigger", "ops.send-email", "--to", "a@b.c", "--json-input", "[{\"to\": \"c@d.e\"}]");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--json-input is an array");
  tb_h_result_free(&r);
  TB("trigger", "ops.send-email", "--explain", "--wait");
  tb_assert_exit(r, 2);
  tb_h_result_free(&r);
  TB("trigger", "ops.send-email", "--json-input", "\"text\"");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "expected a JSON object (the workflow's input) or an array");
  tb_h_result_free(&r);
  tb_assert_streams(h, 0, 0, 0, 0, 0);

  /* Wherever a tier is accepted: publish's --priority takes a task queue in any case. */
  TB("publish", "WORKSPACE_REPO_ADDED", "--json",
     "{\"workspace_id\": \"w1\", \"repository_id\": "
     "\"r1\"}",
     "--priority", "Critical-Priority");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_assert_streams(h, 1, 0, 0, 0, 0);

  /* Seed 000's mixed-priority batch: camelCase types, args arrays, task queues. */
  char good[PATH_MAX], bad[PATH_MAX];
  tb_assert_ok(tb_h_write_file(h, "mixed.ndjson",
                               "{\"workflow\": \"customerSupportMessageWorkflow\", \"args\": "
                               "[{\"to\": \"a@b.c\"}], \"priority\": \"Critical-Priority\", "
                               "\"id\": \"b1\"}\n"
                               "{\"workflow\": \"dailyOperationsWorkflow\", \"priority\": "
                               "\"default\", \"id\": \"b2\"}\n",
                               good, sizeof(good)));
  tb_assert_ok(tb_h_write_file(h, "both.ndjson",
                               "{\"workflow\": \"ops.daily-stand-up\", \"input\": {}, \"args\": "
                               "[]}\n",
                               bad, sizeof(bad)));
  TB("trigger", "--batch", bad);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "both.ndjson:1: give 'input' or 'args', not both");
  tb_h_result_free(&r);
  TB("trigger", "--batch", good);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "b1 critical ops.customer-support-message\n");
  tb_assert_contains(r.out, "b2 normal ops.daily-operations\n");
  tb_h_result_free(&r);
  tb_assert_streams(h, 2, 0, 1, 0, 0);
}

/* ---------------------------------------------------------------- runs through real workers */

/* The status of run |id| once it is final (waits up to RUN_MS), as a new string. */
static char *final_status(tb_h_t *h, const char *id) {
  tb_h_wait_sql(h, 1, RUN_MS,
                "SELECT count(*) FROM workflows WHERE id = '%s' AND status IN ('completed', "
                "'failed', 'cancelled')",
                id);
  return tb_h_sql_text(h, "SELECT status FROM workflows WHERE id = '%s'", id);
}

static void test_runs(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t worker, sim;
  tb_it_start_and_init(h);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  tb_assert_ok(tb_h_spawn(h, &sim, "sim", "sim", NULL));

  /* --KEY VALUE fields; --wait prints the step that produced a result (send), not the log step
   * after it, which records none. */
  TB("trigger", "ops.send-email", "--id", "mail", "--to", "a@b.c", "--template", "welcome",
     "--wait", "--timeout", "30");
  if (r.status != 0) tb_h_dump_logs(h, 40);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "result (step send): {\"message_id\":\"sim-msg-");
  tb_h_result_free(&r);
  char *tier = tb_h_sql_text(h, "SELECT tier FROM workflows WHERE id = 'mail'");
  assert_string_equal(tier, "high");
  free(tier);

  /* Lowered by request, and the run keeps why. */
  TB("trigger", "ops.daily-stand-up", "--id", "lower", "--priority", "background", "--message", "m",
     "--wait");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tier = tb_h_sql_text(h, "SELECT w.tier || ' ' || c.tier_rule || ' ' || c.requested_tier || ' ' "
                          "|| c.automatic_tier FROM workflows w JOIN workflow_context c ON "
                          "c.workflow_id = w.id WHERE w.id = 'lower'");
  assert_non_null(tier);
  assert_string_equal(tier, "background priority background normal");
  free(tier);
  /* A tier chosen by a task queue: the worker records that rule, as the caller was told. */
  TB("trigger", "ops.daily-stand-up", "--id", "queued", "--task-queue", "LOW-priority", "--message",
     "m", "--wait");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tier = tb_h_sql_text(h, "SELECT w.tier || ' ' || c.tier_rule || ' ' || c.requested_tier "
                          "FROM workflows w JOIN workflow_context c ON "
                          "c.workflow_id = w.id WHERE w.id = 'queued'");
  assert_non_null(tier);
  assert_string_equal(tier, "low task-queue low");
  free(tier);
  TB("workflows", "show", "lower");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "tier rule   priority (requested background, automatic normal)\n");
  tb_assert_contains(r.out, "deadline    20");
  tb_h_result_free(&r);
  TB("workflows", "show", "lower", "--json");
  tb_assert_exit(r, 0);
  json_t *root = json_loads(r.out, 0, NULL);
  assert_non_null(root);
  json_t *td = json_object_get(root, "tier_decision");
  assert_string_equal(json_string_value(json_object_get(td, "rule")), "priority");
  assert_string_equal(json_string_value(json_object_get(td, "requested_tier")), "background");
  json_decref(root);
  tb_h_result_free(&r);

  /* Seed 000's call: a camelCase type, positional args, an explicit low that the floor raises;
   * the email step reads its fields from the first argument. */
  TB("trigger", "customerSupportMessageWorkflow", "--id", "floor", "--priority", "low",
     "--json-input",
     "[{\"to\": \"a@b.c\", \"template\": \"notification\"}, {\"origin\": \"email\"}]", "--wait");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tier = tb_h_sql_text(h, "SELECT w.name || ' ' || w.tier || ' ' || c.tier_rule || ' ' || "
                          "json_extract(w.data, '$.input.args[1].origin') FROM workflows w JOIN "
                          "workflow_context c ON c.workflow_id = w.id WHERE w.id = 'floor'");
  assert_string_equal(tier, "ops.customer-support-message high priority_floors email");
  free(tier);
  char *esc = tb_h_sql_text(h, "SELECT from_tier || ' ' || to_tier || ' ' || rule || ' ' || source "
                               "FROM workflow_escalations WHERE workflow_id = 'floor'");
  assert_non_null(esc);
  assert_string_equal(esc, "low high priority_floors start");
  free(esc);

  /* An id is one run: another workflow type under it is refused, naming the type. */
  int64_t before = tb_h_all_tier_msgs(h);
  TB("trigger", "ops.sleep", "--id", "lower");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--id lower is already a run of workflow ops.daily-stand-up");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_all_tier_msgs(h), before);

  /* Seed 004's shared activities, answered by the simulator. */
  TB("trigger", "ops.send-sms", "--to", "+447700900123", "--message", "shipped", "--wait");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "\"segments\":1");
  tb_h_result_free(&r);
  TB("trigger", "ops.update-analytics", "--metric", "emails_sent", "--value", "3", "--wait");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "result (step update): {\"metric\":\"emails_sent\",\"update_id\":"
                            "\"sim-anl-");
  tb_assert_contains(r.out, "\"value\":3}");
  tb_h_result_free(&r);
  /* Digits would be a number; a quoted JSON string is the text. */
  TB("trigger", "ops.send-sms", "--to", "\"12345\"", "--message", "x", "--wait");
  tb_assert_exit(r, 1);
  tb_assert_contains(r.out, "not an E.164 phone number");
  tb_h_result_free(&r);

  /* Seed 003: enrichment-complete by workflow_id alone resumes the run's wait. */
  TB("trigger", "ops.await-enrichment", "--id", "aw1", "--enrichment-id", "e-1", "--json-input",
     "{\"timeout\": \"60s\"}");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM workflows WHERE id = 'aw1' AND "
                                 "status = 'waiting'"),
                   1);
  TB("publish", "enrichment-complete", "--json",
     "{\"workflow_id\": \"aw1\", \"status_code\": 200}");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  char *st = final_status(h, "aw1");
  assert_string_equal(st, "completed");
  free(st);

  /* ... also when it arrives before the wait: kept for the run, taken when it starts waiting. */
  TB("publish", "enrichment-complete", "--json",
     "{\"workflow_id\": \"aw2\", \"status_code\": 200}");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(
      tb_h_wait_sql(h, 1, RUN_MS, "SELECT count(*) FROM workflow_inbox WHERE key = 'workflow:aw2'"),
      1);
  TB("trigger", "ops.await-enrichment", "--id", "aw2", "--enrichment-id", "e-2", "--json-input",
     "{\"timeout\": \"60s\"}", "--wait");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  char *early = tb_h_sql_text(h, "SELECT detail FROM workflow_history WHERE workflow_id = 'aw2' "
                                 "AND name = 'await' AND status = 'waiting'");
  assert_non_null(early);
  tb_assert_contains(early, "(arrived early)");
  free(early);

  /* By enrichment_id it still works; with neither id it is refused and dead-lettered. */
  TB("trigger", "ops.await-enrichment", "--id", "aw3", "--enrichment-id", "e-3", "--json-input",
     "{\"timeout\": \"60s\"}");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM workflows WHERE id = 'aw3' AND "
                                 "status = 'waiting'"),
                   1);
  TB("publish", "enrichment-complete", "--json", "{\"enrichment_id\": \"e-3\"}");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  st = final_status(h, "aw3");
  assert_string_equal(st, "completed");
  free(st);
  TB("publish", "enrichment-complete", "--json", "{\"status_code\": 200}");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM dead_letters WHERE event_type = "
                                 "'enrichment-complete'"),
                   1);

  assert_int_equal(tb_h_child_term(&sim, 10000), 0);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
}

/* ---------------------------------------------------------------- run timeouts (seed 000) */

/* A tier's timeout bounds the whole run: a run left running past it (its continuation on a
 * tier no worker serves) is escalated one tier by the sweeper, once, and runs there; with
 * run_timeout: fail it is failed; time parked in a sleep is not counted. */
static void test_run_timeout(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t w1, w2;
  tb_assert_ok(
      tb_h_config_edit(h, "tierbus.yaml", "{name: low, timeout: 30m,", "{name: low, timeout: 2s,"));
  tb_assert_ok(tb_h_config_edit(h, "tierbus.yaml", "task_queue: default, timeout: 15m,",
                                "task_queue: default, timeout: 2s,"));
  tb_it_start_and_init(h);
  /* No worker serves low. */
  tb_assert_ok(tb_h_spawn(h, &w1, "w1", "worker", "--tiers", "high,normal", "--set",
                          "escalation_sweep=200ms", NULL));

  /* A sleep of 4 s on normal (timeout 2 s) completes: parked time is not the run's. */
  TB("trigger", "ops.sleep", "--id", "nap", "--priority", "normal", "--duration", "4s", "--wait");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_true(tb_h_sql_int(h, "SELECT c.deadline_us - w.created_us FROM workflows w JOIN "
                              "workflow_context c ON c.workflow_id = w.id WHERE w.id = 'nap'") >=
              6000000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_escalations"), 0);

  /* A failed run retried onto low: nobody takes its step, so past low's 2 s it is raised to
   * normal, where the worker runs it (and the bad duration fails it again). */
  TB("trigger", "ops.sleep", "--id", "t1", "--priority", "normal", "--duration", "nope", "--wait");
  tb_assert_exit(r, 1);
  tb_h_result_free(&r);
  TB("workflows", "retry", "t1", "--priority", "low");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM workflow_escalations WHERE workflow_id = "
                                 "'t1' AND rule = 'run-timeout'"),
                   1);
  char *esc = tb_h_sql_text(h, "SELECT from_tier || ' ' || to_tier || ' ' || source FROM "
                               "workflow_escalations WHERE rule = 'run-timeout'");
  assert_string_equal(esc, "low normal sweeper");
  free(esc);
  assert_int_equal(tb_h_wait_sql(h, 2, RUN_MS,
                                 "SELECT count(*) FROM workflow_history WHERE workflow_id = 't1' "
                                 "AND name = 'nap' AND tier = 'normal' AND status = 'failed'"),
                   2);
  char *hist = tb_h_sql_text(h, "SELECT status || ': ' || detail FROM workflow_history WHERE "
                                "workflow_id = 't1' AND name = 'run-timeout'");
  assert_non_null(hist);
  assert_string_equal(hist, "escalated: past its tier's timeout (low 2s): low -> normal");
  free(hist);
  TB("workflows", "show", "t1");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "rule run-timeout (sweeper)");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_child_term(&w1, 20000), 0);

  /* run_timeout: fail. */
  tb_assert_ok(tb_h_spawn(h, &w2, "w2", "worker", "--tiers", "high,normal", "--set",
                          "escalation_sweep=200ms", "--set", "run_timeout=fail", NULL));
  TB("workflows", "retry", "t1", "--priority", "low");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM workflows WHERE id = 't1' AND status = "
                                 "'failed' AND error LIKE 'run timed out: past its tier''s "
                                 "timeout (low 2s)%%'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE workflow_id = "
                                   "'t1' AND name = 'run-timeout' AND status = 'failed'"),
                   1);
  /* Nothing of it is left to send (its step already on low is stale: the run moved on). */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM outbox WHERE msg_id LIKE 'wf:t1:%%'"), 0);
  assert_int_equal(tb_h_child_term(&w2, 20000), 0);

  /* A bad value is refused with its name. */
  TB("config", "check", "--set", "run_timeout=later");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "run_timeout: must be escalate, fail or off (got 'later')");
  tb_h_result_free(&r);
}

/* ---------------------------------------------------------------- breaker and alerts */

/* The Nats-Msg-Ids of every alert in TB_CMD, newline-separated, into a new string. */
static char *alert_ids(tb_h_t *h) {
  int64_t n = tb_h_stream_msgs(h, "TB_CMD");
  size_t cap = 4096, len = 0;
  char *out = calloc(1, cap);
  assert_non_null(out);
  for (int64_t seq = 1; seq <= n; seq++) {
    natsMsg *m = tb_h_stream_get(h, "TB_CMD", (uint64_t)seq);
    if (m == NULL) continue;
    if (strcmp(natsMsg_GetSubject(m), "tb.cmd.alerts.raise") == 0)
      len += (size_t)snprintf(out + len, cap > len ? cap - len : 0, "%s\n",
                              tb_h_header(m, "Nats-Msg-Id"));
    natsMsg_Destroy(m);
  }
  return out;
}

/* Seed 000's circuit breaker: two failures of the email service open it; the step's next
 * attempt is held, not failed, until the cool-down ends, then sent to a healthy service and the
 * run completes. `stats` shows the breaker open, then closed. The opening raises an alert, as
 * does a failed run on the critical tier. */
static void test_breaker_and_alerts(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t worker, sick, healthy;
  tb_it_start_and_init(h);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", "--set", "breaker_failures=2", "--set",
                          "breaker_cooldown=3s", NULL));
  tb_assert_ok(tb_h_spawn(h, &sick, "sick", "sim", "--fail", "email.send=503", NULL));
  TB("trigger", "ops.send-email", "--id", "cb", "--to", "a@b.c", "--template", "welcome");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM circuit_breakers WHERE service = 'email' "
                                 "AND trips = 1"),
                   1);
  assert_int_equal(tb_h_child_term(&sick, 10000), 0);
  tb_assert_ok(tb_h_spawn(h, &healthy, "healthy", "sim", NULL));
  /* The third attempt is held while the breaker is open. */
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM workflow_history WHERE workflow_id = 'cb' "
                                 "AND status = 'held'"),
                   1);
  TB("stats", "--json");
  tb_assert_exit(r, 0);
  json_t *root = json_loads(r.out, 0, NULL);
  assert_non_null(root);
  json_t *b = json_array_get(json_object_get(root, "circuit_breakers"), 0);
  assert_string_equal(json_string_value(json_object_get(b, "service")), "email");
  assert_string_equal(json_string_value(json_object_get(b, "state")), "open");
  assert_int_equal(json_integer_value(json_object_get(b, "trips")), 1);
  assert_true(json_integer_value(json_object_get(b, "held")) >= 1);
  tb_assert_contains(json_string_value(json_object_get(b, "last_error")), "status 503");
  json_decref(root);
  tb_h_result_free(&r);
  TB("stats", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "circuit breakers:\n  email OPEN until ");
  tb_h_result_free(&r);
  /* Held, not failed: after the cool-down the command goes out and the run completes. */
  char *st = final_status(h, "cb");
  assert_string_equal(st, "completed");
  free(st);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE workflow_id = "
                                   "'cb' AND name = 'send' AND status = 'failed'"),
                   2);
  TB("stats", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "  email closed (trips 1, held ");
  tb_h_result_free(&r);

  /* A failed run on the critical tier raises an alert too. */
  TB("trigger", "ops.sleep", "--id", "crit", "--priority", "critical", "--duration", "nope",
     "--wait");
  tb_assert_exit(r, 1);
  tb_h_result_free(&r);
  int64_t t0 = tb_h_now_ms();
  char *ids = NULL;
  for (;;) {
    ids = alert_ids(h);
    if (strstr(ids, "alert:critical-failure:crit:") != NULL || tb_h_now_ms() - t0 > RUN_MS) break;
    free(ids);
    tb_h_sleep_ms(100);
  }
  tb_assert_contains(ids, "alert:circuit-open:email:1\n");
  tb_assert_contains(ids, "alert:critical-failure:crit:");
  free(ids);
  assert_int_equal(tb_h_child_term(&healthy, 10000), 0);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
}

/* ---------------------------------------------------------------- worker flags (seed 004) */

static void test_worker_flags(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t worker;
  tb_it_start_and_init(h);

  TB("worker", "--task-queue", "nope");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--task-queue: unknown queue 'nope' (tiers: critical, high, normal");
  tb_h_result_free(&r);
  TB("worker", "--task-queue", "high", "--tiers", "high");
  tb_assert_exit(r, 2);
  tb_h_result_free(&r);
  TB("worker", "--domains", "ops", "bogus");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown domain 'bogus' in --domains");
  tb_h_result_free(&r);
  TB("worker", "stray");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unexpected argument 'stray'");
  tb_h_result_free(&r);
  TB("worker", "--max-concurrent-activities", "0");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--max-concurrent-activities must be an integer 1 to 100000");
  tb_h_result_free(&r);

  /* Seed 000's "default" queue is normal; two domains given seed 004's way. */
  tb_assert_ok(tb_h_spawn(h, &worker, "w", "worker", "--task-queue", "default", "--domains", "ops",
                          "crm", "--max-concurrent-activities", "4", NULL));
  TB("trigger", "ops.daily-stand-up", "--message", "hello", "--wait");
  if (r.status != 0) tb_h_dump_logs(h, 40);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  /* A background run is not this worker's: it is never started. */
  TB("trigger", "ops.daily-operations", "--id", "bg", "--wait", "--timeout", "1500ms");
  tb_assert_exit(r, 3);
  tb_assert_contains(r.err, "has not started");
  tb_h_result_free(&r);
  char *log = tb_h_child_stderr(&worker);
  tb_assert_contains(log, "tiers=normal domains=ops,crm max_concurrent_workflows=4");
  free(log);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
}

int main(void) {
  tb_h_watchdog(240);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_aliases_and_explain, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_runs, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_worker_flags, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_run_timeout, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_breaker_and_alerts, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
