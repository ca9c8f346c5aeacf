/* Integration: issue 12's seed 002 items through real processes (nats-server, `tierbus worker`,
 * the CLI): repository_name learnt from WORKSPACE_REPO_ADDED; a burst of adds queues one
 * workspace_add sync that a worker runs; `priority set` refuses a repository never seen (exit 2,
 * nothing written) unless --create; `priority list` with its filters and --json; and a
 * capture/repository.sync published without a priority routed by the repository's priority. */
#define _GNU_SOURCE /* memmem */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/itest.h"

#define RUN_MS 20000

/* Runs tierbus with up to 8 arguments; fails unless it exits |code|. Caller frees |r|. */
#define TB(r, code, ...)                                                                           \
  do {                                                                                             \
    tb_h_tierbus(h, &(r), RUN_MS, __VA_ARGS__, NULL);                                              \
    tb_assert_exit(r, code);                                                                       \
  } while (0)

/* The data of message |seq| of |stream| holds |needle| (a protobuf keeps strings as bytes). */
static int stream_msg_has(tb_h_t *h, const char *stream, uint64_t seq, const char *needle) {
  natsMsg *m = tb_h_stream_get(h, stream, seq);
  if (m == NULL) return 0;
  int len = natsMsg_GetDataLength(m);
  int found = memmem(natsMsg_GetData(m), (size_t)len, needle, strlen(needle)) != NULL;
  natsMsg_Destroy(m);
  return found;
}

static uint64_t seq_of(const char *out) {
  const char *p = out ? strstr(out, "seq=") : NULL;
  return p ? strtoull(p + 4, NULL, 10) : 0;
}

static void test_seed002_cli(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t worker;
  tb_it_start_and_init(h);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", "--set", "priority_sync_debounce=1s",
                          "--set", "workspace_add_sync=true", NULL));

  /* A burst of two adds: one workspace_add sync, run by the worker once the window is over. */
  TB(r, 0, "publish", "WORKSPACE_REPO_ADDED", "--json",
     "{\"workspace_id\": \"w1\", \"repository_id\": \"rA\", \"repository_name\": \"octo/a\"}");
  tb_h_result_free(&r);
  TB(r, 0, "publish", "WORKSPACE_REPO_ADDED", "--json",
     "{\"workspace_id\": \"w2\", \"repository_id\": \"rB\"}");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_wait_sql(h, 2, RUN_MS, "SELECT count(*) FROM tracked_repositories"), 2);
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM priority_sync_runs WHERE "
                                 "trigger='workspace_add' AND status='completed'"),
                   1);
  tb_h_sleep_ms(2500); /* past another window: a second sync would have run by now */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM priority_sync_runs WHERE "
                                   "trigger='workspace_add'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM tracked_repositories WHERE "
                                   "repository_id='rA' AND repository_name='octo/a'"),
                   1);

  /* set: a repository never seen is refused and nothing is written, unless --create. */
  TB(r, 2, "priority", "set", "rZ", "--override", "low");
  tb_assert_contains(r.err, "repository 'rZ' has never been seen");
  tb_assert_contains(r.err, "--create");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM tracked_repositories"), 2);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM priority_audit WHERE "
                                   "repository_id='rZ'"),
                   0);
  TB(r, 0, "priority", "set", "rZ", "--override", "low", "--create", "--name", "octo/z");
  tb_assert_contains(r.out, "rZ: low (score 25), override low, marked low no, name octo/z "
                            "(now tracked)");
  tb_h_result_free(&r);
  TB(r, 0, "priority", "set", "rB", "--name", "octo/b");
  tb_assert_contains(r.out, "rB: high (score 100)");
  tb_h_result_free(&r);
  TB(r, 2, "priority", "set", "rB", "--name", "");
  tb_h_result_free(&r);

  /* list and its filters. */
  TB(r, 0, "priority", "list");
  tb_assert_contains(r.out, "REPOSITORY");
  tb_assert_contains(r.out, "octo/a");
  tb_assert_contains(r.out, "octo/b");
  tb_assert_contains(r.out, "octo/z");
  tb_h_result_free(&r);
  TB(r, 0, "priority", "list", "--workspace", "w1");
  tb_assert_contains(r.out, "rA");
  tb_assert_not_contains(r.out, "rB");
  tb_assert_not_contains(r.out, "rZ");
  tb_h_result_free(&r);
  TB(r, 0, "priority", "list", "--priority", "low", "--json");
  json_t *j = json_loads(r.out, 0, NULL);
  assert_non_null(j);
  assert_int_equal(json_integer_value(json_object_get(j, "count")), 1);
  json_t *row = json_array_get(json_object_get(j, "repositories"), 0);
  assert_string_equal(json_string_value(json_object_get(row, "repository_id")), "rZ");
  assert_string_equal(json_string_value(json_object_get(row, "repository_name")), "octo/z");
  assert_string_equal(json_string_value(json_object_get(row, "manual_override")), "low");
  assert_true(json_is_false(json_object_get(j, "truncated")));
  json_decref(j);
  tb_h_result_free(&r);
  TB(r, 0, "priority", "list", "--limit", "1");
  tb_assert_contains(r.out, "(more than 1 repositories match");
  tb_h_result_free(&r);
  TB(r, 2, "priority", "list", "--priority", "urgent");
  tb_assert_contains(r.err, "--priority: expected high, medium or low, got 'urgent'");
  tb_h_result_free(&r);

  /* A sync job from another service, without a priority: looked up, routed, metadata and name
   * filled. */
  TB(r, 0, "publish", "capture/repository.sync", "--json", "{\"repository_id\": \"rA\"}");
  tb_assert_contains(r.out, "tier=high subject=tb.evt.high.workspace.repository-sync");
  tb_assert_contains(r.out, "repository_priority=high");
  assert_true(stream_msg_has(h, "TB_HIGH_WORKSPACE", seq_of(r.out), "octo/a"));
  assert_true(stream_msg_has(h, "TB_HIGH_WORKSPACE", seq_of(r.out), "is_workspace_repo"));
  tb_h_result_free(&r);
  TB(r, 0, "publish", "capture/repository.sync", "--json", "{\"repository_id\": \"rZ\"}");
  tb_assert_contains(r.out, "tier=low subject=tb.evt.low.workspace.repository-sync");
  tb_h_result_free(&r);
  TB(r, 0, "publish", "capture/repository.sync", "--json", "{\"repository_id\": \"rQ\"}");
  tb_assert_contains(r.out, "tier=normal ");
  tb_assert_contains(r.out, "repository_priority=medium (not tracked)");
  tb_h_result_free(&r);
  /* The publisher's priority wins. */
  TB(r, 0, "publish", "capture/repository.sync", "--json", "{\"repository_id\": \"rA\"}",
     "--priority", "background");
  tb_assert_contains(r.out, "tier=background ");
  tb_assert_not_contains(r.out, "repository_priority=");
  tb_h_result_free(&r);

  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_seed002_cli, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
