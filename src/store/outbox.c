/* The transactional outbox table: follow-up messages queued in the same SQLite transaction as the
 * state change that caused them, read back oldest first by the relay and deleted once the stream
 * acked them. A crash between commit and publish therefore loses nothing, and the row's msg_id
 * (sent as Nats-Msg-Id) lets the stream drop a second publish of the same row. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/status.h"
#include "store/internal.h"

/* A NATS publish subject: dot-separated non-empty tokens, no wildcard token and no whitespace.
 * Caught here, at the handler's emit, because at the relay it would be a row that fails forever.
 * Returns NULL when valid, else what is wrong (static text). */
static const char *subject_problem(const char *subject) {
  if (subject == NULL || subject[0] == '\0') return "empty subject";
  size_t tok_len = 0;
  const char *tok = subject;
  for (const char *p = subject;; p++) {
    if (*p == '.' || *p == '\0') {
      if (tok_len == 0) return "empty token";
      if (tok_len == 1 && (tok[0] == '*' || tok[0] == '>')) return "wildcard token";
      if (*p == '\0') return NULL;
      tok = p + 1;
      tok_len = 0;
      continue;
    }
    if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') return "whitespace";
    tok_len++;
  }
}

/* Checks |headers_json| with SQLite's own JSON functions (the same ones the table's CHECK uses):
 * an object whose values are all strings, with no empty key and no Nats-Msg-Id (the relay sets
 * that from the row). */
static tb_status check_headers(tb_store_t *st, const char *msg_id, const char *headers_json) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_OUTBOX_HDR_TYPE);
  sqlite3_bind_text(stmt, 1, headers_json, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc != SQLITE_ROW) {
    s = tb__store_fail(st->db, rc, "outbox add '%s': check headers", msg_id);
  } else {
    const char *type = (const char *)sqlite3_column_text(stmt, 0);
    if (type == NULL)
      s = tb__fail(TB_ERR_INVALID, "outbox add '%s': headers are not valid JSON: %.200s", msg_id,
                   headers_json);
    else if (strcmp(type, "object") != 0)
      s = tb__fail(TB_ERR_INVALID, "outbox add '%s': headers must be a JSON object, not %s", msg_id,
                   type);
  }
  tb__stmt_done(stmt);
  if (s != TB_OK) return s;

  stmt = tb__stmt(st, TB__ST_OUTBOX_HDR_BAD);
  sqlite3_bind_text(stmt, 1, headers_json, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    const char *key = (const char *)sqlite3_column_text(stmt, 0);
    const char *type = (const char *)sqlite3_column_text(stmt, 1);
    if (key == NULL || key[0] == '\0')
      s = tb__fail(TB_ERR_INVALID, "outbox add '%s': header with an empty name", msg_id);
    else if (strcasecmp(key, "Nats-Msg-Id") == 0)
      s = tb__fail(TB_ERR_INVALID,
                   "outbox add '%s': header Nats-Msg-Id is set from the msg_id, not from headers",
                   msg_id);
    else
      s = tb__fail(TB_ERR_INVALID, "outbox add '%s': header '%s' is a JSON %s, not a string",
                   msg_id, key, type ? type : "null");
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "outbox add '%s': check headers", msg_id);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_outbox_add(tb_store_t *st, const char *subject, const char *msg_id,
                              const void *data, size_t len, const char *headers_json) {
  return tb_store_outbox_add_at(st, subject, msg_id, data, len, headers_json, 0);
}

tb_status tb_store_outbox_add_at(tb_store_t *st, const char *subject, const char *msg_id,
                                 const void *data, size_t len, const char *headers_json,
                                 int64_t not_before_us) {
  if (msg_id == NULL || msg_id[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "outbox add to '%s': empty msg_id", subject ? subject : "");
  const char *bad = subject_problem(subject);
  if (bad != NULL)
    return tb__fail(TB_ERR_INVALID, "outbox add '%s': subject '%s' is not publishable (%s)", msg_id,
                    subject ? subject : "", bad);
  if (data == NULL && len > 0)
    return tb__fail(TB_ERR_INVALID, "outbox add '%s': NULL data with length %zu", msg_id, len);
  if (len > (size_t)INT32_MAX)
    return tb__fail(TB_ERR_TOO_LARGE, "outbox add '%s': payload of %zu bytes", msg_id, len);
  if (headers_json != NULL) {
    tb_status s = check_headers(st, msg_id, headers_json);
    if (s != TB_OK) return s;
  }
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_OUTBOX_ADD);
  sqlite3_bind_text(stmt, 1, msg_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, subject, -1, SQLITE_STATIC);
  /* A NULL pointer would bind SQL NULL and break NOT NULL; an empty payload is a zero-length blob.
   */
  if (len == 0)
    sqlite3_bind_zeroblob(stmt, 3, 0);
  else
    sqlite3_bind_blob(stmt, 3, data, (int)len, SQLITE_STATIC);
  if (headers_json != NULL)
    sqlite3_bind_text(stmt, 4, headers_json, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(stmt, 4);
  sqlite3_bind_int64(stmt, 5, tb_wall_us());
  sqlite3_bind_int64(stmt, 6, not_before_us > 0 ? not_before_us : 0);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE
                    ? TB_OK
                    : tb__store_fail(st->db, rc, "outbox add '%s' to %s", msg_id, subject);
  tb__stmt_done(stmt);
  return s;
}

/* strdup of a column's text; NULL for SQL NULL. *oom is set when the copy failed. */
static char *column_dup(sqlite3_stmt *stmt, int col, int *oom) {
  const unsigned char *t = sqlite3_column_text(stmt, col);
  if (t == NULL) return NULL;
  char *copy = strdup((const char *)t);
  if (copy == NULL) *oom = 1;
  return copy;
}

/* Copies the current result row into |r|. TB_ERR_NOMEM leaves |r| for tb_store_outbox_free. */
static tb_status read_row(sqlite3_stmt *stmt, tb_outbox_row_t *r) {
  int oom = 0;
  r->id = sqlite3_column_int64(stmt, 0);
  r->msg_id = column_dup(stmt, 1, &oom);
  r->subject = column_dup(stmt, 2, &oom);
  const void *blob = sqlite3_column_blob(stmt, 3);
  int n = sqlite3_column_bytes(stmt, 3);
  r->len = n > 0 ? (size_t)n : 0;
  r->payload = malloc(r->len > 0 ? r->len : 1); /* non-NULL even when empty */
  if (r->payload == NULL)
    oom = 1;
  else if (r->len > 0)
    memcpy(r->payload, blob, r->len);
  r->headers_json = column_dup(stmt, 4, &oom);
  r->created_us = sqlite3_column_int64(stmt, 5);
  r->attempts = sqlite3_column_int(stmt, 6);
  r->last_error = column_dup(stmt, 7, &oom);
  if (oom || r->msg_id == NULL || r->subject == NULL)
    return tb__fail(TB_ERR_NOMEM, "outbox next: copy of row %lld", (long long)r->id);
  return TB_OK;
}

/* Frees what row |r| owns. */
static void row_clear(tb_outbox_row_t *r) {
  free(r->msg_id);
  free(r->subject);
  free(r->payload);
  free(r->headers_json);
  free(r->last_error);
}

/* Appends the rows of statement |id| (bound: now, limit, after) to *out (count, cap). */
static tb_status read_rows(tb_store_t *st, tb__store_stmt_id id, int64_t now_us, int limit,
                           int64_t after_id, tb_outbox_row_t **out, int *count, int *cap) {
  tb_status s = TB_OK;
  sqlite3_stmt *stmt = tb__stmt(st, id);
  sqlite3_bind_int64(stmt, 1, now_us);
  sqlite3_bind_int(stmt, 2, limit);
  sqlite3_bind_int64(stmt, 3, after_id);
  int rc = SQLITE_DONE;
  while (s == TB_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (*count == *cap) {
      int ncap = *cap ? *cap * 2 : (limit < 16 ? limit : 16);
      tb_outbox_row_t *grown = realloc(*out, (size_t)ncap * sizeof(**out));
      if (grown == NULL) {
        s = tb__fail(TB_ERR_NOMEM, "outbox next: %d rows", ncap);
        break;
      }
      *out = grown;
      *cap = ncap;
    }
    memset(&(*out)[*count], 0, sizeof(**out));
    s = read_row(stmt, &(*out)[*count]);
    (*count)++; /* counted even on failure so that the caller's free sees its partial copies */
  }
  if (s == TB_OK && rc != SQLITE_DONE) s = tb__store_fail(st->db, rc, "outbox next");
  tb__stmt_done(stmt);
  return s;
}

static int cmp_row_id(const void *a, const void *b) {
  int64_t x = ((const tb_outbox_row_t *)a)->id, y = ((const tb_outbox_row_t *)b)->id;
  return x < y ? -1 : x > y;
}

tb_status tb_store_outbox_next(tb_store_t *st, int64_t now_us, int limit, tb_outbox_row_t **rows,
                               int *n) {
  return tb_store_outbox_next_after(st, now_us, 0, limit, rows, n);
}

/* Two reads through the due index, each |limit| rows at most, merged by id: the rows to publish
 * now (next_attempt_us 0), and the held ones whose time has come (timers, retries). A single
 * read in id order had to step over every held row on its way, one per waiting workflow run
 * (a 24 h webhook wait holds a timeout row), at every pass of the relay. */
tb_status tb_store_outbox_next_after(tb_store_t *st, int64_t now_us, int64_t after_id, int limit,
                                     tb_outbox_row_t **rows, int *n) {
  *rows = NULL;
  *n = 0;
  if (limit < 1) return tb__fail(TB_ERR_INVALID, "outbox next: limit %d is below 1", limit);
  tb_outbox_row_t *out = NULL;
  int count = 0, cap = 0;
  tb_status s = read_rows(st, TB__ST_OUTBOX_NEXT_NOW, now_us, limit, after_id, &out, &count, &cap);
  if (s == TB_OK)
    s = read_rows(st, TB__ST_OUTBOX_NEXT_DUE_HELD, now_us, limit, after_id, &out, &count, &cap);
  if (s != TB_OK) {
    tb_store_outbox_free(out, count);
    return s;
  }
  if (count == 0) {
    free(out);
    return TB_OK;
  }
  qsort(out, (size_t)count, sizeof(*out), cmp_row_id);
  if (count > limit) { /* oldest first: the newest of the two reads wait for the next pass */
    for (int i = limit; i < count; i++) row_clear(&out[i]);
    count = limit;
  }
  *rows = out;
  *n = count;
  return TB_OK;
}

void tb_store_outbox_free(tb_outbox_row_t *rows, int n) {
  if (rows == NULL) return;
  for (int i = 0; i < n; i++) row_clear(&rows[i]);
  free(rows);
}

tb_status tb_store_outbox_delete(tb_store_t *st, int64_t id) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_OUTBOX_DELETE);
  sqlite3_bind_int64(stmt, 1, id);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE
                    ? TB_OK
                    : tb__store_fail(st->db, rc, "outbox delete row %lld", (long long)id);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_outbox_cancel(tb_store_t *st, const char *msg_id, int *dropped) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_OUTBOX_CANCEL);
  sqlite3_bind_text(stmt, 1, msg_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "outbox cancel %s", msg_id);
  if (s == TB_OK && dropped != NULL) *dropped = sqlite3_changes(st->db) > 0;
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_outbox_next_due(tb_store_t *st, int64_t *due_us) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_OUTBOX_NEXT_DUE);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  *due_us = 0;
  if (rc == SQLITE_ROW)
    *due_us = sqlite3_column_int64(stmt, 0); /* NULL (empty table) reads as 0 */
  else
    s = tb__store_fail(st->db, rc, "outbox next due");
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_outbox_failed(tb_store_t *st, int64_t id, const char *error,
                                 int64_t retry_at_us) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_OUTBOX_FAILED);
  sqlite3_bind_int64(stmt, 1, id);
  tb__bind_opt_text(stmt, 2, error);
  sqlite3_bind_int64(stmt, 3, retry_at_us);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE
                    ? TB_OK
                    : tb__store_fail(st->db, rc, "outbox failed row %lld", (long long)id);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_outbox_count(tb_store_t *st, int64_t *n) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_OUTBOX_COUNT);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW)
    *n = sqlite3_column_int64(stmt, 0);
  else
    s = tb__store_fail(st->db, rc, "outbox count");
  tb__stmt_done(stmt);
  return s;
}
