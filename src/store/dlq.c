/* Dead-letter entries: the reason classes and the dead_letters table (migration v10). */
#include "store/dlq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "store/internal.h"

static const struct {
  const char *name, *meaning;
  int replay;
} classes[] = {
#define TB__DLQ_ROW(e, name, replay, meaning) {name, meaning, replay},
    TB_DLQ_CLASSES(TB__DLQ_ROW)
#undef TB__DLQ_ROW
};

const char *tb_dlq_class_name(tb_dlq_class c) {
  return c >= 0 && c < TB_DLQ__COUNT ? classes[c].name : "unclassified";
}

void tb_dlq_class_list(char *buf, size_t cap) {
  size_t off = 0;
  buf[0] = '\0';
  for (int i = 0; i < TB_DLQ__COUNT && off < cap; i++)
    off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", classes[i].name);
}

const char *tb_dlq_class_meaning(tb_dlq_class c) {
  return c >= 0 && c < TB_DLQ__COUNT ? classes[c].meaning : "";
}

int tb_dlq_class_parse(const char *name) {
  for (int i = 0; name != NULL && i < TB_DLQ__COUNT; i++)
    if (strcmp(classes[i].name, name) == 0) return i;
  return -1;
}

int tb_dlq_class_replayable(const char *name) {
  int c = tb_dlq_class_parse(name);
  return c < 0 || classes[c].replay;
}

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

void tb_dlq_entry_free(tb_dlq_entry_t *e) {
  if (e == NULL) return;
  free((void *)e->msg_id);
  free((void *)e->event_type);
  free((void *)e->tier);
  free((void *)e->reason_class);
  free((void *)e->error);
  free((void *)e->subject);
  free((void *)e->headers_json);
  free((void *)e->payload);
  free((void *)e->stream);
  memset(e, 0, sizeof(*e));
}

tb_status tb_store_dlq_put(tb_store_t *st, const tb_dlq_entry_t *e) {
  if (e->msg_id == NULL || e->msg_id[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "dead letter: empty msg_id (stream %s seq %llu)",
                    e->stream ? e->stream : "?", (unsigned long long)e->stream_seq);
  if (tb_dlq_class_parse(e->reason_class) < 0)
    return tb__fail(TB_ERR_INVALID, "dead letter %s: unknown reason class '%s'", e->msg_id,
                    e->reason_class ? e->reason_class : "");
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_DEAD_LETTER);
  sqlite3_bind_text(stmt, 1, e->msg_id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 2, e->event_type);
  tb__bind_opt_text(stmt, 3, e->tier);
  tb__bind_opt_text(stmt, 4, e->stream);
  sqlite3_bind_int64(stmt, 5, (sqlite3_int64)e->stream_seq);
  tb__bind_opt_text(stmt, 6, e->error);
  sqlite3_bind_int64(stmt, 7, e->at_us > 0 ? e->at_us : tb_wall_us());
  sqlite3_bind_text(stmt, 8, e->reason_class, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 9, e->subject);
  tb__bind_opt_text(stmt, 10, e->headers_json);
  if (e->payload != NULL)
    sqlite3_bind_blob64(stmt, 11, e->payload, e->len, SQLITE_STATIC);
  else
    sqlite3_bind_null(stmt, 11);
  sqlite3_bind_int64(stmt, 12, (sqlite3_int64)e->deliveries);
  sqlite3_bind_int64(stmt, 13, (sqlite3_int64)e->dlq_seq);
  int rc = sqlite3_step(stmt);
  tb_status s =
      rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "dead letter '%s'", e->msg_id);
  tb__stmt_done(stmt);
  return s;
}

static const char *col_text(sqlite3_stmt *stmt, int i) {
  const unsigned char *t = sqlite3_column_text(stmt, i);
  return t ? (const char *)t : "";
}

/* The row under |stmt| (TB__DLQ_COLS), borrowed from it. */
static void read_row(sqlite3_stmt *stmt, tb_dlq_entry_t *e) {
  e->no = sqlite3_column_int64(stmt, 0);
  e->msg_id = col_text(stmt, 1);
  e->event_type = col_text(stmt, 2);
  e->tier = col_text(stmt, 3);
  e->reason_class = col_text(stmt, 4);
  e->error = col_text(stmt, 5);
  e->subject = col_text(stmt, 6);
  e->headers_json = (const char *)sqlite3_column_text(stmt, 7);
  e->payload = sqlite3_column_blob(stmt, 8);
  e->len = (size_t)sqlite3_column_bytes(stmt, 8);
  e->stream = col_text(stmt, 9);
  e->stream_seq = (uint64_t)sqlite3_column_int64(stmt, 10);
  e->deliveries = (uint64_t)sqlite3_column_int64(stmt, 11);
  e->dlq_seq = (uint64_t)sqlite3_column_int64(stmt, 12);
  e->at_us = sqlite3_column_int64(stmt, 13);
  e->replays = sqlite3_column_int64(stmt, 14);
  e->replayed_us = sqlite3_column_int64(stmt, 15);
}

tb_status tb_store_dlq_list(tb_store_t *st, const tb_dlq_filter_t *f,
                            int (*fn)(void *arg, const tb_dlq_entry_t *e), void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_DLQ_LIST);
  sqlite3_bind_text(stmt, 1, f->reason_class ? f->reason_class : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, f->tier ? f->tier : "", -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, f->since_us);
  sqlite3_bind_int64(stmt, 4, f->limit > 0 ? f->limit : -1);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_dlq_entry_t e;
    read_row(stmt, &e);
    if (fn(arg, &e) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "dead letter list");
  tb__stmt_done(stmt);
  return s;
}

/* Copies the borrowed entry |in| into |out|, owning every field. */
static tb_status copy_entry(const tb_dlq_entry_t *in, tb_dlq_entry_t *out) {
  *out = *in;
  out->msg_id = dup_or_null(in->msg_id);
  out->event_type = dup_or_null(in->event_type);
  out->tier = dup_or_null(in->tier);
  out->reason_class = dup_or_null(in->reason_class);
  out->error = dup_or_null(in->error);
  out->subject = dup_or_null(in->subject);
  out->headers_json = dup_or_null(in->headers_json);
  out->stream = dup_or_null(in->stream);
  void *p = malloc(in->len > 0 ? in->len : 1);
  if (p != NULL && in->len > 0) memcpy(p, in->payload, in->len);
  out->payload = p;
  if (!out->msg_id || !out->event_type || !out->tier || !out->reason_class || !out->error ||
      !out->subject || (in->headers_json && !out->headers_json) || !out->stream || !p) {
    tb_dlq_entry_free(out);
    return tb__fail(TB_ERR_NOMEM, "dead letter %s", in->msg_id);
  }
  return TB_OK;
}

/* Reads the one row |stmt| selects (bound by the caller) into |out|. */
static tb_status get_one(tb_store_t *st, sqlite3_stmt *stmt, const char *key, tb_dlq_entry_t *out,
                         int *found) {
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    tb_dlq_entry_t e;
    read_row(stmt, &e);
    s = copy_entry(&e, out);
    *found = s == TB_OK;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "dead letter '%s'", key);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_dlq_get(tb_store_t *st, const char *key, tb_dlq_entry_t *out, int *found) {
  memset(out, 0, sizeof(*out));
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_DLQ_GET_ID);
  sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
  tb_status s = get_one(st, stmt, key, out, found);
  if (s != TB_OK || *found) return s;
  char *end = NULL;
  errno = 0;
  long long no = strtoll(key, &end, 10);
  if (key[0] == '\0' || *end != '\0' || errno != 0 || no < 1) return TB_OK;
  stmt = tb__stmt(st, TB__ST_DLQ_GET_NO);
  sqlite3_bind_int64(stmt, 1, no);
  return get_one(st, stmt, key, out, found);
}

tb_status tb_store_dlq_delete(tb_store_t *st, const char *msg_id, int *removed) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_DLQ_DELETE);
  sqlite3_bind_text(stmt, 1, msg_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_DONE) {
    if (removed != NULL) *removed = sqlite3_changes(st->db) > 0;
  } else {
    s = tb__store_fail(st->db, rc, "dead letter delete '%s'", msg_id);
  }
  tb__stmt_done(stmt);
  return s;
}

/* The body of tb_store_dlq_replay_begin, inside its transaction. */
static tb_status replay_mark(tb_store_t *st, const char *msg_id, int64_t *round) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_DLQ_OUTCOME);
  sqlite3_bind_text(stmt, 1, msg_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  int applied = rc == SQLITE_ROW && strcmp(col_text(stmt, 0), "applied") == 0;
  tb__stmt_done(stmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return tb__store_fail(st->db, rc, "dead letter replay '%s': processed record", msg_id);
  if (applied) return TB_OK; /* *round stays 0: a replay already took effect */
  stmt = tb__stmt(st, TB__ST_DLQ_UNCLAIM);
  sqlite3_bind_text(stmt, 1, msg_id, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  tb__stmt_done(stmt);
  if (rc != SQLITE_DONE)
    return tb__store_fail(st->db, rc, "dead letter replay '%s': drop the dead record", msg_id);
  stmt = tb__stmt(st, TB__ST_DLQ_REPLAYED);
  sqlite3_bind_text(stmt, 1, msg_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, tb_wall_us());
  rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW)
    *round = sqlite3_column_int64(stmt, 0);
  else if (rc == SQLITE_DONE)
    s = tb__fail(TB_ERR_NOT_FOUND, "no dead letter '%s'", msg_id);
  else
    s = tb__store_fail(st->db, rc, "dead letter replay '%s'", msg_id);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_dlq_replay_begin(tb_store_t *st, const char *msg_id, int64_t *round) {
  *round = 0;
  tb_status s = tb_store_begin(st);
  if (s != TB_OK) return s;
  s = replay_mark(st, msg_id, round);
  if (s == TB_OK) s = tb_store_commit(st);
  if (s != TB_OK) {
    tb_store_rollback(st);
    *round = 0;
  }
  return s;
}
