/* Data access for seed 001's per-service concurrency slots (store/slots.h). */
#include "store/slots.h"

#include "core/status.h"
#include "store/internal.h"

tb_status tb_store_slot_acquire(tb_store_t *st, const char *service, const char *workflow_id,
                                const char *step, const char *command_id, int limit, int64_t now_us,
                                int64_t expires_us, int *got) {
  *got = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SLOT_EXPIRE);
  sqlite3_bind_text(stmt, 1, service, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, now_us);
  tb_status s = tb__exec_done(st, stmt, NULL, "service slot expire", service);
  if (s != TB_OK) return s;
  /* Slots held by others: a step that takes its slot again (a retry's new command) does not
   * count against itself. */
  stmt = tb__stmt(st, TB__ST_SLOT_COUNT);
  sqlite3_bind_text(stmt, 1, service, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, step, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  int64_t others = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
  if (rc != SQLITE_ROW) s = tb__store_fail(st->db, rc, "service slot count %s", service);
  tb__stmt_done(stmt);
  if (s != TB_OK || others >= limit) return s;
  stmt = tb__stmt(st, TB__ST_SLOT_TAKE);
  sqlite3_bind_text(stmt, 1, service, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, step, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, command_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 5, now_us);
  sqlite3_bind_int64(stmt, 6, expires_us);
  s = tb__exec_done(st, stmt, NULL, "service slot take", command_id);
  if (s == TB_OK) *got = 1;
  return s;
}

tb_status tb_store_slot_release(tb_store_t *st, const char *workflow_id, const char *step) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SLOT_RELEASE);
  sqlite3_bind_text(stmt, 1, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, step ? step : "", -1, SQLITE_STATIC);
  return tb__exec_done(st, stmt, NULL, "service slot release", workflow_id);
}

tb_status tb_store_slot_in_use(tb_store_t *st, const char *service, int64_t now_us, int64_t *n) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SLOT_IN_USE);
  sqlite3_bind_text(stmt, 1, service, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, now_us);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW)
    *n = sqlite3_column_int64(stmt, 0);
  else
    s = tb__store_fail(st->db, rc, "service slots in use %s", service);
  tb__stmt_done(stmt);
  return s;
}
