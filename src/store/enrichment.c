/* Data access for seed 003's enrichment tables (migration v5): subscribers, jobs, batches and the
 * enrichment-id tracker. What a batch is for and when it closes is decided by
 * src/workflows/enrichment.c. */
#include "store/enrichment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "store/internal.h"

/* Ids land in fixed TB_ID_MAX buffers above the store, so a longer one is refused here. */
static tb_status check_id(const char *what, const char *id) {
  if (id == NULL || id[0] == '\0') return tb__fail(TB_ERR_INVALID, "%s: empty id", what);
  if (strlen(id) >= TB_ID_MAX)
    return tb__fail(TB_ERR_INVALID, "%s: id '%.32s...' is longer than %d bytes", what, id,
                    TB_ID_MAX - 1);
  return TB_OK;
}

/* ---------------------------------------------------------------------------------- subscribers */

void tb_store_subscriber_clear(tb_subscriber_t *s) {
  free(s->email);
  free(s->source);
  free(s->first_name);
  free(s->last_name);
  free(s->company);
  free(s->linkedin_url);
  free(s->fields_json);
  memset(s, 0, sizeof(*s));
}

static int valid_email_type(const char *t) {
  return strcmp(t, "personal") == 0 || strcmp(t, "corporate") == 0 || strcmp(t, "unspecified") == 0;
}

tb_status tb_store_subscriber_put(tb_store_t *st, const char *id, const char *email,
                                  const char *email_type, const char *source) {
  tb_status s = check_id("subscriber put", id);
  if (s != TB_OK) return s;
  if (email == NULL || email[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "subscriber put %s: empty email", id);
  if (email_type == NULL || !valid_email_type(email_type))
    return tb__fail(TB_ERR_INVALID,
                    "subscriber put %s: email_type '%s' is not personal, corporate or unspecified",
                    id, email_type ? email_type : "(null)");
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SUB_PUT);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, email, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, email_type, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 4, source);
  sqlite3_bind_int64(stmt, 5, tb_wall_us());
  return tb__exec_done(st, stmt, NULL, "subscriber put", id);
}

tb_status tb_store_subscriber_get(tb_store_t *st, const char *id, tb_subscriber_t *out,
                                  int *found) {
  memset(out, 0, sizeof(*out));
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SUB_GET);
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    int oom = 0;
    tb__col_copy(stmt, 0, out->subscriber_id, sizeof(out->subscriber_id));
    out->email = tb__col_dup(stmt, 1, &oom);
    tb__col_copy(stmt, 2, out->email_type, sizeof(out->email_type));
    out->source = tb__col_dup(stmt, 3, &oom);
    out->first_name = tb__col_dup(stmt, 4, &oom);
    out->last_name = tb__col_dup(stmt, 5, &oom);
    out->company = tb__col_dup(stmt, 6, &oom);
    out->linkedin_url = tb__col_dup(stmt, 7, &oom);
    out->fields_json = tb__col_dup(stmt, 8, &oom);
    out->created_us = sqlite3_column_int64(stmt, 9);
    out->updated_us = sqlite3_column_int64(stmt, 10);
    out->enriched_us = sqlite3_column_int64(stmt, 11);
    if (oom) {
      tb_store_subscriber_clear(out);
      s = tb__fail(TB_ERR_NOMEM, "subscriber get %s: copying the row", id);
    } else {
      *found = 1;
    }
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "subscriber get %s", id);
  }
  tb__stmt_done(stmt);
  return s;
}

/* ----------------------------------------------------------------------------------------- jobs */

void tb_store_enrich_job_clear(tb_enrich_job_t *j) {
  free(j->email);
  free(j->error);
  memset(j, 0, sizeof(*j));
}

/* Fills |j| from a row of EJOB_GET / EJOB_OF_BATCH (same columns) with borrowed strings. */
static void job_borrow(sqlite3_stmt *stmt, tb_enrich_job_t *j) {
  memset(j, 0, sizeof(*j));
  j->id = sqlite3_column_int64(stmt, 0);
  tb__col_copy(stmt, 1, j->subscriber_id, sizeof(j->subscriber_id));
  j->email = (char *)sqlite3_column_text(stmt, 2);
  tb__col_copy(stmt, 3, j->status, sizeof(j->status));
  tb__col_copy(stmt, 4, j->batch_id, sizeof(j->batch_id));
  j->error = (char *)sqlite3_column_text(stmt, 5);
  j->created_us = sqlite3_column_int64(stmt, 6);
  j->updated_us = sqlite3_column_int64(stmt, 7);
}

/* The id of |subscriber_id|'s live job; *found = 0 when it has none. */
static tb_status live_job(tb_store_t *st, const char *subscriber_id, int64_t *id, int *found) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EJOB_LIVE);
  sqlite3_bind_text(stmt, 1, subscriber_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  *found = 0;
  if (rc == SQLITE_ROW) {
    *id = sqlite3_column_int64(stmt, 0);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "enrichment job of subscriber %s", subscriber_id);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_enrich_job_queue(tb_store_t *st, const char *subscriber_id, const char *email,
                                    int64_t *job_id, int *queued) {
  *queued = 0;
  tb_status s = check_id("enrichment job queue", subscriber_id);
  if (s != TB_OK) return s;
  if (email == NULL || email[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "enrichment job queue %s: empty email", subscriber_id);
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EJOB_QUEUE);
  sqlite3_bind_text(stmt, 1, subscriber_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, email, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, tb_wall_us());
  int changes = 0;
  s = tb__exec_done(st, stmt, &changes, "enrichment job queue", subscriber_id);
  if (s != TB_OK) return s;
  *queued = changes > 0;
  int64_t id = 0;
  int found = 0;
  s = live_job(st, subscriber_id, &id, &found);
  if (s == TB_OK && !found) /* the insert or the conflicting row must be there */
    s = tb__fail(TB_ERR_STORE, "enrichment job queue %s: no live job after the insert",
                 subscriber_id);
  if (s == TB_OK && job_id != NULL) *job_id = id;
  return s;
}

tb_status tb_store_enrich_job_get(tb_store_t *st, int64_t id, tb_enrich_job_t *out, int *found) {
  memset(out, 0, sizeof(*out));
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EJOB_GET);
  sqlite3_bind_int64(stmt, 1, id);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    int oom = 0;
    job_borrow(stmt, out);
    out->email = tb__col_dup(stmt, 2, &oom);
    out->error = tb__col_dup(stmt, 5, &oom);
    if (oom) {
      tb_store_enrich_job_clear(out);
      s = tb__fail(TB_ERR_NOMEM, "enrichment job get %lld: copying the row", (long long)id);
    } else {
      *found = 1;
    }
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "enrichment job get %lld", (long long)id);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_enrich_job_count(tb_store_t *st, const char *status, int64_t *n) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EJOB_COUNT);
  if (status != NULL) sqlite3_bind_text(stmt, 1, status, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW)
    *n = sqlite3_column_int64(stmt, 0);
  else
    s = tb__store_fail(st->db, rc, "enrichment job count %s", status ? status : "(all)");
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_enrich_pending_upto(tb_store_t *st, int limit, int64_t *n) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EJOB_PENDING_UPTO);
  sqlite3_bind_int(stmt, 1, limit);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW)
    *n = sqlite3_column_int64(stmt, 0);
  else
    s = tb__store_fail(st->db, rc, "enrichment pending jobs up to %d", limit);
  tb__stmt_done(stmt);
  return s;
}

/* ------------------------------------------------------------------------------------- batches */

tb_status tb_store_enrich_batch_get(tb_store_t *st, const char *batch_id, tb_enrich_batch_t *out,
                                    int *found) {
  memset(out, 0, sizeof(*out));
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EBATCH_GET);
  sqlite3_bind_text(stmt, 1, batch_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    tb__col_copy(stmt, 0, out->batch_id, sizeof(out->batch_id));
    tb__col_copy(stmt, 1, out->workflow_id, sizeof(out->workflow_id));
    tb__col_copy(stmt, 2, out->status, sizeof(out->status));
    out->n_jobs = sqlite3_column_int(stmt, 3);
    tb__col_copy(stmt, 4, out->enrichment_id, sizeof(out->enrichment_id));
    tb__col_copy(stmt, 5, out->error, sizeof(out->error));
    out->created_us = sqlite3_column_int64(stmt, 6);
    out->updated_us = sqlite3_column_int64(stmt, 7);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "enrichment batch get %s", batch_id);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_enrich_batch_jobs(tb_store_t *st, const char *batch_id,
                                     int (*fn)(void *arg, const tb_enrich_job_t *job), void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EJOB_OF_BATCH);
  sqlite3_bind_text(stmt, 1, batch_id, -1, SQLITE_STATIC);
  tb_status s = TB_OK;
  for (;;) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      s = tb__store_fail(st->db, rc, "enrichment batch %s: list jobs", batch_id);
      break;
    }
    tb_enrich_job_t job;
    job_borrow(stmt, &job);
    if (fn(arg, &job) != 0) break;
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_enrich_batch_claim(tb_store_t *st, const char *batch_id, const char *workflow_id,
                                      int limit, int (*fn)(void *arg, const tb_enrich_job_t *job),
                                      void *arg, int *n) {
  *n = 0;
  tb_status s = check_id("enrichment batch claim: batch_id", batch_id);
  if (s == TB_OK) s = check_id("enrichment batch claim: workflow_id", workflow_id);
  if (s != TB_OK) return s;
  if (limit < 1 || limit > TB_ENRICH_BATCH_MAX)
    return tb__fail(TB_ERR_INVALID, "enrichment batch claim %s: limit %d is not 1..%d", batch_id,
                    limit, TB_ENRICH_BATCH_MAX);
  tb_enrich_batch_t existing;
  int found = 0;
  s = tb_store_enrich_batch_get(st, batch_id, &existing, &found);
  if (s != TB_OK) return s;
  if (found)
    return tb__fail(TB_ERR_INVALID,
                    "enrichment batch claim %s: the batch exists already (%s, %d "
                    "jobs, workflow %s)",
                    batch_id, existing.status, existing.n_jobs, existing.workflow_id);

  int64_t now = tb_wall_us();
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EJOB_CLAIM);
  sqlite3_bind_text(stmt, 1, batch_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, now);
  sqlite3_bind_int(stmt, 3, limit);
  int claimed = 0;
  s = tb__exec_done(st, stmt, &claimed, "enrichment batch claim", batch_id);
  if (s != TB_OK || claimed == 0) return s;

  stmt = tb__stmt(st, TB__ST_EBATCH_INSERT);
  sqlite3_bind_text(stmt, 1, batch_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, workflow_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 3, claimed);
  sqlite3_bind_int64(stmt, 4, now);
  s = tb__exec_done(st, stmt, NULL, "enrichment batch insert", batch_id);
  if (s != TB_OK) return s;
  *n = claimed;
  if (fn != NULL) s = tb_store_enrich_batch_jobs(st, batch_id, fn, arg);
  return s;
}

tb_status tb_store_enrich_batch_submitted(tb_store_t *st, const char *batch_id,
                                          const char *enrichment_id) {
  if (enrichment_id == NULL || enrichment_id[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "enrichment batch %s: empty enrichment id", batch_id);
  tb_status s = check_id("enrichment batch submitted: enrichment_id", enrichment_id);
  if (s != TB_OK) return s;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EBATCH_SUBMITTED);
  sqlite3_bind_text(stmt, 1, batch_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, enrichment_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, tb_wall_us());
  int changes = 0;
  s = tb__exec_done(st, stmt, &changes, "enrichment batch submitted", batch_id);
  if (s == TB_OK && changes == 0)
    s = tb__fail(TB_ERR_NOT_FOUND, "enrichment batch submitted: no batch '%s'", batch_id);
  return s;
}

/* Sets the job of |subscriber_id| in |batch_id| to |status| (with |error|) if it is batched. */
static tb_status settle_job(tb_store_t *st, const char *batch_id, const char *subscriber_id,
                            const char *status, const char *error, int *applied) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EJOB_RESULT);
  sqlite3_bind_text(stmt, 1, batch_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, subscriber_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, status, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 4, error);
  sqlite3_bind_int64(stmt, 5, tb_wall_us());
  int changes = 0;
  tb_status s = tb__exec_done(st, stmt, &changes, "enrichment result for", subscriber_id);
  if (s == TB_OK) *applied = changes > 0;
  return s;
}

tb_status tb_store_enrich_result_ok(tb_store_t *st, const char *batch_id, const char *subscriber_id,
                                    const tb_enrichment_t *e, int *applied) {
  *applied = 0;
  if (subscriber_id == NULL || subscriber_id[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "enrichment batch %s: result without a subscriber id",
                    batch_id);
  tb_status s = settle_job(st, batch_id, subscriber_id, "done", NULL, applied);
  if (s != TB_OK || !*applied) return s;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SUB_ENRICH);
  sqlite3_bind_text(stmt, 1, subscriber_id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 2, e->first_name);
  tb__bind_opt_text(stmt, 3, e->last_name);
  tb__bind_opt_text(stmt, 4, e->company);
  tb__bind_opt_text(stmt, 5, e->linkedin_url);
  tb__bind_opt_text(stmt, 6, e->fields_json);
  sqlite3_bind_int64(stmt, 7, tb_wall_us());
  return tb__exec_done(st, stmt, NULL, "subscriber enrich", subscriber_id);
}

tb_status tb_store_enrich_result_failed(tb_store_t *st, const char *batch_id,
                                        const char *subscriber_id, const char *error,
                                        int *applied) {
  *applied = 0;
  if (subscriber_id == NULL || subscriber_id[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "enrichment batch %s: result without a subscriber id",
                    batch_id);
  if (error == NULL || error[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "enrichment batch %s: failed result of %s without an error",
                    batch_id, subscriber_id);
  return settle_job(st, batch_id, subscriber_id, "failed", error, applied);
}

tb_status tb_store_enrich_batch_close(tb_store_t *st, const char *batch_id, const char *status,
                                      const char *error, int64_t *n_failed) {
  if (status == NULL || (strcmp(status, "done") != 0 && strcmp(status, "failed") != 0))
    return tb__fail(TB_ERR_INVALID, "enrichment batch close %s: status '%s' is not done or failed",
                    batch_id, status ? status : "(null)");
  if (error == NULL || error[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "enrichment batch close %s: empty error", batch_id);
  int64_t now = tb_wall_us();
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_EBATCH_CLOSE);
  sqlite3_bind_text(stmt, 1, batch_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, status, -1, SQLITE_STATIC);
  if (strcmp(status, "failed") == 0) sqlite3_bind_text(stmt, 3, error, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 4, now);
  int changes = 0;
  tb_status s = tb__exec_done(st, stmt, &changes, "enrichment batch close", batch_id);
  if (s == TB_OK && changes == 0)
    s = tb__fail(TB_ERR_NOT_FOUND, "enrichment batch close: no batch '%s'", batch_id);
  if (s != TB_OK) return s;
  stmt = tb__stmt(st, TB__ST_EJOB_FAIL_OPEN);
  sqlite3_bind_text(stmt, 1, batch_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, error, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, now);
  s = tb__exec_done(st, stmt, &changes, "enrichment batch close: fail open jobs of", batch_id);
  if (s == TB_OK && n_failed != NULL) *n_failed = changes;
  return s;
}

/* ------------------------------------------------------------------------------------- tracker */

tb_status tb_store_enrich_track(tb_store_t *st, const char *enrichment_id, const char *workflow_id,
                                const char *batch_id) {
  tb_status s = check_id("enrichment track: enrichment_id", enrichment_id);
  if (s == TB_OK) s = check_id("enrichment track: workflow_id", workflow_id);
  if (s != TB_OK) return s;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_ETRACK_PUT);
  sqlite3_bind_text(stmt, 1, enrichment_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, workflow_id, -1, SQLITE_STATIC);
  tb__bind_opt_text(stmt, 3, batch_id);
  sqlite3_bind_int64(stmt, 4, tb_wall_us());
  int changes = 0;
  s = tb__exec_done(st, stmt, &changes, "enrichment track", enrichment_id);
  if (s != TB_OK || changes > 0) return s;
  /* The upsert's WHERE refused it: another workflow holds the id. */
  char holder[TB_ID_MAX];
  int found = 0;
  s = tb_store_enrich_lookup(st, enrichment_id, holder, sizeof(holder), &found);
  if (s != TB_OK) return s;
  return tb__fail(TB_ERR_INVALID, "enrichment track %s: already registered to workflow %s, not %s",
                  enrichment_id, found ? holder : "?", workflow_id);
}

tb_status tb_store_enrich_lookup(tb_store_t *st, const char *enrichment_id, char *workflow_id,
                                 size_t cap, int *found) {
  *found = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_ETRACK_GET);
  sqlite3_bind_text(stmt, 1, enrichment_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    tb__col_copy(stmt, 0, workflow_id, cap);
    *found = 1;
  } else if (rc != SQLITE_DONE) {
    s = tb__store_fail(st->db, rc, "enrichment lookup %s", enrichment_id);
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_enrich_untrack(tb_store_t *st, const char *enrichment_id, int *removed) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_ETRACK_DEL);
  sqlite3_bind_text(stmt, 1, enrichment_id, -1, SQLITE_STATIC);
  int changes = 0;
  tb_status s = tb__exec_done(st, stmt, &changes, "enrichment untrack", enrichment_id);
  if (s == TB_OK && removed != NULL) *removed = changes > 0;
  return s;
}
