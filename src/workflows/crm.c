/* Seed 001's client journey: one workflow per crm event, each started by its event. The journey's
 * own state (clients, deliverables M1..M8, business plans, the activity log) is written by run
 * steps; emails, AI generation and PDFs are commands to other services. A hook never fails its
 * caller: every email step is optional (its failure is recorded and the journey goes on) and is
 * skipped when config email_workflows is false; the PDF is skipped when auto_generate_pdf is
 * false. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "core/util.h"
#include "store/crm.h"
#include "workflows/wf.h"

/* A deliverable is due this long after it is scheduled. */
#define DUE_AFTER_US (30LL * 24 * 3600 * 1000000)

/* Seed 001: 3 attempts with exponential backoff, on the transient status codes. */
#define EMAIL_RETRY                                                                                \
  {                                                                                                \
    .max_attempts = 3, .backoff = TB_BACKOFF_EXPONENTIAL, .initial_delay_ms = 1000,                \
    .max_delay_ms = 10000, .retry_on = {429, 500, 502, 503, 504}, .n_retry_on = 5                  \
  }
#define GENERATE_RETRY                                                                             \
  {                                                                                                \
    .max_attempts = 3, .backoff = TB_BACKOFF_EXPONENTIAL, .initial_delay_ms = 2000,                \
    .max_delay_ms = 30000, .retry_on = {429, 500, 502, 503, 504}, .n_retry_on = 5                  \
  }

/* Every command's wait can be shortened by a manual trigger's input.command_timeout. */
#define COMMAND_TIMEOUT_FIELD "command_timeout"

/* ---------------------------------------------------------------- helpers */

static int email_on(tb_wf_run_t *run) {
  const tb_config_t *cfg = run->ctx ? run->ctx->cfg : NULL;
  return cfg == NULL || cfg->email_workflows;
}

static int pdf_on(tb_wf_run_t *run) {
  const tb_config_t *cfg = run->ctx ? run->ctx->cfg : NULL;
  return cfg == NULL || cfg->auto_generate_pdf;
}

static json_t *input_field(tb_wf_run_t *run, const char *name) {
  return json_object_get(json_object_get(run->data, "input"), name);
}

/* input.client_id, required by every crm step: its absence is permanent (TB_ERR_INVALID). */
static tb_status client_of(tb_wf_run_t *run, const char **out) {
  *out = tb_wf_input_str(run, "client_id");
  if (*out == NULL || (*out)[0] == '\0') /* proto3 renders an unset string as "" */
    return tb__fail(TB_ERR_INVALID, "%s %s: input has no client_id", run->name, run->step);
  return TB_OK;
}

/* input.<field> as an integer (a JSON number or a decimal string), or |def|. */
static int64_t input_int(tb_wf_run_t *run, const char *name, int64_t def) {
  json_t *v = input_field(run, name);
  if (json_is_integer(v)) return json_integer_value(v);
  const char *t = json_string_value(v);
  if (t != NULL && t[0] != '\0') {
    char *end = NULL;
    long long n = strtoll(t, &end, 10);
    if (*end == '\0') return n;
  }
  return def;
}

/* input.month, which must be a programme month 1..8 (permanent failure otherwise). */
static tb_status month_of(tb_wf_run_t *run, int *month) {
  int64_t m = input_int(run, "month", 0);
  if (m < 1 || m > TB_CRM_MONTHS)
    return tb__fail(TB_ERR_INVALID, "%s %s: input.month %lld is not 1..%d", run->name, run->step,
                    (long long)m, TB_CRM_MONTHS);
  *month = (int)m;
  return TB_OK;
}

static json_t *result_of(tb_wf_run_t *run, const char *step, const char *field) {
  return json_object_get(tb_wf_step_result(run, step), field);
}

static int result_true(tb_wf_run_t *run, const char *step, const char *field) {
  return json_is_true(result_of(run, step, field));
}

/* Appends "<description>" of |kind| to the client's journey log. */
static tb_status log_activity(tb_wf_run_t *run, const char *client_id, const char *kind,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static tb_status log_activity(tb_wf_run_t *run, const char *client_id, const char *kind,
                              const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  return tb_store_crm_activity(run->ctx->store, client_id, kind, text,
                               tb_wf_input_str(run, "user_id"), run->id);
}

static tb_status done(json_t *result, json_t **out, tb_wf_run_t *run) {
  *out = result;
  return result ? TB_OK
                : tb__fail(TB_ERR_NOMEM, "%s %s: building the result", run->name, run->step);
}

/* Publishes a crm event on the run's own tier, so the journey keeps its priority. */
static tb_status emit(tb_wf_run_t *run, const char *event, json_t *payload) {
  if (payload == NULL)
    return tb__fail(TB_ERR_NOMEM, "%s %s: %s payload", run->name, run->step, event);
  tb_status s = tb_wf_emit_event(run, event, run->tier, payload);
  json_decref(payload);
  return s;
}

/* The email.send input: to the client's recorded address ("" when unknown: the email service
 * then refuses it, and the optional step records that), |vars| stolen. */
static tb_status email_input(tb_wf_run_t *run, const char *tpl, const char *subject, json_t *vars,
                             json_t **input) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  tb_crm_client_t c;
  int found = 0;
  if (s == TB_OK) s = tb_store_crm_client_get(run->ctx->store, client_id, &c, &found);
  if (s != TB_OK) {
    json_decref(vars);
    return s;
  }
  if (vars == NULL) vars = json_object();
  if (vars != NULL && found && c.name[0] != '\0')
    json_object_set_new(vars, "client_name", json_string(c.name));
  *input = json_pack("{s:s, s:s, s:s, s:s, s:o}", "to", found ? c.email : "", "template", tpl,
                     "client_id", client_id, "subject", subject, "vars", vars);
  return *input ? TB_OK : tb__fail(TB_ERR_NOMEM, "%s %s: email input", run->name, run->step);
}

/* Schedules month |month| (due in 30 days) unless it has a row, and says whether it still needs
 * generating: it has no deliverable id and is not completed. */
static tb_status schedule(tb_wf_run_t *run, const char *client_id, int month, json_t **result) {
  tb_crm_deliverable_t d;
  tb_status s = tb_store_crm_deliverable_schedule(
      run->ctx->store, client_id, month, tb_wf_log_time_us(run) + DUE_AFTER_US, run->id, &d);
  if (s != TB_OK) return s;
  int generate = d.deliverable_id[0] == '\0' && strcmp(d.status, "completed") != 0;
  s = log_activity(run, client_id, "deliverable-scheduled", "Month %d deliverable %s", month,
                   generate ? "scheduled for generation" : "already generated");
  if (s != TB_OK) return s;
  return done(json_pack("{s:i, s:s, s:I, s:b}", "month", month, "status", d.status, "due_at_us",
                        (json_int_t)d.due_us, "generate", generate),
              result, run);
}

/* Records the deliverable that step |gen_step| generated for the month in |sched_step|'s
 * result. */
static tb_status record_generated(tb_wf_run_t *run, const char *sched_step, const char *gen_step,
                                  json_t **result) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  int month = (int)json_integer_value(result_of(run, sched_step, "month"));
  const char *id = json_string_value(result_of(run, gen_step, "deliverable_id"));
  if (id == NULL || id[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "%s %s: the %s reply has no deliverable_id", run->name,
                    run->step, gen_step);
  s = tb_store_crm_deliverable_generated(run->ctx->store, client_id, month, id,
                                         tb_wf_log_time_us(run) + DUE_AFTER_US, run->id);
  if (s == TB_OK)
    s = log_activity(run, client_id, "deliverable-generated", "Month %d deliverable %s generated",
                     month, id);
  if (s != TB_OK) return s;
  return done(json_pack("{s:i, s:s}", "month", month, "deliverable_id", id), result, run);
}

/* The ai.generate-deliverable input for the month in |sched_step|'s result. */
static tb_status deliverable_input(tb_wf_run_t *run, const char *sched_step, json_t **input) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  *input =
      json_pack("{s:s, s:O}", "client_id", client_id, "month", result_of(run, sched_step, "month"));
  return *input ? TB_OK : tb__fail(TB_ERR_NOMEM, "%s %s: input", run->name, run->step);
}

/* ---------------------------------------------------------------- CLIENT_CREATED */

/* record-client: the client row (name, email, creator) and "client-created" in the log. */
static tb_status record_client(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  const char *name = tb_wf_input_str(run, "client_name"), *email = tb_wf_input_str(run, "email");
  s = tb_store_crm_client_put(run->ctx->store, client_id, name, email,
                              tb_wf_input_str(run, "user_id"));
  if (s == TB_OK)
    s = log_activity(run, client_id, "client-created", "Client %s created",
                     name ? name : client_id);
  if (s != TB_OK) return s;
  return done(json_pack("{s:s, s:s}", "client_id", client_id, "email", email ? email : ""), result,
              run);
}

static tb_status welcome_input(tb_wf_run_t *run, json_t **input) {
  return email_input(run, "welcome", "Welcome to the programme", NULL, input);
}

static const tb_step_def_t client_created_steps[] = {
    {.name = "record-client",
     .kind = TB_STEP_RUN,
     .description = "record the client and log client-created",
     .run = record_client},
    {.name = "send-welcome-email",
     .kind = TB_STEP_COMMAND,
     .description = "email.send template welcome (optional; config email_workflows)",
     .timeout = "5m",
     .timeout_field = COMMAND_TIMEOUT_FIELD,
     .retry = EMAIL_RETRY,
     .optional = 1,
     .when = email_on,
     .service = "email",
     .action = "send",
     .input = welcome_input},
};

/* ---------------------------------------------------------------- CLIENT_ACTIVATED */

/* activate-client: status active, "client-activated" in the log, and whether a business plan is
 * still to be generated (none, or the last one failed). */
static tb_status activate_client(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  const char *prev = tb_wf_input_str(run, "previous_status");
  tb_crm_plan_t plan;
  int have_plan = 0;
  s = tb_store_crm_client_status(run->ctx->store, client_id, "active");
  if (s == TB_OK)
    s = log_activity(run, client_id, "client-activated", "Client activated (was %s)",
                     prev ? prev : "unknown");
  if (s == TB_OK) s = tb_store_crm_plan_get(run->ctx->store, client_id, &plan, &have_plan);
  int need_plan =
      !have_plan || strcmp(plan.status, "failed") == 0 || strcmp(plan.status, "requested") == 0;
  if (s == TB_OK && need_plan)
    s = tb_store_crm_plan_put(run->ctx->store, client_id, "requested", NULL, run->id, NULL);
  if (s != TB_OK) return s;
  return done(json_pack("{s:s, s:b}", "client_id", client_id, "generate_plan", need_plan), result,
              run);
}

static tb_status schedule_month_1(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  return schedule(run, client_id, 1, result);
}

static int plan_needed(tb_wf_run_t *run) {
  return result_true(run, "activate-client", "generate_plan");
}

static tb_status plan_input(tb_wf_run_t *run, json_t **input) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  *input = json_pack("{s:s}", "client_id", client_id);
  return *input ? TB_OK : tb__fail(TB_ERR_NOMEM, "%s %s: input", run->name, run->step);
}

/* record-business-plan: the plan is generated; BUSINESS_PLAN_COMPLETED starts its follow-up
 * workflow (PDF, notification). */
static tb_status record_business_plan(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  const char *plan_id =
      json_string_value(result_of(run, "generate-business-plan", "business_plan_id"));
  if (plan_id == NULL || plan_id[0] == '\0')
    return tb__fail(TB_ERR_INVALID,
                    "%s %s: the generate-business-plan reply has no "
                    "business_plan_id",
                    run->name, run->step);
  s = tb_store_crm_plan_put(run->ctx->store, client_id, "generated", plan_id, run->id, NULL);
  if (s == TB_OK)
    s = log_activity(run, client_id, "business-plan-generated", "Business plan %s generated",
                     plan_id);
  const char *user = tb_wf_input_str(run, "user_id");
  if (s == TB_OK)
    s = emit(run, "BUSINESS_PLAN_COMPLETED",
             json_pack("{s:s, s:s, s:s, s:I}", "client_id", client_id, "user_id", user ? user : "",
                       "business_plan_id", plan_id, "completed_at_us", (json_int_t)tb_wall_us()));
  if (s != TB_OK) return s;
  return done(json_pack("{s:s}", "business_plan_id", plan_id), result, run);
}

/* onError of client-activated: a failed plan generation is visible on the plan and in the log
 * (and can be retried by activating again). */
static tb_status activation_failed(tb_wf_run_t *run, const char *error) {
  const char *client_id = tb_wf_input_str(run, "client_id");
  if (client_id == NULL) return TB_OK;
  tb_status s = TB_OK;
  if (plan_needed(run))
    s = tb_store_crm_plan_put(run->ctx->store, client_id, "failed", NULL, run->id, error);
  if (s == TB_OK) s = log_activity(run, client_id, "workflow-failed", "%s: %s", run->name, error);
  return s;
}

static const tb_step_def_t client_activated_steps[] = {
    {.name = "activate-client",
     .kind = TB_STEP_RUN,
     .description = "client status active; log client-activated",
     .run = activate_client},
    {.name = "schedule-month-1",
     .kind = TB_STEP_RUN,
     .description = "schedule the month 1 deliverable, due in 30 days",
     .run = schedule_month_1},
    {.name = "generate-business-plan",
     .kind = TB_STEP_COMMAND,
     .description = "ai.generate-business-plan (unless the client has a plan)",
     .timeout = "30m",
     .timeout_field = COMMAND_TIMEOUT_FIELD,
     .retry = GENERATE_RETRY,
     .when = plan_needed,
     .service = "ai",
     .action = "generate-business-plan",
     .input = plan_input},
    {.name = "record-business-plan",
     .kind = TB_STEP_RUN,
     .description = "record the plan and publish BUSINESS_PLAN_COMPLETED",
     .when = plan_needed,
     .run = record_business_plan},
};

/* ---------------------------------------------------------------- BUSINESS_PLAN_COMPLETED */

static tb_status record_plan_completed(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  const char *plan_id = tb_wf_input_str(run, "business_plan_id");
  s = tb_store_crm_plan_put(run->ctx->store, client_id, "completed", plan_id, NULL, NULL);
  if (s == TB_OK)
    s = log_activity(run, client_id, "business-plan-completed", "Business plan %s completed",
                     plan_id ? plan_id : "(no id)");
  if (s != TB_OK) return s;
  return done(json_pack("{s:s, s:s?}", "client_id", client_id, "business_plan_id", plan_id), result,
              run);
}

static tb_status pdf_input(tb_wf_run_t *run, json_t **input) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  const char *plan_id = tb_wf_input_str(run, "business_plan_id");
  *input = json_pack("{s:s, s:s, s:s}", "client_id", client_id, "document_id",
                     plan_id ? plan_id : "", "kind", "business-plan");
  return *input ? TB_OK : tb__fail(TB_ERR_NOMEM, "%s %s: input", run->name, run->step);
}

/* The PDF's reply carried a pdf_id (an optional step that failed leaves {error, code}). */
static int pdf_made(tb_wf_run_t *run) {
  return json_is_string(result_of(run, "generate-pdf", "pdf_id"));
}

static tb_status record_pdf(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  const char *pdf_id = json_string_value(result_of(run, "generate-pdf", "pdf_id"));
  const char *path = json_string_value(result_of(run, "generate-pdf", "path"));
  s = tb_store_crm_plan_pdf(run->ctx->store, client_id, pdf_id, path);
  if (s == TB_OK)
    s = log_activity(run, client_id, "pdf-generated", "Business plan PDF %s generated", pdf_id);
  if (s != TB_OK) return s;
  return done(json_pack("{s:s, s:s?}", "pdf_id", pdf_id, "path", path), result, run);
}

static tb_status plan_email_input(tb_wf_run_t *run, json_t **input) {
  const char *plan_id = tb_wf_input_str(run, "business_plan_id");
  const char *path = json_string_value(result_of(run, "generate-pdf", "path"));
  return email_input(
      run, "notification", "Your business plan is ready",
      json_pack("{s:s, s:s?}", "business_plan_id", plan_id ? plan_id : "", "pdf_path", path),
      input);
}

static const tb_step_def_t plan_completed_steps[] = {
    {.name = "record-plan-completed",
     .kind = TB_STEP_RUN,
     .description = "business plan completed; log it",
     .run = record_plan_completed},
    {.name = "generate-pdf",
     .kind = TB_STEP_COMMAND,
     .description = "pdf.generate of the plan (optional; config auto_generate_pdf)",
     .timeout = "10m",
     .timeout_field = COMMAND_TIMEOUT_FIELD,
     .retry = GENERATE_RETRY,
     .optional = 1,
     .when = pdf_on,
     .service = "pdf",
     .action = "generate",
     .input = pdf_input},
    {.name = "record-pdf",
     .kind = TB_STEP_RUN,
     .description = "record the PDF on the plan (when one was generated)",
     .when = pdf_made,
     .run = record_pdf},
    {.name = "send-notification-email",
     .kind = TB_STEP_COMMAND,
     .description = "email.send template notification (optional; config email_workflows)",
     .timeout = "5m",
     .timeout_field = COMMAND_TIMEOUT_FIELD,
     .retry = EMAIL_RETRY,
     .optional = 1,
     .when = email_on,
     .service = "email",
     .action = "send",
     .input = plan_email_input},
};

/* ---------------------------------------------------------------- DELIVERABLE_COMPLETED */

/* complete-deliverable: month M completed; result {month, next_month (0 after M8), final}. */
static tb_status complete_deliverable(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  int month = 0;
  tb_status s = client_of(run, &client_id);
  if (s == TB_OK) s = month_of(run, &month);
  if (s != TB_OK) return s;
  int64_t at = input_int(run, "completed_at_us", 0);
  s = tb_store_crm_deliverable_completed(
      run->ctx->store, client_id, month, tb_wf_input_str(run, "deliverable_id"),
      tb_wf_input_str(run, "title"), at > 0 ? at : tb_wf_log_time_us(run));
  if (s == TB_OK)
    s = log_activity(run, client_id, "deliverable-completed", "Month %d deliverable completed",
                     month);
  if (s != TB_OK) return s;
  int final = month == TB_CRM_MONTHS;
  return done(json_pack("{s:i, s:i, s:b}", "month", month, "next_month", final ? 0 : month + 1,
                        "final", final),
              result, run);
}

static int is_final(tb_wf_run_t *run) {
  return result_true(run, "complete-deliverable", "final");
}

static int celebrate_by_email(tb_wf_run_t *run) {
  return is_final(run) && email_on(run);
}

static tb_status completed_email_input(tb_wf_run_t *run, json_t **input) {
  char subject[96];
  int month = (int)input_int(run, "month", 0);
  snprintf(subject, sizeof(subject), "Month %d deliverable completed", month);
  const char *title = tb_wf_input_str(run, "title");
  return email_input(run, "notification", subject,
                     json_pack("{s:i, s:s}", "month", month, "title", title ? title : ""), input);
}

/* The programme's last month goes to the celebration instead of the next deliverable. */
static const char *after_completion(tb_wf_run_t *run) {
  return is_final(run) ? "send-celebration-email" : NULL;
}

static tb_status schedule_next(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  int next = (int)json_integer_value(result_of(run, "complete-deliverable", "next_month"));
  return schedule(run, client_id, next, result);
}

static int next_needs_generation(tb_wf_run_t *run) {
  return result_true(run, "schedule-next-deliverable", "generate");
}

static tb_status next_input(tb_wf_run_t *run, json_t **input) {
  return deliverable_input(run, "schedule-next-deliverable", input);
}

static tb_status record_next(tb_wf_run_t *run, json_t **result) {
  return record_generated(run, "schedule-next-deliverable", "generate-next-deliverable", result);
}

static tb_status celebration_email_input(tb_wf_run_t *run, json_t **input) {
  return email_input(run, "celebration", "Congratulations on completing the programme",
                     json_pack("{s:s}", "milestone", "program-complete"), input);
}

/* celebrate-completion: the client completed the programme; CLIENT_MILESTONE_REACHED
 * "program-complete" is published for whoever follows milestones. */
static tb_status celebrate_completion(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  s = tb_store_crm_client_status(run->ctx->store, client_id, "completed");
  if (s == TB_OK)
    s = log_activity(run, client_id, "program-completed",
                     "Programme completed: all %d monthly deliverables done", TB_CRM_MONTHS);
  const char *user = tb_wf_input_str(run, "user_id");
  if (s == TB_OK)
    s = emit(run, "CLIENT_MILESTONE_REACHED",
             json_pack("{s:s, s:s, s:s, s:I}", "client_id", client_id, "user_id", user ? user : "",
                       "milestone", "program-complete", "reached_at_us", (json_int_t)tb_wall_us()));
  if (s != TB_OK) return s;
  return done(json_pack("{s:s}", "milestone", "program-complete"), result, run);
}

static const tb_step_def_t deliverable_completed_steps[] = {
    {.name = "complete-deliverable",
     .kind = TB_STEP_RUN,
     .description = "mark month M completed; log it",
     .run = complete_deliverable},
    {.name = "send-notification-email",
     .kind = TB_STEP_COMMAND,
     .description = "email.send template notification (optional; config email_workflows)",
     .timeout = "5m",
     .timeout_field = COMMAND_TIMEOUT_FIELD,
     .retry = EMAIL_RETRY,
     .optional = 1,
     .when = email_on,
     .service = "email",
     .action = "send",
     .input = completed_email_input},
    {.name = "check-program-complete",
     .kind = TB_STEP_BRANCH,
     .description = "month 8: go to the celebration; else generate month M+1",
     .branch = after_completion},
    {.name = "schedule-next-deliverable",
     .kind = TB_STEP_RUN,
     .description = "schedule month M+1, due in 30 days",
     .run = schedule_next},
    {.name = "generate-next-deliverable",
     .kind = TB_STEP_COMMAND,
     .description = "ai.generate-deliverable for month M+1 (unless already generated)",
     .timeout = "30m",
     .timeout_field = COMMAND_TIMEOUT_FIELD,
     .retry = GENERATE_RETRY,
     .when = next_needs_generation,
     .service = "ai",
     .action = "generate-deliverable",
     .input = next_input},
    {.name = "record-next-deliverable",
     .kind = TB_STEP_RUN,
     .description = "record the generated deliverable of month M+1",
     .when = next_needs_generation,
     .run = record_next},
    {.name = "send-celebration-email",
     .kind = TB_STEP_COMMAND,
     .description = "month 8: email.send template celebration (optional; email_workflows)",
     .timeout = "5m",
     .timeout_field = COMMAND_TIMEOUT_FIELD,
     .retry = EMAIL_RETRY,
     .optional = 1,
     .when = celebrate_by_email,
     .service = "email",
     .action = "send",
     .input = celebration_email_input},
    {.name = "celebrate-completion",
     .kind = TB_STEP_RUN,
     .description = "month 8: client completed; publish CLIENT_MILESTONE_REACHED",
     .when = is_final,
     .run = celebrate_completion},
};

/* ---------------------------------------------------------------- DELIVERABLE_OVERDUE */

/* mark-overdue: month M overdue unless already completed (then no reminder). */
static tb_status mark_overdue(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  int month = 0;
  tb_status s = client_of(run, &client_id);
  if (s == TB_OK) s = month_of(run, &month);
  if (s != TB_OK) return s;
  int64_t days = input_int(run, "days_overdue", 0);
  int marked = 0;
  s = tb_store_crm_deliverable_overdue(
      run->ctx->store, client_id, month, tb_wf_input_str(run, "deliverable_id"),
      tb_wf_input_str(run, "title"), input_int(run, "due_at_us", 0), &marked);
  if (s == TB_OK && marked)
    s = log_activity(run, client_id, "deliverable-overdue",
                     "Month %d deliverable is %lld day%s overdue", month, (long long)days,
                     days == 1 ? "" : "s");
  else if (s == TB_OK)
    s = log_activity(run, client_id, "deliverable-overdue",
                     "Month %d deliverable reported overdue but already completed; no reminder",
                     month);
  if (s != TB_OK) return s;
  return done(json_pack("{s:i, s:b, s:I}", "month", month, "marked", marked, "days_overdue",
                        (json_int_t)days),
              result, run);
}

static int remind(tb_wf_run_t *run) {
  return email_on(run) && result_true(run, "mark-overdue", "marked");
}

static tb_status reminder_input(tb_wf_run_t *run, json_t **input) {
  char subject[96];
  int month = (int)input_int(run, "month", 0);
  snprintf(subject, sizeof(subject), "Reminder: month %d deliverable is overdue", month);
  const char *title = tb_wf_input_str(run, "title");
  return email_input(run, "reminder", subject,
                     json_pack("{s:i, s:s, s:I}", "month", month, "title", title ? title : "",
                               "days_overdue", (json_int_t)input_int(run, "days_overdue", 0)),
                     input);
}

static const tb_step_def_t overdue_steps[] = {
    {.name = "mark-overdue",
     .kind = TB_STEP_RUN,
     .description = "mark month M overdue (unless completed); log it",
     .run = mark_overdue},
    {.name = "send-reminder-email",
     .kind = TB_STEP_COMMAND,
     .description = "email.send template reminder (optional; config email_workflows)",
     .timeout = "5m",
     .timeout_field = COMMAND_TIMEOUT_FIELD,
     .retry = EMAIL_RETRY,
     .optional = 1,
     .when = remind,
     .service = "email",
     .action = "send",
     .input = reminder_input},
};

/* ---------------------------------------------------------------- MONTH_TRANSITION */

/* check-next-deliverable: the month's deliverable is generated now unless it already was, it is
 * completed, or the client finished the programme. */
static tb_status check_next_deliverable(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  int month = 0;
  tb_status s = client_of(run, &client_id);
  if (s == TB_OK) s = month_of(run, &month);
  if (s != TB_OK) return s;
  tb_crm_client_t c;
  int found = 0;
  s = tb_store_crm_client_get(run->ctx->store, client_id, &c, &found);
  if (s != TB_OK) return s;
  const char *period = tb_wf_input_str(run, "period");
  if (found && strcmp(c.status, "completed") == 0) {
    s = log_activity(run, client_id, "month-transition",
                     "Month %d started (%s): programme already completed", month,
                     period ? period : "?");
    if (s != TB_OK) return s;
    return done(
        json_pack("{s:i, s:b, s:s}", "month", month, "generate", 0, "status", "program-complete"),
        result, run);
  }
  s = log_activity(run, client_id, "month-transition", "Month %d started (%s)", month,
                   period ? period : "?");
  if (s != TB_OK) return s;
  return schedule(run, client_id, month, result);
}

static int month_needs_generation(tb_wf_run_t *run) {
  return result_true(run, "check-next-deliverable", "generate");
}

static tb_status month_input(tb_wf_run_t *run, json_t **input) {
  return deliverable_input(run, "check-next-deliverable", input);
}

static tb_status record_month(tb_wf_run_t *run, json_t **result) {
  return record_generated(run, "check-next-deliverable", "generate-deliverable", result);
}

static const tb_step_def_t month_steps[] = {
    {.name = "check-next-deliverable",
     .kind = TB_STEP_RUN,
     .description = "does the month's deliverable still need generating?",
     .run = check_next_deliverable},
    {.name = "generate-deliverable",
     .kind = TB_STEP_COMMAND,
     .description = "ai.generate-deliverable for the month (when needed)",
     .timeout = "30m",
     .timeout_field = COMMAND_TIMEOUT_FIELD,
     .retry = GENERATE_RETRY,
     .when = month_needs_generation,
     .service = "ai",
     .action = "generate-deliverable",
     .input = month_input},
    {.name = "record-deliverable",
     .kind = TB_STEP_RUN,
     .description = "record the generated deliverable",
     .when = month_needs_generation,
     .run = record_month},
};

/* ---------------------------------------------------------------- CLIENT_MILESTONE_REACHED */

static tb_status log_milestone(tb_wf_run_t *run, json_t **result) {
  const char *client_id = NULL;
  tb_status s = client_of(run, &client_id);
  if (s != TB_OK) return s;
  const char *milestone = tb_wf_input_str(run, "milestone");
  s = log_activity(run, client_id, "milestone-reached", "Milestone '%s' reached",
                   milestone ? milestone : "unnamed");
  if (s != TB_OK) return s;
  return done(json_pack("{s:s}", "milestone", milestone ? milestone : ""), result, run);
}

/* "program-complete" is published by the month-8 celebration, which already sent its email. */
static int milestone_email(tb_wf_run_t *run) {
  const char *m = tb_wf_input_str(run, "milestone");
  return email_on(run) && (m == NULL || strcmp(m, "program-complete") != 0);
}

static tb_status milestone_input(tb_wf_run_t *run, json_t **input) {
  const char *m = tb_wf_input_str(run, "milestone");
  return email_input(run, "celebration", "Congratulations on your milestone",
                     json_pack("{s:s}", "milestone", m ? m : ""), input);
}

static const tb_step_def_t milestone_steps[] = {
    {.name = "log-milestone",
     .kind = TB_STEP_RUN,
     .description = "log the milestone",
     .run = log_milestone},
    {.name = "send-celebration-email",
     .kind = TB_STEP_COMMAND,
     .description = "email.send template celebration (optional; config email_workflows)",
     .timeout = "5m",
     .timeout_field = COMMAND_TIMEOUT_FIELD,
     .retry = EMAIL_RETRY,
     .optional = 1,
     .when = milestone_email,
     .service = "email",
     .action = "send",
     .input = milestone_input},
};

/* ---------------------------------------------------------------- definitions */

/* onError of the journey workflows without their own: the failure lands in the client's log. */
static tb_status journey_failed(tb_wf_run_t *run, const char *error) {
  const char *client_id = tb_wf_input_str(run, "client_id");
  if (client_id == NULL) return TB_OK;
  return log_activity(run, client_id, "workflow-failed", "%s: %s", run->name, error);
}

static const tb_workflow_def_t client_created = {
    .name = "crm.client-created",
    .domain = "crm",
    .tier = "high",
    .description = "CLIENT_CREATED: record the client, send the welcome email.",
    .trigger_event = "CLIENT_CREATED",
    .steps = client_created_steps,
    .n_steps = TB_COUNTOF(client_created_steps),
    .on_error = journey_failed,
};

static const tb_workflow_def_t client_activated = {
    .name = "crm.client-activated",
    .domain = "crm",
    .tier = "high",
    .description = "CLIENT_ACTIVATED: schedule month 1, generate the business plan and publish "
                   "BUSINESS_PLAN_COMPLETED.",
    .trigger_event = "CLIENT_ACTIVATED",
    .steps = client_activated_steps,
    .n_steps = TB_COUNTOF(client_activated_steps),
    .on_error = activation_failed,
};

static const tb_workflow_def_t plan_completed = {
    .name = "crm.business-plan-completed",
    .domain = "crm",
    .tier = "high",
    .description = "BUSINESS_PLAN_COMPLETED: PDF (if auto_generate_pdf), notification email.",
    .trigger_event = "BUSINESS_PLAN_COMPLETED",
    .steps = plan_completed_steps,
    .n_steps = TB_COUNTOF(plan_completed_steps),
    .on_error = journey_failed,
};

static const tb_workflow_def_t deliverable_completed = {
    .name = "crm.deliverable-completed",
    .domain = "crm",
    .tier = "high",
    .description = "DELIVERABLE_COMPLETED: notification email; generate month M+1, or after "
                   "month 8 celebrate and publish CLIENT_MILESTONE_REACHED.",
    .trigger_event = "DELIVERABLE_COMPLETED",
    .steps = deliverable_completed_steps,
    .n_steps = TB_COUNTOF(deliverable_completed_steps),
    .on_error = journey_failed,
};

static const tb_workflow_def_t deliverable_overdue = {
    .name = "crm.deliverable-overdue",
    .domain = "crm",
    .tier = "high",
    .description = "DELIVERABLE_OVERDUE: mark it overdue, log it, send a reminder email.",
    .trigger_event = "DELIVERABLE_OVERDUE",
    .steps = overdue_steps,
    .n_steps = TB_COUNTOF(overdue_steps),
    .on_error = journey_failed,
};

static const tb_workflow_def_t month_transition = {
    .name = "crm.month-transition",
    .domain = "crm",
    .tier = "normal",
    .description = "MONTH_TRANSITION: generate the month's deliverable if it is not yet.",
    .trigger_event = "MONTH_TRANSITION",
    .steps = month_steps,
    .n_steps = TB_COUNTOF(month_steps),
    .on_error = journey_failed,
};

static const tb_workflow_def_t milestone_reached = {
    .name = "crm.client-milestone-reached",
    .domain = "crm",
    .tier = "high",
    .description = "CLIENT_MILESTONE_REACHED: log it, send a celebration email.",
    .trigger_event = "CLIENT_MILESTONE_REACHED",
    .steps = milestone_steps,
    .n_steps = TB_COUNTOF(milestone_steps),
    .on_error = journey_failed,
};

static const tb_workflow_def_t *const workflows[] = {
    &client_created,      &client_activated, &plan_completed,    &deliverable_completed,
    &deliverable_overdue, &month_transition, &milestone_reached,
};

static const tb_activity_def_t activities[] = {
    {"crm.record-client", "crm", "run", "record a new client; log client-created"},
    {"crm.activate-client", "crm", "run", "client status active; log client-activated"},
    {"crm.schedule-deliverable", "crm", "run", "schedule a monthly deliverable, due in 30 days"},
    {"crm.record-deliverable", "crm", "run", "record a generated deliverable"},
    {"crm.record-business-plan", "crm", "run",
     "record a generated plan; publish BUSINESS_PLAN_COMPLETED"},
    {"crm.record-plan-completed", "crm", "run", "business plan completed; log it"},
    {"crm.record-pdf", "crm", "run", "record a business plan's PDF"},
    {"crm.complete-deliverable", "crm", "run", "mark a monthly deliverable completed"},
    {"crm.celebrate-completion", "crm", "run",
     "programme completed; publish CLIENT_MILESTONE_REACHED"},
    {"crm.mark-overdue", "crm", "run", "mark a deliverable overdue unless completed"},
    {"crm.check-next-deliverable", "crm", "run", "month transition: is a deliverable due?"},
    {"crm.log-milestone", "crm", "run", "log a milestone"},
    {"email.send", "crm", "command",
     "welcome, notification, reminder and celebration emails; replies {message_id}"},
    {"ai.generate-business-plan", "crm", "command", "generate a plan; replies {business_plan_id}"},
    {"ai.generate-deliverable", "crm", "command",
     "generate a month's deliverable; replies {deliverable_id, month}"},
    {"pdf.generate", "crm", "command", "render a document as PDF; replies {pdf_id, path}"},
};

const tb_wf_domain_t tb__domain_crm = {
    .name = "crm",
    .workflows = workflows,
    .n_workflows = TB_COUNTOF(workflows),
    .activities = activities,
    .n_activities = TB_COUNTOF(activities),
};
