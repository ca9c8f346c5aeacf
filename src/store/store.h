/* SQLite store: one file in WAL mode with versioned migrations (PRAGMA user_version). It keeps
 * the processed-message records that make redelivery harmless, the dispatch audit, the per-tier
 * counters and latency histograms, the activity log and dead-letter records. Domain tables (repo
 * priority) have their own header, store/repo.h. All statements are prepared once at open,
 * reset on use and finalized at close. A tb_store_t is used by one thread at a time. */
#ifndef TB_STORE_STORE_H
#define TB_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/hist.h"
#include "tierbus.h"

typedef struct tb_store tb_store_t;

/* Opens (creating if needed) the database at |path| (":memory:" allowed), sets WAL,
 * synchronous=NORMAL, busy_timeout and foreign keys, and runs pending migrations. Caller frees
 * with tb_store_close(). TB_ERR_STORE with sqlite3_errmsg() text on failure. */
tb_status tb_store_open(tb_store_t **out, const char *path);

/* Finalizes statements and closes (stopping the checkpoint thread if one runs). Accepts NULL. */
void tb_store_close(tb_store_t *st);

/* Moves WAL checkpoints off this connection: SQLite's automatic checkpoint runs inside COMMIT,
 * so on the dispatcher's connection it would stall every message (a critical one included) for
 * the milliseconds that copying pages and syncing take. A thread with its own connection to
 * |path| runs passive checkpoints every |interval_ms| instead (0 = TB_STORE_CHECKPOINT_MS),
 * every 20 ms while this connection keeps writing. This connection checkpoints itself only to
 * restart a WAL past 1 GiB that it never pauses long enough for (store.c, WAL_BUSY_FRAMES). */
/* Between offloaded checkpoints. Shorter means smaller checkpoints, whose I/O delays the
 * dispatcher less each time, and more of them: in the backlog bench critical's p99 was 3.6-4.9 ms
 * at 200 ms, 4.0-4.4 ms at 500 ms, 5.2-6.1 ms at 2 s and 6.9-9.2 ms at 10 s, while the drain rate
 * rose with the interval (bench/RESULTS.md). The WAL holds about what one interval writes. */
#define TB_STORE_CHECKPOINT_MS 500

tb_status tb_store_offload_checkpoints(tb_store_t *st, const char *path, int interval_ms);

/* The WAL size, in frames (pages), past which a busy writer restarts the WAL itself (default
 * 65536, see store.c). Tests use a small one to see it at work. */
void tb_store_set_wal_restart(tb_store_t *st, int busy_frames);

/* Schema version after migrations (PRAGMA user_version); -1 if it cannot be read. */
int tb_store_schema_version(tb_store_t *st);

/* How long a statement waits for another connection's lock before it fails with TB_ERR_BUSY
 * (default 5000 ms; 0 fails at once). TB_ERR_INVALID for a negative value. */
tb_status tb_store_set_busy_timeout(tb_store_t *st, int ms);

/* Batch transaction. begin uses BEGIN IMMEDIATE so that a busy database shows up at begin, not at
 * the first write. Returns TB_ERR_BUSY when another process holds the write lock past the busy
 * timeout, TB_ERR_STORE otherwise. */
tb_status tb_store_begin(tb_store_t *st);
tb_status tb_store_commit(tb_store_t *st);
tb_status tb_store_rollback(tb_store_t *st);

/* Per-message savepoint inside the batch: a failing message is rolled back alone. Each savepoint
 * ends with exactly one of release (keep the message's writes) or rollback_to (undo them and end
 * the savepoint; do not release after it). Either without an open savepoint is TB_ERR_INVALID. */
tb_status tb_store_savepoint(tb_store_t *st);
tb_status tb_store_release(tb_store_t *st);
tb_status tb_store_rollback_to(tb_store_t *st);

/* A savepoint nested in the message's: a workflow step's own writes, undone alone when the step
 * fails while the failure's history row stays. step_end(st, 1) keeps them, step_end(st, 0) rolls
 * them back; either ends the savepoint. They nest (each end closes the latest begin): a step run
 * on from the one before it has one around all of its writes, and its run function one inside. */
tb_status tb_store_step_begin(tb_store_t *st);
tb_status tb_store_step_end(tb_store_t *st, int keep);

/* *seen = 1 if a message with |msg_id| was already processed (applied or dead-lettered). */
tb_status tb_store_is_processed(tb_store_t *st, const char *msg_id, int *seen);

typedef enum tb_outcome {
  TB_OUTCOME_APPLIED = 0,
  TB_OUTCOME_DEAD = 1,
  TB_OUTCOME_STALE = 2
} tb_outcome;

/* One dispatch: what ran, where it came from, and why it was chosen when it was. */
typedef struct tb_dispatch_record {
  const char *msg_id;
  const char *event_type;
  const char *tier;     /* tier the message was published on */
  const char *eff_tier; /* tier it was served as, after aging */
  int boost;            /* tiers gained by aging (0 = none) */
  const char *reason;   /* rule that fired: "highest-ready", "aged", ... */
  const char *stream;
  uint64_t stream_seq;
  uint64_t deliveries;
  int64_t published_us; /* envelope occurred_at */
  int64_t started_us;   /* handler start, wall clock */
  tb_outcome outcome;
} tb_dispatch_record_t;

/* Records |r| as processed; a second record with the same msg_id is TB_ERR_STORE (constraint). */
tb_status tb_store_mark_processed(tb_store_t *st, const tb_dispatch_record_t *r);

/* Records |r| as processed unless its msg_id already is: *fresh = 1 when this call wrote the row,
 * 0 for a duplicate. One statement does the dedupe check and the record, so the engine claims a
 * message before running its handler, inside the message's savepoint: a failing handler rolls
 * the claim back with its own writes. */
tb_status tb_store_claim(tb_store_t *st, const tb_dispatch_record_t *r, int *fresh);

/* One row of the activity log, the end-to-end trail of every event. Its payload is either the
 * event's protobuf bytes as published (|payload|, rendered by readers with the catalogue: the
 * activity handler stores them as they came, so that a trail nobody reads costs no rendering) or
 * JSON text (|payload_json|: workflow records, which render it for their own use, and rows written
 * before schema 16); both may be NULL. Strings and bytes are borrowed. */
typedef struct tb_activity {
  int64_t id, at_us; /* set by reads; a write takes the row id and the time itself */
  const char *msg_id, *event_type, *tier, *correlation_id, *key;
  const char *payload_json;
  const void *payload;
  size_t payload_len;
} tb_activity_t;

/* Appends |a| to the activity log; TB_ERR_INVALID for an empty msg_id. */
tb_status tb_store_activity(tb_store_t *st, const tb_activity_t *a);

/* Which rows tb_store_activity_list reads; NULL and 0 fields match everything. */
typedef struct tb_activity_filter {
  const char *event_type, *key, *correlation_id;
  int64_t since_us;    /* rows at or after this time */
  int64_t scan_newest; /* only the newest |scan_newest| rows are looked at (a bounded scan) */
  int64_t limit;       /* at most this many rows, newest first */
} tb_activity_filter_t;

/* Calls |fn| with each matching row, newest first, until it returns nonzero. The row and what it
 * points to are valid during the call only. */
tb_status tb_store_activity_list(tb_store_t *st, const tb_activity_filter_t *f,
                                 int (*fn)(void *arg, const tb_activity_t *a), void *arg);

/* Dead-letter entries are written and read through store/dlq.h. */

/* Adds |delta| to the named counter of (|tier|, |domain|): "processed", "failed", "dead",
 * "inversions", "redelivered", "redeliveries" or "stale" (tb_store_counters_t says what each
 * counts). |domain| is the catalogue domain of the stream the message came from, "" when it is
 * not known. TB_ERR_INVALID for an empty tier or name, or a NULL domain. */
tb_status tb_store_counter_add(tb_store_t *st, const char *tier, const char *domain,
                               const char *name, int64_t delta);

/* The counters of a tier or of one (tier, domain). */
typedef struct tb_store_counters {
  int64_t processed;    /* applied by a handler */
  int64_t failed;       /* handler attempts that failed (each retried attempt counts) */
  int64_t dead;         /* dead-lettered */
  int64_t inversions;   /* dispatches that served this tier while a better one waited */
  int64_t redelivered;  /* deliveries of a message already processed: absorbed, no effect */
  int64_t redeliveries; /* deliveries that were not a message's first, whatever came of them */
  int64_t stale;        /* ignored as older than what was applied for their key */
} tb_store_counters_t;

/* Fills out[i] with the counters of (|tier|, domains[i]) for each of the |n| domains (zeroes
 * where nothing was recorded). Counts of other domains, and those recorded without one (a
 * database from before the domain was kept), are in tb_store_tier_stats()'s totals only. */
tb_status tb_store_tier_domain_counters(tb_store_t *st, const char *tier,
                                        const char *const *domains, int n,
                                        tb_store_counters_t *out);

/* Merges a latency histogram for (tier, kind) into the stored one. kind is "start" (publish to
 * handler start) or "commit" (publish to commit). Empty histograms are a no-op. */
tb_status tb_store_hist_merge(tb_store_t *st, const char *tier, const char *kind,
                              const tb_hist_t *h);

/* Per-tier figures for `tierbus stats`, summed over every worker process that shares the file
 * and over the tier's domains. The counters mean what tb_store_counters_t's do. */
typedef struct tb_store_tier_stats {
  int64_t processed, failed, dead, inversions, redelivered, redeliveries, stale;
  tb_hist_t start;  /* publish -> handler start */
  tb_hist_t commit; /* publish -> commit */
} tb_store_tier_stats_t;

/* Fills |out| for tier |tier| (zeroes if nothing recorded). */
tb_status tb_store_tier_stats(tb_store_t *st, const char *tier, tb_store_tier_stats_t *out);

/* ------------------------------------------------------------------------------------------------
 * Transactional outbox (outbox.c): follow-up messages written in the transaction of the state
 * change that caused them, published later by the relay (engine/relay.h) with the row's msg_id as
 * Nats-Msg-Id, and deleted once the stream acked them.
 * --------------------------------------------------------------------------------------------- */

/* Queues |data| (|len| bytes, may be 0) for |subject| under |msg_id|, inside the caller's open
 * transaction or savepoint, so the row commits or rolls back with the state change. A second add
 * with the same msg_id is a no-op (TB_OK, the first row stays): a retried step that emits the same
 * follow-up again must send it once. |headers_json| is NULL or a JSON object of string values
 * (extra message headers); a malformed one, a non-string value, an empty key or a Nats-Msg-Id key
 * is TB_ERR_INVALID, as is an empty subject or msg_id, or a subject with a wildcard, space or
 * empty token. All arguments are borrowed. */
tb_status tb_store_outbox_add(tb_store_t *st, const char *subject, const char *msg_id,
                              const void *data, size_t len, const char *headers_json);

/* tb_store_outbox_add for a row held back until |not_before_us| (wall clock; 0 = now): a durable
 * timer. */
tb_status tb_store_outbox_add_at(tb_store_t *st, const char *subject, const char *msg_id,
                                 const void *data, size_t len, const char *headers_json,
                                 int64_t not_before_us);

/* Drops the row with |msg_id| if it is still waiting (a timer that is no longer wanted). *dropped
 * (may be NULL) = 1 when a row was removed. */
tb_status tb_store_outbox_cancel(tb_store_t *st, const char *msg_id, int *dropped);

/* One outbox row, copied out of SQLite. */
typedef struct tb_outbox_row {
  int64_t id; /* the row's key for delete and failed; ascending = oldest first */
  char *msg_id;
  char *subject;
  void *payload; /* |len| bytes; non-NULL even when len is 0 */
  size_t len;
  char *headers_json; /* NULL when the row has none */
  int64_t created_us;
  int attempts;     /* failed publish attempts so far */
  char *last_error; /* NULL until the first failure */
} tb_outbox_row_t;

/* Reads up to |limit| rows due at |now_us| (never attempted, or whose retry time has come),
 * oldest first, into a new array *rows of *n entries (NULL and 0 when none are due). Caller frees
 * with tb_store_outbox_free(*rows, *n). On failure nothing is returned and nothing leaks.
 * TB_ERR_INVALID for limit < 1. */
tb_status tb_store_outbox_next(tb_store_t *st, int64_t now_us, int limit, tb_outbox_row_t **rows,
                               int *n);
/* The same for the rows after row |after_id| only: a relay that published rows up to there, and
 * has not deleted them yet, reads on past them. */
tb_status tb_store_outbox_next_after(tb_store_t *st, int64_t now_us, int64_t after_id, int limit,
                                     tb_outbox_row_t **rows, int *n);
void tb_store_outbox_free(tb_outbox_row_t *rows, int n);

/* Removes row |id| once the stream acked it. A row that is already gone is not an error: another
 * relay sharing the file may have delivered it first. */
tb_status tb_store_outbox_delete(tb_store_t *st, int64_t id);

/* Records a failed publish of row |id|: attempts + 1, last_error = |error| (borrowed; NULL or ""
 * stores NULL), and holds the row back until |retry_at_us| (wall clock). A row that is gone is not
 * an error (delivered by another relay). */
tb_status tb_store_outbox_failed(tb_store_t *st, int64_t id, const char *error,
                                 int64_t retry_at_us);

/* *due_us = the earliest time a row becomes due (wall clock; <= now when one is due already),
 * or 0 when the outbox is empty. The relay sleeps until then rather than a whole interval, so
 * that durable timers fire on time. */
tb_status tb_store_outbox_next_due(tb_store_t *st, int64_t *due_us);

/* *n = rows waiting in the outbox, due or not. */
tb_status tb_store_outbox_count(tb_store_t *st, int64_t *n);

/* Borrowed handle for other store-layer modules (store/repo.c). Not for use above the store. */
struct sqlite3 *tb__store_db(tb_store_t *st);

/* The deployment id recorded in the database into |id| (*found 0 and "" when none yet), and
 * whether the database already holds state (*used: processed messages or workflow runs). */
tb_status tb_store_deployment(tb_store_t *s, char *id, size_t cap, int *found, int *used);

/* Records |id| as the database's deployment unless one is recorded already; |have| gets the id
 * recorded now (the other one when another process won the race). */
tb_status tb_store_set_deployment(tb_store_t *s, const char *id, char *have, size_t cap);

#endif
