/* Unit: the simulator's answers as a pure function of the command: the vocabulary's results,
 * deterministic ids, input validation (400/422 naming the field), unknown actions (404), the
 * --fail rules at their attempt boundaries, and the parsing of --fail specs. Also the commands
 * contract of subjects/catalogue.json (read from $TB_SOURCE_DIR): each action the workflows send
 * is described there, and its example input gets the reply it describes. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim/sim.h"
#include "workflows/wf.h"

static tb_sim_opts_t opts;

static int setup(void **state) {
  tb_sim_opts_init(&opts);
  return 0;
}

/* A command of |action| ("service.action") with |input| as its input_json. */
static Tierbus__V1__Command make_cmd(const char *service, const char *action, const char *input,
                                     const char *command_id, uint32_t attempt) {
  Tierbus__V1__Command c = TIERBUS__V1__COMMAND__INIT;
  c.command_id = (char *)command_id;
  c.workflow_id = "wf-1";
  c.step = "step";
  c.attempt = attempt;
  c.service = (char *)service;
  c.action = (char *)action;
  c.reply_tier = "normal";
  c.input_json = (char *)input;
  return c;
}

/* Answers and checks the status; returns the parsed result object (caller decrefs). */
static json_t *answer(tb_sim_answer_t *a, const char *service, const char *action,
                      const char *input, const char *command_id, uint32_t attempt, int code) {
  Tierbus__V1__Command c = make_cmd(service, action, input, command_id, attempt);
  assert_int_equal(tb_sim_answer(&opts, &c, a), TB_OK);
  assert_int_equal(a->drop, 0);
  if (a->status_code != code) print_error("answer: %d %s\n", a->status_code, a->error);
  assert_int_equal(a->status_code, code);
  json_error_t jerr;
  json_t *r = json_loads(a->result_json, 0, &jerr);
  assert_non_null(r);
  assert_true(json_is_object(r));
  if (code == 200)
    assert_string_equal(a->error, "");
  else
    assert_int_equal(json_object_size(r), 0);
  return r;
}

/* Asserts the answer is |code| with an error containing |needle|. */
static void expect_error(const char *service, const char *action, const char *input, int code,
                         const char *needle) {
  tb_sim_answer_t a;
  json_t *r = answer(&a, service, action, input, "wf-1:s:1", 1, code);
  if (strstr(a.error, needle) == NULL) print_error("error '%s' lacks '%s'\n", a.error, needle);
  assert_non_null(strstr(a.error, needle));
  assert_null(a.enrichment);
  json_decref(r);
  tb_sim_answer_free(&a);
}

static void test_email_send(void **state) {
  tb_sim_answer_t a, b, c;
  const char *in = "{\"to\":\"ada@example.com\",\"template\":\"welcome\",\"client_id\":\"c1\","
                   "\"vars\":{\"name\":\"Ada\"}}";
  json_t *r1 = answer(&a, "email", "send", in, "wf-1:welcome:1", 1, 200);
  json_t *r2 = answer(&b, "email", "send", in, "wf-1:welcome:1", 1, 200);
  json_t *r3 = answer(&c, "email", "send", in, "wf-1:welcome:2", 2, 200);
  const char *id = json_string_value(json_object_get(r1, "message_id"));
  assert_non_null(id);
  assert_int_equal(strncmp(id, "sim-msg-", 8), 0);
  assert_int_equal(strlen(id), 8 + 16);
  assert_int_equal(json_object_size(r1), 1);
  /* A redelivery of the same command gets the same answer; another attempt a new id. */
  assert_string_equal(a.result_json, b.result_json);
  assert_string_not_equal(id, json_string_value(json_object_get(r3, "message_id")));
  assert_null(a.enrichment);
  json_decref(r1);
  json_decref(r2);
  json_decref(r3);
  tb_sim_answer_free(&a);
  tb_sim_answer_free(&b);
  tb_sim_answer_free(&c);
  /* Every template of the vocabulary is known. */
  const char *tmpls[] = {"welcome", "notification", "reminder", "celebration"};
  for (int i = 0; i < 4; i++) {
    char buf[128];
    snprintf(buf, sizeof(buf), "{\"to\":\"a@b.c\",\"template\":\"%s\"}", tmpls[i]);
    json_decref(answer(&a, "email", "send", buf, "x", 1, 200));
    tb_sim_answer_free(&a);
  }
}

static void test_email_send_bad_input(void **state) {
  expect_error("email", "send", "{\"template\":\"welcome\"}", 400, "email.send: to is required");
  expect_error("email", "send", "{\"to\":7,\"template\":\"welcome\"}", 400,
               "to: expected a string, got integer");
  expect_error("email", "send", "{\"to\":\"\",\"template\":\"welcome\"}", 400,
               "to must not be empty");
  expect_error("email", "send", "{\"to\":\"nobody\",\"template\":\"welcome\"}", 400,
               "to: not an email address: 'nobody'");
  expect_error("email", "send", "{\"to\":\"a@b.c\"}", 400, "template is required");
  expect_error("email", "send", "{\"to\":\"a@b.c\",\"template\":\"Welcome\"}", 422,
               "unknown template 'Welcome'");
  expect_error("email", "send", "{\"to\":\"a@b.c\",\"template\":\"welcome\",\"vars\":[]}", 400,
               "vars: expected an object, got array");
  expect_error("email", "send", "{\"to\":\"a@b.c\",\"template\":\"welcome\",\"subject\":1}", 400,
               "subject: expected a string");
  expect_error("email", "send", "{\"to\":", 400, "input_json: bad JSON at column");
  expect_error("email", "send", "[1]", 400, "input_json: expected an object, got array");
  expect_error("email", "send", "", 400, "to is required"); /* empty text = {} */
}

static void test_ai_and_pdf(void **state) {
  tb_sim_answer_t a;
  json_t *r =
      answer(&a, "ai", "generate-business-plan", "{\"client_id\":\"c1\"}", "w:bp:1", 1, 200);
  assert_int_equal(strncmp(json_string_value(json_object_get(r, "business_plan_id")), "sim-bp-", 7),
                   0);
  json_decref(r);
  tb_sim_answer_free(&a);
  expect_error("ai", "generate-business-plan", "{}", 400,
               "ai.generate-business-plan: client_id is required");

  /* Months 1 and 8 are the boundaries; 0 and 9 are outside. */
  r = answer(&a, "ai", "generate-deliverable", "{\"client_id\":\"c1\",\"month\":1}", "w:d:1", 1,
             200);
  assert_int_equal(json_integer_value(json_object_get(r, "month")), 1);
  assert_int_equal(strncmp(json_string_value(json_object_get(r, "deliverable_id")), "sim-dlv-", 8),
                   0);
  json_decref(r);
  tb_sim_answer_free(&a);
  r = answer(&a, "ai", "generate-deliverable", "{\"client_id\":\"c1\",\"month\":\"8\"}", "w:d:1", 1,
             200);
  assert_int_equal(json_integer_value(json_object_get(r, "month")), 8);
  json_decref(r);
  tb_sim_answer_free(&a);
  expect_error("ai", "generate-deliverable", "{\"client_id\":\"c1\",\"month\":0}", 400,
               "month: expected an integer from 1 to 8, got 0");
  expect_error("ai", "generate-deliverable", "{\"client_id\":\"c1\",\"month\":9}", 400, "got 9");
  expect_error("ai", "generate-deliverable", "{\"client_id\":\"c1\",\"month\":\"x\"}", 400,
               "got 'x'");
  expect_error("ai", "generate-deliverable", "{\"client_id\":\"c1\",\"month\":1.5}", 400,
               "got number");
  expect_error("ai", "generate-deliverable", "{\"client_id\":\"c1\"}", 400, "month is required");

  r = answer(&a, "pdf", "generate",
             "{\"client_id\":\"c1\",\"document_id\":\"bp-1\",\"kind\":\"business-plan\"}", "w:p:1",
             1, 200);
  const char *pdf = json_string_value(json_object_get(r, "pdf_id"));
  assert_int_equal(strncmp(pdf, "sim-pdf-", 8), 0);
  char path[128];
  snprintf(path, sizeof(path), "sim/pdf/c1/%s.pdf", pdf);
  assert_string_equal(json_string_value(json_object_get(r, "path")), path);
  json_decref(r);
  tb_sim_answer_free(&a);
  expect_error("pdf", "generate", "{\"client_id\":\"c1\",\"kind\":\"x\"}", 400,
               "pdf.generate: document_id is required");
}

/* |n| subscribers as an enrichment.submit input. Caller frees. */
static char *enrich_input(int n) {
  json_t *in = json_pack("{s:s, s:[]}", "batch_id", "b1", "subscribers");
  for (int i = 0; i < n; i++) {
    char sid[32], email[64];
    snprintf(sid, sizeof(sid), "s%d", i);
    snprintf(email, sizeof(email), "user%d@gmail.com", i);
    json_array_append_new(json_object_get(in, "subscribers"),
                          json_pack("{s:s, s:s}", "subscriber_id", sid, "email", email));
  }
  char *text = json_dumps(in, JSON_COMPACT);
  json_decref(in);
  return text;
}

static void test_enrichment_submit(void **state) {
  tb_sim_answer_t a, b;
  char *in = enrich_input(3);
  json_t *r = answer(&a, "enrichment", "submit", in, "wf-9:submit:1", 1, 200);
  const char *eid = json_string_value(json_object_get(r, "enrichment_id"));
  assert_int_equal(strncmp(eid, "sim-enr-", 8), 0);
  assert_non_null(a.enrichment);
  char msg_id[96];
  snprintf(msg_id, sizeof(msg_id), "enrich:%s", eid);
  assert_string_equal(a.enrichment_msg_id, msg_id);
  assert_string_equal(json_string_value(json_object_get(a.enrichment, "enrichment_id")), eid);
  assert_string_equal(json_string_value(json_object_get(a.enrichment, "workflow_id")), "wf-1");
  assert_int_equal(json_integer_value(json_object_get(a.enrichment, "status_code")), 200);
  json_t *results = json_object_get(a.enrichment, "results");
  assert_int_equal(json_array_size(results), 3);
  for (size_t i = 0; i < 3; i++) {
    json_t *res = json_array_get(results, i), *f = json_object_get(res, "fields");
    char sid[32];
    snprintf(sid, sizeof(sid), "s%zu", i);
    assert_string_equal(json_string_value(json_object_get(res, "subscriber_id")), sid);
    assert_int_equal(json_object_size(f), 4);
    assert_true(json_string_length(json_object_get(f, "first_name")) > 0);
    assert_true(json_string_length(json_object_get(f, "last_name")) > 0);
    assert_true(json_string_length(json_object_get(f, "company")) > 0);
    assert_int_equal(strncmp(json_string_value(json_object_get(f, "linkedin_url")),
                             "https://www.linkedin.com/in/", 28),
                     0);
  }
  /* Deterministic: the same command enriches the same way. */
  json_t *r2 = answer(&b, "enrichment", "submit", in, "wf-9:submit:1", 1, 200);
  assert_true(json_equal(a.enrichment, b.enrichment));
  json_decref(r);
  json_decref(r2);
  tb_sim_answer_free(&a);
  tb_sim_answer_free(&b);
  free(in);

  /* 0 and 100 subscribers are accepted; 101 is one too many. */
  in = enrich_input(0);
  json_decref(answer(&a, "enrichment", "submit", in, "x", 1, 200));
  assert_int_equal(json_array_size(json_object_get(a.enrichment, "results")), 0);
  tb_sim_answer_free(&a);
  free(in);
  in = enrich_input(100);
  json_decref(answer(&a, "enrichment", "submit", in, "x", 1, 200));
  assert_int_equal(json_array_size(json_object_get(a.enrichment, "results")), 100);
  tb_sim_answer_free(&a);
  free(in);
  in = enrich_input(101);
  expect_error("enrichment", "submit", in, 400, "subscribers: at most 100 per batch, got 101");
  free(in);
  expect_error("enrichment", "submit", "{\"batch_id\":\"b\",\"subscribers\":[{\"email\":\"a@b\"}]}",
               400, "subscribers[0].subscriber_id is required");
  expect_error("enrichment", "submit", "{\"batch_id\":\"b\",\"subscribers\":[3]}", 400,
               "subscribers[0]: expected an object, got integer");
  expect_error("enrichment", "submit", "{\"batch_id\":\"b\"}", 400, "subscribers is required");
}

static void test_unknown_action(void **state) {
  expect_error("email", "sned", "{}", 404, "email.sned: unknown command");
  expect_error("crm", "anything", "{}", 404, "the simulator answers email.send");
}

static void test_fail_rules(void **state) {
  assert_int_equal(tb_sim_parse_fail("enrichment.submit=429:1", &opts.fails[0]), TB_OK);
  assert_string_equal(opts.fails[0].action, "enrichment.submit");
  assert_int_equal(opts.fails[0].code, 429);
  assert_int_equal(opts.fails[0].attempts, 1);
  assert_int_equal(tb_sim_parse_fail("email.send=drop:2", &opts.fails[1]), TB_OK);
  assert_int_equal(opts.fails[1].code, TB_SIM_DROP);
  assert_int_equal(tb_sim_parse_fail("pdf.generate=503", &opts.fails[2]), TB_OK);
  assert_int_equal(opts.fails[2].attempts, 0);
  opts.n_fails = 3;

  tb_sim_answer_t a;
  char *in = enrich_input(1);
  json_decref(answer(&a, "enrichment", "submit", in, "w:s:1", 1, 429));
  assert_string_equal(a.error, "simulated 429");
  assert_null(a.enrichment);
  tb_sim_answer_free(&a);
  json_decref(answer(&a, "enrichment", "submit", in, "w:s:2", 2, 200));
  assert_non_null(a.enrichment);
  tb_sim_answer_free(&a);
  free(in);

  /* drop:2 drops attempts 1 and 2, answers attempt 3. */
  const char *mail = "{\"to\":\"a@b.c\",\"template\":\"reminder\"}";
  for (uint32_t att = 1; att <= 2; att++) {
    Tierbus__V1__Command c = make_cmd("email", "send", mail, "w:e", att);
    assert_int_equal(tb_sim_answer(&opts, &c, &a), TB_OK);
    assert_int_equal(a.drop, 1);
    tb_sim_answer_free(&a);
  }
  json_decref(answer(&a, "email", "send", mail, "w:e:3", 3, 200));
  tb_sim_answer_free(&a);

  /* No N: every attempt fails, however late. */
  const char *pdf = "{\"client_id\":\"c\",\"document_id\":\"d\",\"kind\":\"k\"}";
  json_decref(answer(&a, "pdf", "generate", pdf, "w:p:1000", 1000, 503));
  assert_string_equal(a.error, "simulated 503");
  tb_sim_answer_free(&a);
  /* A rule overrides even a bad input: the service failed before looking at it. */
  json_decref(answer(&a, "pdf", "generate", "{}", "w:p:1", 1, 503));
  tb_sim_answer_free(&a);
  /* Other actions are untouched. */
  json_decref(answer(&a, "ai", "generate-business-plan", "{\"client_id\":\"c\"}", "w:b:1", 1, 200));
  tb_sim_answer_free(&a);
  opts.n_fails = 0;
}

static void expect_bad_spec(const char *spec, const char *needle) {
  tb_sim_fail_t f;
  assert_int_equal(tb_sim_parse_fail(spec, &f), TB_ERR_INVALID);
  if (strstr(tb_errdetail(), needle) == NULL)
    print_error("detail '%s' lacks '%s'\n", tb_errdetail(), needle);
  assert_non_null(strstr(tb_errdetail(), needle));
}

static void test_parse_fail_errors(void **state) {
  expect_bad_spec("email.send", "expected ACTION=CODE[:N]");
  expect_bad_spec("=429", "expected ACTION=CODE[:N]");
  expect_bad_spec("email.sned=429", "unknown action 'email.sned'");
  expect_bad_spec("email.send=abc", "got 'abc'");
  expect_bad_spec("email.send=", "got ''");
  expect_bad_spec("email.send=399", "from 400 to 599");
  expect_bad_spec("email.send=600", "got '600'");
  expect_bad_spec("email.send=429:0", "got '0'");
  expect_bad_spec("email.send=429:", "got ''");
  expect_bad_spec("email.send=429:x", "got 'x'");
  expect_bad_spec("email.send=dropped", "got 'dropped'");
  tb_sim_fail_t f;
  assert_int_equal(tb_sim_parse_fail("email.send=400", &f), TB_OK);
  assert_int_equal(tb_sim_parse_fail("email.send=599:1000000", &f), TB_OK);
  assert_int_equal(f.attempts, 1000000);
  expect_bad_spec("email.send=599:1000001", "got '1000001'");
}

/* The catalogue's commands.actions is the contract other services implement: every command a
 * workflow sends is in it, and the simulator (which stands in for those services) answers each
 * example input with 200 and exactly the reply fields the catalogue lists. */
static void test_catalogue_commands_contract(void **state) {
  (void)state;
  const char *src = getenv("TB_SOURCE_DIR");
  assert_non_null(src);
  char path[1024];
  snprintf(path, sizeof(path), "%s/subjects/catalogue.json", src);
  json_error_t jerr;
  json_t *cat = json_load_file(path, 0, &jerr);
  assert_non_null(cat);
  json_t *actions = json_object_get(json_object_get(cat, "commands"), "actions");
  assert_true(json_array_size(actions) > 0);
  size_t i;
  json_t *act;
  json_array_foreach(actions, i, act) {
    const char *name = json_string_value(json_object_get(act, "name"));
    const char *service = json_string_value(json_object_get(act, "service"));
    const char *action = json_string_value(json_object_get(act, "action"));
    char joined[128];
    snprintf(joined, sizeof(joined), "%s.%s", service, action);
    assert_string_equal(name, joined);
    char *input = json_dumps(json_object_get(act, "example_input"), JSON_COMPACT);
    assert_non_null(input);
    tb_sim_answer_t a;
    json_t *r = answer(&a, service, action, input, "wf-1:s:1", 1, 200);
    json_t *reply = json_object_get(act, "reply");
    if (json_object_size(r) != json_object_size(reply))
      print_error("%s: reply %s, catalogue lists %zu fields\n", name, a.result_json,
                  json_object_size(reply));
    assert_int_equal(json_object_size(r), json_object_size(reply));
    const char *key;
    json_t *v;
    json_object_foreach(reply, key, v) assert_non_null(json_object_get(r, key));
    json_decref(r);
    tb_sim_answer_free(&a);
    free(input);
  }
  /* Every command activity named service.action is described. */
  int n = 0;
  const tb_wf_domain_t *const *domains = tb_wf_domains(&n);
  for (int d = 0; d < n; d++)
    for (int k = 0; k < domains[d]->n_activities; k++) {
      const tb_activity_def_t *ad = &domains[d]->activities[k];
      if (strcmp(ad->kind, "command") != 0 || strchr(ad->name, '.') == NULL) continue;
      int found = 0;
      json_array_foreach(actions, i, act) found |=
          strcmp(json_string_value(json_object_get(act, "name")), ad->name) == 0;
      if (!found) print_error("command %s is not in the catalogue's commands.actions\n", ad->name);
      assert_true(found);
    }
  json_decref(cat);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_email_send, setup),
      cmocka_unit_test_setup(test_email_send_bad_input, setup),
      cmocka_unit_test_setup(test_ai_and_pdf, setup),
      cmocka_unit_test_setup(test_enrichment_submit, setup),
      cmocka_unit_test_setup(test_unknown_action, setup),
      cmocka_unit_test_setup(test_fail_rules, setup),
      cmocka_unit_test_setup(test_parse_fail_errors, setup),
      cmocka_unit_test_setup(test_catalogue_commands_contract, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
