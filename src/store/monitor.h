/* Read-only aggregates for monitoring (seed 000's per-tier figures, seed 001's job figures, seed
 * 002's telemetry, issue 11's Prometheus list): run durations and counts per tier, active runs,
 * escalations per tier and rule, the outbox's lag, scheduler runs, and the repository jobs that
 * applied. Every query reads through an index or a bounded range, because /metrics runs them on
 * each scrape. Ownership: strings passed to callbacks are borrowed for the call. */
#ifndef TB_STORE_MONITOR_H
#define TB_STORE_MONITOR_H

#include <stdint.h>

#include "store/store.h"

/* The runs of one tier that finished (completed or failed) since a point in time. */
typedef struct tb_mon_runs {
  const char *tier;
  int64_t finished, completed, failed;
  double avg_us;
  int64_t p50_us, p99_us, max_us; /* from creation to finish; exact ranks, not buckets */
} tb_mon_runs_t;

/* Calls |fn| once per tier with runs that finished at or after |since_us|; non-zero stops. */
tb_status tb_store_mon_runs(tb_store_t *st, int64_t since_us,
                            int (*fn)(void *arg, const tb_mon_runs_t *r), void *arg);

/* Runs not finished, by tier and status (running, waiting, sleeping); non-zero stops. */
tb_status tb_store_mon_active(tb_store_t *st,
                              int (*fn)(void *arg, const char *tier, const char *status, int64_t n),
                              void *arg);

/* Escalations of all time by the tier they raised a run to and the rule; non-zero stops. */
tb_status tb_store_mon_escalations(
    tb_store_t *st, int (*fn)(void *arg, const char *tier, const char *rule, int64_t n), void *arg);

/* The outbox at |now_us|: rows due (waiting for a relay), rows held back (timers and retries not
 * yet due), and since when the oldest due row has waited (0 when none is due). */
tb_status tb_store_mon_outbox(tb_store_t *st, int64_t now_us, int64_t *due, int64_t *held,
                              int64_t *oldest_due_us);

/* Outbox rows held back at |now_us| (durable timers, retry delays: seed 001's "delayed" jobs) by
 * the tier of their event subject ("" for a command or another subject); |fn| gets (tier, "",
 * n); non-zero stops. */
tb_status tb_store_mon_delayed(tb_store_t *st, int64_t now_us,
                               int (*fn)(void *arg, const char *tier, const char *unused,
                                         int64_t n),
                               void *arg);

/* Scheduler runs kept in sched_runs (old ones are purged with old jobs) by task and status;
 * non-zero stops. */
tb_status tb_store_mon_sched_runs(tb_store_t *st,
                                  int (*fn)(void *arg, const char *task, const char *status,
                                            int64_t n),
                                  void *arg);

/* *truncated = 1 when a scan of the activity log's last |max_rows| rows (a bound that keeps a
 * scrape's cost fixed: the log has no index on the event type) misses rows at or after
 * |since_us|. */
tb_status tb_store_mon_activity_truncated(tb_store_t *st, int64_t since_us, int64_t max_rows,
                                          int *truncated);

#endif
