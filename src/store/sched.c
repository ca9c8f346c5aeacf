/* Data access for the scheduler's tables (migration v6), the purge behind cleanup-old-jobs and
 * the online backup behind database-backup. The scheduling rules live in src/sched/. */
#include "store/sched.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/status.h"
#include "store/internal.h"

static tb_status check_name(const char *what, const char *name) {
  if (name == NULL || name[0] == '\0') return tb__fail(TB_ERR_INVALID, "%s: empty task name", what);
  if (strlen(name) >= TB_SCHED_NAME_MAX)
    return tb__fail(TB_ERR_INVALID, "%s: task name '%.32s...' is longer than %d bytes", what, name,
                    TB_SCHED_NAME_MAX - 1);
  return TB_OK;
}

static void read_task(sqlite3_stmt *stmt, tb_sched_task_t *t) {
  memset(t, 0, sizeof(*t));
  tb__col_copy(stmt, 0, t->name, sizeof(t->name));
  tb__col_copy(stmt, 1, t->pattern, sizeof(t->pattern));
  tb__col_copy(stmt, 2, t->job, sizeof(t->job));
  tb__col_copy(stmt, 3, t->payload, sizeof(t->payload));
  t->enabled = sqlite3_column_int(stmt, 4);
  tb__col_copy(stmt, 5, t->tier, sizeof(t->tier));
  tb__col_copy(stmt, 6, t->description, sizeof(t->description));
  const char *cu = (const char *)sqlite3_column_text(stmt, 7);
  t->catch_up_once = cu != NULL && strcmp(cu, "once") == 0;
  t->last_slot_us = sqlite3_column_int64(stmt, 8);
  t->failure_count = sqlite3_column_int(stmt, 9);
  tb__col_copy(stmt, 10, t->status, sizeof(t->status));
  tb__col_copy(stmt, 11, t->last_error, sizeof(t->last_error));
  t->last_run_us = sqlite3_column_int64(stmt, 12);
  t->created_us = sqlite3_column_int64(stmt, 13);
  t->updated_us = sqlite3_column_int64(stmt, 14);
}

tb_status tb_store_sched_put(tb_store_t *st, const tb_sched_task_t *t) {
  tb_status s = check_name("schedule add", t->name);
  if (s != TB_OK) return s;
  if (t->pattern[0] == '\0' || t->job[0] == '\0' || t->tier[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "schedule add %s: pattern, job and tier are required", t->name);
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SCHED_PUT);
  int64_t now = tb_wall_us();
  sqlite3_bind_text(stmt, 1, t->name, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, t->pattern, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, t->job, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, t->payload[0] ? t->payload : "{}", -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 5, t->enabled ? 1 : 0);
  sqlite3_bind_text(stmt, 6, t->tier, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 7, t->description, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 8, t->catch_up_once ? "once" : "skip", -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 9, t->last_slot_us);
  sqlite3_bind_int64(stmt, 10, now);
  int changes = 0;
  s = tb__exec_done(st, stmt, &changes, "schedule add", t->name);
  if (s == TB_OK && changes == 0)
    return tb__fail(TB_ERR_INVALID, "a task named '%s' already exists", t->name);
  return s;
}

tb_status tb_store_sched_get(tb_store_t *st, const char *name, tb_sched_task_t *out, int *found) {
  memset(out, 0, sizeof(*out));
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SCHED_GET);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    read_task(stmt, out);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "schedule get %s", name);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_sched_list(tb_store_t *st, int (*fn)(void *arg, const tb_sched_task_t *t),
                              void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SCHED_LIST);
  tb_sched_task_t t;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    read_task(stmt, &t);
    if (fn(arg, &t) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "schedule list");
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_sched_remove(tb_store_t *st, const char *name) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SCHED_REMOVE);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  int changes = 0;
  tb_status s = tb__exec_done(st, stmt, &changes, "schedule remove", name);
  if (s == TB_OK && changes == 0) return tb__fail(TB_ERR_NOT_FOUND, "no task named '%s'", name);
  return s;
}

tb_status tb_store_sched_enable(tb_store_t *st, const char *name, int enabled, int64_t now_us) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SCHED_ENABLE);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, enabled ? 1 : 0);
  sqlite3_bind_int64(stmt, 3, now_us);
  int changes = 0;
  tb_status s = tb__exec_done(st, stmt, &changes, "schedule enable", name);
  if (s == TB_OK && changes == 0) return tb__fail(TB_ERR_NOT_FOUND, "no task named '%s'", name);
  return s;
}

tb_status tb_store_sched_advance(tb_store_t *st, const char *name, int64_t slot_us, int *moved) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SCHED_ADVANCE);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, slot_us);
  int changes = 0;
  tb_status s = tb__exec_done(st, stmt, &changes, "schedule advance", name);
  if (s == TB_OK && moved != NULL) *moved = changes > 0;
  return s;
}

tb_status tb_store_sched_claim(tb_store_t *st, const char *name, int64_t slot_us, int attempt,
                               const char *trigger, int *fresh) {
  sqlite3_stmt *stmt;
  if (attempt <= 1) {
    stmt = tb__stmt(st, TB__ST_SCHED_CLAIM);
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, slot_us);
    sqlite3_bind_text(stmt, 3, trigger ? trigger : "cron", -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, tb_wall_us());
  } else {
    stmt = tb__stmt(st, TB__ST_SCHED_RECLAIM);
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, slot_us);
    sqlite3_bind_int(stmt, 3, attempt);
  }
  int changes = 0;
  tb_status s = tb__exec_done(st, stmt, &changes, "schedule claim", name);
  if (s == TB_OK) *fresh = changes > 0;
  return s;
}

tb_status tb_store_sched_end(tb_store_t *st, const char *name, int64_t slot_us, const char *status,
                             const char *result, const char *error, int failure_count) {
  int64_t now = tb_wall_us();
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SCHED_RUN_END);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, slot_us);
  sqlite3_bind_text(stmt, 3, status, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 4, result);
  tb__bind_opt_text(stmt, 5, error);
  if (strcmp(status, "retrying") == 0)
    sqlite3_bind_null(stmt, 6);
  else
    sqlite3_bind_int64(stmt, 6, now);
  tb_status s = tb__exec_done(st, stmt, NULL, "schedule run end", name);
  if (s != TB_OK) return s;
  stmt = tb__stmt(st, TB__ST_SCHED_TASK_END);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, status, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 3, failure_count);
  tb__bind_opt_text(stmt, 4, error);
  sqlite3_bind_int64(stmt, 5, now);
  return tb__exec_done(st, stmt, NULL, "schedule task end", name);
}

tb_status tb_store_sched_run_get(tb_store_t *st, const char *name, int64_t slot_us,
                                 tb_sched_run_t *out, int *found) {
  memset(out, 0, sizeof(*out));
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SCHED_RUN_GET);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, slot_us);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    tb__col_copy(stmt, 0, out->trigger, sizeof(out->trigger));
    out->attempts = sqlite3_column_int(stmt, 1);
    tb__col_copy(stmt, 2, out->status, sizeof(out->status));
    tb__col_copy(stmt, 3, out->result, sizeof(out->result));
    tb__col_copy(stmt, 4, out->error, sizeof(out->error));
    out->started_us = sqlite3_column_int64(stmt, 5);
    out->finished_us = sqlite3_column_int64(stmt, 6);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "schedule run get %s", name);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_purge_finished(tb_store_t *st, int64_t before_us, int64_t *workflows,
                                  int64_t *sched_runs) {
  /* Dependents first: the statements find their rows through the runs that are still there. */
  static const tb__store_stmt_id order[] = {TB__ST_PURGE_WF_HISTORY, TB__ST_PURGE_WF_INBOX,
                                            TB__ST_PURGE_WF_WAITS, TB__ST_PURGE_WF,
                                            TB__ST_SCHED_PURGE_RUNS};
  int n[5] = {0};
  for (int i = 0; i < 5; i++) {
    sqlite3_stmt *stmt = tb__stmt(st, order[i]);
    sqlite3_bind_int64(stmt, 1, before_us);
    tb_status s = tb__exec_done(st, stmt, &n[i], "cleanup-old-jobs", "purge");
    if (s != TB_OK) return s;
  }
  if (workflows != NULL) *workflows = n[3];
  if (sched_runs != NULL) *sched_runs = n[4];
  return TB_OK;
}

tb_status tb_store_backup(tb_store_t *st, const char *dest_path) {
  char part[4096];
  if ((size_t)snprintf(part, sizeof(part), "%s.part", dest_path) >= sizeof(part))
    return tb__fail(TB_ERR_INVALID, "backup: path '%.64s...' is too long", dest_path);
  const char *src_path = sqlite3_db_filename(st->db, "main");
  sqlite3 *src = st->db, *own = NULL, *dest = NULL;
  tb_status s = TB_OK;
  int rc;
  if (src_path != NULL && src_path[0] != '\0') {
    rc = sqlite3_open_v2(src_path, &own, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
      s = tb__fail(TB_ERR_STORE, "backup: open %s: %s", src_path,
                   own ? sqlite3_errmsg(own) : sqlite3_errstr(rc));
      sqlite3_close(own);
      return s;
    }
    sqlite3_busy_timeout(own, 5000);
    src = own;
  }
  unlink(part); /* a .part left by a crash would otherwise be backed up into, page by page */
  rc = sqlite3_open_v2(part, &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    s = tb__fail(TB_ERR_IO, "backup: create %s: %s", part,
                 dest ? sqlite3_errmsg(dest) : sqlite3_errstr(rc));
  } else {
    sqlite3_backup *b = sqlite3_backup_init(dest, "main", src, "main");
    if (b == NULL) {
      s = tb__fail(TB_ERR_STORE, "backup: %s", sqlite3_errmsg(dest));
    } else {
      rc = sqlite3_backup_step(b, -1); /* -1: every page in one step, under one read snapshot */
      int frc = sqlite3_backup_finish(b);
      if (rc != SQLITE_DONE)
        s = tb__fail(rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? TB_ERR_BUSY : TB_ERR_STORE,
                     "backup to %s: %s", part, sqlite3_errstr(rc));
      else if (frc != SQLITE_OK)
        s = tb__fail(TB_ERR_STORE, "backup to %s: %s", part, sqlite3_errmsg(dest));
    }
  }
  if (dest != NULL && sqlite3_close(dest) != SQLITE_OK && s == TB_OK)
    s = tb__fail(TB_ERR_IO, "backup: close %s", part);
  sqlite3_close(own);
  if (s == TB_OK && rename(part, dest_path) != 0)
    s = tb__fail(TB_ERR_IO, "backup: rename %s to %s: %s", part, dest_path, strerror(errno));
  if (s != TB_OK) unlink(part);
  return s;
}

tb_status tb_store_sched_reset(tb_store_t *st, const tb_sched_task_t *t, int64_t now_us,
                               int *found) {
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SCHED_RESET);
  sqlite3_bind_text(stmt, 1, t->name, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, t->pattern, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, t->job, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, t->payload[0] ? t->payload : "{}", -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 5, t->enabled ? 1 : 0);
  sqlite3_bind_text(stmt, 6, t->tier, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 7, t->description, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 8, t->catch_up_once ? "once" : "skip", -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 9, now_us);
  int changes = 0;
  tb_status s = tb__exec_done(st, stmt, &changes, "schedule reset", t->name);
  if (s == TB_OK) *found = changes > 0;
  return s;
}

tb_status tb_store_purge_logs(tb_store_t *st, int64_t activity_before_us, int64_t dlq_before_us,
                              int64_t *activity, int64_t *dead_letters, int64_t *escalations,
                              int64_t *inbox) {
  static const tb__store_stmt_id ids[] = {TB__ST_PURGE_ACTIVITY, TB__ST_PURGE_DEAD_LETTERS,
                                          TB__ST_PURGE_ESCALATIONS, TB__ST_PURGE_INBOX_UNCLAIMED};
  int64_t *outs[] = {activity, dead_letters, escalations, inbox};
  for (int i = 0; i < 4; i++) {
    sqlite3_stmt *stmt = tb__stmt(st, ids[i]);
    sqlite3_bind_int64(stmt, 1,
                       ids[i] == TB__ST_PURGE_DEAD_LETTERS ? dlq_before_us : activity_before_us);
    int n = 0;
    tb_status s = tb__exec_done(st, stmt, &n, "cleanup-old-jobs", "logs");
    if (s != TB_OK) return s;
    if (outs[i] != NULL) *outs[i] = n;
  }
  return TB_OK;
}
