/* Seed 002's workspace repository priority rules. A repository in at least one workspace is high
 * (100); one only tracked is medium (50), or low (25) when an operator marked it low; a manual
 * override always wins. Adds and removes apply in publish order per (workspace, repository), so
 * the outcome does not depend on which worker commits first. */
#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "workflows/handlers.h"

static const struct {
  const char *name;
  int score;
} priorities[] = {{"high", 100}, {"medium", 50}, {"low", 25}};

static int score_of(const char *priority) {
  for (size_t i = 0; i < sizeof(priorities) / sizeof(priorities[0]); i++)
    if (strcmp(priorities[i].name, priority) == 0) return priorities[i].score;
  return 0; /* unreachable: the store only holds the three names */
}

/* What the rules give before any manual override. */
static const char *rule_priority(int workspace_count, int marked_low) {
  if (workspace_count >= 1) return "high";
  return marked_low ? "low" : "medium";
}

static const char *plural(int n) {
  return n == 1 ? "" : "s";
}

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

  int count = 0, found = 0;
  tb_tracked_repo_t old, now;
  s = tb_store_workspace_count(ctx->store, repository_id, &count);
  if (s == TB_OK) s = tb_store_repo_get(ctx->store, repository_id, &old, &found);
  if (s != TB_OK) return s;

  if (found) {
    now = old;
  } else {
    memset(&now, 0, sizeof(now));
    snprintf(now.repository_id, sizeof(now.repository_id), "%s", repository_id);
    now.tracking_enabled = 1;
  }
  now.workspace_count = count;
  now.is_workspace_repo = count >= 1;
  const char *computed = rule_priority(count, now.marked_low);
  const char *chosen = now.manual_override[0] != '\0' ? now.manual_override : computed;
  snprintf(now.priority, sizeof(now.priority), "%s", chosen);
  now.priority_score = score_of(chosen);

  if (found && strcmp(old.priority, now.priority) == 0 &&
      old.priority_score == now.priority_score && old.is_workspace_repo == now.is_workspace_repo &&
      old.workspace_count == now.workspace_count)
    return TB_OK;

  char what[2 * TB_ID_MAX + 64], reason[3 * TB_ID_MAX + 128];
  if (present)
    snprintf(what, sizeof(what), "added to workspace %s (%d workspace%s)", workspace_id, count,
             plural(count));
  else if (count == 0)
    snprintf(what, sizeof(what), "removed from last workspace %s", workspace_id);
  else
    snprintf(what, sizeof(what), "removed from workspace %s (still in %d workspace%s)",
             workspace_id, count, plural(count));
  if (strcmp(chosen, computed) != 0)
    snprintf(reason, sizeof(reason), "manual override '%s' respected over '%s': %s%s", chosen,
             computed, what, found ? "" : "; now tracked");
  else
    snprintf(reason, sizeof(reason), "%s%s", what, found ? "" : "; now tracked");

  s = tb_store_repo_put(ctx->store, &now);
  if (s == TB_OK)
    s = tb_store_priority_audit(ctx->store, repository_id, found ? old.priority : NULL,
                                now.priority, reason, ctx->msg->env ? ctx->msg->env->id : NULL);
  return s;
}

tb_status tb__handle_repo_added(const tb_handler_ctx_t *ctx) {
  return apply_change(ctx, "WORKSPACE_REPO_ADDED", 1);
}

tb_status tb__handle_repo_removed(const tb_handler_ctx_t *ctx) {
  return apply_change(ctx, "WORKSPACE_REPO_REMOVED", 0);
}
