/* Steps that run on in one message (runtime.c's run_on) against the one-message-per-step flow
 * (workflow_steps_per_message 1), through the real runtime, store and simulator in process: a
 * pump plays the relay and the engine (each outbox row handled in a transaction of its own,
 * earliest due first on a virtual clock) and answers commands with tb_sim_answer. It checks that
 * the history and the runs come out the same either way, that the steps one message ran commit
 * or roll back together, that a step failing with an error after others ran on leaves what the
 * one-message-per-step flow would have left, and that the bound and own_message hold. */
#include <sqlite3.h>

#include "wf_harness.h"
#include "wf_pump.h"

/* ---------------------------------------------------------------- helpers */

/* A pump as the chain tests run it: |steps_per_message| steps per message at most, and the
 * provider's webhook late, so that a wait starts before it arrives whichever way the steps
 * travel (run on, the reply's message reaches the wait at once; one step per message, a webhook
 * sent with the reply would arrive first, which only changes the wait's detail and seq). */
static void chain_init(pump_t *p, world_t *w, int steps_per_message) {
  pump_init(p, w);
  p->late_webhook = 1;
  w->cfg.workflow_steps_per_message = steps_per_message;
}

static void sql(world_t *w, const char *text) {
  char *err = NULL;
  if (sqlite3_exec(tb__store_db(w->st), text, NULL, NULL, &err) != SQLITE_OK)
    fail_msg("%s: %s", text, err ? err : "?");
}

static int64_t q_int(world_t *w, const char *text) {
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(tb__store_db(w->st), text, -1, &q, NULL) != SQLITE_OK)
    fail_msg("%s: %s", text, sqlite3_errmsg(tb__store_db(w->st)));
  int64_t v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
  sqlite3_finalize(q);
  return v;
}

static void subscriber(world_t *w, int i) {
  char json[256], id[32];
  snprintf(json, sizeof(json),
           "{\"subscriber_id\": \"s%d\", \"email\": \"s%d@gmail.com\", \"email_type\": "
           "\"EMAIL_TYPE_PERSONAL\", \"source\": \"webhook\"}",
           i, i);
  snprintf(id, sizeof(id), "sub-%d", i);
  publish_text(w, "subscriber-created", id, json);
}

/* ---------------------------------------------------------------- what a run left */

typedef struct text {
  char *buf;
  size_t len;
  FILE *f;
} text_t;

static int hist_line(void *arg, const tb_wf_hist_t *h) {
  text_t *t = arg;
  fprintf(t->f, "  %d %s %s #%d %s code=%d detail=%s result=%s error=%s tier=%s\n", h->step,
          h->name, h->kind, h->attempt, h->status, h->code, h->detail ? h->detail : "-",
          h->result ? h->result : "-", h->error ? h->error : "-", h->tier ? h->tier : "-");
  return 0;
}

static int run_line(void *arg, const tb_wf_row_t *r) {
  text_t *t = arg;
  fprintf(t->f, "%s %s %s step=%d %s attempt=%d seq=%d error=%s data=%s\n", r->id, r->name,
          r->status, r->step, r->step_state, r->attempt, (int)r->seq, r->error ? r->error : "-",
          r->data);
  return 0;
}

/* Replaces every run of 13 or more digits (a time in microseconds) in |s| with "T". */
static void untime(char *s) {
  char *out = s;
  for (const char *p = s; *p;) {
    size_t n = strspn(p, "0123456789");
    if (n >= 13) {
      *out++ = 'T';
      p += n;
    } else if (n > 0) {
      memmove(out, p, n);
      out += n;
      p += n;
    } else {
      *out++ = *p++;
    }
  }
  *out = '\0';
}

/* Every run (by id) with its history, without times and message ids: what must be the same
 * whichever way the steps travelled. Caller frees. */
static char *runs_text(world_t *w) {
  text_t runs = {0};
  runs.f = open_memstream(&runs.buf, &runs.len);
  assert_int_equal(tb_store_wf_list(w->st, NULL, NULL, 0, 1000, run_line, &runs), TB_OK);
  fclose(runs.f);
  /* tb_store_wf_list is newest first, and runs started in one message share a time: sort. */
  char *lines[256];
  int n = 0;
  for (char *save = NULL, *l = strtok_r(runs.buf, "\n", &save); l && n < 256;
       l = strtok_r(NULL, "\n", &save))
    lines[n++] = l;
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0; j--) {
      char *x = lines[j];
      lines[j] = lines[j - 1];
      lines[j - 1] = x;
    }
  text_t out = {0};
  out.f = open_memstream(&out.buf, &out.len);
  for (int i = 0; i < n; i++) {
    char id[TB_ID_MAX];
    snprintf(id, sizeof(id), "%.*s", (int)strcspn(lines[i], " "), lines[i]);
    fprintf(out.f, "%s\n", lines[i]);
    assert_int_equal(tb_store_wf_history(w->st, id, hist_line, &out), TB_OK);
  }
  fclose(out.f);
  free(runs.buf);
  untime(out.buf);
  return out.buf;
}

/* Fails on the first line where |got| differs from |want|, printing both. */
static void assert_same_text(const char *want, const char *got) {
  int line = 1;
  const char *a = want, *b = got;
  while (*a || *b) {
    size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
    if (la != lb || strncmp(a, b, la) != 0) {
      size_t at = 0;
      while (at < la && at < lb && a[at] == b[at]) at++;
      size_t from = at > 60 ? at - 60 : 0;
      print_error("line %d differs at column %zu:\nreference: ...%.*s\n      got: ...%.*s\n", line,
                  at, (int)(la - from < 160 ? la - from : 160), a + from,
                  (int)(lb - from < 160 ? lb - from : 160), b + from);
      fail_msg("the runs differ");
    }
    a += la + (a[la] != '\0');
    b += lb + (b[lb] != '\0');
    line++;
  }
}

/* A second world, for the reference run. */
static world_t *world_new(void) {
  void *state = NULL;
  if (world_setup(&state) != 0) fail_msg("world setup");
  return state;
}

static void world_free(world_t *w) {
  void *state = w;
  world_teardown(&state);
}

/* ---------------------------------------------------------------- same history either way */

/* Three personal subscribers and a corporate one, the first submit answered 429: batching (one
 * run takes all three jobs), the retry timer, the command, the wait and the resume. */
static void enrichment_scenario(pump_t *p) {
  add_fail(p, "enrichment.submit=429:1");
  for (int i = 0; i < 3; i++) subscriber(p->w, i);
  publish_text(p->w, "subscriber-created", "sub-corp",
               "{\"subscriber_id\": \"corp\", \"email\": \"ceo@acme.com\", \"email_type\": "
               "\"EMAIL_TYPE_CORPORATE\"}");
  pump_run(p);
}

static void test_enrichment_same_history_either_way(void **state) {
  world_t *w = *state;
  world_t *ref = world_new();
  pump_t a, b;
  chain_init(&a, ref, 1);
  enrichment_scenario(&a);
  chain_init(&b, w, 32);
  enrichment_scenario(&b);

  char *want = runs_text(ref), *got = runs_text(w);
  assert_same_text(want, got);
  assert_non_null(strstr(got, "subscriber-enrichment completed"));
  assert_int_equal(q_int(w, "SELECT count(*) FROM enrichment_jobs WHERE status = 'done'"), 3);
  assert_int_equal(a.commands, b.commands);
  /* One step per message: every step attempt but the skipped ones, plus the reply's and the
   * event's resumes, is a continuation: 3 runs x (start, batch) + the batching run's submit
   * (twice: the 429 and its retry), the two resumes of the submit, register, the wait, its
   * resume, process and unregister = 17. Run on: each run's batch step (its own message), the
   * retry after the 429 = 4. */
  assert_int_equal(a.steps, 17);
  assert_int_equal(b.steps, 4);
  free(want);
  free(got);
  world_free(ref);
}

/* With enrichment_batch_max 1 (the bench's setting) a full batch is pending as soon as a run
 * recorded its job, so waiting cannot make the batch bigger: the batch step runs on, and no step
 * of these runs crosses the bus as a continuation. The history is the same as ever. */
static void test_full_batch_runs_on(void **state) {
  world_t *w = *state;
  world_t *ref = world_new();
  pump_t a, b;
  chain_init(&a, ref, 1);
  chain_init(&b, w, 32);
  ref->cfg.enrichment_batch_max = 1;
  w->cfg.enrichment_batch_max = 1;
  for (int i = 0; i < 3; i++) {
    subscriber(ref, i);
    subscriber(w, i);
  }
  pump_run(&a);
  pump_run(&b);
  char *want = runs_text(ref), *got = runs_text(w);
  assert_same_text(want, got);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflows WHERE status = 'completed'"), 3);
  assert_int_equal(q_int(w, "SELECT count(*) FROM enrichment_batches WHERE n_jobs = 1"), 3);
  assert_int_equal(a.steps, 3 * 9); /* every step attempt and resume */
  assert_int_equal(b.steps, 0);
  assert_int_equal(b.events, 3 * 3); /* trigger, reply, webhook */
  free(want);
  free(got);
  world_free(ref);
}

static void journey(pump_t *p) {
  publish_text(p->w, "CLIENT_CREATED", "ev-created",
               "{\"client_id\": \"c1\", \"user_id\": \"u1\", \"client_name\": \"Acme Co\", "
               "\"email\": \"ceo@acme.test\"}");
  publish_text(p->w, "CLIENT_ACTIVATED", "ev-activated",
               "{\"client_id\": \"c1\", \"user_id\": \"u1\", \"previous_status\": "
               "\"ONBOARDING\"}");
  pump_run(p);
  for (int m = 1; m <= 8; m++) {
    char json[160], id[32];
    snprintf(json, sizeof(json),
             "{\"client_id\": \"c1\", \"user_id\": \"u1\", \"month\": %d, \"title\": \"M%d\"}", m,
             m);
    snprintf(id, sizeof(id), "ev-done-%d", m);
    publish_text(p->w, "DELIVERABLE_COMPLETED", id, json);
    pump_run(p);
  }
}

/* Seed 001's client journey: branches, optional steps, failing emails with retries, events
 * published by steps that start further runs. */
static void test_journey_same_history_either_way(void **state) {
  world_t *w = *state;
  world_t *ref = world_new();
  pump_t a, b;
  chain_init(&a, ref, 1);
  add_fail(&a, "email.send=500:2");
  journey(&a);
  chain_init(&b, w, 32);
  add_fail(&b, "email.send=500:2");
  journey(&b);

  char *want = runs_text(ref), *got = runs_text(w);
  assert_same_text(want, got);
  assert_null(strstr(got, " failed step="));
  assert_int_equal(a.commands, b.commands);
  assert_true(b.steps * 3 < a.steps);
  free(want);
  free(got);
  world_free(ref);
}

/* workflow_steps_per_message 2: the same history again, and no message ran more than two steps
 * (a step is a (step, attempt) pair; skipped steps are free, a wait that finds its event early
 * is one step). */
static void test_bound(void **state) {
  world_t *w = *state;
  world_t *ref = world_new();
  pump_t a, b;
  chain_init(&a, ref, 32);
  enrichment_scenario(&a);
  chain_init(&b, w, 2);
  enrichment_scenario(&b);
  char *want = runs_text(ref), *got = runs_text(w);
  assert_same_text(want, got);
  assert_int_equal(q_int(w, "SELECT max(n) FROM (SELECT count(DISTINCT step || ':' || attempt) "
                            "AS n FROM workflow_history WHERE status <> 'skipped' "
                            "GROUP BY msg_id)"),
                   2);
  assert_true(b.steps > a.steps);
  free(want);
  free(got);
  world_free(ref);
}

/* ---------------------------------------------------------------- one transaction */

#define RUN_ID "subscriber-enrichment:sub-0"

/* The enrichment-complete event resumes the wait, and process-results and unregister-workflow
 * run on: three steps, one message. Rolled back (the worker died before its commit), none of
 * them happened; handled again, all three commit together. */
static void test_chained_steps_commit_together(void **state) {
  world_t *w = *state;
  pump_t p;
  chain_init(&p, w, 32);
  subscriber(w, 0);
  assert_true(pump_until(&p, ".enrichment-complete"));
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflows WHERE status = 'waiting'"), 1);

  tb_outbox_row_t *row = NULL;
  assert_true(next_row(w, &row));
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_outbox_delete(w->st, row->id), TB_OK);
  assert_int_equal(handle(&p, row), TB_OK);
  /* Inside the transaction: every step ran, under the event's message id. */
  char q[512];
  snprintf(q, sizeof(q),
           "SELECT count(*) FROM workflow_history WHERE msg_id = '%s' AND status = 'ok' AND "
           "name IN ('wait-for-webhook', 'process-results', 'unregister-workflow')",
           row->msg_id);
  assert_int_equal(q_int(w, q), 3);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflows WHERE status = 'completed'"), 1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM enrichment_jobs WHERE status = 'done'"), 1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM enrichment_tracker"), 0);
  assert_int_equal(tb_store_rollback(w->st), TB_OK);

  assert_int_equal(q_int(w, q), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflows WHERE status = 'waiting'"), 1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM enrichment_jobs WHERE status = 'batched'"), 1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM enrichment_tracker"), 1);

  pump_row(&p, row); /* redelivered */
  tb_store_outbox_free(row, 1);
  assert_int_equal(q_int(w, q), 3);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflows WHERE status = 'completed'"), 1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM enrichment_jobs WHERE status = 'done'"), 1);
  pump_run(&p);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflow_history WHERE name = "
                            "'process-results'"),
                   1);
}

/* ---------------------------------------------------------------- a failure mid-chain */

/* The workflow row and the outbox as "status step state attempt seq | outbox msg ids". */
static char *state_text(world_t *w) {
  text_t t = {0};
  t.f = open_memstream(&t.buf, &t.len);
  sqlite3_stmt *q = NULL;
  assert_int_equal(sqlite3_prepare_v2(tb__store_db(w->st),
                                      "SELECT status || ' ' || step || ' ' || step_state || ' ' "
                                      "|| attempt || ' ' || seq || ' ' || data FROM workflows",
                                      -1, &q, NULL),
                   SQLITE_OK);
  while (sqlite3_step(q) == SQLITE_ROW) fprintf(t.f, "%s\n", sqlite3_column_text(q, 0));
  sqlite3_finalize(q);
  assert_int_equal(sqlite3_prepare_v2(tb__store_db(w->st),
                                      "SELECT msg_id FROM outbox ORDER BY msg_id", -1, &q, NULL),
                   SQLITE_OK);
  while (sqlite3_step(q) == SQLITE_ROW) fprintf(t.f, "| %s\n", sqlite3_column_text(q, 0));
  sqlite3_finalize(q);
  fclose(t.f);
  char *runs = runs_text(w);
  size_t cap = strlen(t.buf) + strlen(runs) + 1;
  char *out = malloc(cap);
  assert_non_null(out);
  snprintf(out, cap, "%s%s", t.buf, runs);
  free(runs);
  free(t.buf);
  return out;
}

/* The cause carried by the continuation |msg_id| in the outbox. Static buffer. */
static const char *cont_cause(world_t *w, const char *msg_id) {
  static char cause[32];
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(w->st, INT64_MAX, 100, &rows, &n), TB_OK);
  cause[0] = '\0';
  for (int i = 0; i < n; i++) {
    if (strcmp(rows[i].msg_id, msg_id) != 0) continue;
    tb_decoded_t d;
    assert_int_equal(tb_codec_decode(w->cat, rows[i].payload, rows[i].len, &d), TB_OK);
    const Tierbus__V1__WorkflowStep *ws = (const Tierbus__V1__WorkflowStep *)d.payload;
    snprintf(cause, sizeof(cause), "%s", ws->cause);
    tb_decoded_free(&d);
  }
  tb_store_outbox_free(rows, n);
  return cause;
}

/* The submit's reply resumes the submit, and register-workflow runs on, but its store write fails
 * (a trigger raises on the tracker insert: an error, not a failed attempt). The reply's message
 * still commits: the submit's success, and register-workflow's continuation, exactly what the
 * one-message-per-step flow holds once the reply and the submit's resume were handled. That
 * continuation then runs the step (here it succeeds), and the run ends as the reference run. */
static void test_error_mid_chain_as_before(void **state) {
  world_t *w = *state;
  world_t *ref = world_new();
  pump_t a, b;
  chain_init(&a, ref, 1);
  chain_init(&b, w, 32);
  subscriber(ref, 0);
  subscriber(w, 0);
  /* Up to the reply: the command was answered, its reply waits in the outbox. */
  assert_true(pump_until(&a, ".command-reply"));
  assert_true(pump_until(&b, ".command-reply"));

  sql(w, "CREATE TEMP TRIGGER tracker_down BEFORE INSERT ON enrichment_tracker "
         "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END");
  tb_outbox_row_t *row = NULL;
  assert_true(next_row(w, &row));
  pump_row(&b, row); /* commits: the handler returned TB_OK */
  tb_store_outbox_free(row, 1);
  sql(w, "DROP TRIGGER tracker_down");
  /* register-workflow left nothing: no history row, no tracker row, the batch not submitted. */
  assert_int_equal(
      q_int(w, "SELECT count(*) FROM workflow_history WHERE name = 'register-workflow'"), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM enrichment_tracker"), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM enrichment_batches WHERE status = 'open'"), 1);
  int64_t seq = q_int(w, "SELECT seq FROM workflows");
  char cont[128];
  snprintf(cont, sizeof(cont), "wf:%s:%lld", RUN_ID, (long long)seq);
  assert_string_equal(cont_cause(w, cont), "next");

  /* The reference: the reply, then the submit's resume, which sends register's continuation.
   * (The webhook sent with the reply is due later on both sides.) */
  assert_true(pump_until(&b, "workflow-step"));
  assert_true(pump_until(&a, "workflow-step"));
  assert_true(next_row(ref, &row));
  pump_row(&a, row);
  tb_store_outbox_free(row, 1);
  char *want = state_text(ref), *got = state_text(w);
  assert_same_text(want, got);
  free(want);
  free(got);

  pump_run(&a);
  pump_run(&b);
  want = runs_text(ref);
  got = runs_text(w);
  assert_same_text(want, got);
  assert_non_null(strstr(got, "completed"));
  free(want);
  free(got);
  world_free(ref);
}

/* The same at the start: the trigger starts the run and runs record-subscriber on, whose
 * subscriber insert fails. The trigger's message commits the run and the first continuation
 * ("start"), as the one-message-per-step flow's trigger did, and nothing of the step. */
static void test_error_in_first_step_run_on(void **state) {
  world_t *w = *state;
  pump_t p;
  chain_init(&p, w, 32);
  subscriber(w, 0);
  sql(w, "CREATE TEMP TRIGGER subscribers_down BEFORE INSERT ON subscribers "
         "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END");
  tb_outbox_row_t *row = NULL;
  assert_true(next_row(w, &row));
  pump_row(&p, row);
  tb_store_outbox_free(row, 1);
  sql(w, "DROP TRIGGER subscribers_down");
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflows WHERE status = 'running' AND "
                            "step = 0 AND step_state = 'ready' AND seq = 1"),
                   1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflow_history"), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM subscribers"), 0);
  assert_string_equal(cont_cause(w, "wf:" RUN_ID ":1"), "start");
  pump_run(&p);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflows WHERE status = 'completed'"), 1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflow_history WHERE name = "
                            "'record-subscriber' AND status = 'ok'"),
                   1);
}

/* The batch step's message runs the submit on: its command is queued, then registering the wait
 * fails (a trigger raises on the waits table). The step's savepoint takes the command back out
 * of the outbox, with the batch kept and the submit's continuation sent instead: a command is
 * sent only by the attempt that committed. */
static void test_error_mid_chain_rolls_back_its_writes(void **state) {
  world_t *w = *state;
  pump_t b;
  chain_init(&b, w, 32);
  subscriber(w, 0);
  assert_true(pump_until(&b, "workflow-step")); /* the trigger ran record-subscriber on */
  sql(w, "CREATE TEMP TRIGGER waits_down BEFORE INSERT ON workflow_waits "
         "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END");
  tb_outbox_row_t *row = NULL;
  assert_true(next_row(w, &row));
  pump_row(&b, row);
  tb_store_outbox_free(row, 1);
  sql(w, "DROP TRIGGER waits_down");
  assert_int_equal(q_int(w, "SELECT count(*) FROM outbox WHERE subject LIKE 'tb.cmd.%'"), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflow_history WHERE name = "
                            "'batch-pending-jobs' AND status = 'ok'"),
                   1);
  assert_int_equal(
      q_int(w, "SELECT count(*) FROM workflow_history WHERE name = 'submit-to-fullenrich'"), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflows WHERE step = 2 AND "
                            "step_state = 'ready'"),
                   1);
  int64_t seq = q_int(w, "SELECT seq FROM workflows");
  char cont[128];
  snprintf(cont, sizeof(cont), "wf:%s:%lld", RUN_ID, (long long)seq);
  assert_string_equal(cont_cause(w, cont), "next");
  pump_run(&b);
  assert_int_equal(b.commands, 1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflows WHERE status = 'completed'"), 1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflow_history WHERE name = "
                            "'submit-to-fullenrich' AND status IN ('waiting', 'ok')"),
                   2);
}

/* ---------------------------------------------------------------- own_message */

/* The priority sync's batch step keeps a message of its own: over 12001 repositories (three
 * batches of 5000), each batch ran in a continuation of its own, and the branch after it ran on
 * in the same message. */
static void test_sync_batch_per_message(void **state) {
  world_t *w = *state;
  pump_t p;
  chain_init(&p, w, 32);
  sql(w, "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < 12001) "
         "INSERT INTO tracked_repositories(repository_id, priority, priority_score, "
         "is_workspace_repo, workspace_count, marked_low, updated_at) SELECT "
         "printf('repo-%05d', i), 'medium', 50, 0, 0, 0, 1 FROM k");
  publish_text(w, "workspace/priorities.sync", "sync-1", "{\"reason\": \"test\"}");
  pump_run(&p);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflows WHERE status = 'completed'"), 1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflow_history WHERE name = 'batch'"), 3);
  assert_int_equal(q_int(w, "SELECT count(DISTINCT msg_id) FROM workflow_history WHERE "
                            "name = 'batch' AND msg_id LIKE 'wf:%'"),
                   3);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workflow_history b JOIN workflow_history m "
                            "ON m.msg_id = b.msg_id AND m.name = 'more' WHERE b.name = 'batch'"),
                   3);
  assert_int_equal(p.steps, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_enrichment_same_history_either_way, world_setup,
                                      world_teardown),
      cmocka_unit_test_setup_teardown(test_full_batch_runs_on, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_journey_same_history_either_way, world_setup,
                                      world_teardown),
      cmocka_unit_test_setup_teardown(test_bound, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_chained_steps_commit_together, world_setup,
                                      world_teardown),
      cmocka_unit_test_setup_teardown(test_error_mid_chain_as_before, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_error_in_first_step_run_on, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_error_mid_chain_rolls_back_its_writes, world_setup,
                                      world_teardown),
      cmocka_unit_test_setup_teardown(test_sync_batch_per_message, world_setup, world_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
