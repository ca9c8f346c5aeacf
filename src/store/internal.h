/* Store internals shared by the files of src/store: the connection struct, the one table of
 * prepared statements (prepared at open, finalized at close) and SQLite error wrapping. Nothing
 * outside src/store includes this header. */
#ifndef TB_STORE_INTERNAL_H
#define TB_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store/store.h"

/* X(name, sql): every statement the store runs after open. Transaction control is prepared too,
 * so the hot path never parses SQL. */
#define TB__STORE_STMTS(X)                                                                         \
  X(BEGIN, "BEGIN IMMEDIATE")                                                                      \
  X(COMMIT, "COMMIT")                                                                              \
  X(ROLLBACK, "ROLLBACK")                                                                          \
  X(SAVEPOINT, "SAVEPOINT tb_msg")                                                                 \
  X(RELEASE, "RELEASE tb_msg")                                                                     \
  X(ROLLBACK_TO, "ROLLBACK TO tb_msg")                                                             \
  X(HIST_SAVEPOINT, "SAVEPOINT tb_hist")                                                           \
  X(HIST_RELEASE, "RELEASE tb_hist")                                                               \
  X(HIST_ROLLBACK_TO, "ROLLBACK TO tb_hist")                                                       \
  X(USER_VERSION, "PRAGMA user_version")                                                           \
  X(IS_PROCESSED, "SELECT 1 FROM processed WHERE msg_id = ?1 "                                     \
                  "UNION ALL SELECT 1 FROM dead_letters WHERE msg_id = ?1 LIMIT 1")                \
  X(MARK_PROCESSED,                                                                                \
    "INSERT INTO processed(msg_id, event_type, tier, eff_tier, boost, reason, stream, "            \
    "stream_seq, deliveries, published_us, started_us, committed_us, outcome) "                    \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")                              \
  X(CLAIM_PROCESSED,                                                                               \
    "INSERT INTO processed(msg_id, event_type, tier, eff_tier, boost, reason, stream, "            \
    "stream_seq, deliveries, published_us, started_us, committed_us, outcome) "                    \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT(msg_id) DO "       \
    "NOTHING")                                                                                     \
  X(ACTIVITY, "INSERT INTO activity_log(msg_id, event_type, tier, correlation_id, key, "           \
              "payload_json, at_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)")                           \
  X(DEAD_LETTER,                                                                                   \
    "INSERT INTO dead_letters(msg_id, event_type, tier, stream, stream_seq, reason, at_us) "       \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(msg_id) DO UPDATE SET "                        \
    "event_type = excluded.event_type, tier = excluded.tier, stream = excluded.stream, "           \
    "stream_seq = excluded.stream_seq, reason = excluded.reason, at_us = excluded.at_us")          \
  X(COUNTER_ADD, "INSERT INTO tier_counters(tier, name, value) VALUES(?1, ?2, ?3) "                \
                 "ON CONFLICT(tier, name) DO UPDATE SET value = value + excluded.value")           \
  X(HIST_BUCKET_ADD,                                                                               \
    "INSERT INTO latency_hist(tier, kind, bucket, count) VALUES(?1, ?2, ?3, ?4) "                  \
    "ON CONFLICT(tier, kind, bucket) DO UPDATE SET count = count + excluded.count")                \
  X(HIST_SUMMARY_ADD,                                                                              \
    "INSERT INTO latency_summary(tier, kind, total, max_us) VALUES(?1, ?2, ?3, ?4) "               \
    "ON CONFLICT(tier, kind) DO UPDATE SET total = total + excluded.total, "                       \
    "max_us = max(max_us, excluded.max_us)")                                                       \
  X(STATS_COUNTERS, "SELECT name, value FROM tier_counters WHERE tier = ?1")                       \
  X(STATS_BUCKETS, "SELECT kind, bucket, count FROM latency_hist WHERE tier = ?1")                 \
  X(STATS_SUMMARY, "SELECT kind, total, max_us FROM latency_summary WHERE tier = ?1")              \
  X(MEMBERSHIP_VERSION, "SELECT present, occurred_us, stream, seq "                                \
                        "FROM workspace_membership_versions "                                      \
                        "WHERE workspace_id = ?1 AND repository_id = ?2")                          \
  X(MEMBERSHIP_VERSION_PUT,                                                                        \
    "INSERT INTO workspace_membership_versions(workspace_id, repository_id, present, "             \
    "occurred_us, stream, seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6) "                                    \
    "ON CONFLICT(workspace_id, repository_id) DO UPDATE SET present = excluded.present, "          \
    "occurred_us = excluded.occurred_us, stream = excluded.stream, seq = excluded.seq")            \
  X(MEMBERSHIP_ADD, "INSERT OR IGNORE INTO workspace_repositories(workspace_id, repository_id, "   \
                    "added_at) VALUES(?1, ?2, ?3)")                                                \
  X(MEMBERSHIP_REMOVE, "DELETE FROM workspace_repositories "                                       \
                       "WHERE workspace_id = ?1 AND repository_id = ?2")                           \
  X(WORKSPACE_COUNT, "SELECT count(*) FROM workspace_repositories WHERE repository_id = ?1")       \
  X(REPO_GET, "SELECT priority, priority_score, is_workspace_repo, workspace_count, "              \
              "tracking_enabled, manual_override, marked_low "                                     \
              "FROM tracked_repositories WHERE repository_id = ?1")                                \
  X(REPO_PUT,                                                                                      \
    "INSERT INTO tracked_repositories(repository_id, priority, priority_score, "                   \
    "is_workspace_repo, workspace_count, tracking_enabled, manual_override, marked_low, "          \
    "updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "                                      \
    "ON CONFLICT(repository_id) DO UPDATE SET priority = excluded.priority, "                      \
    "priority_score = excluded.priority_score, is_workspace_repo = excluded.is_workspace_repo, "   \
    "workspace_count = excluded.workspace_count, tracking_enabled = excluded.tracking_enabled, "   \
    "manual_override = excluded.manual_override, marked_low = excluded.marked_low, "               \
    "updated_at = excluded.updated_at")                                                            \
  X(PRIORITY_AUDIT, "INSERT INTO priority_audit(repository_id, old_priority, new_priority, "       \
                    "reason, msg_id, at_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6)")                       \
  X(OUTBOX_HDR_TYPE, "SELECT CASE WHEN json_valid(?1) THEN json_type(?1) END")                     \
  X(OUTBOX_HDR_BAD, "SELECT key, type FROM json_each(?1) "                                         \
                    "WHERE type <> 'text' OR lower(key) = 'nats-msg-id' OR key = '' LIMIT 1")      \
  X(OUTBOX_ADD, "INSERT INTO outbox(msg_id, subject, payload, headers, created_us) "               \
                "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(msg_id) DO NOTHING")                       \
  X(OUTBOX_NEXT, "SELECT id, msg_id, subject, payload, headers, created_us, attempts, last_error " \
                 "FROM outbox WHERE next_attempt_us <= ?1 ORDER BY id LIMIT ?2")                   \
  X(OUTBOX_DELETE, "DELETE FROM outbox WHERE id = ?1")                                             \
  X(OUTBOX_FAILED, "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, "                  \
                   "next_attempt_us = ?3 WHERE id = ?1")                                           \
  X(OUTBOX_COUNT, "SELECT count(*) FROM outbox")

typedef enum tb__store_stmt_id {
#define TB__STMT_ENUM(name, sql) TB__ST_##name,
  TB__STORE_STMTS(TB__STMT_ENUM)
#undef TB__STMT_ENUM
      TB__ST_COUNT
} tb__store_stmt_id;

struct tb_checkpointer;

struct tb_store {
  sqlite3 *db;
  sqlite3_stmt *stmt[TB__ST_COUNT];
  int savepoints; /* open tb_msg savepoints, so a stray release/rollback_to is caught */
  struct tb_checkpointer *ckpt; /* background checkpoints, when offloaded; owned */
};

/* Prepared statement |id|, ready to bind (it was reset after its last use). Borrowed. */
static inline sqlite3_stmt *tb__stmt(tb_store_t *st, tb__store_stmt_id id) {
  return st->stmt[id];
}

/* Resets |stmt| and clears its bindings so that it holds no read snapshot and no stale value;
 * every use of a statement ends here, on success and failure alike. */
static inline void tb__stmt_done(sqlite3_stmt *stmt) {
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
}

/* Binds |s| as text, or NULL when |s| is NULL or empty, so that optional fields read back as
 * NULL rather than as two different kinds of "nothing". */
int tb__bind_opt_text(sqlite3_stmt *stmt, int i, const char *s);

/* Maps SQLite result |rc| to TB_ERR_BUSY (SQLITE_BUSY, SQLITE_LOCKED) or TB_ERR_STORE and sets the
 * detail to the formatted context, then ": ", then sqlite3_errmsg(db). Call it before the
 * statement is reset, while the message still describes the failure. */
tb_status tb__store_fail(sqlite3 *db, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Migrations (migrations.c): the schema version this build writes, and the upgrade of |db| to it.
 * Each pending migration runs in its own BEGIN IMMEDIATE transaction that also bumps
 * PRAGMA user_version, so a crash leaves the database at a whole version. A database from a
 * newer build is refused with TB_ERR_STORE; nothing is changed then. */
int tb__store_latest_version(void);
tb_status tb__store_migrate(sqlite3 *db, const char *path);

#endif
