/* The ops domain: small general-purpose workflows, seed 000's five workflow types, and the shared
 * activities (seed 004's send_email, log_event). Operators trigger them by hand (`tierbus
 * trigger`), and they are the simplest way to see each step kind at work: a command with retries
 * and a timeout, a wait for an event, a durable sleep. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "store/store.h"
#include "workflows/wf.h"

/* ---------------------------------------------------------------- activities */

/* Appends |entry| (stolen) to the activity log as |event_type|, keyed by the run, under the
 * message id "<run id>:<suffix>" so that a retried step writes its line once. */
static tb_status log_activity(tb_wf_run_t *run, const char *event_type, const char *suffix,
                              json_t *entry) {
  char *json = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
  json_decref(entry);
  if (json == NULL) return tb__fail(TB_ERR_NOMEM, "%s: activity entry", event_type);
  char msg_id[TB_ID_MAX + 80];
  snprintf(msg_id, sizeof(msg_id), "%s:%s", run->id, suffix);
  tb_activity_t a = {.msg_id = msg_id,
                     .event_type = event_type,
                     .tier = run->tier,
                     .key = run->id,
                     .payload_json = json};
  tb_status s = tb_store_activity(run->ctx->store, &a);
  free(json);
  return s;
}

/* log_event: appends "<workflow> <step>: <input.message>" to the activity log. */
static tb_status log_event(tb_wf_run_t *run, json_t **result) {
  const char *text = tb_wf_input_str(run, "message");
  char suffix[80];
  snprintf(suffix, sizeof(suffix), "%s:%d", run->step, run->attempt);
  *result = NULL;
  return log_activity(run, "workflow.log_event", suffix,
                      json_pack("{s:s, s:s, s:s}", "workflow", run->name, "step", run->step,
                                "message", text ? text : ""));
}

/* The email command's input: to, template and subject from the workflow input. */
static tb_status email_input(tb_wf_run_t *run, json_t **input) {
  const char *to = tb_wf_input_str(run, "to");
  if (to == NULL) return tb__fail(TB_ERR_INVALID, "send-email: input has no 'to' address");
  const char *tpl = tb_wf_input_str(run, "template");
  const char *subject = tb_wf_input_str(run, "subject");
  *input = json_pack("{s:s, s:s}", "to", to, "template", tpl ? tpl : "notification");
  if (*input != NULL && subject != NULL)
    json_object_set_new(*input, "subject", json_string(subject));
  return *input ? TB_OK : tb__fail(TB_ERR_NOMEM, "send-email input");
}

/* The sms.send command's input: input.to and input.message. */
static tb_status sms_input(tb_wf_run_t *run, json_t **input) {
  const char *to = tb_wf_input_str(run, "to");
  const char *text = tb_wf_input_str(run, "message");
  if (to == NULL) return tb__fail(TB_ERR_INVALID, "send-sms: input has no 'to' number");
  if (text == NULL) return tb__fail(TB_ERR_INVALID, "send-sms: input has no 'message'");
  *input = json_pack("{s:s, s:s}", "to", to, "message", text);
  return *input ? TB_OK : tb__fail(TB_ERR_NOMEM, "send-sms input");
}

/* The analytics.update command's input: input.metric, input.value (a number) and
 * input.dimensions, as given. */
static tb_status analytics_input(tb_wf_run_t *run, json_t **input) {
  const char *metric = tb_wf_input_str(run, "metric");
  if (metric == NULL) return tb__fail(TB_ERR_INVALID, "update-analytics: input has no 'metric'");
  json_t *in = json_object_get(run->data, "input");
  *input = json_pack("{s:s}", "metric", metric);
  if (*input == NULL) return tb__fail(TB_ERR_NOMEM, "update-analytics input");
  const char *keys[] = {"value", "dimensions"};
  for (size_t i = 0; i < TB_COUNTOF(keys); i++) {
    json_t *v = json_object_get(in, keys[i]);
    if (v != NULL) json_object_set(*input, keys[i], v);
  }
  return TB_OK;
}

/* The correlation key of the wait: input.enrichment_id. */
static tb_status enrichment_key(tb_wf_run_t *run, char *key, size_t cap) {
  const char *id = tb_wf_input_str(run, "enrichment_id");
  if (id == NULL) return tb__fail(TB_ERR_INVALID, "await-enrichment: input has no enrichment_id");
  snprintf(key, cap, "%s", id);
  return TB_OK;
}

/* onError of every ops workflow: the failure goes to the activity log, where operators look. */
static tb_status log_failure(tb_wf_run_t *run, const char *error) {
  return log_activity(run, "workflow.failed", "on-error",
                      json_pack("{s:s, s:s}", "workflow", run->name, "error", error));
}

/* ---------------------------------------------------------------- workflows */

/* Retries suited to an interactive command: quick, few, on the seed's transient codes. */
#define QUICK_RETRY                                                                                \
  {                                                                                                \
    .max_attempts = 3, .backoff = TB_BACKOFF_EXPONENTIAL, .initial_delay_ms = 200,                 \
    .max_delay_ms = 2000, .retry_on = {429, 500, 502, 503, 504}, .n_retry_on = 5                   \
  }

static const tb_step_def_t send_email_steps[] = {
    {.name = "send",
     .kind = TB_STEP_COMMAND,
     .description = "email.send with input.to, input.template, input.subject",
     .timeout = "30s",
     .timeout_field = "timeout",
     .retry = QUICK_RETRY,
     .service = "email",
     .action = "send",
     .input = email_input},
    {.name = "log", .kind = TB_STEP_RUN, .description = "log_event", .run = log_event},
};

static const tb_workflow_def_t send_email = {
    .name = "ops.send-email",
    .domain = "ops",
    .tier = "high", /* seed 000 places email sending at high */
    .category = "email-sending",
    .description = "Send one email through the email service and log it (input: to, template, "
                   "subject, message, timeout).",
    .steps = send_email_steps,
    .n_steps = TB_COUNTOF(send_email_steps),
    .on_error = log_failure,
};

static const tb_step_def_t await_steps[] = {
    {.name = "await",
     .kind = TB_STEP_WAIT,
     .description = "enrichment-complete for input.enrichment_id",
     .timeout = "24h",
     .timeout_field = "timeout",
     .event = "enrichment-complete",
     .key = enrichment_key},
    {.name = "log", .kind = TB_STEP_RUN, .description = "log_event", .run = log_event},
};

static const tb_workflow_def_t await_enrichment = {
    .name = "ops.await-enrichment",
    .domain = "ops",
    .tier = "normal",
    .description = "Wait for the enrichment-complete of input.enrichment_id (timeout: "
                   "input.timeout, default 24h), then log it.",
    .steps = await_steps,
    .n_steps = TB_COUNTOF(await_steps),
    .on_error = log_failure,
};

static const tb_step_def_t sleep_steps[] = {
    {.name = "nap",
     .kind = TB_STEP_SLEEP,
     .description = "a durable timer of input.duration",
     .duration = "1s",
     .timeout_field = "duration"},
    {.name = "log", .kind = TB_STEP_RUN, .description = "log_event", .run = log_event},
};

static const tb_workflow_def_t sleep_wf = {
    .name = "ops.sleep",
    .domain = "ops",
    .tier = "background",
    .description = "Sleep input.duration (default 1s) on a durable timer, then log.",
    .steps = sleep_steps,
    .n_steps = TB_COUNTOF(sleep_steps),
    .on_error = log_failure,
};

/* Seed 004's other shared activities, each behind a workflow that sends it and logs it. */
static const tb_step_def_t send_sms_steps[] = {
    {.name = "send",
     .kind = TB_STEP_COMMAND,
     .description = "sms.send with input.to, input.message",
     .timeout = "30s",
     .timeout_field = "timeout",
     .retry = QUICK_RETRY,
     .service = "sms",
     .action = "send",
     .input = sms_input},
    {.name = "log", .kind = TB_STEP_RUN, .description = "log_event", .run = log_event},
};

static const tb_workflow_def_t send_sms = {
    .name = "ops.send-sms",
    .domain = "ops",
    .tier = "high", /* seed 000: customer messages (email, WhatsApp) are high */
    .category = "email-sending",
    .description = "Send one SMS through the SMS service and log it (seed 004's send_sms; "
                   "input: to in E.164 form, message, timeout).",
    .steps = send_sms_steps,
    .n_steps = TB_COUNTOF(send_sms_steps),
    .on_error = log_failure,
};

static const tb_step_def_t analytics_steps[] = {
    {.name = "update",
     .kind = TB_STEP_COMMAND,
     .description = "analytics.update with input.metric, input.value, input.dimensions",
     .timeout = "5m",
     .timeout_field = "timeout",
     .retry = QUICK_RETRY,
     .service = "analytics",
     .action = "update",
     .input = analytics_input},
};

static const tb_workflow_def_t update_analytics = {
    .name = "ops.update-analytics",
    .domain = "ops",
    .tier = "background", /* seed 000: reports and analytics are background work */
    .description = "Add input.value (default 1) to analytics metric input.metric with "
                   "input.dimensions (seed 004's update_analytics).",
    .steps = analytics_steps,
    .n_steps = TB_COUNTOF(analytics_steps),
    .on_error = log_failure,
};

/* ---------------------------------------------------------------- seed 000's workflow types */

/* Seed 000 names five workflow types by what they do for the business; their default tiers come
 * from config's workflow_tiers by category (the definitions' own tiers are the fallback). They
 * are deliberately small: what tierbus adds is where they run, not what they do. */

static const tb_step_def_t support_steps[] = {
    {.name = "reply",
     .kind = TB_STEP_COMMAND,
     .description = "email.send: the answer to input.to, with input.template and input.subject",
     .timeout = "2m",
     .timeout_field = "timeout",
     .retry = QUICK_RETRY,
     .service = "email",
     .action = "send",
     .input = email_input},
    {.name = "log", .kind = TB_STEP_RUN, .description = "log_event", .run = log_event},
};

static const tb_workflow_def_t customer_support = {
    .name = "ops.customer-support-message",
    .alias = "customerSupportMessageWorkflow",
    .domain = "ops",
    .tier = "high",
    .category = "customer-support",
    .customer_facing = 1,
    .description = "Answer a customer's message by email and log it (seed 000's "
                   "customerSupportMessageWorkflow; customer-facing; input: to, template, "
                   "subject, message).",
    .steps = support_steps,
    .n_steps = TB_COUNTOF(support_steps),
    .on_error = log_failure,
};

static const tb_workflow_def_t lead_attention = {
    .name = "ops.lead-attention",
    .alias = "leadAttentionWorkflow",
    .domain = "ops",
    .tier = "high",
    .category = "lead-attention",
    .description = "Follow up a new lead by email and log it (seed 000's leadAttentionWorkflow; "
                   "input: to, template, subject, message).",
    .steps = send_email_steps,
    .n_steps = TB_COUNTOF(send_email_steps),
    .on_error = log_failure,
};

static const tb_step_def_t log_steps[] = {
    {.name = "log", .kind = TB_STEP_RUN, .description = "log_event", .run = log_event},
};

static const tb_workflow_def_t daily_stand_up = {
    .name = "ops.daily-stand-up",
    .alias = "dailyStandUpWorkflow",
    .domain = "ops",
    .tier = "normal",
    .category = "daily-stand-up",
    .description = "Record the daily stand-up summary (input.message) in the activity log (seed "
                   "000's dailyStandUpWorkflow).",
    .steps = log_steps,
    .n_steps = TB_COUNTOF(log_steps),
    .on_error = log_failure,
};

static const tb_workflow_def_t build_campaigns = {
    .name = "ops.build-campaigns",
    .alias = "buildCampaignsWorkflow",
    .domain = "ops",
    .tier = "low",
    .category = "campaign-building",
    .description = "Wait for the batch window (input.duration, default 1s), then log the "
                   "campaign batch (seed 000's buildCampaignsWorkflow).",
    .steps = sleep_steps,
    .n_steps = TB_COUNTOF(sleep_steps),
    .on_error = log_failure,
};

static const tb_workflow_def_t daily_operations = {
    .name = "ops.daily-operations",
    .alias = "dailyOperationsWorkflow",
    .domain = "ops",
    .tier = "background",
    .category = "daily-operations",
    .description = "Record the daily maintenance run (input.message) in the activity log (seed "
                   "000's dailyOperationsWorkflow).",
    .steps = log_steps,
    .n_steps = TB_COUNTOF(log_steps),
    .on_error = log_failure,
};

static const tb_workflow_def_t *const workflows[] = {
    &send_email,       &send_sms,       &update_analytics, &await_enrichment, &sleep_wf,
    &customer_support, &lead_attention, &daily_stand_up,   &build_campaigns,  &daily_operations};

static const tb_activity_def_t activities[] = {
    {"send_email", "shared", "command", "email.send: one email through the email service"},
    {"send_sms", "shared", "command", "sms.send: one SMS through the SMS service"},
    {"update_analytics", "shared", "command",
     "analytics.update: add a value to a metric in the analytics service"},
    {"log_event", "shared", "run", "append a line to the activity log"},
};

const tb_wf_domain_t tb__domain_ops = {
    .name = "ops",
    .workflows = workflows,
    .n_workflows = TB_COUNTOF(workflows),
    .activities = activities,
    .n_activities = TB_COUNTOF(activities),
};
