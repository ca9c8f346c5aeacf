/* Applying one delivered message: the effectively-once core. The handler's writes, the
 * processed-message record and the counters commit in one SQLite transaction, and the ack is sent
 * only after that commit, so a redelivery finds the record and has no second effect. */
#include "engine/engine.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "engine/relay.h"
#include "store/dlq.h"

enum { C_PROCESSED, C_FAILED, C_DEAD, C_DUPLICATE, C_INVERSIONS, C_REDELIVERIES, C__COUNT };
static const char *counter_names[C__COUNT] = {"processed",   "failed",     "dead",
                                              "redelivered", "inversions", "redeliveries"};

/* The counters' domain slot: cfg->domains order, and one more for a message whose domain is not
 * known (a work item the dispatcher did not make), stored under domain "". */
#define NO_DOMAIN TB_MAX_DOMAINS

struct tb_engine {
  const tb_config_t *cfg;
  const tb_catalogue_t *cat;
  tb_store_t *store;
  tb_bus_t *bus;
  tb_handler_lookup_fn handlers;
  /* Deltas of the open batch by (tier, domain slot), flushed into the store with it. */
  int64_t batch_counters[TB_MAX_TIERS][TB_MAX_DOMAINS + 1][C__COUNT];
  int batch_emitted; /* a handler of the open batch wrote outbox rows */
  /* The open batch's messages so far, in order (borrowed: the caller holds them until they are
   * settled), so that the batch can be applied again; see redo_carefully(). */
  tb_work_t **applied;
  int n_applied, cap_applied;
  /* 1 once the open batch was redone: each message in a savepoint of its own from then on. */
  int careful;
  tb_relay_t *relay; /* borrowed; kicked after a commit with follow-ups; may be NULL */
  int replay;        /* tb_engine_set_replay */
  tb_handler_safe_fn force;
  /* Histograms not yet flushed to the store (flushed at most once a second: they are figures,
   * not state, so a crash losing a second of them is acceptable). */
  tb_hist_t *pending_start, *pending_commit; /* [n_tiers] */
  int64_t last_hist_flush_us;
  /* Process totals, for the bench and for logs. */
  pthread_mutex_t mu;
  tb_engine_tier_stats_t *totals; /* [n_tiers]; histograms are added as they happen */
  int64_t last_commit_us;
  int64_t commits;
};

tb_status tb_engine_create(tb_engine_t **out, const tb_config_t *cfg, const tb_catalogue_t *cat,
                           tb_store_t *store, tb_bus_t *bus, tb_handler_lookup_fn handlers) {
  tb_engine_t *e = calloc(1, sizeof(*e));
  if (e == NULL) return tb__fail(TB_ERR_NOMEM, "engine");
  e->pending_start = calloc((size_t)cfg->n_tiers, sizeof(tb_hist_t));
  e->pending_commit = calloc((size_t)cfg->n_tiers, sizeof(tb_hist_t));
  e->totals = calloc((size_t)cfg->n_tiers, sizeof(tb_engine_tier_stats_t));
  if (!e->pending_start || !e->pending_commit || !e->totals) {
    tb_engine_destroy(e);
    return tb__fail(TB_ERR_NOMEM, "engine histograms");
  }
  e->cfg = cfg;
  e->cat = cat;
  e->store = store;
  e->bus = bus;
  e->handlers = handlers;
  e->last_hist_flush_us = tb_mono_us();
  pthread_mutex_init(&e->mu, NULL);
  *out = e;
  return TB_OK;
}

static tb_status flush_figures(tb_engine_t *e, int with_hists);

/* Writes the histograms not yet flushed (they go out at most once a second with a batch) in a
 * transaction of their own: without it a worker's last second of latency figures was lost at
 * every stop. The executor has stopped; failures are logged, they cost only figures. */
static void flush_last_hists(tb_engine_t *e) {
  int any = 0;
  for (int t = 0; t < e->cfg->n_tiers; t++)
    any |= e->pending_start[t].total > 0 || e->pending_commit[t].total > 0;
  if (!any) return;
  memset(e->batch_counters, 0, sizeof(e->batch_counters));
  tb_status st = tb_store_begin(e->store);
  if (st == TB_OK) st = flush_figures(e, 1);
  if (st == TB_OK) st = tb_store_commit(e->store);
  if (st != TB_OK) {
    tb_store_rollback(e->store);
    TB_LOG(TB_LOG_WARN, "engine", "the last latency figures were not saved: %s", tb_errdetail());
  }
}

void tb_engine_destroy(tb_engine_t *e) {
  if (e == NULL) return;
  /* A replay leaves the workers' figures alone (tb_engine_commit). */
  if (!e->replay && e->pending_start != NULL && e->pending_commit != NULL) flush_last_hists(e);
  free(e->pending_start);
  free(e->pending_commit);
  free(e->totals);
  free(e->applied);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

void tb_engine_set_relay(tb_engine_t *e, tb_relay_t *relay) {
  e->relay = relay;
}

void tb_engine_set_replay(tb_engine_t *e, int on, tb_handler_safe_fn force) {
  e->replay = on;
  e->force = on ? force : NULL;
}

/* Domain slot of a (tier, domain index) pair: the index when it names a configured domain. */
static int domain_slot(const tb_engine_t *e, int domain) {
  return domain >= 0 && domain < e->cfg->n_domains ? domain : NO_DOMAIN;
}

/* The open batch's counter |c| for |w|'s tier and domain. */
static int64_t *counter(tb_engine_t *e, const tb_work_t *w, int c) {
  return &e->batch_counters[w->tier][domain_slot(e, w->domain)][c];
}

/* The open batch's counter |c| of |tier|, summed over its domains (for the process totals). */
static int64_t tier_count(const tb_engine_t *e, int tier, int c) {
  int64_t n = 0;
  for (int d = 0; d <= TB_MAX_DOMAINS; d++) n += e->batch_counters[tier][d][c];
  return n;
}

tb_status tb_engine_begin(tb_engine_t *e) {
  memset(e->batch_counters, 0, sizeof(e->batch_counters));
  e->batch_emitted = 0;
  e->n_applied = 0;
  e->careful = 0;
  return tb_store_begin(e->store);
}

/* The dead-letter subject mirrors the event subject: tb.evt.<tier>.<domain>.<event> becomes
 * tb.dlq.<tier>.<domain>.<event>; anything unparseable lands on tb.dlq.<tier>.unknown. */
static void dlq_subject(const char *subject, const char *tier, char *buf, size_t cap) {
  if (subject && strncmp(subject, "tb.evt.", 7) == 0)
    snprintf(buf, cap, "tb.dlq.%s", subject + 7);
  else
    snprintf(buf, cap, "tb.dlq.%s.unknown", tier);
}

/* Where a delivered message sits in its stream. */
typedef struct position {
  const char *stream;
  uint64_t seq, deliveries;
} position_t;

/* The id that makes a message unique for dedupe: the envelope id (= Nats-Msg-Id), or, for a body
 * that could not be decoded, the Tb-Replay-Of or else the Nats-Msg-Id header (borrowed from |msg|,
 * whole), or the stream position written into |buf|. */
static const char *fallback_id(natsMsg *msg, const position_t *pos, char *buf, size_t cap) {
  const char *hid = NULL;
  /* A `dlq replay` copy names the entry it replays: its Nats-Msg-Id is the replay's own. */
  if (natsMsgHeader_Get(msg, "Tb-Replay-Of", &hid) == NATS_OK && hid && *hid) return hid;
  if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &hid) == NATS_OK && hid && *hid) return hid;
  snprintf(buf, cap, "%s:%llu", pos->stream, (unsigned long long)pos->seq);
  return buf;
}

/* What the processed table records of one dispatch: the message, where it came from, and why it
 * ran when it did. Strings are borrowed from the arguments. */
static tb_dispatch_record_t dispatch_record(const tb_engine_t *e, const tb_work_t *w,
                                            const position_t *pos, const char *msg_id,
                                            const char *event_type, tb_outcome outcome) {
  return (tb_dispatch_record_t){.msg_id = msg_id,
                                .event_type = event_type,
                                .tier = e->cfg->tiers[w->tier].name,
                                .eff_tier = e->cfg->tiers[w->eff_tier].name,
                                .boost = w->boost,
                                .reason = w->reason,
                                .stream = pos->stream,
                                .stream_seq = pos->seq,
                                .deliveries = pos->deliveries,
                                .published_us = w->published_us,
                                .started_us = w->started_us,
                                .outcome = outcome};
}

/* The message's headers as {"key": ["value", ...]} (caller frees), or NULL when it has none. */
static char *headers_json(natsMsg *msg) {
  const char **keys = NULL;
  int n = 0;
  if (natsMsgHeader_Keys(msg, &keys, &n) != NATS_OK || n == 0) {
    free((void *)keys);
    return NULL;
  }
  json_t *obj = json_object();
  for (int i = 0; i < n && obj != NULL; i++) {
    const char **vals = NULL;
    int nv = 0;
    json_t *arr = json_array();
    if (natsMsgHeader_Values(msg, keys[i], &vals, &nv) == NATS_OK)
      for (int k = 0; k < nv; k++) json_array_append_new(arr, json_string(vals[k] ? vals[k] : ""));
    free((void *)vals);
    json_object_set_new(obj, keys[i], arr);
  }
  free((void *)keys);
  char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  return text;
}

/* Copies the message to the dead-letter stream, then records it: the processed record ('dead')
 * and the dead-letter entry with the whole message. If the copy cannot be published (server
 * away) the message is nak'ed instead: nothing is dropped. */
static tb_status dead_letter(tb_engine_t *e, tb_work_t *w, const position_t *pos,
                             const char *msg_id, const char *event_type, tb_dlq_class cls,
                             const char *reason) {
  const char *tier = e->cfg->tiers[w->tier].name;
  char subj[256];
  dlq_subject(natsMsg_GetSubject(w->msg), tier, subj, sizeof(subj));
  /* A replayed message is history: its copy in the DLQ, if it has one, was made the first time. */
  /* A batch applied again (redo_carefully) has published its copy already. */
  uint64_t dlq_seq = w->dlq_seq;
  tb_status st = e->replay || w->dlq_copied
                     ? TB_OK
                     : tb_bus_dead_letter(e->bus, w->msg, subj, msg_id, tb_dlq_class_name(cls),
                                          reason, pos->stream, pos->seq, pos->deliveries, &dlq_seq);
  if (st == TB_OK && !e->replay) {
    w->dlq_copied = 1;
    w->dlq_seq = dlq_seq;
  }
  if (st != TB_OK) {
    TB_LOG(TB_LOG_WARN, "engine", "dead-letter %.200s failed, will retry: %s", msg_id,
           tb_errdetail());
    w->fate = TB_FATE_NAK;
    w->nak_delay_ms = 1000;
    return TB_OK;
  }
  tb_dispatch_record_t r = dispatch_record(e, w, pos, msg_id, event_type, TB_OUTCOME_DEAD);
  /* The processed record first: the store's dedupe lookup also reads dead_letters, so a claim
   * after the dead-letter row would find it and record nothing. A message dead-lettered before
   * (its commit lost) keeps its first record. */
  int fresh = 0;
  st = tb_store_claim(e->store, &r, &fresh);
  char *hdrs = st == TB_OK ? headers_json(w->msg) : NULL;
  const char *subject = natsMsg_GetSubject(w->msg);
  tb_dlq_entry_t entry = {.msg_id = msg_id,
                          .event_type = event_type,
                          .tier = tier,
                          .reason_class = tb_dlq_class_name(cls),
                          .error = reason,
                          .subject = subject ? subject : "",
                          .headers_json = hdrs,
                          .payload = natsMsg_GetData(w->msg),
                          .len = (size_t)natsMsg_GetDataLength(w->msg),
                          .stream = pos->stream,
                          .stream_seq = pos->seq,
                          .deliveries = pos->deliveries,
                          .dlq_seq = dlq_seq};
  if (st == TB_OK) st = tb_store_dlq_put(e->store, &entry);
  free(hdrs);
  if (st != TB_OK) return st;
  /* An over-long id is logged cut: the entry has it whole. */
  TB_LOG(TB_LOG_WARN, "engine", "dead-lettered %.200s (%s, %s) on %s: %s", msg_id, event_type,
         tb_dlq_class_name(cls), subj, reason);
  (*counter(e, w, C_DEAD))++;
  w->fate = TB_FATE_TERM;
  return TB_OK;
}

static int64_t backoff_ms(const tb_tier_config_t *t, uint64_t deliveries) {
  if (t->n_backoff == 0) return 0;
  uint64_t i = deliveries == 0 ? 0 : deliveries - 1;
  return t->backoff_ms[i < (uint64_t)t->n_backoff ? i : (uint64_t)t->n_backoff - 1];
}

/* Decodes |w|'s message into |d| and points *id at its id (borrowed from |d|, |w|'s message or
 * |buf|; never cut). Returns 1 when the message can go on to its handler; 0 when it cannot
 * (oversize, undecodable, unknown type, an id over TB_ENVELOPE_ID_MAX, a required field empty,
 * a payload over max_payload) and was dead-lettered instead, with *st the status of doing so. */
static int decode_or_dead_letter(tb_engine_t *e, tb_work_t *w, const position_t *pos,
                                 const char **id, char *buf, size_t cap, tb_decoded_t *d,
                                 tb_status *st) {
  int len = natsMsg_GetDataLength(w->msg);
  char reason[1100];
  if (len > e->cfg->max_payload_bytes + 4096) {
    *id = fallback_id(w->msg, pos, buf, cap);
    snprintf(reason, sizeof(reason), "message of %d bytes exceeds max_payload %lld", len,
             (long long)e->cfg->max_payload_bytes);
    *st = dead_letter(e, w, pos, *id, "", TB_DLQ_TOO_LARGE, reason);
    return 0;
  }
  tb__clear_detail();
  tb_status dst = tb_codec_decode(e->cat, (const uint8_t *)natsMsg_GetData(w->msg), (size_t)len, d);
  if (dst != TB_OK) {
    *id = fallback_id(w->msg, pos, buf, cap);
    snprintf(reason, sizeof(reason), "%s: %s", tb_strerror(dst), tb_errdetail());
    *st =
        dead_letter(e, w, pos, *id, "",
                    dst == TB_ERR_UNKNOWN_EVENT ? TB_DLQ_UNKNOWN_EVENT : TB_DLQ_MALFORMED, reason);
    return 0;
  }
  w->published_us = d->env->occurred_at_us;
  *id = d->env->id;
  /* A longer id would not fit where runs and records keep ids; cutting it made a second event
   * sharing its first bytes a duplicate, dropped in silence. It is refused whole instead. */
  size_t id_len = strlen(d->env->id);
  if (id_len > TB_ENVELOPE_ID_MAX) {
    snprintf(reason, sizeof(reason), "envelope id of %zu bytes exceeds the limit of %d", id_len,
             TB_ENVELOPE_ID_MAX);
    *st = dead_letter(e, w, pos, *id, d->def->name, TB_DLQ_ID_TOO_LONG, reason);
    return 0;
  }
  const char *missing = tb_codec_missing_field(d->def, d->payload);
  if (missing != NULL) {
    snprintf(reason, sizeof(reason), "%s: field '%s' is required", d->def->name, missing);
    *st = dead_letter(e, w, pos, *id, d->def->name, TB_DLQ_MISSING_FIELD, reason);
    return 0;
  }
  /* max_payload bounds the event payload, as at publish; the check above only stops a body too
   * large to be worth decoding. */
  if ((int64_t)d->env->payload.len > e->cfg->max_payload_bytes) {
    snprintf(reason, sizeof(reason), "payload of %zu bytes exceeds max_payload %lld",
             d->env->payload.len, (long long)e->cfg->max_payload_bytes);
    *st = dead_letter(e, w, pos, *id, d->def->name, TB_DLQ_TOO_LARGE, reason);
    return 0;
  }
  return 1;
}

/* An orphan's last delivery had no outcome here. If it was applied (the ack was what got lost),
 * there is nothing to do; otherwise it is dead-lettered like any message out of deliveries. */
static tb_status settle_orphan(tb_engine_t *e, tb_work_t *w, const position_t *pos, const char *id,
                               const tb_decoded_t *d) {
  int seen = 0;
  tb_status st = tb_store_is_processed(e->store, id, &seen);
  if (st != TB_OK || seen) return st;
  char why[200];
  snprintf(why, sizeof(why),
           "max deliveries (%llu) reached with no outcome: the worker holding the last delivery "
           "stopped",
           (unsigned long long)pos->deliveries);
  return dead_letter(e, w, pos, id, d->def->name, TB_DLQ_MAX_DELIVERIES, why);
}

/* The handler failed with |hst| and its writes were rolled back: retry with the tier's backoff,
 * or dead-letter when the failure is permanent or the deliveries are used up. */
static tb_status handler_failed(tb_engine_t *e, tb_work_t *w, const position_t *pos, const char *id,
                                const tb_decoded_t *d, tb_status hst) {
  const tb_tier_config_t *tier = &e->cfg->tiers[w->tier];
  char reason[1200];
  snprintf(reason, sizeof(reason), "%s: %s", tb_strerror(hst), tb_errdetail());
  (*counter(e, w, C_FAILED))++;
  if (hst == TB_ERR_INVALID || pos->deliveries >= (uint64_t)tier->max_deliver) {
    char why[1300];
    if (hst == TB_ERR_INVALID)
      snprintf(why, sizeof(why), "rejected by handler %s: %s", d->def->handler, reason);
    else
      snprintf(why, sizeof(why), "max deliveries (%d) reached: %s", tier->max_deliver, reason);
    return dead_letter(e, w, pos, id, d->def->name,
                       hst == TB_ERR_INVALID ? TB_DLQ_HANDLER_FAILED : TB_DLQ_MAX_DELIVERIES, why);
  }
  TB_LOG(TB_LOG_WARN, "engine", "%s (%s) attempt %llu failed, retrying: %s", id, d->def->name,
         (unsigned long long)pos->deliveries, reason);
  w->fate = TB_FATE_NAK;
  w->nak_delay_ms = backoff_ms(tier, pos->deliveries);
  return TB_OK;
}

/* The effectively-once contract, in one place. In the batch transaction: claim the message id in
 * the processed record; if it was claimed before (a redelivery, or a publisher's duplicate past
 * the stream's window), the effect already happened and the handler is not run. Otherwise run the
 * handler: its writes and the claim are kept together (in the batch, which commits before any
 * ack), or undone together when it fails.
 *
 * Undoing one message's writes takes a savepoint around it, and a savepoint makes SQLite copy
 * every page the message touches before changing it: 15% of the executor's time (issue 9), paid
 * by every message for the rare one whose handler fails. So a batch runs without them until a
 * handler fails; then *redo = 1 and the caller applies the whole batch again, carefully
 * (redo_carefully). In a careful batch each message has its savepoint, as here. */
static tb_status apply_once(tb_engine_t *e, tb_work_t *w, const position_t *pos, const char *id,
                            const tb_decoded_t *d, tb_handler_fn fn, int *redo) {
  tb_status st = e->careful ? tb_store_savepoint(e->store) : TB_OK;
  if (st != TB_OK) return st;
  tb_dispatch_record_t r = dispatch_record(e, w, pos, id, d->def->name, TB_OUTCOME_APPLIED);
  int fresh = 0;
  st = tb_store_claim(e->store, &r, &fresh);
  w->forced = st == TB_OK && !fresh && e->force != NULL && e->force(d->def->handler);
  if (st == TB_OK && !fresh && !w->forced) {
    (*counter(e, w, C_DUPLICATE))++;
    return e->careful ? tb_store_release(e->store) : TB_OK;
  }
  if (st != TB_OK) return st;
  tb_handler_ctx_t ctx = {
      .store = e->store,
      .cfg = e->cfg,
      .cat = e->cat,
      .msg = d,
      .tier = e->cfg->tiers[w->tier].name,
      .order = {.occurred_us = d->env->occurred_at_us, .stream = pos->stream, .seq = pos->seq},
      .emitted = &e->batch_emitted,
      .replay = e->replay,
  };
  tb__clear_detail();
  atomic_store_explicit(&w->handler_mono_us, tb_mono_us(), memory_order_relaxed);
  tb_status hst = fn(&ctx);
  atomic_store_explicit(&w->handler_mono_us, 0, memory_order_relaxed);
  if (hst == TB_OK) {
    st = e->careful ? tb_store_release(e->store) : TB_OK;
    if (st == TB_OK) {
      w->applied = 1;
      (*counter(e, w, C_PROCESSED))++;
    }
    return st;
  }
  if (!e->careful) { /* its writes are mixed with the batch's: the batch is applied again */
    *redo = 1;
    return TB_OK;
  }
  st = tb_store_rollback_to(e->store); /* undoes the claim too, and closes the savepoint */
  return st == TB_OK ? handler_failed(e, w, pos, id, d, hst) : st;
}

/* Adds an applied message's figures to the pending and process histograms. */
static void record_figures(tb_engine_t *e, const tb_work_t *w) {
  int64_t lat = w->started_us - w->published_us;
  if (w->published_us > 0) tb_hist_add(&e->pending_start[w->tier], lat);
  pthread_mutex_lock(&e->mu);
  tb_engine_tier_stats_t *tot = &e->totals[w->tier];
  if (w->published_us > 0) tb_hist_add(&tot->start, lat);
  if (!w->orphan) { /* an orphan was never waiting in a ready queue */
    tb_hist_add(&tot->wait, w->wait_us);
    if (w->over_bound_us >= 0) tb_hist_add(&tot->over_bound, w->over_bound_us);
    tot->aged += w->boost > 0;
    tot->late += w->over_bound_us > 0;
  }
  pthread_mutex_unlock(&e->mu);
}

/* Applies |w| in the open batch; sets *redo when its handler failed outside a savepoint. */
static tb_status apply_one(tb_engine_t *e, tb_work_t *w, int *redo) {
  jsMsgMetaData *meta = NULL;
  char idbuf[96];
  const char *id = NULL;
  tb_decoded_t d = {0};
  tb_status st = TB_OK;
  w->fate = TB_FATE_ACK;
  w->applied = 0;
  w->forced = 0;
  w->started_us = tb_wall_us();
  natsMsg_GetMetaData(&meta, w->msg); /* NULL for an orphan, which has no ack subject */
  position_t pos = {"", 0, 1};
  if (w->orphan)
    pos = (position_t){w->orphan_stream, w->orphan_seq, w->orphan_deliveries};
  else if (meta)
    pos = (position_t){meta->Stream, meta->Sequence.Stream, meta->NumDelivered};
  /* The server sent it again (a nak, a lapsed lease, a worker that died), whatever comes of it
   * now. An orphan is not a delivery but a read-back of one already counted. */
  if (!w->orphan && pos.deliveries > 1) (*counter(e, w, C_REDELIVERIES))++;

  if (decode_or_dead_letter(e, w, &pos, &id, idbuf, sizeof(idbuf), &d, &st)) {
    tb_handler_fn fn = w->orphan ? NULL : e->handlers(d.def->handler);
    if (w->orphan) {
      st = settle_orphan(e, w, &pos, id, &d);
    } else if (fn == NULL) {
      char reason[200];
      snprintf(reason, sizeof(reason), "no handler '%s' for event %s", d.def->handler, d.def->name);
      st = dead_letter(e, w, &pos, id, d.def->name, TB_DLQ_NO_HANDLER, reason);
    } else {
      st = apply_once(e, w, &pos, id, &d, fn, redo);
    }
  }
  tb_decoded_free(&d);
  jsMsgMetaData_Destroy(meta);
  return st;
}

/* A handler failed in a batch applied without savepoints, where its writes cannot be undone
 * alone: the transaction is rolled back and the batch's messages so far applied again, each in a
 * savepoint of its own, then |w|, whose failure now undoes only its own writes. Handlers change
 * only the database (api/handler.h), so applying them again in the same state is the same effect;
 * a dead letter's copy is not published twice (dead_letter). The batch's counters start again,
 * but for the inversions, which the dispatcher noted between messages. */
static tb_status redo_carefully(tb_engine_t *e, tb_work_t *w) {
  int64_t inversions[TB_MAX_TIERS][TB_MAX_DOMAINS + 1];
  for (int t = 0; t < TB_MAX_TIERS; t++)
    for (int d = 0; d <= TB_MAX_DOMAINS; d++)
      inversions[t][d] = e->batch_counters[t][d][C_INVERSIONS];
  tb_status st = tb_store_rollback(e->store);
  if (st == TB_OK) st = tb_store_begin(e->store);
  if (st != TB_OK) return st; /* the caller aborts the batch: every message is redelivered */
  memset(e->batch_counters, 0, sizeof(e->batch_counters));
  for (int t = 0; t < TB_MAX_TIERS; t++)
    for (int d = 0; d <= TB_MAX_DOMAINS; d++)
      e->batch_counters[t][d][C_INVERSIONS] = inversions[t][d];
  e->batch_emitted = 0;
  e->careful = 1;
  int redo = 0; /* never set in a careful batch */
  for (int i = 0; i < e->n_applied && st == TB_OK; i++) st = apply_one(e, e->applied[i], &redo);
  if (st == TB_OK) st = apply_one(e, w, &redo);
  return st;
}

tb_status tb_engine_apply(tb_engine_t *e, tb_work_t *w) {
  if (e->n_applied == e->cap_applied) {
    int cap = e->cap_applied ? e->cap_applied * 2 : 256;
    tb_work_t **a = realloc(e->applied, (size_t)cap * sizeof(*a));
    if (a == NULL) return tb__fail(TB_ERR_NOMEM, "engine: batch of %d messages", cap);
    e->applied = a;
    e->cap_applied = cap;
  }
  int redo = 0;
  tb_status st = apply_one(e, w, &redo);
  if (st == TB_OK && redo) st = redo_carefully(e, w);
  if (st != TB_OK) return st;
  e->applied[e->n_applied++] = w;
  record_figures(e, w); /* here, not in apply_one: a redone batch's messages count once */
  return TB_OK;
}

/* Writes the batch's counters and, once a second, the histograms, into the open transaction. */
static tb_status flush_figures(tb_engine_t *e, int with_hists) {
  tb_status st = TB_OK;
  for (int t = 0; t < e->cfg->n_tiers && st == TB_OK; t++) {
    for (int d = 0; d <= TB_MAX_DOMAINS && st == TB_OK; d++) {
      if (d >= e->cfg->n_domains && d != NO_DOMAIN) continue;
      const char *domain = d == NO_DOMAIN ? "" : e->cfg->domains[d];
      for (int c = 0; c < C__COUNT && st == TB_OK; c++)
        if (e->batch_counters[t][d][c] != 0)
          st = tb_store_counter_add(e->store, e->cfg->tiers[t].name, domain, counter_names[c],
                                    e->batch_counters[t][d][c]);
    }
    if (with_hists && st == TB_OK && e->pending_start[t].total > 0)
      st = tb_store_hist_merge(e->store, e->cfg->tiers[t].name, "start", &e->pending_start[t]);
    if (with_hists && st == TB_OK && e->pending_commit[t].total > 0)
      st = tb_store_hist_merge(e->store, e->cfg->tiers[t].name, "commit", &e->pending_commit[t]);
  }
  return st;
}

tb_status tb_engine_commit(tb_engine_t *e, tb_work_t *const *items, int n) {
  int64_t now = tb_wall_us();
  /* Commit latency is known only now; it joins the histograms flushed by a later batch. */
  for (int i = 0; i < n; i++)
    if (items[i]->applied && items[i]->published_us > 0)
      tb_hist_add(&e->pending_commit[items[i]->tier], now - items[i]->published_us);
  pthread_mutex_lock(&e->mu);
  for (int i = 0; i < n; i++)
    if (items[i]->applied && items[i]->published_us > 0)
      tb_hist_add(&e->totals[items[i]->tier].commit, now - items[i]->published_us);
  pthread_mutex_unlock(&e->mu);
  int with_hists = !e->replay && tb_mono_us() - e->last_hist_flush_us > 1000000;
  tb_status st = e->replay ? TB_OK : flush_figures(e, with_hists);
  /* The outbox rows the relay has published go in this transaction, which holds the write lock
   * anyway: the relay then writes nothing of its own (tb_relay_take_acked). */
  const int64_t *acked = NULL;
  int n_acked = st == TB_OK ? tb_relay_take_acked(e->relay, &acked) : 0;
  for (int i = 0; i < n_acked && st == TB_OK; i++) st = tb_store_outbox_delete(e->store, acked[i]);
  if (st == TB_OK) st = tb_store_commit(e->store);
  if (n_acked > 0) tb_relay_acked_settled(e->relay, st == TB_OK);
  if (st != TB_OK) return st;
  /* Follow-ups written by this batch go out now, not at the relay's next tick. */
  if (e->batch_emitted && e->relay != NULL) tb_relay_kick(e->relay);

  pthread_mutex_lock(&e->mu);
  for (int t = 0; t < e->cfg->n_tiers; t++) {
    e->totals[t].processed += tier_count(e, t, C_PROCESSED);
    e->totals[t].failed += tier_count(e, t, C_FAILED);
    e->totals[t].dead += tier_count(e, t, C_DEAD);
    e->totals[t].duplicates += tier_count(e, t, C_DUPLICATE);
  }
  e->last_commit_us = tb_wall_us();
  e->commits++;
  pthread_mutex_unlock(&e->mu);
  if (with_hists) {
    for (int t = 0; t < e->cfg->n_tiers; t++) {
      tb_hist_reset(&e->pending_start[t]);
      tb_hist_reset(&e->pending_commit[t]);
    }
    e->last_hist_flush_us = tb_mono_us();
  }
  return TB_OK;
}

void tb_engine_abort(tb_engine_t *e, tb_work_t *const *items, int n) {
  tb_store_rollback(e->store);
  for (int i = 0; i < n; i++) {
    items[i]->fate = TB_FATE_NAK;
    items[i]->nak_delay_ms = 0;
    items[i]->applied = 0;
  }
}

void tb_engine_note_inversion(tb_engine_t *e, int tier, int domain) {
  e->batch_counters[tier][domain_slot(e, domain)][C_INVERSIONS]++;
}

void tb_engine_settle(tb_engine_t *e, tb_work_t *w) {
  tb_status st = TB_OK;
  if (w->orphan || e->replay) { /* read back from the stream: nothing to ack */
    natsMsg_Destroy(w->msg);
    w->msg = NULL;
    return;
  }
  switch (w->fate) {
  case TB_FATE_ACK:
    st = tb_bus_ack(e->bus, w->msg);
    break;
  case TB_FATE_NAK:
    st = tb_bus_nak(e->bus, w->msg, w->nak_delay_ms);
    break;
  case TB_FATE_TERM:
    st = tb_bus_term(e->bus, w->msg);
    break;
  }
  /* A lost ack only costs a redelivery, which the processed record absorbs. */
  if (st != TB_OK)
    TB_LOG(TB_LOG_DEBUG, "engine", "settle failed (message will be redelivered): %s",
           tb_errdetail());
  natsMsg_Destroy(w->msg);
  w->msg = NULL;
}

void tb_engine_tier_stats(tb_engine_t *e, int tier, tb_engine_tier_stats_t *out) {
  pthread_mutex_lock(&e->mu);
  *out = e->totals[tier];
  out->last_commit_us = e->last_commit_us;
  out->commits = e->commits;
  pthread_mutex_unlock(&e->mu);
}

int64_t tb_engine_handled(tb_engine_t *e, int tier) {
  pthread_mutex_lock(&e->mu);
  const tb_engine_tier_stats_t *s = &e->totals[tier];
  int64_t n = s->processed + s->dead + s->duplicates;
  pthread_mutex_unlock(&e->mu);
  return n;
}
