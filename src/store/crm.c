/* Data access for seed 001's client journey tables (migration v5): clients, deliverables, business
 * plans and the journey activity log. The journey's rules live in src/workflows/crm.c. */
#include "store/crm.h"

#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "core/util.h"
#include "store/internal.h"

static tb_status check_id(const char *what, const char *id) {
  if (id == NULL || id[0] == '\0') return tb__fail(TB_ERR_INVALID, "%s: empty client id", what);
  if (strlen(id) >= TB_ID_MAX)
    return tb__fail(TB_ERR_INVALID, "%s: client id '%.32s...' is longer than %d bytes", what, id,
                    TB_ID_MAX - 1);
  return TB_OK;
}

static tb_status check_month(const char *what, const char *client_id, int month) {
  if (month >= 1 && month <= TB_CRM_MONTHS) return TB_OK;
  return tb__fail(TB_ERR_INVALID, "%s %s: month %d is not 1..%d", what, client_id, month,
                  TB_CRM_MONTHS);
}

/* Steps a single-row SELECT: *found = 1 and |read| called on a row, 0 when there is none. */
static tb_status get_row(tb_store_t *st, sqlite3_stmt *stmt, void (*read)(sqlite3_stmt *, void *),
                         void *out, int *found, const char *what, const char *id) {
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  *found = 0;
  if (rc == SQLITE_ROW) {
    read(stmt, out);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "%s %s", what, id);
  }
  tb__stmt_done(stmt);
  return s;
}

/* -------------------------------------------------------------------------------------- clients */

tb_status tb_store_crm_client_put(tb_store_t *st, const char *client_id, const char *name,
                                  const char *email, const char *created_by) {
  tb_status s = check_id("crm client put", client_id);
  if (s != TB_OK) return s;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_CLIENT_PUT);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 2, name);
  tb__bind_opt_text(stmt, 3, email);
  tb__bind_opt_text(stmt, 4, created_by);
  sqlite3_bind_int64(stmt, 5, tb_wall_us());
  return tb__exec_done(st, stmt, NULL, "crm client put", client_id);
}

tb_status tb_store_crm_client_status(tb_store_t *st, const char *client_id, const char *status) {
  tb_status s = check_id("crm client status", client_id);
  if (s != TB_OK) return s;
  if (status == NULL || (strcmp(status, "onboarding") != 0 && strcmp(status, "active") != 0 &&
                         strcmp(status, "completed") != 0))
    return tb__fail(TB_ERR_INVALID,
                    "crm client status %s: '%s' is not onboarding, active or completed", client_id,
                    status ? status : "(null)");
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_CLIENT_STATUS);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, status, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, tb_wall_us());
  return tb__exec_done(st, stmt, NULL, "crm client status", client_id);
}

static void read_client(sqlite3_stmt *stmt, void *out) {
  tb_crm_client_t *c = out;
  tb__col_copy(stmt, 0, c->client_id, sizeof(c->client_id));
  tb__col_copy(stmt, 1, c->name, sizeof(c->name));
  tb__col_copy(stmt, 2, c->email, sizeof(c->email));
  tb__col_copy(stmt, 3, c->status, sizeof(c->status));
  tb__col_copy(stmt, 4, c->created_by, sizeof(c->created_by));
  c->created_us = sqlite3_column_int64(stmt, 5);
  c->updated_us = sqlite3_column_int64(stmt, 6);
  c->activated_us = sqlite3_column_int64(stmt, 7);
  c->completed_us = sqlite3_column_int64(stmt, 8);
}

tb_status tb_store_crm_client_get(tb_store_t *st, const char *client_id, tb_crm_client_t *out,
                                  int *found) {
  memset(out, 0, sizeof(*out));
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_CLIENT_GET);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  return get_row(st, stmt, read_client, out, found, "crm client get", client_id);
}

/* --------------------------------------------------------------------------------- deliverables */

static void read_deliverable(sqlite3_stmt *stmt, void *out) {
  tb_crm_deliverable_t *d = out;
  tb__col_copy(stmt, 0, d->client_id, sizeof(d->client_id));
  d->month = sqlite3_column_int(stmt, 1);
  tb__col_copy(stmt, 2, d->status, sizeof(d->status));
  d->due_us = sqlite3_column_int64(stmt, 3);
  tb__col_copy(stmt, 4, d->deliverable_id, sizeof(d->deliverable_id));
  tb__col_copy(stmt, 5, d->title, sizeof(d->title));
  tb__col_copy(stmt, 6, d->workflow_id, sizeof(d->workflow_id));
  d->scheduled_us = sqlite3_column_int64(stmt, 7);
  d->generated_us = sqlite3_column_int64(stmt, 8);
  d->completed_us = sqlite3_column_int64(stmt, 9);
  d->updated_us = sqlite3_column_int64(stmt, 10);
}

tb_status tb_store_crm_deliverable_get(tb_store_t *st, const char *client_id, int month,
                                       tb_crm_deliverable_t *out, int *found) {
  memset(out, 0, sizeof(*out));
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_DELIV_GET);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, month);
  return get_row(st, stmt, read_deliverable, out, found, "crm deliverable get", client_id);
}

tb_status tb_store_crm_deliverable_schedule(tb_store_t *st, const char *client_id, int month,
                                            int64_t due_us, const char *workflow_id,
                                            tb_crm_deliverable_t *out) {
  tb_status s = check_id("crm deliverable schedule", client_id);
  if (s == TB_OK) s = check_month("crm deliverable schedule", client_id, month);
  if (s != TB_OK) return s;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_DELIV_SCHEDULE);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, month);
  sqlite3_bind_int64(stmt, 3, due_us);
  tb__bind_opt_text(stmt, 4, workflow_id);
  sqlite3_bind_int64(stmt, 5, tb_wall_us());
  s = tb__exec_done(st, stmt, NULL, "crm deliverable schedule", client_id);
  if (s != TB_OK || out == NULL) return s;
  int found = 0;
  s = tb_store_crm_deliverable_get(st, client_id, month, out, &found);
  if (s == TB_OK && !found)
    s = tb__fail(TB_ERR_STORE, "crm deliverable schedule %s: month %d missing after insert",
                 client_id, month);
  return s;
}

tb_status tb_store_crm_deliverable_generated(tb_store_t *st, const char *client_id, int month,
                                             const char *deliverable_id, int64_t due_us,
                                             const char *workflow_id) {
  tb_status s = check_id("crm deliverable generated", client_id);
  if (s == TB_OK) s = check_month("crm deliverable generated", client_id, month);
  if (s != TB_OK) return s;
  if (deliverable_id == NULL || deliverable_id[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "crm deliverable generated %s month %d: empty deliverable_id",
                    client_id, month);
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_DELIV_GENERATED);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, month);
  sqlite3_bind_int64(stmt, 3, due_us);
  tb__bind_opt_text(stmt, 4, workflow_id);
  sqlite3_bind_text(stmt, 5, deliverable_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 6, tb_wall_us());
  return tb__exec_done(st, stmt, NULL, "crm deliverable generated", client_id);
}

tb_status tb_store_crm_deliverable_completed(tb_store_t *st, const char *client_id, int month,
                                             const char *deliverable_id, const char *title,
                                             int64_t completed_us) {
  tb_status s = check_id("crm deliverable completed", client_id);
  if (s == TB_OK) s = check_month("crm deliverable completed", client_id, month);
  if (s != TB_OK) return s;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_DELIV_COMPLETED);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, month);
  sqlite3_bind_int64(stmt, 3, completed_us); /* due date of a month never scheduled */
  tb__bind_opt_text(stmt, 4, deliverable_id);
  tb__bind_opt_text(stmt, 5, title);
  sqlite3_bind_int64(stmt, 6, tb_wall_us());
  sqlite3_bind_int64(stmt, 7, completed_us);
  return tb__exec_done(st, stmt, NULL, "crm deliverable completed", client_id);
}

tb_status tb_store_crm_deliverable_overdue(tb_store_t *st, const char *client_id, int month,
                                           const char *deliverable_id, const char *title,
                                           int64_t due_us, int *marked) {
  *marked = 0;
  tb_status s = check_id("crm deliverable overdue", client_id);
  if (s == TB_OK) s = check_month("crm deliverable overdue", client_id, month);
  if (s != TB_OK) return s;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_DELIV_OVERDUE);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, month);
  sqlite3_bind_int64(stmt, 3, due_us > 0 ? due_us : 0);
  tb__bind_opt_text(stmt, 4, deliverable_id);
  tb__bind_opt_text(stmt, 5, title);
  sqlite3_bind_int64(stmt, 6, tb_wall_us());
  int changes = 0;
  s = tb__exec_done(st, stmt, &changes, "crm deliverable overdue", client_id);
  if (s == TB_OK) *marked = changes > 0;
  return s;
}

/* --------------------------------------------------------------------------------------- plans */

tb_status tb_store_crm_plan_put(tb_store_t *st, const char *client_id, const char *status,
                                const char *business_plan_id, const char *workflow_id,
                                const char *error) {
  tb_status s = check_id("crm plan put", client_id);
  if (s != TB_OK) return s;
  static const char *const statuses[] = {"requested", "generated", "completed", "failed"};
  int ok = 0;
  for (size_t i = 0; status != NULL && i < TB_COUNTOF(statuses); i++)
    ok |= strcmp(status, statuses[i]) == 0;
  if (!ok)
    return tb__fail(TB_ERR_INVALID,
                    "crm plan put %s: status '%s' is not requested, generated, completed or failed",
                    client_id, status ? status : "(null)");
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_PLAN_PUT);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 2, business_plan_id);
  sqlite3_bind_text(stmt, 3, status, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 4, error);
  tb__bind_opt_text(stmt, 5, workflow_id);
  sqlite3_bind_int64(stmt, 6, tb_wall_us());
  return tb__exec_done(st, stmt, NULL, "crm plan put", client_id);
}

tb_status tb_store_crm_plan_pdf(tb_store_t *st, const char *client_id, const char *pdf_id,
                                const char *pdf_path) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_PLAN_PDF);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 2, pdf_id);
  tb__bind_opt_text(stmt, 3, pdf_path);
  sqlite3_bind_int64(stmt, 4, tb_wall_us());
  int changes = 0;
  tb_status s = tb__exec_done(st, stmt, &changes, "crm plan pdf", client_id);
  if (s == TB_OK && changes == 0)
    s = tb__fail(TB_ERR_NOT_FOUND, "crm plan pdf: client '%s' has no business plan", client_id);
  return s;
}

static void read_plan(sqlite3_stmt *stmt, void *out) {
  tb_crm_plan_t *p = out;
  tb__col_copy(stmt, 0, p->client_id, sizeof(p->client_id));
  tb__col_copy(stmt, 1, p->business_plan_id, sizeof(p->business_plan_id));
  tb__col_copy(stmt, 2, p->status, sizeof(p->status));
  tb__col_copy(stmt, 3, p->pdf_id, sizeof(p->pdf_id));
  tb__col_copy(stmt, 4, p->pdf_path, sizeof(p->pdf_path));
  tb__col_copy(stmt, 5, p->error, sizeof(p->error));
  tb__col_copy(stmt, 6, p->workflow_id, sizeof(p->workflow_id));
  p->created_us = sqlite3_column_int64(stmt, 7);
  p->completed_us = sqlite3_column_int64(stmt, 8);
  p->updated_us = sqlite3_column_int64(stmt, 9);
}

tb_status tb_store_crm_plan_get(tb_store_t *st, const char *client_id, tb_crm_plan_t *out,
                                int *found) {
  memset(out, 0, sizeof(*out));
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_PLAN_GET);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  return get_row(st, stmt, read_plan, out, found, "crm plan get", client_id);
}

/* ------------------------------------------------------------------------------------ activity */

tb_status tb_store_crm_activity(tb_store_t *st, const char *client_id, const char *kind,
                                const char *description, const char *user_id,
                                const char *workflow_id) {
  tb_status s = check_id("crm activity", client_id);
  if (s != TB_OK) return s;
  if (kind == NULL || kind[0] == '\0' || description == NULL)
    return tb__fail(TB_ERR_INVALID, "crm activity %s: kind and description are required",
                    client_id);
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_ACTIVITY_ADD);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, kind, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, description, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 4, user_id);
  tb__bind_opt_text(stmt, 5, workflow_id);
  sqlite3_bind_int64(stmt, 6, tb_wall_us());
  return tb__exec_done(st, stmt, NULL, "crm activity", client_id);
}

tb_status tb_store_crm_activity_list(tb_store_t *st, const char *client_id,
                                     int (*fn)(void *arg, const tb_crm_activity_t *a), void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_ACTIVITY_LIST);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  tb_status s = TB_OK;
  for (;;) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      s = tb__store_fail(st->db, rc, "crm activity list %s", client_id);
      break;
    }
    tb_crm_activity_t a = {
        .id = sqlite3_column_int64(stmt, 0),
        .client_id = (const char *)sqlite3_column_text(stmt, 1),
        .kind = (const char *)sqlite3_column_text(stmt, 2),
        .description = (const char *)sqlite3_column_text(stmt, 3),
        .user_id = (const char *)sqlite3_column_text(stmt, 4),
        .workflow_id = (const char *)sqlite3_column_text(stmt, 5),
        .at_us = sqlite3_column_int64(stmt, 6),
    };
    if (fn(arg, &a) != 0) break;
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_crm_deliverables_past_due(tb_store_t *st, int64_t now_us,
                                             int (*fn)(void *arg, const tb_crm_deliverable_t *d),
                                             void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_DELIV_OPEN_DUE);
  sqlite3_bind_int64(stmt, 1, now_us);
  tb_crm_deliverable_t d;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    memset(&d, 0, sizeof(d));
    tb__col_copy(stmt, 0, d.client_id, sizeof(d.client_id));
    d.month = sqlite3_column_int(stmt, 1);
    tb__col_copy(stmt, 2, d.status, sizeof(d.status));
    d.due_us = sqlite3_column_int64(stmt, 3);
    tb__col_copy(stmt, 4, d.deliverable_id, sizeof(d.deliverable_id));
    tb__col_copy(stmt, 5, d.title, sizeof(d.title));
    if (fn(arg, &d) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "crm deliverables past due");
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_crm_clients_active(
    tb_store_t *st, int (*fn)(void *arg, const char *client_id, int64_t activated_us), void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_CLIENTS_ACTIVE);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(stmt, 0);
    if (fn(arg, id ? id : "", sqlite3_column_int64(stmt, 1)) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "crm active clients");
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_crm_metrics_update(tb_store_t *st, int64_t now_us, int64_t *clients) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_METRICS_UPDATE);
  sqlite3_bind_int64(stmt, 1, now_us);
  int changes = 0;
  tb_status s = tb__exec_done(st, stmt, &changes, "crm metrics", "update");
  if (s == TB_OK && clients != NULL) *clients = changes;
  return s;
}

tb_status tb_store_crm_metrics_get(tb_store_t *st, const char *client_id, tb_crm_metrics_t *out,
                                   int *found) {
  memset(out, 0, sizeof(*out));
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_CRM_METRICS_GET);
  sqlite3_bind_text(stmt, 1, client_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    tb__col_copy(stmt, 0, out->client_id, sizeof(out->client_id));
    out->deliverables_completed = sqlite3_column_int64(stmt, 1);
    out->completed_on_time = sqlite3_column_int64(stmt, 2);
    out->completed_late = sqlite3_column_int64(stmt, 3);
    out->overdue_open = sqlite3_column_int64(stmt, 4);
    out->on_time_rate = sqlite3_column_double(stmt, 5);
    out->last_activity_us = sqlite3_column_int64(stmt, 6);
    out->days_since_activity = sqlite3_column_int64(stmt, 7);
    out->computed_us = sqlite3_column_int64(stmt, 8);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "crm metrics of %s", client_id);
  }
  tb__stmt_done(stmt);
  return s;
}
