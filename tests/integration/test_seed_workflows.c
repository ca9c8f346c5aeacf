/* Integration: the seed workflows end to end through real processes (nats-server, `tierbus
 * worker`, `tierbus sim`): seed 003's subscriber enrichment with a 429 on the first submit, and
 * seed 001's client journey from CLIENT_CREATED to the month-8 celebration (CLIENT_ACTIVATED, the
 * month-1 MONTH_TRANSITION, DELIVERABLE_COMPLETED M1..M8; BUSINESS_PLAN_COMPLETED and
 * CLIENT_MILESTONE_REACHED follow by themselves), and the journey with email switched off. Every
 * command the runs send is read back from the command stream, and every row they leave is checked
 * exactly. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/itest.h"

#define RUN_MS 20000
#define WAIT_MS 20000
#define MAX_CMDS 64

/* ---------------------------------------------------------------- helpers */

static void run_ok(tb_h_t *h, const char *cmd) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, cmd, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* Starts the simulator and waits until it answers: its consumer then exists, so no command can
 * be missed and none waits out a slow start. */
static void start_sim(tb_h_t *h, tb_h_child_t *sim, const char *a1, const char *a2, const char *a3,
                      const char *a4) {
  tb_assert_ok(tb_h_spawn(h, sim, "sim", "sim", a1, a2, a3, a4, NULL));
  int64_t deadline = tb_h_now_ms() + WAIT_MS;
  for (;;) {
    char *out = tb_h_read_file(sim->out_path);
    int ready = out != NULL && strstr(out, "tierbus sim: answering") != NULL;
    free(out);
    if (ready) return;
    if (!tb_h_child_alive(sim) || tb_h_now_ms() > deadline) {
      tb_h_dump_logs(h, 25);
      fail_msg("the simulator did not start");
    }
    tb_h_sleep_ms(10);
  }
}

/* Publishes |event| with envelope id |id| and payload |json|. */
static void publish(tb_h_t *h, const char *event, const char *id, const char *json) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", event, "--json", json, "--id", id, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* The simulator's ids are a pure function of the command id (src/sim/sim.h): "sim-<kind>-" and
 * the 64-bit FNV-1a of "<kind>:<command id>". Computing them here proves which attempt's command
 * produced the id a row carries. */
static void sim_id(const char *kind, const char *command_id, char *buf, size_t cap) {
  uint64_t x = 1469598103934665603ULL;
  for (const char *p = kind; *p; p++) x = (x ^ (unsigned char)*p) * 1099511628211ULL;
  x = (x ^ ':') * 1099511628211ULL;
  for (const char *p = command_id; *p; p++) x = (x ^ (unsigned char)*p) * 1099511628211ULL;
  snprintf(buf, cap, "sim-%s-%016llx", kind, (unsigned long long)x);
}

static int64_t wait_completed(tb_h_t *h, const char *wf) {
  return tb_h_wait_sql(h, 1, WAIT_MS,
                       "SELECT count(*) FROM workflows WHERE id='%s' AND status='completed'", wf);
}

/* History rows of run |wf|, step |step|, attempt |attempt| (0 = any) in |status|. */
static int64_t hist(tb_h_t *h, const char *wf, const char *step, int attempt, const char *status) {
  return tb_h_sql_int(h,
                      "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' AND name='%s' "
                      "AND (%d = 0 OR attempt=%d) AND status='%s'",
                      wf, step, attempt, attempt, status);
}

/* The run's state and history as `tierbus workflows show ID --json` prints them: "<status>|" then
 * one "<step>#<attempt>:<status>[:<code>]" per history row, comma-separated. Caller frees. */
static char *shown_history(tb_h_t *h, const char *wf) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "workflows", "show", wf, "--json", NULL);
  tb_assert_exit(r, 0);
  json_error_t jerr;
  json_t *root = json_loads(r.out, 0, &jerr);
  if (root == NULL) fail_msg("workflows show %s --json: %s in:\n%s", wf, jerr.text, r.out);
  tb_h_result_free(&r);
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  assert_non_null(f);
  fprintf(f, "%s|",
          json_string_value(json_object_get(json_object_get(root, "workflow"), "status")));
  size_t i;
  json_t *row;
  json_array_foreach(json_object_get(root, "history"), i, row) {
    fprintf(f, "%s%s#%lld:%s", i ? "," : "", json_string_value(json_object_get(row, "name")),
            (long long)json_integer_value(json_object_get(row, "attempt")),
            json_string_value(json_object_get(row, "status")));
    json_int_t code = json_integer_value(json_object_get(row, "code"));
    if (code != 0) fprintf(f, ":%lld", (long long)code);
  }
  fclose(f);
  json_decref(root);
  return out;
}

/* The command stream, read back whole: subject, Nats-Msg-Id (the command id) and the packed
 * Command, whose string fields (input_json among them) are plain bytes inside it. */
typedef struct cmds {
  int n;
  char subject[MAX_CMDS][128];
  char id[MAX_CMDS][160];
  char *data[MAX_CMDS]; /* NUL-terminated copy */
} cmds_t;

static void cmds_load(tb_h_t *h, cmds_t *c) {
  memset(c, 0, sizeof(*c));
  int64_t n = tb_h_stream_msgs(h, "TB_CMD");
  assert_true(n >= 0 && n <= MAX_CMDS);
  for (int64_t seq = 1; seq <= n; seq++) {
    natsMsg *m = tb_h_stream_get(h, "TB_CMD", (uint64_t)seq);
    assert_non_null(m);
    snprintf(c->subject[c->n], sizeof(c->subject[0]), "%s", natsMsg_GetSubject(m));
    snprintf(c->id[c->n], sizeof(c->id[0]), "%s", tb_h_header(m, "Nats-Msg-Id"));
    int len = natsMsg_GetDataLength(m);
    c->data[c->n] = calloc(1, (size_t)len + 1);
    assert_non_null(c->data[c->n]);
    memcpy(c->data[c->n], natsMsg_GetData(m), (size_t)len);
    /* A protobuf carries NULs; the searches below only need the JSON text, so make it one
     * string. */
    for (int i = 0; i < len; i++)
      if (c->data[c->n][i] == '\0') c->data[c->n][i] = '\n';
    c->n++;
    natsMsg_Destroy(m);
  }
}

static void cmds_free(cmds_t *c) {
  for (int i = 0; i < c->n; i++) free(c->data[i]);
}

/* Commands on |subject| (NULL: any) with command id |id| (NULL: any). */
static int cmds_count(const cmds_t *c, const char *subject, const char *id) {
  int k = 0;
  for (int i = 0; i < c->n; i++)
    if ((subject == NULL || strcmp(c->subject[i], subject) == 0) &&
        (id == NULL || strcmp(c->id[i], id) == 0))
      k++;
  return k;
}

/* The data of the one command |id|; fails the test unless exactly one is on |subject|. */
static const char *cmds_data(const cmds_t *c, const char *subject, const char *id) {
  if (cmds_count(c, subject, id) != 1) {
    for (int i = 0; i < c->n; i++) print_error("  TB_CMD %s %s\n", c->subject[i], c->id[i]);
    fail_msg("expected exactly one command %s on %s", id, subject);
  }
  for (int i = 0; i < c->n; i++)
    if (strcmp(c->subject[i], subject) == 0 && strcmp(c->id[i], id) == 0) return c->data[i];
  return NULL;
}

/* ---------------------------------------------------------------- seed 003: enrichment */

#define ENRICH_WF "subscriber-enrichment:sc-p1"

static void test_enrichment_429_then_ok(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker, sim;
  int64_t t0 = tb_h_now_ms();
  tb_assert_ok(tb_h_server_start(h));
  run_ok(h, "init");
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  /* The webhook comes a little after the submit's reply, as the provider's would. */
  start_sim(h, &sim, "--fail", "enrichment.submit=429:1", "--enrich-delay", "300ms");

  /* A corporate address starts nothing; a personal one starts the workflow. */
  publish(h, "subscriber-created", "sc-c1",
          "{\"subscriber_id\": \"sub-c1\", \"email\": \"bob@acme-corp.example\", "
          "\"email_type\": \"EMAIL_TYPE_CORPORATE\", \"source\": \"webhook\"}");
  publish(h, "subscriber-created", "sc-p1",
          "{\"subscriber_id\": \"sub-p1\", \"email\": \"ada.person@gmail.com\", "
          "\"email_type\": \"EMAIL_TYPE_PERSONAL\", \"source\": \"webhook\"}");
  assert_int_equal(wait_completed(h, ENRICH_WF), 1);
  assert_int_equal(
      tb_h_wait_sql(h, 1, WAIT_MS, "SELECT count(*) FROM processed WHERE msg_id='sc-c1'"), 1);
  tb_h_sleep_ms(300); /* a stray run or command, if any, would show up now */

  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflows"), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflows WHERE id='%s' AND "
                                "name='subscriber-enrichment' AND domain='enrichment' AND "
                                "tier='normal' AND error IS NULL AND finished_us > 0",
                                ENRICH_WF),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM enrichment_jobs WHERE "
                                   "subscriber_id='sub-c1'"),
                   0);

  /* The submit's command ids, and the enrichment id the simulator derives from attempt 2. */
  const char *cmd1 = ENRICH_WF ":submit-to-fullenrich:1",
             *cmd2 = ENRICH_WF ":submit-to-fullenrich:2";
  char eid[64];
  sim_id("enr", cmd2, eid, sizeof(eid));

  /* History: every step once, except the submit: 429 on attempt 1 (retried after the seed's
   * initial 1 s), ok on attempt 2. */
  assert_int_equal(hist(h, ENRICH_WF, "record-subscriber", 1, "ok"), 1);
  assert_int_equal(hist(h, ENRICH_WF, "batch-pending-jobs", 1, "ok"), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' "
                                "AND name='submit-to-fullenrich' AND attempt=1 AND "
                                "status='failed' AND code=429 AND "
                                "detail='retry 2 of 5 in 1000 ms' AND "
                                "error='status 429: simulated 429'",
                                ENRICH_WF),
                   1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' "
                                "AND name='submit-to-fullenrich' AND attempt=2 AND status='ok' "
                                "AND json_extract(result, '$.enrichment_id')='%s'",
                                ENRICH_WF, eid),
                   1);
  assert_int_equal(hist(h, ENRICH_WF, "submit-to-fullenrich", 0, "waiting"), 2);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' "
                                "AND name='submit-to-fullenrich'",
                                ENRICH_WF),
                   4);
  /* The retry waited out its delay: attempt 2 started at least 1 s after attempt 1 failed. */
  assert_true(tb_h_sql_int(h,
                           "SELECT b.started_us - a.ended_us FROM workflow_history a, "
                           "workflow_history b WHERE a.workflow_id='%s' AND b.workflow_id='%s' "
                           "AND a.name='submit-to-fullenrich' AND a.status='failed' AND "
                           "b.name='submit-to-fullenrich' AND b.attempt=2 AND "
                           "b.status='waiting'",
                           ENRICH_WF, ENRICH_WF) >= 1000000);
  assert_int_equal(hist(h, ENRICH_WF, "register-workflow", 1, "ok"), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' "
                                "AND name='wait-for-webhook' AND status='waiting' AND "
                                "detail LIKE 'enrichment-complete key %s%%'",
                                ENRICH_WF, eid),
                   1);
  assert_int_equal(hist(h, ENRICH_WF, "wait-for-webhook", 1, "ok"), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' "
                                "AND name='process-results' AND status='ok' AND "
                                "json_extract(result, '$.enriched')=1 AND "
                                "json_extract(result, '$.failed')=0 AND "
                                "json_extract(result, '$.missing')=0 AND "
                                "json_extract(result, '$.unmatched')=0",
                                ENRICH_WF),
                   1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' "
                                "AND name='unregister-workflow' AND status='ok' AND "
                                "json_extract(result, '$.removed')=1",
                                ENRICH_WF),
                   1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' "
                                "AND status IN ('failed', 'timeout', 'skipped', 'cancelled')",
                                ENRICH_WF),
                   1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' "
                                "AND name='onError'",
                                ENRICH_WF),
                   0);

  /* The same history through the CLI, row by row. */
  char *shown = shown_history(h, ENRICH_WF);
  assert_string_equal(shown, "completed|record-subscriber#1:ok,batch-pending-jobs#1:ok,"
                             "submit-to-fullenrich#1:waiting,submit-to-fullenrich#1:failed:429,"
                             "submit-to-fullenrich#2:waiting,submit-to-fullenrich#2:ok,"
                             "register-workflow#1:ok,wait-for-webhook#1:waiting,"
                             "wait-for-webhook#1:ok,process-results#1:ok,unregister-workflow#1:ok");
  free(shown);

  /* The subscriber carries exactly the fields the provider's webhook delivered. */
  assert_int_equal(
      tb_h_sql_int(h,
                   "SELECT count(*) FROM subscribers s, workflow_inbox i WHERE "
                   "s.subscriber_id='sub-p1' AND s.email='ada.person@gmail.com' AND "
                   "s.email_type='personal' AND s.source='webhook' AND s.enriched_us > 0 AND "
                   "i.event='enrichment-complete' AND i.key='%s' AND i.workflow_id='%s' AND "
                   "json_extract(i.payload, '$.results[0].subscriber_id')='sub-p1' AND "
                   "length(s.first_name) > 0 AND length(s.last_name) > 0 AND "
                   "length(s.company) > 0 AND "
                   "s.first_name=json_extract(i.payload, '$.results[0].fields.first_name') AND "
                   "s.last_name=json_extract(i.payload, '$.results[0].fields.last_name') AND "
                   "s.company=json_extract(i.payload, '$.results[0].fields.company') AND "
                   "s.linkedin_url=json_extract(i.payload, '$.results[0].fields.linkedin_url') AND "
                   "s.linkedin_url LIKE 'https://www.linkedin.com/in/%%' AND "
                   "json_extract(s.enriched_fields, '$.first_name')=s.first_name AND "
                   "json_extract(s.enriched_fields, '$.company')=s.company",
                   eid, ENRICH_WF),
      1);
  /* Its job is done, in this run's batch, which the provider accepted as |eid|. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM enrichment_jobs"), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM enrichment_jobs WHERE "
                                "subscriber_id='sub-p1' AND status='done' AND error IS NULL AND "
                                "batch_id='batch:%s'",
                                ENRICH_WF),
                   1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM enrichment_batches WHERE "
                                "batch_id='batch:%s' AND workflow_id='%s' AND status='done' AND "
                                "n_jobs=1 AND enrichment_id='%s'",
                                ENRICH_WF, ENRICH_WF, eid),
                   1);
  /* The mapping is gone, and the run waits for nothing more. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM enrichment_tracker"), 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_waits"), 0);

  /* TB_CMD: exactly the two submits, each with the batch of the personal subscriber only. */
  cmds_t c;
  cmds_load(h, &c);
  assert_int_equal(c.n, 2);
  assert_int_equal(cmds_count(&c, "tb.cmd.enrichment.submit", NULL), 2);
  for (int i = 0; i < 2; i++) {
    const char *data = cmds_data(&c, "tb.cmd.enrichment.submit", i == 0 ? cmd1 : cmd2);
    tb_assert_contains(data, "\"batch_id\":\"batch:" ENRICH_WF "\"");
    tb_assert_contains(data, "\"subscriber_id\":\"sub-p1\"");
    tb_assert_not_contains(data, "sub-c1");
  }
  cmds_free(&c);

  assert_int_equal(tb_h_child_term(&sim, 15000), 0);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
  print_message("enrichment end to end: %lld ms\n", (long long)(tb_h_now_ms() - t0));
}

/* ---------------------------------------------------------------- seed 001: client journey */

#define CLIENT "cl-1"
#define CREATED_WF "crm.client-created:cc-1"
#define ACTIVATED_WF "crm.client-activated:ca-1"
#define MONTH1_WF "crm.month-transition:mt-1"

static void deliverable_wf(int month, char *buf, size_t cap) {
  snprintf(buf, cap, "crm.deliverable-completed:dc-%d", month);
}

/* The id the simulator gave the deliverable generated for month |month| + 1: by the month-1
 * transition (|month| 0), else by the run that completed |month|. */
static void generated_id(int month, char *buf, size_t cap) {
  char wf[64], cmd[128];
  if (month == 0) {
    snprintf(cmd, sizeof(cmd), "%s:generate-deliverable:1", MONTH1_WF);
  } else {
    deliverable_wf(month, wf, sizeof(wf));
    snprintf(cmd, sizeof(cmd), "%s:generate-next-deliverable:1", wf);
  }
  sim_id("dlv", cmd, buf, cap);
}

static void test_client_journey(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker, sim;
  int64_t t0 = tb_h_now_ms();
  tb_assert_ok(tb_h_server_start(h));
  run_ok(h, "init");
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  start_sim(h, &sim, NULL, NULL, NULL, NULL);

  /* CLIENT_CREATED: the client row and the welcome email. */
  publish(h, "CLIENT_CREATED", "cc-1",
          "{\"client_id\": \"" CLIENT "\", \"user_id\": \"u-1\", \"client_name\": \"Ada Client\", "
          "\"email\": \"ada@client.example\"}");
  assert_int_equal(wait_completed(h, CREATED_WF), 1);
  assert_int_equal(hist(h, CREATED_WF, "record-client", 1, "ok"), 1);
  assert_int_equal(hist(h, CREATED_WF, "send-welcome-email", 1, "ok"), 1);

  /* CLIENT_ACTIVATED: month 1 scheduled, the plan generated and BUSINESS_PLAN_COMPLETED
   * published, whose own run makes the PDF and sends the notification. */
  publish(h, "CLIENT_ACTIVATED", "ca-1",
          "{\"client_id\": \"" CLIENT "\", \"user_id\": \"u-1\", "
          "\"previous_status\": \"ONBOARDING\"}");
  assert_int_equal(wait_completed(h, ACTIVATED_WF), 1);
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflows WHERE "
                                 "name='crm.business-plan-completed' AND "
                                 "status IN ('completed', 'failed', 'cancelled')"),
                   1);
  char *plan_wf = tb_h_sql_text(h, "SELECT id FROM workflows WHERE "
                                   "name='crm.business-plan-completed' AND status='completed'");
  assert_non_null(plan_wf);
  char bp_id[64], pdf_id[64], cmd[256];
  sim_id("bp", ACTIVATED_WF ":generate-business-plan:1", bp_id, sizeof(bp_id));
  snprintf(cmd, sizeof(cmd), "%s:generate-pdf:1", plan_wf);
  sim_id("pdf", cmd, pdf_id, sizeof(pdf_id));
  assert_int_equal(hist(h, ACTIVATED_WF, "schedule-month-1", 1, "ok"), 1);
  assert_int_equal(hist(h, ACTIVATED_WF, "generate-business-plan", 1, "ok"), 1);
  assert_int_equal(hist(h, ACTIVATED_WF, "record-business-plan", 1, "ok"), 1);
  /* The plan's follow-up run was started by the BUSINESS_PLAN_COMPLETED the activation
   * published, for this plan. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE "
                                   "event_type='BUSINESS_PLAN_COMPLETED' AND outcome='applied'"),
                   1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflows WHERE id='%s' AND "
                                "json_extract(data, '$.input.business_plan_id')='%s' AND "
                                "json_extract(data, '$.input.client_id')='" CLIENT "'",
                                plan_wf, bp_id),
                   1);
  assert_int_equal(hist(h, plan_wf, "record-plan-completed", 1, "ok"), 1);
  assert_int_equal(hist(h, plan_wf, "generate-pdf", 1, "ok"), 1);
  assert_int_equal(hist(h, plan_wf, "record-pdf", 1, "ok"), 1);
  assert_int_equal(hist(h, plan_wf, "send-notification-email", 1, "ok"), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM crm_business_plans WHERE "
                                "client_id='" CLIENT "' AND business_plan_id='%s' AND "
                                "status='completed' AND pdf_id='%s' AND "
                                "pdf_path='sim/pdf/" CLIENT "/%s.pdf' AND error IS NULL AND "
                                "workflow_id='" ACTIVATED_WF "' AND completed_us > 0",
                                bp_id, pdf_id, pdf_id),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM crm_deliverables WHERE "
                                   "client_id='" CLIENT "' AND month=1 AND status='scheduled' AND "
                                   "deliverable_id IS NULL AND workflow_id='" ACTIVATED_WF "'"),
                   1);

  /* MONTH_TRANSITION of month 1: activation only scheduled it (seed 001); the month's start
   * generates it, so that every month 1..8 is generated as a command. */
  publish(h, "MONTH_TRANSITION", "mt-1",
          "{\"client_id\": \"" CLIENT "\", \"user_id\": \"u-1\", \"month\": 1, "
          "\"period\": \"2026-01\"}");
  assert_int_equal(wait_completed(h, MONTH1_WF), 1);
  assert_int_equal(hist(h, MONTH1_WF, "check-next-deliverable", 1, "ok"), 1);
  assert_int_equal(hist(h, MONTH1_WF, "generate-deliverable", 1, "ok"), 1);
  assert_int_equal(hist(h, MONTH1_WF, "record-deliverable", 1, "ok"), 1);

  /* DELIVERABLE_COMPLETED for months 1..8, each after the run before it completed: every run
   * up to month 7 generates the next month, month 8 celebrates. */
  for (int m = 1; m <= 8; m++) {
    char wf[64], did[64], json[512], id[16];
    deliverable_wf(m, wf, sizeof(wf));
    generated_id(m - 1, did, sizeof(did));
    assert_int_equal(tb_h_sql_int(h,
                                  "SELECT count(*) FROM crm_deliverables WHERE "
                                  "client_id='" CLIENT "' AND month=%d AND "
                                  "status='generated' AND deliverable_id='%s'",
                                  m, did),
                     1);
    snprintf(json, sizeof(json),
             "{\"client_id\": \"" CLIENT "\", \"user_id\": \"u-1\", \"deliverable_id\": \"%s\", "
             "\"month\": %d, \"title\": \"Month %d deliverable\"}",
             did, m, m);
    snprintf(id, sizeof(id), "dc-%d", m);
    publish(h, "DELIVERABLE_COMPLETED", id, json);
    if (wait_completed(h, wf) != 1) fail_msg("month %d: run %s did not complete", m, wf);
    assert_int_equal(hist(h, wf, "complete-deliverable", 1, "ok"), 1);
    assert_int_equal(hist(h, wf, "send-notification-email", 1, "ok"), 1);
    if (m < 8) {
      char next[64];
      generated_id(m, next, sizeof(next));
      assert_int_equal(tb_h_sql_int(h,
                                    "SELECT count(*) FROM workflow_history WHERE "
                                    "workflow_id='%s' AND name='check-program-complete' AND "
                                    "status='ok' AND detail='go to schedule-next-deliverable'",
                                    wf),
                       1);
      assert_int_equal(hist(h, wf, "schedule-next-deliverable", 1, "ok"), 1);
      assert_int_equal(hist(h, wf, "generate-next-deliverable", 1, "ok"), 1);
      assert_int_equal(hist(h, wf, "record-next-deliverable", 1, "ok"), 1);
      assert_int_equal(hist(h, wf, "send-celebration-email", 1, "skipped"), 1);
      assert_int_equal(hist(h, wf, "celebrate-completion", 1, "skipped"), 1);
      assert_int_equal(tb_h_sql_int(h,
                                    "SELECT count(*) FROM crm_deliverables WHERE "
                                    "client_id='" CLIENT "' AND month=%d AND "
                                    "status='generated' AND deliverable_id='%s' AND "
                                    "workflow_id='%s' AND due_us > 0",
                                    m + 1, next, wf),
                       1);
    }
  }

  /* Month 8 took the celebration branch: nothing is scheduled past the programme. */
  const char *final_wf = "crm.deliverable-completed:dc-8";
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' "
                                "AND name='check-program-complete' AND status='ok' AND "
                                "detail='go to send-celebration-email'",
                                final_wf),
                   1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE workflow_id='%s' "
                                "AND name IN ('schedule-next-deliverable', "
                                "'generate-next-deliverable', 'record-next-deliverable')",
                                final_wf),
                   0);
  assert_int_equal(hist(h, final_wf, "send-celebration-email", 1, "ok"), 1);
  assert_int_equal(hist(h, final_wf, "celebrate-completion", 1, "ok"), 1);
  char *shown = shown_history(h, final_wf);
  assert_string_equal(shown,
                      "completed|complete-deliverable#1:ok,send-notification-email#1:waiting,"
                      "send-notification-email#1:ok,check-program-complete#1:ok,"
                      "send-celebration-email#1:waiting,send-celebration-email#1:ok,"
                      "celebrate-completion#1:ok");
  free(shown);

  /* CLIENT_MILESTONE_REACHED was published and handled; its run sends no second celebration. */
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflows WHERE "
                                 "name='crm.client-milestone-reached' AND "
                                 "status='completed'"),
                   1);
  char *ms_wf = tb_h_sql_text(h, "SELECT id FROM workflows WHERE "
                                 "name='crm.client-milestone-reached'");
  assert_non_null(ms_wf);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE "
                                   "event_type='CLIENT_MILESTONE_REACHED' AND outcome='applied'"),
                   1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflows WHERE id='%s' AND "
                                "json_extract(data, '$.input.milestone')='program-complete' AND "
                                "json_extract(data, '$.input.client_id')='" CLIENT "'",
                                ms_wf),
                   1);
  assert_int_equal(hist(h, ms_wf, "log-milestone", 1, "ok"), 1);
  assert_int_equal(hist(h, ms_wf, "send-celebration-email", 1, "skipped"), 1);
  tb_h_sleep_ms(300); /* a stray run or command, if any, would show up now */

  /* Every crm run completed: created, activated, plan, month 1, 8 deliverables, the
   * milestone. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflows WHERE domain='crm'"), 13);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflows WHERE domain='crm' AND "
                                   "status='completed' AND error IS NULL"),
                   13);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflows WHERE domain<>'crm'"), 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_history WHERE status IN "
                                   "('failed', 'timeout', 'cancelled') OR name='onError'"),
                   0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflow_waits"), 0);

  /* The client finished the programme; every month is completed with its deliverable. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM crm_clients WHERE client_id='" CLIENT "' "
                                   "AND name='Ada Client' AND email='ada@client.example' AND "
                                   "status='completed' AND created_by='u-1' AND "
                                   "activated_us > 0 AND completed_us >= activated_us"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM crm_deliverables"), 8);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM crm_deliverables WHERE "
                                   "client_id='" CLIENT "' AND month BETWEEN 1 AND 8 AND "
                                   "status='completed' AND completed_us > 0 AND "
                                   "title='Month ' || month || ' deliverable'"),
                   8);
  for (int m = 1; m <= 8; m++) {
    char did[64];
    generated_id(m - 1, did, sizeof(did));
    assert_int_equal(tb_h_sql_int(h,
                                  "SELECT count(*) FROM crm_deliverables WHERE month=%d AND "
                                  "deliverable_id='%s' AND generated_us > 0",
                                  m, did),
                     1);
  }

  /* The activity trail, in order. */
  char *kinds = tb_h_sql_text(h, "SELECT group_concat(kind, ',') FROM (SELECT kind FROM "
                                 "crm_activity WHERE client_id='" CLIENT "' ORDER BY id)");
  char want[2048] = "client-created,client-activated,deliverable-scheduled,"
                    "business-plan-generated,business-plan-completed,pdf-generated,"
                    "month-transition,deliverable-scheduled,deliverable-generated";
  for (int m = 1; m <= 7; m++)
    strcat(want, ",deliverable-completed,deliverable-scheduled,deliverable-generated");
  strcat(want, ",deliverable-completed,program-completed,milestone-reached");
  assert_non_null(kinds);
  assert_string_equal(kinds, want);
  free(kinds);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM crm_activity"), 33);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM crm_activity WHERE user_id='u-1' AND "
                                   "workflow_id IN (SELECT id FROM workflows)"),
                   33);

  /* TB_CMD: exactly the journey's 21 commands, each once. */
  cmds_t c;
  cmds_load(h, &c);
  const char *welcome = cmds_data(&c, "tb.cmd.email.send", CREATED_WF ":send-welcome-email:1");
  tb_assert_contains(welcome, "\"to\":\"ada@client.example\"");
  tb_assert_contains(welcome, "\"template\":\"welcome\"");
  tb_assert_contains(welcome, "\"client_name\":\"Ada Client\"");
  cmds_data(&c, "tb.cmd.ai.generate-business-plan", ACTIVATED_WF ":generate-business-plan:1");
  snprintf(cmd, sizeof(cmd), "%s:generate-pdf:1", plan_wf);
  tb_assert_contains(cmds_data(&c, "tb.cmd.pdf.generate", cmd), "\"kind\":\"business-plan\"");
  snprintf(cmd, sizeof(cmd), "%s:send-notification-email:1", plan_wf);
  tb_assert_contains(cmds_data(&c, "tb.cmd.email.send", cmd), "\"template\":\"notification\"");
  tb_assert_contains(
      cmds_data(&c, "tb.cmd.ai.generate-deliverable", MONTH1_WF ":generate-deliverable:1"),
      "\"month\":1");
  for (int m = 1; m <= 8; m++) {
    char wf[64];
    deliverable_wf(m, wf, sizeof(wf));
    snprintf(cmd, sizeof(cmd), "%s:send-notification-email:1", wf);
    tb_assert_contains(cmds_data(&c, "tb.cmd.email.send", cmd), "\"template\":\"notification\"");
    if (m < 8) {
      char month[32];
      snprintf(cmd, sizeof(cmd), "%s:generate-next-deliverable:1", wf);
      snprintf(month, sizeof(month), "\"month\":%d", m + 1);
      tb_assert_contains(cmds_data(&c, "tb.cmd.ai.generate-deliverable", cmd), month);
    }
  }
  tb_assert_contains(cmds_data(&c, "tb.cmd.email.send",
                               "crm.deliverable-completed:dc-8:"
                               "send-celebration-email:1"),
                     "\"template\":\"celebration\"");
  assert_int_equal(cmds_count(&c, "tb.cmd.email.send", NULL), 11);
  assert_int_equal(cmds_count(&c, "tb.cmd.ai.generate-deliverable", NULL), 8);
  assert_int_equal(c.n, 21);
  cmds_free(&c);
  free(plan_wf);
  free(ms_wf);

  assert_int_equal(tb_h_child_term(&sim, 15000), 0);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
  print_message("client journey M1..M8: %lld ms\n", (long long)(tb_h_now_ms() - t0));
}

/* email_workflows=false (seed 001's ENABLE_EMAIL_WORKFLOWS) given to the worker with --set: the
 * journey runs, its email steps are skipped and no email command is ever sent, while the plan and
 * its PDF still are. */
static void test_journey_without_email(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t worker, sim;
  int64_t t0 = tb_h_now_ms();
  tb_assert_ok(tb_h_server_start(h));
  run_ok(h, "init");
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", "--set", "email_workflows=false", NULL));
  start_sim(h, &sim, NULL, NULL, NULL, NULL);

  publish(h, "CLIENT_CREATED", "cc-1",
          "{\"client_id\": \"" CLIENT "\", \"user_id\": \"u-1\", \"client_name\": \"Ada Client\", "
          "\"email\": \"ada@client.example\"}");
  assert_int_equal(wait_completed(h, CREATED_WF), 1);
  assert_int_equal(hist(h, CREATED_WF, "record-client", 1, "ok"), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM workflow_history WHERE "
                                "workflow_id='%s' AND name='send-welcome-email'",
                                CREATED_WF),
                   1);
  assert_int_equal(hist(h, CREATED_WF, "send-welcome-email", 1, "skipped"), 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM crm_activity WHERE "
                                   "client_id='" CLIENT "' AND kind='client-created'"),
                   1);

  publish(h, "CLIENT_ACTIVATED", "ca-1",
          "{\"client_id\": \"" CLIENT "\", \"user_id\": \"u-1\", "
          "\"previous_status\": \"ONBOARDING\"}");
  assert_int_equal(wait_completed(h, ACTIVATED_WF), 1);
  assert_int_equal(tb_h_wait_sql(h, 1, WAIT_MS,
                                 "SELECT count(*) FROM workflows WHERE "
                                 "name='crm.business-plan-completed' AND "
                                 "status='completed'"),
                   1);
  char *plan_wf = tb_h_sql_text(h, "SELECT id FROM workflows WHERE "
                                   "name='crm.business-plan-completed'");
  assert_non_null(plan_wf);
  assert_int_equal(hist(h, plan_wf, "generate-pdf", 1, "ok"), 1);
  assert_int_equal(hist(h, plan_wf, "send-notification-email", 1, "skipped"), 1);
  tb_h_sleep_ms(300); /* a stray command, if any, would show up now */

  cmds_t c;
  cmds_load(h, &c);
  assert_int_equal(cmds_count(&c, "tb.cmd.email.send", NULL), 0);
  cmds_data(&c, "tb.cmd.ai.generate-business-plan", ACTIVATED_WF ":generate-business-plan:1");
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "%s:generate-pdf:1", plan_wf);
  cmds_data(&c, "tb.cmd.pdf.generate", cmd);
  assert_int_equal(c.n, 2);
  cmds_free(&c);
  free(plan_wf);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM workflows WHERE status<>'completed'"), 0);

  assert_int_equal(tb_h_child_term(&sim, 15000), 0);
  assert_int_equal(tb_h_child_term(&worker, 15000), 0);
  print_message("journey without email: %lld ms\n", (long long)(tb_h_now_ms() - t0));
}

int main(void) {
  tb_h_watchdog(170);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_enrichment_429_then_ok, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_client_journey, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_journey_without_email, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
