/* Integration: the dead letters end to end. `dlq list/show/purge` on real entries; a replay
 * after the cause is fixed applies once however often it is replayed; `publish` refuses what it
 * can know is bad with nothing published; an over-long id from another client is dead-lettered
 * whole (id_too_long) and a second id sharing its first 255 bytes is not taken for a duplicate;
 * a flood of bad messages mixed into valid traffic leaves every valid event processed and every
 * bad one in the DLQ with its reason, with one worker that never restarts. */
#include <stdio.h>
#include <stdlib.h>

#include "support/envelope.h"
#include "support/itest.h"
#include "tierbus/v1/envelope.pb-c.h"
#include "tierbus/v1/events.pb-c.h"

#define RUN_MS 30000
#define WAIT_MS 20000

/* Bad messages in the flood test, and as many valid events: the 10k (a third each
 * malformed, unknown and over-long), interleaved one for one with valid traffic. TB_DLQ_FLOOD
 * sets another count for a run by hand. */
#define FLOOD_DEFAULT 10000

#define TB(...)                                                                                    \
  do {                                                                                             \
    tb_h_tierbus(h, &r, RUN_MS, __VA_ARGS__, NULL);                                                \
  } while (0)

static void start_server(tb_h_t *h) {
  tb_h_result_t r;
  tb_assert_ok(tb_h_server_start(h));
  TB("init");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* Packs an envelope around |payload| (may be NULL). Caller frees *out with free(). */
static size_t pack_envelope(const char *id, const char *type, const char *tier,
                            const uint8_t *payload, size_t payload_len, uint8_t **out) {
  size_t n = tb_h_pack_envelope(id, type, tier, "test_dlq", payload, payload_len, out);
  assert_non_null(*out);
  return n;
}

/* A capture/repository.sync envelope (the activity handler: one activity_log row). */
static size_t repo_sync(const char *id, const char *repo, uint8_t **out) {
  Tierbus__V1__RepositorySync rs = TIERBUS__V1__REPOSITORY_SYNC__INIT;
  rs.repository_id = (char *)repo;
  uint8_t pbuf[256];
  size_t plen = tierbus__v1__repository_sync__pack(&rs, pbuf);
  return pack_envelope(id, "capture/repository.sync", "normal", pbuf, plen, out);
}

static char *long_id(char fill, size_t len, const char *tail) {
  char *s = malloc(len + strlen(tail) + 1);
  assert_non_null(s);
  memset(s, fill, len);
  strcpy(s + len, tail);
  return s;
}

/* ---------------------------------------------------------------- publish refusals */

static void test_publish_refusals(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  start_server(h);

  TB("publish", "execute-workflow", "--json", "{\"workflow_type\": \"noSuchWorkflow\"}");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown workflow_type 'noSuchWorkflow'");
  tb_h_result_free(&r);

  /* enrichment-complete needs enrichment_id or workflow_id (issue 12): its handler checks,
   * test_seed_parity covers it. */

  TB("publish", "CLIENT_CREATED", "--json", "{}");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "field 'client_id' is required");
  tb_h_result_free(&r);

  char *id = long_id('x', 128, "");
  TB("publish", "CLIENT_CREATED", "--json", "{\"client_id\": \"c1\"}", "--id", id);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "id must be 1 to 127 bytes, got 128");
  tb_h_result_free(&r);

  /* In a batch: one bad line and nothing of the file is sent. */
  char path[TB_H_PATH], text[1024];
  snprintf(text, sizeof(text),
           "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"client_id\": \"ok\"}}\n"
           "{\"type\": \"execute-workflow\", \"payload\": {\"workflow_type\": \"nope\"}}\n");
  tb_assert_ok(tb_h_write_file(h, "bad.ndjson", text, path, sizeof(path)));
  TB("publish", "--file", path);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, ":2: execute-workflow: unknown workflow_type 'nope'");
  tb_h_result_free(&r);

  for (const char **s =
           (const char *[]){"TB_NORMAL_OPS", "TB_NORMAL_ENRICHMENT", "TB_HIGH_CRM", NULL};
       *s; s++)
    assert_int_equal(tb_h_stream_msgs(h, *s), 0);

  /* The 127-byte id is the limit, and is accepted. */
  id[127] = '\0';
  TB("publish", "CLIENT_CREATED", "--json", "{\"client_id\": \"c1\"}", "--id", id);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_CRM"), 1);
  free(id);
}

/* ---------------------------------------------------------------- long ids */

static void test_long_ids_dead_lettered_whole(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  start_server(h);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));

  /* Two 300-byte ids that share their first 255 bytes: before, both were cut to 255 and the
   * second was dropped as a duplicate. */
  char *a = long_id('a', 255, "-first-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  char *b = long_id('a', 255, "-second-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  char *c = long_id('c', 128, ""); /* one byte over the limit */
  const char *ids[] = {a, b, c};
  for (int i = 0; i < 3; i++) {
    uint8_t *body = NULL;
    size_t len = repo_sync(ids[i], "repo-long", &body);
    assert_int_equal(
        tb_h_publish_raw(h, "tb.evt.normal.workspace.repository-sync", ids[i], body, len), 0);
    free(body);
  }
  assert_int_equal(
      tb_h_wait_sql(h, 3, WAIT_MS, "SELECT count(*) FROM dead_letters WHERE class = 'id_too_long'"),
      3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(tb_h_sql_int(h,
                                  "SELECT count(*) FROM dead_letters WHERE msg_id = '%s' AND "
                                  "length(msg_id) = %zu AND reason LIKE '%%exceeds the limit of "
                                  "127%%'",
                                  ids[i], strlen(ids[i])),
                     1);
  }
  assert_int_equal(tb_h_stream_msgs(h, "TB_DLQ"), 3);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), 0);

  /* A valid event after them is applied by the same worker. */
  uint8_t *body = NULL;
  size_t len = repo_sync("ok-after-long", "repo-ok", &body);
  assert_int_equal(
      tb_h_publish_raw(h, "tb.evt.normal.workspace.repository-sync", "ok-after-long", body, len),
      0);
  free(body);
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM activity_log WHERE msg_id='ok-after-long'"),
                   1);
  assert_true(tb_h_child_alive(&worker));
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
  free(a);
  free(b);
  free(c);
}

/* ---------------------------------------------------------------- list, show, purge */

static void test_list_show_purge(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  tb_h_result_t r;
  start_server(h);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));

  static const char garbage[] = "\x07garbage\xff\x00tail";
  assert_int_equal(tb_h_publish_raw(h, "tb.evt.normal.crm.CLIENT_CREATED", "garbage-1", garbage,
                                    sizeof(garbage)),
                   0);
  uint8_t *body = NULL;
  size_t len = pack_envelope("nope-1", "NOPE", "low", NULL, 0, &body);
  assert_int_equal(tb_h_publish_raw(h, "tb.evt.low.ops.NOPE", "nope-1", body, len), 0);
  free(body);
  assert_int_equal(tb_h_wait_sql(h, 2, WAIT_MS, "SELECT count(*) FROM dead_letters"), 2);

  TB("dlq", "list");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "malformed");
  tb_assert_contains(r.out, "unknown_event");
  tb_assert_contains(r.out, "2 entries");
  tb_h_result_free(&r);

  TB("dlq", "list", "--reason", "unknown_event", "--json");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "\"msg_id\": \"nope-1\"");
  tb_assert_not_contains(r.out, "garbage-1");
  tb_h_result_free(&r);

  TB("dlq", "list", "--tier", "normal", "--since", "1h");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "garbage-1");
  tb_assert_contains(r.out, "1 entry");
  tb_h_result_free(&r);

  TB("dlq", "list", "--since", "2999-01-01T00:00:00Z");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "0 entries");
  tb_h_result_free(&r);

  TB("dlq", "list", "--reason", "bogus");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown reason 'bogus'");
  tb_h_result_free(&r);
  TB("dlq", "list", "--since", "yesterday");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--since: 'yesterday'");
  tb_h_result_free(&r);
  TB("dlq", "list", "--tier", "urgent");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown tier 'urgent'");
  tb_h_result_free(&r);

  TB("dlq", "show", "garbage-1");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "reason      malformed");
  tb_assert_contains(r.out, "subject     tb.evt.normal.crm.CLIENT_CREATED");
  tb_assert_contains(r.out, "from        TB_NORMAL_CRM seq 1, 1 deliveries");
  tb_assert_contains(r.out, "Nats-Msg-Id");
  tb_assert_contains(r.out, "not a decodable envelope");
  tb_h_result_free(&r);
  TB("dlq", "show", "nope-404");
  tb_assert_exit(r, 1);
  tb_h_result_free(&r);

  /* Purge refuses without --yes, and deletes nothing. */
  TB("dlq", "purge", "--reason", "malformed");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--yes");
  tb_h_result_free(&r);
  TB("dlq", "purge", "--yes");
  tb_assert_exit(r, 2); /* which entries? */
  tb_h_result_free(&r);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 2);
  assert_int_equal(tb_h_stream_msgs(h, "TB_DLQ"), 2);

  TB("dlq", "purge", "--reason", "malformed", "--yes");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "purged 1 dead letter");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 1);
  assert_int_equal(tb_h_stream_msgs(h, "TB_DLQ"), 1);
  /* The message stays dead: its processed record is kept. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE msg_id='garbage-1' AND "
                                   "outcome='dead'"),
                   1);

  /* A malformed message cannot apply unchanged: replay skips it. */
  TB("dlq", "replay", "--all");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "skipped 0"); /* unknown_event is replayable: it dead-letters again */
  tb_h_result_free(&r);
  assert_true(tb_h_child_alive(&worker));
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

/* ---------------------------------------------------------------- replay */

/* Makes the activity log refuse rows of ids starting "blocked-": the handler of such an event
 * fails (a store error, retried) until the trigger is dropped: a cause that can be fixed. */
static void block(tb_h_t *h, int on) {
  sqlite3 *db = NULL; /* tb_h_db_open is read-only */
  assert_int_equal(sqlite3_open(h->db, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  const char *sql = on ? "CREATE TRIGGER test_block BEFORE INSERT ON activity_log "
                         "WHEN NEW.msg_id LIKE 'blocked-%' BEGIN "
                         "SELECT RAISE(ABORT, 'blocked by the test'); END;"
                       : "DROP TRIGGER test_block";
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  if (rc != SQLITE_OK) print_error("%s: %s\n", sql, err ? err : "?");
  sqlite3_free(err);
  sqlite3_close(db);
  assert_int_equal(rc, SQLITE_OK);
}

static void test_replay_applies_once(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  tb_h_result_t r;
  /* Two deliveries, 200 ms apart, before the dead-letter stream. */
  tb_assert_ok(tb_h_config_edit(h, "fast.yaml", "max_deliver: 5, backoff: [2s, 10s, 60s]",
                                "max_deliver: 2, backoff: [200ms]"));
  start_server(h);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  assert_int_equal(
      tb_h_wait_sql(h, 1, WAIT_MS, "SELECT count(*) FROM sqlite_master WHERE name='activity_log'"),
      1);
  block(h, 1);

  uint8_t *body = NULL;
  size_t len = repo_sync("blocked-1", "repo-b", &body);
  assert_int_equal(
      tb_h_publish_raw(h, "tb.evt.normal.workspace.repository-sync", "blocked-1", body, len), 0);
  free(body);
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM dead_letters WHERE msg_id='blocked-1' AND "
                                 "class='max_deliveries' AND deliveries=2"),
                   1);
  char *t = tb_h_sql_text(h, "SELECT reason FROM dead_letters WHERE msg_id='blocked-1'");
  tb_assert_contains(t, "blocked by the test");
  free(t);

  /* Replayed while the cause is still there: dead-lettered again, nothing applied. */
  TB("dlq", "replay", "blocked-1");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "replayed 1,");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM processed WHERE msg_id='blocked-1' AND "
                                 "outcome='dead'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), 0);

  /* Cause fixed; the worker is stopped so that two replays race before either is handled. */
  block(h, 0);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
  TB("dlq", "replay", "blocked-1", "--priority", "high");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "-> tb.evt.high.workspace.repository-sync");
  tb_h_result_free(&r);
  TB("dlq", "replay", "--reason", "max_deliveries", "--priority", "high");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "replayed 1,");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_WORKSPACE"), 2);

  tb_assert_ok(tb_h_spawn(h, &worker, "worker2", "worker", NULL));
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM processed WHERE msg_id='blocked-1' AND "
                                 "outcome='applied'"),
                   1);
  /* Both copies handled (the second as a duplicate): one effect, on the replay's tier, under the
   * message's own id. */
  tb_h_sleep_ms(1000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE msg_id='blocked-1'"),
                   1);
  t = tb_h_sql_text(h, "SELECT tier FROM processed WHERE msg_id='blocked-1'");
  assert_string_equal(t, "high");
  free(t);

  /* Once applied, a further replay does nothing. */
  TB("dlq", "replay", "blocked-1");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "already applied 1");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_WORKSPACE"), 2);
  assert_int_equal(tb_h_sql_int(h, "SELECT replays FROM dead_letters WHERE msg_id='blocked-1'"), 3);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE msg_id='blocked-1'"),
                   1);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

/* ---------------------------------------------------------------- flood */

static void test_flood_of_bad_messages(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker;
  const char *env = getenv("TB_DLQ_FLOOD");
  int n = env && atoi(env) > 0 ? atoi(env) : FLOOD_DEFAULT;
  start_server(h);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  pid_t pid = worker.pid;

  static const char garbage[] = "\x07garbage\xff\x00tail";
  char *over = long_id('o', 200, "");
  for (int i = 0; i < n; i++) {
    char id[300], repo[64];
    uint8_t *body = NULL;
    size_t len;
    snprintf(id, sizeof(id), "good-%06d", i);
    snprintf(repo, sizeof(repo), "repo-%d", i);
    len = repo_sync(id, repo, &body);
    assert_int_equal(tb_h_publish_raw(h, "tb.evt.normal.workspace.repository-sync", id, body, len),
                     0);
    free(body);
    switch (i % 3) {
    case 0:
      snprintf(id, sizeof(id), "bad-malformed-%06d", i);
      assert_int_equal(tb_h_publish_raw(h, "tb.evt.normal.workspace.repository-sync", id, garbage,
                                        sizeof(garbage)),
                       0);
      break;
    case 1:
      snprintf(id, sizeof(id), "bad-unknown-%06d", i);
      len = pack_envelope(id, "NOPE", "normal", NULL, 0, &body);
      assert_int_equal(tb_h_publish_raw(h, "tb.evt.normal.workspace.NOPE", id, body, len), 0);
      free(body);
      break;
    default:
      snprintf(id, sizeof(id), "%s-%06d", over, i);
      len = repo_sync(id, repo, &body);
      assert_int_equal(
          tb_h_publish_raw(h, "tb.evt.normal.workspace.repository-sync", id, body, len), 0);
      free(body);
      break;
    }
  }
  free(over);
  assert_int_equal(tb_h_wait_sql(h, 2 * n, 120000, "SELECT count(*) FROM processed"), 2 * n);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE outcome='applied' AND "
                                   "msg_id LIKE 'good-%%'"),
                   n);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), n);
  int third = n / 3;
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters WHERE class='malformed' "
                                   "AND msg_id LIKE 'bad-malformed-%%'"),
                   (n + 2) / 3);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters WHERE "
                                   "class='unknown_event' AND msg_id LIKE 'bad-unknown-%%'"),
                   (n + 1) / 3);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters WHERE class='id_too_long'"),
                   third);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), n);
  /* Each with the reason it was refused for, not only its class. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters WHERE reason IS NULL OR "
                                   "reason = ''"),
                   0);
  assert_int_equal(tb_h_stream_msgs(h, "TB_DLQ"), n);
  /* The same worker process throughout. */
  assert_true(tb_h_child_alive(&worker));
  assert_int_equal(worker.pid, pid);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

int main(void) {
  tb_h_watchdog(280);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_publish_refusals, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_long_ids_dead_lettered_whole, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_list_show_purge, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_replay_applies_once, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_flood_of_bad_messages, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
