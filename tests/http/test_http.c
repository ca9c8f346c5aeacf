/* Integration: the HTTP API as a client sees it. A real nats-server, `tierbus init`, a `tierbus
 * api` process with a token, and libcurl: every endpoint's success and its errors (401 without or
 * with a wrong token, 413 over the body limit, 400 naming the field, 404, 405), a publish that
 * lands in its stream, a duplicate, the Prometheus text, seed 001's metrics once a worker has
 * processed the events, and the refusal to serve beyond loopback without a token. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "support/itest.h"

#define TOKEN "t0ken-for-tests"

typedef struct http_res {
  long status;
  char *body;
  size_t len;
} http_res_t;

static size_t on_data(char *p, size_t sz, size_t n, void *arg) {
  http_res_t *r = arg;
  char *b = realloc(r->body, r->len + sz * n + 1);
  if (b == NULL) return 0;
  memcpy(b + r->len, p, sz * n);
  r->len += sz * n;
  b[r->len] = '\0';
  r->body = b;
  return sz * n;
}

/* |method| |url| with |body| (NULL = none) and |token| (NULL = no Authorization header). */
static http_res_t call(const char *method, const char *url, const char *body, const char *token) {
  http_res_t r = {0};
  CURL *c = curl_easy_init();
  assert_non_null(c);
  struct curl_slist *hdrs = NULL;
  char auth[256];
  if (token != NULL) {
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    hdrs = curl_slist_append(hdrs, auth);
  }
  hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  if (body != NULL) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) print_error("%s %s: %s\n", method, url, curl_easy_strerror(rc));
  assert_int_equal(rc, CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
  if (r.body == NULL) r.body = strdup("");
  return r;
}

static void expect(http_res_t *r, long status, const char *needle) {
  if (r->status != status)
    print_error("status %ld, expected %ld: %s\n", r->status, status, r->body);
  assert_int_equal(r->status, status);
  if (needle != NULL) tb_assert_contains(r->body, needle);
  free(r->body);
  r->body = NULL;
}

/* Starts `tierbus api` with the token and returns its base URL (static buffer). */
static const char *start_api(tb_h_t *h, tb_h_child_t *api) {
  setenv("TIERBUS_API_TOKEN", TOKEN, 1);
  tb_assert_ok(tb_h_spawn(h, api, "api", "api", "--http-port", "0", NULL));
  unsetenv("TIERBUS_API_TOKEN");
  static char base[64];
  for (int i = 0; i < 100; i++) {
    char *out = tb_h_read_file(api->out_path);
    const char *at = out ? strstr(out, "serving http://") : NULL;
    int port = 0;
    if (at != NULL && sscanf(at, "serving http://127.0.0.1:%d", &port) == 1) {
      free(out);
      snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
      return base;
    }
    free(out);
    usleep(50000);
  }
  tb_h_dump_logs(h, 20);
  fail_msg("tierbus api did not say where it serves");
  return NULL;
}

static void url(char *buf, size_t cap, const char *base, const char *path) {
  snprintf(buf, cap, "%s%s", base, path);
}

static const char *valid_event =
    "{\"type\":\"CLIENT_CREATED\",\"id\":\"http-evt-1\",\"payload\":{\"client_id\":\"c-1\","
    "\"user_id\":\"u-1\",\"client_name\":\"Ada\",\"email\":\"ada@example.com\"}}";

static void test_endpoints(void **state) {
  tb_h_t *h = *state;
  tb_it_start_and_init(h);
  tb_h_child_t api;
  const char *base = start_api(h, &api);
  char u[256];
  http_res_t r;

  url(u, sizeof(u), base, "/healthz");
  r = call("GET", u, NULL, NULL);
  expect(&r, 200, "\"ok\"");
  url(u, sizeof(u), base, "/readyz");
  r = call("GET", u, NULL, NULL);
  expect(&r, 200, "\"nats\":true");

  url(u, sizeof(u), base, "/api/events");
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
  url(u, sizeof(u), base, "/api/nothing-here");
  r = call("GET", u, NULL, TOKEN);
  expect(&r, 404, "no such endpoint");

  /* A worker processes it; the figures show it. */
  tb_h_child_t worker;
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  assert_int_equal(tb_h_wait_sql(h, 1, 30000, "SELECT count(*) FROM processed"), 1);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
  url(u, sizeof(u), base, "/api/jobs/metrics");
  r = call("GET", u, NULL, NULL);
  expect(&r, 401, NULL);
  r = call("GET", u, NULL, TOKEN);
  assert_int_equal(r.status, 200);
  json_t *j = json_loads(r.body, 0, NULL);
  assert_non_null(j);
  json_t *ov = json_object_get(json_object_get(j, "data"), "overview");
  assert_int_equal(json_integer_value(json_object_get(ov, "completed")), 1);
  json_t *high =
      json_object_get(json_object_get(json_object_get(j, "data"), "queueMetrics"), "high");
  assert_int_equal(json_integer_value(json_object_get(high, "completed")), 1);
  json_decref(j);
  expect(&r, 200, NULL);
  url(u, sizeof(u), base, "/metrics");
  r = call("GET", u, NULL, NULL); /* not under /api: scrapers need no token */
  expect(&r, 200, "tierbus_events_processed_total{tier=\"high\"} 1\n");
  r = call("GET", u, NULL, NULL);
  expect(&r, 200, "tierbus_publish_to_start_seconds_count{tier=\"high\"} 1\n");
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

int main(void) {
  tb_h_watchdog(110);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_endpoints, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_no_token_beyond_loopback, tb_h_setup, tb_h_teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
