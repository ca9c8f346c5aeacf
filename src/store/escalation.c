/* Data access for escalation (migration v8): run contexts, escalation records, the stuck-run
 * query. src/workflows/escalation.c decides what they mean. */
#include "store/escalation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "store/internal.h"

tb_status tb_store_wf_context_put(tb_store_t *st, const char *id, const tb_wf_context_t *c) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_CTX_PUT);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 2, c->category);
  sqlite3_bind_int(stmt, 3, c->customer_facing ? 1 : 0);
  tb__bind_opt_text(stmt, 4, c->business_impact);
  tb__bind_opt_text(stmt, 5, c->requested_tier);
  tb__bind_opt_text(stmt, 6, c->automatic_tier);
  tb__bind_opt_text(stmt, 7, c->tier_rule);
  if (c->deadline_us > 0)
    sqlite3_bind_int64(stmt, 8, c->deadline_us);
  else
    sqlite3_bind_null(stmt, 8);
  return tb__exec_done(st, stmt, NULL, "workflow context", id);
}

tb_status tb_store_wf_set_deadline(tb_store_t *st, const char *id, int64_t deadline_us) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_CTX_DEADLINE);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  if (deadline_us > 0)
    sqlite3_bind_int64(stmt, 2, deadline_us);
  else
    sqlite3_bind_null(stmt, 2);
  return tb__exec_done(st, stmt, NULL, "workflow deadline", id);
}

tb_status tb_store_wf_shift_deadline(tb_store_t *st, const char *id, int64_t delta_us) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_CTX_DEADLINE_SHIFT);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, delta_us);
  return tb__exec_done(st, stmt, NULL, "workflow deadline shift", id);
}

tb_status tb_store_wf_overdue(tb_store_t *st, int64_t now_us, int limit, tb_wf_overdue_t **out,
                              int *n) {
  *out = NULL;
  *n = 0;
  tb_wf_overdue_t *rows = calloc((size_t)(limit > 0 ? limit : 1), sizeof(*rows));
  if (rows == NULL) return tb__fail(TB_ERR_NOMEM, "overdue runs");
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_OVERDUE);
  sqlite3_bind_int64(stmt, 1, now_us);
  sqlite3_bind_int(stmt, 2, limit);
  int rc = SQLITE_DONE, k = 0;
  while (k < limit && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb__col_copy(stmt, 0, rows[k].id, sizeof(rows[k].id));
    tb__col_copy(stmt, 1, rows[k].tier, sizeof(rows[k].tier));
    rows[k].deadline_us = sqlite3_column_int64(stmt, 2);
    k++;
  }
  if (k == limit) rc = SQLITE_DONE;
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "overdue runs");
  tb__stmt_done(stmt);
  if (s != TB_OK) {
    free(rows);
    return s;
  }
  *out = rows;
  *n = k;
  return TB_OK;
}

tb_status tb_store_wf_context_get(tb_store_t *st, const char *id, tb_wf_context_t *out,
                                  int *found) {
  memset(out, 0, sizeof(*out));
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_CTX_GET);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    tb__col_copy(stmt, 0, out->category, sizeof(out->category));
    out->customer_facing = sqlite3_column_int(stmt, 1);
    tb__col_copy(stmt, 2, out->business_impact, sizeof(out->business_impact));
    out->retries = sqlite3_column_int(stmt, 3);
    tb__col_copy(stmt, 4, out->requested_tier, sizeof(out->requested_tier));
    tb__col_copy(stmt, 5, out->automatic_tier, sizeof(out->automatic_tier));
    tb__col_copy(stmt, 6, out->tier_rule, sizeof(out->tier_rule));
    out->deadline_us = sqlite3_column_int64(stmt, 7);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "workflow context %s", id);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_context_retried(tb_store_t *st, const char *id) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_CTX_RETRIED);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  return tb__exec_done(st, stmt, NULL, "workflow context retry", id);
}

tb_status tb_store_wf_set_tier(tb_store_t *st, const char *id, const char *tier) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_SET_TIER);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, tier, -1, SQLITE_STATIC);
  return tb__exec_done(st, stmt, NULL, "workflow tier", id);
}

tb_status tb_store_wf_escalation_add(tb_store_t *st, const tb_wf_escalation_t *e, int *added) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_ESC_ADD);
  sqlite3_bind_text(stmt, 1, e->workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, e->from_tier, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, e->to_tier, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, e->rule, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 5, e->source, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 6, e->detail);
  sqlite3_bind_int64(stmt, 7, e->at_us > 0 ? e->at_us : tb_wall_us());
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_DONE) {
    if (added != NULL) *added = sqlite3_changes(st->db) > 0;
  } else {
    s = tb__store_fail(st->db, rc, "escalation of %s by %s", e->workflow_id, e->rule);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_escalations(tb_store_t *st, const char *id,
                                  int (*fn)(void *arg, const tb_wf_escalation_t *e), void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_ESC_LIST);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_wf_escalation_t e = {.workflow_id = id,
                            .from_tier = (const char *)sqlite3_column_text(stmt, 0),
                            .to_tier = (const char *)sqlite3_column_text(stmt, 1),
                            .rule = (const char *)sqlite3_column_text(stmt, 2),
                            .source = (const char *)sqlite3_column_text(stmt, 3),
                            .detail = (const char *)sqlite3_column_text(stmt, 4),
                            .at_us = sqlite3_column_int64(stmt, 5)};
    if (fn(arg, &e) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "escalations of %s", id);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_escalation_fired(tb_store_t *st, const char *id, const char *rule,
                                       int *fired) {
  *fired = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_ESC_FIRED);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, rule, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW)
    *fired = 1;
  else if (rc != SQLITE_DONE)
    s = tb__store_fail(st->db, rc, "escalation fired %s/%s", id, rule);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_escalation_counts(tb_store_t *st,
                                     int (*fn)(void *arg, const char *rule, int64_t n), void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_ESC_COUNTS);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *rule = (const char *)sqlite3_column_text(stmt, 0);
    if (fn(arg, rule ? rule : "", sqlite3_column_int64(stmt, 1)) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "escalation counts");
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_wf_stuck(tb_store_t *st, int64_t before_us, const char *skip_tiers_json,
                            int limit, tb_wf_stuck_t **out, int *n) {
  *out = NULL;
  *n = 0;
  if (limit <= 0) return TB_OK;
  tb_wf_stuck_t *rows = calloc((size_t)limit, sizeof(*rows));
  if (rows == NULL) return tb__fail(TB_ERR_NOMEM, "stuck runs: %d rows", limit);
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_WF_STUCK);
  sqlite3_bind_int64(stmt, 1, before_us);
  sqlite3_bind_int(stmt, 2, limit);
  sqlite3_bind_text(stmt, 3, skip_tiers_json ? skip_tiers_json : "[]", -1, SQLITE_STATIC);
  int rc = SQLITE_DONE, k = 0;
  while (k < limit && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_wf_stuck_t *r = &rows[k++];
    tb__col_copy(stmt, 0, r->id, sizeof(r->id));
    tb__col_copy(stmt, 1, r->tier, sizeof(r->tier));
    r->updated_us = sqlite3_column_int64(stmt, 2);
    r->customer_facing = sqlite3_column_int(stmt, 3);
    tb__col_copy(stmt, 4, r->business_impact, sizeof(r->business_impact));
  }
  if (k == limit) rc = SQLITE_DONE;
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "stuck runs");
  tb__stmt_done(stmt);
  if (s != TB_OK || k == 0) {
    free(rows);
    return s;
  }
  *out = rows;
  *n = k;
  return TB_OK;
}

tb_status tb_store_outbox_due_of(tb_store_t *st, const char *msg_id, int64_t *due_us, int *found) {
  *found = 0;
  *due_us = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_OUTBOX_DUE_OF);
  sqlite3_bind_text(stmt, 1, msg_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    *due_us = sqlite3_column_int64(stmt, 0);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "outbox row %s", msg_id);
  }
  tb__stmt_done(stmt);
  return s;
}

/* ---------------------------------------------------------------- circuit breakers */

static void breaker_row(sqlite3_stmt *stmt, int first, tb_breaker_t *b) {
  b->failures = sqlite3_column_int(stmt, first);
  b->window_start_us = sqlite3_column_int64(stmt, first + 1);
  b->open_until_us = sqlite3_column_int64(stmt, first + 2);
  b->opened_us = sqlite3_column_int64(stmt, first + 3);
  b->trips = sqlite3_column_int(stmt, first + 4);
  b->held = sqlite3_column_int64(stmt, first + 5);
  tb__col_copy(stmt, first + 6, b->last_error, sizeof(b->last_error));
  b->updated_us = sqlite3_column_int64(stmt, first + 7);
}

tb_status tb_store_breaker_get(tb_store_t *st, const char *service, tb_breaker_t *out, int *found) {
  memset(out, 0, sizeof(*out));
  snprintf(out->service, sizeof(out->service), "%s", service);
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_BREAKER_GET);
  sqlite3_bind_text(stmt, 1, service, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    breaker_row(stmt, 0, out);
    *found = 1;
    rc = SQLITE_DONE;
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "breaker %s", service);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_breaker_put(tb_store_t *st, const tb_breaker_t *b) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_BREAKER_PUT);
  sqlite3_bind_text(stmt, 1, b->service, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, b->failures);
  sqlite3_bind_int64(stmt, 3, b->window_start_us);
  sqlite3_bind_int64(stmt, 4, b->open_until_us);
  sqlite3_bind_int64(stmt, 5, b->opened_us);
  sqlite3_bind_int(stmt, 6, b->trips);
  sqlite3_bind_int64(stmt, 7, b->held);
  tb__bind_opt_text(stmt, 8, b->last_error);
  sqlite3_bind_int64(stmt, 9, b->updated_us);
  return tb__exec_done(st, stmt, NULL, "breaker", b->service);
}

tb_status tb_store_breaker_list(tb_store_t *st, int (*fn)(void *arg, const tb_breaker_t *b),
                                void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_BREAKER_LIST);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_breaker_t b;
    memset(&b, 0, sizeof(b));
    tb__col_copy(stmt, 0, b.service, sizeof(b.service));
    breaker_row(stmt, 1, &b);
    if (fn(arg, &b) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "breakers");
  tb__stmt_done(stmt);
  return s;
}
