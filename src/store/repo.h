/* Repository priority tables (seed 002): workspace membership, tracked repositories, the
 * priority audit trail, the full sync's set-based batch and the lease that keeps one sync at a
 * time. The rules themselves (tb_repo_rule_priority) live here too, because the set-based sync
 * evaluates them inside SQLite through an SQL function bound to the same C code. */
#ifndef TB_STORE_REPO_H
#define TB_STORE_REPO_H

#include <stdint.h>

#include "store/store.h"

#define TB_ID_MAX 128
#define TB_REPO_NAME_MAX 256 /* a repository name, NUL included */

/* Position of an event in its key's history. Within one stream the stream sequence orders events;
 * across streams (an event re-tiered by its publisher) the publisher's occurred_at does. */
typedef struct tb_order {
  int64_t occurred_us;
  const char *stream;
  uint64_t seq;
} tb_order_t;

/* Returns 1 if |a| comes after |b| in the key's history. */
int tb_order_after(const tb_order_t *a, const tb_order_t *b);

/* Applies one membership change (present = 1 add, 0 remove) of (workspace, repo) unless a later
 * change of the same pair was already applied: then *applied = 0 and nothing changes. This is what
 * makes add-then-remove end in publish order whatever order workers commit them in. Empty ids or
 * ids of TB_ID_MAX bytes or more are TB_ERR_INVALID. */
tb_status tb_store_membership_apply(tb_store_t *st, const char *workspace_id,
                                    const char *repository_id, int present, const tb_order_t *order,
                                    int *applied);

/* Number of workspaces that currently hold |repository_id|. */
tb_status tb_store_workspace_count(tb_store_t *st, const char *repository_id, int *count);

typedef struct tb_tracked_repo {
  char repository_id[TB_ID_MAX];
  char priority[8];   /* "high", "medium", "low" */
  int priority_score; /* 100, 50, 25 */
  int is_workspace_repo;
  int workspace_count;
  int tracking_enabled;
  char manual_override[8]; /* "" or a priority that the rules must respect */
  int marked_low;          /* operator marked this repository low */
  /* "owner/name" when known ("" when not): from `priority set --name`, a WORKSPACE_REPO_ADDED
   * or a sync job that carried it. tb_store_repo_put keeps the stored name when this is "". */
  char repository_name[TB_REPO_NAME_MAX];
} tb_tracked_repo_t;

/* *found = 0 and |out| zeroed when the repository is not tracked. */
tb_status tb_store_repo_get(tb_store_t *st, const char *repository_id, tb_tracked_repo_t *out,
                            int *found);

/* Inserts the row or updates every column of the existing one; updated_at is set to now.
 * TB_ERR_INVALID (nothing written) for a priority or manual_override outside high/medium/low. */
tb_status tb_store_repo_put(tb_store_t *st, const tb_tracked_repo_t *r);

/* Appends one audit row: who changed, from what, to what, and why. |old_priority| is NULL or ""
 * when the row was just created; |msg_id| may be NULL for changes not caused by a message. */
tb_status tb_store_priority_audit(tb_store_t *st, const char *repository_id,
                                  const char *old_priority, const char *new_priority,
                                  const char *reason, const char *msg_id);

/* ------------------------------------------------------------------------------------------------
 * The priority rules (seed 002), the one source for the handlers, the sync and the inversion
 * query. SQL sees them as tb_repo_priority(workspace_count, marked_low, manual_override) and
 * tb_repo_score(priority), registered on every store connection.
 * --------------------------------------------------------------------------------------------- */

/* The priority the rules give: a non-empty |manual_override| wins; else high in >= 1 workspace;
 * else low when marked low; else medium. Returns a static name. */
const char *tb_repo_rule_priority(int workspace_count, int marked_low, const char *manual_override);

/* 100 for high, 50 for medium, 25 for low, 0 for anything else. */
int tb_repo_priority_score(const char *priority);

/* 1 for "high", "medium" or "low". */
int tb_repo_priority_valid(const char *priority);

/* ------------------------------------------------------------------------------------------------
 * Full sync (set-based, one batch per call)
 * --------------------------------------------------------------------------------------------- */

/* One repository whose stored priority the batch changed. Strings borrowed for the callback. */
typedef struct tb_repo_change {
  const char *repository_id;
  const char *old_priority;
  const char *new_priority;
  int new_score;
  int is_workspace_repo;
  int workspace_count;
  const char *repository_name; /* NULL: not known to the caller (the job looks it up) */
} tb_repo_change_t;

/* What one batch saw and did. */
typedef struct tb_repo_batch {
  int64_t repos;            /* tracked repositories examined */
  int64_t workspace_repos;  /* of them, in at least one workspace */
  int64_t priority_changes; /* rows whose priority changed */
  int64_t rows_updated;     /* rows rewritten: priority, score, flag or count drifted */
  char last_id[TB_ID_MAX];  /* cursor for the next batch; "" when |repos| is 0 */
} tb_repo_batch_t;

/* Recomputes the tracked repositories after |after_id| ("" = from the start), |limit| of them
 * in repository_id order, from live membership, marks and overrides, in a fixed number of
 * statements: the rows that drifted are rewritten, each gets an audit row (msg_id = |cause|,
 * reason naming the rule and the stored values), and |on_change| (may be NULL) is called for each
 * whose priority changed, in id order; a non-OK status from it ends the batch with that status.
 * Must run inside the caller's transaction: a failure leaves the writes to be rolled back.
 * TB_ERR_INVALID for limit < 1. */
tb_status tb_store_repo_sync_batch(tb_store_t *st, const char *after_id, int limit,
                                   const char *cause,
                                   tb_status (*on_change)(void *arg, const tb_repo_change_t *c),
                                   void *arg, tb_repo_batch_t *out);

/* Repositories whose stored row disagrees with the rules applied to live membership (priority,
 * score, is_workspace_repo or workspace_count). Calls |fn| for the first |limit| (0 = none) in
 * id order, and sets *total to the full count (may be NULL). |seed_query| (may be NULL) receives
 * the seed's own inversion query: is_workspace_repo = 1 AND priority != 'high', which also counts
 * repositories a manual override keeps below high on purpose. */
typedef struct tb_repo_inversion {
  const char *repository_id;
  const char *priority;          /* stored */
  const char *expected_priority; /* what the rules give */
  int is_workspace_repo;         /* stored */
  int workspace_count;           /* stored */
  int live_count;                /* from workspace_repositories */
  const char *manual_override;   /* "" when none */
} tb_repo_inversion_t;
tb_status tb_store_repo_inversions(tb_store_t *st, int limit,
                                   void (*fn)(void *arg, const tb_repo_inversion_t *inv), void *arg,
                                   int64_t *total, int64_t *seed_query);

/* The last |limit| audit rows of |repository_id|, newest first, through |fn|. */
typedef struct tb_repo_audit {
  const char *old_priority; /* "" when the row was created */
  const char *new_priority;
  const char *reason;
  const char *msg_id; /* "" when none */
  int64_t at_us;
} tb_repo_audit_t;
tb_status tb_store_repo_audit_list(tb_store_t *st, const char *repository_id, int limit,
                                   void (*fn)(void *arg, const tb_repo_audit_t *a), void *arg);

/* Tracked repositories in id order, after |after_id| ("" = from the first), at most |limit|:
 * |priority| ("high", "medium", "low") and |workspace| (a workspace id: only repositories in it)
 * NULL or "" match any. |fn| gets each row (borrowed for the call); non-zero stops. A caller
 * pages by passing the last row's id as the next |after_id|. */
tb_status tb_store_repo_list(tb_store_t *st, const char *priority, const char *workspace,
                             const char *after_id, int limit,
                             int (*fn)(void *arg, const tb_tracked_repo_t *r), void *arg);

/* The workspaces that hold |repository_id| now, in id order, with when it was added; non-zero
 * from |fn| stops. */
tb_status tb_store_repo_workspaces(tb_store_t *st, const char *repository_id,
                                   int (*fn)(void *arg, const char *workspace_id, int64_t added_us),
                                   void *arg);

/* One group of seed 002's priority distribution (tracked repositories with tracking enabled,
 * by is_workspace_repo and priority). */
typedef struct tb_repo_dist {
  int is_workspace_repo;
  const char *priority;
  int64_t count;
  double avg_workspace_count;
  int64_t overrides;  /* of them, with a manual override */
  int64_t marked_low; /* of them, marked low */
} tb_repo_dist_t;
tb_status tb_store_repo_distribution(tb_store_t *st, int (*fn)(void *arg, const tb_repo_dist_t *d),
                                     void *arg);

/* Counts for a SyncResult's repository figures over the whole table. */
tb_status tb_store_repo_counts(tb_store_t *st, int64_t *tracked, int64_t *workspace_repos);

/* ------------------------------------------------------------------------------------------------
 * Leases: a named job that must not run twice at once, across processes. A lease is a row (name,
 * owner, expiry) taken by one conditional upsert, so SQLite's write lock decides the winner.
 * --------------------------------------------------------------------------------------------- */

/* Takes lease |name| for |owner| until now + |ttl_ms|, when it is free, expired, or already
 * |owner|'s. *taken = 1 on success; else 0, with the holder's id copied to |holder| (cap bytes,
 * may be NULL) and its expiry to *holder_expires_us (may be NULL). Outside a transaction a lease
 * held by another is reported as soon as it is committed, even while its holder keeps the write
 * lock busy; TB_ERR_BUSY only when the lease was free and the lock stayed taken for the whole
 * busy timeout. */
tb_status tb_store_lease_take(tb_store_t *st, const char *name, const char *owner, int64_t ttl_ms,
                              int *taken, char *holder, size_t cap, int64_t *holder_expires_us);

/* Extends |owner|'s lease to now + |ttl_ms|. *held = 0 when |owner| no longer holds it (it
 * expired and another owner took it, or it was released). */
tb_status tb_store_lease_renew(tb_store_t *st, const char *name, const char *owner, int64_t ttl_ms,
                               int *held);

/* Releases |owner|'s lease; a lease held by someone else is left alone. */
tb_status tb_store_lease_release(tb_store_t *st, const char *name, const char *owner);

/* One finished full sync, for `priority show` and operators: |errors_json| is a JSON array. */
typedef struct tb_prio_sync_run_row {
  const char *owner;
  const char *trigger;
  const char *status; /* "completed" or "failed" */
  int64_t started_us, finished_us;
  int64_t workspace_repos, tracked_only_repos, priority_changes, rows_updated;
  int attempts;
  const char *errors_json;
} tb_prio_sync_run_row_t;
tb_status tb_store_prio_sync_record(tb_store_t *st, const tb_prio_sync_run_row_t *r);

/* The last |limit| finished syncs, newest first (|id| is the row's number); strings borrowed for
 * the call; non-zero from |fn| stops. */
tb_status tb_store_prio_sync_list(tb_store_t *st, int limit,
                                  int (*fn)(void *arg, int64_t id, const tb_prio_sync_run_row_t *r),
                                  void *arg);

/* The holder of lease |name| and its expiry: *found = 0 (holder "", expiry 0) when nobody holds
 * it. An expired lease is reported as held: the caller compares the expiry with the clock. */
tb_status tb_store_lease_get(tb_store_t *st, const char *name, char *holder, size_t cap,
                             int64_t *expires_us, int *found);

#endif
