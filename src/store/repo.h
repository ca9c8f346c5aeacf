/* Repository priority tables (seed 002): workspace membership, tracked repositories and the
 * priority audit trail. Only data access lives here; the priority rules are in
 * src/workflows/workspace.c. */
#ifndef TB_STORE_REPO_H
#define TB_STORE_REPO_H

#include <stdint.h>

#include "store/store.h"

#define TB_ID_MAX 128

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

#endif
