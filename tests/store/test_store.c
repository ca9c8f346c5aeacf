/* Unit tests for src/store: migrations, processed-message dedupe, savepoints, counters,
 * histograms, dead letters, lock contention and the repository tables, on real SQLite files in a
 * temporary directory and on :memory:. */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "db_fixture.h"
#include <sqlite3.h>

#include "core/clock.h"
#include "core/hist.h"
#include "core/status.h"
#include "core/util.h"
#include "store/repo.h"
#include "store/dlq.h"
#include "store/logstate.h"
#include "store/store.h"

#define LATEST_VERSION 20

/* ------------------------------------------------------------------------------------------------
 * Fixtures and helpers
 * --------------------------------------------------------------------------------------------- */

static tb_store_t *open_mem(void) {
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, ":memory:"), TB_OK);
  assert_non_null(st);
  return st;
}

/* First column of the first row of |sql| as an integer; -1 if there is no row. */
static int64_t q_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *stmt = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
  int64_t v = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
  sqlite3_finalize(stmt);
  return v;
}

/* First column of the first row of |sql| as text into |buf| ("<null>" for NULL, "<none>" for no
 * row). */
static const char *q_text(sqlite3 *db, const char *sql, char *buf, size_t cap) {
  sqlite3_stmt *stmt = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
  if (sqlite3_step(stmt) != SQLITE_ROW)
    snprintf(buf, cap, "<none>");
  else if (sqlite3_column_type(stmt, 0) == SQLITE_NULL)
    snprintf(buf, cap, "<null>");
  else
    snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  return buf;
}

static void raw_exec(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  if (rc != SQLITE_OK) fail_msg("raw exec '%s': %s", sql, err ? err : "?");
  sqlite3_close(db);
}

static tb_dispatch_record_t record(const char *msg_id) {
  tb_dispatch_record_t r = {
      .msg_id = msg_id,
      .event_type = "CLIENT_CREATED",
      .tier = "normal",
      .eff_tier = "high",
      .boost = 1,
      .reason = "aged",
      .stream = "TB_NORMAL",
      .stream_seq = 42,
      .deliveries = 2,
      .published_us = 1000,
      .started_us = 2000,
      .outcome = TB_OUTCOME_APPLIED,
  };
  return r;
}

/* ------------------------------------------------------------------------------------------------
 * Migrations
 * --------------------------------------------------------------------------------------------- */

static void test_fresh_file_gets_latest_schema(void **state) {
  db_fixture_t *f = *state;
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, f->path), TB_OK);
  sqlite3 *db = tb__store_db(st);
  char buf[64];
  assert_int_equal(tb_store_schema_version(st), LATEST_VERSION);
  assert_string_equal(q_text(db, "PRAGMA journal_mode", buf, sizeof(buf)), "wal");
  assert_int_equal(q_int(db, "PRAGMA synchronous"), 1); /* NORMAL */
  assert_int_equal(q_int(db, "PRAGMA foreign_keys"), 1);
  assert_int_equal(q_int(db, "PRAGMA busy_timeout"), 5000);
  static const char *objects[] = {"processed",
                                  "activity_log",
                                  "dead_letters",
                                  "tier_counters",
                                  "latency_hist",
                                  "latency_summary",
                                  "workspace_repositories",
                                  "workspace_membership_versions",
                                  "tracked_repositories",
                                  "priority_audit",
                                  "idx_tracked_repos_workspace_priority",
                                  "idx_workspace_repositories_repo",
                                  "outbox",
                                  "outbox_due",
                                  "workflows",
                                  "workflow_history",
                                  "workflow_waits",
                                  "workflow_inbox",
                                  "subscribers",
                                  "enrichment_jobs",
                                  "crm_clients",
                                  "crm_deliverables"};
  for (size_t i = 0; i < sizeof(objects) / sizeof(objects[0]); i++) {
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM sqlite_master WHERE name = '%s'", objects[i]);
    if (q_int(db, sql) != 1) fail_msg("schema object %s missing", objects[i]);
  }
  /* The seed's index covers exactly the columns its dashboard query filters on. */
  assert_string_equal(q_text(db,
                             "SELECT group_concat(name, ',') FROM "
                             "pragma_index_info('idx_tracked_repos_workspace_priority')",
                             buf, sizeof(buf)),
                      "is_workspace_repo,priority,tracking_enabled");
  tb_store_close(st);
}

static void test_reopen_is_noop(void **state) {
  db_fixture_t *f = *state;
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, f->path), TB_OK);
  tb_dispatch_record_t r = record("m-keep");
  assert_int_equal(tb_store_mark_processed(st, &r), TB_OK);
  int64_t objects = q_int(tb__store_db(st), "SELECT count(*) FROM sqlite_master");
  tb_store_close(st);

  st = NULL;
  assert_int_equal(tb_store_open(&st, f->path), TB_OK);
  assert_int_equal(tb_store_schema_version(st), LATEST_VERSION);
  assert_int_equal(q_int(tb__store_db(st), "SELECT count(*) FROM sqlite_master"), objects);
  int seen = 0;
  assert_int_equal(tb_store_is_processed(st, "m-keep", &seen), TB_OK);
  assert_int_equal(seen, 1);
  tb_store_close(st);
}

static void test_newer_version_refused(void **state) {
  db_fixture_t *f = *state;
  raw_exec(f->path, "PRAGMA user_version = 99");
  tb_store_t *st = (tb_store_t *)0x1; /* must stay untouched on failure */
  assert_int_equal(tb_store_open(&st, f->path), TB_ERR_STORE);
  assert_ptr_equal(st, (tb_store_t *)0x1);
  assert_non_null(strstr(tb_errdetail(), "schema version 99 is newer"));
  assert_non_null(strstr(tb_errdetail(), f->path));
  /* Exactly one past the latest is refused too (boundary). */
  char sql[64];
  snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", LATEST_VERSION + 1);
  raw_exec(f->path, sql);
  assert_int_equal(tb_store_open(&st, f->path), TB_ERR_STORE);
  assert_ptr_equal(st, (tb_store_t *)0x1);
}

/* A database left at version 1 gets the later migrations in order; a migration that fails leaves
 * the database at its previous version. */
static void test_partial_upgrade_and_failed_migration(void **state) {
  db_fixture_t *f = *state;
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, f->path), TB_OK);
  tb_store_close(st);
  raw_exec(f->path, "DROP TABLE workspace_repositories; DROP TABLE workspace_membership_versions;"
                    "DROP TABLE tracked_repositories; DROP TABLE priority_audit;"
                    "DROP TABLE outbox; DROP TABLE workflows; DROP TABLE workflow_history;"
                    "DROP TABLE workflow_waits; DROP TABLE workflow_inbox; DROP TABLE subscribers;"
                    "DROP TABLE enrichment_jobs; DROP TABLE enrichment_batches;"
                    "DROP TABLE enrichment_tracker; DROP TABLE crm_clients;"
                    "DROP TABLE crm_deliverables; DROP TABLE crm_business_plans;"
                    "DROP TABLE crm_activity; DROP TABLE job_leases;"
                    "DROP TABLE priority_sync_calc; DROP TABLE priority_sync_runs;"
                    "DROP TABLE workflow_context; DROP TABLE workflow_escalations;"
                    "DROP TABLE sched_tasks; DROP TABLE sched_runs; DROP TABLE prune_horizon;"
                    "DROP TABLE deployment; DROP TABLE snapshot_positions;"
                    "DROP TABLE circuit_breakers; DROP TABLE service_slots;" /* issue 12's */
                    "DROP TABLE crm_client_metrics;"
                    /* v14 keyed the counters by domain: back to per tier, with a count. */
                    "DROP TABLE tier_counters; CREATE TABLE tier_counters(tier TEXT NOT NULL, "
                    "name TEXT NOT NULL, value INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(tier, "
                    "name)) STRICT, WITHOUT ROWID;"
                    "INSERT INTO tier_counters VALUES('high', 'processed', 7);"
                    /* v10 widened dead_letters: back to its v1 shape. */
                    "DROP TABLE dead_letters; CREATE TABLE dead_letters(msg_id TEXT PRIMARY KEY "
                    "NOT NULL, event_type TEXT, tier TEXT, stream TEXT, stream_seq INTEGER NOT "
                    "NULL DEFAULT 0, reason TEXT, at_us INTEGER NOT NULL) STRICT;"
                    /* v16 added the activity log's payload bytes. */
                    "ALTER TABLE activity_log DROP COLUMN payload;"
                    /* v20 made the processed record a rowid table: back to keyed by the id. */
                    "DROP TABLE processed; CREATE TABLE processed(msg_id TEXT PRIMARY KEY NOT "
                    "NULL, event_type TEXT, tier TEXT, eff_tier TEXT, boost INTEGER NOT NULL "
                    "DEFAULT 0, reason TEXT, stream TEXT, stream_seq INTEGER NOT NULL DEFAULT 0, "
                    "deliveries INTEGER NOT NULL DEFAULT 0, published_us INTEGER NOT NULL "
                    "DEFAULT 0, started_us INTEGER NOT NULL DEFAULT 0, committed_us INTEGER NOT "
                    "NULL, outcome TEXT NOT NULL) STRICT, WITHOUT ROWID;"
                    "INSERT INTO processed(msg_id, committed_us, outcome) VALUES('later', 2, "
                    "'applied'), ('earlier', 1, 'applied');"
                    "PRAGMA user_version = 1");

  /* Something already named like a v2 table makes migration 2 fail. */
  raw_exec(f->path, "CREATE TABLE priority_audit(x)");
  st = NULL;
  assert_int_equal(tb_store_open(&st, f->path), TB_ERR_STORE);
  assert_null(st);
  assert_non_null(strstr(tb_errdetail(), "migration 2"));
  assert_non_null(strstr(tb_errdetail(), "priority_audit"));
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
  assert_int_equal(q_int(db, "PRAGMA user_version"), 1);
  assert_int_equal(
      q_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'workspace_repositories'"), 0);
  sqlite3_close(db);

  raw_exec(f->path, "DROP TABLE priority_audit");
  assert_int_equal(tb_store_open(&st, f->path), TB_OK);
  assert_int_equal(tb_store_schema_version(st), LATEST_VERSION);
  assert_int_equal(q_int(tb__store_db(st), "SELECT count(*) FROM sqlite_master "
                                           "WHERE name = 'tracked_repositories'"),
                   1);
  /* The count from before v14 is kept, under no domain: in the tier's total, in no domain's. */
  static tb_store_tier_stats_t ts;
  assert_int_equal(tb_store_tier_stats(st, "high", &ts), TB_OK);
  assert_int_equal(ts.processed, 7);
  static const char *const crm[] = {"crm"};
  tb_store_counters_t c;
  assert_int_equal(tb_store_tier_domain_counters(st, "high", crm, 1, &c), TB_OK);
  assert_int_equal(c.processed, 0);
  /* The processed records are kept, now in commit order. */
  char buf[64];
  assert_string_equal(q_text(tb__store_db(st),
                             "SELECT group_concat(msg_id) FROM (SELECT msg_id FROM processed "
                             "ORDER BY rowid)",
                             buf, sizeof(buf)),
                      "earlier,later");
  assert_int_equal(tb_store_counter_add(st, "high", "crm", "processed", 1), TB_OK);
  assert_int_equal(tb_store_tier_stats(st, "high", &ts), TB_OK);
  assert_int_equal(ts.processed, 8);
  tb_store_close(st);
}

static void test_open_bad_path(void **state) {
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, "/nonexistent-dir-tierbus/x.db"), TB_ERR_STORE);
  assert_null(st);
  assert_non_null(strstr(tb_errdetail(), "/nonexistent-dir-tierbus/x.db"));
  tb_store_close(NULL); /* accepted */
}

/* ------------------------------------------------------------------------------------------------
 * Processed records, savepoints, activity, dead letters
 * --------------------------------------------------------------------------------------------- */

static void test_processed_dedupe(void **state) {
  tb_store_t *st = open_mem();
  sqlite3 *db = tb__store_db(st);
  int seen = -1;
  assert_int_equal(tb_store_is_processed(st, "m1", &seen), TB_OK);
  assert_int_equal(seen, 0);
  tb_dispatch_record_t r = record("m1");
  int64_t before = tb_wall_us();
  assert_int_equal(tb_store_mark_processed(st, &r), TB_OK);
  assert_int_equal(tb_store_is_processed(st, "m1", &seen), TB_OK);
  assert_int_equal(seen, 1);
  assert_int_equal(tb_store_is_processed(st, "m2", &seen), TB_OK);
  assert_int_equal(seen, 0);

  assert_int_equal(tb_store_mark_processed(st, &r), TB_ERR_STORE);
  assert_non_null(strstr(tb_errdetail(), "mark processed 'm1'"));
  assert_non_null(strstr(tb_errdetail(), "UNIQUE constraint failed"));
  assert_int_equal(q_int(db, "SELECT count(*) FROM processed"), 1);

  char buf[128];
  assert_string_equal(q_text(db,
                             "SELECT event_type || '|' || tier || '|' || eff_tier || '|' || boost "
                             "|| '|' || reason || '|' || stream || '|' || stream_seq || '|' || "
                             "deliveries || '|' || published_us || '|' || started_us || '|' || "
                             "outcome FROM processed WHERE msg_id = 'm1'",
                             buf, sizeof(buf)),
                      "CLIENT_CREATED|normal|high|1|aged|TB_NORMAL|42|2|1000|2000|applied");
  assert_true(q_int(db, "SELECT committed_us FROM processed") >= before);

  r = record("m3");
  r.outcome = TB_OUTCOME_STALE;
  r.reason = NULL; /* optional text reads back as NULL */
  assert_int_equal(tb_store_mark_processed(st, &r), TB_OK);
  assert_string_equal(
      q_text(db, "SELECT outcome FROM processed WHERE msg_id = 'm3'", buf, sizeof(buf)), "stale");
  assert_string_equal(
      q_text(db, "SELECT reason FROM processed WHERE msg_id = 'm3'", buf, sizeof(buf)), "<null>");

  r = record("m4");
  r.outcome = (tb_outcome)7;
  assert_int_equal(tb_store_mark_processed(st, &r), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "outcome 7"));
  r = record("");
  assert_int_equal(tb_store_mark_processed(st, &r), TB_ERR_INVALID);
  tb_store_close(st);
}

static void test_savepoint_rollback_leaves_no_trace(void **state) {
  tb_store_t *st = open_mem();
  sqlite3 *db = tb__store_db(st);
  assert_int_equal(tb_store_release(st), TB_ERR_INVALID); /* nothing open */
  assert_int_equal(tb_store_rollback_to(st), TB_ERR_INVALID);

  assert_int_equal(tb_store_begin(st), TB_OK);
  /* message 1 fails: every write of it is undone */
  assert_int_equal(tb_store_savepoint(st), TB_OK);
  tb_dispatch_record_t r1 = record("m1");
  assert_int_equal(tb_store_mark_processed(st, &r1), TB_OK);
  tb_activity_t a1 = {.msg_id = "m1",
                      .event_type = "CLIENT_CREATED",
                      .tier = "normal",
                      .correlation_id = "c1",
                      .key = "k1",
                      .payload_json = "{}"};
  assert_int_equal(tb_store_activity(st, &a1), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "normal", "crm", "processed", 1), TB_OK);
  assert_int_equal(tb_store_rollback_to(st), TB_OK);
  assert_int_equal(tb_store_release(st), TB_ERR_INVALID); /* rollback_to ended it */
  /* message 2 succeeds in the same batch */
  assert_int_equal(tb_store_savepoint(st), TB_OK);
  tb_dispatch_record_t r2 = record("m2");
  assert_int_equal(tb_store_mark_processed(st, &r2), TB_OK);
  assert_int_equal(tb_store_release(st), TB_OK);
  /* many failed messages in one batch do not pile up savepoints */
  for (int i = 0; i < 300; i++) {
    assert_int_equal(tb_store_savepoint(st), TB_OK);
    assert_int_equal(tb_store_counter_add(st, "normal", "crm", "failed", 1), TB_OK);
    assert_int_equal(tb_store_rollback_to(st), TB_OK);
  }
  assert_int_equal(tb_store_commit(st), TB_OK);

  int seen = -1;
  assert_int_equal(tb_store_is_processed(st, "m1", &seen), TB_OK);
  assert_int_equal(seen, 0);
  assert_int_equal(tb_store_is_processed(st, "m2", &seen), TB_OK);
  assert_int_equal(seen, 1);
  assert_int_equal(q_int(db, "SELECT count(*) FROM activity_log"), 0);
  assert_int_equal(q_int(db, "SELECT count(*) FROM tier_counters"), 0);

  /* A whole-batch rollback drops everything, and rollback outside a batch is harmless. */
  assert_int_equal(tb_store_begin(st), TB_OK);
  tb_dispatch_record_t r3 = record("m3");
  assert_int_equal(tb_store_mark_processed(st, &r3), TB_OK);
  assert_int_equal(tb_store_rollback(st), TB_OK);
  assert_int_equal(tb_store_is_processed(st, "m3", &seen), TB_OK);
  assert_int_equal(seen, 0);
  assert_int_equal(tb_store_rollback(st), TB_OK);
  /* begin inside a batch is a store error, not a silent nest */
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_store_begin(st), TB_ERR_STORE);
  assert_non_null(strstr(tb_errdetail(), "begin batch"));
  assert_int_equal(tb_store_commit(st), TB_OK);
  tb_store_close(st);
}

typedef struct seen_rows {
  int n;
  char ids[8][16];
  size_t payload_len[8];
  int has_payload[8];
} seen_rows_t;

static int collect_row(void *arg, const tb_activity_t *a) {
  seen_rows_t *r = arg;
  if (r->n < 8) {
    snprintf(r->ids[r->n], sizeof(r->ids[0]), "%s", a->msg_id);
    r->payload_len[r->n] = a->payload_len;
    r->has_payload[r->n] = a->payload != NULL;
  }
  r->n++;
  return 0;
}

static void test_activity_log(void **state) {
  tb_store_t *st = open_mem();
  sqlite3 *db = tb__store_db(st);
  tb_activity_t a = {.msg_id = "m1",
                     .event_type = "CLIENT_CREATED",
                     .tier = "high",
                     .correlation_id = "corr-1",
                     .key = "client-9",
                     .payload_json = "{\"client_id\":\"client-9\"}"};
  assert_int_equal(tb_store_activity(st, &a), TB_OK);
  tb_activity_t bare = {
      .msg_id = "m2", .event_type = "MONTH_TRANSITION", .tier = "low", .correlation_id = ""};
  assert_int_equal(tb_store_activity(st, &bare), TB_OK);
  /* The activity handler's form: the payload's bytes, kept byte for byte; an empty payload is
   * an empty blob, not a missing one. */
  static const uint8_t bytes[] = {0x0a, 0x02, 'r', '1', 0x00, 0xff};
  tb_activity_t packed = {.msg_id = "m3",
                          .event_type = "capture/repository.sync",
                          .tier = "high",
                          .key = "r1",
                          .payload = bytes,
                          .payload_len = sizeof(bytes)};
  assert_int_equal(tb_store_activity(st, &packed), TB_OK);
  tb_activity_t empty = {.msg_id = "m4",
                         .event_type = "capture/repository.sync",
                         .tier = "low",
                         .key = "r2",
                         .payload = "",
                         .payload_len = 0};
  assert_int_equal(tb_store_activity(st, &empty), TB_OK);

  char buf[128];
  assert_string_equal(q_text(db,
                             "SELECT msg_id || '|' || event_type || '|' || tier || '|' || "
                             "correlation_id || '|' || key || '|' || payload_json "
                             "FROM activity_log WHERE id = 1",
                             buf, sizeof(buf)),
                      "m1|CLIENT_CREATED|high|corr-1|client-9|{\"client_id\":\"client-9\"}");
  assert_int_equal(q_int(db, "SELECT count(*) FROM activity_log WHERE id = 2 AND "
                             "correlation_id IS NULL AND key IS NULL AND payload_json IS NULL "
                             "AND payload IS NULL"),
                   1);
  assert_int_equal(q_int(db, "SELECT count(*) FROM activity_log WHERE id = 3 AND "
                             "payload = x'0a02723100ff' AND payload_json IS NULL"),
                   1);
  assert_int_equal(q_int(db, "SELECT count(*) FROM activity_log WHERE id = 4 AND "
                             "typeof(payload) = 'blob' AND length(payload) = 0"),
                   1);

  /* Reads: newest first, each filter on its own, the limit and the scan bound. */
  seen_rows_t r = {0};
  tb_activity_filter_t all = {0};
  assert_int_equal(tb_store_activity_list(st, &all, collect_row, &r), TB_OK);
  assert_int_equal(r.n, 4);
  assert_string_equal(r.ids[0], "m4");
  assert_string_equal(r.ids[3], "m1");
  assert_true(r.has_payload[0] && r.payload_len[0] == 0);
  assert_true(r.has_payload[1] && r.payload_len[1] == sizeof(bytes));
  assert_false(r.has_payload[2]);
  tb_activity_filter_t by_type = {.event_type = "capture/repository.sync"};
  memset(&r, 0, sizeof(r));
  assert_int_equal(tb_store_activity_list(st, &by_type, collect_row, &r), TB_OK);
  assert_int_equal(r.n, 2);
  tb_activity_filter_t by_key = {.key = "r1"};
  memset(&r, 0, sizeof(r));
  assert_int_equal(tb_store_activity_list(st, &by_key, collect_row, &r), TB_OK);
  assert_int_equal(r.n, 1);
  assert_string_equal(r.ids[0], "m3");
  tb_activity_filter_t by_corr = {.correlation_id = "corr-1"};
  memset(&r, 0, sizeof(r));
  assert_int_equal(tb_store_activity_list(st, &by_corr, collect_row, &r), TB_OK);
  assert_int_equal(r.n, 1);
  assert_string_equal(r.ids[0], "m1");
  tb_activity_filter_t limited = {.limit = 3};
  memset(&r, 0, sizeof(r));
  assert_int_equal(tb_store_activity_list(st, &limited, collect_row, &r), TB_OK);
  assert_int_equal(r.n, 3);
  tb_activity_filter_t newest = {.scan_newest = 2, .event_type = "CLIENT_CREATED"};
  memset(&r, 0, sizeof(r));
  assert_int_equal(tb_store_activity_list(st, &newest, collect_row, &r), TB_OK);
  assert_int_equal(r.n, 0); /* m1 is the oldest of four */
  tb_activity_filter_t later = {.since_us = tb_wall_us() + 60000000};
  memset(&r, 0, sizeof(r));
  assert_int_equal(tb_store_activity_list(st, &later, collect_row, &r), TB_OK);
  assert_int_equal(r.n, 0);

  tb_activity_t no_id = {.msg_id = "", .event_type = "X", .tier = "low"};
  assert_int_equal(tb_store_activity(st, &no_id), TB_ERR_INVALID);
  tb_store_close(st);
}

/* A dead letter as the engine writes it. */
static tb_dlq_entry_t dead(const char *id, uint64_t seq, const char *cls, const char *err) {
  return (tb_dlq_entry_t){.msg_id = id,
                          .event_type = "CLIENT_CREATED",
                          .tier = "high",
                          .reason_class = cls,
                          .error = err,
                          .subject = "tb.evt.high.crm.CLIENT_CREATED",
                          .headers_json = "{\"X-A\": [\"1\"]}",
                          .payload = "\x01\x00\x02",
                          .len = 3,
                          .stream = "TB_HIGH",
                          .stream_seq = seq,
                          .deliveries = 5};
}

static void test_dead_letters(void **state) {
  tb_store_t *st = open_mem();
  sqlite3 *db = tb__store_db(st);
  tb_dlq_entry_t e = dead("d1", 7, "max_deliveries", "max deliveries (5) reached");
  assert_int_equal(tb_store_dlq_put(st, &e), TB_OK);
  char buf[160];
  assert_string_equal(q_text(db,
                             "SELECT event_type || '|' || tier || '|' || stream || '|' || "
                             "stream_seq || '|' || reason || '|' || class || '|' || deliveries "
                             "|| '|' || hex(payload) FROM dead_letters WHERE msg_id = 'd1'",
                             buf, sizeof(buf)),
                      "CLIENT_CREATED|high|TB_HIGH|7|max deliveries (5) reached|max_deliveries|5|"
                      "010002");
  /* The same message dead-lettered again replaces its record instead of failing. */
  e = dead("d1", 9, "malformed", "malformed payload");
  assert_int_equal(tb_store_dlq_put(st, &e), TB_OK);
  assert_int_equal(q_int(db, "SELECT count(*) FROM dead_letters"), 1);
  assert_string_equal(
      q_text(db, "SELECT reason || '|' || stream_seq FROM dead_letters", buf, sizeof(buf)),
      "malformed payload|9");
  tb_dlq_entry_t got;
  int found = 0;
  assert_int_equal(tb_store_dlq_get(st, "1", &got, &found), TB_OK); /* by number */
  assert_int_equal(found, 1);
  assert_string_equal(got.msg_id, "d1");
  assert_int_equal(got.len, 3);
  assert_memory_equal(got.payload, "\x01\x00\x02", 3);
  assert_string_equal(got.headers_json, "{\"X-A\": [\"1\"]}");
  tb_dlq_entry_free(&got);
  assert_int_equal(tb_store_dlq_get(st, "nope", &got, &found), TB_OK);
  assert_int_equal(found, 0);
  e = dead(NULL, 1, "malformed", "r");
  assert_int_equal(tb_store_dlq_put(st, &e), TB_ERR_INVALID);
  e = dead("d2", 1, "no_such_class", "r");
  assert_int_equal(tb_store_dlq_put(st, &e), TB_ERR_INVALID);
  tb_store_close(st);
}

/* A replay drops the 'dead' processed record so that its copy applies once; once applied, a
 * second replay changes nothing. */
static void test_dead_letter_replay_once(void **state) {
  (void)state;
  tb_store_t *st = open_mem();
  sqlite3 *db = tb__store_db(st);
  tb_dispatch_record_t r = {
      .msg_id = "d1", .event_type = "CLIENT_CREATED", .tier = "high", .outcome = TB_OUTCOME_DEAD};
  int fresh = 0;
  assert_int_equal(tb_store_claim(st, &r, &fresh), TB_OK);
  tb_dlq_entry_t e = dead("d1", 7, "handler_failed", "rejected");
  assert_int_equal(tb_store_dlq_put(st, &e), TB_OK);
  int64_t round = -1;
  assert_int_equal(tb_store_dlq_replay_begin(st, "d1", &round), TB_OK);
  assert_int_equal(round, 1);
  assert_int_equal(q_int(db, "SELECT count(*) FROM processed WHERE msg_id = 'd1'"), 0);
  /* Replayed again before the copy was handled: a new round, still nothing applied. */
  assert_int_equal(tb_store_dlq_replay_begin(st, "d1", &round), TB_OK);
  assert_int_equal(round, 2);
  r.outcome = TB_OUTCOME_APPLIED; /* the copy applied */
  assert_int_equal(tb_store_claim(st, &r, &fresh), TB_OK);
  assert_int_equal(fresh, 1);
  assert_int_equal(tb_store_dlq_replay_begin(st, "d1", &round), TB_OK);
  assert_int_equal(round, 0);
  assert_int_equal(q_int(db, "SELECT replays FROM dead_letters WHERE msg_id = 'd1'"), 2);
  assert_int_equal(tb_store_dlq_replay_begin(st, "nope", &round), TB_ERR_NOT_FOUND);
  tb_store_close(st);
}

/* ------------------------------------------------------------------------------------------------
 * Counters and histograms
 * --------------------------------------------------------------------------------------------- */

static void test_counters_add_up(void **state) {
  tb_store_t *st = open_mem();
  for (int i = 0; i < 3; i++)
    assert_int_equal(tb_store_counter_add(st, "high", "crm", "processed", 1), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "high", "crm", "failed", 5), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "high", "crm", "failed", -2), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "high", "crm", "inversions", 0), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "high", "crm", "redelivered", INT64_C(1) << 40), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "high", "crm", "not-a-field", 9), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "low", "crm", "processed", 11), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "low", "crm", "dead", 1), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "low", "crm", "stale", 4), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "", "crm", "processed", 1), TB_ERR_INVALID);
  assert_int_equal(tb_store_counter_add(st, "low", "crm", NULL, 1), TB_ERR_INVALID);
  assert_int_equal(tb_store_counter_add(st, "low", NULL, "processed", 1), TB_ERR_INVALID);
  /* The same tier in other domains, and with none (a count from before domains were kept). */
  assert_int_equal(tb_store_counter_add(st, "high", "ops", "processed", 2), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "high", "ops", "redeliveries", 6), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "high", "", "processed", 100), TB_OK);
  assert_int_equal(tb_store_counter_add(st, "high", "gone", "processed", 1000), TB_OK);

  /* A tier's totals add up every domain, the unknown one included. */
  static tb_store_tier_stats_t s;
  assert_int_equal(tb_store_tier_stats(st, "high", &s), TB_OK);
  assert_int_equal(s.processed, 3 + 2 + 100 + 1000);
  assert_int_equal(s.failed, 3);
  assert_int_equal(s.inversions, 0);
  assert_int_equal(s.redelivered, INT64_C(1) << 40);
  assert_int_equal(s.redeliveries, 6);
  assert_int_equal(s.dead, 0);
  assert_int_equal(s.stale, 0);
  assert_int_equal(tb_store_tier_stats(st, "low", &s), TB_OK);
  assert_int_equal(s.processed, 11);
  assert_int_equal(s.dead, 1);
  assert_int_equal(s.stale, 4);
  assert_int_equal(s.failed, 0);
  assert_int_equal(tb_store_tier_stats(st, "nope", &s), TB_OK);
  assert_int_equal(s.processed, 0);
  assert_int_equal(s.start.total, 0);

  /* By domain: only the domains asked for, in their order; one never counted is all zeroes. */
  static const char *const domains[] = {"ops", "enrichment", "crm"};
  tb_store_counters_t c[3];
  memset(c, 0x5a, sizeof(c)); /* filled whatever was there */
  assert_int_equal(tb_store_tier_domain_counters(st, "high", domains, 3, c), TB_OK);
  assert_int_equal(c[0].processed, 2);
  assert_int_equal(c[0].redeliveries, 6);
  assert_int_equal(c[0].failed, 0);
  assert_int_equal(c[1].processed, 0);
  assert_int_equal(c[1].redelivered, 0);
  assert_int_equal(c[2].processed, 3);
  assert_int_equal(c[2].failed, 3);
  assert_int_equal(c[2].redelivered, INT64_C(1) << 40);
  assert_int_equal(tb_store_tier_domain_counters(st, "low", domains, 3, c), TB_OK);
  assert_int_equal(c[2].processed, 11);
  assert_int_equal(c[2].dead, 1);
  assert_int_equal(c[0].processed + c[1].processed, 0);
  assert_int_equal(tb_store_tier_domain_counters(st, "low", domains, 0, c), TB_OK);
  tb_store_close(st);
}

static void test_hist_merge_round_trip(void **state) {
  tb_store_t *st = open_mem();
  sqlite3 *db = tb__store_db(st);
  static tb_hist_t h, expect;
  static tb_store_tier_stats_t s;
  tb_hist_reset(&h);
  for (int i = 1; i <= 1000; i++) tb_hist_add(&h, i);
  tb_hist_add(&h, 100000);

  /* empty merge is a no-op */
  tb_hist_reset(&expect);
  assert_int_equal(tb_store_hist_merge(st, "high", "start", &expect), TB_OK);
  assert_int_equal(q_int(db, "SELECT count(*) FROM latency_summary"), 0);

  assert_int_equal(tb_store_hist_merge(st, "high", "start", &h), TB_OK);
  int64_t rows = q_int(db, "SELECT count(*) FROM latency_hist");
  int nonzero = 0;
  for (int b = 0; b < TB_HIST_BUCKETS; b++) nonzero += h.counts[b] != 0;
  assert_int_equal(rows, nonzero); /* only non-zero buckets are stored */
  assert_int_equal(tb_store_hist_merge(st, "high", "start", &h), TB_OK);
  assert_int_equal(q_int(db, "SELECT count(*) FROM latency_hist"), rows);

  tb_hist_t small;
  tb_hist_reset(&small);
  tb_hist_add(&small, 7);
  assert_int_equal(tb_store_hist_merge(st, "high", "commit", &small), TB_OK);

  tb_hist_reset(&expect);
  tb_hist_merge(&expect, &h);
  tb_hist_merge(&expect, &h);
  assert_int_equal(tb_store_tier_stats(st, "high", &s), TB_OK);
  assert_int_equal(s.start.total, 2002);
  assert_int_equal(s.start.max, 100000);
  assert_memory_equal(s.start.counts, expect.counts, sizeof(expect.counts));
  /* p99 of 1..1000 twice plus 100000 twice: rank 1982 of 2002 is the value 991. */
  int64_t p99 = tb_hist_quantile(&s.start, 0.99);
  assert_int_equal(p99, tb_hist_quantile(&expect, 0.99));
  assert_int_equal(p99, tb_hist_bucket_upper(tb_hist_bucket(991)));
  assert_true(p99 >= 991 && p99 <= 991 * 1.04);
  assert_int_equal(tb_hist_quantile(&s.start, 1.0), 100000);
  assert_int_equal(s.commit.total, 1);
  assert_int_equal(s.commit.max, 7);
  assert_int_equal(s.commit.counts[tb_hist_bucket(7)], 1);
  assert_int_equal(tb_store_tier_stats(st, "low", &s), TB_OK);
  assert_int_equal(s.start.total, 0);

  /* The last bucket (values past the range) survives the round trip. */
  tb_hist_reset(&small);
  tb_hist_add(&small, INT64_C(1) << 40);
  assert_int_equal(tb_store_hist_merge(st, "low", "start", &small), TB_OK);
  assert_int_equal(tb_store_tier_stats(st, "low", &s), TB_OK);
  assert_int_equal(s.start.counts[TB_HIST_BUCKETS - 1], 1);
  assert_int_equal(s.start.max, INT64_C(1) << 40);

  assert_int_equal(tb_store_hist_merge(st, "high", "queue", &h), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "kind 'queue'"));
  tb_store_close(st);
}

/* ------------------------------------------------------------------------------------------------
 * Lock contention
 * --------------------------------------------------------------------------------------------- */

/* The WAL header's checkpoint sequence number (big-endian, offset 12): a writer that finds the
 * whole WAL checkpointed starts it again from the front and increments it. */
static uint32_t wal_restarts(const char *db_path) {
  char wal[512];
  snprintf(wal, sizeof(wal), "%s-wal", db_path);
  unsigned char h[16];
  FILE *fp = fopen(wal, "rb");
  assert_non_null(fp);
  assert_int_equal(fread(h, 1, sizeof(h), fp), sizeof(h));
  fclose(fp);
  return (uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 | (uint32_t)h[14] << 8 | h[15];
}

/* The offloaded checkpoints copy the WAL back while the store writes on, so the WAL restarts
 * instead of growing. The checkpoint connection must have opened the WAL for that: it once had
 * not, every checkpoint was a silent no-op, and the WAL grew for the worker's whole life. */
static void test_offloaded_checkpoints_restart_the_wal(void **state) {
  db_fixture_t *f = *state;
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, f->path), TB_OK);
  assert_int_equal(tb_store_offload_checkpoints(st, f->path, 20), TB_OK);
  uint32_t before = 0;
  for (int round = 0; round < 10; round++) {
    assert_int_equal(tb_store_begin(st), TB_OK);
    for (int i = 0; i < 200; i++) {
      char id[64];
      snprintf(id, sizeof(id), "ckpt-%d-%d", round, i);
      tb_dispatch_record_t r = record(id);
      assert_int_equal(tb_store_mark_processed(st, &r), TB_OK);
    }
    assert_int_equal(tb_store_commit(st), TB_OK);
    if (round == 0) before = wal_restarts(f->path);
    usleep(150000); /* several checkpoint intervals */
  }
  uint32_t after = wal_restarts(f->path);
  print_message("WAL restarts over 9 rounds: %u\n", after - before);
  assert_true(after > before);
  tb_store_close(st);
}

/* Commits back to back for |us|, 20 records each, as a busy executor does. */
static void commit_back_to_back(tb_store_t *st, const char *prefix, int64_t us) {
  int64_t until = tb_mono_us() + us;
  for (int round = 0; tb_mono_us() < until; round++) {
    assert_int_equal(tb_store_begin(st), TB_OK);
    for (int i = 0; i < 20; i++) {
      char id[64];
      snprintf(id, sizeof(id), "%s-%08d-%02d", prefix, round, i);
      tb_dispatch_record_t r = record(id);
      assert_int_equal(tb_store_mark_processed(st, &r), TB_OK);
    }
    assert_int_equal(tb_store_commit(st), TB_OK);
  }
}

/* The same while the store commits back to back: a checkpoint pass then never finds a gap
 * between commits, and the WAL grew for good (1.3 GB after a million events in the bench) until
 * the writer took the last pass itself once the WAL is large. */
static void test_a_busy_writer_restarts_the_wal(void **state) {
  db_fixture_t *f = *state;
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, f->path), TB_OK);
  assert_int_equal(tb_store_offload_checkpoints(st, f->path, 20), TB_OK);
  tb_store_set_wal_restart(st, 256); /* past 256 frames */
  commit_back_to_back(st, "warm", 100000);
  uint32_t before = wal_restarts(f->path);
  commit_back_to_back(st, "busy", 1500000);
  uint32_t after = wal_restarts(f->path);
  print_message("WAL restarts in 1.5 s of back-to-back commits: %u\n", after - before);
  assert_true(after > before);
  tb_store_close(st);
}

/* ------------------------------------------------------------------------------------------------
 * Snapshots
 * --------------------------------------------------------------------------------------------- */

/* A writer thread committing back to back until told to stop, as a busy executor does. */
typedef struct writer {
  tb_store_t *st; /* the thread's alone while it runs */
  atomic_int stop;
  int rounds;
} writer_t;

static void *writer_main(void *arg) {
  writer_t *w = arg;
  for (w->rounds = 0; !atomic_load(&w->stop); w->rounds++) {
    if (tb_store_begin(w->st) != TB_OK) break;
    for (int i = 0; i < 20; i++) {
      char id[64];
      snprintf(id, sizeof(id), "w-%08d-%02d", w->rounds, i);
      tb_dispatch_record_t r = record(id);
      tb_store_mark_processed(w->st, &r);
    }
    if (tb_store_commit(w->st) != TB_OK) break;
  }
  return NULL;
}

static int64_t file_int(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  sqlite3_stmt *q = NULL;
  int64_t v = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    v = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return v;
}

/* A snapshot copied in small steps while another connection commits without pause completes,
 * as one consistent version: each step shares one read transaction. (Stepped with a read per
 * step, every commit in between restarted the copy, and it never finished: this test then runs
 * into its timeout.) The copy is one file with the positions, and a stop leaves nothing. */
static void test_snapshot_under_writes(void **state) {
  db_fixture_t *f = *state;
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, f->path), TB_OK);
  assert_int_equal(tb_store_offload_checkpoints(st, f->path, 20), TB_OK);
  assert_int_equal(tb_store_begin(st), TB_OK);
  for (int i = 0; i < 20000; i++) { /* some hundred pages: many steps of 8 */
    char id[64];
    snprintf(id, sizeof(id), "seed-%06d", i);
    tb_dispatch_record_t r = record(id);
    assert_int_equal(tb_store_mark_processed(st, &r), TB_OK);
  }
  assert_int_equal(tb_store_commit(st), TB_OK);
  writer_t w = {.st = st};
  atomic_init(&w.stop, 0);
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, writer_main, &w), 0);
  char snap[192];
  snprintf(snap, sizeof(snap), "%s/snap.db", f->dir);
  tb_snapshot_pos_t pos[2] = {{"TB_HIGH_CRM", 7}, {"TB_LOW_OPS", 1}};
  tb_snapshot_pace_t pace = {.step_pages = 8, .pause_ms = 1};
  usleep(20000); /* the writer is under way */
  int rounds_before = w.rounds;
  tb_status s = tb_store_snapshot(f->path, snap, pos, 2, &pace);
  int rounds_during = w.rounds - rounds_before;
  atomic_store(&w.stop, 1);
  pthread_join(thread, NULL);
  if (s != TB_OK) fail_msg("%s", tb_errdetail());
  int64_t copied = file_int(snap, "SELECT count(*) FROM processed");
  print_message("snapshot of %lld records while the writer committed %d times\n", (long long)copied,
                rounds_during);
  assert_true(rounds_during > 2); /* the writer really committed between the steps */
  assert_true(copied >= 20000 && copied % 20 == 0); /* whole transactions only */
  assert_int_equal(file_int(snap, "SELECT next_seq FROM snapshot_positions WHERE stream = "
                                  "'TB_HIGH_CRM'"),
                   7);
  assert_int_equal(file_int(snap, "SELECT count(*) FROM snapshot_positions"), 2);
  char *mode = NULL;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(snap, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_stmt *q = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  mode = strdup((const char *)sqlite3_column_text(q, 0));
  sqlite3_finalize(q);
  sqlite3_close(db);
  assert_string_equal(mode, "delete"); /* one self-contained file */
  free(mode);
  char side[256];
  snprintf(side, sizeof(side), "%s.part", snap);
  assert_int_equal(access(side, F_OK), -1);

  /* Stopped: TB_ERR_STOPPED, and neither the snapshot nor its .part is left. */
  char stopped[192];
  snprintf(stopped, sizeof(stopped), "%s/stopped.db", f->dir);
  atomic_int stop;
  atomic_init(&stop, 1);
  pace.stop = &stop;
  assert_int_equal(tb_store_snapshot(f->path, stopped, pos, 2, &pace), TB_ERR_STOPPED);
  assert_int_equal(access(stopped, F_OK), -1);
  snprintf(side, sizeof(side), "%s.part", stopped);
  assert_int_equal(access(side, F_OK), -1);
  tb_store_close(st);
  unlink(snap);
}

static void test_busy_begin(void **state) {
  db_fixture_t *f = *state;
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, f->path), TB_OK);
  assert_int_equal(tb_store_set_busy_timeout(st, -1), TB_ERR_INVALID);
  assert_int_equal(tb_store_set_busy_timeout(st, 100), TB_OK);

  sqlite3 *other = NULL;
  assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

  int64_t t0 = tb_mono_us();
  assert_int_equal(tb_store_begin(st), TB_ERR_BUSY);
  int64_t waited = tb_mono_us() - t0;
  assert_non_null(strstr(tb_errdetail(), "begin batch"));
  assert_non_null(strstr(tb_errdetail(), "locked"));
  assert_true(waited >= 90000);  /* it did wait for the timeout ... */
  assert_true(waited < 2000000); /* ... and not for the 5 s default */

  /* Readers are not blocked by the writer (WAL). */
  int seen = -1;
  assert_int_equal(tb_store_is_processed(st, "x", &seen), TB_OK);
  assert_int_equal(seen, 0);

  assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  assert_int_equal(tb_store_begin(st), TB_OK);
  tb_dispatch_record_t r = record("after-busy");
  assert_int_equal(tb_store_mark_processed(st, &r), TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  tb_store_close(st);
}

/* ------------------------------------------------------------------------------------------------
 * Repository tables (store/repo.h)
 * --------------------------------------------------------------------------------------------- */

static void test_order_after(void **state) {
  tb_order_t a = {100, "TB_HIGH", 10}, b = {200, "TB_HIGH", 11};
  /* same stream: the sequence decides, whatever the clocks say */
  assert_true(tb_order_after(&b, &a));
  assert_false(tb_order_after(&a, &b));
  tb_order_t late_clock = {999, "TB_HIGH", 9};
  assert_false(tb_order_after(&late_clock, &a));
  assert_false(tb_order_after(&a, &a)); /* a redelivery is not "after" itself */
  /* across streams the publisher's time decides */
  tb_order_t c = {150, "TB_LOW", 1};
  assert_true(tb_order_after(&c, &a));
  assert_false(tb_order_after(&c, &b));
  /* equal times across streams: a fixed tie-break, so exactly one direction holds */
  tb_order_t d = {100, "TB_LOW", 1};
  assert_true(tb_order_after(&d, &a) != tb_order_after(&a, &d));
  /* unknown sequences in one stream fall back to time */
  tb_order_t e = {100, NULL, 0}, g = {101, "", 0};
  assert_true(tb_order_after(&g, &e));
  assert_false(tb_order_after(&e, &g));
}

static void test_membership_apply(void **state) {
  tb_store_t *st = open_mem();
  sqlite3 *db = tb__store_db(st);
  int applied = -1, count = -1;
  tb_order_t add10 = {1000, "TB_HIGH", 10}, rm11 = {1001, "TB_HIGH", 11};
  assert_int_equal(tb_store_membership_apply(st, "w1", "r1", 0, &rm11, &applied), TB_OK);
  assert_int_equal(applied, 1);
  assert_int_equal(tb_store_membership_apply(st, "w1", "r1", 1, &add10, &applied), TB_OK);
  assert_int_equal(applied, 0); /* older than the applied removal */
  assert_int_equal(tb_store_workspace_count(st, "r1", &count), TB_OK);
  assert_int_equal(count, 0);
  assert_int_equal(tb_store_membership_apply(st, "w1", "r1", 0, &rm11, &applied), TB_OK);
  assert_int_equal(applied, 0); /* redelivery of the same change */

  tb_order_t add12 = {1002, "TB_HIGH", 12}, add13 = {1003, "TB_HIGH", 13};
  assert_int_equal(tb_store_membership_apply(st, "w1", "r1", 1, &add12, &applied), TB_OK);
  assert_int_equal(applied, 1);
  assert_int_equal(tb_store_membership_apply(st, "w2", "r1", 1, &add13, &applied), TB_OK);
  assert_int_equal(applied, 1);
  assert_int_equal(tb_store_workspace_count(st, "r1", &count), TB_OK);
  assert_int_equal(count, 2);
  assert_int_equal(q_int(db, "SELECT added_at FROM workspace_repositories WHERE "
                             "workspace_id = 'w1' AND repository_id = 'r1'"),
                   1002);
  assert_int_equal(tb_store_workspace_count(st, "r-other", &count), TB_OK);
  assert_int_equal(count, 0);

  char long_id[TB_ID_MAX + 1];
  memset(long_id, 'x', TB_ID_MAX);
  long_id[TB_ID_MAX] = '\0';
  assert_int_equal(tb_store_membership_apply(st, "w1", long_id, 1, &add13, &applied),
                   TB_ERR_INVALID);
  long_id[TB_ID_MAX - 1] = '\0'; /* TB_ID_MAX - 1 bytes is the longest accepted */
  assert_int_equal(tb_store_membership_apply(st, "w1", long_id, 1, &add13, &applied), TB_OK);
  assert_int_equal(applied, 1);
  assert_int_equal(tb_store_membership_apply(st, "", "r1", 1, &add13, &applied), TB_ERR_INVALID);
  assert_int_equal(applied, 0);
  tb_store_close(st);
}

static void test_repo_put_get_audit(void **state) {
  tb_store_t *st = open_mem();
  sqlite3 *db = tb__store_db(st);
  tb_tracked_repo_t r, got;
  int found = -1;
  assert_int_equal(tb_store_repo_get(st, "r1", &got, &found), TB_OK);
  assert_int_equal(found, 0);
  assert_string_equal(got.priority, "");

  memset(&r, 0, sizeof(r));
  snprintf(r.repository_id, sizeof(r.repository_id), "r1");
  snprintf(r.priority, sizeof(r.priority), "high");
  r.priority_score = 100;
  r.is_workspace_repo = 1;
  r.workspace_count = 2;
  r.tracking_enabled = 1;
  assert_int_equal(tb_store_repo_put(st, &r), TB_OK);
  assert_int_equal(tb_store_repo_get(st, "r1", &got, &found), TB_OK);
  assert_int_equal(found, 1);
  assert_memory_equal(&got, &r, sizeof(r));
  assert_int_equal(q_int(db, "SELECT count(*) FROM tracked_repositories WHERE "
                             "manual_override IS NULL"),
                   1);

  snprintf(r.priority, sizeof(r.priority), "low");
  r.priority_score = 25;
  snprintf(r.manual_override, sizeof(r.manual_override), "low");
  r.marked_low = 1;
  r.tracking_enabled = 0;
  assert_int_equal(tb_store_repo_put(st, &r), TB_OK);
  assert_int_equal(tb_store_repo_get(st, "r1", &got, &found), TB_OK);
  assert_memory_equal(&got, &r, sizeof(r));
  assert_int_equal(q_int(db, "SELECT count(*) FROM tracked_repositories"), 1);

  snprintf(r.priority, sizeof(r.priority), "urgent");
  assert_int_equal(tb_store_repo_put(st, &r), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "priority 'urgent'"));
  snprintf(r.priority, sizeof(r.priority), "low");
  snprintf(r.manual_override, sizeof(r.manual_override), "top");
  assert_int_equal(tb_store_repo_put(st, &r), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "manual_override 'top'"));

  assert_int_equal(tb_store_priority_audit(st, "r1", NULL, "high", "created", "m1"), TB_OK);
  assert_int_equal(tb_store_priority_audit(st, "r1", "high", "low", "operator", NULL), TB_OK);
  char buf[128];
  assert_string_equal(q_text(db,
                             "SELECT group_concat(coalesce(old_priority, '-') || '>' || "
                             "new_priority || ':' || reason || ':' || coalesce(msg_id, '-'), ';') "
                             "FROM (SELECT * FROM priority_audit ORDER BY id)",
                             buf, sizeof(buf)),
                      "->high:created:m1;high>low:operator:-");
  tb_store_close(st);
}

/* Writing a row into a table that is written per event or per workflow step builds no
 * temporary b-tree (a CHECK's IN list of three or more values does, for every row: migration
 * v14), and the rewritten CHECKs still refuse what the IN lists refused. */
static int explain_count(sqlite3 *db, const char *sql, const char *opcode) {
  char explain[1024];
  snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
  sqlite3_stmt *stmt = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, explain, -1, &stmt, NULL), SQLITE_OK);
  int n = 0;
  while (sqlite3_step(stmt) == SQLITE_ROW)
    if (strcmp((const char *)sqlite3_column_text(stmt, 1), opcode) == 0) n++;
  sqlite3_finalize(stmt);
  return n;
}

/* A random id must not put a whole row on a random page (v20): the processed record is appended in
 * commit order, and only its id index is keyed by the id, which stays unique. */
static void test_processed_rows_appended_with_unique_ids(void **state) {
  (void)state;
  tb_store_t *st = open_mem();
  sqlite3 *db = tb__store_db(st);
  char buf[256];
  assert_null(
      strstr(q_text(db, "SELECT sql FROM sqlite_master WHERE name = 'processed'", buf, sizeof(buf)),
             "WITHOUT ROWID"));
  assert_int_equal(sqlite3_exec(db,
                                "INSERT INTO processed(msg_id, committed_us, outcome) VALUES"
                                "('f3a9', 1, 'applied'), ('07c1', 2, 'applied'), ('b2e0', 3, "
                                "'dead')",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  assert_string_equal(q_text(db,
                             "SELECT group_concat(msg_id) FROM (SELECT msg_id FROM processed "
                             "ORDER BY rowid)",
                             buf, sizeof(buf)),
                      "f3a9,07c1,b2e0");
  assert_int_equal(sqlite3_exec(db,
                                "INSERT INTO processed(msg_id, committed_us, outcome) "
                                "VALUES('07c1', 4, 'applied')",
                                NULL, NULL, NULL) &
                       0xff,
                   SQLITE_CONSTRAINT);
  /* The lookup by id goes through the index, not a scan of the table. */
  assert_int_equal(explain_count(db, "SELECT 1 FROM processed WHERE msg_id = 'b2e0'", "Rewind"), 0);
  tb_store_close(st);
}

static void test_hot_tables_check_without_temporary_btrees(void **state) {
  (void)state;
  tb_store_t *st = open_mem();
  sqlite3 *db = tb__store_db(st);
  static const char *const hot[] = {
      "INSERT INTO processed(msg_id, committed_us, outcome) VALUES('m', 1, 'applied')",
      "INSERT INTO tracked_repositories(repository_id, priority, manual_override, updated_at) "
      "VALUES('r', 'high', 'low', 1)",
      "UPDATE workflows SET status = 'completed', step_state = 'done' WHERE id = 'w'",
  };
  for (size_t i = 0; i < TB_COUNTOF(hot); i++) {
    int n = explain_count(db, hot[i], "OpenEphemeral");
    if (n != 0) fail_msg("%s: %d temporary b-tree(s) per row", hot[i], n);
  }
  static const char *const refused[] = {
      "INSERT INTO processed(msg_id, committed_us, outcome) VALUES('m', 1, 'done')",
      "INSERT INTO tracked_repositories(repository_id, priority, updated_at) "
      "VALUES('r', 'urgent', 1)",
      "INSERT INTO tracked_repositories(repository_id, manual_override, updated_at) "
      "VALUES('r', 'urgent', 1)",
      "INSERT INTO workflows(id, name, domain, tier, status, data, created_us, updated_us) "
      "VALUES('w', 'n', 'd', 'high', 'paused', '{}', 1, 1)",
      "INSERT INTO workflows(id, name, domain, tier, status, step_state, data, created_us, "
      "updated_us) VALUES('w', 'n', 'd', 'high', 'running', 'gone', '{}', 1, 1)",
  };
  for (size_t i = 0; i < TB_COUNTOF(refused); i++)
    assert_int_equal(sqlite3_exec(db, refused[i], NULL, NULL, NULL) & 0xff, SQLITE_CONSTRAINT);
  assert_int_equal(sqlite3_exec(db,
                                "INSERT INTO tracked_repositories(repository_id, priority, "
                                "manual_override, updated_at) VALUES('r', 'low', NULL, 1)",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  tb_store_close(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_fresh_file_gets_latest_schema, db_fixture_setup,
                                      db_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_reopen_is_noop, db_fixture_setup, db_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_newer_version_refused, db_fixture_setup,
                                      db_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_partial_upgrade_and_failed_migration, db_fixture_setup,
                                      db_fixture_teardown),
      cmocka_unit_test(test_open_bad_path),
      cmocka_unit_test(test_processed_dedupe),
      cmocka_unit_test(test_savepoint_rollback_leaves_no_trace),
      cmocka_unit_test(test_activity_log),
      cmocka_unit_test(test_dead_letters),
      cmocka_unit_test(test_dead_letter_replay_once),
      cmocka_unit_test(test_counters_add_up),
      cmocka_unit_test(test_hist_merge_round_trip),
      cmocka_unit_test_setup_teardown(test_busy_begin, db_fixture_setup, db_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_snapshot_under_writes, db_fixture_setup,
                                      db_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_offloaded_checkpoints_restart_the_wal, db_fixture_setup,
                                      db_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_a_busy_writer_restarts_the_wal, db_fixture_setup,
                                      db_fixture_teardown),
      cmocka_unit_test(test_order_after),
      cmocka_unit_test(test_membership_apply),
      cmocka_unit_test(test_repo_put_get_audit),
      cmocka_unit_test(test_hot_tables_check_without_temporary_btrees),
      cmocka_unit_test(test_processed_rows_appended_with_unique_ids),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
