/* Seed 003's subscriber enrichment workflow: a personal-email subscriber is recorded and queued,
 * pending jobs are claimed into a batch of at most 100, the batch is submitted to the enrichment
 * service as a command, the provider's enrichment id is mapped to the workflow, the workflow waits
 * up to 24 h for enrichment-complete, and the results update the subscriber rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "store/enrichment.h"
#include "tierbus/v1/events.pb-c.h"
#include "workflows/wf.h"

#define STEP_RECORD "record-subscriber"
#define STEP_BATCH "batch-pending-jobs"
#define STEP_SUBMIT "submit-to-fullenrich"
#define STEP_REGISTER "register-workflow"
#define STEP_WAIT "wait-for-webhook"
#define STEP_PROCESS "process-results"
#define STEP_UNREGISTER "unregister-workflow"

/* ---------------------------------------------------------------- trigger */

/* The store's name for an email type given as the codec renders it ("EMAIL_TYPE_PERSONAL"), as a
 * number, or as a hand-written input ("personal"). */
static const char *email_type_of(const json_t *v) {
  if (json_is_integer(v)) {
    json_int_t n = json_integer_value(v);
    if (n == TIERBUS__V1__EMAIL_TYPE__EMAIL_TYPE_PERSONAL) return "personal";
    if (n == TIERBUS__V1__EMAIL_TYPE__EMAIL_TYPE_CORPORATE) return "corporate";
    return "unspecified";
  }
  const char *t = json_string_value(v);
  if (t == NULL) return "unspecified";
  if (strcmp(t, "EMAIL_TYPE_PERSONAL") == 0 || strcmp(t, "personal") == 0) return "personal";
  if (strcmp(t, "EMAIL_TYPE_CORPORATE") == 0 || strcmp(t, "corporate") == 0) return "corporate";
  return "unspecified";
}

/* Seed 003: only a personal email starts enrichment; a corporate one starts nothing. */
static int should_start(const json_t *payload) {
  return strcmp(email_type_of(json_object_get(payload, "email_type")), "personal") == 0;
}

/* ---------------------------------------------------------------- helpers */

/* data.steps.<step>.<field> as a string, or NULL. */
static const char *result_str(tb_wf_run_t *run, const char *step, const char *field) {
  return json_string_value(json_object_get(tb_wf_step_result(run, step), field));
}

/* The batch this run claimed, or NULL when it claimed none (or has not got that far). */
static const char *batch_of(tb_wf_run_t *run) {
  return result_str(run, STEP_BATCH, "batch_id");
}

/* The provider's enrichment id from the submit command's reply, or NULL. */
static const char *enrichment_of(tb_wf_run_t *run) {
  return result_str(run, STEP_SUBMIT, "enrichment_id");
}

static tb_status nomem(const char *step) {
  return tb__fail(TB_ERR_NOMEM, "%s: building the result", step);
}

/* ---------------------------------------------------------------- steps */

/* Runs only when the input names a subscriber: a run started by hand or by a schedule with no
 * subscriber just batches whatever is pending (seed 003's triggerScheduledEnrichmentBatch). */
static int has_subscriber(tb_wf_run_t *run) {
  return tb_wf_input_str(run, "subscriber_id") != NULL;
}

/* record-subscriber: upserts the subscriber row and queues its enrichment job (personal emails
 * only; a subscriber with a live job is not queued twice). Result {subscriber_id, job_id,
 * queued}. A missing id or email is permanent (TB_ERR_INVALID). */
static tb_status record_subscriber(tb_wf_run_t *run, json_t **result) {
  const char *id = tb_wf_input_str(run, "subscriber_id");
  const char *email = tb_wf_input_str(run, "email");
  if (id == NULL || email == NULL)
    return tb__fail(TB_ERR_INVALID, "%s: input has no %s", STEP_RECORD,
                    id == NULL ? "subscriber_id" : "email");
  const char *type =
      email_type_of(json_object_get(json_object_get(run->data, "input"), "email_type"));
  tb_status s =
      tb_store_subscriber_put(run->ctx->store, id, email, type, tb_wf_input_str(run, "source"));
  int64_t job_id = 0;
  int queued = 0;
  if (s == TB_OK && strcmp(type, "personal") == 0)
    s = tb_store_enrich_job_queue(run->ctx->store, id, email, &job_id, &queued);
  if (s != TB_OK) return s;
  *result = json_pack("{s:s, s:s, s:I, s:b}", "subscriber_id", id, "email_type", type, "job_id",
                      (json_int_t)job_id, "queued", queued);
  return *result ? TB_OK : nomem(STEP_RECORD);
}

typedef struct jobs_acc {
  json_t *jobs;
  int oom;
} jobs_acc_t;

static int add_job(void *arg, const tb_enrich_job_t *job) {
  jobs_acc_t *acc = arg;
  json_t *j = json_pack("{s:I, s:s, s:s}", "job_id", (json_int_t)job->id, "subscriber_id",
                        job->subscriber_id, "email", job->email ? job->email : "");
  if (j == NULL || json_array_append_new(acc->jobs, j) != 0) {
    acc->oom = 1;
    return 1;
  }
  return 0;
}

/* The most jobs one batch claims: config's enrichment_batch_max, within 1..TB_ENRICH_BATCH_MAX. */
static int batch_limit(const tb_wf_run_t *run) {
  int limit = run->ctx->cfg->enrichment_batch_max;
  return limit < 1 || limit > TB_ENRICH_BATCH_MAX ? TB_ENRICH_BATCH_MAX : limit;
}

/* batch-pending-jobs: claims up to enrichment_batch_max (config, at most TB_ENRICH_BATCH_MAX)
 * pending jobs, oldest first, into batch
 * "batch:<workflow id>". Result {batch_id (null when none was pending), count, jobs: [{job_id,
 * subscriber_id, email}]}. With nothing pending (another run batched them) the later steps are
 * skipped and the run completes. */
static tb_status batch_pending_jobs(tb_wf_run_t *run, json_t **result) {
  char batch_id[TB_ID_MAX];
  int n = snprintf(batch_id, sizeof(batch_id), "batch:%s", run->id);
  if (n < 0 || (size_t)n >= sizeof(batch_id))
    return tb__fail(TB_ERR_INVALID, "%s: workflow id '%.32s...' is too long for a batch id",
                    STEP_BATCH, run->id);
  jobs_acc_t acc = {.jobs = json_array()};
  if (acc.jobs == NULL) return nomem(STEP_BATCH);
  int claimed = 0;
  tb_status s = tb_store_enrich_batch_claim(run->ctx->store, batch_id, run->id, batch_limit(run),
                                            add_job, &acc, &claimed);
  if (s == TB_OK && acc.oom) s = nomem(STEP_BATCH);
  if (s != TB_OK) {
    json_decref(acc.jobs);
    return s;
  }
  *result = json_pack("{s:s?, s:i, s:o}", "batch_id", claimed > 0 ? batch_id : NULL, "count",
                      claimed, "jobs", acc.jobs);
  return *result ? TB_OK : nomem(STEP_BATCH);
}

/* The batch step takes a message of its own only when that can make its batch bigger: while
 * fewer than a full batch of jobs are pending, the continuation's trip across the bus lets other
 * subscribers' triggers queue theirs, and one batch takes them all (seed 003's batches). Run on
 * from the record step under light load, every run would batch only its own job. With a full
 * batch pending already, waiting adds nothing: it runs on. On a store error it takes the message
 * (the step itself then meets the error, as before). */
static int batch_can_grow(tb_wf_run_t *run) {
  int limit = batch_limit(run);
  int64_t pending = 0;
  if (tb_store_enrich_pending_upto(run->ctx->store, limit, &pending) != TB_OK) return 1;
  return pending < limit;
}

/* The steps after batching run only when this run claimed a batch. */
static int has_batch(tb_wf_run_t *run) {
  return batch_of(run) != NULL;
}

/* submit-to-fullenrich's command input: {batch_id, subscribers: [{subscriber_id, email}]}. */
static tb_status submit_input(tb_wf_run_t *run, json_t **input) {
  const char *batch_id = batch_of(run);
  json_t *jobs = json_object_get(tb_wf_step_result(run, STEP_BATCH), "jobs");
  if (batch_id == NULL || !json_is_array(jobs))
    return tb__fail(TB_ERR_INVALID, "%s: no batch in data.steps.%s", STEP_SUBMIT, STEP_BATCH);
  json_t *subs = json_array();
  if (subs == NULL) return tb__fail(TB_ERR_NOMEM, "%s: building the input", STEP_SUBMIT);
  size_t i;
  json_t *job;
  json_array_foreach(jobs, i, job) {
    json_t *one = json_pack("{s:O, s:O}", "subscriber_id", json_object_get(job, "subscriber_id"),
                            "email", json_object_get(job, "email"));
    if (one == NULL || json_array_append_new(subs, one) != 0) {
      json_decref(subs);
      return tb__fail(TB_ERR_NOMEM, "%s: building the input", STEP_SUBMIT);
    }
  }
  *input = json_pack("{s:s, s:o}", "batch_id", batch_id, "subscribers", subs);
  return *input ? TB_OK : tb__fail(TB_ERR_NOMEM, "%s: building the input", STEP_SUBMIT);
}

/* register-workflow: records the batch as submitted and maps the enrichment id to this run (seed
 * 003's workflow-tracker). A reply without an enrichment id is permanent. */
static tb_status register_workflow(tb_wf_run_t *run, json_t **result) {
  const char *eid = enrichment_of(run), *batch_id = batch_of(run);
  if (eid == NULL || eid[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "%s: the %s reply has no enrichment_id", STEP_REGISTER,
                    STEP_SUBMIT);
  tb_status s = tb_store_enrich_batch_submitted(run->ctx->store, batch_id, eid);
  if (s == TB_OK) s = tb_store_enrich_track(run->ctx->store, eid, run->id, batch_id);
  if (s != TB_OK) return s;
  *result = json_pack("{s:s, s:s}", "enrichment_id", eid, "workflow_id", run->id);
  return *result ? TB_OK : nomem(STEP_REGISTER);
}

/* wait-for-webhook's correlation key: the enrichment id. */
static tb_status webhook_key(tb_wf_run_t *run, char *key, size_t cap) {
  const char *eid = enrichment_of(run);
  if (eid == NULL || eid[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "%s: no enrichment_id to wait for", STEP_WAIT);
  snprintf(key, cap, "%s", eid);
  return TB_OK;
}

/* A string field of |fields|, or NULL when absent or not a string. */
static const char *field(const json_t *fields, const char *name) {
  return json_string_value(json_object_get(fields, name));
}

/* process-results: applies enrichment-complete. A batch-level failure (an error, or a status
 * code outside 2xx) fails the step with that code, so onError marks the jobs failed. Otherwise
 * each result updates its subscriber (job done) or fails its job with the result's error, and
 * jobs the provider returned nothing for are failed. Result {enrichment_id, enriched, failed,
 * missing, unmatched}. */
static tb_status process_results(tb_wf_run_t *run, json_t **result) {
  const char *batch_id = batch_of(run), *eid = enrichment_of(run);
  json_t *ev = tb_wf_step_result(run, STEP_WAIT);
  if (batch_id == NULL || eid == NULL || !json_is_object(ev))
    return tb__fail(TB_ERR_INVALID, "%s: no batch, enrichment id or event in the data",
                    STEP_PROCESS);
  int code = (int)json_integer_value(json_object_get(ev, "status_code"));
  const char *err = json_string_value(json_object_get(ev, "error"));
  if ((err != NULL && err[0] != '\0') || (code != 0 && (code < 200 || code > 299))) {
    run->fail_code = code;
    return tb__fail(TB_ERR_INVALID, "%s: enrichment %s failed with status %d: %s", STEP_PROCESS,
                    eid, code, err && err[0] ? err : "no detail");
  }
  int enriched = 0, failed = 0, unmatched = 0;
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(ev, "results"), i, r) {
    const char *sid = json_string_value(json_object_get(r, "subscriber_id"));
    const char *rerr = json_string_value(json_object_get(r, "error"));
    int applied = 0;
    tb_status s;
    if (sid == NULL || sid[0] == '\0') {
      unmatched++;
      continue;
    }
    if (rerr != NULL && rerr[0] != '\0') {
      s = tb_store_enrich_result_failed(run->ctx->store, batch_id, sid, rerr, &applied);
      failed += applied;
    } else {
      json_t *fields = json_object_get(r, "fields");
      char *text =
          json_is_object(fields) ? json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
      if (text == NULL)
        return tb__fail(TB_ERR_NOMEM, "%s: rendering fields of %s", STEP_PROCESS, sid);
      tb_enrichment_t e = {.first_name = field(fields, "first_name"),
                           .last_name = field(fields, "last_name"),
                           .company = field(fields, "company"),
                           .linkedin_url = field(fields, "linkedin_url"),
                           .fields_json = text};
      s = tb_store_enrich_result_ok(run->ctx->store, batch_id, sid, &e, &applied);
      free(text);
      enriched += applied;
    }
    if (s != TB_OK) return s;
    if (!applied) unmatched++;
  }
  char why[TB_ID_MAX + 64];
  snprintf(why, sizeof(why), "no result in enrichment %s", eid);
  int64_t missing = 0;
  tb_status s = tb_store_enrich_batch_close(run->ctx->store, batch_id, "done", why, &missing);
  if (s != TB_OK) return s;
  *result = json_pack("{s:s, s:i, s:i, s:I, s:i}", "enrichment_id", eid, "enriched", enriched,
                      "failed", failed, "missing", (json_int_t)missing, "unmatched", unmatched);
  return *result ? TB_OK : nomem(STEP_PROCESS);
}

/* unregister-workflow: drops the enrichment id mapping. Result {enrichment_id, removed}. */
static tb_status unregister_workflow(tb_wf_run_t *run, json_t **result) {
  const char *eid = enrichment_of(run);
  if (eid == NULL) return tb__fail(TB_ERR_INVALID, "%s: no enrichment_id", STEP_UNREGISTER);
  int removed = 0;
  tb_status s = tb_store_enrich_untrack(run->ctx->store, eid, &removed);
  if (s != TB_OK) return s;
  *result = json_pack("{s:s, s:b}", "enrichment_id", eid, "removed", removed);
  return *result ? TB_OK : nomem(STEP_UNREGISTER);
}

/* onError (seed 003): every job of the batch that has not settled is marked failed with the
 * error, and the enrichment id mapping is dropped so that a late webhook resumes nothing. A run
 * that failed before it claimed a batch has nothing to mark. */
static tb_status mark_jobs_failed(tb_wf_run_t *run, const char *error) {
  const char *batch_id = batch_of(run), *eid = enrichment_of(run);
  if (batch_id == NULL) return TB_OK;
  tb_status s = tb_store_enrich_batch_close(run->ctx->store, batch_id, "failed",
                                            error && error[0] ? error : "workflow failed", NULL);
  if (s == TB_OK && eid != NULL && eid[0] != '\0')
    s = tb_store_enrich_untrack(run->ctx->store, eid, NULL);
  return s;
}

/* ---------------------------------------------------------------- definition */

/* Seed 003's submit policy, as tb_retry_policy_seed_default() builds it (a function call cannot
 * initialise a static table; test_enrichment checks that the two agree). */
#define SEED_RETRY                                                                                 \
  {                                                                                                \
    .max_attempts = 5, .backoff = TB_BACKOFF_EXPONENTIAL, .initial_delay_ms = 1000,                \
    .max_delay_ms = 60000, .retry_on = {429, 500, 502, 503, 504}, .n_retry_on = 5                  \
  }

static const tb_step_def_t steps[] = {
    {.name = STEP_RECORD,
     .kind = TB_STEP_RUN,
     .description = "upsert the subscriber and queue its enrichment job (personal emails)",
     .when = has_subscriber,
     .run = record_subscriber},
    {.name = STEP_BATCH,
     .kind = TB_STEP_RUN,
     .description = "claim up to 100 pending jobs, oldest first, into this run's batch",
     .own_message = batch_can_grow,
     .run = batch_pending_jobs},
    {.name = STEP_SUBMIT,
     .kind = TB_STEP_COMMAND,
     .description = "enrichment.submit the batch (5 attempts, exponential 1s..60s, on 429/5xx)",
     .timeout = "60s",
     .retry = SEED_RETRY,
     .when = has_batch,
     .service = "enrichment",
     .action = "submit",
     .input = submit_input},
    {.name = STEP_REGISTER,
     .kind = TB_STEP_RUN,
     .description = "map the enrichment id to this workflow",
     .when = has_batch,
     .run = register_workflow},
    {.name = STEP_WAIT,
     .kind = TB_STEP_WAIT,
     .description = "wait for enrichment-complete of the enrichment id (input.webhook_timeout)",
     .timeout = "24h",
     .timeout_field = "webhook_timeout",
     .when = has_batch,
     .event = "enrichment-complete",
     .key = webhook_key},
    {.name = STEP_PROCESS,
     .kind = TB_STEP_RUN,
     .description = "update the subscribers with the enriched fields; settle every job",
     .when = has_batch,
     .run = process_results},
    {.name = STEP_UNREGISTER,
     .kind = TB_STEP_RUN,
     .description = "drop the enrichment id mapping",
     .when = has_batch,
     .run = unregister_workflow},
};

static const tb_workflow_def_t subscriber_enrichment = {
    .name = "subscriber-enrichment",
    .domain = "enrichment",
    .tier = "normal",
    .description = "Seed 003: enrich personal-email subscribers in batches of up to 100 through "
                   "the enrichment service, waiting up to 24 h for its webhook.",
    .trigger_event = "subscriber-created",
    .should_start = should_start,
    .steps = steps,
    .n_steps = TB_COUNTOF(steps),
    .on_error = mark_jobs_failed,
};

static const tb_workflow_def_t *const workflows[] = {&subscriber_enrichment};

static const tb_activity_def_t activities[] = {
    {"enrichment." STEP_RECORD, "enrichment", "run",
     "upsert a subscriber and queue its enrichment job"},
    {"enrichment." STEP_BATCH, "enrichment", "run", "claim up to 100 pending jobs into a batch"},
    {"enrichment.submit", "enrichment", "command",
     "submit a batch to the enrichment provider; replies {enrichment_id}"},
    {"enrichment." STEP_REGISTER, "enrichment", "run", "map an enrichment id to its workflow"},
    {"enrichment." STEP_PROCESS, "enrichment", "run",
     "apply enrichment results to the subscribers and settle the jobs"},
    {"enrichment." STEP_UNREGISTER, "enrichment", "run", "drop an enrichment id mapping"},
    {"enrichment.mark-jobs-failed", "enrichment", "run",
     "onError: fail every unsettled job of the batch"},
};

const tb_wf_domain_t tb__domain_enrichment = {
    .name = "enrichment",
    .workflows = workflows,
    .n_workflows = TB_COUNTOF(workflows),
    .activities = activities,
    .n_activities = TB_COUNTOF(activities),
};
