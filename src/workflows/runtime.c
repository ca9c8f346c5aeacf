/* The workflow runtime: runs a run's steps inside the engine's batch transaction, on in one call
 * while they are local (run, branch, skipped), and across the bus, one `workflow-step` message
 * (a continuation) per hop, where they are not (commands, waits, sleeps, retries, tier changes).
 * The state machine of a run, per step:
 *
 *   ready --run/branch--> (ok: next step | failed: retry timer or onError)
 *   ready --command/wait--> waiting --reply/event or timeout--> ok / failed
 *   ready --sleep--> sleeping --timer--> ok
 *
 * Every transition bumps the run's seq, and every continuation carries the seq it was sent for;
 * a continuation whose seq is not the run's current one is stale and does nothing. A timeout and
 * the event it guards are sent as the same continuation (same seq, same message id): whichever
 * is handled first decides, from the inbox in SQLite, whether the wait was answered. So a wait
 * resolves exactly once however the two race, and a restart in between changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/publish.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "store/escalation.h"
#include "store/slots.h"
#include "store/workflow.h"
#include "tierbus/v1/command.pb-c.h"
#include "workflows/breaker.h"
#include "workflows/escalation.h"
#include "workflows/handlers.h"
#include "workflows/wf.h"

static const char *const kind_names[] = {"run", "command", "wait", "sleep", "branch"};

int tb_wf_status_final(const char *status) {
  return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
         strcmp(status, "cancelled") == 0;
}

/* The event that answers a command; a command step waits for it, keyed by the command id. */
#define REPLY_EVENT "command-reply"
/* The continuation event: runs or resumes a run's current step. */
#define STEP_EVENT "workflow-step"

/* One run being advanced by one message. */
typedef struct stepper {
  const tb_handler_ctx_t *ctx;
  const tb_workflow_def_t *def;
  tb_wf_row_t row;
  json_t *data; /* parsed row.data, written back by flush() */
  tb_wf_run_t run;
  const char *msg_id; /* the message being handled: the one that runs the steps */
  int dirty;          /* the row changed since it was read or written: flush() writes it */
  /* What the message being handled put in the inbox for (run, arrived_seq), parsed: resume()
   * takes it instead of reading the row back (owned until then). */
  json_t *arrived;
  int arrived_code;
  int64_t arrived_seq;
  /* The history row of the step attempt under way: written once, when the attempt ends
   * (hist_end), instead of an insert at its start and an update at its end. */
  struct {
    int open;
    const tb_step_def_t *st;
    int step, attempt;
    int64_t started_us;
  } hist;
  /* Running on (run_on): */
  /* When the run was read parked in a wait or a sleep: the time since it parked (its
   * updated_us), which does not count against its deadline, is credited at the next write. */
  int64_t parked_us;
  int budget;       /* steps this call may still run; at 0 the next step gets a continuation */
  int local;        /* the message came on the run's domain: a worker of it is handling it */
  const char *next; /* non-NULL: the run is ready at a step that has no continuation yet, and
                     * this is the cause that continuation would carry ("start", "next") */
} stepper_t;

/* ---------------------------------------------------------------- helpers */

/* Longest workflow id. Ids are embedded in command ids ("<id>:<step>:<attempt>"), their replies'
 * ids ("reply:" + that) and event ids, which must all stay within an envelope id. */
#define TB_WF_ID_MAX 64

/* "<prefix>:<cause>" when it fits TB_WF_ID_MAX, else the prefix (cut to fit) and a 64-bit FNV-1a
 * hash of both in hex:
 * deterministic either way, so a redelivered trigger derives the same id. A workflow started by
 * another's event would otherwise grow its id with every link of the chain. */
static void derive_id(const char *prefix, const char *cause, char *buf, size_t cap) {
  if (strlen(prefix) + 1 + strlen(cause) <= TB_WF_ID_MAX) {
    snprintf(buf, cap, "%s:%s", prefix, cause);
    return;
  }
  /* The hash covers the prefix too: two long prefixes that agree in their first bytes must not
   * share an id. */
  uint64_t h = 1469598103934665603ULL;
  const char *parts[2] = {prefix, cause};
  for (int i = 0; i < 2; i++)
    for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++) {
      h ^= *p;
      h *= 1099511628211ULL;
    }
  snprintf(buf, cap, "%.*s:%016llx", TB_WF_ID_MAX - 17, prefix, (unsigned long long)h);
}

const char *tb_wf_type_tier(const tb_config_t *cfg, const tb_workflow_def_t *def) {
  /* The name, then seed 000's alias, then the category: the most specific entry wins. */
  const char *t = tb_config_workflow_tier(cfg, def->name, NULL);
  if (t == NULL && def->alias != NULL) t = tb_config_workflow_tier(cfg, def->alias, NULL);
  if (t == NULL && def->category != NULL) t = tb_config_workflow_tier(cfg, NULL, def->category);
  return t;
}

const char *tb_wf_tier(const tb_config_t *cfg, const tb_workflow_def_t *def) {
  const char *by_type = tb_wf_type_tier(cfg, def);
  if (by_type != NULL) return by_type;
  int i = def->tier != NULL ? tb_config_tier_index(cfg, def->tier) : -1;
  return cfg->tiers[i >= 0 ? i : cfg->n_tiers - 1].name;
}

/* Publishes catalogue event |event| through the outbox: |payload| borrowed, due at |due_us|
 * (0 = now); |domain| NULL keeps the event's own domain. */
static tb_status emit_event(const tb_handler_ctx_t *ctx, const char *event, const char *tier,
                            const char *domain, const char *id, const json_t *payload,
                            const char *workflow_id, const char *correlation_id, int64_t due_us) {
  if (ctx->cat == NULL) return tb__fail(TB_ERR_INVALID, "emit %s: no catalogue in context", event);
  tb_publish_req_t req = {
      .event = event,
      .payload = (json_t *)payload, /* read only */
      .tier = tier,
      .domain = domain,
      .id = id,
      .correlation_id = correlation_id,
      .workflow_id = workflow_id,
      .source = "tierbus-workflow",
      .occurred_at_us = due_us,
  };
  tb_prepared_t p;
  tb_status s = tb_publish_prepare(ctx->cfg, ctx->cat, &req, &p);
  if (s != TB_OK) return s;
  s = tb_handler_emit_at(ctx, p.subject, p.id, p.buf, p.len, due_us);
  tb_prepared_free(&p);
  return s;
}

/* The continuation message id for (run, seq): shared by a timeout and the event it guards. */
static void cont_id(const char *wf_id, int64_t seq, char *buf, size_t cap) {
  snprintf(buf, cap, "wf:%s:%lld", wf_id, (long long)seq);
}

/* 1 when |domain| is a catalogue domain: only those have consumers. */
static int catalogue_domain(const tb_catalogue_t *cat, const char *domain) {
  const char *names[TB_MAX_DOMAINS];
  int n = tb_catalogue_domains(cat, names, TB_MAX_DOMAINS);
  for (int i = 0; i < n && i < TB_MAX_DOMAINS; i++)
    if (strcmp(names[i], domain) == 0) return 1;
  return 0;
}

/* Sends the continuation for the run's current seq, due at |due_us| (0 = now). The WorkflowStep
 * is packed directly rather than built as JSON and converted by the codec: it is sent for every
 * hop that crosses the bus and for every timer. */
static tb_status continue_at(const tb_handler_ctx_t *ctx, const tb_wf_row_t *row, const char *cause,
                             int64_t due_us) {
  if (ctx->cat == NULL)
    return tb__fail(TB_ERR_INVALID, "workflow %s: no catalogue in context", row->id);
  const tb_event_def_t *ev = tb_catalogue_find(ctx->cat, STEP_EVENT);
  if (ev == NULL) return tb__fail(TB_ERR_UNKNOWN_EVENT, "no %s event in the catalogue", STEP_EVENT);
  int ti = tb_config_tier_index(ctx->cfg, row->tier);
  if (ti < 0)
    return tb__fail(TB_ERR_INVALID, "unknown tier '%s' for %s of %s", row->tier, STEP_EVENT,
                    row->id);
  /* On the run's domain: the workers of that domain run its steps. */
  if (!catalogue_domain(ctx->cat, row->domain))
    return tb__fail(TB_ERR_INVALID, "%s: '%s' is not a catalogue domain", STEP_EVENT, row->domain);
  char id[TB_ID_MAX + 32];
  cont_id(row->id, row->seq, id, sizeof(id));
  Tierbus__V1__WorkflowStep ws = TIERBUS__V1__WORKFLOW_STEP__INIT;
  ws.workflow_id = (char *)row->id;
  ws.seq = (uint64_t)row->seq;
  ws.cause = (char *)cause;
  uint8_t *pbuf = NULL;
  size_t plen = 0;
  tb_status s = tb_codec_pack(&ws.base, &pbuf, &plen);
  if (s != TB_OK) return s;
  tb_publish_req_t req = {.event = STEP_EVENT,
                          .domain = row->domain,
                          .id = id,
                          .correlation_id = row->correlation_id,
                          .workflow_id = row->id,
                          .source = "tierbus-workflow",
                          .occurred_at_us = due_us};
  tb_prepared_t p;
  memset(&p, 0, sizeof(p));
  s = tb_publish_wrap(ev, ctx->cfg->tiers[ti].name, id, pbuf, plen, &req, &p);
  free(pbuf);
  if (s == TB_OK) s = tb_handler_emit_at(ctx, p.subject, p.id, p.buf, p.len, due_us);
  tb_prepared_free(&p);
  return s;
}

tb_status tb__wf_continue(const tb_handler_ctx_t *ctx, const tb_wf_row_t *row, const char *cause,
                          int64_t due_us) {
  return continue_at(ctx, row, cause, due_us);
}

void tb__wf_cont_id(const char *wf_id, int64_t seq, char *buf, size_t cap) {
  cont_id(wf_id, seq, buf, cap);
}

/* Records that the run's row changed. It is written once, by flush() when the handler is done
 * with the run, however many steps it ran: one data rendering and one update per message. */
static tb_status save(stepper_t *sp) {
  sp->dirty = 1;
  return TB_OK;
}

/* Writes the run's row when it changed. */
static tb_status flush(stepper_t *sp) {
  if (!sp->dirty) return TB_OK;
  char *text = json_dumps(sp->data, JSON_COMPACT);
  if (text == NULL) return tb__fail(TB_ERR_NOMEM, "workflow %s: rendering data", sp->row.id);
  free(sp->row.data);
  sp->row.data = text;
  tb_status s = tb_store_wf_update(sp->ctx->store, &sp->row);
  if (s == TB_OK && sp->parked_us > 0) {
    /* Seed 000's tier timeout bounds the run's own time: a wait or a sleep has its own. The
     * write just set updated_us to now, where a new park (if any) starts. */
    int64_t parked = tb_wall_us() - sp->parked_us;
    if (parked > 0) s = tb_store_wf_shift_deadline(sp->ctx->store, sp->row.id, parked);
    sp->parked_us = 0;
  }
  if (s == TB_OK) sp->dirty = 0;
  return s;
}

static const tb_step_def_t *cur_step(const stepper_t *sp) {
  return sp->row.step < sp->def->n_steps ? &sp->def->steps[sp->row.step] : NULL;
}

/* Resolves a step's timeout (or a sleep's duration): the input override, then the definition,
 * then the default. A bad duration text is a permanent failure naming the step. */
static tb_status step_duration(stepper_t *sp, const tb_step_def_t *st, int64_t *ms) {
  const char *text = st->kind == TB_STEP_SLEEP ? st->duration : st->timeout;
  int from_input = 0;
  if (st->timeout_field != NULL) {
    const char *o = tb_wf_input_str(&sp->run, st->timeout_field);
    if (o != NULL) {
      text = o;
      from_input = 1;
    }
  }
  if (text == NULL) text = TB_WF_DEFAULT_TIMEOUT;
  if (tb_duration_parse_ms(text, ms) != TB_OK) {
    if (from_input)
      return tb__fail(TB_ERR_INVALID, "input.%s '%s' is not a duration", st->timeout_field, text);
    return tb__fail(TB_ERR_INVALID, "the definition's duration '%s' is not a duration", text);
  }
  return TB_OK;
}

/* Starts the history row of an attempt of the current step. A "started" row is written when the
 * attempt ends (hist_end), whose detail replaces |detail|, as an update of the row would have;
 * any other status (a skipped step) is final and written now. */
static tb_status hist_start(stepper_t *sp, const tb_step_def_t *st, const char *status,
                            const char *detail) {
  if (strcmp(status, "started") == 0) {
    sp->hist.open = 1;
    sp->hist.st = st;
    sp->hist.step = sp->row.step;
    sp->hist.attempt = sp->row.attempt;
    sp->hist.started_us = tb_wall_us();
    return TB_OK;
  }
  tb_wf_hist_t h = {.step = sp->row.step,
                    .name = st->name,
                    .kind = kind_names[st->kind],
                    .attempt = sp->row.attempt,
                    .status = status,
                    .detail = detail,
                    .tier = sp->ctx->tier,
                    .msg_id = sp->msg_id};
  return tb_store_wf_hist_add(sp->ctx->store, sp->row.id, &h, &sp->row.hist_id);
}

/* Ends the current attempt's history row with |status| and the rest (borrowed): writes the row
 * started by hist_start, or updates the stored one (a sleep's, which spans its timer). */
static tb_status hist_end(stepper_t *sp, const char *status, int code, const char *detail,
                          const char *result, const char *error) {
  if (!sp->hist.open)
    return tb_store_wf_hist_end(sp->ctx->store, sp->row.hist_id, status, code, detail, result,
                                error);
  const tb_step_def_t *st = sp->hist.st;
  sp->hist.open = 0;
  tb_wf_hist_t h = {.step = sp->hist.step,
                    .name = st->name,
                    .kind = kind_names[st->kind],
                    .attempt = sp->hist.attempt,
                    .status = status,
                    .code = code,
                    .detail = detail,
                    .result = result,
                    .error = error,
                    .tier = sp->ctx->tier,
                    .msg_id = sp->msg_id,
                    .started_us = sp->hist.started_us,
                    .ended_us = tb_wall_us()};
  return tb_store_wf_hist_add(sp->ctx->store, sp->row.id, &h, &sp->row.hist_id);
}

/* ---------------------------------------------------------------- transitions */

static tb_status run_on_error(stepper_t *sp, const char *error) {
  if (sp->def->on_error == NULL) return TB_OK;
  tb_wf_hist_t h = {.step = sp->row.step,
                    .name = "onError",
                    .kind = "on-error",
                    .attempt = 1,
                    .status = "started",
                    .tier = sp->ctx->tier,
                    .msg_id = sp->msg_id};
  int64_t hid = 0;
  tb_status s = tb_store_wf_hist_add(sp->ctx->store, sp->row.id, &h, &hid);
  if (s != TB_OK) return s;
  /* onError's own writes must not be lost with the failure record, nor may its failure undo the
   * record: it runs and is recorded, never raised. */
  tb__clear_detail();
  tb_status es = sp->def->on_error(&sp->run, error);
  return tb_store_wf_hist_end(sp->ctx->store, hid, es == TB_OK ? "ok" : "failed", 0, NULL, NULL,
                              es == TB_OK ? NULL : tb_errdetail());
}

static tb_status fail_run(stepper_t *sp, const char *error) {
  /* Seed 000: "alert on critical workflow failures". */
  const tb_config_t *cfg = sp->ctx->cfg;
  if (cfg->n_tiers > 0 && strcmp(sp->row.tier, cfg->tiers[0].name) == 0) {
    char key[TB_ID_MAX + 32];
    snprintf(key, sizeof(key), "%s:%lld", sp->row.id, (long long)sp->row.seq);
    json_t *f = json_pack("{s:s,s:s,s:s,s:s}", "workflow_id", sp->row.id, "workflow_type",
                          sp->row.name, "tier", sp->row.tier, "detail", error);
    tb_status as =
        f ? tb_wf_alert(sp->ctx, "critical-failure", key, f) : tb__fail(TB_ERR_NOMEM, "alert");
    json_decref(f);
    if (as != TB_OK) return as;
  }
  snprintf(sp->row.status, sizeof(sp->row.status), "failed");
  snprintf(sp->row.step_state, sizeof(sp->row.step_state), "done");
  free(sp->row.error);
  sp->row.error = strdup(error);
  sp->row.finished_us = tb_wall_us();
  tb_status s = tb_store_wf_wait_drop_all(sp->ctx->store, sp->row.id);
  if (s == TB_OK) s = run_on_error(sp, error);
  if (s == TB_OK) s = save(sp);
  TB_LOG(TB_LOG_INFO, "workflow", "%s (%s) failed: %s", sp->row.id, sp->def->name, error);
  return s;
}

/* Moves to step |next| (attempt 1), or completes the run. A step to run is left to run_on(),
 * which runs it in this call or sends its continuation. */
static tb_status advance_to(stepper_t *sp, int next) {
  sp->row.step = next;
  sp->row.attempt = 1;
  sp->row.hist_id = 0;
  if (next >= sp->def->n_steps) {
    snprintf(sp->row.status, sizeof(sp->row.status), "completed");
    snprintf(sp->row.step_state, sizeof(sp->row.step_state), "done");
    sp->row.finished_us = tb_wall_us();
    return save(sp);
  }
  snprintf(sp->row.status, sizeof(sp->row.status), "running");
  snprintf(sp->row.step_state, sizeof(sp->row.step_state), "ready");
  tb_status s = save(sp);
  if (s == TB_OK) sp->next = "next";
  return s;
}

/* The current step succeeded with |result| (stolen; NULL = none). */
static tb_status step_ok(stepper_t *sp, json_t *result, const char *detail) {
  const tb_step_def_t *st = cur_step(sp);
  char *text = result ? json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  tb_status s = hist_end(sp, "ok", 0, detail, text, NULL);
  free(text);
  json_t *steps = json_object_get(sp->data, "steps");
  if (s == TB_OK && json_object_set_new(steps, st->name, result ? result : json_null()) != 0)
    s = tb__fail(TB_ERR_NOMEM, "workflow %s: step result", sp->row.id);
  else
    result = NULL;
  json_decref(result);
  if (s != TB_OK) return s;
  return advance_to(sp, sp->row.step + 1);
}

/* The current attempt failed: retry per the step's policy, go on (optional step), or fail the
 * run. |permanent| skips the policy (a failure that can never succeed). */
static tb_status step_failed(stepper_t *sp, int code, const char *error, int permanent,
                             const char *status) {
  const tb_step_def_t *st = cur_step(sp);
  tb_retry_policy_t pol = st->retry;
  if (pol.max_attempts < 1) pol.max_attempts = 1;
  tb_retry_decision_t d = {0};
  if (!permanent) d = tb_retry_decide(&pol, sp->row.attempt, code);
  char detail[160];
  if (d.retry)
    snprintf(detail, sizeof(detail), "retry %d of %d in %lld ms", sp->row.attempt + 1,
             pol.max_attempts, (long long)d.delay_ms);
  else
    snprintf(detail, sizeof(detail), "%s", permanent ? "permanent failure" : d.reason);
  tb_status s = hist_end(sp, status, code, detail, NULL, error);
  if (s != TB_OK) return s;
  tb_store_wf_wait_drop_all(sp->ctx->store, sp->row.id);
  if (d.retry) {
    sp->row.attempt++;
    sp->row.hist_id = 0;
    snprintf(sp->row.status, sizeof(sp->row.status), "running");
    snprintf(sp->row.step_state, sizeof(sp->row.step_state), "ready");
    s = save(sp);
    if (s == TB_OK) s = continue_at(sp->ctx, &sp->row, "retry", tb_wall_us() + d.delay_ms * 1000);
    return s;
  }
  if (st->optional) {
    /* A hook never fails its caller: the failure stays in the history, the run goes on. */
    json_t *steps = json_object_get(sp->data, "steps");
    json_object_set_new(steps, st->name, json_pack("{s:s, s:i}", "error", error, "code", code));
    return advance_to(sp, sp->row.step + 1);
  }
  char why[512];
  snprintf(why, sizeof(why), "step %s: %s", st->name, error);
  return fail_run(sp, why);
}

/* Puts the run into waiting/sleeping until the continuation for the new seq (sent at |due_us|)
 * or, for a wait, the event. */
static tb_status park(stepper_t *sp, const char *state, int64_t due_us, const char *cause) {
  snprintf(sp->row.status, sizeof(sp->row.status), "%s",
           strcmp(state, "sleeping") == 0 ? "sleeping" : "waiting");
  snprintf(sp->row.step_state, sizeof(sp->row.step_state), "%s", state);
  tb_status s = save(sp);
  if (s == TB_OK) s = continue_at(sp->ctx, &sp->row, cause, due_us);
  return s;
}

/* Ends the command step's attempt as "held" (not failed, so it uses no retry) with |detail|, and
 * parks the run (status waiting, so the hold is not counted against its deadline) until
 * |until_us|, when its continuation (|why|) runs the step again from the start. */
static tb_status hold_step(stepper_t *sp, const char *detail, const char *why, int64_t until_us) {
  tb_status s = hist_end(sp, "held", 0, detail, NULL, NULL);
  if (s != TB_OK) return s;
  snprintf(sp->row.status, sizeof(sp->row.status), "waiting");
  snprintf(sp->row.step_state, sizeof(sp->row.step_state), "ready");
  s = save(sp);
  if (s == TB_OK) s = continue_at(sp->ctx, &sp->row, why, until_us);
  return s;
}

/* Holds the command step |st| while its service's circuit breaker is open (seed 000), until the
 * cool-down ends. */
static tb_status hold_command(stepper_t *sp, const tb_step_def_t *st, int64_t until_us) {
  char when[40], detail[200];
  tb_time_format(until_us, when, sizeof(when));
  snprintf(detail, sizeof(detail), "circuit breaker open for service %s: held until %s",
           st->service, when);
  tb_status s = tb_wf_breaker_held(sp->ctx, st->service);
  return s == TB_OK ? hold_step(sp, detail, "held", until_us) : s;
}

/* How long a command step held by its service's concurrency limit waits before it tries for a
 * slot again (times one plus the steps ahead of it in line, at most SLOT_RETRY_MAX_US: the first
 * in line tries often, the rest do not churn the bus), and how long its place in line lasts
 * without a try (a run that stopped trying, cancelled or stuck behind a backlog, gives its place
 * up after this). */
#define SLOT_RETRY_US (250 * 1000)
#define SLOT_RETRY_MAX_US (5 * 1000 * 1000)
#define SLOT_WAIT_TTL_US (20 * 1000 * 1000)

/* The step's service is at its limit: the attempt ends as "held" (not a failure, so it uses no
 * retry) and the step runs again from the start when its continuation comes back. A step held
 * again keeps one history row: the first hold's, whose detail and end time are updated. */
static tb_status hold_for_slot(stepper_t *sp, const tb_step_def_t *st, int limit, int64_t ahead,
                               int held_before) {
  char detail[160];
  snprintf(detail, sizeof(detail), "service %s at its concurrency limit (%d), %lld ahead in line",
           st->service, limit, (long long)ahead);
  tb_status s;
  if (held_before && sp->row.hist_id > 0) {
    sp->hist.open = 0; /* this try's "started" row is not written: the held row stands for it */
    s = tb_store_wf_hist_end(sp->ctx->store, sp->row.hist_id, "held", 0, detail, NULL, NULL);
  } else {
    s = hist_end(sp, "held", 0, detail, NULL, NULL);
  }
  if (s != TB_OK) return s;
  snprintf(sp->row.status, sizeof(sp->row.status), "waiting");
  snprintf(sp->row.step_state, sizeof(sp->row.step_state), "ready");
  s = save(sp);
  int64_t delay = SLOT_RETRY_US * (1 + ahead);
  if (delay > SLOT_RETRY_MAX_US) delay = SLOT_RETRY_MAX_US;
  if (s == TB_OK) s = continue_at(sp->ctx, &sp->row, "service-slot", tb_wall_us() + delay);
  return s;
}

static tb_status start_command(stepper_t *sp, const tb_step_def_t *st, int64_t timeout_ms) {
  json_t *input = NULL;
  int64_t until = 0;
  tb_status s = tb_wf_breaker_open_until(sp->ctx, st->service, tb_wall_us(), &until);
  if (s != TB_OK) return s;
  if (until > 0) return hold_command(sp, st, until);
  tb__clear_detail();
  s = st->input ? st->input(&sp->run, &input) : TB_OK;
  if (s != TB_OK) return step_failed(sp, 0, tb_errdetail(), s == TB_ERR_INVALID, "failed");
  char *input_text = json_dumps(input ? input : json_object(), JSON_COMPACT);
  json_decref(input);
  if (input_text == NULL) return tb__fail(TB_ERR_NOMEM, "command input");

  /* The id is unique per attempt: the command stream dedupes by it (Nats-Msg-Id), a service
   * treats it as an idempotency key, and the reply finds its wait by it. A retry by hand
   * (tb_wf_retry) starts the attempts at 1 again, so its rounds carry their number: without it
   * the retried command was dropped as a duplicate of the failed one, or answered by that one's
   * late reply. */
  tb_wf_context_t wfc;
  int have_ctx = 0;
  s = tb_store_wf_context_get(sp->ctx->store, sp->row.id, &wfc, &have_ctx);
  if (s != TB_OK) {
    free(input_text);
    return s;
  }
  char cmd_id[TB_ID_MAX + 96], subject[200];
  if (have_ctx && wfc.retries > 0)
    snprintf(cmd_id, sizeof(cmd_id), "%s:%s:%d:r%d", sp->row.id, st->name, sp->row.attempt,
             wfc.retries);
  else
    snprintf(cmd_id, sizeof(cmd_id), "%s:%s:%d", sp->row.id, st->name, sp->row.attempt);
  snprintf(subject, sizeof(subject), "tb.cmd.%s.%s", st->service, st->action);
  int64_t now_us = tb_wall_us(), deadline = now_us + timeout_ms * 1000;
  /* Seed 001's per-queue concurrency, across every worker process (store/slots.h): a service at
   * its limit holds the step, which is tried again later; it is not a failed attempt. */
  int limit = tb_config_service_limit(sp->ctx->cfg, st->service);
  if (limit > 0) {
    int got = 0;
    int64_t ahead = 0;
    /* waiting + ready is only what hold_for_slot leaves (a retry delay leaves running + ready) */
    int held_before =
        strcmp(sp->row.status, "waiting") == 0 && strcmp(sp->row.step_state, "ready") == 0;
    s = tb_store_slot_acquire(sp->ctx->store, st->service, sp->row.id, st->name, cmd_id, limit,
                              now_us, deadline, now_us + SLOT_WAIT_TTL_US, &got, &ahead);
    if (s != TB_OK || !got) {
      free(input_text);
      return s != TB_OK ? s : hold_for_slot(sp, st, limit, ahead, held_before);
    }
  }
  Tierbus__V1__Command cmd = TIERBUS__V1__COMMAND__INIT;
  cmd.command_id = cmd_id;
  cmd.workflow_id = sp->row.id;
  cmd.step = (char *)st->name;
  cmd.attempt = (uint32_t)sp->row.attempt;
  cmd.service = (char *)st->service;
  cmd.action = (char *)st->action;
  cmd.reply_tier = sp->row.tier;
  cmd.reply_domain = sp->row.domain;
  cmd.input_json = input_text;
  cmd.deadline_at_us = deadline;
  cmd.correlation_id = sp->row.correlation_id;
  uint8_t *buf = NULL;
  size_t len = 0;
  s = tb_codec_pack(&cmd.base, &buf, &len);
  free(input_text);
  if (s == TB_OK) s = tb_handler_emit(sp->ctx, subject, cmd_id, buf, len);
  free(buf);
  if (s == TB_OK)
    s = tb_store_wf_wait_put(sp->ctx->store, sp->row.id, sp->row.seq, REPLY_EVENT, cmd_id,
                             deadline);
  if (s == TB_OK) s = hist_end(sp, "waiting", 0, subject, NULL, NULL);
  if (s != TB_OK) return s;
  return park(sp, "waiting", deadline, "timeout");
}

/* Resumes a waiting step from what its seq received: a reply or event in the inbox, or nothing
 * (the timeout). |seq| is the seq the wait was registered under. */
static tb_status resume(stepper_t *sp, int64_t seq) {
  const tb_step_def_t *st = cur_step(sp);
  char *payload = NULL;
  int code = 0, found = 0;
  json_t *body = NULL;
  if (sp->arrived != NULL && sp->arrived_seq == seq) {
    body = sp->arrived;
    sp->arrived = NULL;
    code = sp->arrived_code;
    found = 1;
  } else {
    tb_status s = tb_store_wf_inbox_get(sp->ctx->store, sp->row.id, seq, &payload, &code, &found);
    if (s != TB_OK) return s;
  }
  if (st->kind == TB_STEP_COMMAND) {
    /* The command is answered or timed out: its service slot is free for the next one. */
    tb_status s = tb_store_slot_release(sp->ctx->store, sp->row.id, st->name);
    if (s != TB_OK) {
      json_decref(body);
      free(payload);
      return s;
    }
  }
  if (!found) {
    tb_store_wf_wait_drop(sp->ctx->store, sp->row.id, seq);
    char err[160];
    snprintf(err, sizeof(err), "timed out waiting for %s",
             st->kind == TB_STEP_COMMAND ? "the command's reply" : st->event);
    if (st->kind == TB_STEP_COMMAND) {
      tb_status bs = tb_wf_breaker_record(sp->ctx, st->service, 0, err, tb_wall_us(), NULL);
      if (bs != TB_OK) return bs;
    }
    return step_failed(sp, 0, err, 0, "timeout");
  }
  json_error_t jerr;
  if (body == NULL) {
    body = payload ? json_loads(payload, 0, &jerr) : json_object();
    free(payload);
  }
  if (body == NULL) return step_failed(sp, 0, "unreadable inbox payload", 1, "failed");
  if (st->kind == TB_STEP_COMMAND) {
    /* body is the CommandReply as JSON; its status tells the breaker how the service is. */
    const char *reply_error = json_string_value(json_object_get(body, "error"));
    char why[300];
    snprintf(why, sizeof(why), "status %d: %s", code,
             reply_error && reply_error[0] ? reply_error : "command failed");
    tb_status bs = tb_wf_breaker_record(sp->ctx, st->service, !tb_wf_breaker_counts(code), why,
                                        tb_wall_us(), NULL);
    if (bs != TB_OK) {
      json_decref(body);
      return bs;
    }
    if (code >= 200 && code < 300) {
      const char *rj = json_string_value(json_object_get(body, "result_json"));
      json_t *result = rj && rj[0] ? json_loads(rj, 0, &jerr) : json_object();
      json_decref(body);
      if (result == NULL)
        return step_failed(sp, code, "reply result_json is not JSON", 1, "failed");
      return step_ok(sp, result, "reply");
    }
    const char *e = json_string_value(json_object_get(body, "error"));
    char err[300];
    snprintf(err, sizeof(err), "status %d: %s", code, e && e[0] ? e : "command failed");
    json_decref(body);
    return step_failed(sp, code, err, 0, "failed");
  }
  return step_ok(sp, body, "event");
}

static tb_status start_wait(stepper_t *sp, const tb_step_def_t *st, int64_t timeout_ms) {
  char key[TB_ID_MAX];
  key[0] = '\0';
  tb__clear_detail();
  tb_status s = st->key ? st->key(&sp->run, key, sizeof(key)) : TB_OK;
  if (s != TB_OK || key[0] == '\0')
    return step_failed(sp, 0, s != TB_OK ? tb_errdetail() : "empty correlation key", 1, "failed");
  /* An event that arrived before the wait started is in the inbox: take it now. One that named
   * only this run (tb_wf_resume_run_field) is kept under "workflow:<id>". */
  int found = 0;
  s = tb_store_wf_inbox_claim(sp->ctx->store, st->event, key, sp->row.id, sp->row.seq, &found);
  if (s == TB_OK && !found && tb_wf_resume_run_field(st->event) != NULL) {
    char run_key[TB_ID_MAX + 16];
    snprintf(run_key, sizeof(run_key), "workflow:%s", sp->row.id);
    s = tb_store_wf_inbox_claim(sp->ctx->store, st->event, run_key, sp->row.id, sp->row.seq,
                                &found);
  }
  if (s != TB_OK) return s;
  char detail[TB_ID_MAX + 80];
  snprintf(detail, sizeof(detail), "%s key %s%s", st->event, key, found ? " (arrived early)" : "");
  if (found) {
    s = hist_end(sp, "waiting", 0, detail, NULL, NULL);
    if (s == TB_OK) {
      s = hist_start(sp, st, "started", "resumed by an early event");
      if (s == TB_OK) s = resume(sp, sp->row.seq);
    }
    return s;
  }
  int64_t deadline = tb_wall_us() + timeout_ms * 1000;
  s = tb_store_wf_wait_put(sp->ctx->store, sp->row.id, sp->row.seq, st->event, key, deadline);
  if (s == TB_OK) s = hist_end(sp, "waiting", 0, detail, NULL, NULL);
  if (s != TB_OK) return s;
  return park(sp, "waiting", deadline, "timeout");
}

/* Runs the current step from the start (state ready). Skipped steps are passed inline: they do
 * nothing, so they need no message of their own. */
static tb_status execute(stepper_t *sp) {
  for (;;) {
    const tb_step_def_t *st = cur_step(sp);
    if (st == NULL) return advance_to(sp, sp->def->n_steps);
    sp->run.step = st->name;
    sp->run.attempt = sp->row.attempt;
    if (st->when != NULL && !st->when(&sp->run)) {
      tb_status s = hist_start(sp, st, "skipped", "condition not met");
      if (s != TB_OK) return s;
      sp->row.step++;
      sp->row.attempt = 1;
      continue;
    }
    tb_status s = hist_start(sp, st, "started", NULL);
    if (s != TB_OK) return s;
    int64_t ms = 0;
    if (st->kind == TB_STEP_COMMAND || st->kind == TB_STEP_WAIT || st->kind == TB_STEP_SLEEP) {
      if (step_duration(sp, st, &ms) != TB_OK)
        return step_failed(sp, 0, tb_errdetail(), 1, "failed");
    }
    switch (st->kind) {
    case TB_STEP_RUN: {
      json_t *result = NULL;
      sp->run.fail_code = 0;
      tb__clear_detail();
      /* A failed attempt's own writes are undone; its history row (written before) stays. */
      s = tb_store_step_begin(sp->ctx->store);
      if (s != TB_OK) return s;
      tb_status rs = st->run(&sp->run, &result);
      char err[512];
      snprintf(err, sizeof(err), "%s", tb_errdetail()[0] ? tb_errdetail() : tb_strerror(rs));
      s = tb_store_step_end(sp->ctx->store, rs == TB_OK);
      if (s != TB_OK) {
        json_decref(result);
        return s;
      }
      s = rs;
      if (s == TB_OK) return step_ok(sp, result, NULL);
      json_decref(result);
      if (s == TB_ERR_STORE || s == TB_ERR_BUSY || s == TB_ERR_NOMEM) {
        tb__fail(s, "%s", err); /* the message is retried with the tier's backoff */
        return s;
      }
      return step_failed(sp, sp->run.fail_code, err, s == TB_ERR_INVALID, "failed");
    }
    case TB_STEP_BRANCH: {
      const char *to = st->branch(&sp->run);
      int next = sp->row.step + 1;
      if (to != NULL) {
        next = -1;
        for (int i = 0; i < sp->def->n_steps; i++)
          if (strcmp(sp->def->steps[i].name, to) == 0) next = i;
        if (next < 0) {
          char err[200];
          snprintf(err, sizeof(err), "branch to unknown step '%s'", to);
          return step_failed(sp, 0, err, 1, "failed");
        }
      }
      char detail[160];
      snprintf(detail, sizeof(detail), "go to %s",
               next < sp->def->n_steps ? sp->def->steps[next].name : "end");
      s = hist_end(sp, "ok", 0, detail, NULL, NULL);
      if (s != TB_OK) return s;
      return advance_to(sp, next);
    }
    case TB_STEP_SLEEP: {
      char detail[64];
      snprintf(detail, sizeof(detail), "%lld ms", (long long)ms);
      s = hist_end(sp, "sleeping", 0, detail, NULL, NULL);
      if (s != TB_OK) return s;
      return park(sp, "sleeping", tb_wall_us() + ms * 1000, "timer");
    }
    case TB_STEP_COMMAND:
      return start_command(sp, st, ms);
    case TB_STEP_WAIT:
      return start_wait(sp, st, ms);
    }
    return tb__fail(TB_ERR_INVALID, "step %s: unknown kind %d", st->name, (int)st->kind);
  }
}

/* ---------------------------------------------------------------- running on */

/* Most steps one handled message runs (config's workflow_steps_per_message). */
static int steps_per_message(const tb_config_t *cfg) {
  return cfg->workflow_steps_per_message > 0 ? cfg->workflow_steps_per_message : 1;
}

/* Makes |row| (moved into the stepper: |row| is left cleared) the run that |sp| advances, with
 * |data| (a new reference) or, when NULL, row->data parsed. The stepper starts with no budget. */
static tb_status adopt(stepper_t *sp, const tb_handler_ctx_t *ctx, tb_wf_row_t *row, json_t *data) {
  memset(sp, 0, sizeof(*sp));
  sp->ctx = ctx;
  sp->msg_id = ctx->msg && ctx->msg->env ? ctx->msg->env->id : NULL;
  sp->row = *row;
  memset(row, 0, sizeof(*row));
  if (strcmp(sp->row.status, "waiting") == 0 || strcmp(sp->row.status, "sleeping") == 0)
    sp->parked_us = sp->row.updated_us;
  sp->def = tb_wf_find(sp->row.name);
  if (sp->def == NULL) {
    json_decref(data);
    return tb__fail(TB_ERR_INVALID, "workflow %s: definition '%s' is not registered", sp->row.id,
                    sp->row.name);
  }
  if (data == NULL) {
    json_error_t jerr;
    data = sp->row.data ? json_loads(sp->row.data, 0, &jerr) : NULL;
  }
  sp->data = data;
  if (sp->data == NULL || !json_is_object(json_object_get(sp->data, "steps")))
    return tb__fail(TB_ERR_INVALID, "workflow %s: stored data is not a workflow object",
                    sp->row.id);
  sp->run = (tb_wf_run_t){.ctx = ctx,
                          .id = sp->row.id,
                          .name = sp->row.name,
                          .tier = sp->row.tier,
                          .attempt = sp->row.attempt,
                          .data = sp->data};
  return TB_OK;
}

static void unload(stepper_t *sp) {
  json_decref(sp->data);
  sp->data = NULL;
  json_decref(sp->arrived);
  sp->arrived = NULL;
  tb_store_wf_row_clear(&sp->row);
}

/* Reads run |id| into |sp|. *found = 0 (and TB_OK) when there is none. */
static tb_status load(stepper_t *sp, const tb_handler_ctx_t *ctx, const char *id, int *found) {
  memset(sp, 0, sizeof(*sp));
  tb_wf_row_t row;
  tb_status s = tb_store_wf_get(ctx->store, id, &row, found);
  if (s != TB_OK || !*found) return s;
  return adopt(sp, ctx, &row, NULL);
}

int tb_wf_always(tb_wf_run_t *run) {
  (void)run;
  return 1;
}

/* 1 when step |st| (the run's next, NULL at the end) asks for a message of its own now. */
static int own_message(stepper_t *sp, const tb_step_def_t *st) {
  if (st == NULL || st->own_message == NULL) return 0;
  sp->run.step = st->name;
  sp->run.attempt = sp->row.attempt;
  return st->own_message(&sp->run) != 0;
}

/* What a run was before a step ran on: enough to put it back when the step fails. */
typedef struct snapshot {
  tb_wf_row_t row; /* data = NULL; error owned */
  json_t *data;    /* data_copy() */
  int dirty;
} snapshot_t;

/* A copy of a run's data that a step cannot change: the object, its "input" and its "steps" are
 * copied, their values shared. The runtime only sets data.steps.<step>, and a step function may
 * add to data.input (wf.h); neither reaches a value shared with the copy. A deep copy cost as
 * much as rendering the data, at every step run on. */
static json_t *data_copy(json_t *data) {
  json_t *copy = json_copy(data);
  static const char *const parts[] = {"input", "steps"};
  for (size_t i = 0; copy != NULL && i < sizeof(parts) / sizeof(parts[0]); i++) {
    json_t *part = json_object_get(data, parts[i]);
    if (!json_is_object(part)) continue;
    json_t *pc = json_copy(part);
    if (pc == NULL || json_object_set_new(copy, parts[i], pc) != 0) {
      json_decref(copy);
      copy = NULL;
    }
  }
  return copy;
}

static tb_status snap_take(const stepper_t *sp, snapshot_t *sn) {
  sn->row = sp->row;
  sn->row.data = NULL;
  sn->row.error = sp->row.error ? strdup(sp->row.error) : NULL;
  sn->data = data_copy(sp->data);
  sn->dirty = sp->dirty;
  if (sn->data == NULL || (sp->row.error && sn->row.error == NULL)) {
    free(sn->row.error);
    json_decref(sn->data);
    return tb__fail(TB_ERR_NOMEM, "workflow %s: snapshot", sp->row.id);
  }
  return TB_OK;
}

static void snap_drop(snapshot_t *sn) {
  free(sn->row.error);
  json_decref(sn->data);
}

/* Puts |sn| back into |sp| (|sn| is consumed). */
static void snap_restore(stepper_t *sp, snapshot_t *sn) {
  char *text = sp->row.data; /* stale, but owned: flush() replaces it */
  free(sp->row.error);
  json_decref(sp->data);
  sp->row = sn->row;
  sp->row.data = text;
  sp->data = sn->data;
  sp->run.data = sn->data;
  sp->dirty = sn->dirty;
  sp->hist.open = 0;
}

/* Runs the run on while it is ready at a next step: in this call, while the budget lasts, the run
 * stays on the tier the message came on, the message came on the run's domain (so a worker that
 * serves the run is handling it) and the step does not ask for a message of its own. Otherwise
 * the step gets its continuation, as every step did before steps ran on.
 *
 * Each step run on has a savepoint of its own. One that fails with an error (as opposed to a
 * failed attempt, which the step records itself) ends as if it had run in its own continuation
 * and failed there: its writes are rolled back, the run is put back as the step before left it,
 * the steps before keep theirs, and it goes on in its continuation, where the engine retries it
 * as it always did. A failure of the first step of a call is not caught here: it fails the
 * message, as before. */
static tb_status run_on(stepper_t *sp) {
  tb_store_t *store = sp->ctx->store;
  while (sp->next != NULL) {
    const char *cause = sp->next;
    sp->next = NULL;
    const tb_step_def_t *st = cur_step(sp);
    if (sp->budget <= 0 || !sp->local || sp->ctx->tier == NULL ||
        strcmp(sp->row.tier, sp->ctx->tier) != 0 || own_message(sp, st))
      return continue_at(sp->ctx, &sp->row, cause, 0);
    sp->budget--;
    snapshot_t sn;
    tb_status s = snap_take(sp, &sn);
    if (s != TB_OK) return s;
    s = tb_store_step_begin(store);
    if (s != TB_OK) {
      snap_drop(&sn);
      return s;
    }
    sp->row.seq++; /* what handling the continuation would have done */
    s = execute(sp);
    if (s == TB_OK) {
      snap_drop(&sn);
      s = tb_store_step_end(store, 1);
      if (s != TB_OK) return s;
      continue;
    }
    char err[1024];
    snprintf(err, sizeof(err), "%s", tb_errdetail());
    const char *name = st != NULL ? st->name : "end";
    snap_restore(sp, &sn);
    if (tb_store_step_end(store, 0) != TB_OK) return tb__fail(s, "%s", err);
    TB_LOG(TB_LOG_WARN, "workflow",
           "%s (%s): step %s failed after the steps before it in the same message; it goes on "
           "in a continuation of its own: %s: %s",
           sp->row.id, sp->def->name, name, tb_strerror(s), err);
    return continue_at(sp->ctx, &sp->row, cause, 0);
  }
  return TB_OK;
}

/* Handles the continuation of the run's current seq (|cause|: why it was sent): runs the ready
 * step, resumes the waiting one or ends the sleep, then runs on. */
static tb_status advance_run(stepper_t *sp, const char *cause) {
  tb_status s;
  int64_t seq = sp->row.seq++;
  if (strcmp(sp->row.step_state, "ready") == 0) {
    s = execute(sp);
  } else if (strcmp(sp->row.step_state, "waiting") == 0) {
    s = hist_start(sp, cur_step(sp), "started", cause);
    if (s == TB_OK) s = resume(sp, seq);
  } else if (strcmp(sp->row.step_state, "sleeping") == 0) {
    s = step_ok(sp, NULL, "timer");
  } else {
    s = tb__fail(TB_ERR_INVALID, "workflow %s: step state '%s'", sp->row.id, sp->row.step_state);
  }
  if (s == TB_OK) s = run_on(sp);
  return s;
}

/* ---------------------------------------------------------------- handlers */

tb_status tb__handle_wf_step(const tb_handler_ctx_t *ctx) {
  const ProtobufCMessage *m = ctx->msg->payload;
  if (m == NULL || m->descriptor != &tierbus__v1__workflow_step__descriptor)
    return tb__fail(TB_ERR_INVALID, "workflow-step: payload is not a WorkflowStep");
  const Tierbus__V1__WorkflowStep *ws = (const Tierbus__V1__WorkflowStep *)m;
  if (ws->workflow_id == NULL || ws->workflow_id[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "workflow-step: empty workflow_id");
  stepper_t sp;
  int found = 0;
  tb_status s = load(&sp, ctx, ws->workflow_id, &found);
  if (s == TB_OK && !found)
    s = tb__fail(TB_ERR_INVALID, "workflow-step: no workflow '%s'", ws->workflow_id);
  if (s != TB_OK || tb_wf_status_final(sp.row.status) || (int64_t)ws->seq != sp.row.seq) {
    /* Finished, cancelled, or superseded (the other side of a timeout/event race): nothing to
     * do, and nothing to retry. */
    unload(&sp);
    return s;
  }
  sp.budget = steps_per_message(ctx->cfg) - 1; /* this message's own step is the first */
  sp.local = 1;                                /* continuations go to their run's domain */
  s = advance_run(&sp, ws->cause);
  if (s == TB_OK) s = flush(&sp);
  unload(&sp);
  return s;
}

tb_status tb__handle_wf_resume(const tb_handler_ctx_t *ctx) {
  const tb_decoded_t *m = ctx->msg;
  const char *event = m->def->name;
  const char *field = tb_wf_resume_key_field(event);
  if (field == NULL) return tb__fail(TB_ERR_INVALID, "%s resumes no workflow step", event);
  const char *key = tb_codec_get_string(m->payload, field);
  const char *run_field = tb_wf_resume_run_field(event);
  const char *run_id = run_field ? tb_codec_get_string(m->payload, run_field) : NULL;
  if (key == NULL && run_id == NULL)
    return tb__fail(TB_ERR_INVALID, "%s: empty %s%s%s, nothing to resume", event, field,
                    run_field ? " and " : "", run_field ? run_field : "");
  json_t *obj = NULL;
  tb_status s = tb_codec_payload_to_json(m->payload, &obj);
  if (s != TB_OK) return s;
  int code = (int)json_integer_value(json_object_get(obj, "status_code"));
  /* One rendering for the inbox and the activity log. */
  char *text = json_dumps(obj, JSON_COMPACT);
  if (text == NULL) {
    json_decref(obj);
    return tb__fail(TB_ERR_NOMEM, "%s: rendering the payload", event);
  }

  char wf_id[TB_ID_MAX], run_key[TB_ID_MAX + 16];
  int64_t seq = 0;
  int found = 0;
  if (key != NULL)
    s = tb_store_wf_wait_take(ctx->store, event, key, wf_id, sizeof(wf_id), &seq, &found);
  if (s == TB_OK && !found && run_id != NULL) {
    /* Seed 003: resumed by the run itself. Its wait says which key it waits on; an event that
     * arrives before the wait is kept under "workflow:<id>", which start_wait also claims. */
    int waiting = 0;
    s = tb_store_wf_wait_key_of(ctx->store, run_id, event, run_key, sizeof(run_key), &waiting);
    if (s == TB_OK && waiting) {
      s = tb_store_wf_wait_take(ctx->store, event, run_key, wf_id, sizeof(wf_id), &seq, &found);
      key = run_key;
    } else if (s == TB_OK && key == NULL) {
      snprintf(run_key, sizeof(run_key), "workflow:%s", run_id);
      key = run_key;
    }
  }
  if (s == TB_OK)
    s = tb_store_wf_inbox_add(ctx->store, event, key, m->env->id, text, code, found ? wf_id : NULL,
                              seq, NULL);
  if (s == TB_OK) s = tb__activity_record(ctx, text);
  free(text);
  if (s != TB_OK || !found) { /* no wait yet: the inbox keeps it for the wait to come */
    json_decref(obj);
    return s;
  }

  /* Resume on the workflow's own tier, whatever tier the event came on; the pending timeout has
   * the same message id, so it is replaced, not doubled. */
  tb_wf_row_t row;
  int have = 0;
  s = tb_store_wf_get(ctx->store, wf_id, &row, &have);
  if (s == TB_OK && have && !tb_wf_status_final(row.status) && row.seq == seq) {
    char id[TB_ID_MAX + 32];
    cont_id(wf_id, seq, id, sizeof(id));
    s = tb_store_outbox_cancel(ctx->store, id, NULL);
    /* The step resumes here when this message came on the run's tier and domain: a reply is
     * published on the domain its command named (the run's), any other event on its own. */
    int local = strcmp(event, REPLY_EVENT) == 0 || strcmp(m->def->domain, row.domain) == 0;
    if (s == TB_OK && local && steps_per_message(ctx->cfg) > 1 && ctx->tier != NULL &&
        strcmp(row.tier, ctx->tier) == 0) {
      stepper_t sp;
      s = adopt(&sp, ctx, &row, NULL);
      sp.budget = steps_per_message(ctx->cfg) - 1; /* the resumed step is the first */
      sp.local = 1;
      sp.arrived = obj; /* what the inbox row just written holds, already parsed */
      sp.arrived_code = code;
      sp.arrived_seq = seq;
      obj = NULL;
      if (s == TB_OK) {
        s = advance_run(&sp, "event");
        if (s == TB_OK) s = flush(&sp);
      } else {
        /* It cannot run here (its definition is not registered, its data unreadable): its
         * continuation meets that, as before steps ran on, and the event stays recorded. */
        s = continue_at(ctx, &sp.row, "event", 0);
      }
      unload(&sp);
    } else if (s == TB_OK) {
      s = continue_at(ctx, &row, "event", 0);
    }
  }
  if (have) tb_store_wf_row_clear(&row);
  json_decref(obj);
  return s;
}

tb_status tb_wf_start(const tb_handler_ctx_t *ctx, const tb_workflow_def_t *def, const char *id,
                      const char *tier, const json_t *input, const char *correlation_id,
                      char *id_out, size_t id_cap, int *started) {
  return tb_wf_start_ex(ctx, def, id, tier, NULL, input, correlation_id, NULL, id_out, id_cap,
                        started);
}

tb_status tb_wf_start_ex(const tb_handler_ctx_t *ctx, const tb_workflow_def_t *def, const char *id,
                         const char *tier, const char *explicit_by, const json_t *input,
                         const char *correlation_id, const tb_esc_input_t *esc, char *id_out,
                         size_t id_cap, int *started) {
  *started = 0;
  tb_wf_row_t row;
  memset(&row, 0, sizeof(row));
  const char *msg_id = ctx->msg && ctx->msg->env ? ctx->msg->env->id : NULL;
  if (id != NULL && id[0] != '\0') {
    if (strlen(id) > TB_WF_ID_MAX)
      return tb__fail(TB_ERR_INVALID, "start %s: workflow id '%.32s...' is longer than %d bytes",
                      def->name, id, TB_WF_ID_MAX);
    snprintf(row.id, sizeof(row.id), "%s", id);
  } else if (msg_id != NULL) {
    derive_id(def->name, msg_id, row.id, sizeof(row.id));
  } else {
    return tb__fail(TB_ERR_INVALID, "start %s: no id and no message to derive one", def->name);
  }
  /* Seed 000: an explicit tier is honoured both ways (under a priority floor); otherwise the
   * context (definition, input, the trigger's flags) may raise the base tier. */
  tb_wf_decision_t d;
  tb_status s = tb_wf_decide(ctx->cfg, def, tier, explicit_by, "trigger-event", input, esc, &d);
  if (s != TB_OK) return s;
  tb_esc_input_t in = d.in;
  tier = ctx->cfg->tiers[d.tier].name;
  snprintf(row.name, sizeof(row.name), "%s", def->name);
  snprintf(row.domain, sizeof(row.domain), "%s", def->domain);
  snprintf(row.tier, sizeof(row.tier), "%s", tier);
  snprintf(row.status, sizeof(row.status), "running");
  snprintf(row.step_state, sizeof(row.step_state), "ready");
  row.attempt = 1;
  row.seq = 1;
  snprintf(row.correlation_id, sizeof(row.correlation_id), "%s",
           correlation_id ? correlation_id : "");
  snprintf(row.cause_msg_id, sizeof(row.cause_msg_id), "%s", msg_id ? msg_id : "");
  /* A copy: steps may add to the input, and the caller's object may start other runs too. */
  json_t *data =
      json_pack("{s:o, s:{}}", "input", input ? json_deep_copy(input) : json_object(), "steps");
  row.data = data ? json_dumps(data, JSON_COMPACT) : NULL;
  if (row.data == NULL) {
    json_decref(data);
    return tb__fail(TB_ERR_NOMEM, "start %s", def->name);
  }
  s = tb_store_wf_insert(ctx->store, &row, started);
  if (s == TB_OK && *started) {
    tb_wf_context_t wc;
    memset(&wc, 0, sizeof(wc));
    snprintf(wc.category, sizeof(wc.category), "%s", def->category ? def->category : "");
    wc.customer_facing = in.customer_facing;
    snprintf(wc.business_impact, sizeof(wc.business_impact), "%s",
             in.business_impact ? in.business_impact : "");
    if (d.requested >= 0)
      snprintf(wc.requested_tier, sizeof(wc.requested_tier), "%s",
               ctx->cfg->tiers[d.requested].name);
    snprintf(wc.automatic_tier, sizeof(wc.automatic_tier), "%s", ctx->cfg->tiers[d.automatic].name);
    snprintf(wc.tier_rule, sizeof(wc.tier_rule), "%s", d.rule);
    /* The tier's timeout bounds the whole run, not only one delivery (seed 000). */
    wc.deadline_us = tb_wall_us() + ctx->cfg->tiers[d.tier].timeout_ms * 1000;
    s = tb_store_wf_context_put(ctx->store, row.id, &wc);
    if (s == TB_OK && d.escalated_by != NULL)
      s = tb_wf_esc_record(ctx->store, row.id, ctx->cfg->tiers[d.base].name, tier, d.escalated_by,
                           "start", &in, NULL);
  }
  if (s == TB_OK && id_out != NULL) snprintf(id_out, id_cap, "%s", row.id);
  if (s == TB_OK && *started) {
    /* The first steps run here when this message came on the run's tier and domain (a worker
     * that serves the run is handling it); otherwise the first continuation takes them there. */
    const tb_event_def_t *ev = ctx->msg ? ctx->msg->def : NULL;
    int local = ev != NULL && ev->domain != NULL && strcmp(ev->domain, row.domain) == 0;
    if (local && steps_per_message(ctx->cfg) > 1 && ctx->tier != NULL &&
        strcmp(row.tier, ctx->tier) == 0) {
      stepper_t sp;
      s = adopt(&sp, ctx, &row, json_incref(data));
      sp.budget = steps_per_message(ctx->cfg);
      sp.local = 1;
      sp.next = "start";
      if (s == TB_OK) {
        s = run_on(&sp);
        if (s == TB_OK) s = flush(&sp);
      } else {
        s = continue_at(ctx, &sp.row, "start", 0); /* as for a resume: see above */
      }
      unload(&sp);
    } else {
      s = continue_at(ctx, &row, "start", 0);
    }
  }
  json_decref(data);
  free(row.data);
  return s;
}

tb_status tb__handle_wf_start(const tb_handler_ctx_t *ctx) {
  const ProtobufCMessage *m = ctx->msg->payload;
  if (m == NULL || m->descriptor != &tierbus__v1__execute_workflow__descriptor)
    return tb__fail(TB_ERR_INVALID, "execute-workflow: payload is not an ExecuteWorkflow");
  const Tierbus__V1__ExecuteWorkflow *ew = (const Tierbus__V1__ExecuteWorkflow *)m;
  const tb_workflow_def_t *def = tb_wf_find(ew->workflow_type);
  if (def == NULL)
    return tb__fail(TB_ERR_INVALID, "execute-workflow: no workflow '%s' is registered",
                    ew->workflow_type ? ew->workflow_type : "");
  json_t *input = NULL;
  if (ew->args_json != NULL && ew->args_json[0] != '\0') {
    json_error_t jerr;
    json_t *args = json_loads(ew->args_json, JSON_DECODE_ANY, &jerr);
    if (args == NULL)
      return tb__fail(TB_ERR_INVALID, "execute-workflow %s: args_json: %s (line %d, column %d)",
                      def->name, jerr.text, jerr.line, jerr.column);
    input = tb_wf_args_input(args); /* seed 000 passes an argument array */
    json_decref(args);
    if (input == NULL) return tb__fail(TB_ERR_NOMEM, "execute-workflow %s: args", def->name);
  }
  /* Seed 000: an explicit priority is honoured both ways (tb_wf_decide), else the workflow
   * type's tier, which the context flags escalate, never down. */
  const char *tier = ew->priority && ew->priority[0] ? ew->priority : NULL, *by = "priority";
  if (tier == NULL && ew->task_queue && ew->task_queue[0]) {
    tier = ew->task_queue;
    by = "task-queue";
  }
  static const char *const impact_names[] = {
      [TIERBUS__V1__BUSINESS_IMPACT__BUSINESS_IMPACT_LOW] = "low",
      [TIERBUS__V1__BUSINESS_IMPACT__BUSINESS_IMPACT_MEDIUM] = "medium",
      [TIERBUS__V1__BUSINESS_IMPACT__BUSINESS_IMPACT_HIGH] = "high"};
  int bi = (int)ew->business_impact;
  tb_esc_input_t esc = {
      .failed_retry = ew->is_failed_retry,
      .customer_facing = ew->is_customer_facing,
      .business_impact = bi > 0 && bi < 4 ? impact_names[bi] : NULL,
      .stuck_ms = ew->hours_stuck > 0 ? (int64_t)(ew->hours_stuck * 3.6e6) : 0,
      .expedite = ew->expedite,
  };
  int started = 0;
  tb_status s = tb_wf_start_ex(ctx, def, ew->workflow_id, tier, tier ? by : NULL, input,
                               ctx->msg->env->correlation_id, &esc, NULL, 0, &started);
  json_decref(input);
  return s;
}

tb_status tb__handle_wf_trigger(const tb_handler_ctx_t *ctx) {
  /* One conversion of the payload for the activity log and every run's input. */
  json_t *payload = NULL;
  char *text = NULL;
  tb_status s = TB_OK;
  if (ctx->msg->payload != NULL) {
    s = tb_codec_payload_to_json(ctx->msg->payload, &payload);
    if (s != TB_OK) return s; /* the codec's detail names the field */
    text = json_dumps(payload, JSON_COMPACT);
    if (text == NULL) s = tb__fail(TB_ERR_NOMEM, "%s: rendering the payload", ctx->msg->def->name);
  }
  if (s == TB_OK) s = tb__activity_record(ctx, text);
  free(text);
  const char *event = ctx->msg->def->name;
  int n_domains = 0;
  const tb_wf_domain_t *const *domains = tb_wf_domains(&n_domains);
  for (int d = 0; d < n_domains && s == TB_OK; d++) {
    for (int i = 0; i < domains[d]->n_workflows && s == TB_OK; i++) {
      const tb_workflow_def_t *def = domains[d]->workflows[i];
      if (def->trigger_event == NULL || strcmp(def->trigger_event, event) != 0) continue;
      if (payload == NULL) {
        s = tb__fail(TB_ERR_INVALID, "%s: no payload to start %s from", event, def->name);
        break;
      }
      if (def->should_start != NULL && !def->should_start(payload)) continue;
      json_t *input = def->trigger_input ? def->trigger_input(payload) : json_incref(payload);
      if (input == NULL) {
        s = tb__fail(TB_ERR_NOMEM, "%s: input for %s", event, def->name);
        break;
      }
      int started = 0;
      /* The event's tier carries its publisher's priority into every step. */
      s = tb_wf_start(ctx, def, NULL, ctx->tier, input, ctx->msg->env->correlation_id, NULL, 0,
                      &started);
      json_decref(input);
    }
  }
  json_decref(payload);
  return s;
}

/* ---------------------------------------------------------------- step helpers */

const char *tb_wf_input_str(tb_wf_run_t *run, const char *field) {
  json_t *v = json_object_get(json_object_get(run->data, "input"), field);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

json_t *tb_wf_step_result(tb_wf_run_t *run, const char *step) {
  return json_object_get(json_object_get(run->data, "steps"), step);
}

int64_t tb_wf_log_time_us(const tb_wf_run_t *run) {
  int64_t t = run->ctx->order.occurred_us;
  return t > 0 ? t : tb_wall_us();
}

tb_status tb_wf_emit_event(tb_wf_run_t *run, const char *event, const char *tier,
                           const json_t *payload) {
  char full[TB_ID_MAX + 160], id[TB_ID_MAX];
  snprintf(full, sizeof(full), "%s:%d:%s", run->step ? run->step : "", run->attempt, event);
  derive_id(run->id, full, id, sizeof(id));
  const char *corr =
      run->ctx->msg && run->ctx->msg->env ? run->ctx->msg->env->correlation_id : NULL;
  return emit_event(run->ctx, event, tier, NULL, id, payload, run->id, corr, 0);
}

/* ---------------------------------------------------------------- cancel */

tb_status tb__wf_fail(const tb_handler_ctx_t *ctx, const char *id, const char *error) {
  stepper_t sp;
  int found = 0;
  tb_status s = load(&sp, ctx, id, &found);
  if (s == TB_OK && !found) s = tb__fail(TB_ERR_NOT_FOUND, "no workflow '%s'", id);
  if (s == TB_OK && tb_wf_status_final(sp.row.status))
    s = tb__fail(TB_ERR_INVALID, "workflow '%s' is already %s", id, sp.row.status);
  if (s == TB_OK) {
    /* Its queued continuation and any timer ("wf:<id>:") must not run a step of a failed run. */
    char prefix[TB_ID_MAX + 8];
    snprintf(prefix, sizeof(prefix), "wf:%s:", id);
    s = tb_store_outbox_cancel_prefix(ctx->store, prefix, NULL);
    tb_wf_hist_t h = {.step = sp.row.step,
                      .name = "run-timeout",
                      .kind = "deadline",
                      .attempt = 1,
                      .status = "failed",
                      .detail = error,
                      .tier = sp.row.tier,
                      .ended_us = tb_wall_us()};
    if (s == TB_OK) s = tb_store_wf_hist_add(ctx->store, id, &h, NULL);
    sp.dirty = 1;
    if (s == TB_OK) s = fail_run(&sp, error);
    if (s == TB_OK) s = flush(&sp);
  }
  if (found) unload(&sp);
  return s;
}

tb_status tb_wf_cancel(tb_store_t *store, const char *id, const char *reason) {
  tb_status s = tb_store_begin(store);
  if (s != TB_OK) return s;
  tb_wf_row_t row;
  int found = 0;
  s = tb_store_wf_get(store, id, &row, &found);
  if (s == TB_OK && !found) s = tb__fail(TB_ERR_NOT_FOUND, "no workflow '%s'", id);
  if (s == TB_OK && tb_wf_status_final(row.status))
    s = tb__fail(TB_ERR_INVALID, "workflow '%s' is already %s", id, row.status);
  if (s == TB_OK) {
    const char *why = reason && reason[0] ? reason : "cancelled";
    snprintf(row.status, sizeof(row.status), "cancelled");
    snprintf(row.step_state, sizeof(row.step_state), "done");
    free(row.error);
    row.error = strdup(why);
    row.finished_us = tb_wall_us();
    s = tb_store_wf_update(store, &row);
    if (s == TB_OK) s = tb_store_wf_wait_drop_all(store, id);
    /* A cancelled run's command no longer counts against its service's limit. */
    if (s == TB_OK) s = tb_store_slot_release(store, id, NULL);
    /* Queued continuations and timers ("wf:<id>:"), and commands not yet sent ("<id>:"). */
    char prefix[TB_ID_MAX + 8];
    snprintf(prefix, sizeof(prefix), "wf:%s:", id);
    if (s == TB_OK) s = tb_store_outbox_cancel_prefix(store, prefix, NULL);
    snprintf(prefix, sizeof(prefix), "%s:", id);
    if (s == TB_OK) s = tb_store_outbox_cancel_prefix(store, prefix, NULL);
    tb_wf_hist_t h = {.step = row.step,
                      .name = "cancel",
                      .kind = "cancel",
                      .attempt = 1,
                      .status = "cancelled",
                      .detail = why,
                      .ended_us = tb_wall_us()};
    if (s == TB_OK) s = tb_store_wf_hist_add(store, id, &h, NULL);
  }
  if (found) tb_store_wf_row_clear(&row);
  if (s == TB_OK) return tb_store_commit(store);
  tb_store_rollback(store);
  return s;
}
