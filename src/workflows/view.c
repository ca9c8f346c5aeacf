/* The JSON of a workflow run, shared by the command line and the HTTP API (view.h). */
#include "codec/codec.h"
#include "workflows/view.h"

#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "store/escalation.h"
#include "workflows/wf.h"

/* The one list; the CHECK constraint of workflows.status (migration v4) says the same. */
static const char *const statuses[] = {"running",   "waiting", "sleeping",
                                       "completed", "failed",  "cancelled"};

const char *const *tb_wf_statuses(int *n) {
  *n = (int)TB_COUNTOF(statuses);
  return statuses;
}

int tb_wf_status_valid(const char *status) {
  for (size_t i = 0; status != NULL && i < TB_COUNTOF(statuses); i++)
    if (strcmp(statuses[i], status) == 0) return 1;
  return 0;
}

const char *tb_wf_step_name(const char *name, int step) {
  const tb_workflow_def_t *def = tb_wf_find(name);
  if (def != NULL && step >= def->n_steps) return "(end)";
  if (def == NULL || step < 0) return "-";
  return def->steps[step].name;
}

json_t *tb_wf_row_json(const tb_wf_row_t *r) {
  return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:i,s:I,s:o,s:o,s:s,s:s,s:I,s:I,s:I}", "id",
                   r->id, "name", r->name, "domain", r->domain, "tier", r->tier, "status",
                   r->status, "step", r->step, "step_name", tb_wf_step_name(r->name, r->step),
                   "step_state", r->step_state, "attempt", r->attempt, "seq", (json_int_t)r->seq,
                   "error", tb_json_str_or_null(r->error), "data", tb_json_text(r->data),
                   "correlation_id", r->correlation_id, "cause_msg_id", r->cause_msg_id,
                   "created_us", (json_int_t)r->created_us, "updated_us", (json_int_t)r->updated_us,
                   "finished_us", (json_int_t)r->finished_us);
}

json_t *tb_wf_hist_json(const tb_wf_hist_t *h) {
  return json_pack("{s:I,s:i,s:o,s:o,s:i,s:o,s:i,s:o,s:o,s:o,s:o,s:o,s:I,s:I}", "id",
                   (json_int_t)h->id, "step", h->step, "name", tb_json_str_or_null(h->name), "kind",
                   tb_json_str_or_null(h->kind), "attempt", h->attempt, "status",
                   tb_json_str_or_null(h->status), "code", h->code, "detail",
                   tb_json_str_or_null(h->detail), "result", tb_json_text(h->result), "error",
                   tb_json_str_or_null(h->error), "tier", tb_json_str_or_null(h->tier), "msg_id",
                   tb_json_str_or_null(h->msg_id), "started_us", (json_int_t)h->started_us,
                   "ended_us", (json_int_t)h->ended_us);
}

json_t *tb_wf_escalation_json(const tb_wf_escalation_t *e) {
  return json_pack("{s:o,s:o,s:o,s:o,s:o,s:I}", "from_tier", tb_json_str_or_null(e->from_tier),
                   "to_tier", tb_json_str_or_null(e->to_tier), "rule", tb_json_str_or_null(e->rule),
                   "source", tb_json_str_or_null(e->source), "detail",
                   tb_json_str_or_null(e->detail), "at_us", (json_int_t)e->at_us);
}

static int hist_add(void *arg, const tb_wf_hist_t *h) {
  json_t *v = tb_wf_hist_json(h);
  return v == NULL || json_array_append_new(arg, v) != 0;
}

static int esc_add(void *arg, const tb_wf_escalation_t *e) {
  json_t *v = tb_wf_escalation_json(e);
  return v == NULL || json_array_append_new(arg, v) != 0;
}

tb_status tb_wf_decision_view(tb_store_t *st, const char *id, json_t **out) {
  tb_wf_context_t c;
  int found = 0;
  tb_status s = tb_store_wf_context_get(st, id, &c, &found);
  if (s != TB_OK) return s;
  if (!found || c.tier_rule[0] == '\0') {
    *out = json_null();
    return TB_OK;
  }
  json_t *v = json_pack("{s:s,s:o,s:s,s:o}", "rule", c.tier_rule, "requested_tier",
                        c.requested_tier[0] ? json_string(c.requested_tier) : json_null(),
                        "automatic_tier", c.automatic_tier, "deadline_us",
                        c.deadline_us > 0 ? json_integer(c.deadline_us) : json_null());
  if (v == NULL) return tb__fail(TB_ERR_NOMEM, "workflow %s", id);
  *out = v;
  return TB_OK;
}

tb_status tb_wf_run_view(tb_store_t *st, const char *id, json_t **out) {
  tb_wf_row_t row;
  int found = 0;
  tb_status s = tb_store_wf_get(st, id, &row, &found);
  if (s != TB_OK) return s;
  if (!found) return tb__fail(TB_ERR_NOT_FOUND, "no workflow '%s'", id);
  json_t *hist = json_array(), *escs = json_array();
  s = hist && escs ? tb_store_wf_escalations(st, id, esc_add, escs)
                   : tb__fail(TB_ERR_NOMEM, "workflow %s", id);
  if (s == TB_OK) s = tb_store_wf_history(st, id, hist_add, hist);
  json_t *root = NULL, *decision = NULL;
  if (s == TB_OK) s = tb_wf_decision_view(st, id, &decision);
  if (s == TB_OK) {
    root = json_pack("{s:o,s:o,s:O,s:O}", "workflow", tb_wf_row_json(&row), "tier_decision",
                     decision, "escalations", escs, "history", hist);
    if (root == NULL) s = tb__fail(TB_ERR_NOMEM, "workflow %s", id);
  }
  json_decref(hist);
  json_decref(escs);
  tb_store_wf_row_clear(&row);
  if (s == TB_OK) *out = root;
  return s;
}
