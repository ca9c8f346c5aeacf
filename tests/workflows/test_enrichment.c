/* Unit tests for seed 003's enrichment: the store layer (store/enrichment.c) and the
 * subscriber-enrichment workflow's steps (workflows/enrichment.c) driven by hand against a real
 * in-memory SQLite store: the corporate filter, batches of at most 100 that never share a job,
 * the results applied to the subscribers, and onError failing the jobs. */
#include "store/enrichment.h"

#include <sqlite3.h>

#include "tierbus/v1/events.pb-c.h"
#include "workflows/retry.h"
#include "wf_harness.h"

#define WF "subscriber-enrichment"

/* Runs record-subscriber for one subscriber-created input. */
static tb_status record(world_t *w, const char *sid, const char *email, const char *type) {
  char input[512], id[128];
  snprintf(input, sizeof(input),
           "{\"subscriber_id\": \"%s\", \"email\": \"%s\", \"email_type\": \"%s\", "
           "\"source\": \"webhook\"}",
           sid, email, type);
  snprintf(id, sizeof(id), "rec-%s", sid);
  run_t r = run_new(w, WF, id, input);
  tb_status s = step_run(&r, "record-subscriber");
  run_free(&r);
  return s;
}

static int64_t count_jobs(world_t *w, const char *status) {
  int64_t n = -1;
  assert_int_equal(tb_store_enrich_job_count(w->st, status, &n), TB_OK);
  return n;
}

/* Queues |n| personal subscribers "<prefix>NNN", in order. */
static void queue_many(world_t *w, const char *prefix, int n) {
  for (int i = 0; i < n; i++) {
    char sid[32], email[64];
    snprintf(sid, sizeof(sid), "%s%03d", prefix, i);
    snprintf(email, sizeof(email), "%s%03d@gmail.com", prefix, i);
    assert_int_equal(record(w, sid, email, "EMAIL_TYPE_PERSONAL"), TB_OK);
  }
}

static tb_enrich_job_t job_of(world_t *w, int64_t id) {
  tb_enrich_job_t j;
  int found = 0;
  assert_int_equal(tb_store_enrich_job_get(w->st, id, &j, &found), TB_OK);
  if (!found) fail_msg("no job %lld", (long long)id);
  return j;
}

/* The job of a subscriber recorded by record(): its live one, or the last one. */
static int64_t job_id_of(world_t *w, const char *sid) {
  sqlite3_stmt *stmt = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(tb__store_db(w->st),
                         "SELECT max(id) FROM enrichment_jobs WHERE subscriber_id = ?1", -1, &stmt,
                         NULL),
      SQLITE_OK);
  sqlite3_bind_text(stmt, 1, sid, -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
  int64_t id = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return id;
}

/* ---------------------------------------------------------------- definition and trigger */

static void test_definition(void **state) {
  (void)state;
  const tb_workflow_def_t *def = tb_wf_find(WF);
  assert_non_null(def);
  assert_string_equal(def->domain, "enrichment");
  assert_string_equal(def->tier, "normal");
  assert_string_equal(def->trigger_event, "subscriber-created");
  assert_non_null(def->should_start);
  assert_non_null(def->on_error);
  static const char *const names[] = {
      "record-subscriber", "batch-pending-jobs", "submit-to-fullenrich", "register-workflow",
      "wait-for-webhook",  "process-results",    "unregister-workflow"};
  static const tb_step_kind kinds[] = {TB_STEP_RUN,  TB_STEP_RUN, TB_STEP_COMMAND, TB_STEP_RUN,
                                       TB_STEP_WAIT, TB_STEP_RUN, TB_STEP_RUN};
  assert_int_equal(def->n_steps, 7);
  for (int i = 0; i < 7; i++) {
    assert_string_equal(def->steps[i].name, names[i]);
    assert_int_equal(def->steps[i].kind, kinds[i]);
    assert_int_equal(def->steps[i].optional, 0);
  }
  /* The submit step carries exactly the seed's policy and timeout. */
  const tb_step_def_t *submit = &def->steps[2];
  tb_retry_policy_t seed;
  tb_retry_policy_seed_default(&seed);
  assert_int_equal(submit->retry.max_attempts, seed.max_attempts);
  assert_int_equal(submit->retry.backoff, seed.backoff);
  assert_int_equal(submit->retry.initial_delay_ms, seed.initial_delay_ms);
  assert_int_equal(submit->retry.max_delay_ms, seed.max_delay_ms);
  assert_int_equal(submit->retry.n_retry_on, seed.n_retry_on);
  assert_memory_equal(submit->retry.retry_on, seed.retry_on, sizeof(seed.retry_on));
  assert_int_equal(tb_retry_policy_validate(&submit->retry), TB_OK);
  assert_string_equal(submit->timeout, "60s");
  assert_string_equal(submit->service, "enrichment");
  assert_string_equal(submit->action, "submit");
  const tb_step_def_t *wait = &def->steps[4];
  assert_string_equal(wait->event, "enrichment-complete");
  assert_string_equal(wait->timeout, "24h");
  assert_string_equal(wait->timeout_field, "webhook_timeout");
  assert_string_equal(tb_wf_resume_key_field("enrichment-complete"), "enrichment_id");
}

/* should_start sees the payload the way the trigger handler renders it: through the codec. */
static int starts_for(world_t *w, Tierbus__V1__EmailType type) {
  Tierbus__V1__SubscriberCreated sc = TIERBUS__V1__SUBSCRIBER_CREATED__INIT;
  sc.subscriber_id = "s1";
  sc.email = "a@b.c";
  sc.email_type = type;
  json_t *payload = NULL;
  assert_int_equal(tb_codec_payload_to_json(&sc.base, &payload), TB_OK);
  (void)w;
  int yes = tb_wf_find(WF)->should_start(payload);
  json_decref(payload);
  return yes;
}

static void test_corporate_filter(void **state) {
  world_t *w = *state;
  assert_int_equal(starts_for(w, TIERBUS__V1__EMAIL_TYPE__EMAIL_TYPE_PERSONAL), 1);
  assert_int_equal(starts_for(w, TIERBUS__V1__EMAIL_TYPE__EMAIL_TYPE_CORPORATE), 0);
  assert_int_equal(starts_for(w, TIERBUS__V1__EMAIL_TYPE__EMAIL_TYPE_UNSPECIFIED), 0);
  int (*start)(const json_t *) = tb_wf_find(WF)->should_start;
  json_t *p = json_pack("{s:i}", "email_type", 1);
  assert_int_equal(start(p), 1); /* by number */
  json_decref(p);
  p = json_pack("{s:s}", "email_type", "corporate");
  assert_int_equal(start(p), 0);
  json_decref(p);
  p = json_object();
  assert_int_equal(start(p), 0); /* no type at all */
  json_decref(p);

  /* A corporate subscriber run by hand is recorded but not queued for enrichment. */
  assert_int_equal(record(w, "corp1", "ceo@acme.com", "EMAIL_TYPE_CORPORATE"), TB_OK);
  tb_subscriber_t sub;
  int found = 0;
  assert_int_equal(tb_store_subscriber_get(w->st, "corp1", &sub, &found), TB_OK);
  assert_int_equal(found, 1);
  assert_string_equal(sub.email_type, "corporate");
  tb_store_subscriber_clear(&sub);
  assert_int_equal(count_jobs(w, NULL), 0);
}

/* ---------------------------------------------------------------- record-subscriber */

static void test_record_subscriber(void **state) {
  world_t *w = *state;
  run_t r = run_new(w, WF, "wf-1",
                    "{\"subscriber_id\": \"s1\", \"email\": \"ann@gmail.com\", \"email_type\": "
                    "\"EMAIL_TYPE_PERSONAL\", \"source\": \"bulk-upload\"}");
  assert_int_equal(step_when(&r, "record-subscriber"), 1);
  json_t *res = step_ok(&r, "record-subscriber");
  int64_t job = json_integer_value(json_object_get(res, "job_id"));
  assert_true(job > 0);
  char want[256];
  snprintf(want, sizeof(want),
           "{\"email_type\":\"personal\",\"job_id\":%lld,\"queued\":true,"
           "\"subscriber_id\":\"s1\"}",
           (long long)job);
  assert_string_equal(jtext(res), want);

  tb_subscriber_t sub;
  int found = 0;
  assert_int_equal(tb_store_subscriber_get(w->st, "s1", &sub, &found), TB_OK);
  assert_int_equal(found, 1);
  assert_string_equal(sub.email, "ann@gmail.com");
  assert_string_equal(sub.email_type, "personal");
  assert_string_equal(sub.source, "bulk-upload");
  assert_null(sub.first_name);
  assert_null(sub.fields_json);
  tb_store_subscriber_clear(&sub);
  tb_enrich_job_t j = job_of(w, job);
  assert_string_equal(j.status, "pending");
  assert_string_equal(j.batch_id, "");
  assert_string_equal(j.email, "ann@gmail.com");
  tb_store_enrich_job_clear(&j);

  /* The same subscriber again (a redelivered business event): no second job. */
  run_free(&r);
  r = run_new(w, WF, "wf-2",
              "{\"subscriber_id\": \"s1\", \"email\": \"ann@gmail.com\", \"email_type\": "
              "\"EMAIL_TYPE_PERSONAL\"}");
  res = step_ok(&r, "record-subscriber");
  assert_int_equal(json_integer_value(json_object_get(res, "job_id")), job);
  assert_true(json_is_false(json_object_get(res, "queued")));
  assert_int_equal(count_jobs(w, NULL), 1);
  /* The source is kept when the new event has none. */
  assert_int_equal(tb_store_subscriber_get(w->st, "s1", &sub, &found), TB_OK);
  assert_string_equal(sub.source, "bulk-upload");
  tb_store_subscriber_clear(&sub);
  run_free(&r);

  /* No email: permanent, and nothing written. */
  r = run_new(w, WF, "wf-3",
              "{\"subscriber_id\": \"s2\", \"email_type\": \"EMAIL_TYPE_PERSONAL\"}");
  assert_int_equal(step_run(&r, "record-subscriber"), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "record-subscriber: input has no email");
  assert_int_equal(tb_store_subscriber_get(w->st, "s2", &sub, &found), TB_OK);
  assert_int_equal(found, 0);
  run_free(&r);

  /* A run without a subscriber (a scheduled batch) skips the step. */
  r = run_new(w, WF, "wf-4", "{}");
  assert_int_equal(step_when(&r, "record-subscriber"), 0);
  run_free(&r);
}

/* ---------------------------------------------------------------- batching */

typedef struct seen {
  int64_t ids[512];
  int n;
} seen_t;

/* Checks a batch result: |want| jobs, ids strictly ascending (oldest first), none in |seen|;
 * adds them to |seen|. */
static void check_batch(json_t *res, int want, seen_t *seen) {
  json_t *jobs = json_object_get(res, "jobs");
  assert_int_equal(json_array_size(jobs), want);
  assert_int_equal(json_integer_value(json_object_get(res, "count")), want);
  int64_t prev = 0;
  size_t i;
  json_t *j;
  json_array_foreach(jobs, i, j) {
    int64_t id = json_integer_value(json_object_get(j, "job_id"));
    assert_true(id > prev);
    prev = id;
    for (int k = 0; k < seen->n; k++)
      if (seen->ids[k] == id) fail_msg("job %lld is in two batches", (long long)id);
    seen->ids[seen->n++] = id;
  }
}

static void test_batch_at_most_100(void **state) {
  world_t *w = *state;
  queue_many(w, "s", 250);
  assert_int_equal(count_jobs(w, "pending"), 250);
  seen_t *seen = calloc(1, sizeof(*seen));

  run_t a = run_new(w, WF, "wf-a", "{}");
  json_t *res = step_ok(&a, "batch-pending-jobs");
  assert_string_equal(json_string_value(json_object_get(res, "batch_id")), "batch:wf-a");
  check_batch(res, 100, seen);
  /* Oldest first: the first 100 queued. */
  json_t *first = json_array_get(json_object_get(res, "jobs"), 0);
  json_t *last = json_array_get(json_object_get(res, "jobs"), 99);
  assert_string_equal(json_string_value(json_object_get(first, "subscriber_id")), "s000");
  assert_string_equal(json_string_value(json_object_get(first, "email")), "s000@gmail.com");
  assert_string_equal(json_string_value(json_object_get(last, "subscriber_id")), "s099");
  assert_int_equal(count_jobs(w, "pending"), 150);
  assert_int_equal(count_jobs(w, "batched"), 100);
  assert_int_equal(step_when(&a, "submit-to-fullenrich"), 1);

  tb_enrich_batch_t b;
  int found = 0;
  assert_int_equal(tb_store_enrich_batch_get(w->st, "batch:wf-a", &b, &found), TB_OK);
  assert_int_equal(found, 1);
  assert_string_equal(b.workflow_id, "wf-a");
  assert_string_equal(b.status, "open");
  assert_int_equal(b.n_jobs, 100);

  run_t b2 = run_new(w, WF, "wf-b", "{}");
  res = step_ok(&b2, "batch-pending-jobs");
  check_batch(res, 100, seen);
  assert_string_equal(json_string_value(json_object_get(
                          json_array_get(json_object_get(res, "jobs"), 0), "subscriber_id")),
                      "s100");

  run_t c = run_new(w, WF, "wf-c", "{}");
  check_batch(step_ok(&c, "batch-pending-jobs"), 50, seen);
  assert_int_equal(count_jobs(w, "pending"), 0);
  assert_int_equal(count_jobs(w, "batched"), 250);
  assert_int_equal(seen->n, 250);

  /* Nothing left: no batch, and every later step is skipped so the run just completes. */
  run_t d = run_new(w, WF, "wf-d", "{}");
  res = step_ok(&d, "batch-pending-jobs");
  assert_string_equal(jtext(res), "{\"batch_id\":null,\"count\":0,\"jobs\":[]}");
  assert_int_equal(tb_store_enrich_batch_get(w->st, "batch:wf-d", &b, &found), TB_OK);
  assert_int_equal(found, 0);
  static const char *const later[] = {"submit-to-fullenrich", "register-workflow",
                                      "wait-for-webhook", "process-results", "unregister-workflow"};
  for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
    assert_int_equal(step_when(&d, later[i]), 0);
    assert_int_equal(step_when(&c, later[i]), 1);
  }
  run_free(&a);
  run_free(&b2);
  run_free(&c);
  run_free(&d);
  free(seen);
}

/* 101 pending: the boundary one past the limit leaves exactly one for the next batch. */
static void test_batch_boundary_101(void **state) {
  world_t *w = *state;
  queue_many(w, "b", 101);
  run_t a = run_new(w, WF, "wf-a", "{}"), b = run_new(w, WF, "wf-b", "{}");
  assert_int_equal(json_array_size(json_object_get(step_ok(&a, "batch-pending-jobs"), "jobs")),
                   100);
  assert_int_equal(count_jobs(w, "pending"), 1);
  json_t *res = step_ok(&b, "batch-pending-jobs");
  assert_int_equal(json_array_size(json_object_get(res, "jobs")), 1);
  assert_string_equal(json_string_value(json_object_get(
                          json_array_get(json_object_get(res, "jobs"), 0), "subscriber_id")),
                      "b100");
  run_free(&a);
  run_free(&b);
}

static void test_store_claim_checks(void **state) {
  world_t *w = *state;
  queue_many(w, "c", 3);
  int n = -1;
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_enrich_batch_claim(w->st, "b1", "wf", 0, NULL, NULL, &n),
                   TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "enrichment batch claim b1: limit 0 is not 1..100");
  assert_int_equal(tb_store_enrich_batch_claim(w->st, "b1", "wf", 101, NULL, NULL, &n),
                   TB_ERR_INVALID);
  assert_int_equal(tb_store_enrich_batch_claim(w->st, "", "wf", 10, NULL, NULL, &n),
                   TB_ERR_INVALID);
  assert_int_equal(tb_store_enrich_batch_claim(w->st, "b1", "wf", 2, NULL, NULL, &n), TB_OK);
  assert_int_equal(n, 2);
  assert_int_equal(tb_store_enrich_batch_claim(w->st, "b1", "wf2", 2, NULL, NULL, &n),
                   TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "enrichment batch claim b1: the batch exists already "
                                      "(open, 2 jobs, workflow wf)");
  assert_int_equal(n, 0);
  assert_int_equal(count_jobs(w, "pending"), 1);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
}

/* ---------------------------------------------------------------- the whole run */

/* The enrichment-complete payload exactly as the runtime stores it: built by the codec from
 * |json| and rendered back, as tb__handle_wf_resume does. */
static void set_event(run_t *r, const char *json) {
  const tb_event_def_t *ev = tb_catalogue_find(r->w->cat, "enrichment-complete");
  assert_non_null(ev);
  json_error_t err;
  json_t *obj = json_loads(json, 0, &err);
  if (obj == NULL) fail_msg("bad event %s: %s", json, err.text);
  ProtobufCMessage *msg = NULL;
  if (tb_codec_payload_from_json(ev, obj, &msg) != TB_OK) fail_msg("event: %s", tb_errdetail());
  json_decref(obj);
  json_t *rendered = NULL;
  assert_int_equal(tb_codec_payload_to_json(msg, &rendered), TB_OK);
  protobuf_c_message_free_unpacked(msg, NULL);
  json_object_set_new(json_object_get(r->data, "steps"), "wait-for-webhook", rendered);
}

/* Records s1..s3 and runs a workflow up to (and including) the wait's key: batch, submit input,
 * reply "enr-1", register. */
static run_t run_to_wait(world_t *w) {
  queue_many(w, "s", 3);
  run_t r = run_new(w, WF, "wf-1", "{\"subscriber_id\": \"s000\"}");
  step_ok(&r, "batch-pending-jobs");
  char *in = step_input(&r, "submit-to-fullenrich", "enrichment", "submit");
  assert_string_equal(in, "{\"batch_id\":\"batch:wf-1\",\"subscribers\":["
                          "{\"email\":\"s000@gmail.com\",\"subscriber_id\":\"s000\"},"
                          "{\"email\":\"s001@gmail.com\",\"subscriber_id\":\"s001\"},"
                          "{\"email\":\"s002@gmail.com\",\"subscriber_id\":\"s002\"}]}");
  free(in);
  step_set(&r, "submit-to-fullenrich", "{\"enrichment_id\": \"enr-1\"}");
  json_t *res = step_ok(&r, "register-workflow");
  assert_string_equal(jtext(res), "{\"enrichment_id\":\"enr-1\",\"workflow_id\":\"wf-1\"}");

  char wf[TB_ID_MAX];
  int found = 0;
  assert_int_equal(tb_store_enrich_lookup(w->st, "enr-1", wf, sizeof(wf), &found), TB_OK);
  assert_int_equal(found, 1);
  assert_string_equal(wf, "wf-1");
  tb_enrich_batch_t b;
  assert_int_equal(tb_store_enrich_batch_get(w->st, "batch:wf-1", &b, &found), TB_OK);
  assert_string_equal(b.status, "submitted");
  assert_string_equal(b.enrichment_id, "enr-1");

  const tb_step_def_t *wait = step_of(&r, "wait-for-webhook");
  tb_wf_run_t v = view(&r, "wait-for-webhook");
  char key[64] = "";
  assert_int_equal(wait->key(&v, key, sizeof(key)), TB_OK);
  assert_string_equal(key, "enr-1");
  return r;
}

static const char *job_status(world_t *w, const char *sid, char *err_out, size_t cap) {
  static char status[16];
  tb_enrich_job_t j = job_of(w, job_id_of(w, sid));
  snprintf(status, sizeof(status), "%s", j.status);
  if (err_out) snprintf(err_out, cap, "%s", j.error ? j.error : "");
  tb_store_enrich_job_clear(&j);
  return status;
}

static void test_process_results(void **state) {
  world_t *w = *state;
  run_t r = run_to_wait(w);
  set_event(&r, "{\"enrichment_id\": \"enr-1\", \"workflow_id\": \"wf-1\", \"status_code\": 200,"
                " \"results\": ["
                "{\"subscriber_id\": \"s000\", \"email\": \"s000@gmail.com\", \"fields\": "
                "{\"first_name\": \"Ann\", \"last_name\": \"Lee\", \"company\": \"Acme\", "
                "\"linkedin_url\": \"https://linkedin.com/in/ann\", \"title\": \"CTO\"}},"
                "{\"subscriber_id\": \"s001\", \"email\": \"s001@gmail.com\", "
                "\"error\": \"not found\"},"
                "{\"subscriber_id\": \"zz9\", \"email\": \"zz9@gmail.com\", \"fields\": "
                "{\"first_name\": \"Eve\"}}]}");
  json_t *res = step_ok(&r, "process-results");
  assert_string_equal(jtext(res), "{\"enriched\":1,\"enrichment_id\":\"enr-1\",\"failed\":1,"
                                  "\"missing\":1,\"unmatched\":1}");

  tb_subscriber_t sub;
  int found = 0;
  assert_int_equal(tb_store_subscriber_get(w->st, "s000", &sub, &found), TB_OK);
  assert_string_equal(sub.first_name, "Ann");
  assert_string_equal(sub.last_name, "Lee");
  assert_string_equal(sub.company, "Acme");
  assert_string_equal(sub.linkedin_url, "https://linkedin.com/in/ann");
  assert_string_equal(sub.fields_json, "{\"company\":\"Acme\",\"first_name\":\"Ann\","
                                       "\"last_name\":\"Lee\",\"linkedin_url\":"
                                       "\"https://linkedin.com/in/ann\",\"title\":\"CTO\"}");
  assert_true(sub.enriched_us > 0);
  tb_store_subscriber_clear(&sub);
  assert_int_equal(tb_store_subscriber_get(w->st, "s001", &sub, &found), TB_OK);
  assert_null(sub.first_name);
  tb_store_subscriber_clear(&sub);

  char err[256];
  assert_string_equal(job_status(w, "s000", err, sizeof(err)), "done");
  assert_string_equal(err, "");
  assert_string_equal(job_status(w, "s001", err, sizeof(err)), "failed");
  assert_string_equal(err, "not found");
  assert_string_equal(job_status(w, "s002", err, sizeof(err)), "failed");
  assert_string_equal(err, "no result in enrichment enr-1");
  tb_enrich_batch_t b;
  assert_int_equal(tb_store_enrich_batch_get(w->st, "batch:wf-1", &b, &found), TB_OK);
  assert_string_equal(b.status, "done");
  assert_string_equal(b.error, "");

  res = step_ok(&r, "unregister-workflow");
  assert_string_equal(jtext(res), "{\"enrichment_id\":\"enr-1\",\"removed\":true}");
  char wf[TB_ID_MAX];
  assert_int_equal(tb_store_enrich_lookup(w->st, "enr-1", wf, sizeof(wf), &found), TB_OK);
  assert_int_equal(found, 0);

  /* A failed subscriber may be queued again; a done one may not. */
  int64_t id = 0;
  int queued = 0;
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_enrich_job_queue(w->st, "s001", "s001@gmail.com", &id, &queued), TB_OK);
  assert_int_equal(queued, 1);
  assert_int_equal(tb_store_enrich_job_queue(w->st, "s000", "s000@gmail.com", &id, &queued), TB_OK);
  assert_int_equal(queued, 0);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  assert_int_equal(count_jobs(w, "pending"), 1);
  run_free(&r);
}

/* A batch-level failure fails the step with the provider's code; onError then fails every job. */
static void test_batch_failure_and_on_error(void **state) {
  world_t *w = *state;
  run_t r = run_to_wait(w);
  set_event(&r, "{\"enrichment_id\": \"enr-1\", \"workflow_id\": \"wf-1\", \"status_code\": 503,"
                " \"error\": \"provider down\"}");
  assert_int_equal(step_run(&r, "process-results"), TB_ERR_INVALID);
  assert_int_equal(r.fail_code, 503);
  assert_string_equal(tb_errdetail(),
                      "process-results: enrichment enr-1 failed with status 503: provider down");
  for (int i = 0; i < 3; i++) {
    char sid[8];
    snprintf(sid, sizeof(sid), "s%03d", i);
    assert_string_equal(job_status(w, sid, NULL, 0), "batched");
  }

  const char *error = "step process-results: enrichment enr-1 failed with status 503";
  tb_wf_run_t v = view(&r, "process-results");
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(r.def->on_error(&v, error), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  for (int i = 0; i < 3; i++) {
    char sid[8], err[256];
    snprintf(sid, sizeof(sid), "s%03d", i);
    assert_string_equal(job_status(w, sid, err, sizeof(err)), "failed");
    assert_string_equal(err, error);
  }
  assert_int_equal(count_jobs(w, "failed"), 3);
  tb_enrich_batch_t b;
  int found = 0;
  assert_int_equal(tb_store_enrich_batch_get(w->st, "batch:wf-1", &b, &found), TB_OK);
  assert_string_equal(b.status, "failed");
  assert_string_equal(b.error, error);
  char wf[TB_ID_MAX];
  assert_int_equal(tb_store_enrich_lookup(w->st, "enr-1", wf, sizeof(wf), &found), TB_OK);
  assert_int_equal(found, 0); /* a late webhook maps to nothing */
  run_free(&r);
}

/* onError after a wait timeout marks only the jobs still open; with no batch it does nothing. */
static void test_on_error_edges(void **state) {
  world_t *w = *state;
  queue_many(w, "t", 2);
  run_t none = run_new(w, WF, "wf-0", "{}");
  tb_wf_run_t v = view(&none, "record-subscriber");
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(none.def->on_error(&v, "step record-subscriber: bad input"), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  assert_int_equal(count_jobs(w, "pending"), 2);
  run_free(&none);

  run_t r = run_new(w, WF, "wf-1", "{}");
  step_ok(&r, "batch-pending-jobs");
  /* One job settled already (as if process-results had seen it) before the failure. */
  int applied = 0;
  tb_enrichment_t e = {.first_name = "Tom", .fields_json = "{\"first_name\":\"Tom\"}"};
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_enrich_result_ok(w->st, "batch:wf-1", "t000", &e, &applied), TB_OK);
  assert_int_equal(applied, 1);
  assert_int_equal(tb_store_enrich_result_ok(w->st, "batch:wf-1", "t000", &e, &applied), TB_OK);
  assert_int_equal(applied, 0); /* settled once */
  assert_int_equal(tb_store_enrich_result_ok(w->st, "other", "t001", &e, &applied), TB_OK);
  assert_int_equal(applied, 0); /* not in that batch */
  v = view(&r, "wait-for-webhook");
  assert_int_equal(r.def->on_error(&v, "step wait-for-webhook: timed out waiting for "
                                       "enrichment-complete"),
                   TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  char err[256];
  assert_string_equal(job_status(w, "t000", err, sizeof(err)), "done");
  assert_string_equal(job_status(w, "t001", err, sizeof(err)), "failed");
  assert_string_equal(err, "step wait-for-webhook: timed out waiting for enrichment-complete");
  run_free(&r);
}

static void test_register_needs_enrichment_id(void **state) {
  world_t *w = *state;
  queue_many(w, "r", 1);
  run_t r = run_new(w, WF, "wf-1", "{}");
  step_ok(&r, "batch-pending-jobs");
  step_set(&r, "submit-to-fullenrich", "{\"accepted\": true}");
  assert_int_equal(step_run(&r, "register-workflow"), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(),
                      "register-workflow: the submit-to-fullenrich reply has no enrichment_id");
  run_free(&r);

  /* The tracker refuses an id already held by another workflow; the holder may register again. */
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_enrich_track(w->st, "enr-9", "wf-a", NULL), TB_OK);
  assert_int_equal(tb_store_enrich_track(w->st, "enr-9", "wf-a", "b"), TB_OK);
  assert_int_equal(tb_store_enrich_track(w->st, "enr-9", "wf-b", NULL), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(),
                      "enrichment track enr-9: already registered to workflow wf-a, not wf-b");
  int removed = 0;
  assert_int_equal(tb_store_enrich_untrack(w->st, "enr-9", &removed), TB_OK);
  assert_int_equal(removed, 1);
  assert_int_equal(tb_store_enrich_untrack(w->st, "enr-9", &removed), TB_OK);
  assert_int_equal(removed, 0);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_definition),
      cmocka_unit_test_setup_teardown(test_corporate_filter, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_record_subscriber, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_batch_at_most_100, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_batch_boundary_101, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_store_claim_checks, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_process_results, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_batch_failure_and_on_error, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_on_error_edges, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_register_needs_enrichment_id, world_setup,
                                      world_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
