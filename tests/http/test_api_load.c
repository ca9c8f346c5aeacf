/* Integration, load: 200 concurrent clients publish through POST /api/events against loopback,
 * from a real load tool (ApacheBench, Debian's apache2-utils, with keep-alive: 200 connections
 * open at once), and the run must end with every request answered 201, none failed, and no event
 * lost: the stream holds exactly as many events as requests, and a worker then processes exactly
 * that many. Nothing is timed: the rate and the p99 are printed for bench/RESULTS.md, never
 * asserted. TB_API_LOAD=N sets the request count (default 20,000); `make api-load` runs 100,000. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "http_client.h"

#define DEFAULT_REQUESTS 20000
#define CLIENTS "200"

/* The full path of |prog| on $PATH (static buffer), or NULL. */
static const char *which(const char *prog) {
  static char path[TB_H_PATH];
  const char *env = getenv("PATH");
  char dirs[4096];
  snprintf(dirs, sizeof(dirs), "%s", env ? env : "/usr/bin:/bin");
  for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    snprintf(path, sizeof(path), "%s/%s", d, prog);
    if (access(path, X_OK) == 0) return path;
  }
  return NULL;
}

/* The number after |label| in ab's report, or -1 when the line is not there. */
static double ab_figure(const char *out, const char *label) {
  const char *at = strstr(out, label);
  return at ? strtod(at + strlen(label), NULL) : -1;
}

/* The time (ms) within which |pct| percent of the requests were served, from ab's -e CSV. */
static double ab_percentile(const char *csv, int pct) {
  char key[16];
  snprintf(key, sizeof(key), "\n%d,", pct);
  const char *at = csv ? strstr(csv, key) : NULL;
  return at ? strtod(at + strlen(key), NULL) : -1;
}

static void test_200_clients_publish(void **state) {
  tb_h_t *h = *state;
  const char *ab = which("ab");
  if (ab == NULL)
    fail_msg("ab is not installed: it comes with Debian's apache2-utils, which `make test` "
             "installs (make deps)");
  const char *env = getenv("TB_API_LOAD");
  long n = env && atol(env) > 0 ? atol(env) : DEFAULT_REQUESTS;
  char count[32];
  snprintf(count, sizeof(count), "%ld", n);

  tb_it_start_and_init(h);
  tb_h_child_t api, worker;
  start_api(h, &api);
  /* No id in the body: the API gives each request a fresh one, so every request is a distinct
   * event and none may be taken for a duplicate. The event's handler only writes the activity
   * log, so what a worker does is one row per event. */
  char body[TB_H_PATH], csv[TB_H_PATH], url[128];
  tb_assert_ok(tb_h_write_file(h, "body.json",
                               "{\"type\": \"capture/repository.sync\", \"payload\": "
                               "{\"repository_id\": \"repo-load\", \"sync_type\": \"load\"}}",
                               body, sizeof(body)));
  tb_h_path(h, "percentiles.csv", csv, sizeof(csv));
  snprintf(url, sizeof(url), "%s/api/events", tb_http_base);
  const char *argv[] = {ab,      "-n",
                        count,   "-c",
                        CLIENTS, "-k", /* keep-alive: 200 connections stay open at once */
                        "-l", /* answers differ in length (ids, sequences): not a failure */
                        "-s",    "60",
                        "-p",    body,
                        "-T",    "application/json",
                        "-H",    "Authorization: Bearer " TOKEN,
                        "-e",    csv,
                        url,     NULL};
  tb_h_result_t r;
  tb_h_execv(h, &r, 250000, argv);
  tb_assert_exit(r, 0);
  double complete = ab_figure(r.out, "Complete requests:");
  double failed = ab_figure(r.out, "Failed requests:");
  double rate = ab_figure(r.out, "Requests per second:");
  char *pct = tb_h_read_file(csv);
  double p50 = ab_percentile(pct, 50), p99 = ab_percentile(pct, 99);
  free(pct);
  if (complete != (double)n || failed != 0 || strstr(r.out, "Non-2xx") != NULL)
    print_error("ab reported a problem:\n%s\n", r.out);
  assert_true(complete == (double)n);
  assert_true(failed == 0);
  tb_assert_not_contains(r.out, "Non-2xx");
  printf("api load: %ld events from %s clients (keep-alive): %.0f requests/s, p50 %.1f ms, p99 "
         "%.1f ms\n",
         n, CLIENTS, rate, p50, p99);
  tb_h_result_free(&r);

  /* No event lost: every 201 is one message in the stream, and a worker applies each once. */
  assert_int_equal(tb_h_stream_msgs(h, "TB_NORMAL_WORKSPACE"), n);
  assert_int_equal(tb_h_tier_msgs(h, "normal"), n);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  assert_int_equal(
      tb_h_wait_sql(h, n, 200000, "SELECT count(*) FROM processed WHERE outcome = 'applied'"), n);
  assert_int_equal(tb_h_child_term(&worker, 30000), 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE event_type = "
                                   "'capture/repository.sync'"),
                   n);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM activity_log"), n);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);
  /* The API counted them too: seed 001's metrics see every one completed. */
  json_t *j = call_json("GET", "/api/jobs/metrics", NULL, 200);
  json_t *ov = json_object_get(json_object_get(j, "data"), "overview");
  assert_int_equal(json_integer_value(json_object_get(ov, "completed")), n);
  json_decref(j);
  assert_int_equal(tb_h_child_term(&api, 10000), 0);
}

int main(void) {
  tb_h_watchdog(560);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_200_clients_publish, tb_h_setup, tb_h_teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
