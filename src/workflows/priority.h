/* Seed 002 beyond one membership change: the tier of a repository's sync jobs, the jobs
 * themselves, an operator's override and low mark, and the full priority sync (every 6 hours, on
 * demand, or on the workspace/priorities.sync event), which never runs twice at once. */
#ifndef TB_WORKFLOWS_PRIORITY_H
#define TB_WORKFLOWS_PRIORITY_H

#include <jansson.h>

#include "api/handler.h"
#include "api/publish.h"
#include "store/repo.h"

/* The lease that keeps one full sync at a time, across every process sharing the database. */
#define TB_PRIO_SYNC_LEASE "workspace-priority-sync"
/* A lease outlives its holder's crash by this much; a live sync renews it after every batch. */
#define TB_PRIO_SYNC_LEASE_MS (10 * 60 * 1000)
/* Repositories per batch (one transaction each). */
#define TB_PRIO_SYNC_BATCH 5000
/* Seed 002: the sync job has 2 retries. */
#define TB_PRIO_SYNC_RETRIES 2

/* The tier that carries |priority|'s repository jobs: config repo_tier_high / _medium / _low.
 * NULL for a name that is not a priority. Borrowed from |cfg|. */
const char *tb_repo_priority_tier(const tb_config_t *cfg, const char *priority);

/* Queues one capture/repository.sync job through the outbox (inside the caller's transaction) on
 * the tier of |c|'s new priority, with the score in the envelope and in the payload, and the
 * reasons (is_workspace_repo, workspace_count, previous priority) in the payload's metadata and
 * the envelope's. The message id is derived from |cause| and the repository, so a retried cause
 * queues it once. Needs ctx->cfg and ctx->cat; TB_ERR_INVALID without them. */
tb_status tb_repo_sync_job_emit(const tb_handler_ctx_t *ctx, const tb_repo_change_t *c,
                                const char *cause);

/* An operator's setting on |repository_id|, applied with the rules in the caller's transaction:
 * |override| NULL leaves the override as it is, "" or "none" clears it, else high/medium/low;
 * |mark_low| -1 leaves the mark, 0 clears it, 1 sets it. An untracked repository becomes tracked.
 * Writes an audit row and, when the priority changed, a repository-sync job (a failure to queue
 * it is logged, never returned). *changed (may be NULL) = 1 when the row changed. TB_ERR_INVALID
 * for a bad override or id. */
tb_status tb_repo_set(const tb_handler_ctx_t *ctx, const char *repository_id, const char *override,
                      int mark_low, const char *cause, int *changed);

/* tb_repo_set, and |name| (NULL = keep) as the repository's "owner/name" (1 to
 * TB_REPO_NAME_MAX - 1 bytes, else TB_ERR_INVALID), carried by its sync jobs from then on. */
tb_status tb_repo_set_ex(const tb_handler_ctx_t *ctx, const char *repository_id,
                         const char *override, int mark_low, const char *name, const char *cause,
                         int *changed);

/* ---------------------------------------------------------------- views (repo_view.c) */

/* Tracked repository |r| as JSON: repository_id, priority, priority_score, is_workspace_repo,
 * workspace_count, manual_override (null when none), marked_low, tracking_enabled and jobs_tier
 * (the tier its sync jobs take). New reference; NULL when memory runs out. */
json_t *tb_repo_json(const tb_config_t *cfg, const tb_tracked_repo_t *r);

/* Repository |id| as `priority show --json` prints it and GET /api/repositories/{id} answers it:
 * tb_repo_json plus live_workspace_count, expected_priority (what the rules give now; differing
 * from priority is an inversion), workspaces [{workspace_id, added_at}] and the last |audit|
 * audit rows, newest first [{at, old_priority, new_priority, reason, msg_id}]. Into *out (caller
 * frees). TB_ERR_NOT_FOUND when the repository is not tracked; the store's status on failure. */
tb_status tb_repo_view(tb_store_t *st, const tb_config_t *cfg, const char *id, int audit,
                       json_t **out);

/* ---------------------------------------------------------------- the full sync */

/* The seed's SyncResult, plus what the run did to get it. */
typedef struct tb_prio_sync_result {
  int64_t workspace_repos;    /* tracked repositories in at least one workspace */
  int64_t tracked_only_repos; /* tracked repositories in none */
  int64_t priority_changes;   /* repositories whose priority changed */
  int64_t rows_updated;       /* rows rewritten (priority, score, flag or count had drifted) */
  int64_t jobs_queued;        /* repository-sync jobs queued for the changes */
  int batches;
  int attempts; /* batch attempts, retries included */
  int skipped;  /* 1: another sync holds the lease; nothing ran */
  char holder[TB_ID_MAX];
  int64_t holder_expires_us;
  int64_t elapsed_us;
  json_t *errors; /* array of strings (never NULL after a run); tb_prio_sync_result_clear frees */
} tb_prio_sync_result_t;

typedef struct tb_prio_sync_opts {
  const char *owner;   /* lease owner and audit msg_id; NULL = "prio-sync-<random>" */
  const char *trigger; /* "manual", "cron", "event" ...; NULL = "manual" */
  int batch_size;      /* 0 = TB_PRIO_SYNC_BATCH */
  int max_retries;     /* retries of a failed batch; -1 = TB_PRIO_SYNC_RETRIES */
  int64_t lease_ms;    /* 0 = TB_PRIO_SYNC_LEASE_MS */
  /* Called after each committed batch with the totals so far; a non-zero return stops the run
   * (TB_ERR_STOPPED). NULL = none. */
  int (*progress)(void *arg, const tb_prio_sync_result_t *so_far);
  void *arg;
} tb_prio_sync_opts_t;

/* Runs the full sync on |st| (no transaction open): takes the lease, then recomputes every
 * tracked repository in batches of one transaction each (tb_store_repo_sync_batch), queueing a
 * repository-sync job per priority change (a job that cannot be queued is an entry in errors,
 * not a failure), renewing the lease after each batch, retrying a failed batch up to max_retries
 * times, and finally releasing the lease and recording the run. |cfg| and |cat| are needed for
 * the jobs (NULL: changes are applied and the missing jobs listed in errors).
 * Returns TB_OK when it ran to the end; TB_ERR_BUSY with out->skipped = 1 and the holder named
 * when another sync holds the lease (nothing ran); otherwise the failure of the last attempt
 * (out holds what was committed before it). |out| is always initialised; free with
 * tb_prio_sync_result_clear. */
tb_status tb_prio_sync_run(tb_store_t *st, const tb_config_t *cfg, const tb_catalogue_t *cat,
                           const tb_prio_sync_opts_t *opts, tb_prio_sync_result_t *out);

/* {"workspaceRepos", "trackedOnlyRepos", "priorityChanges", "errors", ...}: the seed's field
 * names, plus the run's own figures. New reference. */
json_t *tb_prio_sync_result_json(const tb_prio_sync_result_t *r);

void tb_prio_sync_result_clear(tb_prio_sync_result_t *r);

/* Seed 002's "query priority before queueing", for a capture/repository.sync that another
 * service publishes without a priority (no tier, no payload priority or priority_score): the
 * repository's tracked row gives the tier (config repo_tier_*), the envelope's score and metadata
 * and the payload's priority, priority_score, metadata and repository_name (when known and not
 * given); an untracked repository, or no database (|st| NULL), routes as medium (the seed's
 * fallback). |req| borrows |rt|'s buffers, so |rt| must outlive the publish; |req->payload| is
 * changed in place. *routed = 1 when it routed, else nothing changed (another event, or the
 * publisher chose a priority). Reads only. */
typedef struct tb_repo_route {
  char tier[32];
  char priority[8]; /* high, medium, low */
  char count[16], original[16];
  const char *meta[8];
  int tracked; /* 0: not tracked (or no database), routed as medium */
} tb_repo_route_t;
tb_status tb_repo_route_sync_job(tb_store_t *st, const tb_config_t *cfg, tb_publish_req_t *req,
                                 tb_repo_route_t *rt, int *routed);

#endif
