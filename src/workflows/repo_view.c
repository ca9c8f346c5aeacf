/* Seed 002's repositories as their readers see them: the JSON that `tierbus priority show` and
 * GET /api/repositories[/{id}] share (priority.h). */
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "workflows/priority.h"

json_t *tb_repo_json(const tb_config_t *cfg, const tb_tracked_repo_t *r) {
  const char *tier = tb_repo_priority_tier(cfg, r->priority);
  return json_pack(
      "{s:s, s:o, s:s, s:i, s:b, s:i, s:o, s:b, s:b, s:o}", "repository_id", r->repository_id,
      "repository_name", r->repository_name[0] ? json_string(r->repository_name) : json_null(),
      "priority", r->priority, "priority_score", r->priority_score, "is_workspace_repo",
      r->is_workspace_repo, "workspace_count", r->workspace_count, "manual_override",
      r->manual_override[0] ? json_string(r->manual_override) : json_null(), "marked_low",
      r->marked_low, "tracking_enabled", r->tracking_enabled, "jobs_tier",
      tier ? json_string(tier) : json_null());
}

typedef struct collect {
  json_t *arr;
  int oom;
} collect_t;

static void add_audit(void *arg, const tb_repo_audit_t *a) {
  collect_t *c = arg;
  char when[40];
  tb_time_format(a->at_us, when, sizeof(when));
  json_t *v = json_pack("{s:s, s:s, s:s, s:s, s:s}", "at", when, "old_priority", a->old_priority,
                        "new_priority", a->new_priority, "reason", a->reason, "msg_id", a->msg_id);
  if (v == NULL || json_array_append_new(c->arr, v) != 0) c->oom = 1;
}

static int add_workspace(void *arg, const char *workspace_id, int64_t added_us) {
  collect_t *c = arg;
  char when[40];
  tb_time_format(added_us, when, sizeof(when));
  json_t *v = json_pack("{s:s, s:s}", "workspace_id", workspace_id, "added_at", when);
  if (v == NULL || json_array_append_new(c->arr, v) != 0) c->oom = 1;
  return c->oom;
}

tb_status tb_repo_view(tb_store_t *st, const tb_config_t *cfg, const char *id, int audit,
                       json_t **out) {
  tb_tracked_repo_t r;
  int found = 0, live = 0;
  tb_status s = tb_store_repo_get(st, id, &r, &found);
  if (s == TB_OK && !found) return tb__fail(TB_ERR_NOT_FOUND, "repository '%s' is not tracked", id);
  if (s == TB_OK) s = tb_store_workspace_count(st, id, &live);
  if (s != TB_OK) return s;
  collect_t ws = {.arr = json_array()}, au = {.arr = json_array()};
  json_t *v = tb_repo_json(cfg, &r);
  if (v == NULL || ws.arr == NULL || au.arr == NULL)
    s = tb__fail(TB_ERR_NOMEM, "repository %s", id);
  if (s == TB_OK) s = tb_store_repo_workspaces(st, id, add_workspace, &ws);
  if (s == TB_OK) s = tb_store_repo_audit_list(st, id, audit, add_audit, &au);
  if (s == TB_OK && (ws.oom || au.oom)) s = tb__fail(TB_ERR_NOMEM, "repository %s", id);
  if (s == TB_OK) {
    json_object_set_new(v, "live_workspace_count", json_integer(live));
    json_object_set_new(v, "expected_priority",
                        json_string(tb_repo_rule_priority(live, r.marked_low, r.manual_override)));
    json_object_set(v, "workspaces", ws.arr);
    json_object_set(v, "audit", au.arr);
    *out = v;
  } else {
    json_decref(v);
  }
  json_decref(ws.arr);
  json_decref(au.arr);
  return s;
}
