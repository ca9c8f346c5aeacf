/* Integration: the durable workflow runtime through real workers, using the ops domain's
 * workflows (each step kind) and answering commands by publishing command-reply events by hand,
 * so that every reply code and every missing reply is the test's choice: retryOn, a step timeout,
 * a wait timeout across a restart of every process, an event that arrives before its wait, a
 * duplicate event, cancellation and onError. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 20000
#define WAIT_MS 20000

static void run_ok(tb_h_t *h, const char *cmd, const char *a1, const char *a2, const char *a3) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, cmd, a1, a2, a3, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* Starts the server and a worker (init first). */
static void start(tb_h_t *h, tb_h_child_t *worker) {
  tb_assert_ok(tb_h_server_start(h));
  run_ok(h, "init", NULL, NULL, NULL);
  tb_assert_ok(tb_h_spawn(h, worker, "worker", "worker", NULL));
}

/* Publishes execute-workflow for |type| with run id |id| and input |input| (JSON text). */
static void execute(tb_h_t *h, const char *type, const char *id, const char *input) {
  json_t *p =
      json_pack("{s:s, s:s, s:s}", "workflow_type", type, "workflow_id", id, "args_json", input);
  char *text = json_dumps(p, JSON_COMPACT);
  json_decref(p);
  char msg_id[160];
  snprintf(msg_id, sizeof(msg_id), "exec-%s", id);
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", "execute-workflow", "--json", text, "--id", msg_id, NULL);
  free(text);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* Publishes a command-reply to |command_id| of run |wf| with |code|. */
static void reply(tb_h_t *h, const char *wf, const char *command_id, int code, const char *tier) {
  char json[512], id[200], tier_arg[32];
  snprintf(json, sizeof(json),
           "{\"command_id\": \"%s\", \"workflow_id\": \"%s\", \"status_code\": %d, "
           "\"result_json\": \"{\\\"message_id\\\": \\\"m-%d\\\"}\", \"error\": \"%s\"}",
           command_id, wf, code, code, code >= 300 ? "simulated" : "");
  snprintf(id, sizeof(id), "reply:%s", command_id);
  snprintf(tier_arg, sizeof(tier_arg), "%s", tier);
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", "command-reply", "--json", json, "--id", id, "--priority",
               tier_arg, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

static void enrichment_complete(tb_h_t *h, const char *enrichment_id, const char *msg_id) {
  char json[256];
  snprintf(json, sizeof(json), "{\"enrichment_id\": \"%s\", \"status_code\": 200}", enrichment_id);
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", "enrichment-complete", "--json", json, "--id", msg_id,
               NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

static int64_t wait_status(tb_h_t *h, const char *id, const char *status) {
  return tb_h_wait_sql(h, 1, WAIT_MS,
                       "SELECT count(*) FROM workflows WHERE id='%s' AND status='%s'", id, status);
}

/* Number of commands published for |command_id| (TB_CMD holds every command ever sent). */
static int64_t outbox_sent(tb_h_t *h, const char *command_id) {
  return tb_h_sql_int(h,
                      "SELECT count(*) FROM workflow_history WHERE detail LIKE 'tb.cmd.%%' AND "
                      "workflow_id || ':' || name || ':' || attempt = '%s'",
                      command_id);
}

static void test_sleep(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  start(h, &worker);
  execute(h, "ops.sleep", "wf-sleep", "{\"duration\": \"400ms\", \"message\": \"woke\"}");
  assert_int_equal(wait_status(h, "wf-sleep", "completed"), 1);
  /* The timer held the run for its duration: the nap's history row spans it. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "workflow_id='wf-sleep' AND name='nap'"),
                   1);
  assert_true(tb_h_sql_int(h, "SELECT ended_us - started_us FROM workflow_history WHERE "
                              "workflow_id='wf-sleep' AND name='nap' AND status='ok' AND "
                              "detail='timer'") >= 400000);
  assert_true(tb_h_sql_int(h, "SELECT finished_us - created_us FROM workflows WHERE "
                              "id='wf-sleep'") >= 400000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE "
                                   "event_type='workflow.log_event' AND key='wf-sleep'"),
                   1);
  /* Every step ran on the run's tier (ops.sleep: background), in two continuations: the start
   * (execute-workflow came on normal, so the run's first step could not run in it) and the
   * timer, after which the log step ran on in the same message. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE "
                                   "event_type='workflow-step' AND tier<>'background'"),
                   0);
  assert_int_equal(
      tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE event_type='workflow-step'"), 2);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "workflow_id='wf-sleep' AND tier<>'background'"),
                   0);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

static void test_command_retry_on(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  start(h, &worker);
  execute(h, "ops.send-email", "wf-mail", "{\"to\": \"a@example.com\"}");
  assert_int_equal(wait_status(h, "wf-mail", "waiting"), 1);
  assert_int_equal(tb_h_wait_stream(h, "TB_CMD", 1, WAIT_MS), 1);
  /* 429 is in retryOn: attempt 2 follows after the policy's 200 ms. */
  reply(h, "wf-mail", "wf-mail:send:1", 429, "normal");
  assert_int_equal(tb_h_wait_stream(h, "TB_CMD", 2, WAIT_MS), 2);
  assert_int_equal(tb_h_sql_int(h, "SELECT attempt FROM workflows WHERE id='wf-mail'"), 2);
  reply(h, "wf-mail", "wf-mail:send:2", 200, "normal");
  assert_int_equal(wait_status(h, "wf-mail", "completed"), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE "
                                "workflow_id='wf-mail' AND name='send' AND attempt=1 AND "
                                "status='failed' AND code=429 AND detail='retry 2 of 3 in 200 ms'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "workflow_id='wf-mail' AND name='send' AND attempt=2 AND "
                                   "status='ok'"),
                   1);
  char *data = tb_h_sql_text(h, "SELECT data FROM workflows WHERE id='wf-mail'");
  tb_assert_contains(data, "\"send\":{\"message_id\":\"m-200\"}");
  free(data);
  assert_int_equal(outbox_sent(h, "wf-mail:send:1"), 1);

  /* 400 is not in retryOn: the run fails at once and onError writes the activity log. */
  execute(h, "ops.send-email", "wf-bad", "{\"to\": \"b@example.com\"}");
  assert_int_equal(wait_status(h, "wf-bad", "waiting"), 1);
  reply(h, "wf-bad", "wf-bad:send:1", 400, "normal");
  assert_int_equal(wait_status(h, "wf-bad", "failed"), 1);
  char *err = tb_h_sql_text(h, "SELECT error FROM workflows WHERE id='wf-bad'");
  tb_assert_contains(err, "step send: status 400");
  free(err);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "workflow_id='wf-bad' AND name='onError' AND status='ok'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE "
                                   "event_type='workflow.failed' AND key='wf-bad'"),
                   1);

  /* Retried by hand (the cause fixed), the attempts count from 1 again, and the command must
   * still be a new one: the stream dropped a repeated id as a duplicate of the failed attempt's
   * (the retry then waited for a reply to a command never sent), and a service would take it
   * for the same request. The round is in the id. */
  assert_int_equal(tb_h_stream_msgs(h, "TB_CMD"), 3);
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "workflows", "retry", "wf-bad", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_stream(h, "TB_CMD", 4, WAIT_MS), 4);
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflow_waits WHERE "
                                 "workflow_id='wf-bad' AND key='wf-bad:send:1:r1'"),
                   1);
  char *tier = tb_h_sql_text(h, "SELECT tier FROM workflows WHERE id='wf-bad'");
  assert_non_null(tier);
  reply(h, "wf-bad", "wf-bad:send:1:r1", 200, tier);
  free(tier);
  assert_int_equal(wait_status(h, "wf-bad", "completed"), 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "workflow_id='wf-bad' AND name='send' AND attempt=1 AND "
                                   "status='ok'"),
                   1);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

static void test_step_timeout(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  start(h, &worker);
  /* Nobody answers: each attempt times out after 300 ms; a timeout carries no status code and
   * is retried whatever retryOn lists, so all three attempts run. */
  execute(h, "ops.send-email", "wf-slow", "{\"to\": \"c@example.com\", \"timeout\": \"300ms\"}");
  assert_int_equal(wait_status(h, "wf-slow", "failed"), 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "workflow_id='wf-slow' AND name='send' AND status='timeout'"),
                   3);
  assert_int_equal(tb_h_stream_msgs(h, "TB_CMD"), 3);
  char *err = tb_h_sql_text(h, "SELECT error FROM workflows WHERE id='wf-slow'");
  tb_assert_contains(err, "timed out waiting for the command's reply");
  free(err);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE "
                                   "event_type='workflow.failed' AND key='wf-slow'"),
                   1);
  /* A late reply to a timed-out attempt changes nothing. */
  reply(h, "wf-slow", "wf-slow:send:1", 200, "normal");
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflow_inbox WHERE "
                                 "key='wf-slow:send:1'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflows WHERE id='wf-slow' AND "
                                   "status='failed'"),
                   1);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

static void test_wait_timeout_across_restart(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  start(h, &worker);
  execute(h, "ops.await-enrichment", "wf-wait",
          "{\"enrichment_id\": \"e-none\", \"timeout\": \"3s\"}");
  assert_int_equal(wait_status(h, "wf-wait", "waiting"), 1);
  /* Every process goes away before the deadline. */
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
  tb_h_server_stop(h);
  tb_h_sleep_ms(3500);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflows WHERE id='wf-wait' AND "
                                   "status='waiting'"),
                   1);
  tb_assert_ok(tb_h_server_start(h));
  tb_assert_ok(tb_h_spawn(h, &worker, "worker2", "worker", NULL));
  assert_int_equal(wait_status(h, "wf-wait", "failed"), 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "workflow_id='wf-wait' AND name='await' AND status='timeout'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE "
                                   "event_type='workflow.failed' AND key='wf-wait'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_waits"), 0);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

static void test_early_and_duplicate_events(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  start(h, &worker);
  /* The event first: nobody waits, the inbox keeps it. */
  enrichment_complete(h, "e-early", "enr-early-1");
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflow_inbox WHERE "
                                 "key='e-early' AND workflow_id IS NULL"),
                   1);
  execute(h, "ops.await-enrichment", "wf-early", "{\"enrichment_id\": \"e-early\"}");
  assert_int_equal(wait_status(h, "wf-early", "completed"), 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "workflow_id='wf-early' AND detail LIKE '%%arrived early%%'"),
                   1);

  /* The wait first, then the same event twice under two ids: it resumes the run once. */
  execute(h, "ops.await-enrichment", "wf-dup", "{\"enrichment_id\": \"e-dup\"}");
  assert_int_equal(wait_status(h, "wf-dup", "waiting"), 1);
  enrichment_complete(h, "e-dup", "enr-dup-1");
  enrichment_complete(h, "e-dup", "enr-dup-2");
  assert_int_equal(wait_status(h, "wf-dup", "completed"), 1);
  assert_int_equal(tb_h_wait_sql(h, 2, WAIT_MS,
                                 "SELECT count(*) FROM workflow_inbox WHERE "
                                 "key='e-dup'"),
                   2);
  tb_h_sleep_ms(500); /* a second resume, if any, would land now */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_inbox WHERE key='e-dup' AND "
                                   "workflow_id='wf-dup'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "workflow_id='wf-dup' AND name='await' AND status='ok'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE "
                                   "event_type='workflow.log_event' AND key='wf-dup'"),
                   1);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

static void test_cancel(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  start(h, &worker);
  execute(h, "ops.await-enrichment", "wf-cancel", "{\"enrichment_id\": \"e-cancel\"}");
  assert_int_equal(wait_status(h, "wf-cancel", "waiting"), 1);
  /* Only the 24 h timeout stays. The relay deletes the row of the continuation that started the
   * run after its stream ack, and the worker may have run the step before that delete commits. */
  assert_int_equal(
      tb_h_wait_sql(h, 1, WAIT_MS,
                    "SELECT count(*) = 1 FROM outbox WHERE msg_id LIKE 'wf:wf-cancel:%%'"),
      1);
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "workflows", "cancel", "wf-cancel", "--reason", "operator", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflows WHERE id='wf-cancel' AND "
                                   "status='cancelled' AND error='operator'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_waits"), 0);
  assert_int_equal(
      tb_h_sql_int(h, "SELECT count(*) FROM outbox WHERE msg_id LIKE 'wf:wf-cancel:%%'"), 0);
  /* The event it waited for now finds no wait, and runs no step. */
  enrichment_complete(h, "e-cancel", "enr-cancel-1");
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflow_inbox WHERE "
                                 "key='e-cancel'"),
                   1);
  tb_h_sleep_ms(300);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE "
                                   "event_type='workflow.log_event' AND key='wf-cancel'"),
                   0);
  /* Cancelling twice names the status. */
  tb_h_tierbus(h, &r, RUN_MS, "workflows", "cancel", "wf-cancel", NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "already cancelled");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

int main(void) {
  tb_h_watchdog(170);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_sleep, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_command_retry_on, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_step_timeout, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_wait_timeout_across_restart, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_early_and_duplicate_events, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_cancel, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
