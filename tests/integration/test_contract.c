/* Integration: the subscription contract. Other services subscribe per tier by reading
 * subjects/catalogue.json, so its streams and consumers sections must describe exactly what
 * `tierbus init` creates on a live server, and init must leave alone the consumers that those
 * services add to tierbus's streams. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/itest.h"

#define RUN_MS 20000

static json_t *load_catalogue(void) {
  const char *src = getenv("TB_SOURCE_DIR");
  assert_non_null(src);
  char path[1024];
  snprintf(path, sizeof(path), "%s/subjects/catalogue.json", src);
  json_error_t jerr;
  json_t *cat = json_load_file(path, 0, &jerr);
  if (cat == NULL) print_error("%s: %s\n", path, jerr.text);
  assert_non_null(cat);
  return cat;
}

static json_t *find_by(json_t *arr, const char *key, const char *value) {
  size_t i;
  json_t *o;
  json_array_foreach(arr, i, o) {
    const char *v = json_string_value(json_object_get(o, key));
    if (v != NULL && strcmp(v, value) == 0) return o;
  }
  return NULL;
}

static void init_ok(tb_h_t *h) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* Every stream on the server is in the catalogue with its subjects, storage and retention, every
 * catalogue stream is on the server; the same for the consumers, whose descriptions carry the
 * owner mark. */
static void test_catalogue_matches_the_server(void **state) {
  tb_h_t *h = *state;
  tb_it_start_and_init(h);
  json_t *cat = load_catalogue();
  json_t *streams = json_object_get(cat, "streams"), *consumers = json_object_get(cat, "consumers");
  jsStreamInfoList *list = NULL;
  jsErrCode jerr = 0;
  assert_int_equal(js_Streams(&list, tb_h_js(h), NULL, &jerr), NATS_OK);
  assert_int_equal(list->Count, (int)json_array_size(streams));
  int n_consumers = 0;
  for (int i = 0; i < list->Count; i++) {
    jsStreamConfig *sc = list->List[i]->Config;
    json_t *s = find_by(streams, "name", sc->Name);
    if (s == NULL) print_error("stream %s is on the server, not in the catalogue\n", sc->Name);
    assert_non_null(s);
    json_t *subjects = json_object_get(s, "subjects");
    assert_int_equal(sc->SubjectsLen, (int)json_array_size(subjects));
    for (int k = 0; k < sc->SubjectsLen; k++)
      assert_string_equal(sc->Subjects[k], json_string_value(json_array_get(subjects, k)));
    const char *storage = json_string_value(json_object_get(s, "storage"));
    if (storage) assert_string_equal(storage, sc->Storage == js_FileStorage ? "file" : "memory");
    const char *retention = json_string_value(json_object_get(s, "retention"));
    if (retention)
      assert_string_equal(retention, sc->Retention == js_LimitsPolicy      ? "limits"
                                     : sc->Retention == js_WorkQueuePolicy ? "workqueue"
                                                                           : "interest");

    jsConsumerInfoList *cl = NULL;
    natsStatus ns = js_Consumers(&cl, tb_h_js(h), sc->Name, NULL, &jerr);
    assert_true(ns == NATS_OK || ns == NATS_NOT_FOUND); /* NOT_FOUND: none on this stream */
    for (int c = 0; cl != NULL && c < cl->Count; c++) {
      jsConsumerConfig *cc = cl->List[c]->Config;
      json_t *want = find_by(consumers, "durable_name", cc->Durable);
      if (want == NULL)
        print_error("consumer %s is on the server, not in the catalogue\n", cc->Durable);
      assert_non_null(want);
      assert_string_equal(json_string_value(json_object_get(want, "stream")), sc->Name);
      assert_true(cc->FilterSubject == NULL || *cc->FilterSubject == '\0');
      assert_true(cc->DeliverSubject == NULL || *cc->DeliverSubject == '\0'); /* pull */
      assert_int_equal(cc->AckPolicy, js_AckExplicit);
      assert_non_null(cc->Description);
      assert_true(strncmp(cc->Description, "tierbus:", 8) == 0);
      n_consumers++;
    }
    jsConsumerInfoList_Destroy(cl);
  }
  assert_int_equal(n_consumers, (int)json_array_size(consumers));
  jsStreamInfoList_Destroy(list);
  json_decref(cat);
}

/* Adds pull consumer |durable| on |stream| as another service would. */
static void add_foreign_consumer(tb_h_t *h, const char *stream, const char *durable,
                                 const char *description) {
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = durable;
  cc.Description = description;
  cc.AckPolicy = js_AckExplicit;
  cc.AckWait = 7 * 1000000000LL;
  jsConsumerInfo *ci = NULL;
  jsErrCode jerr = 0;
  assert_int_equal(js_AddConsumer(&ci, tb_h_js(h), stream, &cc, NULL, &jerr), NATS_OK);
  jsConsumerInfo_Destroy(ci);
}

static int64_t consumer_ack_wait_s(tb_h_t *h, const char *stream, const char *durable, char *desc,
                                   size_t cap) {
  jsConsumerInfo *ci = NULL;
  jsErrCode jerr = 0;
  if (js_GetConsumerInfo(&ci, tb_h_js(h), stream, durable, NULL, &jerr) != NATS_OK) return -1;
  int64_t s = ci->Config->AckWait / 1000000000LL;
  snprintf(desc, cap, "%s", ci->Config->Description ? ci->Config->Description : "");
  jsConsumerInfo_Destroy(ci);
  return s;
}

/* A service's own consumer on a tier stream survives init untouched, whatever its name; one that
 * took tierbus's own durable name makes init fail with a message that names it, and it is left
 * as it was. */
static void test_init_leaves_foreign_consumers_alone(void **state) {
  tb_h_t *h = *state;
  tb_it_start_and_init(h);
  /* "tb-high" is the name an earlier catalogue documented; init once deleted consumers by it. */
  add_foreign_consumer(h, "TB_HIGH_CRM", "tb-high", "analytics: high crm events");
  add_foreign_consumer(h, "TB_HIGH_CRM", "analytics", NULL);
  init_ok(h);
  char desc[200];
  assert_int_equal(consumer_ack_wait_s(h, "TB_HIGH_CRM", "tb-high", desc, sizeof(desc)), 7);
  assert_string_equal(desc, "analytics: high crm events");
  assert_int_equal(consumer_ack_wait_s(h, "TB_HIGH_CRM", "analytics", desc, sizeof(desc)), 7);

  /* A foreign consumer under tierbus's name: refused, named, unchanged. */
  jsErrCode jerr = 0;
  assert_int_equal(js_DeleteConsumer(tb_h_js(h), "TB_LOW_OPS", "tb-low-ops", NULL, &jerr), NATS_OK);
  add_foreign_consumer(h, "TB_LOW_OPS", "tb-low-ops", "reporting service");
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  assert_int_not_equal(r.status, 0);
  tb_assert_contains(r.err, "tb-low-ops");
  tb_assert_contains(r.err, "not tierbus's");
  tb_h_result_free(&r);
  assert_int_equal(consumer_ack_wait_s(h, "TB_LOW_OPS", "tb-low-ops", desc, sizeof(desc)), 7);
  assert_string_equal(desc, "reporting service");
}

/* A consumer that an older tierbus made, before the owner mark, is still taken as tierbus's and
 * gets the mark. */
static void test_init_adopts_its_unmarked_consumers(void **state) {
  tb_h_t *h = *state;
  tb_it_start_and_init(h);
  jsErrCode jerr = 0;
  assert_int_equal(js_DeleteConsumer(tb_h_js(h), "TB_NORMAL_CRM", "tb-normal-crm", NULL, &jerr),
                   NATS_OK);
  add_foreign_consumer(h, "TB_NORMAL_CRM", "tb-normal-crm", NULL);
  init_ok(h);
  char desc[200];
  assert_true(consumer_ack_wait_s(h, "TB_NORMAL_CRM", "tb-normal-crm", desc, sizeof(desc)) != 7);
  assert_true(strncmp(desc, "tierbus:", 8) == 0);
}

/* A replica count the server cannot hold is refused with the reason, and nothing is half made: the
 * default then creates every stream with one copy. (A 3-node cluster: test_cluster.) */
static void test_init_refuses_replicas_a_single_server_cannot_hold(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", "--set", "replicas=3", NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "replicas 3 (config): that needs a NATS cluster of at least 3");
  tb_assert_contains(r.err, "non-clustered");
  tb_h_result_free(&r);
  init_ok(h);
  jsStreamInfoList *list = NULL;
  jsErrCode jerr = 0;
  assert_int_equal(js_Streams(&list, tb_h_js(h), NULL, &jerr), NATS_OK);
  assert_true(list->Count > 0);
  for (int i = 0; i < list->Count; i++) assert_int_equal(list->List[i]->Config->Replicas, 1);
  jsStreamInfoList_Destroy(list);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_catalogue_matches_the_server, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_init_leaves_foreign_consumers_alone, tb_h_setup,
                                      tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_init_adopts_its_unmarked_consumers, tb_h_setup,
                                      tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_init_refuses_replicas_a_single_server_cannot_hold,
                                      tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
