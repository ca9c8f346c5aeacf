/* Data access for seed 001's per-service concurrency slots (store/slots.h). */
#include "store/slots.h"

#include "core/status.h"
#include "store/internal.h"

/* Steps |stmt| for one integer; *out = 0 when it returns no row. */
static tb_status one_int(tb_store_t *st, sqlite3_stmt *stmt, const char *what, int64_t *out) {
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  *out = 0;
  if (rc == SQLITE_ROW)
    *out = sqlite3_column_int64(stmt, 0);
  else if (rc != SQLITE_DONE)
    s = tb__store_fail(st->db, rc, "service slots: %s", what);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_slot_acquire(tb_store_t *st, const char *service, const char *workflow_id,
                                const char *step, const char *command_id, int limit, int64_t now_us,
                                int64_t expires_us, int64_t wait_expires_us, int *got,
                                int64_t *ahead_out) {
  *got = 0;
  if (ahead_out != NULL) *ahead_out = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SLOT_EXPIRE);
  sqlite3_bind_text(stmt, 1, service, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, now_us);
  tb_status s = tb__exec_done(st, stmt, NULL, "service slot expire", service);
  if (s != TB_OK) return s;
  /* This step's own row: a waiting step keeps the time it first waited. */
  int64_t since = now_us;
  stmt = tb__stmt(st, TB__ST_SLOT_MINE);
  sqlite3_bind_text(stmt, 1, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, step, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW && sqlite3_column_int(stmt, 0) == 1) since = sqlite3_column_int64(stmt, 1);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    s = tb__store_fail(st->db, rc, "service slot of %s", workflow_id);
  tb__stmt_done(stmt);
  if (s != TB_OK) return s;
  /* Held by others (a step taking its slot again does not count against itself), and waiting
   * longer than this step. */
  int64_t held = 0, ahead = 0;
  stmt = tb__stmt(st, TB__ST_SLOT_COUNT);
  sqlite3_bind_text(stmt, 1, service, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, step, -1, SQLITE_STATIC);
  s = one_int(st, stmt, "count", &held);
  if (s == TB_OK) {
    stmt = tb__stmt(st, TB__ST_SLOT_AHEAD);
    sqlite3_bind_text(stmt, 1, service, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, since);
    sqlite3_bind_text(stmt, 3, workflow_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, step, -1, SQLITE_STATIC);
    s = one_int(st, stmt, "ahead", &ahead);
  }
  if (s != TB_OK) return s;
  if (ahead_out != NULL) *ahead_out = ahead;
  int take = held < limit && ahead < limit - held;
  stmt = tb__stmt(st, TB__ST_SLOT_TAKE);
  sqlite3_bind_text(stmt, 1, service, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, step, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, command_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 5, take ? now_us : since);
  sqlite3_bind_int64(stmt, 6, take ? expires_us : wait_expires_us);
  sqlite3_bind_int(stmt, 7, take ? 0 : 1);
  s = tb__exec_done(st, stmt, NULL, "service slot take", command_id);
  if (s == TB_OK) *got = take;
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
  return one_int(st, stmt, "in use", n);
}
