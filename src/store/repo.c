/* Data access for seed 002's tables: workspace membership with its per-pair ordering guard,
 * tracked repositories and the priority audit trail. The rules that decide priorities live in
 * src/workflows/workspace.c. */
#include "store/repo.h"

#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "store/internal.h"

/* Ids are copied into fixed TB_ID_MAX buffers by the layers above, so a longer one is refused
 * here rather than truncated there. */
static tb_status check_id(const char *what, const char *id) {
  if (id == NULL || id[0] == '\0') return tb__fail(TB_ERR_INVALID, "%s: empty id", what);
  if (strlen(id) >= TB_ID_MAX)
    return tb__fail(TB_ERR_INVALID, "%s: id '%.32s...' is longer than %d bytes", what, id,
                    TB_ID_MAX - 1);
  return TB_OK;
}

static int valid_priority(const char *p) {
  return strcmp(p, "high") == 0 || strcmp(p, "medium") == 0 || strcmp(p, "low") == 0;
}

/* Within one stream the sequence is exact. Across streams only the publisher's clock relates two
 * events; ties fall back to stream name and sequence so that the winner does not depend on the
 * order in which workers happen to commit. A zero sequence means "unknown" (not from a stream). */
int tb_order_after(const tb_order_t *a, const tb_order_t *b) {
  const char *sa = a->stream ? a->stream : "", *sb = b->stream ? b->stream : "";
  int cmp = strcmp(sa, sb);
  if (cmp == 0 && a->seq != 0 && b->seq != 0) return a->seq > b->seq;
  if (a->occurred_us != b->occurred_us) return a->occurred_us > b->occurred_us;
  if (cmp != 0) return cmp > 0;
  return a->seq > b->seq;
}

/* Reads the last applied change of the pair into |prev| (stream copied into |stream_buf|).
 * *found = 0 when the pair has never changed. */
static tb_status last_change(tb_store_t *st, const char *workspace_id, const char *repository_id,
                             tb_order_t *prev, char *stream_buf, size_t cap, int *found) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_MEMBERSHIP_VERSION);
  sqlite3_bind_text(stmt, 1, workspace_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, repository_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  *found = 0;
  if (rc == SQLITE_ROW) {
    const char *stream = (const char *)sqlite3_column_text(stmt, 2);
    snprintf(stream_buf, cap, "%s", stream ? stream : "");
    prev->occurred_us = sqlite3_column_int64(stmt, 1);
    prev->stream = stream_buf;
    prev->seq = (uint64_t)sqlite3_column_int64(stmt, 3);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "membership %s/%s: read last change", workspace_id,
                       repository_id);
  }
  tb__stmt_done(stmt);
  return s;
}

static tb_status step_done(tb_store_t *st, tb__store_stmt_id id, const char *what,
                           const char *workspace_id, const char *repository_id) {
  sqlite3_stmt *stmt = tb__stmt(st, id);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE ? TB_OK
                                  : tb__store_fail(st->db, rc, "membership %s/%s: %s", workspace_id,
                                                   repository_id, what);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_membership_apply(tb_store_t *st, const char *workspace_id,
                                    const char *repository_id, int present, const tb_order_t *order,
                                    int *applied) {
  *applied = 0;
  tb_status s = check_id("membership: workspace_id", workspace_id);
  if (s == TB_OK) s = check_id("membership: repository_id", repository_id);
  if (s != TB_OK) return s;

  tb_order_t prev;
  char prev_stream[256];
  int found = 0;
  s = last_change(st, workspace_id, repository_id, &prev, prev_stream, sizeof(prev_stream), &found);
  if (s != TB_OK || (found && !tb_order_after(order, &prev))) return s;

  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_MEMBERSHIP_VERSION_PUT);
  sqlite3_bind_text(stmt, 1, workspace_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, repository_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 3, present ? 1 : 0);
  sqlite3_bind_int64(stmt, 4, order->occurred_us);
  sqlite3_bind_text(stmt, 5, order->stream ? order->stream : "", -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 6, (sqlite3_int64)order->seq);
  s = step_done(st, TB__ST_MEMBERSHIP_VERSION_PUT, "record change", workspace_id, repository_id);
  if (s != TB_OK) return s;

  if (present) {
    /* added_at is the publisher's time, not ours, so a rebuild from the log gives the same row. */
    stmt = tb__stmt(st, TB__ST_MEMBERSHIP_ADD);
    sqlite3_bind_text(stmt, 1, workspace_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, repository_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, order->occurred_us);
    s = step_done(st, TB__ST_MEMBERSHIP_ADD, "add", workspace_id, repository_id);
  } else {
    stmt = tb__stmt(st, TB__ST_MEMBERSHIP_REMOVE);
    sqlite3_bind_text(stmt, 1, workspace_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, repository_id, -1, SQLITE_STATIC);
    s = step_done(st, TB__ST_MEMBERSHIP_REMOVE, "remove", workspace_id, repository_id);
  }
  if (s == TB_OK) *applied = 1;
  return s;
}

tb_status tb_store_workspace_count(tb_store_t *st, const char *repository_id, int *count) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WORKSPACE_COUNT);
  sqlite3_bind_text(stmt, 1, repository_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW)
    *count = sqlite3_column_int(stmt, 0);
  else
    s = tb__store_fail(st->db, rc, "workspace count %s", repository_id);
  tb__stmt_done(stmt);
  return s;
}

static void copy_text(char *dst, size_t cap, const unsigned char *src) {
  snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

tb_status tb_store_repo_get(tb_store_t *st, const char *repository_id, tb_tracked_repo_t *out,
                            int *found) {
  memset(out, 0, sizeof(*out));
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_REPO_GET);
  sqlite3_bind_text(stmt, 1, repository_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    copy_text(out->repository_id, sizeof(out->repository_id), (const unsigned char *)repository_id);
    copy_text(out->priority, sizeof(out->priority), sqlite3_column_text(stmt, 0));
    out->priority_score = sqlite3_column_int(stmt, 1);
    out->is_workspace_repo = sqlite3_column_int(stmt, 2);
    out->workspace_count = sqlite3_column_int(stmt, 3);
    out->tracking_enabled = sqlite3_column_int(stmt, 4);
    copy_text(out->manual_override, sizeof(out->manual_override), sqlite3_column_text(stmt, 5));
    out->marked_low = sqlite3_column_int(stmt, 6);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "repo get %s", repository_id);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_repo_put(tb_store_t *st, const tb_tracked_repo_t *r) {
  tb_status s = check_id("repo put: repository_id", r->repository_id);
  if (s != TB_OK) return s;
  if (!valid_priority(r->priority))
    return tb__fail(TB_ERR_INVALID, "repo put %s: priority '%s' is not high, medium or low",
                    r->repository_id, r->priority);
  if (r->manual_override[0] != '\0' && !valid_priority(r->manual_override))
    return tb__fail(TB_ERR_INVALID,
                    "repo put %s: manual_override '%s' is not empty, high, medium or low",
                    r->repository_id, r->manual_override);
  if (r->workspace_count < 0)
    return tb__fail(TB_ERR_INVALID, "repo put %s: workspace_count %d is negative", r->repository_id,
                    r->workspace_count);
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_REPO_PUT);
  sqlite3_bind_text(stmt, 1, r->repository_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, r->priority, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 3, r->priority_score);
  sqlite3_bind_int(stmt, 4, r->is_workspace_repo ? 1 : 0);
  sqlite3_bind_int(stmt, 5, r->workspace_count);
  sqlite3_bind_int(stmt, 6, r->tracking_enabled ? 1 : 0);
  tb__bind_opt_text(stmt, 7, r->manual_override);
  sqlite3_bind_int(stmt, 8, r->marked_low ? 1 : 0);
  sqlite3_bind_int64(stmt, 9, tb_wall_us());
  int rc = sqlite3_step(stmt);
  s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "repo put %s", r->repository_id);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_priority_audit(tb_store_t *st, const char *repository_id,
                                  const char *old_priority, const char *new_priority,
                                  const char *reason, const char *msg_id) {
  tb_status s = check_id("priority audit: repository_id", repository_id);
  if (s != TB_OK) return s;
  if (new_priority == NULL || reason == NULL)
    return tb__fail(TB_ERR_INVALID, "priority audit %s: new priority and reason are required",
                    repository_id);
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_PRIORITY_AUDIT);
  sqlite3_bind_text(stmt, 1, repository_id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 2, old_priority);
  sqlite3_bind_text(stmt, 3, new_priority, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, reason, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 5, msg_id);
  sqlite3_bind_int64(stmt, 6, tb_wall_us());
  int rc = sqlite3_step(stmt);
  s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "priority audit %s", repository_id);
  tb__stmt_done(stmt);
  return s;
}
