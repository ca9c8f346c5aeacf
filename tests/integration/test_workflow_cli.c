/* Integration: the workflow commands of seed 004. A wrong `trigger` (bad JSON, a non-object,
 * an unknown workflow, tier, queue or id) exits 2 naming the problem and publishes nothing; the
 * accepted boundaries publish exactly one execute-workflow on the tier they name; `workflows
 * list|show|runs|cancel` answer from the registry and the store; and `trigger --wait` follows an
 * ops.sleep run through a real worker to exit 0 (completed), 1 (failed, cancelled) and 3
 * (timed out). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 20000

/* Runs `tierbus CMD <common options> ARGS...` into r. */
#define TB(cmd, ...) tb_h_tierbus(h, &r, RUN_MS, cmd, __VA_ARGS__, NULL)

/* Runs a trigger that must be refused with exit 2 and |needle| in its stderr. */
static void refused(tb_h_t *h, const char *needle, const char *const *args) {
  const char *argv[24] = {h->binary, "trigger", "--nats-url", h->url,
                          "--db",    h->db,     "--config",   h->config};
  int n = 8;
  for (int i = 0; args[i] != NULL && n < 23; i++) argv[n++] = args[i];
  argv[n] = NULL;
  tb_h_result_t r;
  tb_h_execv(h, &r, RUN_MS, argv);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, needle);
  assert_string_equal(r.out, ""); /* no workflow id: nothing was started */
  tb_h_result_free(&r);
}

#define REFUSED(needle, ...) refused(h, needle, (const char *const[]){__VA_ARGS__, NULL})

static void test_trigger_refuses_bad_input(void **state) {
  tb_h_t *h = *state;
  /* The shipped config plus a preset whose name is not a tier (presets come last in it). */
  char *yaml = tb_h_read_file(h->config);
  assert_non_null(yaml);
  size_t len = strlen(yaml);
  char *with_rooms = malloc(len + 64);
  assert_non_null(with_rooms);
  snprintf(with_rooms, len + 64, "%s  rooms: [low, background]\n", yaml);
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", with_rooms));
  free(with_rooms);
  free(yaml);
  tb_it_start_and_init(h);

  /* JSON errors name the line and column. */
  REFUSED("--json-input: bad JSON at line 1, column 14", "ops.sleep", "--json-input",
          "{\"duration\": }");
  REFUSED("line 3", "ops.sleep", "--json-input", "{\n  \"a\": 1,\n  \"b\" 2\n}");
  REFUSED("duplicate", "ops.sleep", "--json-input", "{\"a\": 1, \"a\": 2}");
  REFUSED("bad JSON", "ops.sleep", "--json-input", "");
  /* Valid JSON that is not an object says what it got. */
  REFUSED("expected a JSON object (the workflow's input) or an array (seed 000's args), got ",
          "ops.sleep", "--json-input", "5");
  REFUSED("got a string", "ops.sleep", "--json-input", "\"1s\"");
  REFUSED("got null", "ops.sleep", "--json-input", "null");
  /* Unknown workflows list the close names: a typo, a missing domain, or else all of them. */
  REFUSED("unknown workflow 'ops.slep' (did you mean ops.sleep?)", "ops.slep", "--json-input",
          "{}");
  REFUSED("did you mean ops.sleep", "sleep", "--json-input", "{}");
  REFUSED("(workflows: ", "zzzzzzzzzzzzzzzzzzzz", "--json-input", "{}");
  REFUSED("ops.send-email", "zzzzzzzzzzzzzzzzzzzz", "--json-input", "{}");
  /* Tiers and queues. */
  REFUSED("--priority: unknown tier 'urgent' (tiers: critical, high, normal, low, background)",
          "ops.sleep", "--priority", "urgent");
  REFUSED("--task-queue: unknown queue 'estuary-rooms'", "ops.sleep", "--task-queue",
          "estuary-rooms");
  /* The shipped "customer" preset takes crm and enrichment only. */
  REFUSED("--task-queue customer: its workers do not take domain 'ops' (workflow ops.sleep)",
          "ops.sleep", "--task-queue", "customer");
  REFUSED("nor a preset (presets: all, critical, background, customer, rooms)", "ops.sleep",
          "--task-queue", "nope");
  REFUSED("--priority critical and --task-queue background disagree", "ops.sleep", "--priority",
          "critical", "--task-queue", "background");
  /* Ids: charset and the 64-character cap. */
  REFUSED("--id: 'a b': character 2 (' ') is not allowed", "ops.sleep", "--id", "a b");
  REFUSED("must be 1 to 64 characters long (got 65)", "ops.sleep", "--id",
          "a234567890123456789012345678901234567890123456789012345678901234x");
  REFUSED("--id", "ops.sleep", "--id", "");
  /* --wait options. */
  REFUSED("--timeout needs --wait", "ops.sleep", "--timeout", "5");
  REFUSED("--timeout: expected seconds or a duration from 1ms to 7d, got '0'", "ops.sleep",
          "--wait", "--timeout", "0");
  REFUSED("got '8d'", "ops.sleep", "--wait", "--timeout", "8d");
  REFUSED("got 'soon'", "ops.sleep", "--wait", "--timeout", "soon");

  /* None of that reached a stream. */
  tb_assert_streams(h, 0, 0, 0, 0, 0);

  /* The accepted side of each boundary publishes exactly one event, on the tier it names. */
  tb_h_result_t r;
  const char *id64 = "a234567890123456789012345678901234567890123456789012345678901234";
  TB("trigger", "ops.sleep", "--json-input", "{\"duration\": \"1s\"}", "--id", id64);
  tb_assert_exit(r, 0);
  char want[128];
  snprintf(want, sizeof(want), "%s\n", id64);
  assert_string_equal(r.out, want);
  tb_h_result_free(&r);
  tb_assert_streams(h, 0, 0, 0, 0, 1); /* ops.sleep's default tier is background */
  natsMsg *m = tb_h_stream_get(h, "TB_BACKGROUND_OPS", 1);
  assert_non_null(m);
  assert_string_equal(natsMsg_GetSubject(m), "tb.evt.background.ops.execute-workflow");
  snprintf(want, sizeof(want), "execute-workflow:%s", id64);
  assert_string_equal(tb_h_header(m, "Nats-Msg-Id"), want);
  natsMsg_Destroy(m);

  /* The same id again is deduplicated by the stream: no second run, and the user is told. */
  TB("trigger", "ops.sleep", "--json-input", "{\"duration\": \"1s\"}", "--id", id64);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.err, "already triggered");
  tb_h_result_free(&r);
  tb_assert_streams(h, 0, 0, 0, 0, 1);

  /* A preset routes to its first tier; a generated id is "wf-" + 32 hex digits. */
  TB("trigger", "ops.sleep", "--task-queue", "all");
  tb_assert_exit(r, 0);
  assert_int_equal(strlen(r.out), 3 + 32 + 1);
  assert_memory_equal(r.out, "wf-", 3);
  tb_h_result_free(&r);
  tb_assert_streams(h, 1, 0, 0, 0, 1);
  TB("trigger", "ops.sleep", "--task-queue", "rooms"); /* the test config's [low, background] */
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_assert_streams(h, 1, 0, 0, 1, 1);
  /* "background" is a tier and a preset ([low, background]): the tier wins. */
  TB("trigger", "ops.sleep", "--task-queue", "background");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_assert_streams(h, 1, 0, 0, 1, 2);
  TB("trigger", "ops.sleep", "--task-queue", "normal", "--priority", "normal");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_assert_streams(h, 1, 0, 1, 1, 2);
  TB("trigger", "ops.sleep", "--priority", "high", "--json-input", "{}");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_assert_streams(h, 1, 1, 1, 1, 2);
}

static void test_workflows_list_show_runs(void **state) {
  tb_h_t *h = *state;
  /* Only init, worker and dev create a database; the commands here need one to exist. An empty
   * file is an empty database. */
  FILE *touch = fopen(h->db, "a");
  assert_non_null(touch);
  fclose(touch);
  tb_h_result_t r;

  TB("workflows", "list");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "ops.sleep");
  tb_assert_contains(r.out, "ACTIVITY");
  tb_assert_contains(r.out, "log_event");
  tb_h_result_free(&r);

  TB("workflows", "list", "--domain", "nope");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown domain 'nope' (domains: ");
  tb_assert_contains(r.err, "ops");
  tb_assert_contains(r.err, "shared");
  tb_h_result_free(&r);

  TB("workflows", "list", "--domain", "ops", "--workflows-only");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "ops.sleep");
  tb_assert_contains(r.out, "10 workflows");
  tb_assert_not_contains(r.out, "ACTIVITY");
  tb_h_result_free(&r);

  TB("workflows", "list", "--domain", "shared", "--activities-only");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "log_event");
  tb_assert_not_contains(r.out, "WORKFLOW");
  tb_h_result_free(&r);

  TB("workflows", "list", "--workflows-only", "--activities-only");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "not both");
  tb_h_result_free(&r);

  TB("workflows", "list", "--domain", "ops", "--detailed");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "ops.sleep  (domain ops)");
  tb_assert_contains(r.out, "nap");
  tb_assert_contains(r.out, "3 attempts, exponential 200ms..2s, retryOn 429,500,502,503,504");
  tb_h_result_free(&r);

  TB("workflows", "list", "--domain", "ops", "--json");
  tb_assert_exit(r, 0);
  json_t *root = json_loads(r.out, 0, NULL);
  assert_non_null(root);
  json_t *w, *sleep_wf = NULL;
  size_t i;
  json_array_foreach(json_object_get(root, "workflows"), i, w) {
    if (strcmp(json_string_value(json_object_get(w, "name")), "ops.sleep") == 0) sleep_wf = w;
  }
  assert_non_null(sleep_wf);
  assert_string_equal(json_string_value(json_object_get(sleep_wf, "resolved_tier")), "background");
  json_t *nap = json_array_get(json_object_get(sleep_wf, "steps"), 0);
  assert_string_equal(json_string_value(json_object_get(nap, "kind")), "sleep");
  assert_string_equal(json_string_value(json_object_get(nap, "target")), "1s");
  assert_int_equal(json_array_size(json_object_get(sleep_wf, "steps")), 2);
  json_decref(root);
  tb_h_result_free(&r);

  TB("workflows", "show", "nope");
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "no workflow 'nope'");
  tb_h_result_free(&r);

  TB("workflows", "cancel", "nope");
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "no workflow 'nope'");
  tb_h_result_free(&r);

  TB("workflows", "runs");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "0 runs");
  tb_h_result_free(&r);

  TB("workflows", "runs", "--status", "done");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown status 'done'");
  tb_h_result_free(&r);

  TB("workflows", "runs", "--limit", "0");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "--limit: expected an integer from 1 to 100000, got '0'");
  tb_h_result_free(&r);

  TB("workflows", "runs", "--limit", "100000", "--json");
  tb_assert_exit(r, 0);
  assert_string_equal(r.out, "[]\n");
  tb_h_result_free(&r);

  TB("workflows", "frob");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown subcommand 'frob'");
  tb_h_result_free(&r);
}

/* The first line of |out| (the workflow id trigger prints) into |id|. */
static void first_line(const char *out, char *id, size_t cap) {
  size_t n = strcspn(out, "\n");
  assert_true(n > 0 && n < cap);
  memcpy(id, out, n);
  id[n] = '\0';
}

static void test_trigger_wait(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t worker;
  char id[128];
  tb_it_start_and_init(h);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));

  /* Completed: exit 0 with the status and the last step's result. */
  TB("trigger", "ops.sleep", "--json-input", "{\"duration\": \"200ms\"}", "--wait", "--timeout",
     "30");
  if (r.status != 0) tb_h_dump_logs(h, 40);
  tb_assert_exit(r, 0);
  first_line(r.out, id, sizeof(id));
  assert_memory_equal(id, "wf-", 3);
  tb_assert_contains(r.out, "completed in");
  tb_h_result_free(&r);

  TB("workflows", "show", id);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "status      completed");
  tb_assert_contains(r.out, "nap");
  tb_assert_contains(r.out, "log");
  tb_h_result_free(&r);

  TB("workflows", "show", id, "--json");
  tb_assert_exit(r, 0);
  json_t *root = json_loads(r.out, 0, NULL);
  assert_non_null(root);
  json_t *wf = json_object_get(root, "workflow");
  assert_string_equal(json_string_value(json_object_get(wf, "status")), "completed");
  assert_string_equal(json_string_value(json_object_get(wf, "tier")), "background");
  assert_string_equal(json_string_value(json_object_get(
                          json_object_get(json_object_get(wf, "data"), "input"), "duration")),
                      "200ms");
  assert_true(json_array_size(json_object_get(root, "history")) >= 2);
  json_decref(root);
  tb_h_result_free(&r);

  TB("workflows", "runs", "--status", "completed");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, id);
  tb_assert_contains(r.out, "1 run\n");
  tb_h_result_free(&r);

  TB("workflows", "cancel", id);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "already completed");
  tb_h_result_free(&r);

  /* Failed: a duration that is not one fails the sleep step permanently. */
  TB("trigger", "ops.sleep", "--json-input", "{\"duration\": \"nope\"}", "--wait", "--timeout",
     "30");
  tb_assert_exit(r, 1);
  tb_assert_contains(r.out, "failed at step nap");
  tb_assert_contains(r.out, "'nope'");
  tb_h_result_free(&r);

  /* Timed out: exit 3 after about the timeout, the run still sleeping; then cancelled. */
  int64_t t0 = tb_h_now_ms();
  TB("trigger", "ops.sleep", "--json-input", "{\"duration\": \"1h\"}", "--id", "long-nap",
     "--priority", "high", "--wait", "--timeout", "1500ms");
  int64_t took = tb_h_now_ms() - t0;
  tb_assert_exit(r, 3);
  assert_string_equal(r.out, "long-nap\n");
  tb_assert_contains(r.err, "timed out");
  tb_assert_contains(r.err, "long-nap is still sleeping at step nap");
  tb_h_result_free(&r);
  assert_true(took >= 1500 && took < 10000);

  TB("workflows", "cancel", "long-nap", "--reason", "operator said so");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "cancelled long-nap (ops.sleep, was sleeping at step nap");
  tb_h_result_free(&r);

  TB("workflows", "show", "long-nap");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "status      cancelled");
  tb_assert_contains(r.out, "tier        high");
  tb_assert_contains(r.out, "operator said so");
  tb_h_result_free(&r);

  /* Waiting on a cancelled run reports it (exit 1) without starting it again. */
  TB("trigger", "ops.sleep", "--json-input", "{\"duration\": \"1h\"}", "--id", "long-nap",
     "--priority", "high", "--wait", "--timeout", "10");
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "already exists");
  tb_assert_contains(r.out, "workflow long-nap cancelled at step nap");
  tb_h_result_free(&r);

  TB("workflows", "runs", "--json");
  tb_assert_exit(r, 0);
  root = json_loads(r.out, 0, NULL);
  assert_non_null(root);
  assert_int_equal(json_array_size(root), 3);
  json_decref(root);
  tb_h_result_free(&r);

  assert_int_equal(tb_h_child_term(&worker, 10000), 0);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_trigger_refuses_bad_input, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_workflows_list_show_runs, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_trigger_wait, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
