/* The pump shared by the in-process workflow tests (test_seed_runtime, test_chain): it plays
 * the relay, the engine and the services without NATS. It takes the outbox's rows in due order on
 * a virtual clock (so timers fire at once, yet after everything already due), runs each event's
 * catalogue handler in a savepoint inside a transaction of its own as the engine does, and
 * answers each command with the simulator's pure answer function (tb_sim_answer), publishing the
 * reply (and enrichment-complete) back through the outbox. Include after wf_harness.h. */
#ifndef TB_TESTS_WF_PUMP_H
#define TB_TESTS_WF_PUMP_H

#include "api/publish.h"
#include "core/clock.h"
#include "sim/sim.h"
#include "store/workflow.h"
#include "tierbus/v1/events.pb-c.h"
#include "workflows/registry.h"

typedef struct pump {
  world_t *w;
  tb_sim_opts_t sim;
  /* 1: the provider's webhook comes an hour after the submit's reply (virtual clock) instead of
   * with it, so a wait starts before it arrives whichever way the steps travel. */
  int late_webhook;
  int events;        /* messages handled */
  int steps;         /* of those, workflow-step continuations */
  int commands;      /* commands answered */
  char calls[32768]; /* "service.action status" lines, in the order answered */
  size_t used;
} pump_t;

static inline void pump_init(pump_t *p, world_t *w) {
  memset(p, 0, sizeof(*p));
  p->w = w;
  tb_sim_opts_init(&p->sim);
  p->sim.cfg = &w->cfg;
  p->sim.cat = w->cat;
}

static inline void add_fail(pump_t *p, const char *spec) {
  assert_int_equal(tb_sim_parse_fail(spec, &p->sim.fails[p->sim.n_fails++]), TB_OK);
}

/* Queues event |event| in the outbox with id |id|, due at |due_us| (0 = now), as a publisher
 * would. */
static inline void publish_at(world_t *w, const char *event, const char *tier, const char *id,
                              json_t *payload, int64_t due_us) {
  tb_publish_req_t req = {.event = event, .payload = payload, .tier = tier, .id = id};
  tb_prepared_t p;
  /* An id is what the simulator would publish too ("reply:<command_id>"): one too long for an
   * envelope means the real reply could never be published either. */
  if (tb_publish_prepare(&w->cfg, w->cat, &req, &p) != TB_OK)
    fail_msg("publish %s id '%s' (%zu chars): %s", event, id, strlen(id), tb_errdetail());
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_outbox_add_at(w->st, p.subject, p.id, p.buf, p.len, NULL, due_us),
                   TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  tb_prepared_free(&p);
}

static inline void publish(world_t *w, const char *event, const char *tier, const char *id,
                           json_t *payload) {
  publish_at(w, event, tier, id, payload, 0);
}

/* publish() with the payload as JSON text, on the event's default tier. */
static inline void publish_text(world_t *w, const char *event, const char *id, const char *json) {
  json_error_t err;
  json_t *payload = json_loads(json, 0, &err);
  if (payload == NULL) fail_msg("bad payload %s: %s", json, err.text);
  publish(w, event, NULL, id, payload);
  json_decref(payload);
}

/* A service answering one command: the simulator's answer, published back as events. */
static inline void answer(pump_t *p, const tb_outbox_row_t *row) {
  Tierbus__V1__Command *cmd =
      tierbus__v1__command__unpack(NULL, row->len, (const uint8_t *)row->payload);
  if (cmd == NULL) fail_msg("outbox row %s on %s is not a Command", row->msg_id, row->subject);
  assert_string_equal(cmd->command_id, row->msg_id);
  tb_sim_answer_t a;
  assert_int_equal(tb_sim_answer(&p->sim, cmd, &a), TB_OK);
  p->used += (size_t)snprintf(p->calls + p->used, sizeof(p->calls) - p->used, "%s.%s %d\n",
                              cmd->service, cmd->action, a.drop ? 0 : a.status_code);
  p->commands++;
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
      publish_at(p->w, "enrichment-complete", cmd->reply_tier, a.enrichment_msg_id, a.enrichment,
                 p->late_webhook ? tb_wall_us() + 3600LL * 1000000 : 0);
  }
  tb_sim_answer_free(&a);
  tierbus__v1__command__free_unpacked(cmd, NULL);
}

/* Runs the catalogue handler of event row |row| in a savepoint inside the open transaction, as
 * the engine does, and returns its status (the savepoint is released or rolled back). */
static inline tb_status handle(pump_t *p, const tb_outbox_row_t *row) {
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
  tb__clear_detail();
  tb_status s = fn(&ctx);
  if (s == TB_OK)
    assert_int_equal(tb_store_release(w->st), TB_OK);
  else
    assert_int_equal(tb_store_rollback_to(w->st), TB_OK);
  p->events++;
  if (strcmp(d.def->name, "workflow-step") == 0) p->steps++;
  tb_decoded_free(&d);
  return s;
}

/* The row due first (virtual clock: a timer fires once everything due before it ran), or 0 when
 * the outbox is empty. Caller frees with tb_store_outbox_free(row, 1). */
static inline int next_row(world_t *w, tb_outbox_row_t **row) {
  int64_t n = 0, due = 0;
  assert_int_equal(tb_store_outbox_count(w->st, &n), TB_OK);
  if (n == 0) return 0;
  assert_int_equal(tb_store_outbox_next_due(w->st, &due), TB_OK);
  int k = 0;
  assert_int_equal(tb_store_outbox_next(w->st, due, 1, row, &k), TB_OK);
  assert_int_equal(k, 1);
  return 1;
}

/* Takes |row| out of the outbox and handles it (a command: answers it), committing. */
static inline void pump_row(pump_t *p, const tb_outbox_row_t *row) {
  world_t *w = p->w;
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_outbox_delete(w->st, row->id), TB_OK);
  if (strncmp(row->subject, "tb.cmd.", 7) == 0) {
    assert_int_equal(tb_store_commit(w->st), TB_OK);
    answer(p, row);
    return;
  }
  tb_status s = handle(p, row);
  if (s != TB_OK) fail_msg("%s failed: %s: %s", row->msg_id, tb_strerror(s), tb_errdetail());
  assert_int_equal(tb_store_commit(w->st), TB_OK);
}

/* Handles rows until one whose subject contains |stop| is next (left in the outbox; NULL = run
 * until the outbox is empty). Returns 1 when it stopped there. */
static inline int pump_until(pump_t *p, const char *stop) {
  for (int i = 0; i < 20000; i++) {
    tb_outbox_row_t *row = NULL;
    if (!next_row(p->w, &row)) return 0;
    if (stop != NULL && strstr(row->subject, stop) != NULL) {
      tb_store_outbox_free(row, 1);
      return 1;
    }
    pump_row(p, row);
    tb_store_outbox_free(row, 1);
  }
  fail_msg("the outbox did not drain");
  return 0;
}

/* Handles outbox rows, earliest due first, until the outbox is empty. */
static inline void pump_run(pump_t *p) {
  pump_until(p, NULL);
}

#endif
