/* Unit tests for src/codec/codec.c: the JSON <-> protobuf mapping on the real event schemas and
 * on a test-only schema with every field kind, packing, and envelope decoding with its failure
 * classes. Error tests compare the whole detail text, so a vague message fails them. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/codec.h"
#include "test_types.pb-c.h"

static tb_catalogue_t *cat;

static const tb_event_def_t all_types_def = {
    .name = "TEST", .message = "tbtest.AllTypes", .descriptor = &tbtest__all_types__descriptor};

static int setup(void **state) {
  return tb_catalogue_load(&cat) == TB_OK ? 0 : -1;
}
static int teardown(void **state) {
  tb_catalogue_destroy(cat);
  return 0;
}

static const tb_event_def_t *ev(const char *name) {
  const tb_event_def_t *d = tb_catalogue_find(cat, name);
  assert_non_null(d);
  return d;
}

static json_t *parse(const char *text) {
  json_error_t err;
  json_t *j = json_loads(text, JSON_ALLOW_NUL | JSON_DECODE_ANY, &err);
  if (!j) fail_msg("bad test JSON '%s': %s", text, err.text);
  return j;
}

/* Maps |json| for |def| and expects success; caller frees the message. */
static ProtobufCMessage *map_ok(const tb_event_def_t *def, const char *json) {
  json_t *j = parse(json);
  ProtobufCMessage *m = NULL;
  tb_status rc = tb_codec_payload_from_json(def, j, &m);
  json_decref(j);
  if (rc != TB_OK) fail_msg("mapping %s failed: %s", json, tb_errdetail());
  assert_non_null(m);
  return m;
}

/* Maps |json| for |def| and expects exactly |status| with exactly |detail|. */
static void map_fails(const tb_event_def_t *def, const char *json, tb_status status,
                      const char *detail) {
  json_t *j = parse(json);
  ProtobufCMessage *m = (ProtobufCMessage *)0x1; /* must stay untouched on failure */
  tb_status rc = tb_codec_payload_from_json(def, j, &m);
  json_decref(j);
  assert_int_equal(rc, status);
  assert_ptr_equal(m, (ProtobufCMessage *)0x1);
  assert_string_equal(tb_errdetail(), detail);
}

/* Renders |m| to compact JSON with sorted keys, for exact comparisons. Caller frees. */
static char *render(const ProtobufCMessage *m) {
  json_t *j = NULL;
  assert_int_equal(tb_codec_payload_to_json(m, &j), TB_OK);
  char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(j);
  assert_non_null(s);
  return s;
}

static void assert_json_equal(const char *got, const char *want) {
  json_t *a = parse(got), *b = parse(want);
  if (!json_equal(a, b)) fail_msg("JSON differs\n got: %s\nwant: %s", got, want);
  json_decref(a);
  json_decref(b);
}

/* Packs an envelope of |type| around |payload| (may be NULL). Caller frees *buf. */
static void make_envelope(const char *id, const char *type, const ProtobufCMessage *payload,
                          uint8_t **buf, size_t *len) {
  Tierbus__V1__Envelope env = TIERBUS__V1__ENVELOPE__INIT;
  env.id = (char *)id;
  env.type = (char *)type;
  env.tier = "high";
  env.occurred_at_us = 1700000000000000;
  uint8_t *pbuf = NULL;
  size_t plen = 0;
  if (payload) {
    assert_int_equal(tb_codec_pack(payload, &pbuf, &plen), TB_OK);
    env.payload.data = pbuf;
    env.payload.len = plen;
  }
  assert_int_equal(tb_codec_pack(&env.base, buf, len), TB_OK);
  free(pbuf);
}

/* ---------------------------------------------------------------------------------------------
 * JSON -> protobuf: good cases
 * ------------------------------------------------------------------------------------------- */

static void test_strings(void **state) {
  ProtobufCMessage *m = map_ok(ev("CLIENT_CREATED"), "{\"client_id\":\"c-1\",\"user_id\":\"u-1\","
                                                     "\"client_name\":\"Acme \\u00e9\"}");
  Tierbus__V1__ClientCreated *c = (Tierbus__V1__ClientCreated *)m;
  assert_string_equal(c->client_id, "c-1");
  assert_string_equal(c->user_id, "u-1");
  assert_string_equal(c->client_name, "Acme \xc3\xa9");
  assert_string_equal(c->email, ""); /* absent: proto3 default */
  protobuf_c_message_free_unpacked(m, NULL);

  /* An empty object is a valid all-default payload. */
  m = map_ok(ev("CLIENT_CREATED"), "{}");
  assert_string_equal(((Tierbus__V1__ClientCreated *)m)->client_id, "");
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_camel_case_and_null(void **state) {
  ProtobufCMessage *m = map_ok(ev("execute-workflow"),
                               "{\"workflowType\":\"leadAttentionWorkflow\",\"argsJson\":\"[1]\","
                               "\"isCustomerFacing\":true,\"is_failed_retry\":true,"
                               "\"hoursStuck\":12.5,\"businessImpact\":\"BUSINESS_IMPACT_HIGH\","
                               "\"priority\":null,\"failureCount\":2}");
  Tierbus__V1__ExecuteWorkflow *x = (Tierbus__V1__ExecuteWorkflow *)m;
  assert_string_equal(x->workflow_type, "leadAttentionWorkflow");
  assert_string_equal(x->args_json, "[1]");
  assert_true(x->is_customer_facing);
  assert_true(x->is_failed_retry);
  assert_false(x->expedite);
  assert_true(x->hours_stuck == 12.5);
  assert_int_equal(x->business_impact, TIERBUS__V1__BUSINESS_IMPACT__BUSINESS_IMPACT_HIGH);
  assert_string_equal(x->priority, ""); /* null = unset */
  assert_int_equal(x->failure_count, 2);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_int32_bounds(void **state) {
  const tb_event_def_t *d = ev("enrichment-complete");
  static const struct {
    const char *json;
    int32_t want;
  } ok[] = {{"{\"status_code\":2147483647}", INT32_MAX},
            {"{\"status_code\":-2147483648}", INT32_MIN},
            {"{\"status_code\":\"2147483647\"}", INT32_MAX},
            {"{\"status_code\":\"-2147483648\"}", INT32_MIN},
            {"{\"status_code\":1e3}", 1000},
            {"{\"statusCode\":0}", 0}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    ProtobufCMessage *m = map_ok(d, ok[i].json);
    assert_int_equal(((Tierbus__V1__EnrichmentComplete *)m)->status_code, ok[i].want);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  map_fails(d, "{\"status_code\":2147483648}", TB_ERR_JSON,
            "enrichment-complete: field 'status_code': value 2147483648 out of range for int32");
  map_fails(d, "{\"status_code\":-2147483649}", TB_ERR_JSON,
            "enrichment-complete: field 'status_code': value -2147483649 out of range for int32");
  map_fails(d, "{\"status_code\":\"2147483648\"}", TB_ERR_JSON,
            "enrichment-complete: field 'status_code': value 2147483648 out of range for int32");
  map_fails(d, "{\"status_code\":1.5}", TB_ERR_JSON,
            "enrichment-complete: field 'status_code': expected an integer (int32), got 1.5");
  map_fails(d, "{\"status_code\":\"12x\"}", TB_ERR_JSON,
            "enrichment-complete: field 'status_code': '12x' is not a decimal integer (int32)");
  map_fails(d, "{\"status_code\":\" 12\"}", TB_ERR_JSON,
            "enrichment-complete: field 'status_code': ' 12' is not a decimal integer (int32)");
  map_fails(d, "{\"status_code\":\"\"}", TB_ERR_JSON,
            "enrichment-complete: field 'status_code': '' is not a decimal integer (int32)");
  map_fails(d, "{\"status_code\":true}", TB_ERR_JSON,
            "enrichment-complete: field 'status_code': expected an integer (int32), got boolean");
}

static void test_uint32_and_int64_bounds(void **state) {
  const tb_event_def_t *d = ev("DELIVERABLE_COMPLETED");
  ProtobufCMessage *m = map_ok(d, "{\"month\":4294967295,\"completed_at_us\":9223372036854775807}");
  Tierbus__V1__DeliverableCompleted *c = (Tierbus__V1__DeliverableCompleted *)m;
  assert_int_equal(c->month, UINT32_MAX);
  assert_true(c->completed_at_us == INT64_MAX);
  protobuf_c_message_free_unpacked(m, NULL);

  m = map_ok(d, "{\"month\":0,\"completedAtUs\":\"-9223372036854775808\"}");
  c = (Tierbus__V1__DeliverableCompleted *)m;
  assert_int_equal(c->month, 0);
  assert_true(c->completed_at_us == INT64_MIN);
  protobuf_c_message_free_unpacked(m, NULL);

  map_fails(d, "{\"month\":4294967296}", TB_ERR_JSON,
            "DELIVERABLE_COMPLETED: field 'month': value 4294967296 out of range for uint32");
  map_fails(d, "{\"month\":-1}", TB_ERR_JSON,
            "DELIVERABLE_COMPLETED: field 'month': value -1 out of range for uint32");
  map_fails(d, "{\"month\":\"-1\"}", TB_ERR_JSON,
            "DELIVERABLE_COMPLETED: field 'month': value -1 out of range for uint32");
  map_fails(d, "{\"completed_at_us\":\"9223372036854775808\"}", TB_ERR_JSON,
            "DELIVERABLE_COMPLETED: field 'completed_at_us': value 9223372036854775808 out of "
            "range for int64");
  map_fails(d, "{\"completed_at_us\":\"-9223372036854775809\"}", TB_ERR_JSON,
            "DELIVERABLE_COMPLETED: field 'completed_at_us': value -9223372036854775809 out of "
            "range for int64");
  map_fails(d, "{\"completed_at_us\":1e19}", TB_ERR_JSON,
            "DELIVERABLE_COMPLETED: field 'completed_at_us': value 1e+19 out of range for int64");
}

static void test_uint64_and_other_kinds(void **state) {
  ProtobufCMessage *m =
      map_ok(&all_types_def, "{\"f_uint64\":\"18446744073709551615\",\"f_fixed64\":7,"
                             "\"f_sint32\":-5,\"f_sfixed32\":-6,\"f_sint64\":\"-7\","
                             "\"f_sfixed64\":-8,\"f_fixed32\":4294967295,\"f_float\":0.5,"
                             "\"f_double\":\"-Infinity\",\"f_bool\":false,\"f_int32\":0}");
  Tbtest__AllTypes *t = (Tbtest__AllTypes *)m;
  assert_true(t->has_f_uint64 && t->f_uint64 == UINT64_MAX);
  assert_true(t->has_f_fixed64 && t->f_fixed64 == 7);
  assert_true(t->has_f_sint32 && t->f_sint32 == -5);
  assert_true(t->has_f_sfixed32 && t->f_sfixed32 == -6);
  assert_true(t->has_f_sint64 && t->f_sint64 == -7);
  assert_true(t->has_f_sfixed64 && t->f_sfixed64 == -8);
  assert_true(t->has_f_fixed32 && t->f_fixed32 == UINT32_MAX);
  assert_true(t->has_f_float && t->f_float == 0.5f);
  assert_true(t->has_f_double && isinf(t->f_double) && t->f_double < 0);
  assert_true(t->has_f_bool && !t->f_bool);
  assert_true(t->has_f_int32 && t->f_int32 == 0); /* explicit zero keeps its presence */
  assert_false(t->has_f_int64);
  /* uint64 above INT64_MAX comes back as a string; presence-less zero values are left out. */
  char *s = render(m);
  assert_json_equal(s, "{\"f_uint64\":\"18446744073709551615\",\"f_fixed64\":7,\"f_sint32\":-5,"
                       "\"f_sfixed32\":-6,\"f_sint64\":-7,\"f_sfixed64\":-8,"
                       "\"f_fixed32\":4294967295,\"f_float\":0.5,\"f_double\":\"-Infinity\","
                       "\"f_bool\":false,\"f_int32\":0,\"r_int32\":[],\"r_string\":[],"
                       "\"r_inner\":[],\"r_enum\":[],\"r_bytes\":[],\"m_int\":{},\"m_bool\":{},"
                       "\"m_inner\":{},\"m_u64\":{}}");
  free(s);
  protobuf_c_message_free_unpacked(m, NULL);

  map_fails(&all_types_def, "{\"f_uint64\":\"18446744073709551616\"}", TB_ERR_JSON,
            "TEST: field 'f_uint64': value 18446744073709551616 out of range for uint64");
  map_fails(&all_types_def, "{\"f_uint64\":-1}", TB_ERR_JSON,
            "TEST: field 'f_uint64': value -1 out of range for uint64");
  map_fails(&all_types_def, "{\"f_fixed32\":\"+1\"}", TB_ERR_JSON,
            "TEST: field 'f_fixed32': '+1' is not a decimal integer (fixed32)");
  map_fails(&all_types_def, "{\"f_float\":3.5e38}", TB_ERR_JSON,
            "TEST: field 'f_float': value 3.5e+38 out of range for float");
  map_fails(&all_types_def, "{\"f_double\":\"inf\"}", TB_ERR_JSON,
            "TEST: field 'f_double': 'inf' is not a number (double)");
  map_fails(&all_types_def, "{\"f_double\":\"0x10\"}", TB_ERR_JSON,
            "TEST: field 'f_double': '0x10' is not a number (double)");
  map_fails(&all_types_def, "{\"f_double\":\"1e999\"}", TB_ERR_JSON,
            "TEST: field 'f_double': value 1e999 out of range for double");
  map_fails(&all_types_def, "{\"f_double\":[]}", TB_ERR_JSON,
            "TEST: field 'f_double': expected a number (double), got array");

  m = map_ok(&all_types_def, "{\"f_double\":\"NaN\",\"f_float\":\"2.25\"}");
  t = (Tbtest__AllTypes *)m;
  assert_true(isnan(t->f_double));
  assert_true(t->f_float == 2.25f);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_enums(void **state) {
  const tb_event_def_t *d = ev("subscriber-created");
  ProtobufCMessage *m = map_ok(d, "{\"email_type\":\"EMAIL_TYPE_PERSONAL\"}");
  assert_int_equal(((Tierbus__V1__SubscriberCreated *)m)->email_type,
                   TIERBUS__V1__EMAIL_TYPE__EMAIL_TYPE_PERSONAL);
  protobuf_c_message_free_unpacked(m, NULL);
  m = map_ok(d, "{\"emailType\":2}");
  assert_int_equal(((Tierbus__V1__SubscriberCreated *)m)->email_type,
                   TIERBUS__V1__EMAIL_TYPE__EMAIL_TYPE_CORPORATE);
  protobuf_c_message_free_unpacked(m, NULL);

  map_fails(d, "{\"email_type\":\"personal\"}", TB_ERR_JSON,
            "subscriber-created: field 'email_type': unknown value 'personal' for enum "
            "tierbus.v1.EmailType (one of: EMAIL_TYPE_UNSPECIFIED, EMAIL_TYPE_PERSONAL, "
            "EMAIL_TYPE_CORPORATE)");
  map_fails(
      d, "{\"email_type\":7}", TB_ERR_JSON,
      "subscriber-created: field 'email_type': 7 is not a value of enum tierbus.v1.EmailType");
  map_fails(d, "{\"email_type\":true}", TB_ERR_JSON,
            "subscriber-created: field 'email_type': expected an enum name or number "
            "(tierbus.v1.EmailType), got boolean");
  map_fails(d, "{\"email_type\":4294967296}", TB_ERR_JSON,
            "subscriber-created: field 'email_type': value 4294967296 out of range for int32");

  /* A gap in the enum's numbering is not a value. */
  map_fails(&all_types_def, "{\"f_enum\":3}", TB_ERR_JSON,
            "TEST: field 'f_enum': 3 is not a value of enum tbtest.Color");
  m = map_ok(&all_types_def, "{\"f_enum\":5,\"r_enum\":[\"COLOR_GREEN\",0]}");
  Tbtest__AllTypes *t = (Tbtest__AllTypes *)m;
  assert_int_equal(t->f_enum, TBTEST__COLOR__COLOR_BLUE);
  assert_int_equal(t->n_r_enum, 2);
  assert_int_equal(t->r_enum[0], TBTEST__COLOR__COLOR_GREEN);
  assert_int_equal(t->r_enum[1], TBTEST__COLOR__COLOR_RED);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_nested_repeated_map(void **state) {
  const tb_event_def_t *d = ev("enrichment-complete");
  ProtobufCMessage *m =
      map_ok(d, "{\"enrichment_id\":\"en-1\",\"workflow_id\":\"wf-9\",\"status_code\":200,"
                "\"results\":[{\"subscriber_id\":\"s1\",\"fields\":{\"first_name\":\"Ada\","
                "\"company\":\"Analytical\"}},{\"subscriberId\":\"s2\",\"error\":\"not found\"}]}");
  Tierbus__V1__EnrichmentComplete *e = (Tierbus__V1__EnrichmentComplete *)m;
  assert_string_equal(e->workflow_id, "wf-9");
  assert_int_equal(e->n_results, 2);
  assert_string_equal(e->results[0]->subscriber_id, "s1");
  assert_int_equal(e->results[0]->n_fields, 2);
  assert_string_equal(e->results[0]->fields[0]->key, "first_name");
  assert_string_equal(e->results[0]->fields[0]->value, "Ada");
  assert_string_equal(e->results[0]->fields[1]->key, "company");
  assert_string_equal(e->results[0]->fields[1]->value, "Analytical");
  assert_string_equal(e->results[1]->subscriber_id, "s2");
  assert_string_equal(e->results[1]->error, "not found");
  assert_int_equal(e->results[1]->n_fields, 0);
  protobuf_c_message_free_unpacked(m, NULL);

  m = map_ok(ev("capture/repository.sync"),
             "{\"repositoryId\":\"r-1\",\"priority\":\"REPOSITORY_PRIORITY_HIGH\","
             "\"priorityScore\":100,\"metadata\":{\"isWorkspaceRepo\":true,\"workspaceCount\":3,"
             "\"original_priority\":\"REPOSITORY_PRIORITY_MEDIUM\"}}");
  Tierbus__V1__RepositorySync *r = (Tierbus__V1__RepositorySync *)m;
  assert_int_equal(r->priority_score, 100);
  assert_non_null(r->metadata);
  assert_true(r->metadata->is_workspace_repo);
  assert_int_equal(r->metadata->workspace_count, 3);
  assert_int_equal(r->metadata->original_priority,
                   TIERBUS__V1__REPOSITORY_PRIORITY__REPOSITORY_PRIORITY_MEDIUM);
  protobuf_c_message_free_unpacked(m, NULL);

  /* Maps with non-string keys, message values and repeated messages on the test schema. */
  m = map_ok(&all_types_def,
             "{\"m_int\":{\"-3\":\"minus three\",\"12\":\"twelve\"},\"m_bool\":{\"true\":\"yes\"},"
             "\"m_inner\":{\"a\":{\"name\":\"x\",\"nums\":[1,2]}},"
             "\"m_u64\":{\"18446744073709551615\":\"-1\"},"
             "\"r_inner\":[{\"name\":\"p\"},{}],\"r_string\":[\"a\",\"\"],\"r_int32\":[1,-1]}");
  Tbtest__AllTypes *t = (Tbtest__AllTypes *)m;
  assert_int_equal(t->n_m_int, 2);
  assert_int_equal(t->m_int[0]->key, -3);
  assert_string_equal(t->m_int[0]->value, "minus three");
  assert_int_equal(t->m_int[1]->key, 12);
  assert_int_equal(t->n_m_bool, 1);
  assert_true(t->m_bool[0]->key);
  assert_int_equal(t->n_m_inner, 1);
  assert_int_equal(t->m_inner[0]->value->n_nums, 2);
  assert_int_equal(t->m_inner[0]->value->nums[1], 2);
  assert_true(t->m_u64[0]->key == UINT64_MAX && t->m_u64[0]->value == -1);
  assert_int_equal(t->n_r_inner, 2);
  assert_string_equal(t->r_inner[0]->name, "p");
  assert_null(t->r_inner[1]->name); /* proto2 optional string: absent */
  assert_int_equal(t->n_r_string, 2);
  assert_string_equal(t->r_string[1], "");
  assert_int_equal(t->r_int32[1], -1);
  char *s = render(m);
  assert_json_equal(s, "{\"r_int32\":[1,-1],\"r_string\":[\"a\",\"\"],"
                       "\"r_inner\":[{\"name\":\"p\",\"nums\":[]},{\"nums\":[]}],\"r_enum\":[],"
                       "\"r_bytes\":[],\"m_int\":{\"-3\":\"minus three\",\"12\":\"twelve\"},"
                       "\"m_bool\":{\"true\":\"yes\"},\"m_inner\":{\"a\":{\"name\":\"x\","
                       "\"nums\":[1,2]}},\"m_u64\":{\"18446744073709551615\":-1}}");
  free(s);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_bytes(void **state) {
  ProtobufCMessage *m =
      map_ok(&all_types_def, "{\"f_bytes\":\"aGVsbG8=\",\"r_bytes\":[\"aGVsbG8\",\"-_8\",\"\"]}");
  Tbtest__AllTypes *t = (Tbtest__AllTypes *)m;
  assert_true(t->has_f_bytes);
  assert_int_equal(t->f_bytes.len, 5);
  assert_memory_equal(t->f_bytes.data, "hello", 5);
  assert_int_equal(t->n_r_bytes, 3);
  assert_int_equal(t->r_bytes[0].len, 5); /* unpadded */
  assert_int_equal(t->r_bytes[1].len, 2); /* URL-safe alphabet */
  assert_int_equal(t->r_bytes[1].data[0], 0xfb);
  assert_int_equal(t->r_bytes[1].data[1], 0xff);
  assert_int_equal(t->r_bytes[2].len, 0);
  char *s = render(m);
  assert_non_null(strstr(s, "\"f_bytes\":\"aGVsbG8=\""));
  assert_non_null(strstr(s, "\"r_bytes\":[\"aGVsbG8=\",\"+/8=\",\"\"]"));
  free(s);
  protobuf_c_message_free_unpacked(m, NULL);

  map_fails(&all_types_def, "{\"f_bytes\":\"a\"}", TB_ERR_JSON,
            "TEST: field 'f_bytes': invalid base64 (bytes)");
  map_fails(&all_types_def, "{\"f_bytes\":\"ab$=\"}", TB_ERR_JSON,
            "TEST: field 'f_bytes': invalid base64 (bytes)");
  map_fails(&all_types_def, "{\"f_bytes\":\"ab=\"}", TB_ERR_JSON,
            "TEST: field 'f_bytes': invalid base64 (bytes)");
  map_fails(&all_types_def, "{\"r_bytes\":[\"aGk=\",1]}", TB_ERR_JSON,
            "TEST: field 'r_bytes[1]': expected a base64 string (bytes), got number");
}

static void test_oneof(void **state) {
  ProtobufCMessage *m = map_ok(&all_types_def, "{\"c_num\":\"42\"}");
  Tbtest__AllTypes *t = (Tbtest__AllTypes *)m;
  assert_int_equal(t->choice_case, TBTEST__ALL_TYPES__CHOICE_C_NUM);
  assert_int_equal(t->c_num, 42);
  char *s = render(m);
  assert_non_null(strstr(s, "\"c_num\":42"));
  assert_null(strstr(s, "c_text"));
  assert_null(strstr(s, "c_inner"));
  free(s);
  protobuf_c_message_free_unpacked(m, NULL);

  m = map_ok(&all_types_def, "{\"cInner\":{\"name\":\"n\"}}");
  t = (Tbtest__AllTypes *)m;
  assert_int_equal(t->choice_case, TBTEST__ALL_TYPES__CHOICE_C_INNER);
  assert_string_equal(t->c_inner->name, "n");
  protobuf_c_message_free_unpacked(m, NULL);

  map_fails(&all_types_def, "{\"c_text\":\"a\",\"c_num\":1}", TB_ERR_JSON,
            "TEST: field 'c_num': 'c_text' of the same oneof is set already");
  /* The first member was allocated before the failure: freed without a leak (ASan run). */
  map_fails(&all_types_def, "{\"c_inner\":{\"name\":\"x\"},\"c_text\":\"a\"}", TB_ERR_JSON,
            "TEST: field 'c_text': 'c_inner' of the same oneof is set already");
}

/* ---------------------------------------------------------------------------------------------
 * JSON -> protobuf: every error kind
 * ------------------------------------------------------------------------------------------- */

static void test_errors(void **state) {
  const tb_event_def_t *cc = ev("CLIENT_CREATED");
  map_fails(cc, "{\"foo\":1}", TB_ERR_JSON,
            "CLIENT_CREATED: unknown field 'foo'"
            " (fields of tierbus.v1.ClientCreated: client_id, user_id, client_name, email)");
  map_fails(cc, "{\"Client_id\":\"x\"}", TB_ERR_JSON,
            "CLIENT_CREATED: unknown field 'Client_id'"
            " (fields of tierbus.v1.ClientCreated: client_id, user_id, client_name, email)");
  map_fails(cc, "{\"clientID\":\"x\"}", TB_ERR_JSON,
            "CLIENT_CREATED: unknown field 'clientID'"
            " (fields of tierbus.v1.ClientCreated: client_id, user_id, client_name, email)");
  map_fails(cc, "{\"client_id\":5}", TB_ERR_JSON,
            "CLIENT_CREATED: field 'client_id': expected a string, got number");
  map_fails(cc, "{\"client_id\":{}}", TB_ERR_JSON,
            "CLIENT_CREATED: field 'client_id': expected a string, got object");
  map_fails(cc, "{\"client_id\":\"a\\u0000b\"}", TB_ERR_JSON,
            "CLIENT_CREATED: field 'client_id': string contains a NUL character");
  map_fails(cc, "{\"client_id\":\"a\",\"clientId\":\"b\"}", TB_ERR_JSON,
            "CLIENT_CREATED: field 'client_id': given twice (as 'client_id' and 'clientId')");
  map_fails(cc, "[]", TB_ERR_JSON, "CLIENT_CREATED: payload must be a JSON object, got array");
  map_fails(cc, "\"x\"", TB_ERR_JSON, "CLIENT_CREATED: payload must be a JSON object, got string");
  map_fails(cc, "null", TB_ERR_JSON, "CLIENT_CREATED: payload must be a JSON object, got null");

  const tb_event_def_t *ew = ev("execute-workflow");
  map_fails(ew, "{\"expedite\":\"yes\"}", TB_ERR_JSON,
            "execute-workflow: field 'expedite': expected true or false, got string");
  map_fails(ew, "{\"expedite\":1}", TB_ERR_JSON,
            "execute-workflow: field 'expedite': expected true or false, got number");
  map_fails(ew, "{\"hours_stuck\":\"abc\"}", TB_ERR_JSON,
            "execute-workflow: field 'hours_stuck': 'abc' is not a number (double)");

  const tb_event_def_t *en = ev("enrichment-complete");
  map_fails(en, "{\"results\":{}}", TB_ERR_JSON,
            "enrichment-complete: field 'results': expected an array, got object");
  map_fails(en, "{\"results\":[null]}", TB_ERR_JSON,
            "enrichment-complete: field 'results[0]': expected an object "
            "(tierbus.v1.EnrichmentComplete.Result), got null");
  map_fails(en, "{\"results\":[{},{\"bogus\":true}]}", TB_ERR_JSON,
            "enrichment-complete: unknown field 'results[1].bogus' (fields of "
            "tierbus.v1.EnrichmentComplete.Result: subscriber_id, email, fields, error)");
  map_fails(en, "{\"results\":[{\"fields\":[]}]}", TB_ERR_JSON,
            "enrichment-complete: field 'results[0].fields': expected an object (map), got array");
  map_fails(en, "{\"results\":[{},{\"fields\":{\"a\":\"1\",\"email\":5}}]}", TB_ERR_JSON,
            "enrichment-complete: field 'results[1].fields[email]': expected a string, got "
            "number");
  map_fails(en, "{\"results\":[{\"fields\":{\"a\":null}}]}", TB_ERR_JSON,
            "enrichment-complete: field 'results[0].fields[a]': map value must not be null");

  const tb_event_def_t *rs = ev("capture/repository.sync");
  map_fails(rs, "{\"metadata\":\"x\"}", TB_ERR_JSON,
            "capture/repository.sync: field 'metadata': expected an object "
            "(tierbus.v1.RepositorySync.Metadata), got string");
  map_fails(rs, "{\"metadata\":{\"nope\":1}}", TB_ERR_JSON,
            "capture/repository.sync: unknown field 'metadata.nope' (fields of "
            "tierbus.v1.RepositorySync.Metadata: is_workspace_repo, workspace_count, "
            "original_priority)");
  map_fails(rs, "{\"metadata\":{\"workspaceCount\":-1}}", TB_ERR_JSON,
            "capture/repository.sync: field 'metadata.workspace_count': value -1 out of range "
            "for uint32");

  map_fails(&all_types_def, "{\"m_int\":{\"x\":\"a\"}}", TB_ERR_JSON,
            "TEST: field 'm_int[x]': 'x' is not a decimal integer (int32)");
  map_fails(&all_types_def, "{\"m_int\":{\"2147483648\":\"a\"}}", TB_ERR_JSON,
            "TEST: field 'm_int[2147483648]': value 2147483648 out of range for int32");
  map_fails(&all_types_def, "{\"m_bool\":{\"yes\":\"a\"}}", TB_ERR_JSON,
            "TEST: field 'm_bool[yes]': map key must be \"true\" or \"false\"");
  map_fails(&all_types_def, "{\"r_int32\":[1,\"a\"]}", TB_ERR_JSON,
            "TEST: field 'r_int32[1]': 'a' is not a decimal integer (int32)");

  /* A def without a descriptor and NULL arguments are programmer errors. */
  tb_event_def_t bare = {.name = "BARE"};
  json_t *j = json_object();
  ProtobufCMessage *m = NULL;
  assert_int_equal(tb_codec_payload_from_json(&bare, j, &m), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "BARE: event has no message descriptor");
  assert_int_equal(tb_codec_payload_from_json(NULL, j, &m), TB_ERR_INVALID);
  assert_int_equal(tb_codec_payload_from_json(cc, NULL, &m), TB_ERR_JSON);
  assert_null(m);
  json_decref(j);
}

/* ---------------------------------------------------------------------------------------------
 * protobuf -> JSON and round trips
 * ------------------------------------------------------------------------------------------- */

static void test_to_json_defaults(void **state) {
  ProtobufCMessage *m = map_ok(ev("CLIENT_CREATED"), "{\"clientId\":\"c-1\"}");
  char *s = render(m);
  assert_string_equal(s, "{\"client_id\":\"c-1\",\"client_name\":\"\",\"email\":\"\","
                         "\"user_id\":\"\"}");
  free(s);
  protobuf_c_message_free_unpacked(m, NULL);

  /* Strings off the wire are not UTF-8 checked by protobuf-c; the renderer must refuse them. */
  Tierbus__V1__ClientCreated bad = TIERBUS__V1__CLIENT_CREATED__INIT;
  bad.client_id = "ok";
  bad.user_id = "\xff\xfe";
  json_t *j = NULL;
  assert_int_equal(tb_codec_payload_to_json(&bad.base, &j), TB_ERR_DECODE);
  assert_null(j);
  assert_string_equal(tb_errdetail(),
                      "tierbus.v1.ClientCreated: field 'user_id': string is not valid UTF-8");
  bad.user_id = "\xed\xa0\x80"; /* an encoded UTF-16 surrogate */
  assert_int_equal(tb_codec_payload_to_json(&bad.base, &j), TB_ERR_DECODE);
  bad.user_id = "\xc3"; /* truncated sequence */
  assert_int_equal(tb_codec_payload_to_json(&bad.base, &j), TB_ERR_DECODE);
  bad.user_id = "\xf0\x9f\x98\x80"; /* U+1F600 is fine */
  assert_int_equal(tb_codec_payload_to_json(&bad.base, &j), TB_OK);
  json_decref(j);
}

/* Full payloads in canonical form (proto names, every field present): json -> proto -> pack ->
 * envelope -> decode -> json must give the same document back. */
static const struct {
  const char *event;
  const char *json;
} round_trips[] = {
    {"CLIENT_CREATED", "{\"client_id\":\"c1\",\"user_id\":\"u1\",\"client_name\":\"Acme\","
                       "\"email\":\"a@b.c\"}"},
    {"DELIVERABLE_OVERDUE",
     "{\"client_id\":\"c1\",\"user_id\":\"u1\",\"deliverable_id\":\"d3\",\"month\":3,"
     "\"title\":\"M3\",\"due_at_us\":1700000000000000,\"days_overdue\":2}"},
    {"enrichment-complete",
     "{\"enrichment_id\":\"en1\",\"workflow_id\":\"wf1\",\"status_code\":-500,\"error\":\"\","
     "\"results\":[{\"subscriber_id\":\"s1\",\"email\":\"x@y.z\",\"error\":\"\","
     "\"fields\":{\"first_name\":\"Ada\",\"company\":\"AE\"}}]}"},
    {"capture/repository.sync",
     "{\"repository_id\":\"r1\",\"repository_name\":\"o/r\",\"priority\":"
     "\"REPOSITORY_PRIORITY_LOW\",\"priority_score\":25,\"sync_type\":\"graphql\","
     "\"metadata\":{\"is_workspace_repo\":false,\"workspace_count\":0,"
     "\"original_priority\":\"REPOSITORY_PRIORITY_UNSPECIFIED\"}}"},
    {"execute-workflow",
     "{\"workflow_type\":\"w\",\"args_json\":\"[{\\\"a\\\":1}]\",\"priority\":\"critical\","
     "\"expedite\":true,\"is_customer_facing\":false,\"is_failed_retry\":true,"
     "\"hours_stuck\":24.25,\"business_impact\":\"BUSINESS_IMPACT_MEDIUM\",\"workflow_id\":\"\","
     "\"original_workflow_id\":\"lead-gen-123\",\"failure_count\":2,\"last_error\":\"Timeout\","
     "\"task_queue\":\"\"}"},
    {"subscriber-created", "{\"subscriber_id\":\"s1\",\"email\":\"e@x.io\","
                           "\"email_type\":\"EMAIL_TYPE_CORPORATE\",\"source\":\"webhook\"}"},
};

static void test_round_trip(void **state) {
  for (size_t i = 0; i < sizeof round_trips / sizeof round_trips[0]; i++) {
    const tb_event_def_t *d = ev(round_trips[i].event);
    ProtobufCMessage *m = map_ok(d, round_trips[i].json);
    uint8_t *buf;
    size_t len;
    make_envelope("id-1", d->name, m, &buf, &len);
    protobuf_c_message_free_unpacked(m, NULL);

    tb_decoded_t dec;
    assert_int_equal(tb_codec_decode(cat, buf, len, &dec), TB_OK);
    free(buf);
    assert_ptr_equal(dec.def, d);
    assert_string_equal(dec.env->id, "id-1");
    assert_string_equal(dec.env->tier, "high");
    assert_true(dec.env->occurred_at_us == 1700000000000000);
    assert_ptr_equal(dec.payload->descriptor, d->descriptor);
    char *s = render(dec.payload);
    assert_json_equal(s, round_trips[i].json);
    free(s);
    tb_decoded_free(&dec);
    assert_null(dec.env);
    assert_null(dec.payload);
  }
}

static void test_round_trip_all_types(void **state) {
  const char *json =
      "{\"f_int32\":-1,\"f_sint32\":-2147483648,\"f_sfixed32\":2147483647,"
      "\"f_int64\":-9223372036854775808,\"f_sint64\":9223372036854775807,\"f_sfixed64\":-1,"
      "\"f_uint32\":4294967295,\"f_fixed32\":1,\"f_uint64\":\"18446744073709551615\","
      "\"f_fixed64\":9223372036854775807,\"f_float\":-0.25,\"f_double\":1e-300,\"f_bool\":true,"
      "\"f_string\":\"\\u65e5\\u672c\",\"f_bytes\":\"AAEC/w==\",\"f_enum\":\"COLOR_BLUE\","
      "\"f_inner\":{\"name\":\"in\",\"nums\":[3]},\"r_int32\":[0,2147483647],\"r_string\":[\"s\"],"
      "\"r_inner\":[{\"nums\":[]}],\"r_enum\":[\"COLOR_GREEN\"],\"r_bytes\":[\"\"],"
      "\"m_int\":{\"1\":\"one\"},\"m_bool\":{\"false\":\"no\"},\"m_inner\":{\"k\":{\"nums\":[]}},"
      "\"m_u64\":{\"0\":0},\"c_text\":\"chosen\"}";
  ProtobufCMessage *m = map_ok(&all_types_def, json);
  uint8_t *buf;
  size_t len;
  assert_int_equal(tb_codec_pack(m, &buf, &len), TB_OK);
  protobuf_c_message_free_unpacked(m, NULL);
  m = protobuf_c_message_unpack(&tbtest__all_types__descriptor, NULL, len, buf);
  free(buf);
  assert_non_null(m);
  char *s = render(m);
  assert_json_equal(s, json);
  free(s);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_pack_empty(void **state) {
  Tierbus__V1__ClientCreated c = TIERBUS__V1__CLIENT_CREATED__INIT;
  uint8_t *buf = NULL;
  size_t len = 99;
  assert_int_equal(tb_codec_pack(&c.base, &buf, &len), TB_OK);
  assert_non_null(buf);
  assert_int_equal(len, 0);
  free(buf);
  assert_int_equal(tb_codec_pack(NULL, &buf, &len), TB_ERR_INVALID);
}

/* ---------------------------------------------------------------------------------------------
 * Decoding failures
 * ------------------------------------------------------------------------------------------- */

static void decode_fails(const uint8_t *buf, size_t len, tb_status want, const char *detail) {
  tb_decoded_t dec;
  memset(&dec, 0xab, sizeof dec); /* must be zeroed on failure */
  assert_int_equal(tb_codec_decode(cat, buf, len, &dec), want);
  assert_null(dec.env);
  assert_null(dec.def);
  assert_null(dec.payload);
  if (detail) assert_string_equal(tb_errdetail(), detail);
}

static void test_decode_garbage(void **state) {
  static const uint8_t garbage[] = {0xff, 0xff, 0xff};
  decode_fails(garbage, sizeof garbage, TB_ERR_DECODE,
               "message body (3 bytes) is not a tierbus.v1.Envelope");
  static const uint8_t text[] = "{\"type\":\"CLIENT_CREATED\"}";
  decode_fails(text, sizeof text - 1, TB_ERR_DECODE,
               "message body (25 bytes) is not a tierbus.v1.Envelope");
  /* An empty body is a valid all-default envelope, so it fails on the empty id. */
  decode_fails(NULL, 0, TB_ERR_DECODE, "envelope has an empty id");
}

static void test_decode_truncated(void **state) {
  Tierbus__V1__ClientCreated c = TIERBUS__V1__CLIENT_CREATED__INIT;
  c.client_id = "c-1";
  uint8_t *buf;
  size_t len;
  make_envelope("id-1", "CLIENT_CREATED", &c.base, &buf, &len);
  /* The payload (field 11) is packed last: cutting its bytes leaves a length prefix that runs
   * past the end. */
  char want[64];
  snprintf(want, sizeof want, "message body (%zu bytes) is not a tierbus.v1.Envelope", len - 1);
  decode_fails(buf, len - 1, TB_ERR_DECODE, want);
  snprintf(want, sizeof want, "message body (%zu bytes) is not a tierbus.v1.Envelope", len - 3);
  decode_fails(buf, len - 3, TB_ERR_DECODE, want);
  /* Cut inside the id string. */
  decode_fails(buf, 3, TB_ERR_DECODE, "message body (3 bytes) is not a tierbus.v1.Envelope");
  tb_decoded_t dec;
  assert_int_equal(tb_codec_decode(cat, buf, len, &dec), TB_OK);
  tb_decoded_free(&dec);
  free(buf);
}

static void test_decode_empty_id_type_unknown(void **state) {
  uint8_t *buf;
  size_t len;
  make_envelope("", "CLIENT_CREATED", NULL, &buf, &len);
  decode_fails(buf, len, TB_ERR_DECODE, "envelope has an empty id");
  free(buf);
  make_envelope("e1", "", NULL, &buf, &len);
  decode_fails(buf, len, TB_ERR_DECODE, "envelope e1 has an empty type");
  free(buf);
  make_envelope("e1", "NOPE", NULL, &buf, &len);
  decode_fails(buf, len, TB_ERR_UNKNOWN_EVENT, "envelope e1: unknown event type 'NOPE'");
  free(buf);
  /* Names are exact: the catalogue does not fold case. */
  make_envelope("e1", "client_created", NULL, &buf, &len);
  decode_fails(buf, len, TB_ERR_UNKNOWN_EVENT, "envelope e1: unknown event type 'client_created'");
  free(buf);
  /* A known type with an empty payload is a valid all-default event. */
  make_envelope("e1", "MONTH_TRANSITION", NULL, &buf, &len);
  tb_decoded_t dec;
  assert_int_equal(tb_codec_decode(cat, buf, len, &dec), TB_OK);
  assert_string_equal(dec.def->name, "MONTH_TRANSITION");
  tb_decoded_free(&dec);
  assert_int_equal(tb_codec_decode(NULL, buf, len, &dec), TB_ERR_INVALID);
  assert_int_equal(tb_codec_decode(cat, NULL, 5, &dec), TB_ERR_INVALID);
  free(buf);
}

static void test_decode_wrong_payload(void **state) {
  /* ExecuteWorkflow field 4 (expedite) is a varint; ClientCreated field 4 (email) is a string:
   * protobuf can tell them apart by wire type. */
  Tierbus__V1__ExecuteWorkflow x = TIERBUS__V1__EXECUTE_WORKFLOW__INIT;
  x.expedite = 1;
  uint8_t *buf;
  size_t len;
  make_envelope("e2", "CLIENT_CREATED", &x.base, &buf, &len);
  decode_fails(buf, len, TB_ERR_DECODE,
               "envelope e2: CLIENT_CREATED payload (2 bytes) is not a valid "
               "tierbus.v1.ClientCreated");
  free(buf);

  /* Raw garbage as the payload. */
  Tierbus__V1__Envelope env = TIERBUS__V1__ENVELOPE__INIT;
  static uint8_t junk[] = {0x0a, 0x7f, 0x01};
  env.id = "e3";
  env.type = "enrichment-complete";
  env.payload.data = junk;
  env.payload.len = sizeof junk;
  assert_int_equal(tb_codec_pack(&env.base, &buf, &len), TB_OK);
  decode_fails(buf, len, TB_ERR_DECODE,
               "envelope e3: enrichment-complete payload (3 bytes) is not a valid "
               "tierbus.v1.EnrichmentComplete");
  free(buf);

  /* Fields this schema does not know are kept, not refused (a newer publisher). */
  static uint8_t extra[] = {0x0a, 0x01, 'c', 0xf8, 0x01, 0x05}; /* client_id "c", field 31 = 5 */
  env.type = "CLIENT_CREATED";
  env.payload.data = extra;
  env.payload.len = sizeof extra;
  assert_int_equal(tb_codec_pack(&env.base, &buf, &len), TB_OK);
  tb_decoded_t dec;
  assert_int_equal(tb_codec_decode(cat, buf, len, &dec), TB_OK);
  assert_string_equal(((Tierbus__V1__ClientCreated *)dec.payload)->client_id, "c");
  assert_int_equal(dec.payload->n_unknown_fields, 1);
  tb_decoded_free(&dec);
  free(buf);
}

/* ---------------------------------------------------------------------------------------------
 * Field access
 * ------------------------------------------------------------------------------------------- */

static void test_ordering_key_and_get_string(void **state) {
  Tierbus__V1__WorkspaceRepoAdded w = TIERBUS__V1__WORKSPACE_REPO_ADDED__INIT;
  w.workspace_id = "ws-1";
  w.repository_id = "repo-42";
  uint8_t *buf;
  size_t len;
  make_envelope("e4", "WORKSPACE_REPO_ADDED", &w.base, &buf, &len);
  tb_decoded_t dec;
  assert_int_equal(tb_codec_decode(cat, buf, len, &dec), TB_OK);
  free(buf);

  char key[64];
  tb_codec_ordering_key(&dec, key, sizeof key);
  assert_string_equal(key, "repo-42");
  char small[5];
  tb_codec_ordering_key(&dec, small, sizeof small);
  assert_string_equal(small, "repo"); /* truncated to cap - 1 bytes */
  char one[1] = {'x'};
  tb_codec_ordering_key(&dec, one, 1);
  assert_int_equal(one[0], '\0');

  assert_string_equal(tb_codec_get_string(dec.payload, "workspace_id"), "ws-1");
  assert_null(tb_codec_get_string(dec.payload, "actor")); /* empty = absent */
  assert_null(tb_codec_get_string(dec.payload, "nope"));
  assert_null(tb_codec_get_string(dec.payload, "workspaceId")); /* proto names only */
  assert_null(tb_codec_get_string(NULL, "workspace_id"));
  tb_decoded_free(&dec);

  /* Not a string field / no ordering key. */
  Tierbus__V1__DeliverableCompleted d = TIERBUS__V1__DELIVERABLE_COMPLETED__INIT;
  d.month = 3;
  assert_null(tb_codec_get_string(&d.base, "month"));
  Tierbus__V1__ExecuteWorkflow x = TIERBUS__V1__EXECUTE_WORKFLOW__INIT;
  x.workflow_id = "wf-1";
  make_envelope("e5", "execute-workflow", &x.base, &buf, &len);
  assert_int_equal(tb_codec_decode(cat, buf, len, &dec), TB_OK);
  free(buf);
  strcpy(key, "stale");
  tb_codec_ordering_key(&dec, key, sizeof key);
  assert_string_equal(key, "");
  tb_decoded_free(&dec);
  tb_decoded_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strings),
      cmocka_unit_test(test_camel_case_and_null),
      cmocka_unit_test(test_int32_bounds),
      cmocka_unit_test(test_uint32_and_int64_bounds),
      cmocka_unit_test(test_uint64_and_other_kinds),
      cmocka_unit_test(test_enums),
      cmocka_unit_test(test_nested_repeated_map),
      cmocka_unit_test(test_bytes),
      cmocka_unit_test(test_oneof),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_to_json_defaults),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_round_trip_all_types),
      cmocka_unit_test(test_pack_empty),
      cmocka_unit_test(test_decode_garbage),
      cmocka_unit_test(test_decode_truncated),
      cmocka_unit_test(test_decode_empty_id_type_unknown),
      cmocka_unit_test(test_decode_wrong_payload),
      cmocka_unit_test(test_ordering_key_and_get_string),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
