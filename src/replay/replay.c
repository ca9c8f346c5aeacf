/* Reading history back through ordered consumers and applying it with the engine in replay
 * mode: the streams of the selected tiers merged by stored time, filtered, batched into
 * transactions, judged against the processed records. */
#include "replay/replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/status.h"
#include "store/logstate.h"

/* How long one stream may stay silent while the server says it has more for us. An ordered
 * consumer sends heartbeats every 5 s, so this is several of them. */
#define SILENCE_MS 20000

/* One stream being read. */
typedef struct src {
  char stream[64];
  int tier;
  natsSubscription *sub;
  natsMsg *head;    /* next message in time order, or NULL when one must be fetched */
  int64_t head_ns;  /* its stored time */
  uint64_t end_seq; /* last sequence to read (the stream's last at the start, or --to-seq) */
  int last;         /* the head is the last one there is */
  int done;
} src_t;

/* ---------------------------------------------------------------- subjects and times */

static int split(const char *s, char tok[][64], int max) {
  int n = 0;
  const char *p = s;
  while (n < max) {
    const char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    if (len == 0 || len >= 64) return -1;
    memcpy(tok[n], p, len);
    tok[n][len] = '\0';
    n++;
    if (!dot) return n;
    p = dot + 1;
  }
  return -1;
}

/* Both sides are valid filters: tokens, '*' for one token, a final '>' for one or more. The
 * meet takes the literal of the two where one has it; a '>' on one side takes the rest of the
 * other. */
int tb_replay_subject_meet(const char *filter, const char *pattern, char *buf, size_t cap) {
  char a[32][64], b[32][64], out[32][64];
  int na = split(filter, a, 32), nb = split(pattern, b, 32), n = 0;
  if (na < 1 || nb < 1) return 0;
  int i = 0;
  for (;; i++) {
    int a_end = i >= na, b_end = i >= nb;
    if (a_end && b_end) break;
    if (a_end || b_end) return 0; /* one ran out of tokens without a '>' */
    int a_gt = strcmp(a[i], ">") == 0, b_gt = strcmp(b[i], ">") == 0;
    if (a_gt || b_gt) {
      /* The rest of the other side, which must have at least one token left. */
      char(*rest)[64] = a_gt ? b : a;
      int nrest = a_gt ? nb : na;
      if (a_gt && b_gt) {
        snprintf(out[n++], 64, ">");
      } else {
        for (int j = i; j < nrest; j++) snprintf(out[n++], 64, "%s", rest[j]);
      }
      break;
    }
    if (strcmp(a[i], "*") == 0)
      snprintf(out[n++], 64, "%s", b[i]);
    else if (strcmp(b[i], "*") == 0 || strcmp(a[i], b[i]) == 0)
      snprintf(out[n++], 64, "%s", a[i]);
    else
      return 0;
  }
  size_t used = 0;
  buf[0] = '\0';
  for (int j = 0; j < n; j++) {
    int w = snprintf(buf + used, cap - used, "%s%s", j ? "." : "", out[j]);
    if (w < 0 || (size_t)w >= cap - used) return 0;
    used += (size_t)w;
  }
  return 1;
}

/* ---------------------------------------------------------------- reading */

static void src_close(src_t *s) {
  natsMsg_Destroy(s->head);
  s->head = NULL;
  if (s->sub) {
    natsSubscription_Unsubscribe(s->sub); /* deletes the ephemeral consumer on the server */
    natsSubscription_Destroy(s->sub);
  }
  s->sub = NULL;
  s->done = 1;
}

/* Opens the ordered consumer of |s| over |filter| from the start the options say, and adds the
 * messages it will read to *total. An empty range leaves |s| done. */
static tb_status src_open(tb_bus_t *bus, src_t *s, const char *filter, const tb_replay_opts_t *o,
                          int64_t *total) {
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus ns = js_GetStreamInfo(&si, tb_bus_js(bus), s->stream, NULL, &jerr);
  if (ns != NATS_OK) {
    s->done = 1;
    if (jerr == JSStreamNotFoundErr) return TB_OK; /* a domain never provisioned: no history */
    char what[128];
    snprintf(what, sizeof(what), "replay: stream %s", s->stream);
    return tb__nats_fail(ns, jerr, what);
  }
  uint64_t msgs = si->State.Msgs, last = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  uint64_t from = o->start_seq ? o->start_seq(o->start_arg, s->stream) : o->from_seq;
  s->end_seq = o->to_seq > 0 && o->to_seq < last ? o->to_seq : last;
  if (msgs == 0 || (from > 0 && from > s->end_seq)) {
    s->done = 1;
    return TB_OK;
  }
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = s->stream;
  so.Ordered = true;
  if (from > 0) {
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from;
  } else if (o->since_us > 0) {
    so.Config.DeliverPolicy = js_DeliverByStartTime;
    so.Config.OptStartTime = o->since_us * 1000;
  } else {
    so.Config.DeliverPolicy = js_DeliverAll;
  }
  ns = js_SubscribeSync(&s->sub, tb_bus_js(bus), filter, NULL, &so, &jerr);
  if (ns == NATS_OK)
    ns = natsSubscription_SetPendingLimits(s->sub, -1,
                                           256 * 1024 * 1024); /* flow control bounds it */
  jsConsumerInfo *ci = NULL;
  if (ns == NATS_OK) ns = natsSubscription_GetConsumerInfo(&ci, s->sub, NULL, &jerr);
  if (ns != NATS_OK) {
    char what[160];
    snprintf(what, sizeof(what), "replay: ordered consumer on %s (%s)", s->stream, filter);
    src_close(s);
    return tb__nats_fail(ns, jerr, what);
  }
  /* The server may already have pushed part of the range to us: what is left there plus what it
   * delivered is the whole range. */
  uint64_t pending = ci->NumPending + ci->Delivered.Consumer;
  jsConsumerInfo_Destroy(ci);
  if (pending == 0) {
    src_close(s);
    return TB_OK;
  }
  *total += (int64_t)pending;
  return TB_OK;
}

/* Makes sure |s| has a head message (or is done). */
static tb_status src_fill(src_t *s, const tb_replay_opts_t *o) {
  if (s->done || s->head != NULL) return TB_OK;
  if (s->last) {
    src_close(s);
    return TB_OK;
  }
  natsMsg *m = NULL;
  int64_t waited = 0;
  natsStatus ns;
  while ((ns = natsSubscription_NextMsg(&m, s->sub, 1000)) == NATS_TIMEOUT) {
    waited += 1000;
    if (o->stop && *o->stop) return tb__fail(TB_ERR_STOPPED, "replay stopped");
    if (waited >= SILENCE_MS) {
      src_close(s);
      return tb__fail(TB_ERR_TIMEOUT, "replay: stream %s sent nothing for %d s with messages left",
                      s->stream, SILENCE_MS / 1000);
    }
  }
  if (ns != NATS_OK) {
    char what[128];
    snprintf(what, sizeof(what), "replay: read %s", s->stream);
    src_close(s);
    return tb__nats_fail(ns, 0, what);
  }
  jsMsgMetaData *meta = NULL;
  if (natsMsg_GetMetaData(&meta, m) != NATS_OK) {
    natsMsg_Destroy(m);
    src_close(s);
    return tb__fail(TB_ERR_NATS, "replay: %s: a message without JetStream metadata", s->stream);
  }
  uint64_t seq = meta->Sequence.Stream, pending = meta->NumPending;
  int64_t ts = meta->Timestamp;
  jsMsgMetaData_Destroy(meta);
  if (seq > s->end_seq || (o->until_us > 0 && ts > o->until_us * 1000)) {
    natsMsg_Destroy(m);
    src_close(s);
    return TB_OK;
  }
  s->head = m;
  s->head_ns = ts;
  s->last = pending == 0 || seq >= s->end_seq;
  return TB_OK;
}

/* ---------------------------------------------------------------- applying */

typedef struct run {
  tb_bus_t *bus;
  const tb_config_t *cfg;
  const tb_catalogue_t *cat;
  tb_store_t *store;
  const tb_replay_opts_t *o;
  tb_engine_t *engine;
  tb_replay_stats_t *stats;
  const tb_event_def_t *event; /* --event, resolved */
  int64_t horizon_us;          /* prune horizon: older messages have no reliable record */
  tb_work_t *work;             /* [batch] */
  tb_work_t **items;           /* [batch] */
  int n, cap;
  int in_tx;
} run_t;

/* The message id the engine dedupes by: the Nats-Msg-Id (the envelope id) or, without one, the
 * stream position, as the engine's own fallback. */
static void msg_id_of(natsMsg *m, const char *stream, char *buf, size_t cap) {
  const char *hid = NULL;
  if (natsMsgHeader_Get(m, "Nats-Msg-Id", &hid) == NATS_OK && hid && *hid) {
    snprintf(buf, cap, "%s", hid);
    return;
  }
  jsMsgMetaData *meta = NULL;
  uint64_t seq = 0;
  if (natsMsg_GetMetaData(&meta, m) == NATS_OK) seq = meta->Sequence.Stream;
  jsMsgMetaData_Destroy(meta);
  snprintf(buf, cap, "%s:%llu", stream, (unsigned long long)seq);
}

/* The event token is the subject's last: tb.evt.<tier>.<domain>.<token>. */
static int is_event(const char *subject, const tb_event_def_t *ev) {
  const char *dot = strrchr(subject, '.');
  return dot && strcmp(dot + 1, ev->token) == 0;
}

static tb_status flush(run_t *r) {
  if (r->n == 0) return TB_OK;
  tb_status st = tb_engine_commit(r->engine, r->items, r->n);
  r->in_tx = 0;
  if (st != TB_OK) {
    tb_engine_abort(r->engine, r->items, r->n);
    for (int i = 0; i < r->n; i++) tb_engine_settle(r->engine, r->items[i]);
    r->n = 0;
    return st;
  }
  for (int i = 0; i < r->n; i++) {
    tb_work_t *w = r->items[i];
    if (w->applied) {
      r->stats->applied++;
      r->stats->forced += w->forced;
    } else if (w->fate == TB_FATE_TERM) {
      r->stats->dead++;
    } else if (w->fate == TB_FATE_NAK) {
      r->stats->failed++;
    } else {
      r->stats->skipped++;
    }
    tb_engine_settle(r->engine, w); /* replay mode: destroys, acks nothing */
  }
  r->n = 0;
  return TB_OK;
}

/* Takes |m| (ownership) from stream |s|. */
static tb_status handle(run_t *r, src_t *s, natsMsg *m) {
  if (r->event && !is_event(natsMsg_GetSubject(m), r->event)) {
    r->stats->filtered++;
    natsMsg_Destroy(m);
    return TB_OK;
  }
  r->stats->read++;
  /* Before the prune horizon, or in a dry run, a message is only judged: seen (skipped) or not,
   * which past the horizon means pruned and in a dry run means it would apply. */
  int before_horizon = r->horizon_us > 0 && s->head_ns / 1000 < r->horizon_us;
  if (before_horizon || r->o->dry_run) {
    char id[256];
    int seen = 0;
    msg_id_of(m, s->stream, id, sizeof(id));
    tb_status st = tb_store_is_processed(r->store, id, &seen);
    natsMsg_Destroy(m);
    if (st != TB_OK) return st;
    if (seen)
      r->stats->skipped++;
    else if (before_horizon)
      r->stats->pruned++;
    else
      r->stats->applied++; /* would apply */
    return TB_OK;
  }
  if (!r->in_tx) {
    tb_status st = tb_engine_begin(r->engine);
    if (st != TB_OK) {
      natsMsg_Destroy(m);
      return st;
    }
    r->in_tx = 1;
  }
  tb_work_t *w = &r->work[r->n];
  memset(w, 0, sizeof(*w));
  w->msg = m;
  w->tier = s->tier;
  w->eff_tier = s->tier;
  w->reason = "replay";
  w->ready_mono_us = tb_mono_us();
  w->over_bound_us = -1;
  r->items[r->n++] = w;
  tb_status st = tb_engine_apply(r->engine, w);
  if (st != TB_OK) {
    tb_engine_abort(r->engine, r->items, r->n);
    for (int i = 0; i < r->n; i++) tb_engine_settle(r->engine, r->items[i]);
    r->n = 0;
    r->in_tx = 0;
    return st;
  }
  return r->n >= r->cap ? flush(r) : TB_OK;
}

/* The stream whose head is oldest, filling heads as needed; NULL when every stream is done. */
static tb_status pick(src_t *srcs, int n, const tb_replay_opts_t *o, src_t **out) {
  *out = NULL;
  for (int i = 0; i < n; i++) {
    tb_status st = src_fill(&srcs[i], o);
    if (st != TB_OK) return st;
    if (srcs[i].head && (*out == NULL || srcs[i].head_ns < (*out)->head_ns)) *out = &srcs[i];
  }
  return TB_OK;
}

tb_status tb_replay_run(tb_bus_t *bus, const tb_config_t *cfg, const tb_catalogue_t *cat,
                        tb_store_t *store, tb_handler_lookup_fn handlers, const tb_replay_opts_t *o,
                        tb_replay_stats_t *out) {
  memset(out, 0, sizeof(*out));
  int64_t t0 = tb_mono_us();
  run_t r = {.bus = bus, .cfg = cfg, .cat = cat, .store = store, .o = o, .stats = out};
  if (o->event) {
    r.event = tb_catalogue_find(cat, o->event);
    if (r.event == NULL)
      return tb__fail(TB_ERR_UNKNOWN_EVENT, "--event %s: not in the catalogue", o->event);
  }
  src_t *srcs = calloc((size_t)(o->n_tiers * cfg->n_domains) + 1, sizeof(src_t));
  r.cap = o->batch > 0 ? o->batch : cfg->commit_batch_max;
  r.work = calloc((size_t)r.cap, sizeof(tb_work_t));
  r.items = calloc((size_t)r.cap, sizeof(tb_work_t *));
  if (!srcs || !r.work || !r.items) {
    free(srcs);
    free(r.work);
    free(r.items);
    return tb__fail(TB_ERR_NOMEM, "replay");
  }
  tb_status st = tb_store_prune_horizon(store, &r.horizon_us);
  if (st == TB_OK && !o->dry_run) {
    st = tb_engine_create(&r.engine, cfg, cat, store, bus, handlers);
    if (st == TB_OK) tb_engine_set_replay(r.engine, 1, o->force);
  }

  /* One source per (tier, domain) stream that the subject filter reaches. */
  int n = 0, matched = 0;
  for (int t = 0; t < o->n_tiers && st == TB_OK; t++) {
    const char *tier = cfg->tiers[o->tiers[t]].name;
    for (int d = 0; d < cfg->n_domains && st == TB_OK; d++) {
      char pattern[160], filter[256];
      snprintf(pattern, sizeof(pattern), "tb.evt.%s.%s.>", tier, cfg->domains[d]);
      if (o->subject) {
        if (!tb_replay_subject_meet(o->subject, pattern, filter, sizeof(filter))) continue;
      } else {
        snprintf(filter, sizeof(filter), "%s", pattern);
      }
      matched++;
      src_t *s = &srcs[n];
      memset(s, 0, sizeof(*s)); /* the slot of a stream found empty is reused */
      s->tier = o->tiers[t];
      tb_bus_stream_name(cfg, tier, cfg->domains[d], s->stream, sizeof(s->stream));
      st = src_open(bus, s, filter, o, &out->total);
      if (st == TB_OK && !s->done) {
        out->streams++;
        n++;
      }
    }
  }
  if (st == TB_OK && matched == 0)
    st = tb__fail(TB_ERR_INVALID, "--subject %s matches no stream of the selected tiers",
                  o->subject);
  if (o->limit > 0 && out->total > o->limit) out->total = o->limit;

  int64_t last_report = tb_mono_us();
  while (st == TB_OK) {
    if (o->limit > 0 && out->read >= o->limit) break;
    if (o->stop && *o->stop) {
      st = tb__fail(TB_ERR_STOPPED, "replay stopped");
      break;
    }
    src_t *s = NULL;
    st = pick(srcs, n, o, &s);
    if (st != TB_OK || s == NULL) break;
    natsMsg *m = s->head;
    s->head = NULL;
    st = handle(&r, s, m);
    if (o->progress && tb_mono_us() - last_report > 250000) {
      last_report = tb_mono_us();
      out->secs = (double)(last_report - t0) / 1e6;
      o->progress(o->progress_arg, out);
    }
  }
  /* What was applied before a stop or a failure is kept: each batch is whole on its own. */
  if (r.in_tx) {
    tb_status fst = flush(&r);
    if (st == TB_OK || st == TB_ERR_STOPPED) st = fst == TB_OK ? st : fst;
  }
  for (int i = 0; i < n; i++) src_close(&srcs[i]);
  tb_engine_destroy(r.engine);
  free(srcs);
  free(r.work);
  free(r.items);
  out->secs = (double)(tb_mono_us() - t0) / 1e6;
  return st;
}

/* ---------------------------------------------------------------- message ids of a stream */

tb_status tb_replay_stream_ids(tb_bus_t *bus, const char *stream, char ***ids, int64_t *n) {
  *ids = NULL;
  *n = 0;
  src_t s = {0};
  snprintf(s.stream, sizeof(s.stream), "%s", stream);
  tb_replay_opts_t o = {0};
  int64_t total = 0;
  tb_status st = src_open(bus, &s, ">", &o, &total);
  if (st != TB_OK || s.done) return st;
  char **out = calloc((size_t)total + 1, sizeof(char *));
  int64_t k = 0;
  if (out == NULL) st = tb__fail(TB_ERR_NOMEM, "replay: ids of %s", stream);
  while (st == TB_OK) {
    st = src_fill(&s, &o);
    if (st != TB_OK || s.head == NULL) break;
    const char *hid = NULL;
    if (natsMsgHeader_Get(s.head, "Nats-Msg-Id", &hid) == NATS_OK && hid && *hid && k < total) {
      out[k] = strdup(hid);
      if (out[k] == NULL) st = tb__fail(TB_ERR_NOMEM, "replay: ids of %s", stream);
      k++;
    }
    natsMsg_Destroy(s.head);
    s.head = NULL;
  }
  src_close(&s);
  if (st != TB_OK) {
    tb_replay_ids_free(out, k);
    return st;
  }
  *ids = out;
  *n = k;
  return TB_OK;
}

void tb_replay_ids_free(char **ids, int64_t n) {
  if (ids == NULL) return;
  for (int64_t i = 0; i < n; i++) free(ids[i]);
  free(ids);
}
