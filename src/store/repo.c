/* Data access for seed 002's tables: workspace membership with its per-pair ordering guard,
 * tracked repositories, the priority audit trail, the full sync's set-based batch and leases.
 * The priority rules are here as plain C and, bound to the same functions, as SQL. */
#include "store/repo.h"

#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "core/util.h"
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

/* ---------------------------------------------------------------- the rules */

/* Seed 002's scores. The tier each priority's jobs go to is config (repo_tier_*). */
static const struct {
  const char *name;
  int score;
} priorities[] = {{"high", 100}, {"medium", 50}, {"low", 25}};

int tb_repo_priority_score(const char *priority) {
  for (size_t i = 0; priority && i < TB_COUNTOF(priorities); i++)
    if (strcmp(priorities[i].name, priority) == 0) return priorities[i].score;
  return 0;
}

int tb_repo_priority_valid(const char *priority) {
  return tb_repo_priority_score(priority) != 0;
}

static int valid_priority(const char *p) {
  return tb_repo_priority_valid(p);
}

const char *tb_repo_rule_priority(int workspace_count, int marked_low,
                                  const char *manual_override) {
  if (manual_override != NULL && manual_override[0] != '\0') {
    for (size_t i = 0; i < TB_COUNTOF(priorities); i++)
      if (strcmp(priorities[i].name, manual_override) == 0) return priorities[i].name;
  }
  if (workspace_count >= 1) return "high";
  return marked_low ? "low" : "medium";
}

static void sql_rule_priority(sqlite3_context *cx, int argc, sqlite3_value **argv) {
  (void)argc;
  const char *ovr = (const char *)sqlite3_value_text(argv[2]);
  sqlite3_result_text(
      cx, tb_repo_rule_priority(sqlite3_value_int(argv[0]), sqlite3_value_int(argv[1]), ovr), -1,
      SQLITE_STATIC);
}

static void sql_score(sqlite3_context *cx, int argc, sqlite3_value **argv) {
  (void)argc;
  sqlite3_result_int(cx, tb_repo_priority_score((const char *)sqlite3_value_text(argv[0])));
}

tb_status tb__repo_register_functions(sqlite3 *db) {
  const int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
  int rc = sqlite3_create_function_v2(db, "tb_repo_priority", 3, flags, NULL, sql_rule_priority,
                                      NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function_v2(db, "tb_repo_score", 1, flags, NULL, sql_score, NULL, NULL,
                                    NULL);
  return rc == SQLITE_OK ? TB_OK : tb__store_fail(db, rc, "register priority rule functions");
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
    copy_text(out->repository_name, sizeof(out->repository_name), sqlite3_column_text(stmt, 7));
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
  tb__bind_opt_text(stmt, 10, r->repository_name); /* NULL keeps the stored name */
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

/* ---------------------------------------------------------------- full sync */

/* Runs statement |id| to completion (no rows expected). */
static tb_status run_done(tb_store_t *st, tb__store_stmt_id id, const char *what) {
  sqlite3_stmt *stmt = tb__stmt(st, id);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "priority sync: %s", what);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_repo_sync_batch(tb_store_t *st, const char *after_id, int limit,
                                   const char *cause,
                                   tb_status (*on_change)(void *arg, const tb_repo_change_t *c),
                                   void *arg, tb_repo_batch_t *out) {
  memset(out, 0, sizeof(*out));
  if (limit < 1) return tb__fail(TB_ERR_INVALID, "priority sync: batch size %d is below 1", limit);
  tb_status s = run_done(st, TB__ST_SYNC_CALC_CLEAR, "clear scratch");
  if (s != TB_OK) return s;

  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_SYNC_CALC_FILL);
  sqlite3_bind_text(stmt, 1, after_id ? after_id : "", -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, limit);
  s = run_done(st, TB__ST_SYNC_CALC_FILL, "compute batch");
  if (s != TB_OK) return s;

  stmt = tb__stmt(st, TB__ST_SYNC_CALC_SUMMARY);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    out->repos = sqlite3_column_int64(stmt, 0);
    out->workspace_repos = sqlite3_column_int64(stmt, 1);
    out->priority_changes = sqlite3_column_int64(stmt, 2);
    out->rows_updated = sqlite3_column_int64(stmt, 3);
    copy_text(out->last_id, sizeof(out->last_id), sqlite3_column_text(stmt, 4));
  } else {
    s = tb__store_fail(st->db, rc, "priority sync: summary");
  }
  tb__stmt_done(stmt);
  if (s != TB_OK || out->rows_updated == 0) {
    if (s == TB_OK) s = run_done(st, TB__ST_SYNC_CALC_CLEAR, "clear scratch");
    return s;
  }

  int64_t now = tb_wall_us();
  stmt = tb__stmt(st, TB__ST_SYNC_CALC_APPLY);
  sqlite3_bind_int64(stmt, 1, now);
  s = run_done(st, TB__ST_SYNC_CALC_APPLY, "apply");
  if (s == TB_OK) {
    stmt = tb__stmt(st, TB__ST_SYNC_CALC_AUDIT);
    tb__bind_opt_text(stmt, 1, cause);
    sqlite3_bind_int64(stmt, 2, now);
    s = run_done(st, TB__ST_SYNC_CALC_AUDIT, "audit");
  }
  if (s == TB_OK && on_change != NULL && out->priority_changes > 0) {
    stmt = tb__stmt(st, TB__ST_SYNC_CALC_CHANGED);
    while (s == TB_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      tb_repo_change_t c = {
          .repository_id = (const char *)sqlite3_column_text(stmt, 0),
          .old_priority = (const char *)sqlite3_column_text(stmt, 1),
          .new_priority = (const char *)sqlite3_column_text(stmt, 2),
          .new_score = sqlite3_column_int(stmt, 3),
          .is_workspace_repo = sqlite3_column_int(stmt, 4),
          .workspace_count = sqlite3_column_int(stmt, 5),
      };
      s = on_change(arg, &c);
    }
    if (s == TB_OK && rc != SQLITE_DONE) s = tb__store_fail(st->db, rc, "priority sync: changes");
    tb__stmt_done(stmt);
  }
  if (s == TB_OK) s = run_done(st, TB__ST_SYNC_CALC_CLEAR, "clear scratch");
  return s;
}

tb_status tb_store_repo_inversions(tb_store_t *st, int limit,
                                   void (*fn)(void *arg, const tb_repo_inversion_t *inv), void *arg,
                                   int64_t *total, int64_t *seed_query) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_REPO_INVERSIONS);
  int64_t n = 0;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (fn != NULL && n < limit) {
      tb_repo_inversion_t inv = {
          .repository_id = (const char *)sqlite3_column_text(stmt, 0),
          .priority = (const char *)sqlite3_column_text(stmt, 1),
          .expected_priority = (const char *)sqlite3_column_text(stmt, 2),
          .is_workspace_repo = sqlite3_column_int(stmt, 3),
          .workspace_count = sqlite3_column_int(stmt, 4),
          .live_count = sqlite3_column_int(stmt, 5),
          .manual_override = (const char *)sqlite3_column_text(stmt, 6),
      };
      fn(arg, &inv);
    }
    n++;
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "priority inversions");
  tb__stmt_done(stmt);
  if (s != TB_OK) return s;
  if (total) *total = n;
  if (seed_query) {
    stmt = tb__stmt(st, TB__ST_REPO_SEED_INVERSIONS);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
      *seed_query = sqlite3_column_int64(stmt, 0);
    else
      s = tb__store_fail(st->db, rc, "priority inversions: seed query");
    tb__stmt_done(stmt);
  }
  return s;
}

tb_status tb_store_repo_audit_list(tb_store_t *st, const char *repository_id, int limit,
                                   void (*fn)(void *arg, const tb_repo_audit_t *a), void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_REPO_AUDIT_LIST);
  sqlite3_bind_text(stmt, 1, repository_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, limit);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_repo_audit_t a = {
        .old_priority = (const char *)sqlite3_column_text(stmt, 0),
        .new_priority = (const char *)sqlite3_column_text(stmt, 1),
        .reason = (const char *)sqlite3_column_text(stmt, 2),
        .msg_id = (const char *)sqlite3_column_text(stmt, 3),
        .at_us = sqlite3_column_int64(stmt, 4),
    };
    fn(arg, &a);
  }
  tb_status s =
      rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "priority audit of %s", repository_id);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_repo_counts(tb_store_t *st, int64_t *tracked, int64_t *workspace_repos) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_REPO_COUNTS);
  int rc = sqlite3_step(stmt);
  tb_status s = TB_OK;
  if (rc == SQLITE_ROW) {
    *tracked = sqlite3_column_int64(stmt, 0);
    *workspace_repos = sqlite3_column_int64(stmt, 1);
  } else {
    s = tb__store_fail(st->db, rc, "repository counts");
  }
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_repo_list(tb_store_t *st, const char *priority, const char *workspace,
                             const char *after_id, int limit,
                             int (*fn)(void *arg, const tb_tracked_repo_t *r), void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_REPO_LIST);
  sqlite3_bind_text(stmt, 1, after_id ? after_id : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, priority ? priority : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, workspace ? workspace : "", -1, SQLITE_STATIC);
  sqlite3_bind_int(stmt, 4, limit > 0 ? limit : -1);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_tracked_repo_t r;
    memset(&r, 0, sizeof(r));
    copy_text(r.repository_id, sizeof(r.repository_id), sqlite3_column_text(stmt, 0));
    copy_text(r.priority, sizeof(r.priority), sqlite3_column_text(stmt, 1));
    r.priority_score = sqlite3_column_int(stmt, 2);
    r.is_workspace_repo = sqlite3_column_int(stmt, 3);
    r.workspace_count = sqlite3_column_int(stmt, 4);
    r.tracking_enabled = sqlite3_column_int(stmt, 5);
    copy_text(r.manual_override, sizeof(r.manual_override), sqlite3_column_text(stmt, 6));
    r.marked_low = sqlite3_column_int(stmt, 7);
    copy_text(r.repository_name, sizeof(r.repository_name), sqlite3_column_text(stmt, 8));
    if (fn(arg, &r) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "repository list");
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_repo_workspaces(tb_store_t *st, const char *repository_id,
                                   int (*fn)(void *arg, const char *workspace_id, int64_t added_us),
                                   void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_REPO_WORKSPACES);
  sqlite3_bind_text(stmt, 1, repository_id, -1, SQLITE_STATIC);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
    if (fn(arg, (const char *)sqlite3_column_text(stmt, 0), sqlite3_column_int64(stmt, 1)) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  tb_status s =
      rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "workspaces of %s", repository_id);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_repo_distribution(tb_store_t *st, int (*fn)(void *arg, const tb_repo_dist_t *d),
                                     void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_REPO_DISTRIBUTION);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_repo_dist_t d = {.is_workspace_repo = sqlite3_column_int(stmt, 0),
                        .priority = (const char *)sqlite3_column_text(stmt, 1),
                        .count = sqlite3_column_int64(stmt, 2),
                        .avg_workspace_count = sqlite3_column_double(stmt, 3),
                        .overrides = sqlite3_column_int64(stmt, 4),
                        .marked_low = sqlite3_column_int64(stmt, 5)};
    if (fn(arg, &d) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "priority distribution");
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_prio_sync_list(tb_store_t *st, int limit,
                                  int (*fn)(void *arg, int64_t id, const tb_prio_sync_run_row_t *r),
                                  void *arg) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_PRIO_SYNC_LIST);
  sqlite3_bind_int(stmt, 1, limit > 0 ? limit : -1);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    tb_prio_sync_run_row_t r = {.owner = (const char *)sqlite3_column_text(stmt, 1),
                                .trigger = (const char *)sqlite3_column_text(stmt, 2),
                                .status = (const char *)sqlite3_column_text(stmt, 3),
                                .started_us = sqlite3_column_int64(stmt, 4),
                                .finished_us = sqlite3_column_int64(stmt, 5),
                                .workspace_repos = sqlite3_column_int64(stmt, 6),
                                .tracked_only_repos = sqlite3_column_int64(stmt, 7),
                                .priority_changes = sqlite3_column_int64(stmt, 8),
                                .rows_updated = sqlite3_column_int64(stmt, 9),
                                .attempts = sqlite3_column_int(stmt, 10),
                                .errors_json = (const char *)sqlite3_column_text(stmt, 11)};
    if (fn(arg, sqlite3_column_int64(stmt, 0), &r) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "priority sync runs");
  tb__stmt_done(stmt);
  return s;
}

/* ---------------------------------------------------------------- leases */

/* The lease row of |name|: *found = 0 when there is none. */
static tb_status lease_get(tb_store_t *st, const char *name, int *found, char *holder, size_t cap,
                           int64_t *expires_us) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_LEASE_GET);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  *found = rc == SQLITE_ROW;
  if (holder) copy_text(holder, cap, *found ? sqlite3_column_text(stmt, 0) : NULL);
  if (expires_us) *expires_us = *found ? sqlite3_column_int64(stmt, 1) : 0;
  tb_status s = rc == SQLITE_ROW || rc == SQLITE_DONE
                    ? TB_OK
                    : tb__store_fail(st->db, rc, "lease '%s': read holder", name);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_lease_get(tb_store_t *st, const char *name, char *holder, size_t cap,
                             int64_t *expires_us, int *found) {
  return lease_get(st, name, found, holder, cap, expires_us);
}

/* The conditional upsert, then the holder when it did not take. */
static tb_status lease_upsert(tb_store_t *st, const char *name, const char *owner, int64_t ttl_ms,
                              int *taken, char *holder, size_t cap, int64_t *holder_expires_us) {
  int64_t now = tb_wall_us();
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_LEASE_TAKE);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, owner, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, now);
  sqlite3_bind_int64(stmt, 4, now + ttl_ms * 1000);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "lease '%s': take", name);
  tb__stmt_done(stmt);
  if (s != TB_OK) return s;
  if (sqlite3_changes(st->db) == 1) {
    *taken = 1;
    return TB_OK;
  }
  int found; /* 0: released between the two statements (only possible outside a transaction) */
  return lease_get(st, name, &found, holder, cap, holder_expires_us);
}

/* How long one wait for the write lock lasts before the lease is read again. */
#define LEASE_WAIT_SLICE_MS 50

tb_status tb_store_lease_take(tb_store_t *st, const char *name, const char *owner, int64_t ttl_ms,
                              int *taken, char *holder, size_t cap, int64_t *holder_expires_us) {
  *taken = 0;
  if (name == NULL || name[0] == '\0' || owner == NULL || owner[0] == '\0' || ttl_ms < 1)
    return tb__fail(TB_ERR_INVALID, "lease '%s': needs a name, an owner and a ttl of 1 ms or more",
                    name ? name : "");
  /* In a transaction the caller already holds the write lock or waits for it as a whole. */
  if (!sqlite3_get_autocommit(st->db))
    return lease_upsert(st, name, owner, ttl_ms, taken, holder, cap, holder_expires_us);
  /* Outside one, a holder that is running writes batch after batch, and SQLite's busy handler,
   * which retries at fixed steps, loses the lock to each next batch: the caller would wait until
   * the holder had finished and then run the job a second time. So the lease is read first (a
   * WAL reader never waits), and the write waits in short slices with a read between them. */
  int64_t deadline = tb_mono_us() + (int64_t)st->busy_ms * 1000;
  for (;;) {
    int found = 0;
    char who[256]; /* a longer owner only skips this shortcut: the upsert decides */
    int64_t expires = 0;
    tb_status s = lease_get(st, name, &found, who, sizeof(who), &expires);
    if (s != TB_OK) return s;
    if (found && expires > tb_wall_us() && strcmp(who, owner) != 0) {
      if (holder) copy_text(holder, cap, (const unsigned char *)who);
      if (holder_expires_us) *holder_expires_us = expires;
      return TB_OK;
    }
    sqlite3_busy_timeout(st->db, LEASE_WAIT_SLICE_MS);
    s = lease_upsert(st, name, owner, ttl_ms, taken, holder, cap, holder_expires_us);
    sqlite3_busy_timeout(st->db, st->busy_ms);
    if (s != TB_ERR_BUSY || tb_mono_us() >= deadline) return s;
  }
}

tb_status tb_store_lease_renew(tb_store_t *st, const char *name, const char *owner, int64_t ttl_ms,
                               int *held) {
  *held = 0;
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_LEASE_RENEW);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, owner, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, tb_wall_us() + ttl_ms * 1000);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "lease '%s': renew", name);
  tb__stmt_done(stmt);
  if (s == TB_OK) *held = sqlite3_changes(st->db) == 1;
  return s;
}

tb_status tb_store_lease_release(tb_store_t *st, const char *name, const char *owner) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_LEASE_RELEASE);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, owner, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "lease '%s': release", name);
  tb__stmt_done(stmt);
  return s;
}

tb_status tb_store_prio_sync_record(tb_store_t *st, const tb_prio_sync_run_row_t *r) {
  sqlite3_stmt *stmt = tb__stmt(st, TB__ST_PRIO_SYNC_RECORD);
  sqlite3_bind_text(stmt, 1, r->owner, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, r->trigger ? r->trigger : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, r->status, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 4, r->started_us);
  sqlite3_bind_int64(stmt, 5, r->finished_us);
  sqlite3_bind_int64(stmt, 6, r->workspace_repos);
  sqlite3_bind_int64(stmt, 7, r->tracked_only_repos);
  sqlite3_bind_int64(stmt, 8, r->priority_changes);
  sqlite3_bind_int64(stmt, 9, r->rows_updated);
  sqlite3_bind_int(stmt, 10, r->attempts);
  sqlite3_bind_text(stmt, 11, r->errors_json ? r->errors_json : "[]", -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  tb_status s = rc == SQLITE_DONE ? TB_OK : tb__store_fail(st->db, rc, "priority sync: record run");
  tb__stmt_done(stmt);
  return s;
}
