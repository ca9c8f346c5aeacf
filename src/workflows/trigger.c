/* Starting a run from outside: the checks, the tier and the rule that chose it, and the
 * execute-workflow event, shared by `tierbus trigger` (cli/cmd_trigger.c) and the HTTP API
 * (http/routes_workflows.c). */
#include "workflows/trigger.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/status.h"

static const tb_wf_trigger_names_t json_names = {.workflow = "workflowType",
                                                 .input = "args",
                                                 .priority = "priority",
                                                 .queue = "taskQueue",
                                                 .id = "id"};

/* ---------------------------------------------------------------- unknown names */

/* Edit distance between |a| and |b|, case-insensitive, capped at 63-character prefixes (names
 * are short; the cap keeps the table on the stack). */
static int edit_distance(const char *a, const char *b) {
  int la = (int)strnlen(a, 63), lb = (int)strnlen(b, 63);
  int prev[64], cur[64];
  for (int j = 0; j <= lb; j++) prev[j] = j;
  for (int i = 1; i <= la; i++) {
    cur[0] = i;
    for (int j = 1; j <= lb; j++) {
      int sub =
          prev[j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      int del = prev[j] + 1, ins = cur[j - 1] + 1;
      cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
    memcpy(prev, cur, sizeof(int) * (size_t)(lb + 1));
  }
  return prev[lb];
}

/* 1 when |needle| occurs in |hay|, ignoring case. */
static int contains_ci(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++)
    if (strncasecmp(hay, needle, n) == 0) return 1;
  return 0;
}

void tb_wf_unknown_message(const char *name, char *buf, size_t cap) {
  /* Every registered name, in listing order (domains as tb_wf_domains() gives them). */
  const char *names[256];
  int n = 0, n_doms = 0;
  const tb_wf_domain_t *const *doms = tb_wf_domains(&n_doms);
  for (int d = 0; d < n_doms; d++)
    for (int i = 0; i < doms[d]->n_workflows && n < 256; i++)
      names[n++] = doms[d]->workflows[i]->name;
  char close[512] = "", all[1024] = "";
  size_t nc = 0, na = 0;
  int limit = (int)strlen(name) / 3 > 2 ? (int)strlen(name) / 3 : 2, shown = 0;
  /* Closest first: one pass per distance keeps the output ordered without sorting. */
  for (int d = 0; d <= limit; d++)
    for (int i = 0; i < n && shown < 5; i++)
      if (edit_distance(name, names[i]) == d) {
        nc += (size_t)snprintf(close + nc, nc < sizeof(close) ? sizeof(close) - nc : 0, "%s%s",
                               shown++ ? ", " : "", names[i]);
      }
  for (int i = 0; i < n && shown < 5; i++) {
    /* "sleep" for "ops.sleep": a name that contains the input, or is contained in it. */
    if (strlen(name) >= 3 && edit_distance(name, names[i]) > limit &&
        (contains_ci(names[i], name) || contains_ci(name, names[i])))
      nc += (size_t)snprintf(close + nc, nc < sizeof(close) ? sizeof(close) - nc : 0, "%s%s",
                             shown++ ? ", " : "", names[i]);
  }
  if (shown > 0) {
    snprintf(buf, cap, "unknown workflow '%s' (did you mean %s?)", name, close);
    return;
  }
  for (int i = 0; i < n; i++)
    na += (size_t)snprintf(all + na, na < sizeof(all) ? sizeof(all) - na : 0, "%s%s", i ? ", " : "",
                           names[i]);
  snprintf(buf, cap, "unknown workflow '%s' (workflows: %s; see `tierbus workflows list`)", name,
           n ? all : "none registered");
}

/* "a, b, c" of the config's tiers (|presets| = 0) or presets. */
static void config_names(const tb_config_t *cfg, int presets, char *buf, size_t cap) {
  size_t off = 0;
  int n = presets ? cfg->n_presets : cfg->n_tiers;
  buf[0] = '\0';
  for (int i = 0; i < n && off < cap; i++)
    off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "",
                            presets ? cfg->presets[i].name : cfg->tiers[i].name);
  if (n == 0) snprintf(buf, cap, "none");
}

/* ---------------------------------------------------------------- checks */

static tb_status check_id(const tb_wf_trigger_names_t *nm, const char *id, const char **field) {
  size_t len = strlen(id);
  *field = nm->id;
  if (len == 0 || len > TB_WF_TRIGGER_ID_MAX)
    return tb__fail(TB_ERR_INVALID, "%s: '%s' must be 1 to %d characters long (got %zu)", nm->id,
                    id, TB_WF_TRIGGER_ID_MAX, len);
  for (size_t i = 0; i < len; i++)
    if (!isalnum((unsigned char)id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-')
      return tb__fail(TB_ERR_INVALID,
                      "%s: '%s': character %zu ('%c') is not allowed (use A-Z a-z 0-9 . _ -)",
                      nm->id, id, i + 1, id[i]);
  *field = NULL;
  return TB_OK;
}

/* The run's tier before escalation, from |t|'s priority and queue or the workflow's default,
 * into *tier (borrowed from |cfg|), with what chose it in *by. */
static tb_status base_tier(const tb_config_t *cfg, const tb_workflow_def_t *def,
                           const tb_wf_trigger_t *t, const tb_wf_trigger_names_t *nm,
                           const char **tier, const char **by, const char **field) {
  char tiers[256], presets[256];
  config_names(cfg, 0, tiers, sizeof(tiers));
  config_names(cfg, 1, presets, sizeof(presets));
  const char *from_priority = NULL, *from_queue = NULL;
  if (t->priority != NULL) {
    int i = tb_config_tier_index(cfg, t->priority);
    *field = nm->priority;
    if (i < 0)
      return tb__fail(TB_ERR_INVALID, "%s: unknown tier '%s' (tiers: %s)", nm->priority,
                      t->priority, tiers);
    from_priority = cfg->tiers[i].name;
  }
  if (t->queue != NULL) {
    int i = tb_config_tier_index(cfg, t->queue);
    const tb_preset_t *p = i < 0 ? tb_config_preset(cfg, t->queue) : NULL;
    *field = nm->queue;
    if (i < 0 && p == NULL)
      return tb__fail(TB_ERR_INVALID,
                      "%s: unknown queue '%s': not a tier (tiers: %s) nor a preset (presets: %s)",
                      nm->queue, t->queue, tiers, presets);
    /* A preset's workers take only its domains: a run of another domain would wait forever. */
    int in_domain = p == NULL || p->n_domains == 0;
    for (int k = 0; p != NULL && k < p->n_domains; k++)
      in_domain |= strcmp(p->domains[k], def->domain) == 0;
    if (!in_domain)
      return tb__fail(TB_ERR_INVALID, "%s %s: its workers do not take domain '%s' (workflow %s)",
                      nm->queue, t->queue, def->domain, def->name);
    if (i < 0 && p->n_tiers > 0) i = tb_config_tier_index(cfg, p->tiers[0]);
    if (i >= 0) from_queue = cfg->tiers[i].name;
  }
  if (from_priority && from_queue && strcmp(from_priority, from_queue) != 0) {
    *field = nm->queue;
    return tb__fail(TB_ERR_INVALID,
                    "%s %s and %s %s disagree (the queue runs on tier %s); give one of them",
                    nm->priority, t->priority, nm->queue, t->queue, from_queue);
  }
  *field = NULL;
  if (from_priority) {
    *tier = from_priority;
    *by = "priority";
  } else if (from_queue) {
    *tier = from_queue;
    *by = "task-queue";
  } else {
    *tier = tb_wf_tier(cfg, def);
    if (tb_wf_type_tier(cfg, def) != NULL)
      *by = "workflow_tiers";
    else if (def->tier != NULL && strcmp(def->tier, *tier) == 0)
      *by = "definition";
    else
      *by = "least-urgent-tier";
  }
  return TB_OK;
}

/* ---------------------------------------------------------------- prepare */

tb_status tb_wf_trigger_prepare(const tb_config_t *cfg, const tb_catalogue_t *cat,
                                const tb_wf_trigger_t *t, tb_wf_triggered_t *out,
                                tb_prepared_t *msg) {
  const tb_wf_trigger_names_t *nm = t->names ? t->names : &json_names;
  memset(out, 0, sizeof(*out));
  out->field = nm->workflow;
  if (t->workflow == NULL || t->workflow[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "%s: missing", nm->workflow);
  const tb_workflow_def_t *def = tb_wf_find(t->workflow);
  if (def == NULL) {
    char why[1600];
    tb_wf_unknown_message(t->workflow, why, sizeof(why));
    return tb__fail(TB_ERR_INVALID, "%s", why);
  }
  out->def = def;
  out->field = nm->input;
  if (t->input != NULL && !json_is_object(t->input) && !json_is_array(t->input))
    return tb__fail(TB_ERR_INVALID, "%s: must be a JSON object or an array", nm->input);
  out->field = NULL;
  tb_status st = t->id ? check_id(nm, t->id, &out->field) : TB_OK;
  if (st == TB_OK) st = base_tier(cfg, def, t, nm, &out->base_tier, &out->assigned_by, &out->field);
  if (st != TB_OK) return st;
  out->field = nm->input;
  if (t->business_impact != NULL && strcmp(t->business_impact, "low") != 0 &&
      strcmp(t->business_impact, "medium") != 0 && strcmp(t->business_impact, "high") != 0)
    return tb__fail(TB_ERR_INVALID,
                    "business impact must be \"low\", \"medium\" or \"high\", got '%s'",
                    t->business_impact);
  /* The worker sees a non-object input as {"args": [...]} (tb_wf_args_input), so the context is
   * read from the same shape here. */
  json_t *input = tb_wf_args_input(t->input);
  tb_esc_input_t flags = {.customer_facing = t->customer_facing > 0,
                          .business_impact = t->business_impact,
                          .expedite = t->expedite,
                          .failed_retry = t->failed_retry,
                          .stuck_ms = t->hours_stuck > 0 ? (int64_t)(t->hours_stuck * 3.6e6) : 0};
  tb_wf_decision_t d;
  int chosen = t->priority != NULL || t->queue != NULL;
  st = input ? tb_wf_decide(cfg, def, chosen ? out->base_tier : NULL,
                            chosen ? out->assigned_by : NULL, NULL, input, &flags, &d)
             : tb__fail(TB_ERR_NOMEM, "trigger %s", def->name);
  json_decref(input);
  if (st != TB_OK) {
    /* tb_wf_esc_context names the input field: "<workflow>: input.customer_facing must be..." */
    return tb__fail(st, "%s: %s", nm->input, tb_errdetail());
  }
  out->field = NULL;
  out->tier = cfg->tiers[d.tier].name;
  out->base_tier = cfg->tiers[d.base].name;
  out->assigned_by = d.assigned_by;
  out->automatic_tier = cfg->tiers[d.automatic].name;
  out->requested_tier = d.requested >= 0 ? cfg->tiers[d.requested].name : NULL;
  out->escalated_by = d.escalated_by;
  out->rule = d.rule;
  out->context = d.in;
  if (t->id) {
    snprintf(out->id, sizeof(out->id), "%s", t->id);
  } else {
    char rnd[64];
    tb_new_id(rnd, sizeof(rnd)); /* "evt-" + 32 hex digits */
    snprintf(out->id, sizeof(out->id), "wf-%s", strchr(rnd, '-') ? strchr(rnd, '-') + 1 : rnd);
  }
  /* One event per run id: triggering the same id again is deduplicated by the stream (and the
   * start handler finds the run), so it never starts a second run. */
  char msg_id[TB_ID_MAX + 32];
  snprintf(msg_id, sizeof(msg_id), "execute-workflow:%s", out->id);
  char *args = t->input ? json_dumps(t->input, JSON_COMPACT) : strdup("{}");
  json_t *payload = args ? json_pack("{s:s,s:s,s:s}", "workflow_type", def->name, "args_json", args,
                                     "workflow_id", out->id)
                         : NULL;
  free(args);
  /* Only a chosen tier is sent as the priority: the worker derives the rest the same way. A
   * tier chosen by a task queue goes as task_queue, so that the run records that rule. */
  if (payload && (t->priority || t->queue))
    json_object_set_new(
        payload,
        out->assigned_by && strcmp(out->assigned_by, "task-queue") == 0 ? "task_queue" : "priority",
        json_string(out->base_tier));
  if (payload && t->expedite) json_object_set_new(payload, "expedite", json_true());
  if (payload && t->customer_facing > 0)
    json_object_set_new(payload, "is_customer_facing", json_true());
  if (payload && t->failed_retry) json_object_set_new(payload, "is_failed_retry", json_true());
  if (payload && t->hours_stuck > 0)
    json_object_set_new(payload, "hours_stuck", json_real(t->hours_stuck));
  if (payload && t->business_impact) {
    char name[40];
    snprintf(name, sizeof(name), "BUSINESS_IMPACT_%s",
             t->business_impact[0] == 'l'   ? "LOW"
             : t->business_impact[0] == 'm' ? "MEDIUM"
                                            : "HIGH");
    json_object_set_new(payload, "business_impact", json_string(name));
  }
  /* On the workflow's domain, where its domain workers (worker --preset DOMAIN) look, and on the
   * escalated tier, so the event itself travels with the run's priority. */
  tb_publish_req_t req = {.event = "execute-workflow",
                          .payload = payload,
                          .tier = out->tier,
                          .domain = def->domain,
                          .id = msg_id,
                          .workflow_id = out->id,
                          .source = t->source ? t->source : "tierbus-cli"};
  st = payload ? tb_publish_prepare(cfg, cat, &req, msg)
               : tb__fail(TB_ERR_NOMEM, "building the execute-workflow payload");
  json_decref(payload);
  return st;
}
