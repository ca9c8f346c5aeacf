/* Workflow state (migration v4): runs, the history of every step attempt, open waits and the
 * inbox of events that resume waits. Only data access lives here; what a step does is decided by
 * src/workflows/runtime.c. Every call runs inside the caller's transaction. */
#ifndef TB_STORE_WORKFLOW_H
#define TB_STORE_WORKFLOW_H

#include <stdint.h>

#include "store/repo.h"
#include "store/store.h"

#define TB_WF_NAME_MAX 64

/* A workflow run as stored. |data| and |error| are owned by the row (tb_store_wf_row_clear). */
typedef struct tb_wf_row {
  char id[TB_ID_MAX];
  char name[TB_WF_NAME_MAX];
  char domain[32];
  char tier[32];
  char status[16];     /* running, waiting, sleeping, completed, failed, cancelled */
  char step_state[16]; /* ready, waiting, sleeping, done */
  int step;            /* index of the current step */
  int attempt;         /* attempt of the current step, 1-based */
  int64_t seq;         /* the continuation that may act next; any other is stale */
  char *data;          /* JSON text */
  char *error;         /* NULL unless failed or cancelled */
  char correlation_id[TB_ID_MAX];
  char cause_msg_id[TB_ID_MAX];
  int64_t created_us, updated_us, finished_us;
  int64_t hist_id; /* history row of the current step attempt while it waits or sleeps */
  int64_t no;      /* the row's number (rowid): its place in insertion order, for paging */
} tb_wf_row_t;

void tb_store_wf_row_clear(tb_wf_row_t *r);

/* Inserts |r| (created/updated set to now). *created = 0, nothing written, when the id exists. */
tb_status tb_store_wf_insert(tb_store_t *st, const tb_wf_row_t *r, int *created);

/* Reads run |id| into |out| (cleared first). *found = 0 when there is none. */
tb_status tb_store_wf_get(tb_store_t *st, const char *id, tb_wf_row_t *out, int *found);

/* Writes every mutable column of |r| (status, step, step_state, attempt, seq, data, error,
 * finished_us, hist_id) and updated_us = now. */
tb_status tb_store_wf_update(tb_store_t *st, const tb_wf_row_t *r);

/* One step attempt (or a cancellation / onError record) in the history. */
typedef struct tb_wf_hist {
  int64_t id;
  int step;
  const char *name, *kind;
  int attempt;
  const char *status; /* started, ok, failed, retry, timeout, skipped, waiting, cancelled ... */
  int code;           /* status code of a reply, 0 = none */
  const char *detail; /* what happened ("jump to process", "retry in 2000 ms") */
  const char *result; /* JSON text or NULL */
  const char *error;
  const char *tier;
  const char *msg_id; /* the message whose handler ran it: its continuation, or the message
                       * that ran the step before it when it ran on in the same call */
  int64_t started_us, ended_us;
} tb_wf_hist_t;

/* Appends a history row; *id (may be NULL) receives its id. */
tb_status tb_store_wf_hist_add(tb_store_t *st, const char *workflow_id, const tb_wf_hist_t *h,
                               int64_t *id);

/* Ends history row |id|: status, code, detail, result, error and ended_us = now. */
tb_status tb_store_wf_hist_end(tb_store_t *st, int64_t id, const char *status, int code,
                               const char *detail, const char *result, const char *error);

/* Calls |fn| for every history row of |workflow_id|, oldest first (strings borrowed for the
 * call). A non-zero return stops the walk. */
tb_status tb_store_wf_history(tb_store_t *st, const char *workflow_id,
                              int (*fn)(void *arg, const tb_wf_hist_t *h), void *arg);

/* Waits. put registers the wait of (workflow, seq) for (event, key); take removes the wait that
 * (event, key) matches, oldest first, and reports whose it was (*found = 0 when none); drop
 * removes every wait of a workflow. */
tb_status tb_store_wf_wait_put(tb_store_t *st, const char *workflow_id, int64_t seq,
                               const char *event, const char *key, int64_t deadline_us);
/* The key of run |workflow_id|'s newest wait for |event| into |key| (|cap| bytes); *found = 0
 * when it waits for none. */
tb_status tb_store_wf_wait_key_of(tb_store_t *st, const char *workflow_id, const char *event,
                                  char *key, size_t cap, int *found);
tb_status tb_store_wf_wait_take(tb_store_t *st, const char *event, const char *key,
                                char *workflow_id, size_t cap, int64_t *seq, int *found);
tb_status tb_store_wf_wait_drop(tb_store_t *st, const char *workflow_id, int64_t seq);
tb_status tb_store_wf_wait_drop_all(tb_store_t *st, const char *workflow_id);

/* Inbox. add records an event (|workflow_id| NULL: nobody waits yet). A second add of the same
 * msg_id is a no-op: *added = 0. claim gives the oldest unclaimed event for (event, key) to
 * (workflow, seq): *found = 0 when none arrived. get reads what (workflow, seq) received;
 * |payload| (caller frees) is NULL when *found = 0. */
tb_status tb_store_wf_inbox_add(tb_store_t *st, const char *event, const char *key,
                                const char *msg_id, const char *payload, int code,
                                const char *workflow_id, int64_t seq, int *added);
tb_status tb_store_wf_inbox_claim(tb_store_t *st, const char *event, const char *key,
                                  const char *workflow_id, int64_t seq, int *found);
tb_status tb_store_wf_inbox_get(tb_store_t *st, const char *workflow_id, int64_t seq,
                                char **payload, int *code, int *found);

/* Drops the pending outbox rows whose msg_id starts with "<prefix>" (a cancelled workflow's
 * timers and queued continuations). *dropped receives the count (may be NULL). */
tb_status tb_store_outbox_cancel_prefix(tb_store_t *st, const char *prefix, int64_t *dropped);

/* Lists runs, newest (last inserted) first, from the run before number |before| (a row's |no|;
 * 0 = from the newest): |status| and |name| NULL or "" match any, |limit| <= 0 = all. |fn| gets
 * each row (borrowed for the call); non-zero stops. A caller pages by passing the last row's
 * |no| as the next |before|: rows inserted meanwhile never shift a page. */
tb_status tb_store_wf_list(tb_store_t *st, const char *status, const char *name, int64_t before,
                           int limit, int (*fn)(void *arg, const tb_wf_row_t *r), void *arg);

#endif
