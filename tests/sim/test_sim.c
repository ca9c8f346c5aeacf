/* Integration: `tierbus sim` against a real nats-server. Commands published on tb.cmd.> get a
 * command-reply event on their reply tier (envelope id "reply:<command_id>", workflow and
 * correlation ids copied), failure rules answer by attempt (429 then 200; drop then 200),
 * enrichment.submit is followed by enrichment-complete after the delay, malformed commands are
 * terminated without stopping the simulator, a stop finishes in-flight commands, and bad flags
 * exit 2 naming the flag. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "support/itest.h"
#include "tierbus/v1/command.pb-c.h"
#include "tierbus/v1/envelope.pb-c.h"
#include "tierbus/v1/events.pb-c.h"

#define RUN_MS 20000
#define WAIT_MS 15000

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Starts the server and `tierbus sim ARGS...`, and waits for its ready line. */
#define START_SIM(h, child, ...)                                                                   \
  do {                                                                                             \
    tb_assert_ok(tb_h_server_start(h));                                                            \
    tb_assert_ok(tb_h_spawn(h, child, "sim", "sim", "--log-level", "debug", ##__VA_ARGS__, NULL)); \
    wait_ready(h, child);                                                                          \
  } while (0)

static void wait_ready(tb_h_t *h, tb_h_child_t *c) {
  int64_t end = tb_h_now_ms() + WAIT_MS;
  for (;;) {
    char *out = tb_h_read_file(c->out_path);
    int ready = out != NULL && strstr(out, "tierbus sim: answering tb.cmd.> on nats://") != NULL;
    free(out);
    if (ready) return;
    if (!tb_h_child_alive(c) || tb_h_now_ms() > end) {
      tb_h_dump_logs(h, 30);
      fail_msg("tierbus sim did not print its ready line");
    }
    tb_h_sleep_ms(20);
  }
}

/* Publishes a Command on tb.cmd.<service>.<action> with Nats-Msg-Id |msg_id| (the command id
 * when NULL). */
static void send_cmd(tb_h_t *h, const char *service, const char *action, const char *command_id,
                     uint32_t attempt, const char *reply_tier, const char *input,
                     const char *msg_id) {
  Tierbus__V1__Command c = TIERBUS__V1__COMMAND__INIT;
  char wf[64];
  snprintf(wf, sizeof(wf), "%s", command_id);
  char *colon = strchr(wf, ':');
  if (colon) *colon = '\0';
  c.command_id = (char *)command_id;
  c.workflow_id = wf;
  c.step = "step";
  c.attempt = attempt;
  c.service = (char *)service;
  c.action = (char *)action;
  c.reply_tier = (char *)reply_tier;
  c.input_json = (char *)input;
  c.correlation_id = "corr-1";
  uint8_t buf[4096];
  size_t n = tierbus__v1__command__get_packed_size(&c);
  assert_true(n <= sizeof(buf));
  tierbus__v1__command__pack(&c, buf);
  char subject[128];
  snprintf(subject, sizeof(subject), "tb.cmd.%s.%s", service, action);
  assert_int_equal(tb_h_publish_raw(h, subject, msg_id ? msg_id : command_id, buf, n), 0);
}

/* Waits until the simulator's consumer has taken |delivered| commands and settled every one. */
static void wait_settled(tb_h_t *h, uint64_t delivered) {
  int64_t end = tb_h_now_ms() + WAIT_MS;
  uint64_t d = 0, pending = 1;
  int64_t ack_pending = 1;
  while (tb_h_now_ms() < end) {
    if (tb_h_consumer_info(h, "TB_CMD", "tb-sim", &d, &pending, &ack_pending) == 0 &&
        d >= delivered && pending == 0 && ack_pending == 0)
      return;
    tb_h_sleep_ms(20);
  }
  tb_h_dump_logs(h, 30);
  fail_msg("tb-sim: delivered %llu (want %llu), pending %llu, ack pending %lld",
           (unsigned long long)d, (unsigned long long)delivered, (unsigned long long)pending,
           (long long)ack_pending);
}

/* An event read back from a (tier, domain) stream: the envelope and its payload. */
typedef struct got {
  natsMsg *msg;
  Tierbus__V1__Envelope *env;
  Tierbus__V1__CommandReply *reply;
  Tierbus__V1__EnrichmentComplete *enrich;
} got_t;

/* Reads message |seq| of |stream|, checks the envelope against |type| and |id| (also the
 * Nats-Msg-Id), and decodes the payload. */
static got_t get_event(tb_h_t *h, const char *stream, uint64_t seq, const char *type,
                       const char *id) {
  got_t g = {0};
  assert_int_equal(tb_h_wait_stream(h, stream, (int64_t)seq, WAIT_MS), (int64_t)seq);
  g.msg = tb_h_stream_get(h, stream, seq);
  assert_non_null(g.msg);
  g.env = tierbus__v1__envelope__unpack(NULL, (size_t)natsMsg_GetDataLength(g.msg),
                                        (const uint8_t *)natsMsg_GetData(g.msg));
  assert_non_null(g.env);
  assert_string_equal(g.env->type, type);
  assert_string_equal(g.env->id, id);
  assert_string_equal(tb_h_header(g.msg, "Nats-Msg-Id"), id);
  assert_string_equal(g.env->source, "tierbus-sim");
  if (strcmp(type, "command-reply") == 0) {
    g.reply = tierbus__v1__command_reply__unpack(NULL, g.env->payload.len, g.env->payload.data);
    assert_non_null(g.reply);
  } else {
    g.enrich =
        tierbus__v1__enrichment_complete__unpack(NULL, g.env->payload.len, g.env->payload.data);
    assert_non_null(g.enrich);
  }
  return g;
}

static void got_free(got_t *g) {
  if (g->reply) tierbus__v1__command_reply__free_unpacked(g->reply, NULL);
  if (g->enrich) tierbus__v1__enrichment_complete__free_unpacked(g->enrich, NULL);
  if (g->env) tierbus__v1__envelope__free_unpacked(g->env, NULL);
  natsMsg_Destroy(g->msg);
  memset(g, 0, sizeof(*g));
}

/* Parses a reply's result_json. Caller decrefs. */
static json_t *result_of(const got_t *g) {
  json_error_t jerr;
  json_t *r = json_loads(g->reply->result_json, 0, &jerr);
  if (r == NULL) print_error("result_json '%s': %s\n", g->reply->result_json, jerr.text);
  assert_non_null(r);
  return r;
}

static const char *MAIL = "{\"to\":\"ada@example.com\",\"template\":\"welcome\"}";

static void test_email_reply(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t sim;
  START_SIM(h, &sim);

  int64_t t0 = wall_us();
  send_cmd(h, "email", "send", "wf-1:welcome:1", 1, "normal", MAIL, NULL);
  got_t g = get_event(h, "TB_NORMAL_WORKFLOW", 1, "command-reply", "reply:wf-1:welcome:1");
  assert_string_equal(natsMsg_GetSubject(g.msg), "tb.evt.normal.workflow.command-reply");
  assert_string_equal(g.env->tier, "normal");
  assert_string_equal(g.env->workflow_id, "wf-1");
  assert_string_equal(g.env->correlation_id, "corr-1");
  assert_true(g.env->occurred_at_us >= t0);
  assert_string_equal(g.reply->command_id, "wf-1:welcome:1");
  assert_string_equal(g.reply->workflow_id, "wf-1");
  assert_int_equal(g.reply->status_code, 200);
  assert_string_equal(g.reply->error, "");
  json_t *r = result_of(&g);
  const char *mid = json_string_value(json_object_get(r, "message_id"));
  assert_non_null(mid);
  assert_int_equal(strncmp(mid, "sim-msg-", 8), 0);
  json_decref(r);
  got_free(&g);

  /* The reply goes to the command's reply tier; without one, to the catalogue's default. */
  send_cmd(h, "email", "send", "wf-2:welcome:1", 1, "high", MAIL, NULL);
  g = get_event(h, "TB_HIGH_WORKFLOW", 1, "command-reply", "reply:wf-2:welcome:1");
  assert_string_equal(natsMsg_GetSubject(g.msg), "tb.evt.high.workflow.command-reply");
  got_free(&g);
  send_cmd(h, "email", "send", "wf-3:welcome:1", 1, "", MAIL, NULL);
  g = get_event(h, "TB_NORMAL_WORKFLOW", 2, "command-reply", "reply:wf-3:welcome:1");
  got_free(&g);

  /* An unknown action is answered 404, naming it. */
  send_cmd(h, "crm", "frobnicate", "wf-4:x:1", 1, "normal", "{}", NULL);
  g = get_event(h, "TB_NORMAL_WORKFLOW", 3, "command-reply", "reply:wf-4:x:1");
  assert_int_equal(g.reply->status_code, 404);
  tb_assert_contains(g.reply->error, "crm.frobnicate: unknown command");
  assert_string_equal(g.reply->result_json, "{}");
  got_free(&g);

  /* The same command delivered again (another stream message): the same reply id, which the
   * reply's stream drops as a duplicate. */
  send_cmd(h, "email", "send", "wf-1:welcome:1", 1, "normal", MAIL, "wf-1:welcome:1:again");
  wait_settled(h, 5);
  tb_h_sleep_ms(200);
  assert_int_equal(tb_h_stream_msgs(h, "TB_NORMAL_WORKFLOW"), 3);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_WORKFLOW"), 1);
  assert_int_equal(tb_h_tier_msgs(h, "normal"), 3);
  assert_int_equal(tb_h_tier_msgs(h, "high"), 1);

  assert_int_equal(tb_h_child_term(&sim, 10000), 0);
  char *err = tb_h_child_stderr(&sim);
  tb_assert_contains(err, "command wf-1:welcome:1 email.send attempt 1 workflow wf-1: 200");
  tb_assert_contains(err, "stopped: commands=5 replies=5 failures=1 dropped=0 malformed=0");
  free(err);
}

static void test_fail_injection(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t sim;
  START_SIM(h, &sim, "--fail", "email.send=429:1", "--fail", "pdf.generate=drop:1");

  send_cmd(h, "email", "send", "wf-1:welcome:1", 1, "normal", MAIL, NULL);
  got_t g = get_event(h, "TB_NORMAL_WORKFLOW", 1, "command-reply", "reply:wf-1:welcome:1");
  assert_int_equal(g.reply->status_code, 429);
  assert_string_equal(g.reply->error, "simulated 429");
  got_free(&g);
  send_cmd(h, "email", "send", "wf-1:welcome:2", 2, "normal", MAIL, NULL);
  g = get_event(h, "TB_NORMAL_WORKFLOW", 2, "command-reply", "reply:wf-1:welcome:2");
  assert_int_equal(g.reply->status_code, 200);
  assert_string_equal(g.reply->error, "");
  json_t *r = result_of(&g);
  assert_non_null(json_object_get(r, "message_id"));
  json_decref(r);
  got_free(&g);

  /* drop:1: the first attempt gets no answer at all (but is acked), the second one does. */
  const char *pdf = "{\"client_id\":\"c1\",\"document_id\":\"bp-1\",\"kind\":\"business-plan\"}";
  send_cmd(h, "pdf", "generate", "wf-2:pdf:1", 1, "normal", pdf, NULL);
  wait_settled(h, 3);
  tb_h_sleep_ms(300);
  assert_int_equal(tb_h_tier_msgs(h, "normal"), 2);
  send_cmd(h, "pdf", "generate", "wf-2:pdf:2", 2, "normal", pdf, NULL);
  g = get_event(h, "TB_NORMAL_WORKFLOW", 3, "command-reply", "reply:wf-2:pdf:2");
  assert_int_equal(g.reply->status_code, 200);
  r = result_of(&g);
  tb_assert_contains(json_string_value(json_object_get(r, "path")), "sim/pdf/c1/sim-pdf-");
  json_decref(r);
  got_free(&g);

  assert_int_equal(tb_h_child_term(&sim, 10000), 0);
  char *err = tb_h_child_stderr(&sim);
  tb_assert_contains(err, "command wf-2:pdf:1 pdf.generate attempt 1: dropped");
  tb_assert_contains(err, "commands=4 replies=3 failures=1 dropped=1");
  free(err);
}

static void test_enrichment(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t sim;
  START_SIM(h, &sim, "--latency", "100ms", "--enrich-delay", "300ms");

  const char *in = "{\"batch_id\":\"b1\",\"subscribers\":["
                   "{\"subscriber_id\":\"s1\",\"email\":\"ann@gmail.com\"},"
                   "{\"subscriber_id\":\"s2\",\"email\":\"bob@yahoo.com\"}]}";
  int64_t t0 = wall_us();
  send_cmd(h, "enrichment", "submit", "wf-7:submit:1", 1, "low", in, NULL);
  got_t g = get_event(h, "TB_LOW_WORKFLOW", 1, "command-reply", "reply:wf-7:submit:1");
  assert_int_equal(g.reply->status_code, 200);
  assert_true(g.env->occurred_at_us - t0 >= 100000); /* --latency */
  json_t *r = result_of(&g);
  const char *eid = json_string_value(json_object_get(r, "enrichment_id"));
  assert_non_null(eid);
  char enrich_id[128];
  snprintf(enrich_id, sizeof(enrich_id), "enrich:%s", eid);
  int64_t reply_at = g.env->occurred_at_us;

  /* The enrichment-complete keeps its own domain: the command names no reply domain, and only
   * the reply would follow one. */
  got_t e = get_event(h, "TB_LOW_ENRICHMENT", 1, "enrichment-complete", enrich_id);
  assert_string_equal(natsMsg_GetSubject(e.msg), "tb.evt.low.enrichment.enrichment-complete");
  assert_true(e.env->occurred_at_us - reply_at >= 300000); /* --enrich-delay */
  assert_string_equal(e.env->workflow_id, "wf-7");
  assert_string_equal(e.env->correlation_id, "corr-1");
  assert_string_equal(e.enrich->enrichment_id, eid);
  assert_string_equal(e.enrich->workflow_id, "wf-7");
  assert_int_equal(e.enrich->status_code, 200);
  assert_int_equal(e.enrich->n_results, 2);
  assert_string_equal(e.enrich->results[0]->subscriber_id, "s1");
  assert_string_equal(e.enrich->results[0]->email, "ann@gmail.com");
  assert_string_equal(e.enrich->results[1]->subscriber_id, "s2");
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(e.enrich->results[i]->n_fields, 4);
    assert_string_equal(e.enrich->results[i]->error, "");
  }
  json_decref(r);
  got_free(&g);
  got_free(&e);
  wait_settled(h, 1);
  assert_int_equal(tb_h_tier_msgs(h, "low"), 2);

  /* A failed submit (bad input) is answered 400 and followed by no enrichment-complete. */
  send_cmd(h, "enrichment", "submit", "wf-8:submit:1", 1, "low", "{\"batch_id\":\"b2\"}", NULL);
  g = get_event(h, "TB_LOW_WORKFLOW", 2, "command-reply", "reply:wf-8:submit:1");
  assert_int_equal(g.reply->status_code, 400);
  tb_assert_contains(g.reply->error, "subscribers is required");
  got_free(&g);
  wait_settled(h, 2);
  tb_h_sleep_ms(500);
  assert_int_equal(tb_h_stream_msgs(h, "TB_LOW_ENRICHMENT"), 1);
  assert_int_equal(tb_h_tier_msgs(h, "low"), 3);

  assert_int_equal(tb_h_child_term(&sim, 10000), 0);
}

static void test_malformed(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t sim;
  START_SIM(h, &sim);

  static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
  assert_int_equal(tb_h_publish_raw(h, "tb.cmd.email.send", "junk-1", junk, sizeof(junk)), 0);
  /* A valid but empty Command: no command_id to answer to. */
  assert_int_equal(tb_h_publish_raw(h, "tb.cmd.email.send", "empty-1", "", 0), 0);
  /* A command id that is not UTF-8. */
  send_cmd(h, "email", "send", "wf-\xc3\x28:x:1", 1, "normal", MAIL, "badutf8-1");
  send_cmd(h, "email", "send", "wf-9:welcome:1", 1, "normal", MAIL, NULL);
  got_t g = get_event(h, "TB_NORMAL_WORKFLOW", 1, "command-reply", "reply:wf-9:welcome:1");
  assert_int_equal(g.reply->status_code, 200);
  got_free(&g);
  wait_settled(h, 4);
  assert_true(tb_h_child_alive(&sim));
  assert_int_equal(tb_h_tier_msgs(h, "normal"), 1);

  assert_int_equal(tb_h_child_term(&sim, 10000), 0);
  char *err = tb_h_child_stderr(&sim);
  tb_assert_contains(err, "malformed command on tb.cmd.email.send (stream seq 1, 4 bytes): not a "
                          "tierbus.v1.Command; terminated");
  tb_assert_contains(err, "(stream seq 2, 0 bytes): command_id is empty");
  tb_assert_contains(err, "(stream seq 3,");
  tb_assert_contains(err, "not valid UTF-8");
  tb_assert_contains(err, "commands=4 replies=1 failures=0 dropped=0 malformed=3");
  free(err);
}

/* SIGTERM while a command waits out its latency: it is still answered and acked before exit. */
static void test_stop_finishes_inflight(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t sim;
  START_SIM(h, &sim, "--latency", "1s");
  send_cmd(h, "ai", "generate-business-plan", "wf-5:plan:1", 1, "normal", "{\"client_id\":\"c\"}",
           NULL);
  /* Delivered and held (ack pending), not yet answered. */
  int64_t end = tb_h_now_ms() + WAIT_MS;
  int64_t ack_pending = 0;
  while (ack_pending != 1 && tb_h_now_ms() < end) {
    tb_h_sleep_ms(20);
    tb_h_consumer_info(h, "TB_CMD", "tb-sim", NULL, NULL, &ack_pending);
  }
  assert_int_equal(ack_pending, 1);
  assert_int_equal(tb_h_tier_msgs(h, "normal"), 0);
  assert_int_equal(tb_h_child_term(&sim, 10000), 0);
  assert_int_equal(tb_h_stream_msgs(h, "TB_NORMAL_WORKFLOW"), 1);
  assert_int_equal(tb_h_tier_msgs(h, "normal"), 1);
  wait_settled(h, 1);
  got_t g = get_event(h, "TB_NORMAL_WORKFLOW", 1, "command-reply", "reply:wf-5:plan:1");
  assert_int_equal(g.reply->status_code, 200);
  json_t *r = result_of(&g);
  tb_assert_contains(json_string_value(json_object_get(r, "business_plan_id")), "sim-bp-");
  json_decref(r);
  got_free(&g);
}

static void expect_usage(tb_h_t *h, const char *needle, ...) {
  const char *argv[16] = {h->binary, "sim"};
  int n = 2;
  va_list ap;
  va_start(ap, needle);
  for (const char *a = va_arg(ap, const char *); a != NULL && n < 15; a = va_arg(ap, const char *))
    argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  tb_h_result_t r;
  tb_h_execv(h, &r, RUN_MS, argv);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, needle);
  tb_h_result_free(&r);
}

static void test_bad_flags(void **state) {
  tb_h_t *h = *state;
  expect_usage(h, "tierbus sim: --latency: expected a duration", "--latency", "abc", NULL);
  expect_usage(h, "--enrich-delay: expected a duration", "--enrich-delay", "-1s", NULL);
  expect_usage(h, "--fail 'email.send=42': code must be a status from 400 to 599", "--fail",
               "email.send=42", NULL);
  expect_usage(h, "unknown action 'mail.send'", "--fail", "mail.send=500", NULL);
  expect_usage(h, "already has a rule", "--fail", "email.send=500", "--fail", "email.send=drop",
               NULL);
  expect_usage(h, "bogus", "--bogus", NULL);
  expect_usage(h, "unexpected argument 'extra'", "extra", NULL);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_email_reply, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_fail_injection, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_enrichment, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_malformed, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_stop_finishes_inflight, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_bad_flags, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
