/* Seed 002's workspace repository priority rules. A repository in at least one workspace is high
 * (100); one only tracked is medium (50), or low (25) when an operator marked it low; a manual
 * override always wins (the rules themselves: tb_repo_rule_priority). Adds and removes apply in
 * publish order per (workspace, repository), so the outcome does not depend on which worker
 * commits first. A priority change queues the repository's sync job on its priority's tier. */
#include <stdio.h>
#include <string.h>

#include "api/publish.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "workflows/handlers.h"
#include "workflows/priority.h"

static const char *plural(int n) {
  return n == 1 ? "" : "s";
}

/* ---------------------------------------------------------------- one repository */

static void log_job_failure(const char *repository_id, const char *priority) {
  TB_LOG(TB_LOG_WARN, "workspace",
         "repository %s is now %s, but its sync job was not queued: %s (the full sync will "
         "not queue it again unless the priority changes; see `tierbus priority show`)",
         repository_id, priority, tb_errdetail());
}

/* Recomputes |repository_id|'s row with |count| workspaces, after applying an operator's
 * |override| (NULL = keep, "" = clear) and |mark_low| (-1 = keep), and writes it with an audit
 * row (reason: |what|, then the rule that decided) when anything in it changed. A changed
 * priority queues the repository's sync job; a failure to queue it is logged and swallowed, so
 * the membership or setting change that caused it still commits (seed 002: priority sync errors
 * never fail the workspace operation). *changed (may be NULL) = 1 when the row was written. */
static tb_status recompute(const tb_handler_ctx_t *ctx, const char *repository_id, int count,
                           const char *override, int mark_low, const char *name, const char *what,
                           const char *cause, int *changed) {
  if (changed) *changed = 0;
  int found = 0;
  tb_tracked_repo_t old, now;
  tb_status s = tb_store_repo_get(ctx->store, repository_id, &old, &found);
  if (s != TB_OK) return s;
  if (found) {
    now = old;
  } else {
    memset(&now, 0, sizeof(now));
    snprintf(now.repository_id, sizeof(now.repository_id), "%s", repository_id);
    now.tracking_enabled = 1;
  }
  if (override != NULL) snprintf(now.manual_override, sizeof(now.manual_override), "%s", override);
  if (mark_low >= 0) now.marked_low = mark_low ? 1 : 0;
  if (name != NULL && name[0] != '\0')
    snprintf(now.repository_name, sizeof(now.repository_name), "%s", name);
  now.workspace_count = count;
  now.is_workspace_repo = count >= 1;
  const char *computed = tb_repo_rule_priority(count, now.marked_low, NULL);
  const char *chosen = tb_repo_rule_priority(count, now.marked_low, now.manual_override);
  snprintf(now.priority, sizeof(now.priority), "%s", chosen);
  now.priority_score = tb_repo_priority_score(chosen);

  if (found && strcmp(old.priority, now.priority) == 0 &&
      old.priority_score == now.priority_score && old.is_workspace_repo == now.is_workspace_repo &&
      old.workspace_count == now.workspace_count &&
      strcmp(old.manual_override, now.manual_override) == 0 && old.marked_low == now.marked_low &&
      strcmp(old.repository_name, now.repository_name) == 0)
    return TB_OK;

  char reason[3 * TB_ID_MAX + 128];
  if (strcmp(chosen, computed) != 0)
    snprintf(reason, sizeof(reason), "manual override '%s' respected over '%s': %s%s", chosen,
             computed, what, found ? "" : "; now tracked");
  else
    snprintf(reason, sizeof(reason), "%s%s", what, found ? "" : "; now tracked");

  s = tb_store_repo_put(ctx->store, &now);
  if (s == TB_OK)
    s = tb_store_priority_audit(ctx->store, repository_id, found ? old.priority : NULL,
                                now.priority, reason, cause);
  if (s != TB_OK) return s;
  if (changed) *changed = 1;
  if (found && strcmp(old.priority, now.priority) == 0) return TB_OK;
  tb_repo_change_t c = {.repository_id = repository_id,
                        .old_priority = found ? old.priority : "",
                        .new_priority = now.priority,
                        .new_score = now.priority_score,
                        .is_workspace_repo = now.is_workspace_repo,
                        .workspace_count = now.workspace_count,
                        .repository_name = now.repository_name};
  if (tb_repo_sync_job_emit(ctx, &c, cause ? cause : repository_id) != TB_OK)
    log_job_failure(repository_id, now.priority);
  return TB_OK;
}

static tb_status queue_add_sync(const tb_handler_ctx_t *ctx, const char *workspace_id,
                                const char *repository_id);
static uint64_t fnv1a(const char *s, uint64_t h);

/* Reads one required id from the payload. An event without it can never apply, so the failure is
 * TB_ERR_INVALID, which sends the message to the dead-letter stream. */
static tb_status required_id(const tb_handler_ctx_t *ctx, const char *event, const char *field,
                             const char **out) {
  const char *v = ctx->msg->payload ? tb_codec_get_string(ctx->msg->payload, field) : NULL;
  if (v == NULL || v[0] == '\0') {
    const char *msg_id = ctx->msg->env ? ctx->msg->env->id : "?";
    return tb__fail(TB_ERR_INVALID, "%s (msg %s): empty %s", event, msg_id, field);
  }
  *out = v;
  return TB_OK;
}

/* Applies one membership change and recomputes the repository's row. A change older than the
 * pair's last applied one does nothing (the engine still records the message as processed). The
 * row and its audit entry are written only when something in the row changed, so a duplicate add
 * leaves no trace. Runs inside the engine's savepoint: a failure part-way is rolled back whole. */
static tb_status apply_change(const tb_handler_ctx_t *ctx, const char *fallback_event,
                              int present) {
  const char *event = ctx->msg->def ? ctx->msg->def->name : fallback_event;
  const char *workspace_id = NULL, *repository_id = NULL;
  tb_status s = required_id(ctx, event, "workspace_id", &workspace_id);
  if (s == TB_OK) s = required_id(ctx, event, "repository_id", &repository_id);
  if (s != TB_OK) return s;

  int applied = 0;
  s = tb_store_membership_apply(ctx->store, workspace_id, repository_id, present, &ctx->order,
                                &applied);
  if (s != TB_OK || !applied) return s;

  int count = 0;
  s = tb_store_workspace_count(ctx->store, repository_id, &count);
  if (s != TB_OK) return s;
  char what[2 * TB_ID_MAX + 64];
  if (present)
    snprintf(what, sizeof(what), "added to workspace %s (%d workspace%s)", workspace_id, count,
             plural(count));
  else if (count == 0)
    snprintf(what, sizeof(what), "removed from last workspace %s", workspace_id);
  else
    snprintf(what, sizeof(what), "removed from workspace %s (still in %d workspace%s)",
             workspace_id, count, plural(count));
  /* A name over its limit is not stored (and not cut): the membership change still applies. */
  const char *name = present && ctx->msg->payload
                         ? tb_codec_get_string(ctx->msg->payload, "repository_name")
                         : NULL;
  if (name != NULL && strlen(name) >= TB_REPO_NAME_MAX) {
    TB_LOG(TB_LOG_WARN, "workspace",
           "%s: repository_name of %s is %zu bytes, over the %d-byte limit; not stored", event,
           repository_id, strlen(name), TB_REPO_NAME_MAX - 1);
    name = NULL;
  }
  s = recompute(ctx, repository_id, count, NULL, -1, name, what,
                ctx->msg->env ? ctx->msg->env->id : NULL, NULL);
  if (s == TB_OK && present) s = queue_add_sync(ctx, workspace_id, repository_id);
  return s;
}

/* The lease row that debounces the workspace_add syncs: held (by the queued sync's message id)
 * until the queued sync is due. */
#define ADD_SYNC_LEASE "workspace-add-sync"

/* Seed 002's hook: adding a repository to a workspace also triggers the full sync
 * (workspace/priorities.sync, reason workspace_add). Debounced: the first add of a burst queues
 * the sync through the outbox, due priority_sync_debounce later, and holds the debounce lease
 * until then; an add that finds the lease held adds nothing, the queued sync covers it. The
 * sync's id is derived from the add's message id, so it is queued once whatever happens to the
 * add's message. A sync that cannot be prepared or queued is logged and the add still applies
 * (the seed: priority sync errors never fail the workspace operation); a failure to take the
 * debounce lease is returned. A replayed add (ctx->replay) queues nothing. */
static tb_status queue_add_sync(const tb_handler_ctx_t *ctx, const char *workspace_id,
                                const char *repository_id) {
  /* Opt-in (workspace_add_sync); a replay queues no new work. */
  if (ctx->cfg == NULL || !ctx->cfg->workspace_add_sync || ctx->replay) return TB_OK;
  int64_t now = tb_wall_us(), window_ms = ctx->cfg->priority_sync_debounce_ms;
  tb_status s = TB_OK;
  if (window_ms > 0) {
    char holder[128];
    int64_t expires = 0;
    int held = 0;
    s = tb_store_lease_get(ctx->store, ADD_SYNC_LEASE, holder, sizeof(holder), &expires, &held);
    if (s != TB_OK || (held && expires > now)) return s;
  }
  const char *cause = ctx->msg && ctx->msg->env && ctx->msg->env->id ? ctx->msg->env->id : "";
  char id[64];
  snprintf(id, sizeof(id), "workspace-add-sync-%016llx",
           (unsigned long long)fnv1a(cause, fnv1a(repository_id, 1469598103934665603ULL)));
  int64_t due = now + window_ms * 1000;
  json_t *payload =
      json_pack("{s:s, s:s, s:s, s:s}", "reason", "workspace_add", "requested_by",
                "tierbus-workspace", "workspace_id", workspace_id, "repository_id", repository_id);
  if (payload == NULL) return tb__fail(TB_ERR_NOMEM, "workspace_add sync");
  tb_publish_req_t req = {.event = "workspace/priorities.sync",
                          .payload = payload,
                          .id = id,
                          .source = "tierbus-workspace",
                          .occurred_at_us = due};
  tb_prepared_t p;
  s = ctx->cat != NULL ? tb_publish_prepare(ctx->cfg, ctx->cat, &req, &p)
                       : tb__fail(TB_ERR_INVALID, "no catalogue");
  json_decref(payload);
  if (s != TB_OK) {
    TB_LOG(TB_LOG_WARN, "workspace",
           "repository %s added to %s: the workspace_add sync was not "
           "queued: %s",
           repository_id, workspace_id, tb_errdetail());
    return TB_OK;
  }
  s = tb_handler_emit_at(ctx, p.subject, p.id, p.buf, p.len, window_ms > 0 ? due : 0);
  tb_prepared_free(&p);
  if (s != TB_OK) {
    TB_LOG(TB_LOG_WARN, "workspace",
           "repository %s added to %s: the workspace_add sync was not queued: %s", repository_id,
           workspace_id, tb_errdetail());
    return TB_OK; /* no lease taken: the next add tries again */
  }
  if (window_ms > 0) {
    int taken = 0;
    s = tb_store_lease_take(ctx->store, ADD_SYNC_LEASE, id, window_ms, &taken, NULL, 0, NULL);
  }
  return s;
}

tb_status tb__handle_repo_added(const tb_handler_ctx_t *ctx) {
  return apply_change(ctx, "WORKSPACE_REPO_ADDED", 1);
}

tb_status tb__handle_repo_removed(const tb_handler_ctx_t *ctx) {
  return apply_change(ctx, "WORKSPACE_REPO_REMOVED", 0);
}

/* ---------------------------------------------------------------- jobs and operator settings */

const char *tb_repo_priority_tier(const tb_config_t *cfg, const char *priority) {
  if (cfg == NULL || priority == NULL) return NULL;
  if (strcmp(priority, "high") == 0) return tb_config_tier_ref(cfg, cfg->repo_tier_high);
  if (strcmp(priority, "medium") == 0) return tb_config_tier_ref(cfg, cfg->repo_tier_medium);
  if (strcmp(priority, "low") == 0) return tb_config_tier_ref(cfg, cfg->repo_tier_low);
  return NULL;
}

/* "high" -> "REPOSITORY_PRIORITY_HIGH"; "" or unknown -> UNSPECIFIED. */
static void enum_name(const char *priority, char *buf, size_t cap) {
  const char *p = tb_repo_priority_valid(priority) ? priority : "unspecified";
  int n = snprintf(buf, cap, "REPOSITORY_PRIORITY_");
  for (size_t i = 0; p[i] && (size_t)n + i + 1 < cap; i++) {
    buf[n + i] = (char)(p[i] >= 'a' && p[i] <= 'z' ? p[i] - 'a' + 'A' : p[i]);
    buf[n + i + 1] = '\0';
  }
}

static uint64_t fnv1a(const char *s, uint64_t h) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    h ^= *p;
    h *= 1099511628211ULL;
  }
  return h;
}

tb_status tb_repo_sync_job_emit(const tb_handler_ctx_t *ctx, const tb_repo_change_t *c,
                                const char *cause) {
  const char *tier = tb_repo_priority_tier(ctx->cfg, c->new_priority);
  if (ctx->cat == NULL || tier == NULL)
    return tb__fail(TB_ERR_INVALID, "repository-sync job for %s: no %s", c->repository_id,
                    ctx->cat == NULL ? "catalogue" : "config tier for its priority");
  char prio[40], orig[40], count[16];
  enum_name(c->new_priority, prio, sizeof(prio));
  enum_name(c->old_priority, orig, sizeof(orig));
  snprintf(count, sizeof(count), "%d", c->workspace_count);
  json_t *payload = json_pack(
      "{s:s, s:s, s:i, s:s, s:{s:b, s:i, s:s}}", "repository_id", c->repository_id, "priority",
      prio, "priority_score", c->new_score, "sync_type", "full", "metadata", "is_workspace_repo",
      c->is_workspace_repo, "workspace_count", c->workspace_count, "original_priority", orig);
  if (payload == NULL)
    return tb__fail(TB_ERR_NOMEM, "repository-sync job for %s", c->repository_id);
  /* repository_name when known: the caller's, else the tracked row's (the full sync's batches do
   * not carry it). */
  tb_tracked_repo_t row;
  int found = 0;
  const char *name = c->repository_name;
  if (name == NULL && tb_store_repo_get(ctx->store, c->repository_id, &row, &found) == TB_OK &&
      found)
    name = row.repository_name;
  if (name != NULL && name[0] != '\0')
    json_object_set_new(payload, "repository_name", json_string(name));
  /* Fixed length, whatever the lengths of the cause and the repository id, and deterministic for
   * the message being handled (a redelivery emits the same id). It starts with the milliseconds
   * of that message's occurred_at, so the ids grow with time: the outbox's unique index and the
   * processed record append them instead of inserting at a random page (issue 9). */
  uint64_t h1 = fnv1a(cause, 1469598103934665603ULL);
  uint64_t ms = ctx->order.occurred_us > 0 ? (uint64_t)ctx->order.occurred_us / 1000 : 0;
  char id[64];
  snprintf(id, sizeof(id), "repo-sync-%012llx%016llx%016llx",
           (unsigned long long)(ms & 0xffffffffffffULL), (unsigned long long)h1,
           (unsigned long long)fnv1a(c->repository_id, h1 ^ 0x9e3779b97f4a7c15ULL));
  const char *meta[] = {"repository_priority", c->new_priority,
                        "is_workspace_repo",   c->is_workspace_repo ? "true" : "false",
                        "workspace_count",     count,
                        "original_priority",   c->old_priority[0] ? c->old_priority : "none"};
  tb_publish_req_t req = {.event = "capture/repository.sync",
                          .payload = payload,
                          .tier = tier,
                          .id = id,
                          .source = "tierbus-priority",
                          .priority_score = c->new_score,
                          .metadata = meta,
                          .n_metadata = 4};
  tb_prepared_t p;
  tb_status s = tb_publish_prepare(ctx->cfg, ctx->cat, &req, &p);
  json_decref(payload);
  if (s != TB_OK) return s;
  s = tb_handler_emit(ctx, p.subject, p.id, p.buf, p.len);
  tb_prepared_free(&p);
  return s;
}

tb_status tb_repo_set(const tb_handler_ctx_t *ctx, const char *repository_id, const char *override,
                      int mark_low, const char *cause, int *changed) {
  return tb_repo_set_ex(ctx, repository_id, override, mark_low, NULL, cause, changed);
}

tb_status tb_repo_set_ex(const tb_handler_ctx_t *ctx, const char *repository_id,
                         const char *override, int mark_low, const char *name, const char *cause,
                         int *changed) {
  if (changed) *changed = 0;
  if (repository_id == NULL || repository_id[0] == '\0' || strlen(repository_id) >= TB_ID_MAX)
    return tb__fail(TB_ERR_INVALID, "repository id must be 1 to %d characters", TB_ID_MAX - 1);
  if (override != NULL && strcmp(override, "none") == 0) override = "";
  if (override != NULL && override[0] != '\0' && !tb_repo_priority_valid(override))
    return tb__fail(TB_ERR_INVALID, "override '%s' is not high, medium, low or none", override);
  int count = 0;
  tb_status s = tb_store_workspace_count(ctx->store, repository_id, &count);
  if (s != TB_OK) return s;
  char what[96];
  if (override != NULL && override[0] != '\0')
    snprintf(what, sizeof(what), "operator set override '%s'", override);
  else if (override != NULL)
    snprintf(what, sizeof(what), "operator cleared the override");
  else
    what[0] = '\0';
  if (mark_low >= 0)
    snprintf(what + strlen(what), sizeof(what) - strlen(what), "%soperator %s", what[0] ? "; " : "",
             mark_low ? "marked it low" : "cleared the low mark");
  if (name != NULL && (name[0] == '\0' || strlen(name) >= TB_REPO_NAME_MAX))
    return tb__fail(TB_ERR_INVALID, "repository name must be 1 to %d characters",
                    TB_REPO_NAME_MAX - 1);
  if (name != NULL)
    snprintf(what + strlen(what), sizeof(what) - strlen(what), "%soperator named it",
             what[0] ? "; " : "");
  if (what[0] == '\0') snprintf(what, sizeof(what), "operator recomputed");
  return recompute(ctx, repository_id, count, override, mark_low, name, what, cause, changed);
}

tb_status tb_repo_route_sync_job(tb_store_t *st, const tb_config_t *cfg, tb_publish_req_t *req,
                                 tb_repo_route_t *rt, int *routed) {
  *routed = 0;
  memset(rt, 0, sizeof(*rt));
  if (req->event == NULL || strcmp(req->event, "capture/repository.sync") != 0 ||
      req->tier != NULL || !json_is_object(req->payload) ||
      json_object_get(req->payload, "priority") != NULL ||
      json_object_get(req->payload, "priority_score") != NULL ||
      json_object_get(req->payload, "priorityScore") != NULL)
    return TB_OK;
  const char *repo = json_string_value(json_object_get(req->payload, "repository_id"));
  if (repo == NULL) repo = json_string_value(json_object_get(req->payload, "repositoryId"));
  if (repo == NULL || repo[0] == '\0') return TB_OK; /* the codec refuses it as it is */
  tb_tracked_repo_t row;
  int found = 0;
  if (st != NULL) {
    tb_status s = tb_store_repo_get(st, repo, &row, &found);
    if (s != TB_OK) return s;
  }
  rt->tracked = found;
  if (!found) {
    memset(&row, 0, sizeof(row));
    snprintf(row.priority, sizeof(row.priority), "medium");
    row.priority_score = tb_repo_priority_score("medium");
  }
  const char *tier = tb_repo_priority_tier(cfg, row.priority);
  if (tier == NULL)
    return tb__fail(TB_ERR_INVALID, "capture/repository.sync %s: no tier for priority %s", repo,
                    row.priority);
  snprintf(rt->tier, sizeof(rt->tier), "%s", tier);
  snprintf(rt->priority, sizeof(rt->priority), "%s", row.priority);
  snprintf(rt->count, sizeof(rt->count), "%d", row.workspace_count);
  snprintf(rt->original, sizeof(rt->original), "%s", found ? row.priority : "none");
  char prio[40], orig[40];
  enum_name(row.priority, prio, sizeof(prio));
  enum_name(found ? row.priority : "", orig, sizeof(orig));
  json_t *meta = json_pack("{s:b, s:i, s:s}", "is_workspace_repo", row.is_workspace_repo,
                           "workspace_count", row.workspace_count, "original_priority", orig);
  if (meta == NULL || json_object_set_new(req->payload, "priority", json_string(prio)) != 0 ||
      json_object_set_new(req->payload, "priority_score", json_integer(row.priority_score)) != 0 ||
      json_object_set_new(req->payload, "metadata", meta) != 0)
    return tb__fail(TB_ERR_NOMEM, "capture/repository.sync %s", repo);
  if (found && row.repository_name[0] != '\0' &&
      json_object_get(req->payload, "repository_name") == NULL &&
      json_object_get(req->payload, "repositoryName") == NULL &&
      json_object_set_new(req->payload, "repository_name", json_string(row.repository_name)) != 0)
    return tb__fail(TB_ERR_NOMEM, "capture/repository.sync %s", repo);
  const char *meta_kv[] = {"repository_priority", rt->priority,
                           "is_workspace_repo",   row.is_workspace_repo ? "true" : "false",
                           "workspace_count",     rt->count,
                           "original_priority",   rt->original};
  memcpy(rt->meta, meta_kv, sizeof(meta_kv));
  req->tier = rt->tier;
  req->priority_score = row.priority_score;
  req->metadata = rt->meta;
  req->n_metadata = 4;
  *routed = 1;
  return TB_OK;
}
