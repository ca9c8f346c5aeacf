/* The HTTP API's workflow routes (seed 000, seed 001, seed 004): start a run with an explicit or
 * an automatic priority, list runs a page at a time, read one with its step history and
 * escalations, cancel it, and retry a failed job by id. The decisions are the workflow layer's
 * (workflows/trigger.h, view.h, escalation.h); the CLI calls the same functions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "http/internal.h"
#include "store/dlq.h"
#include "workflows/escalation.h"
#include "workflows/trigger.h"
#include "workflows/view.h"
#include "workflows/wf.h"

#define LIST_DEFAULT 20
#define LIST_MAX 500

/* ---------------------------------------------------------------- execute */

/* POST /api/execute-workflow[-with-priority] in seed 000's shape:
 * {workflowType, args?, priority (with-priority only, required), expedite?, id?, taskQueue?,
 * dryRun?, context?: {isCustomerFacing?, isFailedRetry?, hoursStuck?, businessImpact?}}.
 * workflowType may be seed 000's camelCase name, priority and taskQueue seed 000's task queues
 * in any case. With dryRun: 200 with the decision (tier, the rule that chose it, what was
 * requested, what the rules alone give) and nothing published. Otherwise publishes the run's
 * execute-workflow event on the tier chosen for it and answers with the run id, the tier and the
 * rule that chose it: 201, or 200 with duplicate:true when that id was triggered already (no
 * second run starts). */
static void execute(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp,
                    int with_priority) {
  json_t *body = tb__http_body_object(req, resp, 0);
  if (body == NULL) return;
  tb_wf_trigger_t t = {.customer_facing = -1, .source = "tierbus-http"};
  json_t *args = NULL, *context = NULL;
  int dry_run = 0;
  const tb_http_field_t fields[] = {
      {"workflowType", TB_F_STRING, 1, &t.workflow},
      {"args", TB_F_ARRAY_OR_OBJECT, 0, &args},
      {"expedite", TB_F_BOOL, 0, &t.expedite},
      {"id", TB_F_STRING, 0, &t.id},
      {"context", TB_F_OBJECT, 0, &context},
      {"taskQueue", TB_F_STRING, 0, &t.queue},
      {"dryRun", TB_F_BOOL, 0, &dry_run},
      {"priority", TB_F_STRING, 1, &t.priority}, /* last: left out without priority */
  };
  int n_fields = (int)(sizeof(fields) / sizeof(fields[0])) - (with_priority ? 0 : 1);
  if (tb__http_fields(resp, body, NULL, fields, n_fields) != 0) goto done;
  int customer_facing = -1;
  const tb_http_field_t ctx_fields[] = {
      {"isCustomerFacing", TB_F_BOOL, 0, &customer_facing},
      {"isFailedRetry", TB_F_BOOL, 0, &t.failed_retry},
      {"hoursStuck", TB_F_NUMBER, 0, &t.hours_stuck},
      {"businessImpact", TB_F_STRING, 0, &t.business_impact},
  };
  if (context != NULL && tb__http_fields(resp, context, "context", ctx_fields, 4) != 0) goto done;
  t.customer_facing = customer_facing;
  if (t.hours_stuck < 0 || t.hours_stuck > 1e6) {
    tb__http_error(resp, 400, "context.hoursStuck", "'context.hoursStuck' must be 0 to 1e6");
    goto done;
  }
  t.input = args;
  tb_wf_triggered_t res;
  tb_prepared_t msg;
  tb_status st = tb_wf_trigger_prepare(h->o.cfg, h->o.cat, &t, &res, &msg);
  if (st != TB_OK) {
    const char *field = res.field;
    /* The context's business impact is checked with the input's names; say where it came from. */
    if (t.business_impact != NULL && strstr(tb_errdetail(), "business impact") == tb_errdetail())
      field = "context.businessImpact";
    tb__http_error(resp, 400, field, "%s", tb_errdetail());
    goto done;
  }
  if (dry_run) {
    /* Seed 000's "logging to track priority decisions", asked before anything runs: the same
     * decision a real call makes (tb_wf_trigger_prepare), and nothing is published. */
    const tb_esc_input_t *c = &res.context;
    tb__http_json(
        resp, 200,
        json_pack(
            "{s:b,s:s,s:s,s:s,s:s,s:o,s:s,s:{s:s,s:s},s:o,s:{s:b,s:o,s:b,s:b},s:s}", "dryRun", 1,
            "runId", res.id, "workflowType", res.def->name, "tier", res.tier, "rule", res.rule,
            "requestedTier", res.requested_tier ? json_string(res.requested_tier) : json_null(),
            "automaticTier", res.automatic_tier, "assignment", "tier", res.base_tier, "rule",
            res.assigned_by, "escalatedBy",
            res.escalated_by ? json_string(res.escalated_by) : json_null(), "context",
            "isCustomerFacing", c->customer_facing, "businessImpact",
            c->business_impact && c->business_impact[0] ? json_string(c->business_impact)
                                                        : json_null(),
            "isFailedRetry", c->failed_retry, "expedite", c->expedite, "subject", msg.subject));
    tb_prepared_free(&msg);
    goto done;
  }
  uint64_t seq = 0;
  int dup = 0;
  st = h->o.bus ? tb_publish_send(h->o.bus, &msg, &seq, &dup)
                : tb__fail(TB_ERR_UNAVAILABLE, "no NATS connection");
  if (st != TB_OK) {
    tb__http_fail(resp, st, NULL, "publishing execute-workflow");
  } else {
    char url[TB_ID_MAX + 32];
    snprintf(url, sizeof(url), "/api/workflows/%s", res.id);
    json_t *esc = res.escalated_by ? json_pack("{s:s,s:s,s:s}", "rule", res.escalated_by, "from",
                                               res.base_tier, "to", res.tier)
                                   : json_null();
    json_t *answer =
        json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s},s:o,s:s,s:I,s:b,s:s}", "runId", res.id,
                  "workflowType", res.def->name, "tier", res.tier, "rule", res.rule, "assignment",
                  "tier", res.base_tier, "rule", res.assigned_by, "escalation", esc, "subject",
                  msg.subject, "stream_seq", (json_int_t)seq, "duplicate", dup, "status_url", url);
    if (answer != NULL) {
      json_object_set_new(answer, "requestedTier",
                          res.requested_tier ? json_string(res.requested_tier) : json_null());
      json_object_set_new(answer, "automaticTier", json_string(res.automatic_tier));
    }
    tb__http_json(resp, dup ? 200 : 201, answer);
  }
  tb_prepared_free(&msg);
done:
  json_decref(body);
}

void tb__http_post_execute(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  execute(h, req, resp, 0);
}

void tb__http_post_execute_prio(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  execute(h, req, resp, 1);
}

/* ---------------------------------------------------------------- list, get */

typedef struct page {
  json_t *rows;
  int want;        /* rows to return; one more is read to know whether a next page exists */
  int64_t last_no; /* the last returned row's number */
  int more;
} page_t;

static int add_run(void *arg, const tb_wf_row_t *r) {
  page_t *p = arg;
  if ((int)json_array_size(p->rows) == p->want) {
    p->more = 1;
    return 1;
  }
  p->last_no = r->no;
  json_t *v = tb_wf_row_json(r);
  return v == NULL || json_array_append_new(p->rows, v) != 0;
}

/* GET /api/workflows?status=&type=&limit=&cursor=: runs newest first, a page of |limit| (default
 * 20, at most 500), with next_cursor (null on the last page) to pass back as cursor. */
void tb__http_get_workflows(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  static const char *const allowed[] = {"status", "type", "limit", "cursor", NULL};
  if (tb__http_args_check(req, resp, allowed) != 0) return;
  const char *status = tb__http_arg(req, "status"), *type = tb__http_arg(req, "type");
  const char *cursor = tb__http_arg(req, "cursor");
  int64_t limit = 0, before = 0;
  if (tb__http_arg_int(req, resp, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit) != 0) return;
  if (status != NULL && !tb_wf_status_valid(status)) {
    tb__http_error(resp, 400, "status",
                   "status: unknown status '%.64s' (running, waiting, sleeping, completed, "
                   "failed, cancelled)",
                   status);
    return;
  }
  if (cursor != NULL) {
    char text[32];
    char *end = NULL;
    if (tb__http_cursor_read(resp, cursor, "wf:", text, sizeof(text)) != 0) return;
    before = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || before <= 0) {
      tb__http_error(resp, 400, "cursor", "cursor: not a cursor this endpoint gave out");
      return;
    }
  }
  page_t p = {.rows = json_array(), .want = (int)limit};
  pthread_mutex_lock(&h->store_mu);
  tb_status st = tb_store_wf_list(h->o.store, status, type, before, (int)limit + 1, add_run, &p);
  pthread_mutex_unlock(&h->store_mu);
  if (st != TB_OK) {
    json_decref(p.rows);
    tb__http_fail(resp, st, NULL, "listing workflows");
    return;
  }
  json_t *next = json_null();
  if (p.more) {
    char text[32], cur[64];
    snprintf(text, sizeof(text), "wf:%lld", (long long)p.last_no);
    tb__http_cursor_make(text, cur, sizeof(cur));
    next = json_string(cur);
  }
  tb__http_json(resp, 200, json_pack("{s:o,s:o}", "workflows", p.rows, "next_cursor", next));
}

/* GET /api/workflows/{id}: {workflow, escalations, history} (workflows/view.h), 404 for none. */
void tb__http_get_workflow(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  static const char *const allowed[] = {NULL};
  if (tb__http_args_check(req, resp, allowed) != 0) return;
  json_t *view = NULL;
  pthread_mutex_lock(&h->store_mu);
  tb_status st = tb_wf_run_view(h->o.store, req->params[0], &view);
  pthread_mutex_unlock(&h->store_mu);
  if (st != TB_OK)
    tb__http_fail(resp, st, NULL, "workflow");
  else
    tb__http_json(resp, 200, view);
}

/* ---------------------------------------------------------------- cancel, retry */

/* POST /api/workflows/{id}/cancel {reason?}: 200 with where the run stood, 404 for no run, 409
 * for a run already finished (the detail names its status). */
void tb__http_post_workflow_cancel(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  json_t *body = tb__http_body_object(req, resp, 1);
  if (body == NULL) return;
  const char *reason = NULL;
  const tb_http_field_t fields[] = {{"reason", TB_F_STRING, 0, &reason}};
  if (tb__http_fields(resp, body, NULL, fields, 1) != 0) {
    json_decref(body);
    return;
  }
  const char *id = req->params[0];
  tb_wf_row_t row;
  int found = 0;
  pthread_mutex_lock(&h->store_mu);
  /* Read first only to say where the run stood; the runtime decides under its transaction. */
  tb_status st = tb_store_wf_get(h->o.store, id, &row, &found);
  if (st == TB_OK && !found) st = tb__fail(TB_ERR_NOT_FOUND, "no workflow '%s'", id);
  if (st == TB_OK) st = tb_wf_cancel(h->o.store, id, reason ? reason : "cancelled over HTTP");
  pthread_mutex_unlock(&h->store_mu);
  if (st == TB_OK)
    tb__http_json(resp, 200,
                  json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "id", id, "status", "cancelled",
                            "workflowType", row.name, "was", row.status, "step",
                            tb_wf_step_name(row.name, row.step), "attempt", row.attempt));
  else if (st == TB_ERR_INVALID)
    tb__http_error(resp, 409, NULL, "cannot cancel: %s", tb_errdetail());
  else
    tb__http_fail(resp, st, NULL, "cancel");
  if (found) tb_store_wf_row_clear(&row);
  json_decref(body);
}

/* POST /api/jobs/{id}/retry {priority?}: seed 001's "failures are persisted and can be retried by
 * hand", for what tierbus calls a job: a failed workflow run (retried from its failed step, its
 * tier escalated as a failed retry unless |priority| says, as `tierbus workflows retry`), or a
 * dead-lettered event, by message id or number (replayed, as `tierbus dlq replay`). 202: the
 * retry is queued (a worker's relay sends the step; the replayed event goes to its stream). 404
 * when neither has that id, 409 for a run that has not failed or an entry that cannot apply
 * unchanged. */
void tb__http_post_job_retry(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  json_t *body = tb__http_body_object(req, resp, 1);
  if (body == NULL) return;
  const char *priority = NULL;
  const tb_http_field_t fields[] = {{"priority", TB_F_STRING, 0, &priority}};
  if (tb__http_fields(resp, body, NULL, fields, 1) != 0) goto done;
  if (priority != NULL && tb_config_tier_index(h->o.cfg, priority) < 0) {
    tb__http_error(resp, 400, "priority", "priority: unknown tier '%.64s'", priority);
    goto done;
  }
  const char *id = req->params[0];
  tb_wf_row_t row;
  int found = 0;
  pthread_mutex_lock(&h->store_mu);
  tb_status st = tb_store_wf_get(h->o.store, id, &row, &found);
  tb_wf_retry_result_t res;
  if (st == TB_OK && found) st = tb_wf_retry(h->o.store, h->o.cfg, h->o.cat, id, priority, &res);
  pthread_mutex_unlock(&h->store_mu);
  if (found) tb_store_wf_row_clear(&row);
  if (st == TB_ERR_INVALID && found) { /* the detail names the run's status */
    tb__http_error(resp, 409, NULL, "cannot retry: %s", tb_errdetail());
  } else if (st != TB_OK) {
    tb__http_fail(resp, st, NULL, "retry");
  } else if (found) {
    json_t *v =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "id", id, "kind", "workflow", "from_tier",
                  res.from_tier, "tier", res.to_tier, "step", res.step, "failures", res.failures);
    if (v != NULL)
      json_object_set_new(v, "rule", res.rule[0] ? json_string(res.rule) : json_null());
    tb__http_json(resp, 202, v);
  } else {
    char why[300];
    snprintf(why, sizeof(why), "no workflow run and no dead letter '%.200s'", id);
    tb__http_dlq_replay(h, id, priority, why, resp);
  }
done:
  json_decref(body);
}
