/* libcurl glue for the HTTP API tests: one request with a method, a body, a bearer token and
 * extra headers; the answer's status and body, parsed as JSON when asked; starting `tierbus api`
 * and learning its port from its ready line. Header-only: each test binary is one file. */
#ifndef TB_TESTS_HTTP_CLIENT_H
#define TB_TESTS_HTTP_CLIENT_H

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

/* The API's base URL once start_api() ran ("http://127.0.0.1:PORT"). */
static char tb_http_base[64];

static inline size_t on_data(char *p, size_t sz, size_t n, void *arg) {
  http_res_t *r = arg;
  char *b = realloc(r->body, r->len + sz * n + 1);
  if (b == NULL) return 0;
  memcpy(b + r->len, p, sz * n);
  r->len += sz * n;
  b[r->len] = '\0';
  r->body = b;
  return sz * n;
}

/* |method| base+|path| with |body| (NULL = none), |token| (NULL = no Authorization header) and
 * one extra header line |extra| (NULL = none). */
static inline http_res_t call_h(const char *method, const char *path, const char *body,
                                const char *token, const char *extra) {
  http_res_t r = {0};
  CURL *c = curl_easy_init();
  assert_non_null(c);
  struct curl_slist *hdrs = NULL;
  char auth[256], url[2048];
  if (token != NULL) {
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    hdrs = curl_slist_append(hdrs, auth);
  }
  hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  if (extra != NULL) hdrs = curl_slist_append(hdrs, extra);
  snprintf(url, sizeof(url), "%s%s", tb_http_base, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  if (body != NULL) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) print_error("%s %s: %s\n", method, url, curl_easy_strerror(rc));
  assert_int_equal(rc, CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
  if (r.body == NULL) r.body = strdup("");
  return r;
}

static inline http_res_t call(const char *method, const char *path, const char *body,
                              const char *token) {
  return call_h(method, path, body, token, NULL);
}

/* Fails unless |r| has |status| and (when |needle| is not NULL) |needle| in its body; frees the
 * body. */
static inline void expect(http_res_t *r, long status, const char *needle) {
  if (r->status != status)
    print_error("status %ld, expected %ld: %s\n", r->status, status, r->body);
  assert_int_equal(r->status, status);
  if (needle != NULL) tb_assert_contains(r->body, needle);
  free(r->body);
  r->body = NULL;
}

/* Calls with the token, expects |status|, and returns the body parsed (caller json_decref()s). */
static inline json_t *call_json(const char *method, const char *path, const char *body,
                                long status) {
  http_res_t r = call(method, path, body, TOKEN);
  if (r.status != status)
    print_error("%s %s: status %ld, expected %ld: %s\n", method, path, r.status, status, r.body);
  assert_int_equal(r.status, status);
  json_error_t jerr;
  json_t *j = json_loads(r.body, 0, &jerr);
  if (j == NULL) print_error("%s %s: not JSON (%s): %s\n", method, path, jerr.text, r.body);
  assert_non_null(j);
  free(r.body);
  return j;
}

/* Expects a 400 whose "field" is |field|. */
static inline void expect_400(const char *method, const char *path, const char *body,
                              const char *field) {
  json_t *j = call_json(method, path, body, 400);
  const char *got = json_string_value(json_object_get(j, "field"));
  if (got == NULL || strcmp(got, field) != 0) {
    char *text = json_dumps(j, 0);
    print_error("%s %s %s: expected field '%s', got %s\n", method, path, body ? body : "", field,
                text);
    free(text);
  }
  assert_non_null(got);
  assert_string_equal(got, field);
  json_decref(j);
}

/* A string at |path| (dot-separated keys) of |j|, or NULL. */
static inline const char *jstr(json_t *j, const char *key) {
  return json_string_value(json_object_get(j, key));
}

/* Starts `tierbus api` with the token (and |extra| args, NULL-terminated list may be empty) and
 * sets tb_http_base from its ready line. */
static inline void start_api(tb_h_t *h, tb_h_child_t *api) {
  setenv("TIERBUS_API_TOKEN", TOKEN, 1);
  tb_assert_ok(tb_h_spawn(h, api, "api", "api", "--http-port", "0", NULL));
  unsetenv("TIERBUS_API_TOKEN");
  for (int i = 0; i < 200; i++) {
    char *out = tb_h_read_file(api->out_path);
    const char *at = out ? strstr(out, "serving http://") : NULL;
    int port = 0;
    if (at != NULL && sscanf(at, "serving http://127.0.0.1:%d", &port) == 1) {
      free(out);
      snprintf(tb_http_base, sizeof(tb_http_base), "http://127.0.0.1:%d", port);
      return;
    }
    free(out);
    usleep(50000);
  }
  tb_h_dump_logs(h, 20);
  fail_msg("tierbus api did not say where it serves");
}

#endif
