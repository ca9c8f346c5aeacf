/* Data access for workflow state (migration v4): runs, step history, waits and the event inbox.
 * The runtime (src/workflows/runtime.c) decides what these rows mean. */
#include "store/workflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "store/internal.h"

void tb_store_wf_row_clear(tb_wf_row_t *r) {
  free(r->data);
  free(r->error);
  memset(r, 0, sizeof(*r));
}

/* Fills |r| from a row of WF_GET / WF_LIST (same column order). */
static tb_status read_row(sqlite3_stmt *stmt, tb_wf_row_t *r) {
  int oom = 0;
  tb__col_copy(stmt, 0, r->id, sizeof(r->id));
  tb__col_copy(stmt, 1, r->name, sizeof(r->name));
  tb__col_copy(stmt, 2, r->domain, sizeof(r->domain));
  tb__col_copy(stmt, 3, r->tier, sizeof(r->tier));
  tb__col_copy(stmt, 4, r->status, sizeof(r->status));
  r->step = sqlite3_column_int(stmt, 5);
  tb__col_copy(stmt, 6, r->step_state, sizeof(r->step_state));
  r->attempt = sqlite3_column_int(stmt, 7);
  r->seq = sqlite3_column_int64(stmt, 8);
  r->data = tb__col_dup(stmt, 9, &oom);
  r->error = tb__col_dup(stmt, 10, &oom);
  tb__col_copy(stmt, 11, r->correlation_id, sizeof(r->correlation_id));
  tb__col_copy(stmt, 12, r->cause_msg_id, sizeof(r->cause_msg_id));
  r->created_us = sqlite3_column_int64(stmt, 13);
  r->updated_us = sqlite3_column_int64(stmt, 14);
  r->finished_us = sqlite3_column_int64(stmt, 15);
  r->hist_id = sqlite3_column_int64(stmt, 16);
  r->no = sqlite3_column_int64(stmt, 17);
  if (oom) return tb__fail(TB_ERR_NOMEM, "workflow %s: reading the row", r->id);
  return TB_OK;
}

tb_status tb_store_wf_insert(tb_store_t *st, const tb_wf_row_t *r, int *created) {
  if (r->id[0] == '\0') return tb__fail(TB_ERR_INVALID, "workflow insert: empty id");
  if (r->data == NULL) return tb__fail(TB_ERR_INVALID, "workflow insert %s: no data", r->id);
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_INSERT);
  sqlite3_bind_text(stmt, 1, r->id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, r->name, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, r->domain, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, r->tier, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 5, r->status, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 6, r->step);
  sqlite3_bind_text(stmt, 7, r->step_state, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 8, r->attempt);
  sqlite3_bind_int64(stmt, 9, r->seq);
  sqlite3_bind_text(stmt, 10, r->data, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 11, r->error);
  tb__bind_opt_text(stmt, 12, r->correlation_id);
  tb__bind_opt_text(stmt, 13, r->cause_msg_id);
  sqlite3_bind_int64(stmt, 14, tb_wall_us());
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_DONE)
    *created = sqlite3_changes(st->db) > 0;
  else
    s = tb__store_fail(st->db, rc, "workflow insert %s", r->id);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_get(tb_store_t *st, const char *id, tb_wf_row_t *out, int *found) {
  memset(out, 0, sizeof(*out));
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_GET);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    s = read_row(stmt, out);
    if (s == TB_OK)
      *found = 1;
    else
      tb_store_wf_row_clear(out);
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "workflow get %s", id);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_update(tb_store_t *st, const tb_wf_row_t *r) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_UPDATE);
  sqlite3_bind_text(stmt, 1, r->id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, r->status, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 3, r->step);
  sqlite3_bind_text(stmt, 4, r->step_state, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 5, r->attempt);
  sqlite3_bind_int64(stmt, 6, r->seq);
  sqlite3_bind_text(stmt, 7, r->data ? r->data : "{}", -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 8, r->error);
  if (r->finished_us > 0)
    sqlite3_bind_int64(stmt, 9, r->finished_us);
  else
    sqlite3_bind_null(stmt, 9);
  sqlite3_bind_int64(stmt, 10, tb_wall_us());
  sqlite3_bind_int64(stmt, 11, r->hist_id);
  return tb__exec_done(st, stmt, NULL, "workflow update", r->id);
}

tb_status tb_store_wf_hist_add(tb_store_t *st, const char *workflow_id, const tb_wf_hist_t *h,
                               int64_t *id) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_HIST_ADD);
  sqlite3_bind_text(stmt, 1, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, h->step);
  sqlite3_bind_text(stmt, 3, h->name ? h->name : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, h->kind ? h->kind : "", -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 5, h->attempt);
  sqlite3_bind_text(stmt, 6, h->status ? h->status : "started", -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 7, h->code);
  tb__bind_opt_text(stmt, 8, h->detail);
  tb__bind_opt_text(stmt, 9, h->result);
  tb__bind_opt_text(stmt, 10, h->error);
  tb__bind_opt_text(stmt, 11, h->tier);
  tb__bind_opt_text(stmt, 12, h->msg_id);
  sqlite3_bind_int64(stmt, 13, h->started_us ? h->started_us : tb_wall_us());
  if (h->ended_us > 0)
    sqlite3_bind_int64(stmt, 14, h->ended_us);
  else
    sqlite3_bind_null(stmt, 14);
  tb_status s = tb__exec_done(st, stmt, NULL, "workflow history add", workflow_id);
  if (s == TB_OK && id != NULL) *id = sqlite3_last_insert_rowid(st->db);
  return s;
}

tb_status tb_store_wf_hist_end(tb_store_t *st, int64_t id, const char *status, int code,
                               const char *detail, const char *result, const char *error) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_HIST_END);
  sqlite3_bind_int64(stmt, 1, id);
  sqlite3_bind_text(stmt, 2, status, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 3, code);
  tb__bind_opt_text(stmt, 4, detail);
  tb__bind_opt_text(stmt, 5, result);
  tb__bind_opt_text(stmt, 6, error);
  sqlite3_bind_int64(stmt, 7, tb_wall_us());
  return tb__exec_done(st, stmt, NULL, "workflow history end", status);
}

tb_status tb_store_wf_history(tb_store_t *st, const char *workflow_id,
                              int (*fn)(void *arg, const tb_wf_hist_t *h), void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_HISTORY);
  sqlite3_bind_text(stmt, 1, workflow_id, -1, SQLITE_STATIC);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_wf_hist_t h = {
        .id = sqlite3_column_int64(stmt, 0),
        .step = sqlite3_column_int(stmt, 1),
        .name = (const char *)sqlite3_column_text(stmt, 2),
        .kind = (const char *)sqlite3_column_text(stmt, 3),
        .attempt = sqlite3_column_int(stmt, 4),
        .status = (const char *)sqlite3_column_text(stmt, 5),
        .code = sqlite3_column_int(stmt, 6),
        .detail = (const char *)sqlite3_column_text(stmt, 7),
        .result = (const char *)sqlite3_column_text(stmt, 8),
        .error = (const char *)sqlite3_column_text(stmt, 9),
        .tier = (const char *)sqlite3_column_text(stmt, 10),
        .msg_id = (const char *)sqlite3_column_text(stmt, 11),
        .started_us = sqlite3_column_int64(stmt, 12),
        .ended_us = sqlite3_column_int64(stmt, 13),
    };
    if (fn(arg, &h) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s =
      rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "workflow history %s", workflow_id);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_wait_put(tb_store_t *st, const char *workflow_id, int64_t seq,
                               const char *event, const char *key, int64_t deadline_us) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_WAIT_PUT);
  sqlite3_bind_text(stmt, 1, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, seq);
  sqlite3_bind_text(stmt, 3, event, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 5, deadline_us);
  return tb__exec_done(st, stmt, NULL, "workflow wait", workflow_id);
}

tb_status tb_store_wf_wait_take(tb_store_t *st, const char *event, const char *key,
                                char *workflow_id, size_t cap, int64_t *seq, int *found) {
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_WAIT_TAKE);
  sqlite3_bind_text(stmt, 1, event, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, key, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    tb__col_copy(stmt, 0, workflow_id, cap);
    *seq = sqlite3_column_int64(stmt, 1);
    *found = 1;
    rc = sqlite3_step(stmt); /* finishes the DELETE ... RETURNING */
  }
  tb_status s = rc == SQLITE_DONE
                    ? TB_OK
                    : tb__store_fail(st->db, rc, "workflow wait take %s/%s", event, key);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_wait_key_of(tb_store_t *st, const char *workflow_id, const char *event,
                                  char *key, size_t cap, int *found) {
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_WAIT_KEY_OF);
  sqlite3_bind_text(stmt, 1, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, event, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    tb__col_copy(stmt, 0, key, cap);
    *found = 1;
    rc = SQLITE_DONE;
  }
  tb_status s = rc == SQLITE_DONE
                    ? TB_OK
                    : tb__store_fail(st->db, rc, "workflow wait of %s for %s", workflow_id, event);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_wait_drop(tb_store_t *st, const char *workflow_id, int64_t seq) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_WAIT_DROP);
  sqlite3_bind_text(stmt, 1, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, seq);
  return tb__exec_done(st, stmt, NULL, "workflow wait drop", workflow_id);
}

tb_status tb_store_wf_wait_drop_all(tb_store_t *st, const char *workflow_id) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_WAIT_DROP_ALL);
  sqlite3_bind_text(stmt, 1, workflow_id, -1, SQLITE_STATIC);
  return tb__exec_done(st, stmt, NULL, "workflow waits drop", workflow_id);
}

tb_status tb_store_wf_inbox_add(tb_store_t *st, const char *event, const char *key,
                                const char *msg_id, const char *payload, int code,
                                const char *workflow_id, int64_t seq, int *added) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_INBOX_ADD);
  sqlite3_bind_text(stmt, 1, event, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, key, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, msg_id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 4, payload);
  sqlite3_bind_int(stmt, 5, code);
  tb__bind_opt_text(stmt, 6, workflow_id);
  if (workflow_id != NULL && workflow_id[0] != '\0')
    sqlite3_bind_int64(stmt, 7, seq);
  else
    sqlite3_bind_null(stmt, 7);
  sqlite3_bind_int64(stmt, 8, tb_wall_us());
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_DONE) {
    if (added != NULL) *added = sqlite3_changes(st->db) > 0;
  } else {
    s = tb__store_fail(st->db, rc, "workflow inbox add %s", msg_id);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_inbox_claim(tb_store_t *st, const char *event, const char *key,
                                  const char *workflow_id, int64_t seq, int *found) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_INBOX_CLAIM);
  sqlite3_bind_text(stmt, 1, event, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, key, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 4, seq);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_DONE)
    *found = sqlite3_changes(st->db) > 0;
  else
    s = tb__store_fail(st->db, rc, "workflow inbox claim %s/%s", event, key);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_inbox_get(tb_store_t *st, const char *workflow_id, int64_t seq,
                                char **payload, int *code, int *found) {
  *payload = NULL;
  *code = 0;
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_INBOX_GET);
  sqlite3_bind_text(stmt, 1, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, seq);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    int oom = 0;
    *payload = tb__col_dup(stmt, 0, &oom);
    *code = sqlite3_column_int(stmt, 1);
    *found = 1;
    if (oom) s = tb__fail(TB_ERR_NOMEM, "workflow inbox %s", workflow_id);
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "workflow inbox get %s", workflow_id);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_outbox_cancel_prefix(tb_store_t *st, const char *prefix, int64_t *dropped) {
  if (prefix == NULL || prefix[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "outbox cancel: empty prefix would drop every row");
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_OUTBOX_CANCEL_PREFIX);
  sqlite3_bind_text(stmt, 1, prefix, -1, SQLITE_STATIC);
  tb_status s = tb__exec_done(st, stmt, NULL, "outbox cancel", prefix);
  if (s == TB_OK && dropped != NULL) *dropped = sqlite3_changes(st->db);
  return s;
}

tb_status tb_store_wf_list(tb_store_t *st, const char *status, const char *name, int64_t before,
                           int limit, int (*fn)(void *arg, const tb_wf_row_t *r), void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_LIST);
  sqlite3_bind_text(stmt, 1, status ? status : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, name ? name : "", -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 3, limit > 0 ? limit : -1);
  sqlite3_bind_int64(stmt, 4, before > 0 ? before : INT64_MAX);
  int rc;
  tb_status s = TB_OK;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_wf_row_t r;
    memset(&r, 0, sizeof(r));
    s = read_row(stmt, &r);
    int stop = s != TB_OK || fn(arg, &r) != 0;
    tb_store_wf_row_clear(&r);
    if (stop) {
      rc = SQLITE_DONE;
      break;
    }
  }
  if (s == TB_OK && rc != SQLITE_DONE) s = tb__store_fail(st->db, rc, "workflow list");
  tb__stmt_done(stmt);
  return s;
}
