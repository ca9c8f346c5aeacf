/* The seed workflows run by the real runtime, in process and without NATS: a pump plays the
 * relay, the engine and the services. It takes the outbox's rows in due order on a virtual clock
 * (so retry timers fire at once, yet after everything already due), runs each event's catalogue
 * handler in a transaction as the engine does, and answers each command with the simulator's own
 * pure answer function (tb_sim_answer), publishing the reply (and enrichment-complete) back
 * through the outbox. This checks that definitions, runtime, store and simulator vocabulary fit;
 * the NATS end-to-end tests live under tests/integration. The pump is wf_pump.h's. */
#include <sqlite3.h>

#include "store/crm.h"
#include "store/enrichment.h"
#include "wf_harness.h"
#include "wf_pump.h"

static int count_lines(const char *text, const char *line) {
  int n = 0;
  size_t len = strlen(line);
  for (const char *s = text; (s = strstr(s, line)) != NULL; s += len)
    if ((s == text || s[-1] == '\n') && s[len] == '\n') n++;
  return n;
}

typedef struct wf_acc {
  char text[8192];
  size_t used;
  int n;
} wf_acc_t;

static int add_wf(void *arg, const tb_wf_row_t *r) {
  wf_acc_t *acc = arg;
  acc->used += (size_t)snprintf(acc->text + acc->used, sizeof(acc->text) - acc->used, "%s %s%s%s\n",
                                r->name, r->status, r->error ? ": " : "", r->error ? r->error : "");
  acc->n++;
  return 0;
}

/* Every run as "name status" lines, newest first. */
static const char *runs(world_t *w, int *n) {
  static wf_acc_t acc;
  memset(&acc, 0, sizeof(acc));
  assert_int_equal(tb_store_wf_list(w->st, NULL, NULL, 0, 1000, add_wf, &acc), TB_OK);
  if (n) *n = acc.n;
  return acc.text;
}

/* ---------------------------------------------------------------- enrichment */

/* A run's steps go to tb.evt.<tier>.<its domain>.workflow-step, and only catalogue domains have
 * consumers: a workflow in any other domain would never run. */
static void test_workflow_domains_have_consumers(void **state) {
  world_t *w = *state;
  const char *names[TB_MAX_DOMAINS];
  int n = tb_catalogue_domains(w->cat, names, TB_MAX_DOMAINS);
  int n_domains = 0, checked = 0;
  const tb_wf_domain_t *const *doms = tb_wf_domains(&n_domains);
  for (int d = 0; d < n_domains; d++)
    for (int i = 0; i < doms[d]->n_workflows; i++) {
      const char *dom = doms[d]->workflows[i]->domain;
      int found = 0;
      for (int k = 0; k < n && k < TB_MAX_DOMAINS; k++) found |= strcmp(names[k], dom) == 0;
      if (!found)
        print_error("workflow %s: domain '%s' is not a catalogue domain\n",
                    doms[d]->workflows[i]->name, dom);
      assert_true(found);
      checked++;
    }
  assert_true(checked >= 9); /* crm's seven, enrichment's, ops' */
}

static void test_enrichment_end_to_end(void **state) {
  world_t *w = *state;
  pump_t *p = calloc(1, sizeof(*p));
  pump_init(p, w);
  add_fail(p, "enrichment.submit=429:1"); /* the seed's retry policy must absorb it */
  for (int i = 0; i < 3; i++) {
    char json[256], id[32];
    snprintf(json, sizeof(json),
             "{\"subscriber_id\": \"s%d\", \"email\": \"s%d@gmail.com\", \"email_type\": "
             "\"EMAIL_TYPE_PERSONAL\", \"source\": \"webhook\"}",
             i, i);
    snprintf(id, sizeof(id), "sub-%d", i);
    publish_text(w, "subscriber-created", id, json);
  }
  publish_text(w, "subscriber-created", "sub-corp",
               "{\"subscriber_id\": \"corp\", \"email\": \"ceo@acme.com\", \"email_type\": "
               "\"EMAIL_TYPE_CORPORATE\"}");
  pump_run(p);

  /* One run per personal subscriber; the first to batch takes all three, the others find
   * nothing pending and complete without submitting. */
  int n = 0;
  const char *list = runs(w, &n);
  assert_int_equal(n, 3);
  assert_int_equal(count_lines(list, "subscriber-enrichment completed"), 3);
  assert_string_equal(p->calls, "enrichment.submit 429\nenrichment.submit 200\n");
  for (int i = 0; i < 3; i++) {
    char sid[8];
    snprintf(sid, sizeof(sid), "s%d", i);
    tb_subscriber_t sub;
    int found = 0;
    assert_int_equal(tb_store_subscriber_get(w->st, sid, &sub, &found), TB_OK);
    assert_int_equal(found, 1);
    assert_non_null(sub.first_name);
    assert_non_null(sub.company);
    assert_non_null(sub.fields_json);
    tb_store_subscriber_clear(&sub);
  }
  int64_t done = 0, all = 0;
  assert_int_equal(tb_store_enrich_job_count(w->st, "done", &done), TB_OK);
  assert_int_equal(tb_store_enrich_job_count(w->st, NULL, &all), TB_OK);
  assert_int_equal(done, 3);
  assert_int_equal(all, 3);
  tb_subscriber_t sub;
  int found = 1;
  assert_int_equal(tb_store_subscriber_get(w->st, "corp", &sub, &found), TB_OK);
  assert_int_equal(found, 0); /* a corporate email starts nothing */
  free(p);
}

/* The wait times out (the provider never calls back): onError fails the batch's jobs. */
static void test_enrichment_webhook_timeout(void **state) {
  world_t *w = *state;
  pump_t *p = calloc(1, sizeof(*p));
  pump_init(p, w);
  publish_text(w, "subscriber-created", "sub-1",
               "{\"subscriber_id\": \"s1\", \"email\": \"s1@gmail.com\", \"email_type\": "
               "\"EMAIL_TYPE_PERSONAL\"}");
  /* Step by step: deliver everything, but drop enrichment-complete rows before they run. */
  for (int i = 0; i < 1000; i++) {
    tb_outbox_row_t *row = NULL;
    if (!next_row(w, &row)) break;
    if (strstr(row->subject, ".enrichment-complete") != NULL) { /* lost webhook */
      assert_int_equal(tb_store_begin(w->st), TB_OK);
      assert_int_equal(tb_store_outbox_delete(w->st, row->id), TB_OK);
      assert_int_equal(tb_store_commit(w->st), TB_OK);
    } else {
      pump_row(p, row);
    }
    tb_store_outbox_free(row, 1);
  }
  int n = 0;
  const char *list = runs(w, &n);
  assert_int_equal(n, 1);
  assert_string_equal(list, "subscriber-enrichment failed: step wait-for-webhook: timed out "
                            "waiting for enrichment-complete\n");
  int64_t failed = 0;
  assert_int_equal(tb_store_enrich_job_count(w->st, "failed", &failed), TB_OK);
  assert_int_equal(failed, 1);
  free(p);
}

/* ---------------------------------------------------------------- client journey */

static void journey_events(world_t *w) {
  publish_text(w, "CLIENT_CREATED", "ev-created",
               "{\"client_id\": \"c1\", \"user_id\": \"u1\", \"client_name\": \"Acme Co\", "
               "\"email\": \"ceo@acme.test\"}");
  publish_text(w, "CLIENT_ACTIVATED", "ev-activated",
               "{\"client_id\": \"c1\", \"user_id\": \"u1\", \"previous_status\": "
               "\"ONBOARDING\"}");
}

static void complete_months(world_t *w, pump_t *p) {
  for (int m = 1; m <= 8; m++) {
    char json[160], id[32];
    snprintf(json, sizeof(json),
             "{\"client_id\": \"c1\", \"user_id\": \"u1\", \"month\": %d, \"title\": \"M%d\"}", m,
             m);
    snprintf(id, sizeof(id), "ev-done-%d", m);
    publish_text(w, "DELIVERABLE_COMPLETED", id, json);
    pump_run(p);
  }
}

static void test_client_journey_to_month_8(void **state) {
  world_t *w = *state;
  pump_t *p = calloc(1, sizeof(*p));
  pump_init(p, w);
  journey_events(w);
  pump_run(p);
  complete_months(w, p);

  int n = 0;
  const char *list = runs(w, &n);
  /* created, activated, plan completed (published by the activation), 8 completions, and the
   * program-complete milestone (published by month 8). */
  assert_int_equal(n, 12);
  assert_int_equal(count_lines(list, "crm.client-created completed"), 1);
  assert_int_equal(count_lines(list, "crm.client-activated completed"), 1);
  assert_int_equal(count_lines(list, "crm.business-plan-completed completed"), 1);
  assert_int_equal(count_lines(list, "crm.deliverable-completed completed"), 8);
  assert_int_equal(count_lines(list, "crm.client-milestone-reached completed"), 1);

  /* welcome; plan notification; one notification per month; one celebration (month 8; the
   * milestone workflow does not send a second one). */
  assert_int_equal(count_lines(p->calls, "email.send 200"), 1 + 1 + 8 + 1);
  assert_int_equal(count_lines(p->calls, "ai.generate-business-plan 200"), 1);
  assert_int_equal(count_lines(p->calls, "ai.generate-deliverable 200"), 7); /* M2..M8 */
  assert_int_equal(count_lines(p->calls, "pdf.generate 200"), 1);

  tb_crm_client_t c;
  int found = 0;
  assert_int_equal(tb_store_crm_client_get(w->st, "c1", &c, &found), TB_OK);
  assert_string_equal(c.status, "completed");
  for (int m = 1; m <= 8; m++) {
    tb_crm_deliverable_t d;
    assert_int_equal(tb_store_crm_deliverable_get(w->st, "c1", m, &d, &found), TB_OK);
    assert_int_equal(found, 1);
    assert_string_equal(d.status, "completed");
    if (m > 1) assert_string_not_equal(d.deliverable_id, "");
  }
  tb_crm_plan_t plan;
  assert_int_equal(tb_store_crm_plan_get(w->st, "c1", &plan, &found), TB_OK);
  assert_string_equal(plan.status, "completed");
  assert_string_not_equal(plan.pdf_id, "");
  free(p);
}

/* Emails off and PDFs off: the journey runs the same, with no email and no PDF command. And a
 * failing email service never fails a journey. */
static void test_journey_switches_and_failing_email(void **state) {
  world_t *w = *state;
  pump_t *p = calloc(1, sizeof(*p));
  pump_init(p, w);
  w->cfg.email_workflows = 0;
  w->cfg.auto_generate_pdf = 0;
  journey_events(w);
  pump_run(p);
  assert_int_equal(count_lines(p->calls, "email.send 200"), 0);
  assert_int_equal(count_lines(p->calls, "pdf.generate 200"), 0);
  assert_string_equal(p->calls, "ai.generate-business-plan 200\n");

  w->cfg.email_workflows = 1;
  add_fail(p, "email.send=500");
  p->used = 0;
  p->calls[0] = '\0';
  complete_months(w, p);
  int n = 0;
  const char *list = runs(w, &n);
  assert_int_equal(count_lines(list, "crm.deliverable-completed completed"), 8);
  assert_null(strstr(list, "failed"));
  /* 3 attempts per email (the policy), 8 notifications and the celebration, all failing. */
  assert_int_equal(count_lines(p->calls, "email.send 500"), 3 * 9);
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_workflow_domains_have_consumers, world_setup,
                                      world_teardown),
      cmocka_unit_test_setup_teardown(test_enrichment_end_to_end, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_enrichment_webhook_timeout, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_client_journey_to_month_8, world_setup, world_teardown),
      cmocka_unit_test_setup_teardown(test_journey_switches_and_failing_email, world_setup,
                                      world_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
