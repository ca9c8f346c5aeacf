/* Unit tests for the event catalogue: subjects/catalogue.json and schemas/ agree (every event's
 * message exists, every event message is used once, keys, tokens, subjects, tiers, streams and
 * consumers are consistent), the compiled-in copy equals the file, and every validation error of
 * the loader names its problem. Files are read from $TB_SOURCE_DIR. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "codec/catalogue.h"
#include "codec/descriptors.h"

static char cat_path[4096];
static json_t *raw;         /* the file, parsed independently of the loader */
static tb_catalogue_t *cat; /* the compiled-in copy */

static int setup(void **state) {
  const char *src = getenv("TB_SOURCE_DIR");
  if (!src) {
    fprintf(stderr, "TB_SOURCE_DIR is not set\n");
    return -1;
  }
  snprintf(cat_path, sizeof cat_path, "%s/subjects/catalogue.json", src);
  json_error_t err;
  raw = json_load_file(cat_path, 0, &err);
  if (!raw) {
    fprintf(stderr, "%s:%d: %s\n", cat_path, err.line, err.text);
    return -1;
  }
  if (tb_catalogue_load(&cat) != TB_OK) {
    fprintf(stderr, "built-in catalogue: %s\n", tb_errdetail());
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  tb_catalogue_destroy(cat);
  json_decref(raw);
  return 0;
}

static json_t *raw_events(void) {
  return json_object_get(raw, "events");
}
static json_t *raw_tiers(void) {
  return json_object_get(raw, "tiers");
}

static const char *str(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_string(v)) fail_msg("key '%s' is not a string", key);
  return json_string_value(v);
}

/* Written here rather than reusing tb_nats_token_valid(), so that the loader's check is itself
 * checked: printable ASCII without '.', '*', '>' or space. */
static int token_ok(const char *t) {
  if (!t || !*t) return 0;
  for (; *t; t++)
    if (*t <= ' ' || *t >= 0x7f || *t == '.' || *t == '*' || *t == '>') return 0;
  return 1;
}

static void upper(const char *in, char *out, size_t cap) {
  size_t i = 0;
  for (; in[i] && i + 1 < cap; i++)
    out[i] = (char)(in[i] >= 'a' && in[i] <= 'z' ? in[i] - 32 : in[i]);
  out[i] = '\0';
}

/* ---------------------------------------------------------------------------------------------
 * The shipped catalogue
 * ------------------------------------------------------------------------------------------- */

static void test_builtin_equals_file(void **state) {
  tb_catalogue_t *file = NULL;
  assert_int_equal(tb_catalogue_load_file(&file, cat_path), TB_OK);
  size_t n = json_array_size(raw_events());
  assert_true(n >= 14);
  assert_int_equal(tb_catalogue_count(cat), n);
  assert_int_equal(tb_catalogue_count(file), n);
  for (size_t i = 0; i < n; i++) {
    const tb_event_def_t *a = tb_catalogue_at(cat, i), *b = tb_catalogue_at(file, i);
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->message, b->message);
    assert_string_equal(a->domain, b->domain);
    assert_string_equal(a->token, b->token);
    assert_string_equal(a->default_tier, b->default_tier);
    assert_string_equal(a->handler, b->handler);
    if (a->ordering_key || b->ordering_key) assert_string_equal(a->ordering_key, b->ordering_key);
    assert_ptr_equal(a->descriptor, b->descriptor);
    assert_string_equal(a->name, str(json_array_get(raw_events(), i), "name"));
  }
  assert_null(tb_catalogue_at(cat, n));
  tb_catalogue_destroy(file);
}

static void test_required_events(void **state) {
  static const char *names[] = {
      "CLIENT_CREATED",           "CLIENT_ACTIVATED",       "DELIVERABLE_COMPLETED",
      "BUSINESS_PLAN_COMPLETED",  "DELIVERABLE_OVERDUE",    "MONTH_TRANSITION",
      "CLIENT_MILESTONE_REACHED", "subscriber-created",     "enrichment-complete",
      "WORKSPACE_REPO_ADDED",     "WORKSPACE_REPO_REMOVED", "workspace/priorities.sync",
      "capture/repository.sync",  "execute-workflow"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const tb_event_def_t *d = tb_catalogue_find(cat, names[i]);
    if (!d) fail_msg("event '%s' is missing", names[i]);
    assert_string_equal(d->name, names[i]);
  }
  assert_null(tb_catalogue_find(cat, "CLIENT"));
  assert_null(tb_catalogue_find(cat, "client_created"));
  assert_null(tb_catalogue_find(cat, ""));
  assert_null(tb_catalogue_find(cat, NULL));
  assert_null(tb_catalogue_find(NULL, "CLIENT_CREATED"));
  /* find and at agree for every entry (the sorted index covers all of them). */
  for (size_t i = 0; i < tb_catalogue_count(cat); i++)
    assert_ptr_equal(tb_catalogue_find(cat, tb_catalogue_at(cat, i)->name),
                     tb_catalogue_at(cat, i));
}

static const tb__descriptor_entry_t *descriptor_entry(const char *full_name) {
  for (size_t i = 0; i < tb__codec_n_descriptors; i++)
    if (strcmp(tb__codec_descriptors[i].desc->name, full_name) == 0)
      return &tb__codec_descriptors[i];
  return NULL;
}

static void test_messages_match_schemas(void **state) {
  /* Every entry's message exists in events.proto. */
  for (size_t i = 0; i < tb_catalogue_count(cat); i++) {
    const tb_event_def_t *d = tb_catalogue_at(cat, i);
    const tb__descriptor_entry_t *e = descriptor_entry(d->message);
    if (!e) fail_msg("event '%s': message '%s' is not generated", d->name, d->message);
    assert_ptr_equal(d->descriptor, e->desc);
    assert_string_equal(e->proto_file, "tierbus/v1/events.proto");
  }
  /* Every top-level message of events.proto is an event, used by exactly one entry. Nested
   * helper messages (Result, Metadata, map entries) have a '.' after the package. */
  size_t top = 0;
  for (size_t i = 0; i < tb__codec_n_descriptors; i++) {
    const ProtobufCMessageDescriptor *md = tb__codec_descriptors[i].desc;
    if (strcmp(tb__codec_descriptors[i].proto_file, "tierbus/v1/events.proto") != 0) continue;
    assert_string_equal(md->package_name, "tierbus.v1");
    const char *rest = md->name + strlen("tierbus.v1.");
    if (strchr(rest, '.')) continue;
    top++;
    int uses = 0;
    for (size_t j = 0; j < tb_catalogue_count(cat); j++)
      if (strcmp(tb_catalogue_at(cat, j)->message, md->name) == 0) uses++;
    if (uses != 1) fail_msg("message %s is used by %d catalogue entries", md->name, uses);
  }
  assert_int_equal(top, tb_catalogue_count(cat));
  /* The envelope is generated too, and is not an event. */
  const tb__descriptor_entry_t *env = descriptor_entry("tierbus.v1.Envelope");
  assert_non_null(env);
  assert_string_equal(env->proto_file, "tierbus/v1/envelope.proto");
  assert_ptr_equal(tb__codec_descriptor("tierbus.v1.Envelope"), env->desc);
  assert_null(tb__codec_descriptor("tierbus.v1.Nope"));
  assert_string_equal(str(json_object_get(raw, "schemas"), "envelope"), "tierbus.v1.Envelope");
}

static void test_ordering_keys(void **state) {
  size_t i;
  json_t *e;
  json_array_foreach(raw_events(), i, e) {
    const char *name = str(e, "name");
    const char *domain = str(e, "domain");
    json_t *k = json_object_get(e, "ordering_key");
    assert_non_null(k); /* present, even when null */
    const tb_event_def_t *d = tb_catalogue_find(cat, name);
    if (json_is_null(k)) {
      assert_null(d->ordering_key);
      continue;
    }
    const char *key = json_string_value(k);
    assert_non_null(key);
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(d->descriptor, key);
    if (!fd) fail_msg("event '%s': ordering_key '%s' is not a field", name, key);
    assert_int_equal(fd->type, PROTOBUF_C_TYPE_STRING);
    assert_int_not_equal(fd->label, PROTOBUF_C_LABEL_REPEATED);
    if (strcmp(domain, "crm") == 0) assert_string_equal(key, "client_id");
  }
  assert_string_equal(tb_catalogue_find(cat, "WORKSPACE_REPO_ADDED")->ordering_key,
                      "repository_id");
  assert_string_equal(tb_catalogue_find(cat, "WORKSPACE_REPO_REMOVED")->ordering_key,
                      "repository_id");
  assert_string_equal(tb_catalogue_find(cat, "capture/repository.sync")->ordering_key,
                      "repository_id");
  assert_string_equal(tb_catalogue_find(cat, "enrichment-complete")->ordering_key, "workflow_id");
  assert_null(tb_catalogue_find(cat, "execute-workflow")->ordering_key);
}

static void test_names_tokens_subjects(void **state) {
  size_t n = json_array_size(raw_events());
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(raw_events(), i);
    const char *name = str(e, "name"), *domain = str(e, "domain"), *token = str(e, "token");
    if (!token_ok(token)) fail_msg("event '%s': token '%s' is not a NATS token", name, token);
    if (!token_ok(domain)) fail_msg("event '%s': domain '%s' is not a NATS token", name, domain);
    assert_true(tb_nats_token_valid(token));
    char want[256];
    snprintf(want, sizeof want, "tb.evt.{tier}.%s.%s", domain, token);
    assert_string_equal(str(e, "subject"), want);
    assert_true(strlen(str(e, "description")) > 10);
    for (size_t j = 0; j < i; j++) {
      json_t *o = json_array_get(raw_events(), j);
      if (strcmp(str(o, "name"), name) == 0) fail_msg("name '%s' is listed twice", name);
      if (strcmp(str(o, "token"), token) == 0) fail_msg("token '%s' is listed twice", token);
    }
    const tb_event_def_t *d = tb_catalogue_find(cat, name);
    char subject[256];
    assert_int_equal(tb_catalogue_subject(d, "high", NULL, subject, sizeof subject), TB_OK);
    snprintf(want, sizeof want, "tb.evt.high.%s.%s", domain, token);
    assert_string_equal(subject, want);
  }
  /* Seed 002's names need NATS-safe tokens. */
  assert_string_equal(tb_catalogue_find(cat, "workspace/priorities.sync")->token,
                      "priorities-sync");
  assert_string_equal(tb_catalogue_find(cat, "capture/repository.sync")->token, "repository-sync");
}

static void test_subject_formatting(void **state) {
  const tb_event_def_t *d = tb_catalogue_find(cat, "CLIENT_CREATED");
  const char *want = "tb.evt.critical.crm.CLIENT_CREATED"; /* 34 characters */
  char buf[64];
  assert_int_equal(tb_catalogue_subject(d, "critical", NULL, buf, 35), TB_OK);
  assert_string_equal(buf, want);
  memset(buf, 'x', sizeof buf);
  assert_int_equal(tb_catalogue_subject(d, "critical", NULL, buf, 34), TB_ERR_INVALID);
  assert_string_equal(buf, "");
  assert_string_equal(tb_errdetail(),
                      "event 'CLIENT_CREATED': subject needs 35 bytes, buffer has 34");
  static const char *bad[] = {"", "a.b", "*", ">", "hi gh", "x\ty"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(tb_catalogue_subject(d, bad[i], NULL, buf, sizeof buf), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(),
                      "event 'CLIENT_CREATED': tier 'x\ty' is not a valid NATS subject token");
  assert_int_equal(tb_catalogue_subject(d, NULL, NULL, buf, sizeof buf), TB_ERR_INVALID);
  assert_int_equal(tb_catalogue_subject(NULL, "high", NULL, buf, sizeof buf), TB_ERR_INVALID);
  /* A workflow's continuation names its run's domain. */
  const tb_event_def_t *step = tb_catalogue_find(cat, "workflow-step");
  assert_int_equal(tb_catalogue_subject(step, "high", "crm", buf, sizeof buf), TB_OK);
  assert_string_equal(buf, "tb.evt.high.crm.workflow-step");
  assert_int_equal(tb_catalogue_subject(step, "high", "c.rm", buf, sizeof buf), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(),
                      "event 'workflow-step': domain 'c.rm' is not a valid NATS subject token");
}

static void test_domains(void **state) {
  const char *d[8];
  /* In order of first appearance in subjects/catalogue.json; each exactly once. */
  assert_int_equal(tb_catalogue_domains(cat, d, 8), 5);
  assert_string_equal(d[0], "crm");
  assert_string_equal(d[1], "enrichment");
  assert_string_equal(d[2], "workspace");
  assert_string_equal(d[3], "ops");
  assert_string_equal(d[4], "workflow");
  /* A short array gets the first ones and still learns the total. */
  assert_int_equal(tb_catalogue_domains(cat, d, 2), 5);
  assert_string_equal(d[1], "enrichment");
}

static void test_tiers_and_defaults(void **state) {
  static const char *tiers[] = {"critical", "high", "normal", "low", "background"};
  assert_int_equal(json_array_size(raw_tiers()), 5);
  for (size_t i = 0; i < 5; i++)
    assert_string_equal(json_string_value(json_array_get(raw_tiers(), i)), tiers[i]);
  size_t i;
  json_t *e;
  json_array_foreach(raw_events(), i, e) {
    const char *t = str(e, "default_tier");
    int found = 0;
    for (size_t k = 0; k < 5; k++) found |= strcmp(t, tiers[k]) == 0;
    if (!found) fail_msg("event '%s': default_tier '%s' is not a tier", str(e, "name"), t);
  }
  static const struct {
    const char *event, *tier;
  } want[] = {{"CLIENT_CREATED", "high"},
              {"DELIVERABLE_OVERDUE", "high"},
              {"enrichment-complete", "normal"},
              {"subscriber-created", "normal"},
              {"WORKSPACE_REPO_ADDED", "high"},
              {"WORKSPACE_REPO_REMOVED", "high"},
              {"workspace/priorities.sync", "background"},
              {"capture/repository.sync", "normal"},
              {"execute-workflow", "normal"}};
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
    assert_string_equal(tb_catalogue_find(cat, want[k].event)->default_tier, want[k].tier);
}

static void test_handlers(void **state) {
  for (size_t i = 0; i < tb_catalogue_count(cat); i++) {
    const tb_event_def_t *d = tb_catalogue_at(cat, i);
    if (strcmp(d->name, "WORKSPACE_REPO_ADDED") == 0)
      assert_string_equal(d->handler, "workspace.repo_added");
    else if (strcmp(d->name, "WORKSPACE_REPO_REMOVED") == 0)
      assert_string_equal(d->handler, "workspace.repo_removed");
    else if (strcmp(d->domain, "crm") == 0 || strcmp(d->name, "subscriber-created") == 0 ||
             strcmp(d->name, "workspace/priorities.sync") == 0)
      assert_string_equal(d->handler, "workflow.trigger"); /* they start workflows */
    else if (strcmp(d->name, "enrichment-complete") == 0 || strcmp(d->name, "command-reply") == 0)
      assert_string_equal(d->handler, "workflow.resume"); /* they answer waits */
    else if (strcmp(d->name, "execute-workflow") == 0)
      assert_string_equal(d->handler, "workflow.start");
    else if (strcmp(d->name, "workflow-step") == 0)
      assert_string_equal(d->handler, "workflow.step");
    else if (strcmp(d->name, "scheduled-task") == 0)
      assert_string_equal(d->handler, "sched.run");
    else
      assert_string_equal(d->handler, "activity");
  }
}

static void test_workspace_event_fields(void **state) {
  static const char *events[] = {"WORKSPACE_REPO_ADDED", "WORKSPACE_REPO_REMOVED"};
  /* An add may also name the repository (issue 12, seed 002's repository_name). */
  static const char *fields[] = {"workspace_id", "repository_id", "actor", "repository_name"};
  static const size_t n_fields[] = {4, 3};
  for (size_t i = 0; i < 2; i++) {
    const ProtobufCMessageDescriptor *md = tb_catalogue_find(cat, events[i])->descriptor;
    assert_string_equal(tb_catalogue_find(cat, events[i])->domain, "workspace");
    assert_int_equal(md->n_fields, n_fields[i]); /* exactly these, nothing else */
    for (size_t k = 0; k < n_fields[i]; k++) {
      const ProtobufCFieldDescriptor *fd =
          protobuf_c_message_descriptor_get_field_by_name(md, fields[k]);
      if (!fd) fail_msg("%s has no field %s", md->name, fields[k]);
      assert_int_equal(fd->type, PROTOBUF_C_TYPE_STRING);
      assert_int_not_equal(fd->label, PROTOBUF_C_LABEL_REPEATED);
    }
  }
}

static json_t *find_by(json_t *arr, const char *key, const char *value) {
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e) {
    json_t *v = json_object_get(e, key);
    if (json_is_string(v) && strcmp(json_string_value(v), value) == 0) return e;
  }
  return NULL;
}

static void assert_single_subject(json_t *stream, const char *subject) {
  json_t *subs = json_object_get(stream, "subjects");
  assert_int_equal(json_array_size(subs), 1);
  assert_string_equal(json_string_value(json_array_get(subs, 0)), subject);
}

static void test_streams_and_consumers(void **state) {
  json_t *streams = json_object_get(raw, "streams");
  json_t *consumers = json_object_get(raw, "consumers");
  size_t nt = json_array_size(raw_tiers());
  const char *domains[16];
  int nd = tb_catalogue_domains(cat, domains, 16);
  assert_true(nd > 0 && nd <= 16);
  /* One stream and one unfiltered consumer per (tier, domain), as tb_bus_provision makes them. */
  /* + DLQ, CMD and the two key-value buckets (the deployment, the leases) */
  assert_int_equal(json_array_size(streams), nt * (size_t)nd + 4);
  assert_int_equal(json_array_size(consumers), nt * (size_t)nd);
  for (size_t i = 0; i < nt; i++) {
    const char *tier = json_string_value(json_array_get(raw_tiers(), i));
    for (int d = 0; d < nd; d++) {
      char up[32], dom[32], name[80], subject[96], durable[80];
      upper(tier, up, sizeof up);
      upper(domains[d], dom, sizeof dom);
      snprintf(name, sizeof name, "TB_%s_%s", up, dom);
      snprintf(subject, sizeof subject, "tb.evt.%s.%s.>", tier, domains[d]);
      snprintf(durable, sizeof durable, "tb-%s-%s", tier, domains[d]);

      json_t *s = find_by(streams, "name", name);
      if (!s) fail_msg("no stream %s", name);
      assert_string_equal(str(s, "tier"), tier);
      assert_string_equal(str(s, "domain"), domains[d]);
      assert_string_equal(str(s, "storage"), "file");
      assert_string_equal(str(s, "retention"), "limits");
      assert_single_subject(s, subject);

      json_t *c = find_by(consumers, "durable_name", durable);
      if (!c) fail_msg("no consumer %s", durable);
      assert_string_equal(str(c, "stream"), name);
      assert_string_equal(str(c, "tier"), tier);
      assert_string_equal(str(c, "domain"), domains[d]);
      assert_string_equal(str(c, "type"), "pull");
      assert_string_equal(str(c, "ack_policy"), "explicit");
      assert_null(json_object_get(c, "filter_subject"));
    }
  }
  json_t *dlq = find_by(streams, "name", "TB_DLQ");
  assert_non_null(dlq);
  assert_single_subject(dlq, "tb.dlq.>");
  assert_string_equal(str(dlq, "storage"), "file");
  json_t *cmd = find_by(streams, "name", "TB_CMD");
  assert_non_null(cmd);
  assert_single_subject(cmd, "tb.cmd.>");
}

static void test_dead_letter_and_publishing(void **state) {
  json_t *dl = json_object_get(raw, "dead_letter");
  assert_string_equal(str(dl, "stream"), "TB_DLQ");
  assert_string_equal(str(dl, "subject"), "tb.dlq.<tier>.<domain>.<token>");
  static const char *headers[] = {"Tb-Dlq-Reason", "Tb-Dlq-Class",      "Tb-Dlq-Stream",
                                  "Tb-Dlq-Seq",    "Tb-Dlq-Deliveries", "Tb-Dlq-Subject"};
  json_t *h = json_object_get(dl, "headers");
  assert_int_equal(json_array_size(h), 6);
  for (size_t i = 0; i < 6; i++) {
    json_t *e = find_by(h, "name", headers[i]);
    if (!e) fail_msg("dead letter header %s is not listed", headers[i]);
    assert_true(strlen(str(e, "description")) > 5);
  }
  json_t *pub = json_object_get(raw, "publishing");
  assert_non_null(json_object_get(json_object_get(pub, "headers"), "Nats-Msg-Id"));
  assert_non_null(strstr(str(pub, "body"), "tierbus.v1.Envelope"));
  assert_non_null(strstr(str(pub, "subject"), "tb.evt.{tier}.<domain>.<token>"));
}

/* ---------------------------------------------------------------------------------------------
 * Loader validation: each broken variant of the shipped file fails with its own detail
 * ------------------------------------------------------------------------------------------- */

/* Writes |doc| to a temporary file, loads it and expects TB_ERR_CONFIG with the detail
 * "<path>: <detail>". Takes ownership of |doc|. */
static void load_fails(json_t *doc, const char *detail) {
  char path[] = "/tmp/tb_catalogue_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(json_dump_file(doc, path, JSON_INDENT(2)), 0);
  json_decref(doc);
  tb_catalogue_t *c = (tb_catalogue_t *)0x1;
  tb_status rc = tb_catalogue_load_file(&c, path);
  char want[1024];
  snprintf(want, sizeof want, "%s: %s", path, detail);
  unlink(path);
  assert_int_equal(rc, TB_ERR_CONFIG);
  assert_ptr_equal(c, (tb_catalogue_t *)0x1); /* untouched on failure */
  assert_string_equal(tb_errdetail(), want);
}

static json_t *copy_doc(void) {
  return json_deep_copy(raw);
}
static json_t *event_of(json_t *doc, size_t i) {
  return json_array_get(json_object_get(doc, "events"), i);
}

static void test_load_errors(void **state) {
  json_t *d;

  d = copy_doc();
  json_object_set_new(event_of(d, 0), "message", json_string("tierbus.v1.Nope"));
  load_fails(d, "catalogue event 'CLIENT_CREATED': message 'tierbus.v1.Nope' is not in schemas");

  d = copy_doc();
  json_object_set_new(event_of(d, 0), "token", json_string("CLIENT.CREATED"));
  load_fails(d, "catalogue event 'CLIENT_CREATED': token 'CLIENT.CREATED' is not a valid NATS "
                "subject token");

  d = copy_doc();
  json_object_set_new(event_of(d, 0), "domain", json_string("c*m"));
  load_fails(d, "catalogue event 'CLIENT_CREATED': domain 'c*m' is not a valid NATS subject token");

  d = copy_doc();
  json_object_set_new(event_of(d, 0), "subject", json_string("tb.evt.high.crm.CLIENT_CREATED"));
  load_fails(d, "catalogue event 'CLIENT_CREATED': subject 'tb.evt.high.crm.CLIENT_CREATED' does "
                "not match 'tb.evt.{tier}.crm.CLIENT_CREATED'");

  d = copy_doc();
  json_object_set_new(event_of(d, 0), "default_tier", json_string("urgent"));
  load_fails(d, "catalogue event 'CLIENT_CREATED': default_tier 'urgent' is not in 'tiers'");

  d = copy_doc();
  json_object_set_new(event_of(d, 0), "ordering_key", json_string("nope"));
  load_fails(d, "catalogue event 'CLIENT_CREATED': ordering_key 'nope' is not a field of "
                "tierbus.v1.ClientCreated");

  d = copy_doc();
  json_object_set_new(event_of(d, 2), "ordering_key", json_string("month"));
  load_fails(d, "catalogue event 'DELIVERABLE_COMPLETED': ordering_key 'month' of "
                "tierbus.v1.DeliverableCompleted is not a singular string field");

  d = copy_doc();
  json_object_set_new(event_of(d, 0), "ordering_key", json_integer(1));
  load_fails(d, "catalogue event 'CLIENT_CREATED': ordering_key must be a field name or null");

  d = copy_doc();
  json_object_set_new(event_of(d, 0), "ordering-key", json_string("client_id"));
  load_fails(d, "catalogue event 'CLIENT_CREATED': unknown key 'ordering-key'");

  d = copy_doc();
  json_object_del(event_of(d, 0), "handler");
  load_fails(d, "catalogue event 'CLIENT_CREATED': 'handler' must be a non-empty string");

  d = copy_doc();
  json_object_set_new(event_of(d, 3), "name", json_string(""));
  load_fails(d, "catalogue events[3]: 'name' must be a non-empty string");

  d = copy_doc();
  json_array_set_new(json_object_get(d, "events"), 1, json_string("x"));
  load_fails(d, "catalogue events[1]: must be an object");

  d = copy_doc();
  json_object_set_new(event_of(d, 1), "name", json_string("CLIENT_CREATED"));
  load_fails(d, "catalogue: event 'CLIENT_CREATED' is listed twice");

  d = copy_doc();
  json_object_set_new(event_of(d, 1), "token", json_string("CLIENT_CREATED"));
  json_object_set_new(event_of(d, 1), "subject", json_string("tb.evt.{tier}.crm.CLIENT_CREATED"));
  load_fails(d, "catalogue event 'CLIENT_ACTIVATED': subject 'crm.CLIENT_CREATED' is already used "
                "by event 'CLIENT_CREATED'");

  d = copy_doc();
  json_array_append_new(json_object_get(d, "tiers"), json_string("high"));
  load_fails(d, "catalogue: tier 'high' is listed twice");

  d = copy_doc();
  json_array_set_new(json_object_get(d, "tiers"), 0, json_string("crit.ical"));
  load_fails(d, "catalogue: tiers[0] 'crit.ical' is not a valid NATS subject token");

  d = copy_doc();
  json_object_set_new(d, "tiers", json_array());
  load_fails(d, "catalogue: 'tiers' must be a non-empty array of tier names");

  d = copy_doc();
  json_object_set_new(d, "events", json_object());
  load_fails(d, "catalogue: 'events' must be a non-empty array");

  load_fails(json_array(), "catalogue: top level must be a JSON object");
}

static void test_load_file_io_and_syntax(void **state) {
  tb_catalogue_t *c = NULL;
  assert_int_equal(tb_catalogue_load_file(&c, "/nonexistent/catalogue.json"), TB_ERR_IO);
  assert_null(c);
  assert_non_null(strstr(tb_errdetail(), "/nonexistent/catalogue.json: "));

  char path[] = "/tmp/tb_catalogue_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "{\n  \"events\": [,]\n}\n", 20), 20);
  close(fd);
  assert_int_equal(tb_catalogue_load_file(&c, path), TB_ERR_CONFIG);
  char want[64];
  snprintf(want, sizeof want, "%s:2:", path);
  unlink(path);
  assert_null(c);
  if (strncmp(tb_errdetail(), want, strlen(want)) != 0)
    fail_msg("detail '%s' does not start with '%s'", tb_errdetail(), want);
  assert_int_equal(tb_catalogue_load_file(NULL, path), TB_ERR_INVALID);
  assert_int_equal(tb_catalogue_load(NULL), TB_ERR_INVALID);
  tb_catalogue_destroy(NULL);
}

static void test_token_validity(void **state) {
  assert_true(tb_nats_token_valid("CLIENT_CREATED"));
  assert_true(tb_nats_token_valid("priorities-sync"));
  assert_true(tb_nats_token_valid("a"));
  assert_false(tb_nats_token_valid(""));
  assert_false(tb_nats_token_valid(NULL));
  assert_false(tb_nats_token_valid("workspace/priorities.sync"));
  assert_false(tb_nats_token_valid("a*"));
  assert_false(tb_nats_token_valid(">"));
  assert_false(tb_nats_token_valid("a b"));
  assert_false(tb_nats_token_valid("a\r"));
  assert_false(tb_nats_token_valid("a\x7f"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_builtin_equals_file),
      cmocka_unit_test(test_required_events),
      cmocka_unit_test(test_messages_match_schemas),
      cmocka_unit_test(test_ordering_keys),
      cmocka_unit_test(test_names_tokens_subjects),
      cmocka_unit_test(test_subject_formatting),
      cmocka_unit_test(test_domains),
      cmocka_unit_test(test_tiers_and_defaults),
      cmocka_unit_test(test_handlers),
      cmocka_unit_test(test_workspace_event_fields),
      cmocka_unit_test(test_streams_and_consumers),
      cmocka_unit_test(test_dead_letter_and_publishing),
      cmocka_unit_test(test_load_errors),
      cmocka_unit_test(test_load_file_io_and_syntax),
      cmocka_unit_test(test_token_validity),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
