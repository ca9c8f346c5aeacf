/* Integration: workers that serve some domains only (seed 004's `--preset DOMAIN`, `--domains`)
 * and the per-worker cap on messages in flight (max_concurrent_workflows). A workspace-only
 * worker applies workspace events and leaves an ops workflow untouched in its consumer; an ops
 * worker then runs that workflow, every step of which travelled on the ops subjects; and a
 * worker capped at 3 never holds more than 3 messages of a 300-message backlog. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/itest.h"

#define RUN_MS 20000
#define WAIT_MS 30000

/* The catalogue's domains: each has a stream and a consumer of its own in every tier. */
static const char *const DOMAINS[] = {"crm", "enrichment", "workspace", "ops", "workflow"};
#define N_DOMAINS (sizeof(DOMAINS) / sizeof(DOMAINS[0]))

/* The stream of the normal tier's |domain|: "TB_NORMAL_" + upper(domain). */
static void normal_stream(const char *domain, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "TB_NORMAL_%s", domain);
  assert_true(n > 0 && (size_t)n < cap);
  for (char *p = buf; *p; p++) *p = (char)toupper((unsigned char)*p);
}

static void start_and_init(tb_h_t *h) {
  tb_h_result_t r;
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  for (size_t d = 0; d < N_DOMAINS; d++) {
    char want[128];
    snprintf(want, sizeof(want), "subjects tb.evt.normal.%s.>  consumer tb-normal-%s\n", DOMAINS[d],
             DOMAINS[d]);
    tb_assert_contains(r.out, want);
  }
  tb_h_result_free(&r);
}

/* Publishes |count| capture/repository.sync events (workspace domain) on |tier|. */
static void publish_workspace(tb_h_t *h, const char *prefix, int count, const char *tier) {
  char path[512];
  tb_assert_ok(tb_h_write_events(h, "events.ndjson", prefix, 0, count, tier, path, sizeof(path)));
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* Stops |c| and returns the peak the worker logged on its way out, or -1. */
static int stop_and_peak(tb_h_child_t *c) {
  assert_int_equal(tb_h_child_term(c, 20000), 0);
  char *err = tb_h_child_stderr(c);
  const char *at = err ? strstr(err, "stopped: peak_in_flight=") : NULL;
  int peak = at ? atoi(at + strlen("stopped: peak_in_flight=")) : -1;
  free(err);
  return peak;
}

static void test_domain_worker_takes_only_its_domains(void **state) {
  tb_h_t *h = *state;
  start_and_init(h);
  tb_h_child_t ws = {0}, ops = {0};
  tb_assert_ok(tb_h_spawn(h, &ws, "ws", "worker", "--domains", "workspace", NULL));

  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "trigger", "ops.sleep", "--json-input", "{\"duration\": \"100ms\"}",
               "--id", "wf-dom", "--priority", "normal", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  publish_workspace(h, "ws", 5, "normal");
  assert_int_equal(
      tb_h_wait_sql(h, 5, WAIT_MS,
                    "SELECT count(*) FROM processed WHERE event_type='capture/repository.sync'"),
      5);
  tb_h_sleep_ms(500); /* room for a wrong take of the ops message */
  /* The ops trigger is untouched: no run, nothing else processed, and it waits in its own
   * consumer. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflows"), 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed"), 5);
  uint64_t pending = 0;
  assert_int_equal(tb_h_consumer_info(h, "TB_NORMAL_OPS", "tb-normal-ops", NULL, &pending, NULL),
                   0);
  assert_int_equal(pending, 1);

  /* `--preset ops`: a bare domain name works as a preset. */
  tb_assert_ok(tb_h_spawn(h, &ops, "ops", "worker", "--preset", "ops", NULL));
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflows WHERE id='wf-dom' AND "
                                 "status='completed'"),
                   1);
  /* Every continuation of the run travelled on the ops domain's subject: no step in any other
   * domain's stream of the tier. */
  int steps = 0;
  for (size_t d = 0; d < N_DOMAINS; d++) {
    char stream[64];
    normal_stream(DOMAINS[d], stream, sizeof(stream));
    int64_t n = tb_h_stream_msgs(h, stream);
    assert_true(n >= 0);
    for (uint64_t seq = 1; seq <= (uint64_t)n; seq++) {
      natsMsg *m = tb_h_stream_get(h, stream, seq);
      assert_non_null(m);
      const char *subj = natsMsg_GetSubject(m);
      if (strstr(subj, "workflow-step") != NULL) {
        assert_string_equal(subj, "tb.evt.normal.ops.workflow-step");
        steps++;
      }
      natsMsg_Destroy(m);
    }
  }
  /* The sleep's timer only: execute-workflow came on the run's tier and domain, so the ops
   * worker ran the first step in it, and the log step on after the timer. */
  assert_int_equal(steps, 1);
  assert_true(stop_and_peak(&ws) >= 1);
  assert_true(stop_and_peak(&ops) >= 1);
}

static void test_max_concurrent_workflows(void **state) {
  tb_h_t *h = *state;
  start_and_init(h);
  publish_workspace(h, "cap", 300, "normal");
  tb_h_child_t w = {0};
  tb_assert_ok(tb_h_spawn(h, &w, "capped", "worker", "--domains", "workspace",
                          "--max-concurrent-workflows", "3", NULL));
  assert_int_equal(tb_h_wait_sql(h, 300, WAIT_MS, "SELECT count(*) FROM processed"), 300);
  int peak = stop_and_peak(&w);
  print_message("peak in flight with a cap of 3: %d\n", peak);
  assert_true(peak >= 1 && peak <= 3);

  /* Without a cap the same backlog is fetched in batches up to the tier's concurrency (15). */
  publish_workspace(h, "free", 300, "normal");
  tb_assert_ok(tb_h_spawn(h, &w, "free", "worker", "--domains", "workspace", NULL));
  assert_int_equal(tb_h_wait_sql(h, 600, WAIT_MS, "SELECT count(*) FROM processed"), 600);
  peak = stop_and_peak(&w);
  print_message("peak in flight without a cap: %d\n", peak);
  assert_true(peak > 3);
}

int main(void) {
  tb_h_watchdog(150);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_domain_worker_takes_only_its_domains, tb_h_setup,
                                      tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_max_concurrent_workflows, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
