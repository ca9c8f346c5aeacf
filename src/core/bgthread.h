/* A background thread that runs one function, its tick, at once or after a first interval, then
 * again after whatever wait each tick asks for (by default a fixed interval), sooner when kicked,
 * until it is stopped. The relay, the scheduler, the sweeper and the checkpointer are all this
 * loop; it owns their mutex, condition variable and stop flag so that none of them repeats it. */
#ifndef TB_CORE_BGTHREAD_H
#define TB_CORE_BGTHREAD_H

#include <stdint.h>

#include "tierbus.h"

typedef struct tb_bgthread tb_bgthread_t;

/* What a tick may return besides a wait in milliseconds (>= 0; 0 = tick again at once). Any other
 * negative value counts as TB_BGTHREAD_PERIODIC. */
#define TB_BGTHREAD_PERIODIC (-1) /* wait the thread's interval_ms */
#define TB_BGTHREAD_EXIT (-2)     /* leave the loop: the thread ends (a stop still joins it) */

/* One unit of the thread's work, called without any lock held. |stopping| is 1 only in a thread
 * started with .drain = 1 once a stop was requested: the tick then decides how much work is left
 * and returns TB_BGTHREAD_EXIT when it is done. Returns the wait before the next tick, or one of
 * the TB_BGTHREAD_ values above. */
typedef int64_t (*tb_bgthread_tick_fn)(void *arg, int stopping);

typedef struct tb_bgthread_opts {
  const char *name;         /* what failure details call it ("relay"); borrowed for the call */
  tb_bgthread_tick_fn tick; /* required */
  void *arg;                /* passed to tick; borrowed, must outlive the thread */
  int64_t interval_ms;      /* > 0: the wait after a tick that returns TB_BGTHREAD_PERIODIC */
  int delay_first;          /* 1: the first tick comes after one interval; 0: at once */
  int nice;                 /* added to the thread's own nice value at its start (best effort;
                             * Linux nices threads one by one): work that can wait for others */
  int drain;                /* 1: a stop does not end the loop; ticks go on with stopping = 1,
                             * without waits between them, until one returns TB_BGTHREAD_EXIT.
                             * 0: a stop ends the loop before the next tick (a tick under way
                             * finishes first). */
} tb_bgthread_opts_t;

/* Starts the thread described by |opts| (copied). On success *out receives the handle, which the
 * caller stops and frees with tb_bgthread_stop(); on failure nothing runs, *out is untouched and
 * the status says why: TB_ERR_INVALID for a missing tick or an interval <= 0, TB_ERR_NOMEM when
 * memory, a mutex, a condition variable or the thread itself cannot be had (the detail carries
 * the system's text). */
tb_status tb_bgthread_start(tb_bgthread_t **out, const tb_bgthread_opts_t *opts);

/* Wakes the thread now: a wait under way ends, and the next one is skipped if the kick comes
 * during a tick. Kicks do not queue: several before the next tick make one. Cheap; safe from any
 * thread. Accepts NULL. */
void tb_bgthread_kick(tb_bgthread_t *t);

/* Requests the stop, wakes the thread, joins it and frees. A tick under way finishes first (a
 * draining thread goes on until its tick says it is done). Accepts NULL, the handle of a thread
 * never started. */
void tb_bgthread_stop(tb_bgthread_t *t);

#endif
