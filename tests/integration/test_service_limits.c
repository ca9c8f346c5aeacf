/* Integration: seed 001's per-queue concurrency (config service_concurrency, store/slots.h)
 * holds across worker processes. Two `tierbus worker` processes share one database; six clients
 * are activated at once, each run sending ai.generate-business-plan to a simulator that takes
 * 300 ms per command. The shipped config limits the ai service to 1: the test samples the slot
 * table while the runs go and never sees two ai commands in flight, sees the steps held (not
 * failed), and every run completes with exactly one command sent per plan. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/itest.h"

#define RUN_MS 20000
#define N_CLIENTS 6

static void run_ok(tb_h_t *h, const char *cmd) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, cmd, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

static void start_sim(tb_h_t *h, tb_h_child_t *sim) {
  tb_assert_ok(tb_h_spawn(h, sim, "sim", "sim", "--latency", "300ms", NULL));
  int64_t deadline = tb_h_now_ms() + RUN_MS;
  for (;;) {
    char *out = tb_h_read_file(sim->out_path);
    int ready = out != NULL && strstr(out, "tierbus sim: answering") != NULL;
    free(out);
    if (ready) return;
    if (!tb_h_child_alive(sim) || tb_h_now_ms() > deadline) {
      tb_h_dump_logs(h, 25);
      fail_msg("the simulator did not start");
    }
    tb_h_sleep_ms(10);
  }
}

static void test_ai_limit_across_workers(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t w1, w2, sim;
  tb_assert_ok(tb_h_server_start(h));
  run_ok(h, "init");
  tb_assert_ok(tb_h_spawn(h, &w1, "worker1", "worker", NULL));
  tb_assert_ok(tb_h_spawn(h, &w2, "worker2", "worker", NULL));
  start_sim(h, &sim);

  for (int i = 0; i < N_CLIENTS; i++) {
    char id[32], json[256];
    snprintf(id, sizeof(id), "ca-%d", i);
    snprintf(json, sizeof(json),
             "{\"client_id\": \"client-%d\", \"user_id\": \"u-1\", "
             "\"previous_status\": \"ONBOARDING\"}",
             i);
    tb_h_result_t r;
    tb_h_tierbus(h, &r, RUN_MS, "publish", "CLIENT_ACTIVATED", "--json", json, "--id", id, NULL);
    tb_assert_exit(r, 0);
    tb_h_result_free(&r);
  }

  /* Sample the slots until every activation is done: never more than the limit in flight. */
  int64_t most = 0, seen = 0, deadline = tb_h_now_ms() + 60000;
  for (;;) {
    int64_t ai =
        tb_h_sql_int(h, "SELECT count(*) FROM service_slots WHERE service='ai' AND waiting=0");
    if (ai > most) most = ai;
    if (ai > 0) seen++;
    int64_t done = tb_h_sql_int(h, "SELECT count(*) FROM workflows WHERE "
                                   "name='crm.client-activated' AND status='completed'");
    if (done == N_CLIENTS) break;
    if (tb_h_now_ms() > deadline) {
      tb_h_dump_logs(h, 40);
      fail_msg("only %lld of %d activations completed", (long long)done, N_CLIENTS);
    }
    tb_h_sleep_ms(5);
  }
  assert_int_equal(most, 1);
  assert_true(seen > 0);
  /* Held attempts are recorded as such, never as failures, and use no retry. */
  assert_true(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                              "name='generate-business-plan' AND status='held' AND "
                              "detail LIKE 'service ai at its concurrency limit (1), %% ahead "
                              "in line'") > 0);
  /* One held row per hold, however many times the step tried again. */
  assert_int_equal(tb_h_sql_int(h, "SELECT max(c) FROM (SELECT count(*) AS c FROM "
                                   "workflow_history WHERE status='held' GROUP BY workflow_id, "
                                   "name, attempt)"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "name='generate-business-plan' AND status NOT IN "
                                   "('held', 'started', 'waiting', 'ok')"),
                   0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE "
                                   "name='generate-business-plan' AND status='ok' AND attempt=1"),
                   N_CLIENTS);
  /* One command per plan on the command stream: a held step sent nothing. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM crm_business_plans WHERE "
                                   "status IN ('generated', 'completed')"),
                   N_CLIENTS);
  int64_t ai_cmds = 0, n = tb_h_stream_msgs(h, "TB_CMD");
  for (int64_t seq = 1; seq <= n; seq++) {
    natsMsg *m = tb_h_stream_get(h, "TB_CMD", (uint64_t)seq);
    assert_non_null(m);
    if (strncmp(natsMsg_GetSubject(m), "tb.cmd.ai.", 10) == 0) ai_cmds++;
    natsMsg_Destroy(m);
  }
  assert_int_equal(ai_cmds, N_CLIENTS);
  /* Every slot was given back once the plans' own runs (each sends pdf.generate, limit 3) are
   * done too. */
  assert_int_equal(tb_h_wait_sql(h, N_CLIENTS, RUN_MS,
                                 "SELECT count(*) FROM workflows WHERE "
                                 "name='crm.business-plan-completed' AND status='completed'"),
                   N_CLIENTS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM service_slots"), 0);

  assert_int_equal(tb_h_child_term(&sim, 15000), 0);
  assert_int_equal(tb_h_child_term(&w1, 15000), 0);
  assert_int_equal(tb_h_child_term(&w2, 15000), 0);
}

int main(void) {
  tb_h_watchdog(150);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ai_limit_across_workers, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
