/* Unit tests for seed 001's client journey: the store layer (store/crm.c) and the crm workflows'
 * steps (workflows/crm.c) driven by hand against a real in-memory SQLite store: deliverable
 * scheduling for months 1..8, the branch at month 8, the business plan hand-off, the overdue
 * reminder, and every email step's `when` honouring config email_workflows. */
#include "store/crm.h"

#include "core/clock.h"
#include "wf_harness.h"

#define DAY_US (24LL * 3600 * 1000000)

static tb_crm_deliverable_t deliverable(world_t *w, const char *client, int month) {
  tb_crm_deliverable_t d;
  int found = 0;
  assert_int_equal(tb_store_crm_deliverable_get(w->st, client, month, &d, &found), TB_OK);
  if (!found) fail_msg("client %s has no month %d", client, month);
  return d;
}

static int has_month(world_t *w, const char *client, int month) {
  tb_crm_deliverable_t d;
  int found = 0;
  assert_int_equal(tb_store_crm_deliverable_get(w->st, client, month, &d, &found), TB_OK);
  return found;
}

typedef struct log_acc {
  char text[4096];
  size_t used;
} log_acc_t;

static int add_log(void *arg, const tb_crm_activity_t *a) {
  log_acc_t *acc = arg;
  acc->used += (size_t)snprintf(acc->text + acc->used, sizeof(acc->text) - acc->used, "%s%s: %s",
                                acc->used ? "\n" : "", a->kind, a->description);
  return 0;
}

/* The client's journey log, "kind: description" lines, oldest first (static buffer). */
static const char *journey(world_t *w, const char *client) {
  static log_acc_t acc;
  memset(&acc, 0, sizeof(acc));
  assert_int_equal(tb_store_crm_activity_list(w->st, client, add_log, &acc), TB_OK);
  return acc.text;
}

static void record_client(world_t *w, const char *client, const char *email) {
  char input[256];
  snprintf(input, sizeof(input),
           "{\"client_id\": \"%s\", \"user_id\": \"u1\", \"client_name\": \"Acme Co\", "
           "\"email\": \"%s\"}",
           client, email);
  run_t r = run_new(w, "crm.client-created", "wf-created", input);
  step_ok(&r, "record-client");
  run_free(&r);
}

/* ---------------------------------------------------------------- definitions */

static void test_definitions(void **state) {
  (void)state;
  static const struct {
    const char *name, *trigger, *tier;
    int n_steps;
  } want[] = {
      {"crm.client-created", "CLIENT_CREATED", "high", 2},
      {"crm.client-activated", "CLIENT_ACTIVATED", "high", 4},
      {"crm.business-plan-completed", "BUSINESS_PLAN_COMPLETED", "high", 4},
      {"crm.deliverable-completed", "DELIVERABLE_COMPLETED", "high", 8},
      {"crm.deliverable-overdue", "DELIVERABLE_OVERDUE", "high", 2},
      {"crm.month-transition", "MONTH_TRANSITION", "normal", 3},
      {"crm.client-milestone-reached", "CLIENT_MILESTONE_REACHED", "high", 2},
  };
  int n = 0;
  const tb_wf_domain_t *const *domains = tb_wf_domains(&n);
  const tb_wf_domain_t *crm = NULL;
  for (int i = 0; i < n; i++)
    if (strcmp(domains[i]->name, "crm") == 0) crm = domains[i];
  assert_non_null(crm);
  assert_int_equal(crm->n_workflows, 7);
  for (int i = 0; i < 7; i++) {
    const tb_workflow_def_t *def = crm->workflows[i];
    assert_string_equal(def->name, want[i].name);
    assert_ptr_equal(tb_wf_find(want[i].name), def);
    assert_string_equal(def->domain, "crm");
    assert_string_equal(def->trigger_event, want[i].trigger);
    assert_string_equal(def->tier, want[i].tier);
    assert_int_equal(def->n_steps, want[i].n_steps);
    assert_null(def->should_start); /* every event of the type starts it */
    assert_non_null(def->on_error);
    for (int k = 0; k < def->n_steps; k++) {
      const tb_step_def_t *st = &def->steps[k];
      if (st->kind == TB_STEP_COMMAND) {
        assert_int_equal(tb_retry_policy_validate(&st->retry), TB_OK);
        assert_true(st->retry.max_attempts == 3);
        assert_non_null(st->timeout);
      }
      /* A hook never fails its caller: every email is optional and switchable. */
      if (st->kind == TB_STEP_COMMAND && strcmp(st->service, "email") == 0) {
        assert_string_equal(st->action, "send");
        assert_int_equal(st->optional, 1);
        assert_non_null(st->when);
      }
    }
  }
}

/* Every email step of every crm workflow is skipped when email_workflows is false, whatever the
 * rest of the data says; with emails on, the data decides. */
static void test_email_switch(void **state) {
  world_t *w = *state;
  int n = 0;
  const tb_wf_domain_t *const *domains = tb_wf_domains(&n);
  int checked = 0;
  for (int d = 0; d < n; d++) {
    if (strcmp(domains[d]->name, "crm") != 0) continue;
    for (int i = 0; i < domains[d]->n_workflows; i++) {
      const tb_workflow_def_t *def = domains[d]->workflows[i];
      /* Data under which each email would go: month 8 final, overdue marked, any milestone. */
      run_t r = run_new(w, def->name, "wf", "{\"client_id\": \"c1\", \"milestone\": \"first\"}");
      step_set(&r, "complete-deliverable", "{\"final\": true}");
      step_set(&r, "mark-overdue", "{\"marked\": true}");
      for (int k = 0; k < def->n_steps; k++) {
        const tb_step_def_t *st = &def->steps[k];
        if (st->kind != TB_STEP_COMMAND || strcmp(st->service, "email") != 0) continue;
        w->cfg.email_workflows = 1;
        assert_int_equal(step_when(&r, st->name), 1);
        w->cfg.email_workflows = 0;
        if (step_when(&r, st->name) != 0)
          fail_msg("%s %s runs with email_workflows false", def->name, st->name);
        checked++;
      }
      run_free(&r);
    }
  }
  /* welcome; plan notification; completion notification and celebration; reminder; milestone */
  assert_int_equal(checked, 6);
  w->cfg.email_workflows = 1;

  /* The data's own conditions hold with emails on. */
  run_t r = run_new(w, "crm.deliverable-overdue", "wf", "{\"client_id\": \"c1\"}");
  step_set(&r, "mark-overdue", "{\"marked\": false}");
  assert_int_equal(step_when(&r, "send-reminder-email"), 0);
  run_free(&r);
  r = run_new(w, "crm.client-milestone-reached", "wf",
              "{\"client_id\": \"c1\", \"milestone\": \"program-complete\"}");
  assert_int_equal(step_when(&r, "send-celebration-email"), 0); /* month 8 already sent it */
  run_free(&r);
}

/* The two switches are config options: true/false in the file, the CLI and the environment. */
static void test_config_switches(void **state) {
  (void)state;
  tb_config_t cfg;
  tb_config_init(&cfg);
  assert_int_equal(cfg.email_workflows, 1); /* seed 001 enables both by default */
  assert_int_equal(cfg.auto_generate_pdf, 1);
  assert_int_equal(tb_config_set(&cfg, "email_workflows", "false"), TB_OK);
  assert_int_equal(cfg.email_workflows, 0);
  assert_int_equal(tb_config_set(&cfg, "email_workflows", "TRUE"), TB_OK);
  assert_int_equal(cfg.email_workflows, 1);
  assert_int_equal(tb_config_set(&cfg, "auto_generate_pdf", "False"), TB_OK);
  assert_int_equal(cfg.auto_generate_pdf, 0);
  assert_int_equal(tb_config_set(&cfg, "auto_generate_pdf", "yes"), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "auto_generate_pdf: must be true or false (got 'yes')");
  assert_int_equal(cfg.auto_generate_pdf, 0); /* unchanged by the refused value */
  setenv("TIERBUS_EMAIL_WORKFLOWS", "false", 1);
  setenv("TIERBUS_AUTO_GENERATE_PDF", "true", 1);
  assert_int_equal(tb_config_apply_env(&cfg), TB_OK);
  assert_int_equal(cfg.email_workflows, 0);
  assert_int_equal(cfg.auto_generate_pdf, 1);
  setenv("TIERBUS_EMAIL_WORKFLOWS", "0", 1);
  assert_int_equal(tb_config_apply_env(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(),
                      "TIERBUS_EMAIL_WORKFLOWS: email_workflows: must be true or false (got '0')");
  unsetenv("TIERBUS_EMAIL_WORKFLOWS");
  unsetenv("TIERBUS_AUTO_GENERATE_PDF");
}

/* ---------------------------------------------------------------- CLIENT_CREATED */

static void test_client_created(void **state) {
  world_t *w = *state;
  run_t r = run_new(w, "crm.client-created", "wf-1",
                    "{\"client_id\": \"c1\", \"user_id\": \"u1\", \"client_name\": \"Acme Co\", "
                    "\"email\": \"ceo@acme.test\"}");
  assert_string_equal(jtext(step_ok(&r, "record-client")),
                      "{\"client_id\":\"c1\",\"email\":\"ceo@acme.test\"}");
  tb_crm_client_t c;
  int found = 0;
  assert_int_equal(tb_store_crm_client_get(w->st, "c1", &c, &found), TB_OK);
  assert_int_equal(found, 1);
  assert_string_equal(c.status, "onboarding");
  assert_string_equal(c.name, "Acme Co");
  assert_string_equal(c.email, "ceo@acme.test");
  assert_string_equal(c.created_by, "u1");
  assert_int_equal(c.activated_us, 0);
  assert_string_equal(journey(w, "c1"), "client-created: Client Acme Co created");

  char *in = step_input(&r, "send-welcome-email", "email", "send");
  assert_string_equal(in, "{\"client_id\":\"c1\",\"subject\":\"Welcome to the programme\","
                          "\"template\":\"welcome\",\"to\":\"ceo@acme.test\","
                          "\"vars\":{\"client_name\":\"Acme Co\"}}");
  free(in);
  run_free(&r);

  /* An email for a client never recorded goes to "" (the email service refuses it; the step is
   * optional). */
  r = run_new(w, "crm.client-milestone-reached", "wf-2",
              "{\"client_id\": \"ghost\", \"milestone\": \"first-revenue\"}");
  in = step_input(&r, "send-celebration-email", "email", "send");
  assert_string_equal(in, "{\"client_id\":\"ghost\",\"subject\":\"Congratulations on your "
                          "milestone\",\"template\":\"celebration\",\"to\":\"\","
                          "\"vars\":{\"milestone\":\"first-revenue\"}}");
  free(in);
  assert_string_equal(jtext(step_ok(&r, "log-milestone")), "{\"milestone\":\"first-revenue\"}");
  assert_string_equal(journey(w, "ghost"), "milestone-reached: Milestone 'first-revenue' reached");
  run_free(&r);

  /* No client id, or the empty one an unset proto field renders as: permanent. */
  r = run_new(w, "crm.client-created", "wf-3", "{\"user_id\": \"u1\"}");
  assert_int_equal(step_run(&r, "record-client"), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "crm.client-created record-client: input has no client_id");
  run_free(&r);
  r = run_new(w, "crm.client-created", "wf-4", "{\"client_id\": \"\"}");
  assert_int_equal(step_run(&r, "record-client"), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "crm.client-created record-client: input has no client_id");
  run_free(&r);
}

/* ---------------------------------------------------------------- CLIENT_ACTIVATED */

static void test_client_activated(void **state) {
  world_t *w = *state;
  record_client(w, "c1", "ceo@acme.test");
  char *events = drain_events(w);
  assert_string_equal(events, "");
  free(events);

  run_t r = run_new(w, "crm.client-activated", "wf-act",
                    "{\"client_id\": \"c1\", \"user_id\": \"u1\", \"previous_status\": "
                    "\"ONBOARDING\"}");
  assert_string_equal(jtext(step_ok(&r, "activate-client")),
                      "{\"client_id\":\"c1\",\"generate_plan\":true}");
  int64_t before = tb_wall_us();
  json_t *res = step_ok(&r, "schedule-month-1");
  int64_t after = tb_wall_us();
  assert_int_equal(json_integer_value(json_object_get(res, "month")), 1);
  assert_true(json_is_true(json_object_get(res, "generate")));
  assert_string_equal(json_string_value(json_object_get(res, "status")), "scheduled");
  tb_crm_deliverable_t d = deliverable(w, "c1", 1);
  assert_string_equal(d.status, "scheduled");
  assert_true(d.due_us >= before + 30 * DAY_US && d.due_us <= after + 30 * DAY_US);
  assert_string_equal(d.workflow_id, "wf-act");
  assert_string_equal(d.deliverable_id, "");
  assert_int_equal(has_month(w, "c1", 2), 0);

  tb_crm_client_t c;
  int found = 0;
  assert_int_equal(tb_store_crm_client_get(w->st, "c1", &c, &found), TB_OK);
  assert_string_equal(c.status, "active");
  assert_true(c.activated_us > 0);
  tb_crm_plan_t p;
  assert_int_equal(tb_store_crm_plan_get(w->st, "c1", &p, &found), TB_OK);
  assert_string_equal(p.status, "requested");

  assert_int_equal(step_when(&r, "generate-business-plan"), 1);
  char *in = step_input(&r, "generate-business-plan", "ai", "generate-business-plan");
  assert_string_equal(in, "{\"client_id\":\"c1\"}");
  free(in);

  /* A reply without the plan's id cannot be recorded: permanent, nothing published. */
  step_set(&r, "generate-business-plan", "{}");
  assert_int_equal(step_run(&r, "record-business-plan"), TB_ERR_INVALID);
  events = drain_events(w);
  assert_string_equal(events, "");
  free(events);

  step_set(&r, "generate-business-plan", "{\"business_plan_id\": \"bp-7\"}");
  assert_string_equal(jtext(step_ok(&r, "record-business-plan")),
                      "{\"business_plan_id\":\"bp-7\"}");
  assert_int_equal(tb_store_crm_plan_get(w->st, "c1", &p, &found), TB_OK);
  assert_string_equal(p.status, "generated");
  assert_string_equal(p.business_plan_id, "bp-7");
  /* The plan's completion is published on the run's tier; the follow-up workflow picks it up. */
  events = drain_events(w);
  char *cut = strstr(events, "\"completed_at_us\":");
  assert_non_null(cut);
  assert_true(strncmp(events,
                      "BUSINESS_PLAN_COMPLETED tb.evt.high.crm.BUSINESS_PLAN_COMPLETED "
                      "{\"business_plan_id\":\"bp-7\",\"client_id\":\"c1\",",
                      (size_t)(cut - events)) == 0);
  assert_non_null(strstr(cut, "\"user_id\":\"u1\"}"));
  free(events);
  assert_string_equal(journey(w, "c1"), "client-created: Client Acme Co created\n"
                                        "client-activated: Client activated (was ONBOARDING)\n"
                                        "deliverable-scheduled: Month 1 deliverable scheduled "
                                        "for generation\n"
                                        "business-plan-generated: Business plan bp-7 generated");
  run_free(&r);

  /* Activated again: month 1 keeps its row and no second plan is generated. */
  r = run_new(w, "crm.client-activated", "wf-act2", "{\"client_id\": \"c1\"}");
  assert_string_equal(jtext(step_ok(&r, "activate-client")),
                      "{\"client_id\":\"c1\",\"generate_plan\":false}");
  assert_int_equal(step_when(&r, "generate-business-plan"), 0);
  assert_int_equal(step_when(&r, "record-business-plan"), 0);
  step_ok(&r, "schedule-month-1");
  assert_string_equal(deliverable(w, "c1", 1).workflow_id, "wf-act");
  run_free(&r);
}

/* onError of an activation whose plan generation failed: the plan and the log say so. */
static void test_activation_on_error(void **state) {
  world_t *w = *state;
  run_t r = run_new(w, "crm.client-activated", "wf-act", "{\"client_id\": \"c2\"}");
  step_ok(&r, "activate-client");
  tb_wf_run_t v = view(&r, "generate-business-plan");
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(r.def->on_error(&v, "step generate-business-plan: status 500: model down"),
                   TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  tb_crm_plan_t p;
  int found = 0;
  assert_int_equal(tb_store_crm_plan_get(w->st, "c2", &p, &found), TB_OK);
  assert_string_equal(p.status, "failed");
  assert_string_equal(p.error, "step generate-business-plan: status 500: model down");
  assert_string_equal(journey(w, "c2"),
                      "client-activated: Client activated (was unknown)\n"
                      "workflow-failed: crm.client-activated: step generate-business-plan: "
                      "status 500: model down");
  run_free(&r);
  /* A failed plan is generated again on the next activation. */
  r = run_new(w, "crm.client-activated", "wf-act2", "{\"client_id\": \"c2\"}");
  assert_true(json_is_true(json_object_get(step_ok(&r, "activate-client"), "generate_plan")));
  run_free(&r);
}

/* ---------------------------------------------------------------- BUSINESS_PLAN_COMPLETED */

static void test_plan_completed(void **state) {
  world_t *w = *state;
  record_client(w, "c1", "ceo@acme.test");
  run_t r = run_new(w, "crm.business-plan-completed", "wf-bp",
                    "{\"client_id\": \"c1\", \"user_id\": \"u1\", \"business_plan_id\": \"bp-7\"}");
  step_ok(&r, "record-plan-completed");
  tb_crm_plan_t p;
  int found = 0;
  assert_int_equal(tb_store_crm_plan_get(w->st, "c1", &p, &found), TB_OK);
  assert_string_equal(p.status, "completed");
  assert_string_equal(p.business_plan_id, "bp-7");
  assert_true(p.completed_us > 0);

  assert_int_equal(step_when(&r, "generate-pdf"), 1);
  w->cfg.auto_generate_pdf = 0;
  assert_int_equal(step_when(&r, "generate-pdf"), 0);
  w->cfg.auto_generate_pdf = 1;
  assert_int_equal(step_of(&r, "generate-pdf")->optional, 1);
  char *in = step_input(&r, "generate-pdf", "pdf", "generate");
  assert_string_equal(in,
                      "{\"client_id\":\"c1\",\"document_id\":\"bp-7\",\"kind\":\"business-plan\"}");
  free(in);

  /* A PDF that failed (optional: {error, code}) or was skipped records nothing. */
  assert_int_equal(step_when(&r, "record-pdf"), 0);
  step_set(&r, "generate-pdf", "{\"error\": \"status 500: boom\", \"code\": 500}");
  assert_int_equal(step_when(&r, "record-pdf"), 0);
  step_set(&r, "generate-pdf", "{\"pdf_id\": \"pdf-1\", \"path\": \"/pdf/bp-7.pdf\"}");
  assert_int_equal(step_when(&r, "record-pdf"), 1);
  step_ok(&r, "record-pdf");
  assert_int_equal(tb_store_crm_plan_get(w->st, "c1", &p, &found), TB_OK);
  assert_string_equal(p.pdf_id, "pdf-1");
  assert_string_equal(p.pdf_path, "/pdf/bp-7.pdf");

  in = step_input(&r, "send-notification-email", "email", "send");
  assert_string_equal(in, "{\"client_id\":\"c1\",\"subject\":\"Your business plan is ready\","
                          "\"template\":\"notification\",\"to\":\"ceo@acme.test\",\"vars\":{"
                          "\"business_plan_id\":\"bp-7\",\"client_name\":\"Acme Co\","
                          "\"pdf_path\":\"/pdf/bp-7.pdf\"}}");
  free(in);
  run_free(&r);

  /* PDF for a client with no plan row: the store says so. */
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_crm_plan_pdf(w->st, "nobody", "p", "/x"), TB_ERR_NOT_FOUND);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
}

/* ---------------------------------------------------------------- DELIVERABLE_COMPLETED */

/* Runs crm.deliverable-completed for month |m| through its branch, as the runtime would; returns
 * the branch's target (NULL = next step). */
static const char *complete_month(world_t *w, const char *client, int m, run_t *r) {
  char input[256], id[64];
  snprintf(input, sizeof(input),
           "{\"client_id\": \"%s\", \"user_id\": \"u1\", \"deliverable_id\": \"d-%d\", "
           "\"month\": %d, \"title\": \"Month %d plan\", \"completed_at_us\": %d}",
           client, m, m, m, 1000 + m);
  snprintf(id, sizeof(id), "wf-done-%d", m);
  *r = run_new(w, "crm.deliverable-completed", id, input);
  json_t *res = step_ok(r, "complete-deliverable");
  char want[128];
  snprintf(want, sizeof(want), "{\"final\":%s,\"month\":%d,\"next_month\":%d}",
           m == 8 ? "true" : "false", m, m == 8 ? 0 : m + 1);
  assert_string_equal(jtext(res), want);
  tb_crm_deliverable_t d = deliverable(w, client, m);
  assert_string_equal(d.status, "completed");
  assert_int_equal(d.completed_us, 1000 + m);
  return step_branch(r, "check-program-complete");
}

static void test_months_1_to_8(void **state) {
  world_t *w = *state;
  record_client(w, "c1", "ceo@acme.test");
  for (int m = 1; m <= 7; m++) {
    run_t r;
    assert_null(complete_month(w, "c1", m, &r));
    assert_int_equal(step_when(&r, "send-notification-email"), 1);
    assert_int_equal(step_when(&r, "send-celebration-email"), 0);
    assert_int_equal(step_when(&r, "celebrate-completion"), 0);
    assert_int_equal(has_month(w, "c1", m + 1), 0);
    int64_t before = tb_wall_us();
    json_t *res = step_ok(&r, "schedule-next-deliverable");
    assert_int_equal(json_integer_value(json_object_get(res, "month")), m + 1);
    assert_true(json_is_true(json_object_get(res, "generate")));
    tb_crm_deliverable_t d = deliverable(w, "c1", m + 1);
    assert_string_equal(d.status, "scheduled");
    assert_true(d.due_us >= before + 30 * DAY_US && d.due_us <= tb_wall_us() + 30 * DAY_US);

    assert_int_equal(step_when(&r, "generate-next-deliverable"), 1);
    char *in = step_input(&r, "generate-next-deliverable", "ai", "generate-deliverable");
    char want[96];
    snprintf(want, sizeof(want), "{\"client_id\":\"c1\",\"month\":%d}", m + 1);
    assert_string_equal(in, want);
    free(in);
    char reply[96];
    snprintf(reply, sizeof(reply), "{\"deliverable_id\": \"gen-%d\", \"month\": %d}", m + 1, m + 1);
    step_set(&r, "generate-next-deliverable", reply);
    step_ok(&r, "record-next-deliverable");
    d = deliverable(w, "c1", m + 1);
    assert_string_equal(d.status, "generated");
    snprintf(want, sizeof(want), "gen-%d", m + 1);
    assert_string_equal(d.deliverable_id, want);
    run_free(&r);
  }
  char *events = drain_events(w);
  assert_string_equal(events, ""); /* nothing published before month 8 */
  free(events);

  /* Month 8: the branch goes to the celebration; nothing for a month 9. */
  run_t r;
  assert_string_equal(complete_month(w, "c1", 8, &r), "send-celebration-email");
  assert_int_equal(step_when(&r, "send-celebration-email"), 1);
  assert_int_equal(step_when(&r, "celebrate-completion"), 1);
  char *in = step_input(&r, "send-celebration-email", "email", "send");
  assert_string_equal(in, "{\"client_id\":\"c1\",\"subject\":\"Congratulations on completing the "
                          "programme\",\"template\":\"celebration\",\"to\":\"ceo@acme.test\","
                          "\"vars\":{\"client_name\":\"Acme Co\",\"milestone\":"
                          "\"program-complete\"}}");
  free(in);
  step_ok(&r, "celebrate-completion");
  tb_crm_client_t c;
  int found = 0;
  assert_int_equal(tb_store_crm_client_get(w->st, "c1", &c, &found), TB_OK);
  assert_string_equal(c.status, "completed");
  assert_true(c.completed_us > 0);
  events = drain_events(w);
  assert_true(strncmp(events,
                      "CLIENT_MILESTONE_REACHED tb.evt.high.crm.CLIENT_MILESTONE_REACHED "
                      "{\"client_id\":\"c1\",\"milestone\":\"program-complete\",\"reached_at_us\":",
                      strlen("CLIENT_MILESTONE_REACHED tb.evt.high.crm.CLIENT_MILESTONE_REACHED "
                             "{\"client_id\":\"c1\",\"milestone\":\"program-complete\","
                             "\"reached_at_us\":")) == 0);
  assert_null(strchr(events, '\n')); /* exactly one event */
  free(events);
  for (int m = 2; m <= 8; m++) assert_true(has_month(w, "c1", m));
  run_free(&r);

  /* The journey log tells the story end to end. */
  const char *log = journey(w, "c1");
  assert_non_null(strstr(log, "deliverable-completed: Month 8 deliverable completed\n"
                              "program-completed: Programme completed: all 8 monthly "
                              "deliverables done"));
  assert_non_null(strstr(log, "deliverable-generated: Month 8 deliverable gen-8 generated"));
}

static void test_month_bounds(void **state) {
  world_t *w = *state;
  static const char *const bad[] = {"0", "9", "-1", "\"x\""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char input[128];
    snprintf(input, sizeof(input), "{\"client_id\": \"c1\", \"month\": %s}", bad[i]);
    run_t r = run_new(w, "crm.deliverable-completed", "wf", input);
    assert_int_equal(step_run(&r, "complete-deliverable"), TB_ERR_INVALID);
    run_free(&r);
  }
  assert_string_equal(tb_errdetail(),
                      "crm.deliverable-completed complete-deliverable: input.month 0 is not 1..8");
  /* A month given as a decimal string (a hand-written trigger input) is accepted. */
  run_t r =
      run_new(w, "crm.deliverable-completed", "wf", "{\"client_id\": \"c1\", \"month\": \"8\"}");
  assert_true(json_is_true(json_object_get(step_ok(&r, "complete-deliverable"), "final")));
  run_free(&r);

  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 9, 0, NULL, NULL),
                   TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "crm deliverable schedule c1: month 9 is not 1..8");
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 0, 0, NULL, NULL),
                   TB_ERR_INVALID);
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 1, 5, NULL, NULL), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 8, 5, NULL, NULL), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
}

/* A completion of month M whose M+1 is already generated does not generate it again. */
static void test_next_already_generated(void **state) {
  world_t *w = *state;
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_generated(w->st, "c1", 4, "d-4", 77, "x"), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  run_t r;
  assert_null(complete_month(w, "c1", 3, &r));
  json_t *res = step_ok(&r, "schedule-next-deliverable");
  assert_string_equal(jtext(res), "{\"due_at_us\":77,\"generate\":false,\"month\":4,"
                                  "\"status\":\"generated\"}");
  assert_int_equal(step_when(&r, "generate-next-deliverable"), 0);
  assert_int_equal(step_when(&r, "record-next-deliverable"), 0);
  run_free(&r);
}

/* ---------------------------------------------------------------- DELIVERABLE_OVERDUE */

static void test_overdue(void **state) {
  world_t *w = *state;
  record_client(w, "c1", "ceo@acme.test");
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 2, 500, "wf", NULL), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_completed(w->st, "c1", 3, "d-3", NULL, 900), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);

  run_t r = run_new(w, "crm.deliverable-overdue", "wf-od",
                    "{\"client_id\": \"c1\", \"deliverable_id\": \"d-2\", \"month\": 2, "
                    "\"title\": \"Brand\", \"due_at_us\": 600, \"days_overdue\": 3}");
  assert_string_equal(jtext(step_ok(&r, "mark-overdue")),
                      "{\"days_overdue\":3,\"marked\":true,\"month\":2}");
  tb_crm_deliverable_t d = deliverable(w, "c1", 2);
  assert_string_equal(d.status, "overdue");
  assert_int_equal(d.due_us, 600);
  assert_string_equal(d.deliverable_id, "d-2");
  assert_int_equal(step_when(&r, "send-reminder-email"), 1);
  char *in = step_input(&r, "send-reminder-email", "email", "send");
  assert_string_equal(in, "{\"client_id\":\"c1\",\"subject\":\"Reminder: month 2 deliverable is "
                          "overdue\",\"template\":\"reminder\",\"to\":\"ceo@acme.test\","
                          "\"vars\":{\"client_name\":\"Acme Co\",\"days_overdue\":3,"
                          "\"month\":2,\"title\":\"Brand\"}}");
  free(in);
  run_free(&r);

  /* Completed already: stays completed, no reminder. */
  r = run_new(w, "crm.deliverable-overdue", "wf-od2",
              "{\"client_id\": \"c1\", \"month\": 3, \"days_overdue\": 1}");
  assert_string_equal(jtext(step_ok(&r, "mark-overdue")),
                      "{\"days_overdue\":1,\"marked\":false,\"month\":3}");
  assert_string_equal(deliverable(w, "c1", 3).status, "completed");
  assert_int_equal(step_when(&r, "send-reminder-email"), 0);
  run_free(&r);
  assert_non_null(strstr(journey(w, "c1"),
                         "deliverable-overdue: Month 2 deliverable is 3 days overdue\n"
                         "deliverable-overdue: Month 3 deliverable reported overdue but "
                         "already completed; no reminder"));
}

/* ---------------------------------------------------------------- MONTH_TRANSITION */

static void test_month_transition(void **state) {
  world_t *w = *state;
  record_client(w, "c1", "ceo@acme.test");
  run_t r = run_new(w, "crm.month-transition", "wf-mt",
                    "{\"client_id\": \"c1\", \"month\": 2, \"period\": \"2025-03\"}");
  json_t *res = step_ok(&r, "check-next-deliverable");
  assert_true(json_is_true(json_object_get(res, "generate")));
  assert_int_equal(step_when(&r, "generate-deliverable"), 1);
  char *in = step_input(&r, "generate-deliverable", "ai", "generate-deliverable");
  assert_string_equal(in, "{\"client_id\":\"c1\",\"month\":2}");
  free(in);
  step_set(&r, "generate-deliverable", "{\"deliverable_id\": \"d-2\", \"month\": 2}");
  step_ok(&r, "record-deliverable");
  assert_string_equal(deliverable(w, "c1", 2).status, "generated");
  run_free(&r);

  /* The same month again: already generated, nothing to do. */
  r = run_new(w, "crm.month-transition", "wf-mt2", "{\"client_id\": \"c1\", \"month\": 2}");
  assert_true(json_is_false(json_object_get(step_ok(&r, "check-next-deliverable"), "generate")));
  assert_int_equal(step_when(&r, "generate-deliverable"), 0);
  run_free(&r);

  /* A client who finished the programme gets no more deliverables. */
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_crm_client_status(w->st, "c1", "completed"), TB_OK);
  assert_int_equal(tb_store_crm_client_status(w->st, "c1", "done"), TB_ERR_INVALID);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  r = run_new(w, "crm.month-transition", "wf-mt3", "{\"client_id\": \"c1\", \"month\": 3}");
  assert_string_equal(jtext(step_ok(&r, "check-next-deliverable")),
                      "{\"generate\":false,\"month\":3,\"status\":\"program-complete\"}");
  assert_int_equal(has_month(w, "c1", 3), 0);
  run_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_definitions),
      cmocka_unit_test(test_config_switches),
      cmocka_unit_test_setup_teardown(test_email_switch, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_client_created, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_client_activated, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_activation_on_error, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_plan_completed, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_months_1_to_8, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_month_bounds, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_next_already_generated, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_overdue, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_month_transition, world_setup, world_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
