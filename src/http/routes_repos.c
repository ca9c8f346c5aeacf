/* The HTTP API's repository routes (seed 002): tracked repositories a page at a time, one with
 * its workspaces and audit trail (the JSON of `tierbus priority show`), the seed's priority
 * distribution with the inversion counts, and the full syncs that ran. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "http/internal.h"
#include "store/repo.h"
#include "workflows/priority.h"

#define LIST_DEFAULT 50
#define LIST_MAX 1000
#define AUDIT_DEFAULT 20
#define SYNCS_DEFAULT 20

typedef struct page {
  const tb_config_t *cfg;
  json_t *rows;
  int want;
  char last[TB_ID_MAX];
  int more, oom;
} page_t;

static int add_repo(void *arg, const tb_tracked_repo_t *r) {
  page_t *p = arg;
  if ((int)json_array_size(p->rows) == p->want) {
    p->more = 1;
    return 1;
  }
  snprintf(p->last, sizeof(p->last), "%s", r->repository_id);
  json_t *v = tb_repo_json(p->cfg, r);
  if (v == NULL || json_array_append_new(p->rows, v) != 0) p->oom = 1;
  return p->oom;
}

/* GET /api/repositories?priority=&workspace=&limit=&cursor=: tracked repositories in id order, a
 * page of |limit| (default 50, at most 1000), with next_cursor (null on the last page). */
void tb__http_get_repositories(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  static const char *const allowed[] = {"priority", "workspace", "limit", "cursor", NULL};
  if (tb__http_args_check(req, resp, allowed) != 0) return;
  const char *priority = tb__http_arg(req, "priority"), *workspace = tb__http_arg(req, "workspace");
  const char *cursor = tb__http_arg(req, "cursor");
  int64_t limit = 0;
  if (tb__http_arg_int(req, resp, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit) != 0) return;
  if (priority != NULL && !tb_repo_priority_valid(priority)) {
    tb__http_error(resp, 400, "priority",
                   "priority: expected high, medium or low (seed 002), got '%.64s'", priority);
    return;
  }
  if (workspace != NULL && strlen(workspace) >= TB_ID_MAX) {
    tb__http_error(resp, 400, "workspace", "workspace: an id is at most %d bytes", TB_ID_MAX - 1);
    return;
  }
  char after[TB_ID_MAX] = "";
  if (cursor != NULL && tb__http_cursor_read(resp, cursor, "repo:", after, sizeof(after)) != 0)
    return;
  page_t p = {.cfg = h->o.cfg, .rows = json_array(), .want = (int)limit};
  pthread_mutex_lock(&h->store_mu);
  tb_status st = p.rows ? tb_store_repo_list(h->o.store, priority, workspace, after, (int)limit + 1,
                                             add_repo, &p)
                        : tb__fail(TB_ERR_NOMEM, "repositories");
  pthread_mutex_unlock(&h->store_mu);
  if (st == TB_OK && p.oom) st = tb__fail(TB_ERR_NOMEM, "repositories");
  if (st != TB_OK) {
    json_decref(p.rows);
    tb__http_fail(resp, st, NULL, "listing repositories");
    return;
  }
  json_t *next = json_null();
  if (p.more) {
    char text[TB_ID_MAX + 8], cur[(TB_ID_MAX + 8) * 2];
    snprintf(text, sizeof(text), "repo:%s", p.last);
    tb__http_cursor_make(text, cur, sizeof(cur));
    next = json_string(cur);
  }
  tb__http_json(resp, 200, json_pack("{s:o,s:o}", "repositories", p.rows, "next_cursor", next));
}

/* GET /api/repositories/{id}?audit=N: the repository with its workspaces and its last N audit
 * rows (default 20), 404 when it is not tracked. */
void tb__http_get_repository(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  static const char *const allowed[] = {"audit", NULL};
  if (tb__http_args_check(req, resp, allowed) != 0) return;
  int64_t audit = 0;
  if (tb__http_arg_int(req, resp, "audit", 0, 10000, AUDIT_DEFAULT, &audit) != 0) return;
  json_t *v = NULL;
  pthread_mutex_lock(&h->store_mu);
  tb_status st = tb_repo_view(h->o.store, h->o.cfg, req->params[0], (int)audit, &v);
  pthread_mutex_unlock(&h->store_mu);
  if (st != TB_OK)
    tb__http_fail(resp, st, NULL, "repository");
  else
    tb__http_json(resp, 200, v);
}

/* ---------------------------------------------------------------- priority */

static int add_group(void *arg, const tb_repo_dist_t *d) {
  json_t *v = json_pack("{s:b,s:s,s:I,s:f,s:I,s:I}", "is_workspace_repo", d->is_workspace_repo,
                        "priority", d->priority ? d->priority : "", "count", (json_int_t)d->count,
                        "avg_workspace_count", d->avg_workspace_count, "overrides",
                        (json_int_t)d->overrides, "marked_low", (json_int_t)d->marked_low);
  return v == NULL || json_array_append_new(arg, v) != 0;
}

/* GET /api/priority/distribution: seed 002's distribution query (tracked repositories by
 * is_workspace_repo and priority), the totals, and the inversions (target zero). */
void tb__http_get_distribution(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  static const char *const allowed[] = {NULL};
  if (tb__http_args_check(req, resp, allowed) != 0) return;
  json_t *groups = json_array();
  int64_t tracked = 0, ws = 0, inv = 0, seed = 0;
  pthread_mutex_lock(&h->store_mu);
  tb_status st = groups ? tb_store_repo_distribution(h->o.store, add_group, groups)
                        : tb__fail(TB_ERR_NOMEM, "distribution");
  if (st == TB_OK) st = tb_store_repo_counts(h->o.store, &tracked, &ws);
  if (st == TB_OK) st = tb_store_repo_inversions(h->o.store, 0, NULL, NULL, &inv, &seed);
  pthread_mutex_unlock(&h->store_mu);
  if (st != TB_OK) {
    json_decref(groups);
    tb__http_fail(resp, st, NULL, "priority distribution");
    return;
  }
  tb__http_json(resp, 200,
                json_pack("{s:o,s:{s:I,s:I,s:I},s:{s:I,s:I}}", "groups", groups, "totals",
                          "tracked", (json_int_t)tracked, "workspace_repos", (json_int_t)ws,
                          "tracked_only_repos", (json_int_t)(tracked - ws), "inversions",
                          "repositories", (json_int_t)inv, "seed_query", (json_int_t)seed));
}

static int add_sync(void *arg, int64_t id, const tb_prio_sync_run_row_t *r) {
  char started[40], finished[40];
  tb_time_format(r->started_us, started, sizeof(started));
  tb_time_format(r->finished_us, finished, sizeof(finished));
  json_t *errors = r->errors_json ? json_loads(r->errors_json, 0, NULL) : NULL;
  json_t *v =
      json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:f,s:I,s:I,s:I,s:I,s:i,s:o}", "id", (json_int_t)id,
                "owner", r->owner ? r->owner : "", "trigger", r->trigger ? r->trigger : "",
                "status", r->status ? r->status : "", "started_at", started, "finished_at",
                finished, "duration_ms", (double)(r->finished_us - r->started_us) / 1000.0,
                "workspaceRepos", (json_int_t)r->workspace_repos, "trackedOnlyRepos",
                (json_int_t)r->tracked_only_repos, "priorityChanges",
                (json_int_t)r->priority_changes, "rowsUpdated", (json_int_t)r->rows_updated,
                "attempts", r->attempts, "errors", errors ? errors : json_array());
  return v == NULL || json_array_append_new(arg, v) != 0;
}

/* GET /api/priority/syncs?limit=: the full syncs that finished, newest first (default 20), in the
 * seed's SyncResult names, and the one running now (the lease's holder), or null. */
void tb__http_get_syncs(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  static const char *const allowed[] = {"limit", NULL};
  if (tb__http_args_check(req, resp, allowed) != 0) return;
  int64_t limit = 0;
  if (tb__http_arg_int(req, resp, "limit", 1, 1000, SYNCS_DEFAULT, &limit) != 0) return;
  json_t *rows = json_array();
  char holder[TB_ID_MAX] = "";
  int64_t expires = 0;
  int held = 0;
  pthread_mutex_lock(&h->store_mu);
  tb_status st = rows ? tb_store_prio_sync_list(h->o.store, (int)limit, add_sync, rows)
                      : tb__fail(TB_ERR_NOMEM, "syncs");
  if (st == TB_OK)
    st =
        tb_store_lease_get(h->o.store, TB_PRIO_SYNC_LEASE, holder, sizeof(holder), &expires, &held);
  pthread_mutex_unlock(&h->store_mu);
  if (st != TB_OK) {
    json_decref(rows);
    tb__http_fail(resp, st, NULL, "priority syncs");
    return;
  }
  json_t *running = json_null();
  if (held && expires > tb_wall_us()) { /* an expired lease is a crashed sync, not a running one */
    char until[40];
    tb_time_format(expires, until, sizeof(until));
    running = json_pack("{s:s,s:s}", "owner", holder, "lease_expires_at", until);
  }
  tb__http_json(resp, 200, json_pack("{s:o,s:o}", "running", running, "syncs", rows));
}
