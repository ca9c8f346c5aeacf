/* Replay and rebuild in the store: the logical-state checksum, the outbox clean-up that ends a
 * rebuild, and pruning of processed-message records with the horizon it leaves behind. */
#include "store/logstate.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/status.h"
#include "core/util.h"
#include "store/internal.h"

/* What a rebuild from the log reproduces. Left out everywhere: surrogate row ids (they follow
 * commit order, which differs between a live run and a rebuild), and times taken from the
 * processing clock (created_us, updated_us, at_us, deadlines computed from "now"). Left out
 * entirely: processed, tier_counters, latency_* (bookkeeping of the live workers), outbox (what
 * is in flight), dead_letters (a replay records only what fails again), job_leases,
 * priority_sync_calc and priority_sync_runs (operator runs, not in the log), sched_tasks (created
 * and edited by the CLI, not by events), workflow escalations made by the sweeper (decided by the
 * clock, not by an event), prune_horizon, and priority_audit: it records the changes in the order
 * the live workers happened to apply them, and when one pair's changes sit in streams of
 * different tiers that order is not the log's (a change applied late is stale and leaves no
 * row), while the final priorities are the same either way (bench --scenario replay found 392
 * live rows against 1,680 rebuilt with equal tracked_repositories). */
static const tb_checksum_table_t tables[] = {
    {"workspace_repositories", "workspace_id, repository_id", NULL, "added_at"},
    {"workspace_membership_versions",
     "workspace_id, repository_id, present, occurred_us, stream, seq", NULL, ""},
    {"tracked_repositories",
     "repository_id, priority, priority_score, is_workspace_repo, workspace_count, "
     "tracking_enabled, manual_override, marked_low",
     NULL, "updated_at"},
    {"activity_log", "msg_id, event_type, tier, correlation_id, key, payload_json, payload", NULL,
     "id, at_us"},
    {"workflows",
     "id, name, domain, tier, status, step, step_state, attempt, seq, data, error, "
     "correlation_id, cause_msg_id",
     NULL, "hist_id, created_us, updated_us, finished_us"},
    {"workflow_history",
     "workflow_id, step, name, kind, attempt, status, code, detail, result, error, tier, msg_id",
     NULL, "id, started_us, ended_us"},
    {"workflow_waits", "workflow_id, seq, event, key", NULL, "deadline_us"},
    {"workflow_inbox", "event, key, msg_id, payload, code, workflow_id, seq", NULL, "id, at_us"},
    {"workflow_context", "workflow_id, category, customer_facing, business_impact, retries", NULL,
     ""},
    {"workflow_escalations", "workflow_id, from_tier, to_tier, rule, source, detail",
     "source <> 'sweeper'", "id, at_us; sweeper rows"},
    {"subscribers",
     "subscriber_id, email, email_type, source, first_name, last_name, company, linkedin_url, "
     "enriched_fields",
     NULL, "enriched_us, created_us, updated_us"},
    {"enrichment_jobs", "subscriber_id, email, status, batch_id, error", NULL,
     "id, created_us, updated_us"},
    {"enrichment_batches", "batch_id, workflow_id, status, n_jobs, enrichment_id, error", NULL,
     "created_us, updated_us"},
    {"enrichment_tracker", "enrichment_id, workflow_id, batch_id", NULL, "registered_us"},
    {"crm_clients", "client_id, name, email, status, created_by", NULL,
     "created_us, updated_us, activated_us, completed_us"},
    {"crm_deliverables", "client_id, month, status, deliverable_id, title, workflow_id", NULL,
     "due_us, scheduled_us, generated_us, completed_us, updated_us"},
    {"crm_business_plans",
     "client_id, business_plan_id, status, pdf_id, pdf_path, error, workflow_id", NULL,
     "created_us, completed_us, updated_us"},
    {"crm_activity", "client_id, kind, description, user_id, workflow_id", NULL, "id, at_us"},
    {"sched_runs", "task, slot_us, trigger, attempts, status, result, error", NULL,
     "started_us, finished_us"},
};

const tb_checksum_table_t *tb_store_checksum_tables(int *n) {
  *n = (int)TB_COUNTOF(tables);
  return tables;
}

/* Two independent 64-bit FNV-1a lanes: 128 bits, so that a collision between two states is not
 * a practical worry, from code with no dependency. */
typedef struct hash128 {
  uint64_t a, b;
} hash128_t;

static void h_init(hash128_t *h) {
  h->a = 0xcbf29ce484222325ULL;
  h->b = 0x84222325cbf29ce4ULL;
}

static void h_bytes(hash128_t *h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) {
    h->a = (h->a ^ c[i]) * 0x100000001b3ULL;
    h->b = (h->b ^ (unsigned char)(c[i] + 0x5bu)) * 0x100000001b3ULL;
  }
}

static void h_u64(hash128_t *h, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
  h_bytes(h, b, sizeof(b));
}

static void h_hex(const hash128_t *h, char hex[33]) {
  snprintf(hex, 33, "%016llx%016llx", (unsigned long long)h->a, (unsigned long long)h->b);
}

/* Hashes one column value with its type tag and length, so that NULL, '' and 0 differ and no
 * two rows run together. */
static void h_value(hash128_t *h, sqlite3_stmt *stmt, int col) {
  int type = sqlite3_column_type(stmt, col);
  unsigned char tag = (unsigned char)type;
  h_bytes(h, &tag, 1);
  switch (type) {
  case SQLITE_INTEGER:
    h_u64(h, (uint64_t)sqlite3_column_int64(stmt, col));
    break;
  case SQLITE_FLOAT: {
    double d = sqlite3_column_double(stmt, col);
    h_bytes(h, &d, sizeof(d));
    break;
  }
  case SQLITE_TEXT:
  case SQLITE_BLOB: {
    const void *p = type == SQLITE_TEXT ? (const void *)sqlite3_column_text(stmt, col)
                                        : sqlite3_column_blob(stmt, col);
    int n = sqlite3_column_bytes(stmt, col);
    h_u64(h, (uint64_t)n);
    if (n > 0) h_bytes(h, p, (size_t)n);
    break;
  }
  default: /* NULL: the tag says it all */
    break;
  }
}

static tb_status hash_table(sqlite3 *db, const tb_checksum_table_t *t, tb_checksum_part_t *part,
                            hash128_t *total) {
  char sql[1024];
  snprintf(sql, sizeof(sql), "SELECT %s FROM %s%s%s ORDER BY %s", t->columns, t->table,
           t->where ? " WHERE " : "", t->where ? t->where : "", t->columns);
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
  if (rc != SQLITE_OK) return tb__store_fail(db, rc, "checksum %s", t->table);
  hash128_t h;
  h_init(&h);
  int64_t rows = 0;
  int ncol = sqlite3_column_count(stmt);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    for (int c = 0; c < ncol; c++) h_value(&h, stmt, c);
    rows++;
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(db, rc, "checksum %s", t->table);
  sqlite3_finalize(stmt);
  if (s != TB_OK) return s;
  part->rows = rows;
  h_hex(&h, part->hex);
  h_bytes(total, t->table, strlen(t->table) + 1);
  h_u64(total, (uint64_t)rows);
  h_bytes(total, part->hex, 32);
  return TB_OK;
}

tb_status tb_store_checksum(tb_store_t *st, char hex[33], tb_checksum_part_t *parts) {
  sqlite3 *db = tb__store_db(st);
  /* One read transaction: every table is read at the same point even while workers commit. */
  int rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  if (rc != SQLITE_OK) return tb__store_fail(db, rc, "checksum: begin");
  hash128_t total;
  h_init(&total);
  tb_status s = TB_OK;
  for (size_t i = 0; i < TB_COUNTOF(tables) && s == TB_OK; i++) {
    tb_checksum_part_t part;
    s = hash_table(db, &tables[i], &part, &total);
    if (s == TB_OK && parts != NULL) parts[i] = part;
  }
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  if (s == TB_OK) h_hex(&total, hex);
  return s;
}

/* First column of |sql|'s first row as an integer. */
static tb_status query_int(sqlite3 *db, const char *sql, int64_t *out) {
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW)
    *out = sqlite3_column_int64(stmt, 0);
  else if (rc == SQLITE_DONE)
    *out = 0;
  else
    s = tb__store_fail(db, rc, "%s", sql);
  sqlite3_finalize(stmt);
  return s;
}

tb_status tb_store_is_empty(tb_store_t *st, int *empty) {
  sqlite3 *db = tb__store_db(st);
  int64_t n = 0;
  tb_status s = query_int(db, "SELECT EXISTS(SELECT 1 FROM processed)", &n);
  for (size_t i = 0; i < TB_COUNTOF(tables) && s == TB_OK && n == 0; i++) {
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT EXISTS(SELECT 1 FROM %s)", tables[i].table);
    s = query_int(db, sql, &n);
  }
  if (s == TB_OK) *empty = n == 0;
  return s;
}

tb_status tb_store_outbox_drop_logged(tb_store_t *st, const char *const *logged_ids, int64_t n,
                                      int64_t *dropped) {
  sqlite3 *db = tb__store_db(st);
  tb_status s = tb_store_begin(st);
  if (s != TB_OK) return s;
  int64_t before = 0, after = 0;
  s = query_int(db, "SELECT count(*) FROM outbox", &before);
  int rc = SQLITE_OK;
  if (s == TB_OK) {
    rc = sqlite3_exec(db, "DELETE FROM outbox WHERE msg_id IN (SELECT msg_id FROM processed)", NULL,
                      NULL, NULL);
    if (rc != SQLITE_OK) s = tb__store_fail(db, rc, "rebuild: drop logged outbox rows");
  }
  sqlite3_stmt *del = NULL;
  if (s == TB_OK) {
    rc = sqlite3_prepare_v2(db, "DELETE FROM outbox WHERE msg_id = ?1", -1, &del, NULL);
    if (rc != SQLITE_OK) s = tb__store_fail(db, rc, "rebuild: drop logged outbox rows");
  }
  for (int64_t i = 0; i < n && s == TB_OK; i++) {
    sqlite3_bind_text(del, 1, logged_ids[i], -1, SQLITE_STATIC);
    rc = sqlite3_step(del);
    sqlite3_reset(del);
    if (rc != SQLITE_DONE) s = tb__store_fail(db, rc, "rebuild: drop outbox row %s", logged_ids[i]);
  }
  sqlite3_finalize(del);
  if (s == TB_OK) s = query_int(db, "SELECT count(*) FROM outbox", &after);
  if (s == TB_OK) s = tb_store_commit(st);
  if (s != TB_OK) {
    tb_store_rollback(st);
    return s;
  }
  if (dropped) *dropped = before - after;
  return TB_OK;
}

tb_status tb_store_prune_processed(tb_store_t *st, int64_t before_us, int64_t *deleted) {
  sqlite3 *db = tb__store_db(st);
  tb_status s = TB_OK;
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2(db, "DELETE FROM processed WHERE committed_us < ?1", -1, &stmt, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(stmt, 1, before_us);
    rc = sqlite3_step(stmt);
  }
  if (rc != SQLITE_DONE) s = tb__store_fail(db, rc, "prune processed records");
  sqlite3_finalize(stmt);
  int64_t n = s == TB_OK ? sqlite3_changes(db) : 0;
  if (s == TB_OK) {
    rc = sqlite3_prepare_v2(db,
                            "INSERT INTO prune_horizon(name, before_us, pruned_us) "
                            "VALUES('processed', ?1, ?2) ON CONFLICT(name) DO UPDATE SET "
                            "before_us = max(before_us, excluded.before_us), "
                            "pruned_us = excluded.pruned_us",
                            -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
      sqlite3_bind_int64(stmt, 1, before_us);
      sqlite3_bind_int64(stmt, 2, tb_wall_us());
      rc = sqlite3_step(stmt);
    }
    if (rc != SQLITE_DONE) s = tb__store_fail(db, rc, "record prune horizon");
    sqlite3_finalize(stmt);
  }
  if (s == TB_OK && deleted) *deleted = n;
  return s;
}

tb_status tb_store_prune_horizon(tb_store_t *st, int64_t *horizon_us) {
  return query_int(tb__store_db(st), "SELECT before_us FROM prune_horizon WHERE name = 'processed'",
                   horizon_us);
}

/* ------------------------------------------------------------------------------------------------
 * Snapshots
 * --------------------------------------------------------------------------------------------- */

/* Copies |from| into |to| page by page with SQLite's online backup, which readers and the
 * workers' writes do not have to stop for. */
static tb_status backup_db(sqlite3 *to, sqlite3 *from, const char *what) {
  sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
  if (b == NULL) return tb__store_fail(to, sqlite3_errcode(to), "%s: backup", what);
  int rc;
  while ((rc = sqlite3_backup_step(b, 1024)) == SQLITE_OK || rc == SQLITE_BUSY ||
         rc == SQLITE_LOCKED)
    sqlite3_sleep(rc == SQLITE_OK ? 0 : 5);
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) return tb__store_fail(to, rc, "%s: backup", what);
  return TB_OK;
}

/* Copies |from| into |to| with the online backup, |pace|'s steps at a time. The caller holds a
 * read transaction on |from|, so every step copies the same version of the database: a step that
 * opened and closed its own would find the workers' commits since the last one and start the
 * copy over, which under steady writes never ends. */
static tb_status backup_paced(sqlite3 *to, sqlite3 *from, const char *what,
                              const tb_snapshot_pace_t *pace) {
  sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
  if (b == NULL) return tb__store_fail(to, sqlite3_errcode(to), "%s: backup", what);
  int step = pace != NULL && pace->step_pages > 0 ? pace->step_pages : -1;
  int rc;
  tb_status s = TB_OK;
  while ((rc = sqlite3_backup_step(b, step)) == SQLITE_OK || rc == SQLITE_BUSY ||
         rc == SQLITE_LOCKED) {
    if (pace != NULL && pace->stop != NULL && atomic_load(pace->stop)) {
      s = tb__fail(TB_ERR_STOPPED, "%s: stopped before the copy was complete", what);
      break;
    }
    if (rc != SQLITE_OK || (pace != NULL && pace->pause_ms > 0))
      sqlite3_sleep(rc != SQLITE_OK ? 5 : pace->pause_ms);
  }
  sqlite3_backup_finish(b);
  if (s == TB_OK && rc != SQLITE_DONE) s = tb__store_fail(to, rc, "%s: backup", what);
  return s;
}

/* The stream positions into the copy |to|, which becomes one file (no WAL beside it). */
static tb_status write_positions(sqlite3 *to, const char *what, const tb_snapshot_pos_t *pos,
                                 int n) {
  int rc = sqlite3_exec(to, "PRAGMA journal_mode = DELETE; BEGIN; DELETE FROM snapshot_positions",
                        NULL, NULL, NULL);
  sqlite3_stmt *ins = NULL;
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(to, "INSERT INTO snapshot_positions(stream, next_seq) VALUES(?, ?)", -1,
                            &ins, NULL);
  for (int i = 0; i < n && rc == SQLITE_OK; i++) {
    sqlite3_bind_text(ins, 1, pos[i].stream, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 2, (sqlite3_int64)pos[i].next_seq);
    rc = sqlite3_step(ins);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  if (rc == SQLITE_OK) rc = sqlite3_exec(to, "COMMIT", NULL, NULL, NULL);
  return rc == SQLITE_OK ? TB_OK : tb__store_fail(to, rc, "%s: positions", what);
}

tb_status tb_store_snapshot(const char *db_path, const char *path, const tb_snapshot_pos_t *pos,
                            int n, const tb_snapshot_pace_t *pace) {
  char part[4096];
  if ((size_t)snprintf(part, sizeof(part), "%s.part", path) >= sizeof(part))
    return tb__fail(TB_ERR_INVALID, "snapshot: path '%.64s...' is too long", path);
  sqlite3 *from = NULL, *to = NULL;
  int rc = sqlite3_open_v2(db_path, &from, SQLITE_OPEN_READONLY, NULL);
  if (rc != SQLITE_OK) {
    tb_status s = tb__store_fail(from, rc, "snapshot of %s: open", db_path);
    sqlite3_close(from);
    return s;
  }
  sqlite3_busy_timeout(from, 5000); /* as the store's own connections */
  /* The read transaction every step shares (see backup_paced). */
  rc = sqlite3_exec(from, "BEGIN; SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
  tb_status s = rc == SQLITE_OK ? TB_OK : tb__store_fail(from, rc, "snapshot of %s: read", db_path);
  if (s == TB_OK) {
    unlink(part); /* a .part left by a crash would otherwise be copied into, page by page */
    rc = sqlite3_open_v2(part, &to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) s = tb__store_fail(to, rc, "snapshot %s: create", part);
  }
  if (s == TB_OK) s = backup_paced(to, from, part, pace);
  sqlite3_exec(from, "COMMIT", NULL, NULL, NULL); /* ends the read: the WAL may restart */
  sqlite3_close(from);
  if (s == TB_OK) s = write_positions(to, part, pos, n);
  if (to != NULL && sqlite3_close(to) != SQLITE_OK && s == TB_OK)
    s = tb__fail(TB_ERR_IO, "snapshot %s: close", part);
  if (s == TB_OK && rename(part, path) != 0)
    s = tb__fail(TB_ERR_IO, "snapshot: rename %s to %s: %s", part, path, strerror(errno));
  if (s != TB_OK) {
    /* With what SQLite may have left beside it when the copy stopped half way. */
    static const char *const sides[] = {"", "-wal", "-shm", "-journal"};
    char side[sizeof(part) + 16];
    for (int i = 0; i < 4; i++) {
      snprintf(side, sizeof(side), "%s%s", part, sides[i]);
      unlink(side);
    }
  }
  return s;
}

tb_status tb_store_restore(tb_store_t *st, const char *path) {
  sqlite3 *from = NULL;
  int rc = sqlite3_open_v2(path, &from, SQLITE_OPEN_READONLY, NULL);
  if (rc != SQLITE_OK) {
    tb_status s = tb__store_fail(from, rc, "snapshot %s: open", path);
    sqlite3_close(from);
    return s;
  }
  tb_status s = backup_db(st->db, from, path);
  sqlite3_close(from);
  return s;
}

tb_status tb_store_snapshot_position(tb_store_t *st, const char *stream, uint64_t *next_seq) {
  *next_seq = 0;
  sqlite3_stmt *q = NULL;
  int rc = sqlite3_prepare_v2(st->db, "SELECT next_seq FROM snapshot_positions WHERE stream = ?",
                              -1, &q, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(q, 1, stream, -1, SQLITE_STATIC);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) *next_seq = (uint64_t)sqlite3_column_int64(q, 0);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  sqlite3_finalize(q);
  return rc == SQLITE_OK ? TB_OK : tb__store_fail(st->db, rc, "snapshot position of %s", stream);
}
