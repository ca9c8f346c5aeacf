/* Seed 002's full priority sync, in two forms over the same batch and lease: tb_prio_sync_run
 * (the CLI's `tierbus priority sync`, the bench and tests: one process drives the batches, each
 * its own transaction) and the workflow `workspace.priority-sync`, started by the
 * workspace/priorities.sync event (the 6-hourly schedule publishes it), where each batch is a
 * workflow step: a step is one message, so higher tiers are served between batches, a worker
 * crash resumes at the last committed batch, and the step's retry policy gives the 2 retries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/publish.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "core/util.h"
#include "workflows/priority.h"
#include "workflows/wf.h"

/* ---------------------------------------------------------------- the shared batch */

typedef struct batch_ctx {
  const tb_handler_ctx_t *ctx;
  const char *cause;
  int64_t jobs;
  json_t *errors; /* borrowed */
} batch_ctx_t;

/* A job that cannot be queued is listed, not raised: the priority change itself stands. */
static tb_status on_change(void *arg, const tb_repo_change_t *c) {
  batch_ctx_t *b = arg;
  if (tb_repo_sync_job_emit(b->ctx, c, b->cause) == TB_OK) {
    b->jobs++;
    return TB_OK;
  }
  char line[TB_ID_MAX + 512];
  snprintf(line, sizeof(line), "%s: now %s, sync job not queued: %s", c->repository_id,
           c->new_priority, tb_errdetail());
  json_array_append_new(b->errors, json_string(line));
  return TB_OK;
}

/* One batch after |cursor| inside the caller's transaction, then the lease renewal that proves
 * this owner still holds it: a sync whose lease was taken over must not write on. Adds the
 * batch's figures to |r|; *done = 1 when the batch was the last. */
static tb_status sync_batch(const tb_handler_ctx_t *ctx, const char *owner, const char *cursor,
                            int batch_size, int64_t lease_ms, tb_prio_sync_result_t *r,
                            char *next_cursor, size_t cap, int *done) {
  batch_ctx_t b = {.ctx = ctx, .cause = owner, .errors = r->errors};
  tb_repo_batch_t out;
  tb_status s =
      tb_store_repo_sync_batch(ctx->store, cursor, batch_size, owner, on_change, &b, &out);
  int held = 0;
  if (s == TB_OK) s = tb_store_lease_renew(ctx->store, TB_PRIO_SYNC_LEASE, owner, lease_ms, &held);
  if (s == TB_OK && !held)
    s = tb__fail(TB_ERR_INVALID, "priority sync %s: lost its lease (expired and taken over)",
                 owner);
  if (s != TB_OK) return s;
  r->workspace_repos += out.workspace_repos;
  r->tracked_only_repos += out.repos - out.workspace_repos;
  r->priority_changes += out.priority_changes;
  r->rows_updated += out.rows_updated;
  r->jobs_queued += b.jobs;
  r->batches++;
  snprintf(next_cursor, cap, "%s", out.last_id);
  *done = out.repos < batch_size;
  return TB_OK;
}

static tb_status record_run(tb_store_t *st, const char *owner, const char *trigger,
                            const char *status, int64_t started_us,
                            const tb_prio_sync_result_t *r) {
  char *errors = json_dumps(r->errors, JSON_COMPACT);
  tb_prio_sync_run_row_t row = {.owner = owner,
                                .trigger = trigger,
                                .status = status,
                                .started_us = started_us,
                                .finished_us = tb_wall_us(),
                                .workspace_repos = r->workspace_repos,
                                .tracked_only_repos = r->tracked_only_repos,
                                .priority_changes = r->priority_changes,
                                .rows_updated = r->rows_updated,
                                .attempts = r->attempts,
                                .errors_json = errors ? errors : "[]"};
  tb_status s = tb_store_prio_sync_record(st, &row);
  free(errors);
  return s;
}

/* Gives the lease back and records the run, in the caller's transaction: the run's row is
 * there when the next sync can start, and its finished_us comes before that start. */
static tb_status release_and_record(tb_store_t *st, const char *owner, const char *trigger,
                                    const char *status, int64_t started_us,
                                    const tb_prio_sync_result_t *r) {
  tb_status s = tb_store_lease_release(st, TB_PRIO_SYNC_LEASE, owner);
  return s == TB_OK ? record_run(st, owner, trigger, status, started_us, r) : s;
}

json_t *tb_prio_sync_result_json(const tb_prio_sync_result_t *r) {
  json_t *o = json_pack(
      "{s:I, s:I, s:I, s:O, s:I, s:I, s:i, s:i, s:f}", "workspaceRepos",
      (json_int_t)r->workspace_repos, "trackedOnlyRepos", (json_int_t)r->tracked_only_repos,
      "priorityChanges", (json_int_t)r->priority_changes, "errors",
      r->errors ? r->errors : json_array(), "rowsUpdated", (json_int_t)r->rows_updated,
      "jobsQueued", (json_int_t)r->jobs_queued, "batches", r->batches, "attempts", r->attempts,
      "seconds", r->elapsed_us / 1e6);
  if (o != NULL && r->errors == NULL) json_decref(json_object_get(o, "errors"));
  return o;
}

void tb_prio_sync_result_clear(tb_prio_sync_result_t *r) {
  json_decref(r->errors);
  memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------- one process drives it */

static tb_status take_lease(tb_store_t *st, const char *owner, int64_t lease_ms,
                            tb_prio_sync_result_t *out) {
  int taken = 0;
  tb_status s = tb_store_lease_take(st, TB_PRIO_SYNC_LEASE, owner, lease_ms, &taken, out->holder,
                                    sizeof(out->holder), &out->holder_expires_us);
  if (s != TB_OK || taken) return s;
  out->skipped = 1;
  int64_t left_ms = (out->holder_expires_us - tb_wall_us()) / 1000;
  return tb__fail(TB_ERR_BUSY,
                  "priority sync already running (held by %s, lease expires in %lld ms)",
                  out->holder[0] ? out->holder : "?", (long long)(left_ms > 0 ? left_ms : 0));
}

tb_status tb_prio_sync_run(tb_store_t *st, const tb_config_t *cfg, const tb_catalogue_t *cat,
                           const tb_prio_sync_opts_t *opts, tb_prio_sync_result_t *out) {
  memset(out, 0, sizeof(*out));
  out->errors = json_array();
  if (out->errors == NULL) return tb__fail(TB_ERR_NOMEM, "priority sync: errors list");
  tb_prio_sync_opts_t o = opts ? *opts : (tb_prio_sync_opts_t){.max_retries = -1};
  char owner[TB_ID_MAX];
  if (o.owner != NULL && o.owner[0] != '\0') {
    snprintf(owner, sizeof(owner), "%s", o.owner);
  } else {
    char rnd[64];
    tb_new_id(rnd, sizeof(rnd));
    snprintf(owner, sizeof(owner), "prio-sync-%s", rnd + 4); /* drop "evt-" */
  }
  const char *trigger = o.trigger ? o.trigger : "manual";
  int batch = o.batch_size > 0 ? o.batch_size : TB_PRIO_SYNC_BATCH;
  int retries = o.max_retries >= 0 ? o.max_retries : TB_PRIO_SYNC_RETRIES;
  int64_t lease_ms = o.lease_ms > 0 ? o.lease_ms : TB_PRIO_SYNC_LEASE_MS;
  tb_status s = take_lease(st, owner, lease_ms, out);
  if (s != TB_OK) return s;
  /* The run starts when it holds the lease, so that two runs' intervals never overlap. */
  int64_t t0 = tb_mono_us(), started = tb_wall_us();

  tb_handler_ctx_t ctx = {.store = st, .cfg = cfg, .cat = cat};
  char cursor[TB_ID_MAX] = "", next[TB_ID_MAX];
  int done = 0, failures = 0;
  while (!done) {
    tb_prio_sync_result_t before = *out; /* the figures to restore if the batch rolls back */
    size_t n_errors = json_array_size(out->errors);
    out->attempts++;
    s = tb_store_begin(st);
    if (s == TB_OK)
      s = sync_batch(&ctx, owner, cursor, batch, lease_ms, out, next, sizeof(next), &done);
    if (s == TB_OK) s = tb_store_commit(st);
    if (s == TB_OK) {
      snprintf(cursor, sizeof(cursor), "%s", next);
      failures = 0;
      if (o.progress != NULL && o.progress(o.arg, out) != 0) {
        s = tb__fail(TB_ERR_STOPPED, "priority sync %s: stopped after %d batches", owner,
                     out->batches);
        break;
      }
      continue;
    }
    char err[600];
    snprintf(err, sizeof(err), "batch after '%s', attempt %d: %s", cursor, failures + 1,
             tb_errdetail());
    tb_store_rollback(st);
    json_t *errors = out->errors;
    before.attempts = out->attempts;
    *out = before;
    out->errors = errors;
    while (json_array_size(errors) > n_errors) json_array_remove(errors, n_errors);
    json_array_append_new(errors, json_string(err));
    /* A lost lease is final: another sync owns the table now. */
    if (s == TB_ERR_INVALID || ++failures > retries) {
      tb__fail(s, "%s", err);
      break;
    }
    tb_sleep_us(100000 * (1 << (failures - 1))); /* 100 ms, then 200 ms */
  }
  out->elapsed_us = tb_mono_us() - t0;
  tb_status fin = s;
  char detail[700];
  snprintf(detail, sizeof(detail), "%s", tb_errdetail());
  /* Release and record even after a failure: the next sync must not wait out the lease. */
  tb_status r = tb_store_begin(st);
  if (r == TB_OK)
    r = release_and_record(st, owner, trigger, fin == TB_OK ? "completed" : "failed", started, out);
  if (r == TB_OK) r = tb_store_commit(st);
  if (r != TB_OK) tb_store_rollback(st);
  if (fin != TB_OK) return tb__fail(fin, "%s", detail);
  return r;
}

/* ---------------------------------------------------------------- the workflow */

/* The lease is owned by the run, not the process: a run resumed by another worker after a crash
 * still holds it. */
static tb_status wf_acquire(tb_wf_run_t *run, json_t **result) {
  int taken = 0;
  char holder[TB_ID_MAX] = "";
  int64_t expires = 0;
  tb_status s =
      tb_store_lease_take(run->ctx->store, TB_PRIO_SYNC_LEASE, run->id, TB_PRIO_SYNC_LEASE_MS,
                          &taken, holder, sizeof(holder), &expires);
  if (s != TB_OK) return s;
  if (taken)
    *result =
        json_pack("{s:b, s:I}", "acquired", 1, "started_us", (json_int_t)tb_wf_log_time_us(run));
  else
    *result =
        json_pack("{s:b, s:s, s:s}", "acquired", 0, "skipped", "already running", "holder", holder);
  if (*result == NULL) return tb__fail(TB_ERR_NOMEM, "priority sync %s: acquire result", run->id);
  if (!taken)
    TB_LOG(TB_LOG_INFO, "priority", "sync %s not run: already running (held by %s)", run->id,
           holder);
  return TB_OK;
}

static int wf_acquired(tb_wf_run_t *run) {
  return json_is_true(json_object_get(tb_wf_step_result(run, "acquire"), "acquired"));
}

static int64_t jint(const json_t *o, const char *k) {
  return (int64_t)json_integer_value(json_object_get(o, k));
}

/* One batch; its result carries the cursor and the totals so far, so the next batch (a new
 * message, possibly on another worker) starts where this one committed. */
static tb_status wf_batch(tb_wf_run_t *run, json_t **result) {
  const json_t *prev = tb_wf_step_result(run, "batch");
  tb_prio_sync_result_t r;
  memset(&r, 0, sizeof(r));
  r.errors = json_array();
  if (r.errors == NULL) return tb__fail(TB_ERR_NOMEM, "priority sync %s: batch", run->id);
  const char *cursor = "";
  if (prev != NULL) {
    cursor = json_string_value(json_object_get(prev, "cursor"));
    r.workspace_repos = jint(prev, "workspace_repos");
    r.tracked_only_repos = jint(prev, "tracked_only_repos");
    r.priority_changes = jint(prev, "priority_changes");
    r.rows_updated = jint(prev, "rows_updated");
    r.jobs_queued = jint(prev, "jobs_queued");
    r.batches = (int)jint(prev, "batches");
    json_array_extend(r.errors, json_object_get(prev, "errors"));
  }
  char next[TB_ID_MAX];
  int done = 0;
  tb_status s = sync_batch(run->ctx, run->id, cursor ? cursor : "", TB_PRIO_SYNC_BATCH,
                           TB_PRIO_SYNC_LEASE_MS, &r, next, sizeof(next), &done);
  if (s == TB_OK) {
    *result = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:i, s:O}", "cursor", next, "done",
                        done, "workspace_repos", (json_int_t)r.workspace_repos,
                        "tracked_only_repos", (json_int_t)r.tracked_only_repos, "priority_changes",
                        (json_int_t)r.priority_changes, "rows_updated", (json_int_t)r.rows_updated,
                        "jobs_queued", (json_int_t)r.jobs_queued, "batches", r.batches, "errors",
                        r.errors);
    if (*result == NULL) s = tb__fail(TB_ERR_NOMEM, "priority sync %s: batch result", run->id);
  }
  json_decref(r.errors);
  return s;
}

static const char *wf_more(tb_wf_run_t *run) {
  const json_t *b = tb_wf_step_result(run, "batch");
  return json_is_true(json_object_get(b, "done")) ? NULL : "batch";
}

/* The SyncResult of the run, from the last batch's totals. Its times are the log's (the run's
 * data must be the same in a rebuild): started is when the message that acquired the lease was
 * published, and the seconds run from there to the message being handled, so the last batch's
 * own time is not in them; priority_sync_runs.finished_us has the wall clock. */
static void wf_result(tb_wf_run_t *run, tb_prio_sync_result_t *r) {
  const json_t *b = tb_wf_step_result(run, "batch");
  memset(r, 0, sizeof(*r));
  r->workspace_repos = jint(b, "workspace_repos");
  r->tracked_only_repos = jint(b, "tracked_only_repos");
  r->priority_changes = jint(b, "priority_changes");
  r->rows_updated = jint(b, "rows_updated");
  r->jobs_queued = jint(b, "jobs_queued");
  r->batches = (int)jint(b, "batches");
  r->attempts = r->batches;
  r->errors =
      json_object_get(b, "errors") ? json_incref(json_object_get(b, "errors")) : json_array();
  int64_t started = jint(tb_wf_step_result(run, "acquire"), "started_us");
  int64_t now = tb_wf_log_time_us(run);
  r->elapsed_us = started > 0 && now > started ? now - started : 0;
}

static const char *wf_trigger(tb_wf_run_t *run) {
  const char *reason = tb_wf_input_str(run, "reason");
  return reason && reason[0] ? reason : "event";
}

static tb_status wf_finish(tb_wf_run_t *run, json_t **result) {
  tb_prio_sync_result_t r;
  wf_result(run, &r);
  int64_t started = jint(tb_wf_step_result(run, "acquire"), "started_us");
  tb_status s =
      release_and_record(run->ctx->store, run->id, wf_trigger(run), "completed", started, &r);
  if (s == TB_OK) {
    *result = tb_prio_sync_result_json(&r);
    TB_LOG(TB_LOG_INFO, "priority",
           "sync %s complete: workspaceRepos=%lld trackedOnlyRepos=%lld priorityChanges=%lld "
           "errors=%zu",
           run->id, (long long)r.workspace_repos, (long long)r.tracked_only_repos,
           (long long)r.priority_changes, json_array_size(r.errors));
  }
  tb_prio_sync_result_clear(&r);
  return s;
}

/* A run that failed after its retries gives the lease back at once and leaves a failed run row. */
static tb_status wf_on_error(tb_wf_run_t *run, const char *error) {
  if (!wf_acquired(run)) return TB_OK;
  tb_prio_sync_result_t r;
  wf_result(run, &r);
  json_array_append_new(r.errors, json_string(error));
  int64_t started = jint(tb_wf_step_result(run, "acquire"), "started_us");
  tb_status s =
      release_and_record(run->ctx->store, run->id, wf_trigger(run), "failed", started, &r);
  tb_prio_sync_result_clear(&r);
  return s;
}

/* Seed 002: 2 retries. */
#define SYNC_RETRY                                                                                 \
  {                                                                                                \
    .max_attempts = 1 + TB_PRIO_SYNC_RETRIES, .backoff = TB_BACKOFF_EXPONENTIAL,                   \
    .initial_delay_ms = 1000, .max_delay_ms = 10000                                                \
  }

static const tb_step_def_t sync_steps[] = {
    {.name = "acquire",
     .kind = TB_STEP_RUN,
     .description = "take the sync lease; a second sync finds it held and does nothing",
     .run = wf_acquire},
    {.name = "batch",
     .kind = TB_STEP_RUN,
     .description = "recompute the next 5000 tracked repositories, queue their sync jobs",
     .retry = SYNC_RETRY,
     /* One batch per message, never run on from the branch that loops back to it: higher tiers
      * are served between batches, a crash resumes at the last committed batch, and the lease
      * is renewed batch by batch. */
     .own_message = tb_wf_always,
     .when = wf_acquired,
     .run = wf_batch},
    {.name = "more",
     .kind = TB_STEP_BRANCH,
     .description = "back to batch until every repository was seen",
     .when = wf_acquired,
     .branch = wf_more},
    {.name = "finish",
     .kind = TB_STEP_RUN,
     .description = "release the lease, record the run, return the SyncResult",
     .retry = SYNC_RETRY,
     .when = wf_acquired,
     .run = wf_finish},
};

static const tb_workflow_def_t priority_sync = {
    .name = "workspace.priority-sync",
    .domain = "workspace",
    .tier = "background",
    .description = "Seed 002's full sync: every tracked repository's priority from workspace "
                   "membership, low marks and overrides; never two at once; 2 retries.",
    .trigger_event = "workspace/priorities.sync",
    .steps = sync_steps,
    .n_steps = TB_COUNTOF(sync_steps),
    .on_error = wf_on_error,
};

static const tb_workflow_def_t *const workflows[] = {&priority_sync};

static const tb_activity_def_t activities[] = {
    {"priority.sync-batch", "workspace", "run",
     "recompute a batch of tracked repositories' priorities (set-based) and queue their jobs"},
};

const tb_wf_domain_t tb__domain_workspace = {
    .name = "workspace",
    .workflows = workflows,
    .n_workflows = TB_COUNTOF(workflows),
    .activities = activities,
    .n_activities = TB_COUNTOF(activities),
};
