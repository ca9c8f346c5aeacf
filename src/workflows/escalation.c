/* Seed 000's escalation rules at work: the pure evaluator, a run's starting context, the
 * stuck-run sweeper pass and `workflows retry`. The rules are config data (tb_config_escalation);
 * every escalation is recorded with its rule (store/escalation.h). */
#include "workflows/escalation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "core/util.h"
#include "store/escalation.h"
#include "store/workflow.h"
#include "workflows/breaker.h"

/* The most rules a skip mask can name. */
#define MASK_BITS 32

/* ---------------------------------------------------------------- the evaluator */

static int rule_matches(const tb_esc_rule_t *r, const tb_esc_input_t *in) {
  if (r->failed_retry && !in->failed_retry) return 0;
  if (r->customer_facing && !in->customer_facing) return 0;
  if (r->business_impact[0] != '\0' &&
      (in->business_impact == NULL || strcmp(r->business_impact, in->business_impact) != 0))
    return 0;
  if (r->stuck_ms > 0 && !(in->stuck_ms > r->stuck_ms)) return 0;
  return 1;
}

tb_esc_result_t tb_wf_escalate(const tb_config_t *cfg, int base, const tb_esc_input_t *in) {
  tb_esc_result_t res = {.tier = base, .rule = NULL, .rule_index = -1};
  int n = 0;
  const tb_esc_rule_t *rules = tb_config_escalation(cfg, &n);
  int top = -1; /* the most urgent tier any rule names: expedite's target */
  for (int i = 0; i < n; i++) {
    int t = tb_config_tier_index(cfg, rules[i].tier);
    if (t < 0) continue;
    if (top < 0 || t < top) top = t;
    if (i < MASK_BITS && (in->skip & (1u << i))) continue;
    /* Strictly more urgent only: a later rule naming the same tier does not take the credit. */
    if (t < res.tier && rule_matches(&rules[i], in)) {
      res.tier = t;
      res.rule = rules[i].name;
      res.rule_index = i;
    }
  }
  if (in->expedite && top >= 0 && top < res.tier) {
    res.tier = top;
    res.rule = "expedite";
    res.rule_index = -1;
  }
  return res;
}

/* ---------------------------------------------------------------- context */

static const char *const impacts[] = {"low", "medium", "high"};

tb_status tb_wf_esc_context(const tb_workflow_def_t *def, const json_t *input,
                            tb_esc_input_t *out) {
  memset(out, 0, sizeof(*out));
  out->customer_facing = def->customer_facing;
  out->business_impact = def->business_impact;
  json_t *v = json_object_get(input, "customer_facing");
  if (v != NULL) {
    if (!json_is_boolean(v))
      return tb__fail(TB_ERR_INVALID, "%s: input.customer_facing must be true or false", def->name);
    out->customer_facing = json_is_true(v);
  }
  v = json_object_get(input, "expedite");
  if (v != NULL) {
    if (!json_is_boolean(v))
      return tb__fail(TB_ERR_INVALID, "%s: input.expedite must be true or false", def->name);
    out->expedite = json_is_true(v);
  }
  v = json_object_get(input, "business_impact");
  if (v != NULL) {
    const char *text = json_string_value(v);
    for (size_t i = 0; text != NULL && i < TB_COUNTOF(impacts); i++)
      if (strcmp(text, impacts[i]) == 0) {
        out->business_impact = impacts[i];
        return TB_OK;
      }
    return tb__fail(TB_ERR_INVALID,
                    "%s: input.business_impact must be \"low\", \"medium\" or \"high\"", def->name);
  }
  return TB_OK;
}

/* The floor priority_floors sets for |def| (name, then alias, then category), or -1. */
static int floor_of(const tb_config_t *cfg, const tb_workflow_def_t *def) {
  const char *f = tb_config_priority_floor(cfg, def->name);
  if (f == NULL && def->alias != NULL) f = tb_config_priority_floor(cfg, def->alias);
  if (f == NULL && def->category != NULL) f = tb_config_priority_floor(cfg, def->category);
  return f ? tb_config_tier_index(cfg, f) : -1;
}

tb_status tb_wf_decide(const tb_config_t *cfg, const tb_workflow_def_t *def, const char *tier,
                       const char *explicit_by, const char *base_by, const json_t *input,
                       const tb_esc_input_t *flags, tb_wf_decision_t *out) {
  memset(out, 0, sizeof(*out));
  out->requested = -1;
  tb_esc_input_t *in = &out->in;
  tb_status s = tb_wf_esc_context(def, input, in);
  if (s != TB_OK) return s;
  if (flags != NULL) {
    in->customer_facing |= flags->customer_facing;
    if (flags->business_impact != NULL && flags->business_impact[0] != '\0')
      in->business_impact = flags->business_impact;
    in->expedite |= flags->expedite;
    in->failed_retry = flags->failed_retry;
    in->stuck_ms = flags->stuck_ms;
  }
  /* The automatic tier: by type, raised by the rules. */
  const char *type_tier = tb_wf_tier(cfg, def);
  int auto_base = tb_config_tier_index(cfg, type_tier);
  const char *auto_by = tb_wf_type_tier(cfg, def) != NULL ? "workflow_tiers"
                        : def->tier != NULL && strcmp(def->tier, type_tier) == 0
                            ? "definition"
                            : "least-urgent-tier";
  if (tier != NULL && tier[0] == '\0') tier = NULL;
  int given = tier ? tb_config_tier_index(cfg, tier) : -1;
  if (tier != NULL && given < 0)
    return tb__fail(TB_ERR_INVALID, "start %s: unknown tier '%s'", def->name, tier);
  if (tier == NULL || explicit_by == NULL) {
    /* Rules only raise from the base: the type's tier, or the caller's (a trigger event's). */
    out->base = tier ? given : auto_base;
    out->assigned_by = tier ? (base_by ? base_by : "base") : auto_by;
    tb_esc_result_t r = tb_wf_escalate(cfg, out->base, in);
    out->tier = out->automatic = r.tier;
    out->escalated_by = r.rule;
    out->rule = r.rule ? r.rule : out->assigned_by;
    return TB_OK;
  }
  /* An explicit tier is honoured both ways: the rules are reported (automatic), not applied. */
  out->automatic = tb_wf_escalate(cfg, auto_base, in).tier;
  out->requested = out->base = out->tier = given;
  out->assigned_by = out->rule = explicit_by;
  if (in->expedite) {
    /* Expedite is a request too, and only raises: the most urgent tier any rule names. */
    tb_esc_input_t only = *in;
    only.skip = ~0u;
    tb_esc_result_t r = tb_wf_escalate(cfg, out->tier, &only);
    if (r.rule != NULL) out->tier = r.tier, out->rule = out->escalated_by = r.rule;
  }
  int floor = floor_of(cfg, def);
  if (floor >= 0 && out->tier > floor) {
    /* The one thing that overrules a caller: a workflow config forbids lowering below this. */
    out->tier = floor;
    out->rule = out->escalated_by = "priority_floors";
  }
  return TB_OK;
}

json_t *tb_wf_args_input(const json_t *args) {
  if (args == NULL) return json_object();
  if (json_is_object(args)) return json_deep_copy(args);
  json_t *in = json_pack("{s:O}", "args", (json_t *)args);
  /* Seed 000 calls a workflow with positional arguments ([emailData, {origin: 'email'}]): the
   * array stays whole under "args", and each object's fields are also the input's own (the
   * first argument that has a field wins), so a step reads input.to from emailData and the
   * escalation context (customer_facing, business_impact) is found where the seed puts it. */
  size_t i;
  json_t *arg;
  json_array_foreach(args, i, arg) {
    const char *key;
    json_t *v;
    json_object_foreach(arg, key, v) {
      if (in != NULL && json_object_get(in, key) == NULL && json_object_set(in, key, v) != 0) {
        json_decref(in);
        in = NULL;
      }
    }
  }
  return in;
}

/* "customer-facing, impact high, failed retry, stuck 7.0 h, expedite", or "no context". */
static void describe(const tb_esc_input_t *in, char *buf, size_t cap) {
  size_t off = 0;
  buf[0] = '\0';
#define ADD(...)                                                                                   \
  do {                                                                                             \
    if (off < cap) off += (size_t)snprintf(buf + off, cap - off, "%s", off ? ", " : "");           \
    if (off < cap) off += (size_t)snprintf(buf + off, cap - off, __VA_ARGS__);                     \
  } while (0)
  if (in->customer_facing) ADD("customer-facing");
  if (in->business_impact && in->business_impact[0]) ADD("impact %s", in->business_impact);
  if (in->failed_retry) ADD("failed retry");
  if (in->stuck_ms > 0) ADD("stuck %.1f h", (double)in->stuck_ms / 3.6e6);
  if (in->expedite) ADD("expedite");
#undef ADD
  if (buf[0] == '\0') snprintf(buf, cap, "no context");
}

tb_status tb_wf_esc_record(tb_store_t *store, const char *id, const char *from, const char *to,
                           const char *rule, const char *source, const tb_esc_input_t *in,
                           int *added) {
  char detail[256];
  describe(in, detail, sizeof(detail));
  tb_wf_escalation_t e = {.workflow_id = id,
                          .from_tier = from,
                          .to_tier = to,
                          .rule = rule,
                          .source = source,
                          .detail = detail};
  return tb_store_wf_escalation_add(store, &e, added);
}

/* ---------------------------------------------------------------- re-sending a continuation */

/* Re-sends run |row|'s current continuation on row->tier (already raised). A pending outbox row
 * (a wait's timeout, a sleep's timer, a retry delay) is replaced by one on the new tier due at
 * the same time. One already published is sent again now under the same message id: whichever
 * copy a worker handles first runs the step, and the other finds it processed. */
static tb_status republish(const tb_handler_ctx_t *hctx, const tb_wf_row_t *row) {
  char id[TB_ID_MAX + 32];
  tb__wf_cont_id(row->id, row->seq, id, sizeof(id));
  int64_t due = 0;
  int pending = 0;
  tb_status s = tb_store_outbox_due_of(hctx->store, id, &due, &pending);
  if (s == TB_OK && pending) s = tb_store_outbox_cancel(hctx->store, id, NULL);
  if (s != TB_OK) return s;
  /* The history says why the step ran: a wait's timeout, a sleep's timer, or the escalation. */
  const char *cause = strcmp(row->step_state, "waiting") == 0    ? "timeout"
                      : strcmp(row->step_state, "sleeping") == 0 ? "timer"
                                                                 : "escalated";
  return tb__wf_continue(hctx, row, cause, pending ? due : 0);
}

/* ---------------------------------------------------------------- the sweeper pass */

/* Runs per pass: a backlog of stuck runs is worked off over several passes. */
#define SWEEP_BATCH 256

/* Escalates one stuck run inside the open transaction; *done = 1 when it was raised. */
static tb_status sweep_one(const tb_handler_ctx_t *hctx, const tb_wf_stuck_t *r, uint32_t skip,
                           int64_t now_us, int *done) {
  *done = 0;
  int n_rules = 0, cur = tb_config_tier_index(hctx->cfg, r->tier);
  const tb_esc_rule_t *rules = tb_config_escalation(hctx->cfg, &n_rules);
  if (cur < 0) return TB_OK; /* a tier this config lacks: nothing to rank it against */
  for (int i = 0; i < n_rules && i < MASK_BITS; i++) {
    if (skip & (1u << i)) continue;
    int fired = 0;
    tb_status s = tb_store_wf_escalation_fired(hctx->store, r->id, rules[i].name, &fired);
    if (s != TB_OK) return s;
    if (fired) skip |= 1u << i;
  }
  tb_esc_input_t in = {.customer_facing = r->customer_facing,
                       .business_impact = r->business_impact,
                       .stuck_ms = (now_us - r->updated_us) / 1000,
                       .skip = skip};
  tb_esc_result_t res = tb_wf_escalate(hctx->cfg, cur, &in);
  if (res.rule == NULL) return TB_OK;
  const char *to = hctx->cfg->tiers[res.tier].name;
  int added = 0;
  tb_status s = tb_wf_esc_record(hctx->store, r->id, r->tier, to, res.rule, "sweeper", &in, &added);
  if (s != TB_OK || !added) return s; /* another sweeper fired this threshold first */
  tb_wf_row_t row;
  int found = 0;
  s = tb_store_wf_get(hctx->store, r->id, &row, &found);
  if (s != TB_OK || !found) return s;
  snprintf(row.tier, sizeof(row.tier), "%s", to);
  s = tb_store_wf_set_tier(hctx->store, r->id, to);
  if (s == TB_OK) s = republish(hctx, &row);
  tb_store_wf_row_clear(&row);
  if (s == TB_OK) *done = 1;
  return s;
}

tb_status tb_wf_sweep(tb_store_t *store, const tb_config_t *cfg, const tb_catalogue_t *cat,
                      int64_t now_us, int *escalated) {
  if (escalated != NULL) *escalated = 0;
  int n_rules = 0;
  const tb_esc_rule_t *rules = tb_config_escalation(cfg, &n_rules);
  int64_t min_stuck_ms = 0;
  int top = cfg->n_tiers; /* the most urgent tier a stuck rule names */
  uint32_t skip = 0;      /* the sweeper escalates for time stuck: rules without `stuck` stay out */
  for (int i = 0; i < n_rules && i < MASK_BITS; i++) {
    int t = tb_config_tier_index(cfg, rules[i].tier);
    if (rules[i].stuck_ms <= 0 || t < 0) {
      skip |= 1u << i;
      continue;
    }
    if (min_stuck_ms == 0 || rules[i].stuck_ms < min_stuck_ms) min_stuck_ms = rules[i].stuck_ms;
    if (t < top) top = t;
  }
  if (min_stuck_ms == 0) return TB_OK;
  /* Runs already at or above that tier cannot be raised: leaving them out of the query keeps a
   * pile of them from filling every pass's batch. */
  json_t *unraisable = json_array();
  for (int t = 0; t <= top && unraisable != NULL; t++)
    json_array_append_new(unraisable, json_string(cfg->tiers[t].name));
  char *skip_tiers = unraisable ? json_dumps(unraisable, JSON_COMPACT) : NULL;
  json_decref(unraisable);
  if (skip_tiers == NULL) return tb__fail(TB_ERR_NOMEM, "sweeper: tier list");

  tb_status s = tb_store_begin(store);
  if (s != TB_OK) {
    free(skip_tiers);
    return s;
  }
  tb_wf_stuck_t *rows = NULL;
  int n = 0, count = 0, emitted = 0;
  s = tb_store_wf_stuck(store, now_us - min_stuck_ms * 1000, skip_tiers, SWEEP_BATCH, &rows, &n);
  free(skip_tiers);
  tb_handler_ctx_t hctx = {.store = store, .cfg = cfg, .cat = cat, .emitted = &emitted};
  for (int i = 0; i < n && s == TB_OK; i++) {
    int done = 0;
    s = sweep_one(&hctx, &rows[i], skip, now_us, &done);
    count += done;
  }
  free(rows);
  if (s == TB_OK) s = tb_store_commit(store);
  if (s != TB_OK) {
    tb_store_rollback(store);
    return s;
  }
  if (escalated != NULL) *escalated = count;
  return TB_OK;
}

/* ---------------------------------------------------------------- run timeouts */

/* |ms| as "2m", "90s" or "1500ms": the largest unit that divides it. */
static void fmt_duration(int64_t ms, char *buf, size_t cap) {
  if (ms > 0 && ms % 3600000 == 0)
    snprintf(buf, cap, "%lldh", (long long)(ms / 3600000));
  else if (ms > 0 && ms % 60000 == 0)
    snprintf(buf, cap, "%lldm", (long long)(ms / 60000));
  else if (ms > 0 && ms % 1000 == 0)
    snprintf(buf, cap, "%llds", (long long)(ms / 1000));
  else
    snprintf(buf, cap, "%lldms", (long long)ms);
}

/* Seed 000's "alert on delays": a run past its tier's timeout raises "run-timeout". */
static tb_status delay_alert(const tb_handler_ctx_t *hctx, const tb_wf_overdue_t *r,
                             const char *action, const char *detail) {
  char key[TB_ID_MAX + 16];
  snprintf(key, sizeof(key), "%s:%s", r->id, action);
  json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:I}", "workflow_id", r->id, "tier", r->tier, "action",
                        action, "detail", detail, "deadline_us", (json_int_t)r->deadline_us);
  tb_status s = f ? tb_wf_alert(hctx, "run-timeout", key, f) : tb__fail(TB_ERR_NOMEM, "alert");
  json_decref(f);
  return s;
}

/* Escalates or fails one overdue run inside the open transaction; *what = 1 escalated, 2 failed,
 * 0 nothing (it finished or moved meanwhile). */
static tb_status deadline_one(const tb_handler_ctx_t *hctx, const tb_wf_overdue_t *r,
                              int64_t now_us, int *what) {
  *what = 0;
  const tb_config_t *cfg = hctx->cfg;
  int cur = tb_config_tier_index(cfg, r->tier);
  int fired = 0;
  tb_status s = tb_store_wf_escalation_fired(hctx->store, r->id, "run-timeout", &fired);
  if (s != TB_OK) return s;
  char timeout[32], detail[256];
  int64_t ms = cur >= 0 ? cfg->tiers[cur].timeout_ms : 0;
  fmt_duration(ms, timeout, sizeof(timeout));
  int escalate = strcmp(cfg->run_timeout, "escalate") == 0 && !fired && cur > 0;
  if (!escalate) {
    snprintf(detail, sizeof(detail),
             "run timed out: past its tier's timeout (%s %s)%s, %.1f s over its deadline", r->tier,
             timeout, fired ? " after an escalation for it" : "",
             (double)(now_us - r->deadline_us) / 1e6);
    s = tb__wf_fail(hctx, r->id, detail);
    if (s == TB_ERR_INVALID || s == TB_ERR_NOT_FOUND) return TB_OK; /* finished meanwhile */
    if (s == TB_OK) s = delay_alert(hctx, r, "failed", detail);
    if (s == TB_OK) *what = 2;
    return s;
  }
  const char *to = cfg->tiers[cur - 1].name;
  tb_esc_input_t in = {.stuck_ms = (now_us - r->deadline_us) / 1000};
  int added = 0;
  s = tb_wf_esc_record(hctx->store, r->id, r->tier, to, "run-timeout", "sweeper", &in, &added);
  if (s != TB_OK || !added) return s; /* another worker's sweeper acted first */
  tb_wf_row_t row;
  int found = 0;
  s = tb_store_wf_get(hctx->store, r->id, &row, &found);
  if (s != TB_OK || !found) return s;
  snprintf(detail, sizeof(detail), "past its tier's timeout (%s %s): %s -> %s", r->tier, timeout,
           r->tier, to);
  snprintf(row.tier, sizeof(row.tier), "%s", to);
  s = tb_store_wf_set_tier(hctx->store, r->id, to);
  if (s == TB_OK)
    s = tb_store_wf_set_deadline(hctx->store, r->id,
                                 now_us + cfg->tiers[cur - 1].timeout_ms * 1000);
  tb_wf_hist_t h = {.step = row.step,
                    .name = "run-timeout",
                    .kind = "deadline",
                    .attempt = 1,
                    .status = "escalated",
                    .detail = detail,
                    .tier = to,
                    .ended_us = now_us};
  if (s == TB_OK) s = tb_store_wf_hist_add(hctx->store, r->id, &h, NULL);
  if (s == TB_OK) s = republish(hctx, &row);
  if (s == TB_OK) s = delay_alert(hctx, r, "escalated", detail);
  tb_store_wf_row_clear(&row);
  if (s == TB_OK) *what = 1;
  return s;
}

tb_status tb_wf_sweep_deadlines(tb_store_t *store, const tb_config_t *cfg,
                                const tb_catalogue_t *cat, int64_t now_us, int *escalated,
                                int *failed) {
  if (escalated != NULL) *escalated = 0;
  if (failed != NULL) *failed = 0;
  if (strcmp(cfg->run_timeout, "off") == 0) return TB_OK;
  tb_status s = tb_store_begin(store);
  if (s != TB_OK) return s;
  tb_wf_overdue_t *rows = NULL;
  int n = 0, n_esc = 0, n_fail = 0, emitted = 0;
  s = tb_store_wf_overdue(store, now_us, SWEEP_BATCH, &rows, &n);
  tb_handler_ctx_t hctx = {.store = store, .cfg = cfg, .cat = cat, .emitted = &emitted};
  for (int i = 0; i < n && s == TB_OK; i++) {
    int what = 0;
    s = deadline_one(&hctx, &rows[i], now_us, &what);
    n_esc += what == 1;
    n_fail += what == 2;
  }
  free(rows);
  if (s == TB_OK) s = tb_store_commit(store);
  if (s != TB_OK) {
    tb_store_rollback(store);
    return s;
  }
  if (escalated != NULL) *escalated = n_esc;
  if (failed != NULL) *failed = n_fail;
  return TB_OK;
}

/* ---------------------------------------------------------------- retry */

tb_status tb_wf_retry(tb_store_t *store, const tb_config_t *cfg, const tb_catalogue_t *cat,
                      const char *id, const char *tier, tb_wf_retry_result_t *out) {
  memset(out, 0, sizeof(*out));
  int want = -1;
  if (tier != NULL && (want = tb_config_tier_index(cfg, tier)) < 0)
    return tb__fail(TB_ERR_INVALID, "unknown tier '%s'", tier);
  tb_status s = tb_store_begin(store);
  if (s != TB_OK) return s;
  tb_wf_row_t row;
  int found = 0, have_ctx = 0, emitted = 0;
  tb_wf_context_t c;
  memset(&c, 0, sizeof(c));
  s = tb_store_wf_get(store, id, &row, &found);
  if (s == TB_OK && !found) s = tb__fail(TB_ERR_NOT_FOUND, "no workflow '%s'", id);
  if (s == TB_OK && strcmp(row.status, "failed") != 0)
    s = tb__fail(TB_ERR_INVALID, "workflow '%s' is %s, not failed: only a failed run is retried",
                 id, row.status);
  const tb_workflow_def_t *def = s == TB_OK ? tb_wf_find(row.name) : NULL;
  if (s == TB_OK && def == NULL)
    s = tb__fail(TB_ERR_INVALID, "workflow '%s': definition '%s' is not registered", id, row.name);
  if (s == TB_OK) s = tb_store_wf_context_get(store, id, &c, &have_ctx);
  if (s == TB_OK) {
    int64_t now = tb_wall_us();
    int cur = tb_config_tier_index(cfg, row.tier);
    if (cur < 0) cur = cfg->n_tiers - 1;
    tb_esc_input_t in = {.failed_retry = 1,
                         .customer_facing = c.customer_facing,
                         .business_impact = c.business_impact,
                         .stuck_ms = now > row.updated_us ? (now - row.updated_us) / 1000 : 0};
    int to = cur;
    const char *rule = NULL;
    if (want >= 0) {
      to = want;
      rule = want != cur ? "priority" : NULL;
    } else {
      tb_esc_result_t res = tb_wf_escalate(cfg, cur, &in);
      to = res.tier;
      rule = res.rule;
    }
    out->failures = c.retries + 1;
    snprintf(out->from_tier, sizeof(out->from_tier), "%s", row.tier);
    snprintf(out->to_tier, sizeof(out->to_tier), "%s", cfg->tiers[to].name);
    snprintf(out->rule, sizeof(out->rule), "%s", rule ? rule : "");
    snprintf(out->step, sizeof(out->step), "%s",
             row.step < def->n_steps ? def->steps[row.step].name : "(end)");
    if (rule != NULL)
      s = tb_wf_esc_record(store, id, row.tier, out->to_tier, rule, "retry", &in, NULL);
    char detail[512];
    snprintf(detail, sizeof(detail), "retried from step %s on %s (failure %d; last error: %s)",
             out->step, out->to_tier, out->failures, row.error ? row.error : "none");
    snprintf(row.tier, sizeof(row.tier), "%s", out->to_tier);
    snprintf(row.status, sizeof(row.status), "running");
    snprintf(row.step_state, sizeof(row.step_state), "ready");
    free(row.error);
    row.error = NULL;
    row.attempt = 1;
    row.finished_us = 0;
    row.hist_id = 0;
    row.seq++; /* anything still in flight for the failed attempt is stale */
    tb_wf_hist_t h = {.step = row.step,
                      .name = "retry",
                      .kind = "retry",
                      .attempt = out->failures,
                      .status = "ok",
                      .detail = detail,
                      .tier = out->to_tier,
                      .ended_us = now};
    if (s == TB_OK) s = tb_store_wf_update(store, &row);
    if (s == TB_OK) s = tb_store_wf_set_tier(store, id, row.tier);
    if (s == TB_OK) s = tb_store_wf_hist_add(store, id, &h, NULL);
    if (s == TB_OK) s = tb_store_wf_context_retried(store, id);
    /* A retry is a new try: its tier's timeout bounds it afresh (run_timeout). */
    if (s == TB_OK) s = tb_store_wf_set_deadline(store, id, now + cfg->tiers[to].timeout_ms * 1000);
    tb_handler_ctx_t hctx = {.store = store, .cfg = cfg, .cat = cat, .emitted = &emitted};
    if (s == TB_OK) s = tb__wf_continue(&hctx, &row, "retry", 0);
  }
  if (found) tb_store_wf_row_clear(&row);
  if (s == TB_OK) return tb_store_commit(store);
  tb_store_rollback(store);
  return s;
}
