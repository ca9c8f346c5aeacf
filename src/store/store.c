/* SQLite store: connection set-up, transactions and savepoints, and the engine's bookkeeping
 * tables (processed records, activity log, dead letters, per-tier counters and histograms). */
#include "store/store.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bgthread.h"
#include "core/clock.h"
#include "core/status.h"
#include "core/util.h"
#include "store/internal.h"

#define DEFAULT_BUSY_MS 5000

static const char *const stmt_sql[TB__ST_COUNT] = {
#define TB__STMT_SQL(name, sql) [TB__ST_##name] = sql,
    TB__STORE_STMTS(TB__STMT_SQL)
#undef TB__STMT_SQL
};

static const char *const stmt_name[TB__ST_COUNT] = {
#define TB__STMT_NAME(name, sql) [TB__ST_##name] = #name,
    TB__STORE_STMTS(TB__STMT_NAME)
#undef TB__STMT_NAME
};

/* ------------------------------------------------------------------------------------------------
 * Helpers shared with repo.c
 * --------------------------------------------------------------------------------------------- */

int tb__bind_opt_text(sqlite3_stmt *stmt, int i, const char *s) {
  if (s == NULL || s[0] == '\0') return sqlite3_bind_null(stmt, i);
  return sqlite3_bind_text(stmt, i, s, -1, SQLITE_STATIC);
}

void tb__col_copy(sqlite3_stmt *stmt, int col, char *buf, size_t cap) {
  const char *t = (const char *)sqlite3_column_text(stmt, col);
  snprintf(buf, cap, "%s", t ? t : "");
}

char *tb__col_dup(sqlite3_stmt *stmt, int col, int *oom) {
  const char *t = (const char *)sqlite3_column_text(stmt, col);
  if (t == NULL) return NULL;
  char *s = strdup(t);
  if (s == NULL) *oom = 1;
  return s;
}

tb_status tb__exec_done(tb_store_t *st, sqlite3_stmt *stmt, int *changes, const char *what,
                        const char *id) {
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "%s %s", what, id);
  if (s == TB_OK && changes != NULL) *changes = sqlite3_changes(st->db);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb__store_fail(sqlite3 *db, int rc, const char *fmt, ...) {
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  int primary = rc & 0xff;
  tb_status s = (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) ? TB_ERR_BUSY : TB_ERR_STORE;
  return tb__fail(s, "%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

struct sqlite3 *tb__store_db(tb_store_t *st) {
  return st->db;
}

/* Runs a statement that returns no rows (transaction control, inserts). */
static tb_status exec_stmt(tb_store_t *st, tb__store_stmt_id id, const char *what) {
  sqlite3_stmt *stmt = tb__stmt(st, id);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "%s", what);
  tb__stmt_done(stmt);
  return s;
}

/* ------------------------------------------------------------------------------------------------
 * Open and close
 * --------------------------------------------------------------------------------------------- */

/* Sets WAL and checks that SQLite took it: a file database that silently stays in rollback mode
 * would block readers during every batch. In-memory databases report "memory" and are fine. */
static tb_status set_wal(sqlite3 *db, const char *path) {
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  /* Two processes switching a new file to WAL at once: the loser's lock upgrade returns BUSY
   * without the busy handler (SQLite's deadlock avoidance), so it waits here instead. */
  for (int waited_ms = 0; (rc & 0xff) == SQLITE_BUSY && waited_ms < DEFAULT_BUSY_MS;
       waited_ms += 10) {
    sqlite3_reset(stmt);
    tb_sleep_us(10000);
    rc = sqlite3_step(stmt);
  }
  if (rc != SQLITE_ROW) {
    tb_status s = tb__store_fail(db, rc, "store %s: journal_mode=WAL", path);
    sqlite3_finalize(stmt);
    return s;
  }
  const char *mode = (const char *)sqlite3_column_text(stmt, 0);
  const char *file = sqlite3_db_filename(db, "main");
  tb_status s = TB_OK;
  if ((file != NULL && file[0] != '\0') && (mode == NULL || strcmp(mode, "wal") != 0))
    s = tb__fail(TB_ERR_STORE, "store %s: journal_mode=WAL not accepted (mode is '%s')", path,
                 mode ? mode : "");
  sqlite3_finalize(stmt);
  return s;
}

static tb_status prepare_all(tb_store_t *st, const char *path) {
  for (int i = 0; i < TB__ST_COUNT; i++) {
    int rc =
        sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL);
    if (rc != SQLITE_OK)
      return tb__store_fail(st->db, rc, "store %s: prepare %s", path, stmt_name[i]);
  }
  return TB_OK;
}

tb_status tb_store_open(tb_store_t **out, const char *path) {
  if (out == NULL || path == NULL) return tb__fail(TB_ERR_INVALID, "store open: NULL argument");
  tb_store_t *st = calloc(1, sizeof(*st));
  if (st == NULL) return tb__fail(TB_ERR_NOMEM, "store %s: out of memory", path);
  tb_status s = TB_OK;
  int rc = sqlite3_open_v2(path, &st->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    s = st->db ? tb__store_fail(st->db, rc, "store %s: open", path)
               : tb__fail(TB_ERR_NOMEM, "store %s: open: out of memory", path);
    goto fail;
  }
  sqlite3_extended_result_codes(st->db, 1);
  /* The busy timeout comes first: switching to WAL and migrating both need locks that another
   * process opening the same file at the same moment may hold. */
  sqlite3_busy_timeout(st->db, DEFAULT_BUSY_MS);
  st->busy_ms = DEFAULT_BUSY_MS;
  s = set_wal(st->db, path);
  if (s != TB_OK) goto fail;
  /* 16 MiB of page cache: the processed record's id index takes random message ids from foreign
   * publishers, whose inserts touch pages all over the tree, and the default 2 MiB turned them
   * into reads. */
  rc = sqlite3_exec(
      st->db,
      "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384; "
      "PRAGMA temp_store = MEMORY",
      NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    s = tb__store_fail(st->db, rc, "store %s: pragmas", path);
    goto fail;
  }
  s = tb__store_migrate(st->db, path);
  if (s == TB_OK) s = tb__repo_register_functions(st->db);
  if (s != TB_OK) goto fail;
  s = prepare_all(st, path);
  if (s != TB_OK) goto fail;
  *out = st;
  return TB_OK;
fail:
  tb_store_close(st);
  return s;
}

/* ------------------------------------------------------------------------------------------------
 * Background checkpoints
 * --------------------------------------------------------------------------------------------- */

/* Why the writer takes part in checkpoints at all: SQLite starts the WAL again from its front
 * only when a write transaction begins with every frame copied into the database file. A busy
 * executor begins its next batch right after each commit, so the checkpointer's passes, each
 * overtaken by a commit, never get there: the WAL grew for the worker's whole life (1.3 GB after
 * a million events, issue 9), every commit wrote file pages the kernel first had to zero, and
 * every page lookup searched a longer WAL index. A writer that pauses needs nothing: the
 * checkpointer's next pass copies everything and the writer's next begin restarts the WAL. A
 * writer that never pauses must take the last pass itself, between a commit and its next begin,
 * and that pass stalls it for its syncs of the WAL and the file (10 to 80 ms under load on the
 * bench machine, up to 95 ms), however little is left to copy. So it does so only past
 * WAL_BUSY_FRAMES, once the checkpointer has copied all but WAL_RESIDUE_FRAMES: one stall per GiB
 * of WAL, about 800k events. Each stall holds every critical event that arrives meanwhile, so
 * their rate decides the critical tier's p99: a threshold of 32 MiB gave 29-50 ms in the backlog
 * bench, 256 MiB 11-16 ms, 1 GiB 6.7-9 ms (ready -> start inside the worker 1.7-2.2 ms; bench/
 * RESULTS.md, issue 9 third pass). Running the pass whenever the executor found its queues empty
 * did no better, because a critical trickle empties them every few milliseconds. The cost is a
 * WAL file of up to 1 GiB on disk, reused from its front after each restart (never truncated, so
 * its pages are not zeroed again). */
#define WAL_BUSY_FRAMES 262144 /* 1 GiB with 4 KiB pages; tb_store_set_wal_restart() */
#define WAL_RESIDUE_FRAMES 256 /* what the checkpointer's last pass may have left */
/* While the writer is busy, the checkpointer follows it this closely instead of every interval,
 * so that the residue stays small. */
#define CHECKPOINT_BEHIND_MS 20

struct tb_checkpointer {
  sqlite3 *db;           /* owned: this thread's connection */
  tb_bgthread_t *thread; /* owned */
  int last_in_wal;       /* the WAL's frames at the last pass; the thread's own */
  atomic_int backfilled; /* the WAL's frames copied into the file at the end of the last pass,
                          * or -1 before the first: written here, read by the writer */
};

static int64_t checkpoint_tick(void *arg, int stopping) {
  struct tb_checkpointer *c = arg;
  (void)stopping;
  /* PASSIVE never waits for the writer; it copies what was committed when it began, and what
   * it cannot copy now it copies next time. */
  int in_wal = 0, copied = 0;
  int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &in_wal, &copied);
  if (rc != SQLITE_OK) return TB_BGTHREAD_PERIODIC; /* the writer's own pass holds the lock */
  atomic_store_explicit(&c->backfilled, copied, memory_order_relaxed);
  /* The WAL grew since the last pass (or started again from its front): the writer is busy. */
  int busy = in_wal != c->last_in_wal;
  c->last_in_wal = in_wal;
  return busy ? CHECKPOINT_BEHIND_MS : TB_BGTHREAD_PERIODIC;
}

/* The writer's connection's WAL hook, after each commit: |in_wal| frames are in the WAL. */
static int writer_hook(void *arg, sqlite3 *db, const char *name, int in_wal) {
  tb_store_t *st = arg;
  if (in_wal < st->wal_busy_frames) return SQLITE_OK;
  int backfilled = atomic_load_explicit(&st->ckpt->backfilled, memory_order_relaxed);
  /* A count above |in_wal| is from before the WAL's last restart. */
  if (backfilled < 0 || backfilled > in_wal || in_wal - backfilled > WAL_RESIDUE_FRAMES) {
    tb_bgthread_kick(st->ckpt->thread);
    return SQLITE_OK;
  }
  /* Copies what the checkpointer has not, so that the next begin starts the WAL again. Busy
   * (the checkpointer's pass under way) is fine: the next commit tries again. */
  sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  return SQLITE_OK;
}

void tb_store_set_wal_restart(tb_store_t *st, int busy_frames) {
  st->wal_busy_frames = busy_frames;
}

tb_status tb_store_offload_checkpoints(tb_store_t *st, const char *path, int interval_ms) {
  if (st->ckpt != NULL) return TB_OK;
  struct tb_checkpointer *c = calloc(1, sizeof(*c));
  if (c == NULL) return tb__fail(TB_ERR_NOMEM, "store %s: checkpointer", path);
  atomic_init(&c->backfilled, -1);
  int rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    tb_status s = tb__store_fail(c->db, rc, "store %s: checkpoint connection", path);
    sqlite3_close(c->db);
    free(c);
    return s;
  }
  sqlite3_busy_timeout(c->db, DEFAULT_BUSY_MS);
  /* A connection opens the WAL on its first read: until then sqlite3_wal_checkpoint_v2() finds
   * no WAL, returns SQLITE_OK and copies nothing, and the WAL grew for the worker's whole life. */
  rc = sqlite3_exec(c->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    tb_status s = tb__store_fail(c->db, rc, "store %s: checkpoint connection: first read", path);
    sqlite3_close(c->db);
    free(c);
    return s;
  }
  /* The first checkpoint comes one interval in: the WAL was just opened and holds nothing yet.
   * Copying pages can wait; the dispatcher's threads cannot. On a small machine the scheduler
   * otherwise lets a checkpoint delay the delivery of a critical message, hence the nice value. */
  char name[256];
  snprintf(name, sizeof(name), "store %s: checkpointer", path);
  tb_status s = tb_bgthread_start(
      &c->thread,
      &(tb_bgthread_opts_t){.name = name,
                            .tick = checkpoint_tick,
                            .arg = c,
                            .interval_ms = interval_ms > 0 ? interval_ms : TB_STORE_CHECKPOINT_MS,
                            .delay_first = 1,
                            .nice = 10});
  if (s != TB_OK) {
    sqlite3_close(c->db);
    free(c);
    return s;
  }
  st->ckpt = c;
  if (st->wal_busy_frames == 0) st->wal_busy_frames = WAL_BUSY_FRAMES;
  /* The hook replaces SQLite's automatic checkpoint, itself a WAL hook: the writer's only pass
   * is the rare one of WAL_BUSY_FRAMES. */
  sqlite3_wal_hook(st->db, writer_hook, st);
  return TB_OK;
}

/* Stops the thread, then checkpoints once more so that a clean close leaves a short WAL. */
static void stop_checkpointer(struct tb_checkpointer *c) {
  if (c == NULL) return;
  tb_bgthread_stop(c->thread);
  sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  sqlite3_close(c->db);
  free(c);
}

void tb_store_close(tb_store_t *st) {
  if (st == NULL) return;
  if (st->ckpt != NULL) sqlite3_wal_hook(st->db, NULL, NULL); /* the hook's argument goes next */
  stop_checkpointer(st->ckpt);
  for (int i = 0; i < TB__ST_COUNT; i++) sqlite3_finalize(st->stmt[i]);
  sqlite3_close(st->db); /* rolls back an open transaction */
  free(st);
}

tb_status tb_store_set_busy_timeout(tb_store_t *st, int ms) {
  if (ms < 0) return tb__fail(TB_ERR_INVALID, "store busy timeout: %d ms is negative", ms);
  int rc = sqlite3_busy_timeout(st->db, ms);
  if (rc != SQLITE_OK) return tb__store_fail(st->db, rc, "store busy timeout %d ms", ms);
  st->busy_ms = ms;
  return TB_OK;
}

int tb_store_schema_version(tb_store_t *st) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_USER_VERSION);
  int v = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : -1;
  tb__stmt_done(stmt);
  return v;
}

/* ------------------------------------------------------------------------------------------------
 * Transactions
 * --------------------------------------------------------------------------------------------- */

tb_status tb_store_begin(tb_store_t *st) {
  tb_status s = exec_stmt(st, TB__ST_BEGIN, "begin batch");
  if (s == TB_OK) st->savepoints = 0;
  return s;
}

tb_status tb_store_commit(tb_store_t *st) {
  tb_status s = exec_stmt(st, TB__ST_COMMIT, "commit batch");
  if (s == TB_OK) st->savepoints = 0;
  return s;
}

/* SQLite may already have rolled back on its own (SQLITE_FULL, an I/O error); then there is
 * nothing to undo and that is not a second failure. */
tb_status tb_store_rollback(tb_store_t *st) {
  st->savepoints = 0;
  if (sqlite3_get_autocommit(st->db)) return TB_OK;
  return exec_stmt(st, TB__ST_ROLLBACK, "rollback batch");
}

tb_status tb_store_savepoint(tb_store_t *st) {
  tb_status s = exec_stmt(st, TB__ST_SAVEPOINT, "savepoint");
  if (s == TB_OK) st->savepoints++;
  return s;
}

tb_status tb_store_release(tb_store_t *st) {
  if (st->savepoints == 0)
    return tb__fail(TB_ERR_INVALID, "release savepoint: no message savepoint is open");
  tb_status s = exec_stmt(st, TB__ST_RELEASE, "release savepoint");
  if (s == TB_OK) st->savepoints--;
  return s;
}

tb_status tb_store_step_begin(tb_store_t *st) {
  return exec_stmt(st, TB__ST_STEP_SAVEPOINT, "step savepoint");
}

tb_status tb_store_step_end(tb_store_t *st, int keep) {
  if (keep) return exec_stmt(st, TB__ST_STEP_RELEASE, "release step savepoint");
  tb_status s = exec_stmt(st, TB__ST_STEP_ROLLBACK_TO, "roll back step savepoint");
  if (s == TB_OK) s = exec_stmt(st, TB__ST_STEP_RELEASE, "release step savepoint");
  return s;
}

/* ROLLBACK TO leaves the savepoint open; it is released at once so that a batch with many failed
 * messages does not stack savepoints, and so that rollback_to ends the message like release. */
tb_status tb_store_rollback_to(tb_store_t *st) {
  if (st->savepoints == 0)
    return tb__fail(TB_ERR_INVALID, "rollback to savepoint: no message savepoint is open");
  tb_status s = exec_stmt(st, TB__ST_ROLLBACK_TO, "rollback to savepoint");
  if (s == TB_OK) s = exec_stmt(st, TB__ST_RELEASE, "release savepoint after rollback");
  if (s == TB_OK) st->savepoints--;
  return s;
}

/* ------------------------------------------------------------------------------------------------
 * Processed records, activity log, dead letters
 * --------------------------------------------------------------------------------------------- */

tb_status tb_store_is_processed(tb_store_t *st, const char *msg_id, int *seen) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_IS_PROCESSED);
  sqlite3_bind_text(stmt, 1, msg_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW)
    *seen = 1;
  else if (rc == SQLITE_DONE)
    *seen = 0;
  else
    s = tb__store_fail(st->db, rc, "is processed '%s'", msg_id);
  tb__stmt_done(stmt);
  return s;
}

static const char *outcome_text(tb_outcome o) {
  switch (o) {
  case TB_OUTCOME_APPLIED:
    return "applied";
  case TB_OUTCOME_DEAD:
    return "dead";
  case TB_OUTCOME_STALE:
    return "stale";
  }
  return NULL;
}

/* Binds and runs MARK_PROCESSED or CLAIM_PROCESSED; *inserted = 1 if a row was written. */
static tb_status write_processed(tb_store_t *st, tb__store_stmt_id id,
                                 const tb_dispatch_record_t *r, int *inserted) {
  const char *outcome = outcome_text(r->outcome);
  if (r->msg_id == NULL || r->msg_id[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "mark processed: empty msg_id");
  if (outcome == NULL)
    return tb__fail(TB_ERR_INVALID, "mark processed '%s': outcome %d is not an outcome", r->msg_id,
                    (int)r->outcome);
  sqlite3_stmt *stmt = tb__stmt(st, id);
  sqlite3_bind_text(stmt, 1, r->msg_id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 2, r->event_type);
  tb__bind_opt_text(stmt, 3, r->tier);
  tb__bind_opt_text(stmt, 4, r->eff_tier);
  sqlite3_bind_int(stmt, 5, r->boost);
  tb__bind_opt_text(stmt, 6, r->reason);
  tb__bind_opt_text(stmt, 7, r->stream);
  sqlite3_bind_int64(stmt, 8, (sqlite3_int64)r->stream_seq);
  sqlite3_bind_int64(stmt, 9, (sqlite3_int64)r->deliveries);
  sqlite3_bind_int64(stmt, 10, r->published_us);
  sqlite3_bind_int64(stmt, 11, r->started_us);
  sqlite3_bind_int64(stmt, 12, tb_wall_us());
  sqlite3_bind_text(stmt, 13, outcome, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s =
      rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "mark processed '%s'", r->msg_id);
  if (s == TB_OK && inserted) *inserted = sqlite3_changes(st->db) > 0;
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_mark_processed(tb_store_t *st, const tb_dispatch_record_t *r) {
  return write_processed(st, TB__ST_MARK_PROCESSED, r, NULL);
}

tb_status tb_store_claim(tb_store_t *st, const tb_dispatch_record_t *r, int *fresh) {
  return write_processed(st, TB__ST_CLAIM_PROCESSED, r, fresh);
}

tb_status tb_store_activity(tb_store_t *st, const tb_activity_t *a) {
  if (a->msg_id == NULL || a->msg_id[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "activity log: empty msg_id (event %s)",
                    a->event_type ? a->event_type : "?");
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_ACTIVITY);
  sqlite3_bind_text(stmt, 1, a->msg_id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 2, a->event_type);
  tb__bind_opt_text(stmt, 3, a->tier);
  tb__bind_opt_text(stmt, 4, a->correlation_id);
  tb__bind_opt_text(stmt, 5, a->key);
  tb__bind_opt_text(stmt, 6, a->payload_json);
  if (a->payload != NULL) /* an empty payload is an empty blob, not a missing one */
    sqlite3_bind_blob64(stmt, 7, a->payload_len > 0 ? a->payload : "", a->payload_len,
                        SQLITE_STATIC);
  else
    sqlite3_bind_null(stmt, 7);
  sqlite3_bind_int64(stmt, 8, tb_wall_us());
  int rc = sqlite3_step(stmt);
  tb_status s =
      rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "activity log '%s'", a->msg_id);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_activity_list(tb_store_t *st, const tb_activity_filter_t *f,
                                 int (*fn)(void *arg, const tb_activity_t *a), void *arg) {
  /* Built per call from fixed clauses (every value is bound), so that each filter can use the
   * table's rowid order and the correlation index; it is read by operators and the monitor, not
   * per event. */
  char sql[640];
  int n = snprintf(sql, sizeof(sql),
                   "SELECT id, at_us, msg_id, event_type, tier, correlation_id, key, payload_json, "
                   "payload FROM activity_log WHERE 1");
  if (f->scan_newest > 0)
    n += snprintf(sql + n, sizeof(sql) - (size_t)n,
                  " AND id > (SELECT coalesce(max(id), 0) FROM activity_log) - ?1");
  if (f->event_type != NULL)
    n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND event_type = ?2");
  if (f->key != NULL) n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND key = ?3");
  if (f->correlation_id != NULL)
    n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND correlation_id = ?4");
  if (f->since_us > 0) n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND at_us >= ?5");
  n += snprintf(sql + n, sizeof(sql) - (size_t)n, " ORDER BY id DESC");
  if (f->limit > 0) snprintf(sql + n, sizeof(sql) - (size_t)n, " LIMIT ?6");
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL);
  if (rc != SQLITE_OK) return tb__store_fail(st->db, rc, "activity list");
  sqlite3_bind_int64(stmt, 1, f->scan_newest);
  if (f->event_type) sqlite3_bind_text(stmt, 2, f->event_type, -1, SQLITE_STATIC);
  if (f->key) sqlite3_bind_text(stmt, 3, f->key, -1, SQLITE_STATIC);
  if (f->correlation_id) sqlite3_bind_text(stmt, 4, f->correlation_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 5, f->since_us);
  sqlite3_bind_int64(stmt, 6, f->limit);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_activity_t a = {
        .id = sqlite3_column_int64(stmt, 0),
        .at_us = sqlite3_column_int64(stmt, 1),
        .msg_id = (const char *)sqlite3_column_text(stmt, 2),
        .event_type = (const char *)sqlite3_column_text(stmt, 3),
        .tier = (const char *)sqlite3_column_text(stmt, 4),
        .correlation_id = (const char *)sqlite3_column_text(stmt, 5),
        .key = (const char *)sqlite3_column_text(stmt, 6),
        .payload_json = (const char *)sqlite3_column_text(stmt, 7),
        .payload =
            sqlite3_column_type(stmt, 8) == SQLITE_NULL ? NULL : sqlite3_column_blob(stmt, 8),
    };
    a.payload_len = (size_t)sqlite3_column_bytes(stmt, 8);
    if (a.payload == NULL && sqlite3_column_type(stmt, 8) != SQLITE_NULL) a.payload = "";
    if (fn(arg, &a) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "activity list");
  sqlite3_finalize(stmt);
  return s;
}

/* ------------------------------------------------------------------------------------------------
 * Counters and histograms
 * --------------------------------------------------------------------------------------------- */

tb_status tb_store_counter_add(tb_store_t *st, const char *tier, const char *domain,
                               const char *name, int64_t delta) {
  if (tier == NULL || tier[0] == '\0' || name == NULL || name[0] == '\0' || domain == NULL)
    return tb__fail(TB_ERR_INVALID,
                    "counter add: empty tier or counter name, or no domain ('%s', '%s', '%s')",
                    tier ? tier : "", domain ? domain : "(null)", name ? name : "");
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_COUNTER_ADD);
  sqlite3_bind_text(stmt, 1, tier, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, domain, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 4, delta);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE ? TB_OK
                                  : tb__store_fail(st->db, rc, "counter add %s/%s.%s %+lld", tier,
                                                   domain, name, (long long)delta);
  tb__stmt_done(stmt);
  return s;
}

static int valid_kind(const char *kind) {
  return kind != NULL && (strcmp(kind, "start") == 0 || strcmp(kind, "commit") == 0);
}

/* Adds the non-zero buckets and the summary under one savepoint, so that a failure half-way
 * leaves the stored histogram as it was whether or not a batch transaction is open. */
tb_status tb_store_hist_merge(tb_store_t *st, const char *tier, const char *kind,
                              const tb_hist_t *h) {
  if (tier == NULL || tier[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "histogram merge: empty tier");
  if (!valid_kind(kind))
    return tb__fail(TB_ERR_INVALID, "histogram merge %s: kind '%s' is not 'start' or 'commit'",
                    tier, kind ? kind : "");
  if (h->total == 0) return TB_OK;
  tb_status s = exec_stmt(st, TB__ST_HIST_SAVEPOINT, "histogram merge: savepoint");
  if (s != TB_OK) return s;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_HIST_BUCKET_ADD);
  for (int b = 0; b < TB_HIST_BUCKETS && s == TB_OK; b++) {
    if (h->counts[b] == 0) continue;
    sqlite3_bind_text(stmt, 1, tier, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 3, b);
    sqlite3_bind_int64(stmt, 4, (sqlite3_int64)h->counts[b]);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE)
      s = tb__store_fail(st->db, rc, "histogram merge %s/%s bucket %d", tier, kind, b);
    tb__stmt_done(stmt);
  }
  if (s == TB_OK) {
    stmt = tb__stmt(st, TB__ST_HIST_SUMMARY_ADD);
    sqlite3_bind_text(stmt, 1, tier, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)h->total);
    sqlite3_bind_int64(stmt, 4, h->max);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE)
      s = tb__store_fail(st->db, rc, "histogram merge %s/%s summary", tier, kind);
    tb__stmt_done(stmt);
  }
  if (s != TB_OK) {
    /* Keep the first failure's detail; the undo is best effort. */
    sqlite3_step(tb__stmt(st, TB__ST_HIST_ROLLBACK_TO));
    tb__stmt_done(tb__stmt(st, TB__ST_HIST_ROLLBACK_TO));
    sqlite3_step(tb__stmt(st, TB__ST_HIST_RELEASE));
    tb__stmt_done(tb__stmt(st, TB__ST_HIST_RELEASE));
    return s;
  }
  return exec_stmt(st, TB__ST_HIST_RELEASE, "histogram merge: release");
}

/* Adds |v| to the field of |out| that counter |name| is stored as; an unknown name (a newer
 * build's counter) is left out. */
static void add_counter(tb_store_counters_t *out, const char *name, int64_t v) {
  static const struct {
    const char *name;
    size_t off;
  } fields[] = {
      {"processed", offsetof(tb_store_counters_t, processed)},
      {"failed", offsetof(tb_store_counters_t, failed)},
      {"dead", offsetof(tb_store_counters_t, dead)},
      {"inversions", offsetof(tb_store_counters_t, inversions)},
      {"redelivered", offsetof(tb_store_counters_t, redelivered)},
      {"redeliveries", offsetof(tb_store_counters_t, redeliveries)},
      {"stale", offsetof(tb_store_counters_t, stale)},
  };
  for (size_t i = 0; i < TB_COUNTOF(fields); i++)
    if (strcmp(fields[i].name, name) == 0) *(int64_t *)((char *)out + fields[i].off) += v;
}

tb_status tb_store_tier_domain_counters(tb_store_t *st, const char *tier,
                                        const char *const *domains, int n,
                                        tb_store_counters_t *out) {
  memset(out, 0, (size_t)n * sizeof(*out));
  int rc;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_STATS_DOMAIN_COUNTERS);
  sqlite3_bind_text(stmt, 1, tier, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *domain = (const char *)sqlite3_column_text(stmt, 0);
    const char *name = (const char *)sqlite3_column_text(stmt, 1);
    if (domain == NULL || name == NULL) continue;
    /* A linear match: a catalogue has a handful of domains (TB_MAX_DOMAINS at most). */
    for (int d = 0; d < n; d++)
      if (strcmp(domains[d], domain) == 0)
        add_counter(&out[d], name, sqlite3_column_int64(stmt, 2));
  }
  tb_status s = rc == SQLITE_DONE
                    ? TB_OK
                    : tb__store_fail(st->db, rc, "tier stats %s: counters by domain", tier);
  tb__stmt_done(stmt);
  return s;
}

static tb_hist_t *hist_of(tb_store_tier_stats_t *out, const char *kind) {
  if (kind == NULL) return NULL;
  if (strcmp(kind, "start") == 0) return &out->start;
  if (strcmp(kind, "commit") == 0) return &out->commit;
  return NULL;
}

tb_status tb_store_tier_stats(tb_store_t *st, const char *tier, tb_store_tier_stats_t *out) {
  memset(out, 0, sizeof(*out));
  int rc;
  tb_store_counters_t c = {0};
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_STATS_COUNTERS);
  sqlite3_bind_text(stmt, 1, tier, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(stmt, 0);
    if (name) add_counter(&c, name, sqlite3_column_int64(stmt, 1));
  }
  tb_status s =
      rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "tier stats %s: counters", tier);
  tb__stmt_done(stmt);
  if (s != TB_OK) return s;
  out->processed = c.processed;
  out->failed = c.failed;
  out->dead = c.dead;
  out->inversions = c.inversions;
  out->redelivered = c.redelivered;
  out->redeliveries = c.redeliveries;
  out->stale = c.stale;

  stmt = tb__stmt(st, TB__ST_STATS_BUCKETS);
  sqlite3_bind_text(stmt, 1, tier, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_hist_t *h = hist_of(out, (const char *)sqlite3_column_text(stmt, 0));
    int b = sqlite3_column_int(stmt, 1);
    /* A file written by a build with more buckets still adds up: the excess lands in the last. */
    if (b >= TB_HIST_BUCKETS) b = TB_HIST_BUCKETS - 1;
    if (h != NULL && b >= 0) h->counts[b] += (uint64_t)sqlite3_column_int64(stmt, 2);
  }
  s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "tier stats %s: histogram", tier);
  tb__stmt_done(stmt);
  if (s != TB_OK) return s;

  stmt = tb__stmt(st, TB__ST_STATS_SUMMARY);
  sqlite3_bind_text(stmt, 1, tier, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_hist_t *h = hist_of(out, (const char *)sqlite3_column_text(stmt, 0));
    if (h == NULL) continue;
    h->total = (uint64_t)sqlite3_column_int64(stmt, 1);
    h->max = sqlite3_column_int64(stmt, 2);
  }
  s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "tier stats %s: summary", tier);
  tb__stmt_done(stmt);
  return s;
}
