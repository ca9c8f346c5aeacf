/* Integration: messages that can never apply go to the TB_DLQ stream exactly once, with a reason
 * header and a dead_letters row, and are not retried: undecodable bytes, an unknown event type,
 * a payload over max_payload, and an event its handler rejects. The worker keeps running and
 * still processes good events afterwards. */
#include <stdio.h>
#include <stdlib.h>

#include "support/envelope.h"
#include "support/itest.h"
#include "tierbus/v1/envelope.pb-c.h"
#include "tierbus/v1/events.pb-c.h"

#define RUN_MS 20000
#define WAIT_MS 15000
#define MAX_PAYLOAD "max_payload=2048"

/* Server, init and a worker, all with max_payload 2048. */
static void start_all(tb_h_t *h, tb_h_child_t *worker) {
  tb_h_result_t r;
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", "--set", MAX_PAYLOAD, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_assert_ok(tb_h_spawn(h, worker, "worker", "worker", "--set", MAX_PAYLOAD, NULL));
}

/* Packs an envelope around |payload| (may be NULL). Caller frees *out with free(). */
static size_t pack_envelope(const char *id, const char *type, const char *tier,
                            const uint8_t *payload, size_t payload_len, uint8_t **out) {
  size_t n = tb_h_pack_envelope(id, type, tier, "test_dead_letter", payload, payload_len, out);
  assert_non_null(*out);
  return n;
}

/* Waits for DLQ message number |seq|, checks its subject, reason and origin, and that the
 * original body was copied unchanged. */
static void expect_dead_letter(tb_h_t *h, uint64_t seq, const char *subject, const char *reason,
                               const char *stream, const void *body, size_t len) {
  assert_int_equal(tb_h_wait_stream(h, "TB_DLQ", (int64_t)seq, WAIT_MS), (int64_t)seq);
  natsMsg *m = tb_h_stream_get(h, "TB_DLQ", seq);
  assert_non_null(m);
  assert_string_equal(natsMsg_GetSubject(m), subject);
  tb_assert_contains(tb_h_header(m, "Tb-Dlq-Reason"), reason);
  assert_string_equal(tb_h_header(m, "Tb-Dlq-Stream"), stream);
  assert_string_equal(tb_h_header(m, "Tb-Dlq-Deliveries"), "1");
  if (body != NULL) {
    assert_int_equal(natsMsg_GetDataLength(m), (int)len);
    assert_memory_equal(natsMsg_GetData(m), body, len);
  }
  natsMsg_Destroy(m);
}

/* The dead_letters row of |msg_id|: its tier and reason. */
static void expect_recorded(tb_h_t *h, const char *msg_id, const char *tier, const char *reason) {
  assert_int_equal(
      tb_h_wait_sql(h, 1, WAIT_MS, "SELECT count(*) FROM dead_letters WHERE msg_id='%s'", msg_id),
      1);
  char *t = tb_h_sql_text(h, "SELECT tier FROM dead_letters WHERE msg_id='%s'", msg_id);
  assert_non_null(t);
  assert_string_equal(t, tier);
  free(t);
  t = tb_h_sql_text(h, "SELECT reason FROM dead_letters WHERE msg_id='%s'", msg_id);
  tb_assert_contains(t, reason);
  free(t);
}

/* The engine also keeps a processed record (outcome 'dead', with its dispatch facts) for each
 * dead letter. Checked last in each test, after the properties the DLQ exists for. */
static void expect_processed_dead(tb_h_t *h, const char *msg_id) {
  int64_t n = tb_h_sql_int(h,
                           "SELECT count(*) FROM processed WHERE msg_id='%s' AND "
                           "outcome='dead' AND deliveries=1",
                           msg_id);
  if (n != 1)
    print_error("dead letter %s: %lld processed rows with outcome 'dead', expected 1\n", msg_id,
                (long long)n);
  assert_int_equal(n, 1);
}

/* Waits past the tier's first backoff and checks that the consumer delivered each of its stream's
 * messages exactly once (a retry would add a delivery) and holds nothing unacked. */
static void expect_no_redelivery(tb_h_t *h, const char *stream, const char *consumer,
                                 int backoff_ms) {
  tb_h_sleep_ms(backoff_ms + 500);
  uint64_t delivered = 0, pending = 0;
  int64_t ack_pending = -1;
  assert_int_equal(tb_h_consumer_info(h, stream, consumer, &delivered, &pending, &ack_pending), 0);
  assert_int_equal(delivered, (uint64_t)tb_h_stream_msgs(h, stream));
  assert_int_equal(pending, 0);
  assert_int_equal(ack_pending, 0);
}

/* A good event after the bad ones is applied: the worker survived them. */
static void expect_still_working(tb_h_t *h, tb_h_child_t *worker, const char *id) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", "CLIENT_CREATED", "--json", "{\"client_id\": \"good\"}",
               "--id", id, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(
      tb_h_wait_sql(h, 1, WAIT_MS, "SELECT count(*) FROM activity_log WHERE msg_id='%s'", id), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM processed WHERE msg_id='%s' AND "
                                "outcome='applied'",
                                id),
                   1);
  assert_true(tb_h_child_alive(worker));
  assert_int_equal(tb_h_child_term(worker, 15000), 0);
}

static void test_malformed_and_unknown(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  start_all(h, &worker);

  /* Wire type 7 does not exist, so this can never decode as protobuf. */
  static const char garbage[] = "\x07garbage\xff\x00tail";
  assert_int_equal(tb_h_publish_raw(h, "tb.evt.normal.crm.CLIENT_CREATED", "garbage-1", garbage,
                                    sizeof(garbage)),
                   0);
  expect_dead_letter(h, 1, "tb.dlq.normal.crm.CLIENT_CREATED", "malformed", "TB_NORMAL_CRM",
                     garbage, sizeof(garbage));
  expect_recorded(h, "garbage-1", "normal", "malformed");

  uint8_t *body = NULL;
  size_t len = pack_envelope("nope-1", "NOPE", "normal", NULL, 0, &body);
  assert_int_equal(tb_h_publish_raw(h, "tb.evt.normal.ops.NOPE", "nope-1", body, len), 0);
  expect_dead_letter(h, 2, "tb.dlq.normal.ops.NOPE", "NOPE", "TB_NORMAL_OPS", body, len);
  free(body);
  natsMsg *m = tb_h_stream_get(h, "TB_DLQ", 2);
  tb_assert_contains(tb_h_header(m, "Tb-Dlq-Reason"), "unknown event");
  natsMsg_Destroy(m);
  expect_recorded(h, "nope-1", "normal", "NOPE");

  expect_no_redelivery(h, "TB_NORMAL_CRM", NULL, 2000);
  expect_no_redelivery(h, "TB_NORMAL_OPS", NULL, 0); /* the wait above covered this one */
  assert_int_equal(tb_h_stream_msgs(h, "TB_DLQ"), 2);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 2);
  expect_still_working(h, &worker, "good-1");
  expect_processed_dead(h, "garbage-1");
  expect_processed_dead(h, "nope-1");
}

static void test_oversize(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  start_all(h, &worker);

  /* A valid CLIENT_CREATED whose event payload alone is over max_payload (2048), as a publisher
   * that does not check the limit would send it. The stream takes it (its limit leaves room for
   * the envelope), so the worker must refuse it. */
  char name[2901];
  memset(name, 'x', sizeof(name) - 1);
  name[sizeof(name) - 1] = '\0';
  Tierbus__V1__ClientCreated cc = TIERBUS__V1__CLIENT_CREATED__INIT;
  cc.client_id = "c-big";
  cc.client_name = name;
  size_t plen = tierbus__v1__client_created__get_packed_size(&cc);
  uint8_t payload[3000], *body = NULL;
  assert_true(plen <= sizeof(payload));
  tierbus__v1__client_created__pack(&cc, payload);
  size_t len = pack_envelope("big-1", "CLIENT_CREATED", "normal", payload, plen, &body);
  int published = tb_h_publish_raw(h, "tb.evt.normal.crm.CLIENT_CREATED", "big-1", body, len);
  /* Whatever the worker does with it, it does it at once: fail fast if it was applied. */
  tb_h_wait_sql(h, 1, WAIT_MS,
                "SELECT (SELECT count(*) FROM dead_letters WHERE msg_id='big-1') + "
                "(SELECT count(*) FROM processed WHERE msg_id='big-1')");
  int applied = tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE msg_id='big-1'") != 0;
  /* The DLQ keeps the body unchanged. */
  natsMsg *m = tb_h_stream_get(h, "TB_DLQ", 1);
  int copied = m != NULL && natsMsg_GetDataLength(m) == (int)len &&
               memcmp(natsMsg_GetData(m), body, len) == 0;
  natsMsg_Destroy(m);
  free(body);
  assert_in_range(len, 2900, 3100);
  assert_int_equal(published, 0);
  if (applied)
    fail_msg("big-1 (event payload %zu bytes, body %zu bytes, max_payload 2048) was applied "
             "instead of dead-lettered",
             plen, len);
  expect_dead_letter(h, 1, "tb.dlq.normal.crm.CLIENT_CREATED", "exceeds max_payload",
                     "TB_NORMAL_CRM", NULL, 0);
  assert_true(copied);
  expect_recorded(h, "big-1", "normal", "exceeds max_payload");
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE msg_id='big-1'"), 0);

  expect_no_redelivery(h, "TB_NORMAL_CRM", NULL, 2000);
  assert_int_equal(tb_h_stream_msgs(h, "TB_DLQ"), 1);
  expect_still_working(h, &worker, "good-2");
  expect_processed_dead(h, "big-1");
}

static void test_rejected_by_handler(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  tb_h_result_t r;
  start_all(h, &worker);

  tb_h_tierbus(h, &r, RUN_MS, "publish", "WORKSPACE_REPO_ADDED", "--json",
               "{\"workspace_id\": \"ws1\", \"repository_id\": \"\"}", "--id", "empty-repo", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  expect_dead_letter(h, 1, "tb.dlq.high.workspace.WORKSPACE_REPO_ADDED", "rejected by handler",
                     "TB_HIGH_WORKSPACE", NULL, 0);
  natsMsg *m = tb_h_stream_get(h, "TB_DLQ", 1);
  tb_assert_contains(tb_h_header(m, "Tb-Dlq-Reason"), "repository_id");
  natsMsg_Destroy(m);
  expect_recorded(h, "empty-repo", "high", "rejected by handler");
  char *t = tb_h_sql_text(h, "SELECT event_type FROM dead_letters WHERE msg_id='empty-repo'");
  assert_non_null(t);
  assert_string_equal(t, "WORKSPACE_REPO_ADDED");
  free(t);
  /* The handler's writes were rolled back. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM tracked_repositories"), 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workspace_repositories"), 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM priority_audit"), 0);

  expect_no_redelivery(h, "TB_HIGH_WORKSPACE", NULL, 1000);
  assert_int_equal(tb_h_stream_msgs(h, "TB_DLQ"), 1);
  expect_still_working(h, &worker, "good-3");
  expect_processed_dead(h, "empty-repo");
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_malformed_and_unknown, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_oversize, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_rejected_by_handler, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
