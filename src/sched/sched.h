/* The scheduler (seed 001): which slot of a task is due, the scheduled-task event that carries a
 * due slot on the task's tier, and what running a slot does (a built-in job, or publishing the
 * task's event), with 3 retries on exponential backoff before a task is kept as failed. The
 * thread that fires slots is in sched/scheduler.h. */
#ifndef TB_SCHED_SCHED_H
#define TB_SCHED_SCHED_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api/publish.h"
#include "api/handler.h"
#include "sched/cron.h"
#include "store/sched.h"

/* Retries after a failed run, as the seed says ("3 attempts" of retry with backoff). */
#define TB_SCHED_RETRIES 3

/* Calls |fn| with each built-in job type and what it does, in listing order. */
void tb_sched_jobs(void (*fn)(void *arg, const char *job, const char *what), void *arg);

/* 1 when |job| is a built-in job type (BACKUP_DATABASE, ...). */
int tb_sched_is_job(const char *job);

/* The default tasks (seed 001's table, the seed 002 priority sync and month-transition): their
 * count, and default |i| (0-based) written into |out| (status idle, no run yet; zeroed when |i| is
 * out of range). */
int tb_sched_default_count(void);
void tb_sched_default(int i, tb_sched_task_t *out);

/* 1 when tasks |a| and |b| have the same definition: pattern, job, payload (as JSON), enabled,
 * tier, description and catch-up. Run state is not compared. */
int tb_sched_same_definition(const tb_sched_task_t *a, const tb_sched_task_t *b);

/* Checks a task before it is stored: the pattern parses, the job is built in or a catalogue event
 * whose payload encodes, the payload is a JSON object, the tier is a config tier. TB_ERR_INVALID
 * (pattern, tier, name), TB_ERR_JSON (payload) or TB_ERR_UNKNOWN_EVENT with a detail naming the
 * field and value. */
tb_status tb_sched_check(const tb_config_t *cfg, const tb_catalogue_t *cat,
                         const tb_sched_task_t *t);

/* The tier a task's messages go to: its own when the config has it, else the config's last tier
 * (a deployment that renamed its tiers still runs every task). Borrowed from |cfg|. */
const char *tb_sched_tier(const tb_config_t *cfg, const tb_sched_task_t *t);

typedef enum tb_sched_action {
  TB_SCHED_IDLE = 0,     /* nothing due */
  TB_SCHED_FIRE = 1,     /* the slot is due now (within the grace) */
  TB_SCHED_CATCH_UP = 2, /* the latest missed slot, fired once (catch-up: once) */
  TB_SCHED_SKIP = 3,     /* missed slots, skipped (catch-up: skip): only the last slot moves */
} tb_sched_action;

/* The next slot task |t| fires at, after |now_us| and its last slot; 0 when it is disabled or its
 * pattern does not parse. */
int64_t tb_sched_next_us(const tb_sched_task_t *t, int64_t now_us);

/* Task |t| as the JSON object `schedule list --json` prints and GET /api/schedules answers (next
 * run at |now_us|). New reference; NULL only when out of memory. */
json_t *tb_sched_task_json(const tb_sched_task_t *t, int64_t now_us);

/* Decides what to do with task |t| (pattern |c|) at |now_us|: *slot_us receives the latest slot
 * in (t->last_slot_us, now_us] when there is one. That slot fires when it is at most |grace_us|
 * old; an older one is missed: fired once or skipped as the task's catch-up policy says.
 * Earlier missed slots are never fired. */
tb_status tb_sched_due(const tb_sched_task_t *t, const tb_cron_t *c, int64_t now_us,
                       int64_t grace_us, int64_t *slot_us, tb_sched_action *action);

/* The Nats-Msg-Id of attempt |attempt| of (task, slot): "sched:<task>:<slot_us>", and
 * "sched:<task>:<slot_us>:a<attempt>" for a retry. */
void tb_sched_msg_id(const char *task, int64_t slot_us, int attempt, char *buf, size_t cap);

/* Builds the scheduled-task event for (task, slot, attempt) on the task's tier. The caller frees
 * |out| with tb_prepared_free(). Fails like tb_publish_prepare. */
tb_status tb_sched_prepare(const tb_config_t *cfg, const tb_catalogue_t *cat,
                           const tb_sched_task_t *t, int64_t slot_us, int attempt,
                           const char *trigger, tb_prepared_t *out);

/* What one run did. */
typedef struct tb_sched_outcome {
  int ran;         /* 0: nothing ran (unknown task, or the slot/attempt already ran) */
  char status[16]; /* ok, retrying, failed; "duplicate" or "gone" when nothing ran */
  char detail[512];
  int64_t retry_at_us; /* when the retry is due (status retrying) */
} tb_sched_outcome_t;

/* Runs attempt |attempt| of slot |slot_us| of task |name| inside the open transaction of |ctx|
 * (store, cfg, cat required; msg may be NULL). The slot is claimed first, so a slot or an attempt
 * that already ran does nothing. The job's own writes sit in a step savepoint, undone when it
 * fails. A failure is recorded on the run and the task (status, consecutive failure count, last
 * error); when |allow_retry| and fewer than TB_SCHED_RETRIES retries were made, and the failure
 * is not permanent (TB_ERR_INVALID), the next attempt is queued in the outbox after
 * schedule_retry_delay * 2^(attempt - 1). Returns TB_OK when the outcome is recorded (a job's
 * failure included); a store failure while recording is returned (the caller rolls back). */
tb_status tb_sched_execute(const tb_handler_ctx_t *ctx, const char *name, int64_t slot_us,
                           int attempt, const char *trigger, int allow_retry,
                           tb_sched_outcome_t *out);

/* The "sched.run" handler of the scheduled-task event (api/handler.h contract). */
tb_status tb_sched_handle(const tb_handler_ctx_t *ctx);

#endif
