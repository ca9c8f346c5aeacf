/* Read-only aggregates for monitoring (monitor.h). */
#include "store/monitor.h"

#include <string.h>

#include "core/status.h"
#include "store/internal.h"

#define MAX_TIERS 16

tb_status tb_store_mon_runs(tb_store_t *st, int64_t since_us,
                            int (*fn)(void *arg, const tb_mon_runs_t *r), void *arg) {
  /* Two statements: the counts per tier, then the rows at the two ranks; joined here by tier. */
  tb_mon_runs_t runs[MAX_TIERS];
  char names[MAX_TIERS][32];
  int n = 0, rc;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_MON_RUNS);
  sqlite3_bind_int64(stmt, 1, since_us);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && n < MAX_TIERS) {
    tb_mon_runs_t *r = &runs[n];
    memset(r, 0, sizeof(*r));
    tb__col_copy(stmt, 0, names[n], sizeof(names[n]));
    r->tier = names[n];
    r->finished = sqlite3_column_int64(stmt, 1);
    r->completed = sqlite3_column_int64(stmt, 2);
    r->failed = sqlite3_column_int64(stmt, 3);
    r->avg_us = sqlite3_column_double(stmt, 4);
    r->max_us = sqlite3_column_int64(stmt, 5);
    n++;
  }
  tb_status s = rc == SQLITE_DONE || rc == SQLITE_ROW
                    ? TB_OK
                    : tb__store_fail(st->db, rc, "monitor: runs per tier");
  tb__stmt_done(stmt);
  if (s != TB_OK) return s;
  stmt = tb__stmt(st, TB__ST_MON_RUN_QUANTILES);
  sqlite3_bind_int64(stmt, 1, since_us);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *tier = (const char *)sqlite3_column_text(stmt, 0);
    int64_t rn = sqlite3_column_int64(stmt, 1), cnt = sqlite3_column_int64(stmt, 2);
    int64_t d = sqlite3_column_int64(stmt, 3);
    for (int i = 0; i < n; i++) {
      if (tier == NULL || strcmp(runs[i].tier, tier) != 0) continue;
      /* With one or two runs both ranks are the same row. */
      if (rn == (cnt * 50 + 99) / 100) runs[i].p50_us = d;
      if (rn == (cnt * 99 + 99) / 100) runs[i].p99_us = d;
    }
  }
  s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "monitor: run quantiles");
  tb__stmt_done(stmt);
  for (int i = 0; i < n && s == TB_OK; i++)
    if (fn(arg, &runs[i]) != 0) break;
  return s;
}

/* Steps a statement whose rows are (text, text, count) through |fn|. */
static tb_status triples(tb_store_t *st, sqlite3_stmt *stmt, const char *what,
                         int (*fn)(void *arg, const char *a, const char *b, int64_t n), void *arg) {
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *a = (const char *)sqlite3_column_text(stmt, 0);
    const char *b = (const char *)sqlite3_column_text(stmt, 1);
    if (fn(arg, a ? a : "", b ? b : "", sqlite3_column_int64(stmt, 2)) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "monitor: %s", what);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_mon_active(tb_store_t *st,
                              int (*fn)(void *arg, const char *tier, const char *status, int64_t n),
                              void *arg) {
  return triples(st, tb__stmt(st, TB__ST_MON_ACTIVE), "active runs", fn, arg);
}

tb_status tb_store_mon_escalations(tb_store_t *st,
                                   int (*fn)(void *arg, const char *tier, const char *rule,
                                             int64_t n),
                                   void *arg) {
  return triples(st, tb__stmt(st, TB__ST_MON_ESCALATIONS), "escalations", fn, arg);
}

tb_status tb_store_mon_sched_runs(tb_store_t *st,
                                  int (*fn)(void *arg, const char *task, const char *status,
                                            int64_t n),
                                  void *arg) {
  return triples(st, tb__stmt(st, TB__ST_MON_SCHED_RUNS), "scheduler runs", fn, arg);
}

tb_status tb_store_mon_delayed(tb_store_t *st, int64_t now_us,
                               int (*fn)(void *arg, const char *tier, const char *unused,
                                         int64_t n),
                               void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_MON_DELAYED);
  sqlite3_bind_int64(stmt, 1, now_us);
  return triples(st, stmt, "delayed rows", fn, arg);
}

tb_status tb_store_mon_outbox(tb_store_t *st, int64_t now_us, int64_t *due, int64_t *held,
                              int64_t *oldest_due_us) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_MON_OUTBOX);
  sqlite3_bind_int64(stmt, 1, now_us);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    *due = sqlite3_column_int64(stmt, 0);
    *oldest_due_us = sqlite3_column_int64(stmt, 1);
    *held = sqlite3_column_int64(stmt, 2);
  } else {
    s = tb__store_fail(st->db, rc, "monitor: outbox");
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_mon_activity_truncated(tb_store_t *st, int64_t since_us, int64_t max_rows,
                                          int *truncated) {
  *truncated = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_MON_ACTIVITY_UNSCANNED);
  tb_status s = TB_OK;
  sqlite3_bind_int64(stmt, 1, max_rows);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW)
    *truncated = sqlite3_column_int64(stmt, 0) >= since_us;
  else if (rc != SQLITE_DONE)
    s = tb__store_fail(st->db, rc, "monitor: activity span");
  tb__stmt_done(stmt);
  return s;
}
