/* The scheduler's tables (migration v6): scheduled tasks and the runs of their slots, plus the
 * store-side work of the built-in maintenance jobs (purging finished runs, the online backup).
 * Only data access lives here; the scheduling rules are in src/sched/. Unless a function says
 * otherwise, it runs inside the caller's transaction. */
#ifndef TB_STORE_SCHED_H
#define TB_STORE_SCHED_H

#include <stdint.h>

#include "store/store.h"

#define TB_SCHED_NAME_MAX 64
#define TB_SCHED_PAYLOAD_MAX 4096

/* One scheduled task as stored. */
typedef struct tb_sched_task {
  char name[TB_SCHED_NAME_MAX];
  char pattern[128];                  /* as given: a 5-field pattern or a SCHEDULES name */
  char job[64];                       /* a built-in job type or a catalogue event name */
  char payload[TB_SCHED_PAYLOAD_MAX]; /* JSON object text */
  int enabled;
  char tier[32];
  char description[256];
  int catch_up_once; /* 0: skip missed slots; 1: fire the latest missed slot once */
  int64_t last_slot_us;
  int failure_count;
  char status[16]; /* idle (never ran), ok, retrying, failed */
  char last_error[512];
  int64_t last_run_us; /* 0 = never */
  int64_t created_us, updated_us;
} tb_sched_task_t;

/* Adds task |t| (name, pattern, job, payload, enabled, tier, description, catch_up_once,
 * last_slot_us). TB_ERR_INVALID when a task of that name exists (nothing changes) or a field is
 * empty or too long; TB_ERR_STORE when the payload is not a JSON object. */
tb_status tb_store_sched_put(tb_store_t *st, const tb_sched_task_t *t);

/* *found = 0 (and |out| zeroed) when there is no such task. */
tb_status tb_store_sched_get(tb_store_t *st, const char *name, tb_sched_task_t *out, int *found);

/* Calls |fn| with each task, by name; a non-zero return stops the walk. The task is borrowed for
 * the call. */
tb_status tb_store_sched_list(tb_store_t *st, int (*fn)(void *arg, const tb_sched_task_t *t),
                              void *arg);

/* Removes a task (its past runs stay). TB_ERR_NOT_FOUND for an unknown name. */
tb_status tb_store_sched_remove(tb_store_t *st, const char *name);

/* Enables or disables a task. Enabling a disabled task moves its last slot up to now, so the time
 * it was off is not caught up. TB_ERR_NOT_FOUND for an unknown name. */
tb_status tb_store_sched_enable(tb_store_t *st, const char *name, int enabled, int64_t now_us);

/* Puts task |t|'s definition (pattern, job, payload, enabled, tier, description, catch-up) back
 * on the stored task of that name and clears its failure state (status idle, no failures, no
 * last error); its last slot moves up to |now_us|, so nothing missed is caught up. *found = 0
 * and nothing changes when there is no such task. For `schedule reset-defaults`. */
tb_status tb_store_sched_reset(tb_store_t *st, const tb_sched_task_t *t, int64_t now_us,
                               int *found);

/* Records that the task's slots up to |slot_us| are fired or skipped. *moved (may be NULL) = 0
 * when the stored last slot was already at or past it (another scheduler got there first). */
tb_status tb_store_sched_advance(tb_store_t *st, const char *name, int64_t slot_us, int *moved);

/* Claims attempt |attempt| of (task, slot) for running: attempt 1 inserts the run row unless one
 * exists; a later attempt moves a 'retrying' run whose attempts are |attempt| - 1. *fresh = 0 when
 * the claim finds the slot already run or the attempt already taken (a duplicate). */
tb_status tb_store_sched_claim(tb_store_t *st, const char *name, int64_t slot_us, int attempt,
                               const char *trigger, int *fresh);

/* Ends the run of (task, slot) and updates the task: |status| is ok, retrying or failed;
 * |result| and |error| may be NULL; |failure_count| is the task's count of consecutive failures
 * (0 after a success). */
tb_status tb_store_sched_end(tb_store_t *st, const char *name, int64_t slot_us, const char *status,
                             const char *result, const char *error, int failure_count);

/* One run of a slot. */
typedef struct tb_sched_run {
  char trigger[16];
  int attempts;
  char status[16];
  char result[512];
  char error[512];
  int64_t started_us, finished_us;
} tb_sched_run_t;

tb_status tb_store_sched_run_get(tb_store_t *st, const char *name, int64_t slot_us,
                                 tb_sched_run_t *out, int *found);

/* cleanup-old-jobs: deletes the workflow runs that finished (completed, failed, cancelled) before
 * |before_us| with their history, waits and consumed inbox rows, and the finished scheduler runs
 * of the same age. Counts go to *workflows and *sched_runs (either may be NULL). */
tb_status tb_store_purge_finished(tb_store_t *st, int64_t before_us, int64_t *workflows,
                                  int64_t *sched_runs);

/* cleanup-old-jobs, its logs: deletes the activity log rows older than |activity_before_us|,
 * the dead-letter entries (database only; the TB_DLQ stream keeps its copies by its own
 * retention) older than |dlq_before_us|, the escalation records older than |activity_before_us|
 * of runs that are finished or gone, and the workflow inbox entries no run claimed (an event no
 * wait asked for, the reply to a custom job's command) older than |activity_before_us|. The
 * caller keeps |dlq_before_us| at or before the dedupe horizon: an entry is what stops a
 * redelivered dead message from applying. Counts go to the out-parameters (each may be NULL). */
tb_status tb_store_purge_logs(tb_store_t *st, int64_t activity_before_us, int64_t dlq_before_us,
                              int64_t *activity, int64_t *dead_letters, int64_t *escalations,
                              int64_t *inbox);

/* Writes a consistent copy of the database to |dest_path| with SQLite's online backup API, read
 * through a connection of its own (so it sees the last committed state and does not block
 * writers in WAL mode; an in-memory database is copied from this connection). The copy is
 * written to "<dest_path>.part" and renamed into place, so |dest_path| is whole or absent.
 * Runs outside any transaction of the caller's: it needs none. TB_ERR_IO / TB_ERR_STORE with the
 * path and SQLite's text on failure. */
tb_status tb_store_backup(tb_store_t *st, const char *dest_path);

#endif
