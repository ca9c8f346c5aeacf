/* The scheduler loop: a thread with its own SQLite connection that, once a second, finds the due
 * slot of every enabled task and publishes it as a scheduled-task event on the task's tier. Any
 * number of processes may run one on the same NATS: the one holding the "scheduler" lease
 * (bus/lease.h) fires, the others wait to take over. Should two ever fire the same slot, its
 * message id is derived from the task and the slot, so the stream keeps one copy, and the
 * handler claims the slot in SQLite, so it runs once. It decides things, so it logs. */
#ifndef TB_SCHED_SCHEDULER_H
#define TB_SCHED_SCHEDULER_H

#include <stdint.h>

#include "bus/bus.h"
#include "codec/catalogue.h"
#include "config/config.h"
#include "tierbus.h"

typedef struct tb_scheduler tb_scheduler_t;

/* Opens a scheduler on the database at |db_path| (its own connection). |cfg|, |cat| and |bus|
 * are borrowed and must outlive it. No thread runs until tb_scheduler_start(). Caller frees with
 * tb_scheduler_destroy(). */
tb_status tb_scheduler_create(tb_scheduler_t **out, const tb_config_t *cfg,
                              const tb_catalogue_t *cat, const char *db_path, tb_bus_t *bus);

/* One pass at |now_us| (wall clock, unix microseconds): each enabled task's due slot is fired
 * (published, then recorded as the task's last slot), caught up or skipped (tb_sched_due). A
 * slot whose publish fails is left due and tried again on the next pass. *fired (may be NULL)
 * receives the number of slots published. Returns the first store failure; publish failures are
 * logged, not returned. */
tb_status tb_scheduler_tick(tb_scheduler_t *s, int64_t now_us, int *fired);

/* One pass as the thread runs it: takes or renews the scheduler lease, and runs
 * tb_scheduler_tick(s, now_us, fired) only while it is held. *leading (may be NULL) gets whether
 * it is. The lease's NATS failures are returned, and then nothing fires. */
tb_status tb_scheduler_step(tb_scheduler_t *s, int64_t now_us, int *fired, int *leading);

/* Starts the thread that runs tb_scheduler_step at once and then just after every whole second of
 * the wall clock. On failure no thread runs; starting twice is TB_ERR_INVALID. */
tb_status tb_scheduler_start(tb_scheduler_t *s);

/* Stops the thread (if it runs) and frees. Accepts NULL. */
void tb_scheduler_destroy(tb_scheduler_t *s);

#endif
