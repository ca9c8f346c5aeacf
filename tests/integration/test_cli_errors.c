/* Integration: every way the command line can be wrong exits 2 with a message naming the problem
 * (event, field, value, file, line, key), and a batch file with one bad line publishes nothing.
 * The boundaries of the checks are run from both sides: the last accepted value must pass. Also
 * the stream layout `tierbus init` makes, and its refusal of a stream of the older layout. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/itest.h"

#define RUN_TIMEOUT_MS 20000

/* Runs `tierbus CMD <common options> ARGS...` into r. */
#define TB(cmd, ...) tb_h_tierbus(h, &r, RUN_TIMEOUT_MS, cmd, __VA_ARGS__, NULL)

static void test_publish_bad_input(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);

  TB("publish", "CLIENT_CREATED", "--json", "{bad");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "bad JSON");
  tb_assert_contains(r.err, "column 4");
  tb_h_result_free(&r);

  TB("publish", "NOPE", "--json", "{}");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown event 'NOPE'");
  tb_h_result_free(&r);

  TB("publish", "CLIENT_CREATED", "--json", "{\"client_id\": \"c1\", \"zzz\": 1}");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "CLIENT_CREATED");
  tb_assert_contains(r.err, "unknown field 'zzz'");
  tb_h_result_free(&r);

  TB("publish", "CLIENT_CREATED", "--json", "{\"client_id\": 5}");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "'client_id'");
  tb_assert_contains(r.err, "expected a string");
  tb_h_result_free(&r);

  /* int32 status_code: one past each end is refused, naming the value and the field. */
  TB("publish", "enrichment-complete", "--json", "{\"status_code\": 2147483648}");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "'status_code'");
  tb_assert_contains(r.err, "2147483648");
  tb_assert_contains(r.err, "int32");
  tb_h_result_free(&r);

  TB("publish", "enrichment-complete", "--json", "{\"status_code\": -2147483649}");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "-2147483649");
  tb_h_result_free(&r);

  TB("publish", "CLIENT_CREATED", "--json", "{\"client_id\": \"c1\"}", "--priority", "urgent");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown tier 'urgent'");
  tb_h_result_free(&r);

  TB("publish", "CLIENT_CREATED", "--priority", "high");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--json");
  tb_h_result_free(&r);

  TB("publish", "--json", "{}");
  tb_assert_exit(r, 2);
  tb_h_result_free(&r);

  /* Nothing above reached a stream. */
  tb_assert_streams(h, 0, 0, 0, 0, 0);

  /* The exact ends of int32 are accepted and published (on tier normal). */
  TB("publish", "enrichment-complete", "--json",
     "{\"enrichment_id\": \"e1\", \"status_code\": 2147483647}", "--id", "max");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "tier=normal");
  tb_h_result_free(&r);
  TB("publish", "enrichment-complete", "--json",
     "{\"enrichment_id\": \"e1\", \"status_code\": -2147483648}", "--id", "min");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_NORMAL_ENRICHMENT"), 2);
  tb_assert_streams(h, 0, 0, 2, 0, 0);
}

/* Writes a 4-line NDJSON file whose line 3 is |bad_line|. */
static void write_batch(tb_h_t *h, const char *name, const char *bad_line, char *path, size_t cap) {
  char text[2048];
  snprintf(text, sizeof(text),
           "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"client_id\": \"c1\"}, \"id\": \"f1\"}\n"
           "{\"type\": \"MONTH_TRANSITION\", \"payload\": {\"client_id\": \"c2\", \"month\": 2}, "
           "\"priority\": \"low\"}\n"
           "%s\n"
           "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"client_id\": \"c4\"}}\n",
           bad_line);
  tb_assert_ok(tb_h_write_file(h, name, text, path, cap));
}

static void test_publish_file_bad_line(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char path[TB_H_PATH], where[TB_H_PATH + 8];
  tb_it_start_and_init(h);

  write_batch(h, "field.ndjson",
              "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"client_id\": \"c3\", \"nope\": 1}}",
              path, sizeof(path));
  TB("publish", "--file", path);
  tb_assert_exit(r, 2);
  snprintf(where, sizeof(where), "%s:3:", path);
  tb_assert_contains(r.err, where);
  tb_assert_contains(r.err, "unknown field 'nope'");
  tb_h_result_free(&r);

  write_batch(h, "syntax.ndjson", "{\"type\": \"CLIENT_CREATED\", \"payload\": {", path,
              sizeof(path));
  TB("publish", "--file", path);
  tb_assert_exit(r, 2);
  snprintf(where, sizeof(where), "%s:3:", path);
  tb_assert_contains(r.err, where);
  tb_assert_contains(r.err, "bad JSON");
  tb_h_result_free(&r);

  write_batch(h, "event.ndjson", "{\"type\": \"NOPE\", \"payload\": {}}", path, sizeof(path));
  TB("publish", "--file", path);
  tb_assert_exit(r, 2);
  snprintf(where, sizeof(where), "%s:3:", path);
  tb_assert_contains(r.err, where);
  tb_assert_contains(r.err, "NOPE");
  tb_h_result_free(&r);

  write_batch(h, "tier.ndjson",
              "{\"type\": \"CLIENT_CREATED\", \"payload\": {}, \"priority\": \"urgent\"}", path,
              sizeof(path));
  TB("publish", "--file", path);
  tb_assert_exit(r, 2);
  snprintf(where, sizeof(where), "%s:3:", path);
  tb_assert_contains(r.err, where);
  tb_assert_contains(r.err, "unknown tier 'urgent'");
  tb_h_result_free(&r);

  /* Lines 1, 2 and 4 were valid, yet none of them was published. */
  tb_assert_streams(h, 0, 0, 0, 0, 0);

  /* The same file with line 3 fixed publishes all four. */
  write_batch(h, "good.ndjson",
              "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"client_id\": \"c3\"}}", path,
              sizeof(path));
  TB("publish", "--file", path);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "published 4 events");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_CRM"), 3);
  assert_int_equal(tb_h_stream_msgs(h, "TB_LOW_CRM"), 1);
  tb_assert_streams(h, 0, 3, 0, 1, 0);
}

/* Runs `tierbus config check --config FILE` on |yaml| and asserts exit 2 with "<file>:<line>:" and
 * |needle| in stderr. */
static void expect_bad_config(tb_h_t *h, const char *name, const char *yaml, int line,
                              const char *needle) {
  char path[TB_H_PATH], where[TB_H_PATH + 16];
  tb_h_result_t r;
  tb_assert_ok(tb_h_write_file(h, name, yaml, path, sizeof(path)));
  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "config", "check", "--config", path, NULL);
  tb_assert_exit(r, 2);
  snprintf(where, sizeof(where), "%s:%d:", path, line);
  tb_assert_contains(r.err, where);
  tb_assert_contains(r.err, needle);
  tb_h_result_free(&r);
  /* The worker refuses the same file before it tries to connect anywhere. */
  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "worker", "--config", path, "--nats-url",
                   "nats://127.0.0.1:1", NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, where);
  tb_h_result_free(&r);
}

static void test_bad_config(void **state) {
  tb_h_t *h = *state;
  expect_bad_config(h, "concurrency.yaml",
                    "tiers:\n"
                    "  - name: critical\n"
                    "    concurrency: 0\n"
                    "  - {name: high}\n  - {name: normal}\n  - {name: low}\n"
                    "  - {name: background}\n",
                    3, "tiers[0].concurrency");
  expect_bad_config(h, "flow.yaml",
                    "tiers:\n"
                    "  - {name: critical}\n"
                    "  - {name: high, concurrency: 10001}\n"
                    "  - {name: normal}\n  - {name: low}\n  - {name: background}\n",
                    3, "tiers[1].concurrency");
  expect_bad_config(h, "unknown.yaml", "nats_url: nats://127.0.0.1:4222\nbogus_key: 3\n", 2,
                    "unknown key 'bogus_key'");
  expect_bad_config(h, "syntax.yaml", "nats_url: nats://127.0.0.1:4222\n  max_payload: 2048\n", 2,
                    "YAML");
  expect_bad_config(h, "range.yaml", "log_level: info\nmax_payload: 1023\n", 2, "max_payload");

  /* The edges of the same ranges are accepted. */
  char path[TB_H_PATH];
  tb_h_result_t r;
  tb_assert_ok(tb_h_write_file(h, "edges.yaml",
                               "max_payload: 1024\n"
                               "tiers:\n"
                               "  - {name: critical, concurrency: 1}\n"
                               "  - {name: high, concurrency: 10000}\n"
                               "  - {name: normal}\n  - {name: low}\n  - {name: background}\n",
                               path, sizeof(path)));
  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "config", "check", "--config", path, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);

  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "config", "check", "--config", "/nonexistent/x.yaml",
                   NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "/nonexistent/x.yaml");
  tb_h_result_free(&r);
}

static void test_usage_errors(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;

  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "frob", NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown command 'frob'");
  tb_h_result_free(&r);

  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, NULL);
  tb_assert_exit(r, 2);
  tb_h_result_free(&r);

  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "--help", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "publish");
  tb_h_result_free(&r);

  const char *const cmds[] = {"publish", "worker", "init", "stats", "config", "events"};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, cmds[i], "--frob", NULL);
    if (r.status != 2) print_error("command %s\n", cmds[i]);
    tb_assert_exit(r, 2);
    tb_assert_contains(r.err, "frob");
    tb_h_result_free(&r);
  }

  /* init's --wait is a duration; a bad one is refused before anything is made. */
  TB("init", "--wait", "soon");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--wait");
  tb_assert_contains(r.err, "soon");
  tb_h_result_free(&r);

  /* --set takes any scalar option, and only those. */
  TB("config", "--set", "foo=1");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "'foo'");
  tb_h_result_free(&r);

  TB("config", "--set", "nats_connect_timeout");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "KEY=VALUE");
  tb_h_result_free(&r);

  TB("config", "--set", "=1");
  tb_assert_exit(r, 2);
  tb_h_result_free(&r);

  TB("config", "--set", "max_payload=1023");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "max_payload");
  tb_assert_contains(r.err, "1023");
  tb_h_result_free(&r);

  TB("config", "--set", "max_payload=1024");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);

  TB("config", "--set", "max_payload=67108864");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);

  TB("config", "--set", "max_payload=67108865");
  tb_assert_exit(r, 2);
  tb_h_result_free(&r);

  TB("config", "--set", "commit_batch_max=0");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "commit_batch_max");
  tb_h_result_free(&r);

  TB("config", "--set", "log_level=loud");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "loud");
  tb_h_result_free(&r);

  TB("worker", "--tiers", "critical,urgent");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown tier 'urgent'");
  tb_h_result_free(&r);

  TB("worker", "--preset", "nope");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "'nope'");
  tb_h_result_free(&r);
}

/* ---------------------------------------------------------------- init's stream layout */

/* The shipped config's tiers and the catalogue's domains, in the order init reports them. */
static const char *const TIERS[] = {"critical", "high", "normal", "low", "background"};
static const char *const DOMAINS[] = {"crm", "enrichment", "workspace", "ops", "workflow"};
#define N_TIERS (sizeof(TIERS) / sizeof(TIERS[0]))
#define N_DOMAINS (sizeof(DOMAINS) / sizeof(DOMAINS[0]))

/* "TB_" + upper(tier) + "_" + upper(domain) into |buf|. */
static void stream_of(const char *tier, const char *domain, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "TB_%s_%s", tier, domain);
  assert_true(n > 0 && (size_t)n < cap);
  for (char *p = buf; *p; p++) *p = (char)toupper((unsigned char)*p);
}

/* Fails unless |out| has a line starting "stream <stream> " that names |subject| and |durable|. */
static void expect_init_line(const char *out, const char *stream, const char *subject,
                             const char *durable) {
  char head[96], line[256];
  snprintf(head, sizeof(head), "stream %s ", stream);
  const char *at = strstr(out, head);
  if (at == NULL || (at != out && at[-1] != '\n'))
    fail_msg("no line for stream %s in the init output:\n%s", stream, out);
  size_t len = strcspn(at, "\n");
  snprintf(line, sizeof(line), "%.*s", (int)len, at);
  char want[160];
  snprintf(want, sizeof(want), "subjects %s ", subject);
  tb_assert_contains(line, want);
  snprintf(want, sizeof(want), "consumer %s", durable);
  tb_assert_contains(line, want);
}

/* Fails unless |stream| exists over |subject| alone and has exactly one consumer, durable
 * |durable|, with no filter subject: it takes the whole stream. */
static void expect_stream_and_consumer(tb_h_t *h, const char *stream, const char *subject,
                                       const char *durable) {
  jsCtx *js = tb_h_js(h);
  assert_non_null(js);
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
  if (s != NATS_OK)
    fail_msg("stream %s: %s (js error %d)", stream, natsStatus_GetText(s), (int)jerr);
  assert_int_equal(si->Config->SubjectsLen, 1);
  assert_string_equal(si->Config->Subjects[0], subject);
  jsStreamInfo_Destroy(si);

  jsConsumerInfoList *list = NULL;
  s = js_Consumers(&list, js, stream, NULL, &jerr);
  if (s != NATS_OK)
    fail_msg("consumers of %s: %s (js error %d)", stream, natsStatus_GetText(s), (int)jerr);
  if (list->Count != 1) fail_msg("stream %s has %d consumers, expected 1", stream, list->Count);
  const jsConsumerInfo *ci = list->List[0];
  assert_string_equal(ci->Name, durable);
  assert_non_null(ci->Config);
  assert_string_equal(ci->Config->Durable, durable);
  const char *filter = ci->Config->FilterSubject;
  if (filter != NULL && *filter != '\0')
    fail_msg("consumer %s of %s filters on '%s'; it should take the whole stream", durable, stream,
             filter);
  jsConsumerInfoList_Destroy(list);
}

/* `tierbus init` makes one stream per (tier, domain), TB_<TIER>_<DOMAIN> over
 * tb.evt.<tier>.<domain>.>, each read by exactly one unfiltered durable tb-<tier>-<domain>, and
 * prints one line per stream. Besides those only TB_DLQ and TB_CMD exist: no stream of the older
 * one-per-tier layout. A second init finds everything in place and changes none of it. */
static void test_init_layout(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_assert_ok(tb_h_server_start(h));
  for (int run = 1; run <= 2; run++) {
    tb_h_tierbus(h, &r, RUN_TIMEOUT_MS, "init", NULL);
    tb_assert_exit(r, 0);
    for (size_t t = 0; t < N_TIERS; t++)
      for (size_t d = 0; d < N_DOMAINS; d++) {
        char stream[64], subject[96], durable[64];
        stream_of(TIERS[t], DOMAINS[d], stream, sizeof(stream));
        snprintf(subject, sizeof(subject), "tb.evt.%s.%s.>", TIERS[t], DOMAINS[d]);
        snprintf(durable, sizeof(durable), "tb-%s-%s", TIERS[t], DOMAINS[d]);
        expect_init_line(r.out, stream, subject, durable);
        expect_stream_and_consumer(h, stream, subject, durable);
      }
    tb_assert_not_contains(r.out, "stream TB_HIGH ");
    tb_h_result_free(&r);

    jsStreamNamesList *names = NULL;
    assert_int_equal(js_StreamNames(&names, tb_h_js(h), NULL, NULL), NATS_OK);
    /* + DLQ, CMD and the streams of the deployment and lease buckets (KV_TB_DEPLOYMENT,
     * KV_TB_LEASES). */
    if (names->Count != (int)(N_TIERS * N_DOMAINS + 4)) {
      for (int i = 0; i < names->Count; i++) print_error("stream %s\n", names->List[i]);
      fail_msg("run %d: %d streams, expected %d", run, names->Count,
               (int)(N_TIERS * N_DOMAINS + 4));
    }
    jsStreamNamesList_Destroy(names);
    assert_int_equal(tb_h_stream_msgs(h, "TB_DLQ"), 0);
    assert_int_equal(tb_h_stream_msgs(h, "TB_CMD"), 0);
    for (size_t t = 0; t < N_TIERS; t++) assert_int_equal(tb_h_tier_msgs(h, TIERS[t]), 0);
  }
}

/* A server that still holds a stream of the one-stream-per-tier layout (TB_HIGH over
 * tb.evt.high.>, one message in it): init exits 1 naming that stream and how to retire it, and
 * leaves it and its message alone, with no high stream of the new layout beside it. */
static void test_init_refuses_tier_stream(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_assert_ok(tb_h_server_start(h));
  jsCtx *js = tb_h_js(h);
  assert_non_null(js);
  const char *subjects[] = {"tb.evt.high.>"};
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = "TB_HIGH";
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.Storage = js_FileStorage;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_AddStream(&si, js, &sc, NULL, &jerr);
  if (s != NATS_OK)
    fail_msg("add stream TB_HIGH: %s (js error %d)", natsStatus_GetText(s), (int)jerr);
  jsStreamInfo_Destroy(si);
  assert_int_equal(tb_h_publish_raw(h, "tb.evt.high.crm.CLIENT_CREATED", "old-1", "x", 1), 0);

  tb_h_tierbus(h, &r, RUN_TIMEOUT_MS, "init", NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "stream TB_HIGH ");
  tb_assert_contains(r.err, "nats stream rm TB_HIGH");
  tb_assert_not_contains(r.out, "consumer tb-high-");
  tb_h_result_free(&r);

  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH"), 1);
  for (size_t d = 0; d < N_DOMAINS; d++) {
    char stream[64];
    stream_of("high", DOMAINS[d], stream, sizeof(stream));
    if (tb_h_stream_msgs(h, stream) != -1) fail_msg("stream %s was made beside TB_HIGH", stream);
  }
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_publish_bad_input, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_publish_file_bad_line, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_bad_config, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_usage_errors, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_init_layout, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_init_refuses_tier_stream, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
