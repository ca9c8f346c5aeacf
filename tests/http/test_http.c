/* Integration: the HTTP API's core as a client sees it. A real nats-server, `tierbus init`, a
 * `tierbus api` process with a token, and libcurl: every /api endpoint refuses a missing or
 * wrong token (401) and oversized headers (413), every POST endpoint a malformed body (400
 * naming "body") and an oversized one (413); unknown paths are 404, wrong methods 405; a publish
 * lands in its stream, a duplicate is told; the Prometheus text and seed 001's metrics once a
 * worker has processed the events, labelled by tier and domain; the refusal to serve beyond
 * loopback without a token; the pool size (http_threads, --http-threads) and its bounds. The
 * endpoints' own behaviour is test_http_api.c's. */
#include <dirent.h>
#include <sqlite3.h>

#include "http_client.h"

static const char *valid_event =
    "{\"type\":\"CLIENT_CREATED\",\"id\":\"http-evt-1\",\"payload\":{\"client_id\":\"c-1\","
    "\"user_id\":\"u-1\",\"client_name\":\"Ada\",\"email\":\"ada@example.com\"}}";

/* The lines of a Prometheus text that start with |prefix| (a family and the start of its
 * labels). */
static int series(const char *text, const char *prefix) {
  int n = 0;
  size_t len = strlen(prefix);
  for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    n += strncmp(p, prefix, len) == 0;
  return n;
}

/* The sum of the values of those lines. */
static int64_t sum(const char *text, const char *prefix) {
  int64_t total = 0;
  size_t len = strlen(prefix);
  for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, prefix, len) == 0) total += strtoll(strchr(p, ' ') + 1, NULL, 10);
  return total;
}

/* The value of the one series |name| (family and labels exactly), or a failed test. */
static int64_t metric(const char *text, const char *name) {
  char line[256];
  snprintf(line, sizeof(line), "\n%s ", name);
  const char *at = strstr(text, line);
  if (at == NULL) fail_msg("no series %s in:\n%s", name, text);
  return strtoll(at + strlen(line), NULL, 10);
}

static void test_endpoints(void **state) {
  tb_h_t *h = *state;
  tb_it_start_and_init(h);
  tb_h_child_t api;
  start_api(h, &api);
  const char *u = "/api/events";
  http_res_t r;

  r = call("GET", "/healthz", NULL, NULL);
  expect(&r, 200, "\"ok\"");
  r = call("GET", "/readyz", NULL, NULL);
  expect(&r, 200, "\"nats\":true");

  r = call("POST", u, valid_event, NULL);
  expect(&r, 401, "bearer token");
  r = call("POST", u, valid_event, "wrong-token-for-tests");
  expect(&r, 401, "bearer token");
  r = call("POST", u, "{\"type\": ", TOKEN);
  expect(&r, 400, "malformed JSON at line 1");
  r = call("POST", u, "{\"payload\": {}}", TOKEN);
  expect(&r, 400, "\"field\":\"type\"");
  r = call("POST", u, "{\"type\": \"CLIENT_CREATED\", \"payload\": 3}", TOKEN);
  expect(&r, 400, "\"field\":\"payload\"");
  r = call("POST", u, "{\"type\": \"NO_SUCH_EVENT\", \"payload\": {}}", TOKEN);
  expect(&r, 400, "NO_SUCH_EVENT");
  r = call("POST", u, "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"bogus\": 1}}", TOKEN);
  expect(&r, 400, "bogus");
  size_t big = 2u * 1024 * 1024;
  char *huge = malloc(big + 1);
  assert_non_null(huge);
  memset(huge, 'x', big);
  huge[big] = '\0';
  r = call("POST", u, huge, TOKEN);
  free(huge);
  expect(&r, 413, "body over");

  r = call("POST", u, valid_event, TOKEN);
  expect(&r, 201, "\"subject\":\"tb.evt.high.crm.CLIENT_CREATED\"");
  r = call("POST", u, valid_event, TOKEN);
  expect(&r, 200, "\"duplicate\":true");
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_CRM"), 1);
  r = call("GET", u, NULL, TOKEN);
  expect(&r, 405, "not allowed");
  r = call("GET", "/api/nothing-here", NULL, TOKEN);
  expect(&r, 404, "no such endpoint");

  /* Before any worker: every (tier, domain) pair of every counter is there, at 0. */
  r = call("GET", "/metrics", NULL, NULL); /* not under /api: scrapers need no token */
  assert_int_equal(r.status, 200);
  assert_int_equal(metric(r.body, "tierbus_events_processed_total{tier=\"high\",domain=\"crm\"}"),
                   0);
  assert_int_equal(series(r.body, "tierbus_events_processed_total{"), 25); /* 5 tiers, 5 domains */
  assert_int_equal(series(r.body, "tierbus_events_processed_total{tier=\"high\","), 5);
  assert_int_equal(series(r.body, "tierbus_events_redelivered_total{"), 25);
  assert_null(strstr(r.body, "tierbus_events_processed_total{tier=\"high\"}"));
  free(r.body);

  /* Three more events, each for a counter of its own (tier, domain): one the handler fails on
   * until the test lifts the cause (a trigger makes SQLite refuse its activity row), so it is
   * redelivered after the normal tier's 2 s backoff and then applied; and one that is no
   * envelope at all, dead-lettered at once. */
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(h->db, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TRIGGER test_block BEFORE INSERT ON activity_log "
                                "WHEN NEW.msg_id = 'http-evt-fail' BEGIN "
                                "SELECT RAISE(ABORT, 'blocked by the test'); END",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  r = call("POST", "/api/events",
           "{\"type\":\"capture/repository.sync\",\"id\":\"http-evt-fail\",\"payload\":"
           "{\"repository_id\":\"octo/api\"}}",
           TOKEN);
  expect(&r, 201, "\"subject\":\"tb.evt.normal.workspace.");
  static const char garbage[] = "\x07not an envelope\xff";
  assert_int_equal(tb_h_publish_raw(h, "tb.evt.background.crm.CLIENT_CREATED", "http-garbage",
                                    garbage, sizeof(garbage)),
                   0);

  /* A worker processes them; the figures show it. */
  tb_h_child_t worker;
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  assert_int_equal(tb_h_wait_sql(h, 1, 30000,
                                 "SELECT value FROM tier_counters WHERE tier = 'normal' AND "
                                 "domain = 'workspace' AND name = 'failed'"),
                   1);
  assert_int_equal(sqlite3_exec(db, "DROP TRIGGER test_block", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(tb_h_wait_sql(h, 3, 30000, "SELECT count(*) FROM processed"), 3);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
  u = "/api/jobs/metrics";
  r = call("GET", u, NULL, NULL);
  expect(&r, 401, NULL);
  r = call("GET", u, NULL, TOKEN);
  assert_int_equal(r.status, 200);
  json_t *j = json_loads(r.body, 0, NULL);
  assert_non_null(j);
  json_t *ov = json_object_get(json_object_get(j, "data"), "overview");
  assert_int_equal(json_integer_value(json_object_get(ov, "completed")), 2);
  assert_int_equal(json_integer_value(json_object_get(ov, "failed")), 1);
  json_t *high =
      json_object_get(json_object_get(json_object_get(j, "data"), "queueMetrics"), "high");
  assert_int_equal(json_integer_value(json_object_get(high, "completed")), 1);
  json_decref(j);
  expect(&r, 200, NULL);

  r = call("GET", "/metrics", NULL, NULL);
  assert_int_equal(r.status, 200);
#define M(family, tier, domain) metric(r.body, family "{tier=\"" tier "\",domain=\"" domain "\"}")
  assert_int_equal(M("tierbus_events_processed_total", "high", "crm"), 1);
  assert_int_equal(M("tierbus_events_processed_total", "normal", "workspace"), 1);
  assert_int_equal(M("tierbus_events_processed_total", "high", "workspace"), 0);
  assert_int_equal(M("tierbus_events_processed_total", "normal", "crm"), 0);
  assert_int_equal(M("tierbus_events_processed_total", "background", "crm"), 0);
  /* Each failed attempt was followed by a redelivery, the last one applied. */
  int64_t failed = M("tierbus_events_failed_total", "normal", "workspace");
  assert_true(failed >= 1);
  assert_int_equal(M("tierbus_events_redelivered_total", "normal", "workspace"), failed);
  assert_int_equal(M("tierbus_events_dead_lettered_total", "normal", "workspace"), 0);
  assert_int_equal(M("tierbus_events_failed_total", "high", "crm"), 0);
  assert_int_equal(M("tierbus_events_redelivered_total", "high", "crm"), 0);
  assert_int_equal(M("tierbus_events_dead_lettered_total", "background", "crm"), 1);
  assert_int_equal(M("tierbus_events_dead_lettered_total", "background", "ops"), 0);
  assert_int_equal(M("tierbus_events_duplicate_total", "high", "crm"), 0);
  assert_int_equal(M("tierbus_priority_inversions_total", "high", "crm"), 0);
#undef M
  /* The families' totals over the domains are the tier figures of /api/jobs/metrics. */
  assert_int_equal(sum(r.body, "tierbus_events_processed_total{"), 2);
  assert_int_equal(sum(r.body, "tierbus_events_dead_lettered_total{"), 1);
  free(r.body);
  r = call("GET", u, NULL, NULL);
  expect(&r, 401, NULL);
  r = call("GET", "/metrics", NULL, NULL);
  expect(&r, 200, "tierbus_publish_to_start_seconds_count{tier=\"high\"} 1\n");
  assert_int_equal(tb_h_child_term(&api, 10000), 0);
}

/* Every /api endpoint, by method and a path that reaches its route. */
static const struct {
  const char *method, *path;
} api_routes[] = {
    {"POST", "/api/events"},
    {"GET", "/api/jobs/metrics"},
    {"POST", "/api/jobs/some-job/retry"},
    {"POST", "/api/execute-workflow"},
    {"POST", "/api/execute-workflow-with-priority"},
    {"GET", "/api/workflows"},
    {"GET", "/api/workflows/some-run"},
    {"POST", "/api/workflows/some-run/cancel"},
    {"GET", "/api/dlq"},
    {"POST", "/api/dlq/1/replay"},
    {"GET", "/api/repositories"},
    {"GET", "/api/repositories/some-repo"},
    {"GET", "/api/priority/distribution"},
    {"GET", "/api/priority/syncs"},
    {"GET", "/api/monitoring"},
};

/* The guards every endpoint shares, each checked on every endpoint: no token and a wrong one
 * (one byte off, a prefix, the right one plus a byte) are 401 and change nothing; headers over
 * the limit are 413 before the token is even looked at; a POST endpoint refuses a malformed body
 * (400 naming "body") and one over the body limit (413); the wrong method is 405. */
static void test_guards_on_every_endpoint(void **state) {
  tb_h_t *h = *state;
  tb_it_start_and_init(h);
  tb_h_child_t api;
  start_api(h, &api);
  static const char *const wrong[] = {"t0ken-for-testz", "t0ken-for-test", "t0ken-for-tests!", "",
                                      "T0KEN-FOR-TESTS"};
  /* 20 KiB of one header: over the 16 KiB limit, under libmicrohttpd's own pool. */
  size_t big_len = 20 * 1024;
  char *big = malloc(big_len + 16);
  assert_non_null(big);
  memcpy(big, "X-Padding: ", 11);
  memset(big + 11, 'p', big_len);
  big[11 + big_len] = '\0';
  char *huge = malloc(2u * 1024 * 1024 + 1);
  assert_non_null(huge);
  memset(huge, ' ', 2u * 1024 * 1024);
  huge[0] = '{';
  huge[2u * 1024 * 1024 - 1] = '}';
  huge[2u * 1024 * 1024] = '\0';
  http_res_t r;
  for (size_t i = 0; i < sizeof(api_routes) / sizeof(api_routes[0]); i++) {
    const char *m = api_routes[i].method, *p = api_routes[i].path;
    int post = strcmp(m, "POST") == 0;
    r = call(m, p, post ? "{}" : NULL, NULL);
    expect(&r, 401, "bearer token");
    for (size_t k = 0; k < sizeof(wrong) / sizeof(wrong[0]); k++) {
      r = call(m, p, post ? "{}" : NULL, wrong[k]);
      expect(&r, 401, "bearer token");
    }
    r = call_h(m, p, post ? "{}" : NULL, TOKEN, big);
    expect(&r, 413, "headers over");
    r = call_h(m, p, post ? "{}" : NULL, NULL, big); /* size first: no token check to time */
    expect(&r, 413, "headers over");
    r = call(post ? "GET" : "DELETE", p, NULL, TOKEN);
    expect(&r, 405, "is not allowed on");
    if (!post) continue;
    expect_400(m, p, "{\"a\": ", "body");
    expect_400(m, p, "[1, 2]", "body");
    expect_400(m, p, "{\"a\": 1, \"a\": 2}", "body"); /* duplicate keys are refused */
    r = call(m, p, huge, TOKEN);
    expect(&r, 413, "body over");
  }
  free(big);
  free(huge);
  /* The scheme is case-insensitive (RFC 7235), the token is not. */
  r = call_h("GET", "/api/workflows", NULL, NULL, "Authorization: bearer " TOKEN);
  expect(&r, 200, "\"workflows\"");
  r = call_h("GET", "/api/workflows", NULL, NULL, "Authorization: Basic " TOKEN);
  expect(&r, 401, NULL);
  /* Nothing the refused calls carried reached a stream. */
  tb_assert_streams(h, 0, 0, 0, 0, 0);
  /* Outside /api no token is asked: health and metrics are for probes and scrapers. */
  r = call("GET", "/healthz", NULL, NULL);
  expect(&r, 200, NULL);
  r = call("GET", "/nothing", NULL, NULL);
  expect(&r, 404, "no such endpoint");
  assert_int_equal(tb_h_child_term(&api, 10000), 0);
}

/* Beyond loopback without a token: refused at start, exit 2, with the reason. */
static void test_no_token_beyond_loopback(void **state) {
  tb_h_t *h = *state;
  tb_it_start_and_init(h);
  tb_h_result_t r;
  tb_h_tierbus(h, &r, 20000, "api", "--http-bind", "0.0.0.0", "--http-port", "0", NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "without a token");
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, 20000, "api", "--http-port", "70000", NULL);
  tb_assert_exit(r, 2);
  tb_h_result_free(&r);
}

/* Threads of |pid| (/proc/PID/task entries). */
static int thread_count(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
  DIR *d = opendir(path);
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* Starts `tierbus api --http-threads N`, waits for its ready line (which must say N threads) and
 * answers the process's thread count once it has settled; the API is stopped again. */
static int api_threads(tb_h_t *h, const char *n) {
  tb_h_child_t api;
  char want[64];
  snprintf(want, sizeof(want), " with %s threads (", n);
  tb_assert_ok(tb_h_spawn(h, &api, "api", "api", "--http-port", "0", "--http-threads", n, NULL));
  int ready = 0;
  for (int i = 0; i < 200 && !ready; i++) {
    char *out = tb_h_read_file(api.out_path);
    ready = out != NULL && strstr(out, want) != NULL;
    free(out);
    if (!ready) usleep(50000);
  }
  if (!ready) tb_h_dump_logs(h, 20);
  assert_true(ready);
  /* The sampler and the NATS client start their threads at start-up too: wait until the count
   * holds still for half a second. */
  int count = thread_count(api.pid), same = 0;
  for (int i = 0; i < 100 && same < 5; i++) {
    usleep(100000);
    int now = thread_count(api.pid);
    same = now == count ? same + 1 : 0;
    count = now;
  }
  assert_int_equal(tb_h_child_term(&api, 10000), 0);
  return count;
}

/* http_threads (config) and --http-threads: bad values exit 2 naming the option, before anything
 * starts; a good one becomes libmicrohttpd's pool, seen as that many more threads. */
static void test_http_threads(void **state) {
  tb_h_t *h = *state;
  tb_it_start_and_init(h);
  static const struct {
    const char *cmd, *value, *want;
  } bad[] = {
      {"api", "0", "--http-threads: http_threads: must be an integer between 1 and 256 (got '0')"},
      {"api", "257", "--http-threads: http_threads: must be an integer between 1 and 256"},
      {"api", "eight", "(got 'eight')"},
      {"dev", "0", "--http-threads: http_threads: must be an integer between 1 and 256 (got '0')"},
  };
  tb_h_result_t r;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    tb_h_tierbus(h, &r, 20000, bad[i].cmd, "--http-port", "0", "--http-threads", bad[i].value,
                 NULL);
    tb_assert_exit(r, 2);
    tb_assert_contains(r.err, "config error: ");
    tb_assert_contains(r.err, bad[i].want);
    tb_h_result_free(&r);
  }
  /* The file's way in, through --set: the same table, the same message without the flag. */
  tb_h_tierbus(h, &r, 20000, "api", "--http-port", "0", "--set", "http_threads=-1", NULL);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "config error: http_threads: must be an integer between 1 and 256");
  tb_h_result_free(&r);
  /* Both bounds serve; eight more pool threads are eight more threads. */
  int one = api_threads(h, "1"), nine = api_threads(h, "9");
  assert_int_equal(nine - one, 8);
  api_threads(h, "256");
}

int main(void) {
  tb_h_watchdog(110);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_endpoints, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_guards_on_every_endpoint, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_no_token_beyond_loopback, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_http_threads, tb_h_setup, tb_h_teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
