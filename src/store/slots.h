/* Seed 001's per-service concurrency: slots in the shared database (service_slots, migration
 * "service slots"), taken by a workflow's command step when it publishes a command and given back
 * when the step's reply or timeout is handled. Every worker process takes slots inside its write
 * transaction, and SQLite lets one writer in at a time, so a limit holds across all of them, not
 * per process. A step that finds its service at the limit gets a waiting row instead, which keeps
 * its place: slots go to waiting steps in the order they first waited (FIFO), so no run starves.
 * A slot whose command is past its deadline no longer counts (its run died or was cancelled
 * without coming back to it); a waiting row that is not renewed expires the same way. Functions
 * run inside the caller's transaction. */
#ifndef TB_STORE_SLOTS_H
#define TB_STORE_SLOTS_H

#include <stdint.h>

#include "store/store.h"

/* Takes a slot of |service| (limit |limit| >= 1) for step |step| of run |workflow_id|, whose
 * command |command_id| is due back by |expires_us|. Rows that expired by |now_us| are dropped
 * first. The step gets the slot (*got = 1) when fewer than |limit| others hold one and fewer
 * steps waited longer than it than there are free slots; a step that held its slot already may
 * take it again (a retry's new command). Otherwise *got = 0 and the step waits: its waiting row
 * is written (or renewed) with |wait_expires_us|, keeping the time it first waited. *ahead (may
 * be NULL) = the steps that have waited longer than this one. */
tb_status tb_store_slot_acquire(tb_store_t *st, const char *service, const char *workflow_id,
                                const char *step, const char *command_id, int limit, int64_t now_us,
                                int64_t expires_us, int64_t wait_expires_us, int *got,
                                int64_t *ahead);

/* Gives back the slot (or the waiting row) of step |step| of run |workflow_id| (every row of the
 * run when |step| is NULL or ""). Releasing what is not held does nothing. */
tb_status tb_store_slot_release(tb_store_t *st, const char *workflow_id, const char *step);

/* *n = the slots of |service| held and not expired at |now_us| (waiting rows not counted). */
tb_status tb_store_slot_in_use(tb_store_t *st, const char *service, int64_t now_us, int64_t *n);

#endif
