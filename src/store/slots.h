/* Seed 001's per-service concurrency: slots in the shared database (service_slots, migration
 * "service slots"), taken by a workflow's command step when it publishes a command and given back
 * when the step's reply or timeout is handled. Every worker process takes slots inside its write
 * transaction, and SQLite lets one writer in at a time, so a limit holds across all of them, not
 * per process. A slot whose command is past its deadline no longer counts (its run died or was
 * cancelled without coming back to it). Functions run inside the caller's transaction. */
#ifndef TB_STORE_SLOTS_H
#define TB_STORE_SLOTS_H

#include <stdint.h>

#include "store/store.h"

/* Takes a slot of |service| (limit |limit| >= 1) for step |step| of run |workflow_id|, whose
 * command |command_id| is due back by |expires_us|. Slots that expired by |now_us| are dropped
 * first. *got = 1 when the slot was taken: fewer than |limit| others are held, or this step
 * already held one (taking it again moves it to the new command). *got = 0 and nothing changes
 * when the service is at its limit. */
tb_status tb_store_slot_acquire(tb_store_t *st, const char *service, const char *workflow_id,
                                const char *step, const char *command_id, int limit, int64_t now_us,
                                int64_t expires_us, int *got);

/* Gives back the slot of step |step| of run |workflow_id| (every slot of the run when |step| is
 * NULL or ""). Releasing a slot not held does nothing. */
tb_status tb_store_slot_release(tb_store_t *st, const char *workflow_id, const char *step);

/* *n = the slots of |service| held and not expired at |now_us|. */
tb_status tb_store_slot_in_use(tb_store_t *st, const char *service, int64_t now_us, int64_t *n);

#endif
