/* A harness for driving one workflow's steps by hand, the way src/workflows/runtime.c drives
 * them, against a real in-memory store: a run step runs in a transaction that is rolled back when
 * it fails, its result lands in data.steps, and a command's reply or a wait's event is put into
 * data.steps as the runtime would after the resume. Include from one test file only. */
#ifndef TB_TESTS_WF_HARNESS_H
#define TB_TESTS_WF_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "codec/catalogue.h"
#include "codec/codec.h"
#include "config/config.h"
#include "core/status.h"
#include "api/handler.h"
#include "store/store.h"
#include "workflows/wf.h"

typedef struct world {
  tb_catalogue_t *cat;
  tb_store_t *st;
  tb_config_t cfg;
  tb_handler_ctx_t ctx;
} world_t;

/* The design's five tiers, built in code so that the tests do not depend on the example file. */
static inline void default_tiers(tb_config_t *cfg) {
  static const char *const names[] = {"critical", "high", "normal", "low", "background"};
  tb_config_init(cfg);
  for (int i = 0; i < 5; i++) {
    snprintf(cfg->tiers[i].name, sizeof(cfg->tiers[i].name), "%s", names[i]);
    cfg->tiers[i].timeout_ms = 60000;
    cfg->tiers[i].concurrency = 1;
    cfg->tiers[i].max_deliver = 5;
  }
  cfg->n_tiers = 5;
  /* The pump's clock is virtual; a breaker's cool-down is wall-clock time, which would hold a
   * failing service's commands for ever here. test_seed_parity tests the breaker for real. */
  cfg->breaker_failures = 0;
}

static inline int world_setup(void **state) {
  world_t *w = calloc(1, sizeof(*w));
  if (w == NULL) return -1;
  if (tb_catalogue_load(&w->cat) != TB_OK) {
    fprintf(stderr, "catalogue: %s\n", tb_errdetail());
    free(w);
    return -1;
  }
  if (tb_store_open(&w->st, ":memory:") != TB_OK) {
    fprintf(stderr, "store: %s\n", tb_errdetail());
    tb_catalogue_destroy(w->cat);
    free(w);
    return -1;
  }
  default_tiers(&w->cfg);
  w->ctx = (tb_handler_ctx_t){.store = w->st, .cfg = &w->cfg, .cat = w->cat, .tier = "normal"};
  *state = w;
  return 0;
}

static inline int world_teardown(void **state) {
  world_t *w = *state;
  tb_store_close(w->st);
  tb_catalogue_destroy(w->cat);
  free(w);
  return 0;
}

/* One run of one workflow definition. */
typedef struct run {
  world_t *w;
  const tb_workflow_def_t *def;
  char id[TB_ID_MAX];
  json_t *data;
  int fail_code; /* of the last failed run step */
} run_t;

/* A run of workflow |name| with |input_json| as its input (the data the runtime starts with). */
static inline run_t run_new(world_t *w, const char *name, const char *id, const char *input_json) {
  run_t r = {.w = w, .def = tb_wf_find(name)};
  if (r.def == NULL) fail_msg("no workflow '%s' registered", name);
  snprintf(r.id, sizeof(r.id), "%s", id);
  json_error_t err;
  json_t *input = json_loads(input_json, 0, &err);
  if (input == NULL) fail_msg("bad test input %s: %s", input_json, err.text);
  r.data = json_pack("{s:o, s:{}}", "input", input, "steps");
  return r;
}

static inline void run_free(run_t *r) {
  json_decref(r->data);
  r->data = NULL;
}

static inline const tb_step_def_t *step_of(const run_t *r, const char *name) {
  for (int i = 0; i < r->def->n_steps; i++)
    if (strcmp(r->def->steps[i].name, name) == 0) return &r->def->steps[i];
  fail_msg("workflow %s has no step '%s'", r->def->name, name);
  return NULL;
}

static inline tb_wf_run_t view(run_t *r, const char *step) {
  return (tb_wf_run_t){.ctx = &r->w->ctx,
                       .id = r->id,
                       .name = r->def->name,
                       .tier = r->def->tier,
                       .step = step,
                       .attempt = 1,
                       .data = r->data};
}

/* The step's condition as the runtime evaluates it (1 when it has none). */
static inline int step_when(run_t *r, const char *name) {
  const tb_step_def_t *st = step_of(r, name);
  tb_wf_run_t v = view(r, name);
  return st->when == NULL || st->when(&v);
}

/* Runs run step |name| in its own transaction, kept on success (the result lands in data.steps)
 * and rolled back on failure. Returns the step's status; the failure's detail stays readable. */
static inline tb_status step_run(run_t *r, const char *name) {
  const tb_step_def_t *st = step_of(r, name);
  assert_int_equal(st->kind, TB_STEP_RUN);
  tb_wf_run_t v = view(r, name);
  json_t *result = NULL;
  assert_int_equal(tb_store_begin(r->w->st), TB_OK);
  tb__clear_detail();
  tb_status s = st->run(&v, &result);
  r->fail_code = v.fail_code;
  if (s == TB_OK) {
    assert_int_equal(tb_store_commit(r->w->st), TB_OK);
    json_object_set_new(json_object_get(r->data, "steps"), name, result ? result : json_null());
  } else {
    char detail[1024];
    snprintf(detail, sizeof(detail), "%s", tb_errdetail());
    json_decref(result);
    assert_int_equal(tb_store_rollback(r->w->st), TB_OK);
    tb__fail(s, "%s", detail); /* the rollback may not touch it, but keep it exact */
  }
  return s;
}

/* Like step_run, but the step must succeed; returns its result (borrowed from data.steps). */
static inline json_t *step_ok(run_t *r, const char *name) {
  tb_status s = step_run(r, name);
  if (s != TB_OK) fail_msg("step %s failed: %s: %s", name, tb_strerror(s), tb_errdetail());
  return json_object_get(json_object_get(r->data, "steps"), name);
}

/* A command step's input, as compact JSON text (caller frees), checking service and action. */
static inline char *step_input(run_t *r, const char *name, const char *service,
                               const char *action) {
  const tb_step_def_t *st = step_of(r, name);
  assert_int_equal(st->kind, TB_STEP_COMMAND);
  assert_string_equal(st->service, service);
  assert_string_equal(st->action, action);
  tb_wf_run_t v = view(r, name);
  json_t *in = NULL;
  tb_status s = st->input(&v, &in);
  if (s != TB_OK) fail_msg("input of %s failed: %s", name, tb_errdetail());
  char *text = json_dumps(in, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(in);
  return text;
}

/* What the runtime stores for a step once its reply or event came: the parsed JSON. */
static inline void step_set(run_t *r, const char *name, const char *json_text) {
  json_error_t err;
  json_t *v = json_loads(json_text, JSON_DECODE_ANY, &err);
  if (v == NULL) fail_msg("bad result %s: %s", json_text, err.text);
  json_object_set_new(json_object_get(r->data, "steps"), name, v);
}

static inline const char *step_branch(run_t *r, const char *name) {
  const tb_step_def_t *st = step_of(r, name);
  assert_int_equal(st->kind, TB_STEP_BRANCH);
  tb_wf_run_t v = view(r, name);
  return st->branch(&v);
}

/* Compact, key-sorted JSON text of |v| (static buffer, for assert_string_equal). */
static inline const char *jtext(const json_t *v) {
  static char buf[8192];
  char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  snprintf(buf, sizeof(buf), "%s", t ? t : "(null)");
  free(t);
  return buf;
}

/* The events queued in the outbox, oldest first, as "TYPE@tier-subject {payload json}" lines
 * joined by "\n"; the outbox is emptied. Caller frees. */
static inline char *drain_events(world_t *w) {
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(w->st, INT64_MAX, 1000, &rows, &n), TB_OK);
  size_t cap = 65536, used = 0;
  char *out = calloc(1, cap);
  assert_non_null(out);
  for (int i = 0; i < n; i++) {
    tb_decoded_t d;
    if (tb_codec_decode(w->cat, rows[i].payload, rows[i].len, &d) != TB_OK)
      fail_msg("outbox row %s is not an event: %s", rows[i].msg_id, tb_errdetail());
    json_t *p = NULL;
    assert_int_equal(tb_codec_payload_to_json(d.payload, &p), TB_OK);
    used += (size_t)snprintf(out + used, cap - used, "%s%s %s %s", i ? "\n" : "", d.env->type,
                             rows[i].subject, jtext(p));
    json_decref(p);
    tb_decoded_free(&d);
    assert_int_equal(tb_store_outbox_delete(w->st, rows[i].id), TB_OK);
  }
  tb_store_outbox_free(rows, n);
  return out;
}

#endif
