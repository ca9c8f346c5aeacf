/* The seed workflows run by the real runtime, in process and without NATS: a pump plays the
 * relay, the engine and the services. It takes the outbox's rows in due order on a virtual clock
 * (so retry timers fire at once, yet after everything already due), runs each event's catalogue
 * handler in a transaction as the engine does, and answers each command with the simulator's own
 * pure answer function (tb_sim_answer), publishing the reply (and enrichment-complete) back
 * through the outbox. This checks that definitions, runtime, store and simulator vocabulary fit;
 * the NATS end-to-end tests live under tests/integration. */
#include <sqlite3.h>

#include "api/publish.h"
#include "sim/sim.h"
#include "store/crm.h"
#include "store/enrichment.h"
#include "store/workflow.h"
#include "wf_harness.h"
#include "workflows/registry.h"

typedef struct pump {
  world_t *w;
  tb_sim_opts_t sim;
  char calls[32768]; /* "service.action status" lines, in the order answered */
  size_t used;
  int n_commands;
} pump_t;

/* Queues event |event| (payload JSON text) in the outbox with id |id|, as a publisher would. */
static void publish(world_t *w, const char *event, const char *tier, const char *id,
                    json_t *payload) {
  tb_publish_req_t req = {.event = event, .payload = payload, .tier = tier, .id = id};
  tb_prepared_t p;
  /* An id is what the simulator would publish too ("reply:<command_id>"): one too long for an
   * envelope means the real reply could never be published either. */
  if (tb_publish_prepare(&w->cfg, w->cat, &req, &p) != TB_OK)
    fail_msg("publish %s id '%s' (%zu chars): %s", event, id, strlen(id), tb_errdetail());
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_outbox_add(w->st, p.subject, p.id, p.buf, p.len, NULL), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  tb_prepared_free(&p);
}

static void publish_text(world_t *w, const char *event, const char *id, const char *json) {
  json_error_t err;
  json_t *payload = json_loads(json, 0, &err);
  if (payload == NULL) fail_msg("bad payload %s: %s", json, err.text);
  publish(w, event, NULL, id, payload);
  json_decref(payload);
}

/* A service answering one command: the simulator's answer, published back as events. */
static void answer(pump_t *p, const tb_outbox_row_t *row) {
  Tierbus__V1__Command *cmd =
      tierbus__v1__command__unpack(NULL, row->len, (const uint8_t *)row->payload);
  if (cmd == NULL) fail_msg("outbox row %s on %s is not a Command", row->msg_id, row->subject);
  assert_string_equal(cmd->command_id, row->msg_id);
  tb_sim_answer_t a;
  assert_int_equal(tb_sim_answer(&p->sim, cmd, &a), TB_OK);
  p->used += (size_t)snprintf(p->calls + p->used, sizeof(p->calls) - p->used, "%s.%s %d\n",
                              cmd->service, cmd->action, a.drop ? 0 : a.status_code);
  p->n_commands++;
  if (!a.drop) {
    char id[TB_ID_MAX + 16];
    snprintf(id, sizeof(id), "reply:%s", cmd->command_id);
    json_t *reply =
        json_pack("{s:s, s:s, s:i, s:s, s:s}", "command_id", cmd->command_id, "workflow_id",
                  cmd->workflow_id, "status_code", a.status_code, "result_json",
                  a.result_json ? a.result_json : "", "error", a.error ? a.error : "");
    publish(p->w, "command-reply", cmd->reply_tier, id, reply);
    json_decref(reply);
    if (a.enrichment != NULL)
      publish(p->w, "enrichment-complete", cmd->reply_tier, a.enrichment_msg_id, a.enrichment);
  }
  tb_sim_answer_free(&a);
  tierbus__v1__command__free_unpacked(cmd, NULL);
}

/* Runs the catalogue handler of one event row inside a transaction and savepoint. */
static void deliver(pump_t *p, const tb_outbox_row_t *row) {
  world_t *w = p->w;
  tb_decoded_t d;
  if (tb_codec_decode(w->cat, row->payload, row->len, &d) != TB_OK)
    fail_msg("outbox row %s: %s", row->msg_id, tb_errdetail());
  tb_handler_fn fn = tb_registry_handler(d.def->handler);
  if (fn == NULL) fail_msg("%s: no handler '%s'", d.def->name, d.def->handler);
  int emitted = 0;
  tb_handler_ctx_t ctx = {.store = w->st,
                          .cfg = &w->cfg,
                          .cat = w->cat,
                          .msg = &d,
                          .tier = d.env->tier,
                          .emitted = &emitted};
  assert_int_equal(tb_store_savepoint(w->st), TB_OK);
  tb_status s = fn(&ctx);
  if (s != TB_OK) fail_msg("%s (%s) failed: %s", d.def->name, row->msg_id, tb_errdetail());
  assert_int_equal(tb_store_release(w->st), TB_OK);
  tb_decoded_free(&d);
}

/* Handles outbox rows, earliest due first, until the outbox is empty. */
static void pump_run(pump_t *p) {
  world_t *w = p->w;
  for (int i = 0; i < 20000; i++) {
    int64_t n = 0, due = 0;
    assert_int_equal(tb_store_outbox_count(w->st, &n), TB_OK);
    if (n == 0) return;
    assert_int_equal(tb_store_outbox_next_due(w->st, &due), TB_OK);
    tb_outbox_row_t *rows = NULL;
    int k = 0;
    assert_int_equal(tb_store_outbox_next(w->st, due, 1, &rows, &k), TB_OK);
    assert_int_equal(k, 1);
    assert_int_equal(tb_store_begin(w->st), TB_OK);
    assert_int_equal(tb_store_outbox_delete(w->st, rows[0].id), TB_OK);
    if (strncmp(rows[0].subject, "tb.cmd.", 7) == 0) {
      assert_int_equal(tb_store_commit(w->st), TB_OK);
      answer(p, &rows[0]);
    } else {
      deliver(p, &rows[0]);
      assert_int_equal(tb_store_commit(w->st), TB_OK);
    }
    tb_store_outbox_free(rows, k);
  }
  fail_msg("the outbox did not drain");
}

static void pump_init(pump_t *p, world_t *w) {
  memset(p, 0, sizeof(*p));
  p->w = w;
  tb_sim_opts_init(&p->sim);
  p->sim.cfg = &w->cfg;
  p->sim.cat = w->cat;
}

static void add_fail(pump_t *p, const char *spec) {
  assert_int_equal(tb_sim_parse_fail(spec, &p->sim.fails[p->sim.n_fails++]), TB_OK);
}

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
  assert_int_equal(tb_store_wf_list(w->st, NULL, NULL, 1000, add_wf, &acc), TB_OK);
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
    int64_t n = 0, due = 0;
    assert_int_equal(tb_store_outbox_count(w->st, &n), TB_OK);
    if (n == 0) break;
    assert_int_equal(tb_store_outbox_next_due(w->st, &due), TB_OK);
    tb_outbox_row_t *rows = NULL;
    int k = 0;
    assert_int_equal(tb_store_outbox_next(w->st, due, 1, &rows, &k), TB_OK);
    assert_int_equal(tb_store_begin(w->st), TB_OK);
    assert_int_equal(tb_store_outbox_delete(w->st, rows[0].id), TB_OK);
    if (strncmp(rows[0].subject, "tb.cmd.", 7) == 0) {
      assert_int_equal(tb_store_commit(w->st), TB_OK);
      answer(p, &rows[0]);
    } else if (strstr(rows[0].subject, ".enrichment-complete") != NULL) {
      assert_int_equal(tb_store_commit(w->st), TB_OK); /* lost webhook */
    } else {
      deliver(p, &rows[0]);
      assert_int_equal(tb_store_commit(w->st), TB_OK);
    }
    tb_store_outbox_free(rows, k);
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
