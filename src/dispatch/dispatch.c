/* Fetcher threads, ready queues and the executor loop. */
#include "dispatch/dispatch.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "core/sync.h"

/* ---------------------------------------------------------------- policy */

int tb_dispatch_effective(const tb_config_t *cfg, int t, int64_t wait_us) {
  int64_t aging_us = cfg->tiers[t].aging_ms * 1000;
  if (aging_us <= 0 || wait_us <= 0) return t;
  int64_t steps = wait_us / aging_us;
  return steps >= t ? 0 : t - (int)steps;
}

int tb_dispatch_ready_cap(const tb_config_t *cfg, int t) {
  /* Prefetch, not the tier's concurrency, sizes the queue when larger: the executor runs one
   * message at a time, and a queue a few messages deep empties faster than a pull request comes
   * back, which left the executor waiting for deliveries most of the time (issue 9). */
  return cfg->tiers[t].concurrency > cfg->prefetch ? cfg->tiers[t].concurrency : cfg->prefetch;
}

int tb_dispatch_yield_cap(const tb_config_t *cfg, int t) {
  int cap = tb_dispatch_ready_cap(cfg, t);
  if (t == 0) return cap;
  int y = cfg->tiers[t].concurrency > cfg->prefetch_yield ? cfg->tiers[t].concurrency
                                                          : cfg->prefetch_yield;
  return y < cap ? y : cap;
}

int64_t tb_dispatch_aging_bound_us(const tb_config_t *cfg, int t) {
  if (t <= 0 || cfg->tiers[t].aging_ms <= 0) return -1;
  return (int64_t)t * cfg->tiers[t].aging_ms * 1000;
}

tb_choice_t tb_dispatch_choose(const tb_config_t *cfg, const tb_ready_head_t *heads,
                               int64_t now_us) {
  tb_choice_t c = {.tier = -1, .eff_tier = 0, .boost = 0, .reason = "idle"};
  int64_t best_ready = 0;
  for (int t = 0; t < cfg->n_tiers; t++) {
    if (!heads[t].present) continue;
    int eff = tb_dispatch_effective(cfg, t, now_us - heads[t].ready_mono_us);
    if (c.tier < 0 || eff < c.eff_tier ||
        (eff == c.eff_tier && heads[t].ready_mono_us < best_ready)) {
      c.tier = t;
      c.eff_tier = eff;
      best_ready = heads[t].ready_mono_us;
    }
  }
  if (c.tier >= 0) {
    c.boost = c.tier - c.eff_tier;
    c.reason = c.boost > 0 ? "aged" : "strict";
  }
  return c;
}

int tb_dispatch_must_wait(const tb_config_t *cfg, const tb_ready_head_t *heads,
                          const tb_choice_t *chosen) {
  for (int t = 0; t < chosen->eff_tier && t < cfg->n_tiers; t++)
    if (!heads[t].present && heads[t].backlog) return 1;
  return 0;
}

int tb_dispatch_audit(const tb_config_t *cfg, const tb_ready_head_t *heads, int64_t now_us,
                      const tb_choice_t *chosen) {
  int inversions = 0;
  for (int t = 0; t < cfg->n_tiers; t++) {
    if (t == chosen->tier) continue;
    if (heads[t].present) {
      if (tb_dispatch_effective(cfg, t, now_us - heads[t].ready_mono_us) < chosen->eff_tier)
        inversions++;
    } else if (heads[t].backlog && t < chosen->eff_tier) {
      inversions++;
    }
  }
  return inversions;
}

/* ---------------------------------------------------------------- state */

typedef struct ready_queue {
  tb_work_t **items; /* ring of `ring` entries: the tier's concurrency plus one per probe */
  int cap;           /* tb_dispatch_ready_cap() */
  int yield_cap;     /* tb_dispatch_yield_cap(): the cap while the first tier flows */
  int ring, head, count;
  /* The tier's slots in use are its ready messages (|count|): a slot is freed when the executor
   * takes its message, not when the batch commits. A commit batch is sized for the disk
   * (commit_batch_max, commit_batch_time); holding slots until the commit capped every batch at
   * the tiers' concurrency (5 for background), which made commits the largest cost per event
   * (issue 9). Unacked messages per process are therefore the ready ones plus the open batch. */
  int reserved;            /* slots promised to fetches under way */
  pthread_cond_t slots_cv; /* this tier's fetchers: enough slots were freed to fetch */
  int active;              /* this process consumes the tier */
  uint64_t pending; /* sum of its consumers' pending counts at their last fetch: 0 = none known */
} ready_queue_t;

typedef struct fetcher {
  tb_dispatcher_t *d;
  int tier, domain;
  uint64_t pending; /* this consumer's pending count at its last fetch (part of the queue's) */
  tb_consumer_t *consumer;
  natsSubscription *advisories; /* the tier's max-deliveries advisories (queue group) */
  natsMsg **buf;                /* fetch landing area, the tier's concurrency long */
  /* Slots still reserved for messages the last pull request owes: a fetch returns with what has
   * arrived, and the rest would otherwise wait in the subscription, unrenewed, while the queue
   * is full, and be redelivered once the AckWait (the short redelivery bound) ran out. */
  int kept;
  pthread_t thread;
} fetcher_t;

struct tb_dispatcher {
  const tb_config_t *cfg;
  tb_bus_t *bus;
  tb_engine_t *engine;
  pthread_mutex_t mu;
  pthread_cond_t work_cv; /* executor: something became ready */
  ready_queue_t queues[TB_MAX_TIERS];
  int ready_total;
  int stopping, fetchers_done;
  int fetchers_running, executor_running; /* threads started, to be joined */
  fetcher_t fetchers[TB_MAX_TIERS * TB_MAX_DOMAINS];
  int n_fetchers;
  int max_inflight;   /* the worker's cap across tiers, 0 = none */
  int reserved_total; /* sum of the queues' reserved */
  int peak_ready;
  pthread_t executor;
  int64_t first_tier_us; /* when a fetch last brought first-tier messages; 0 = never */
  int64_t inversions;
  tb_work_t *orphans; /* messages read back after a max-deliveries advisory; run first */
  /* The open batch, as far as the executor took it, for the lease keeper (keep_loop). */
  tb_work_t **running;
  int n_running;
  pthread_t keeper;
  pthread_cond_t keep_cv;
  int keeper_running, keeper_stop;
};

static void q_push(ready_queue_t *q, tb_work_t *w) {
  q->items[(q->head + q->count) % q->ring] = w;
  q->count++;
}

static tb_work_t *q_pop(ready_queue_t *q) {
  tb_work_t *w = q->items[q->head];
  q->head = (q->head + 1) % q->ring;
  q->count--;
  return w;
}

/* Records fetcher |f|'s consumer pending count in its tier's sum. Called with mu held. */
static void set_pending(ready_queue_t *q, fetcher_t *f, uint64_t pending) {
  q->pending = q->pending - f->pending + pending;
  f->pending = pending;
}

/* How long lower tiers keep to their yield caps after the first tier's last delivery. A trickle
 * of critical messages (200/s in the bench) arrives every few milliseconds, so a second spans
 * many of them; after it, a lower tier's backlog drains at full speed again. */
#define YIELD_WINDOW_US 1000000LL

/* 1 while first-tier messages flow. Called with mu held. */
static int first_tier_flows(const tb_dispatcher_t *d) {
  return d->first_tier_us != 0 && tb_mono_us() - d->first_tier_us < YIELD_WINDOW_US;
}

/* The tier's cap now. While the first tier flows a lower tier holds fewer messages ready: a deep
 * lower-tier queue keeps both cores of a small machine busy draining it (nats-server delivering,
 * the executor applying), and a critical message then waits for a core at each handoff on its way
 * in; a separate connection for the first tier did not help, as the wait is for CPU, not the
 * socket (issue 9). Called with mu held. */
static int cur_cap(const tb_dispatcher_t *d, const ready_queue_t *q) {
  return q->yield_cap < q->cap && first_tier_flows(d) ? q->yield_cap : q->cap;
}

/* Slots a fetch may take now: the tier's free slots, bounded by the worker's cap. Called with mu
 * held. */
static int free_slots(const tb_dispatcher_t *d, const ready_queue_t *q) {
  int room = cur_cap(d, q) - q->count - q->reserved;
  if (d->max_inflight > 0) {
    int g = d->max_inflight - d->ready_total - d->reserved_total;
    if (g < room) room = g;
  }
  return room;
}

/* The free slots a fetcher of |q| waits for before it asks again. A consumer known to hold
 * messages asks for half the tier's slots at least (or its whole backlog, when smaller), so
 * that a tier whose slots free one by one as the executor takes them sends one pull request per
 * half a queue, not one per message; an idle consumer's probe asks for one. */
static int fetch_threshold(const tb_dispatcher_t *d, const ready_queue_t *q, const fetcher_t *f) {
  if (f->pending == 0) return 1;
  int want = (cur_cap(d, q) + 1) / 2;
  /* Never more than the worker's cap could ever free, or the fetcher would wait for good. */
  if (d->max_inflight > 0 && d->max_inflight < want) want = d->max_inflight;
  return f->pending < (uint64_t)want ? (int)f->pending : want;
}

/* Wakes the fetchers that slots freed on tier |t| may let fetch: the tier's own, or every
 * tier's when the worker's overall cap also binds. Called with mu held. */
static void wake_fetchers(tb_dispatcher_t *d, int t) {
  if (d->max_inflight > 0) {
    for (int i = 0; i < d->cfg->n_tiers; i++) pthread_cond_broadcast(&d->queues[i].slots_cv);
    return;
  }
  pthread_cond_broadcast(&d->queues[t].slots_cv);
}

/* ---------------------------------------------------------------- fetchers */

/* How long one fetch waits for a message: also how quickly a fetcher notices that it should stop,
 * and (see HOLD_MAX_US) how long the executor may hold lower work for this tier. */
#define FETCH_WAIT_MS 250

static void *fetch_loop(void *arg) {
  fetcher_t *f = arg;
  tb_dispatcher_t *d = f->d;
  /* On a small machine a critical message's delivery competes with lower tiers' fetchers for a
   * core; the scheduler should pick the more urgent thread. Lowering a thread's priority needs no
   * privilege; tier 0 and the executor keep the process's own. */
  if (f->tier > 0 &&
      setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), f->tier < 4 ? f->tier : 4) != 0) {
    /* best effort */
  }
  ready_queue_t *q = &d->queues[f->tier];
  const char *tier = d->cfg->tiers[f->tier].name;
  int warned = 0;
  for (;;) {
    /* A consumer known to hold messages reserves the slots it asks for, so that the tier's
     * other domains cannot overfill the queue meanwhile. An idle one asks for a single message
     * without reserving: reserving would hold slots for the whole long poll and starve the
     * tier's busy domains. */
    pthread_mutex_lock(&d->mu);
    int want = 0, stopping = 0, reserve = 0;
    if (f->kept > 0 && !d->stopping) {
      /* The rest of the last pull request, its slots still reserved: take it now, so that no
       * message waits in the subscription where the lease keeper cannot renew it. */
      want = reserve = f->kept;
      f->kept = 0;
    } else {
      while (!d->stopping && (want = free_slots(d, q)) < fetch_threshold(d, q, f)) {
        /* While the tier yields, no slot freeing may come to end the wait: look again when
         * the first tier may have stopped flowing. */
        if (cur_cap(d, q) < q->cap)
          tb_cond_wait_ms(&q->slots_cv, &d->mu, YIELD_WINDOW_US / 1000 / 4);
        else
          pthread_cond_wait(&q->slots_cv, &d->mu);
      }
      stopping = d->stopping;
      if (f->pending > 0) {
        if ((uint64_t)want > f->pending) want = (int)f->pending;
        reserve = want;
        q->reserved += reserve;
        d->reserved_total += reserve;
      } else {
        want = 1;
      }
    }
    pthread_mutex_unlock(&d->mu);
    if (stopping) break;

    int got = 0;
    tb_status st = tb_consumer_fetch(f->consumer, f->buf, want, &got, FETCH_WAIT_MS);
    int64_t now = tb_mono_us();
    uint64_t pending = 0;
    jsMsgMetaData *meta = NULL;
    if (st == TB_OK && got > 0 && natsMsg_GetMetaData(&meta, f->buf[got - 1]) == NATS_OK) {
      pending = meta->NumPending;
      jsMsgMetaData_Destroy(meta);
    }
    /* What the request still owes keeps its slots (see f->kept); the rest go back. */
    int owed = tb_consumer_outstanding(f->consumer);
    int kept = reserve - got < owed ? reserve - got : owed;
    if (kept < 0) kept = 0;
    pthread_mutex_lock(&d->mu);
    q->reserved -= reserve - kept;
    d->reserved_total -= reserve - kept;
    f->kept = kept;
    /* A failed or empty fetch clears the count: an executor holding for this tier stops
     * waiting. */
    set_pending(q, f, pending);
    if (f->tier == 0 && got > 0) d->first_tier_us = now;
    for (int i = 0; i < got; i++) {
      tb_work_t *w = calloc(1, sizeof(*w));
      if (w == NULL) { /* dropped unacked: redelivered after AckWait */
        natsMsg_Destroy(f->buf[i]);
        continue;
      }
      w->msg = f->buf[i];
      w->tier = f->tier;
      w->domain = f->domain;
      w->ready_mono_us = w->progress_mono_us = now;
      q_push(q, w);
      d->ready_total++;
    }
    if (d->ready_total > d->peak_ready) d->peak_ready = d->ready_total;
    if (reserve - kept > got) wake_fetchers(d, f->tier); /* unused slots go back */
    pthread_cond_signal(&d->work_cv);
    pthread_mutex_unlock(&d->mu);
    if (st == TB_ERR_TIMEOUT || st == TB_OK) {
      if (st == TB_OK && warned) TB_LOG(TB_LOG_INFO, "dispatch", "%s: fetching again", tier);
      if (st == TB_OK) warned = 0;
      continue;
    }
    if (!warned++)
      TB_LOG(TB_LOG_WARN, "dispatch", "%s/%s: fetch failed, retrying: %s", tier,
             d->cfg->domains[f->domain], tb_errdetail());
    tb_sleep_us(200000);
  }
  tb_consumer_release(f->consumer); /* what it was sent and never handed over goes back */
  return NULL;
}

/* ---------------------------------------------------------------- executor */

/* The lease keeper. A consumer's AckWait is the heartbeat window (redelivery_bound, tens of
 * seconds), not the handler timeout, so that a worker that dies releases what it held within the
 * bound. A live worker therefore renews every message it holds, ready or in the open batch, with
 * an in-progress ack every third of the window: two renewals may be lost before the server gives
 * the message to another worker. A message whose handler runs past the tier's timeout is no longer
 * renewed: the lease lapses, JetStream redelivers it, and whichever copy commits second is a
 * duplicate by its processed record. That is how the handler timeout is enforced on its own: a
 * handler is C code in the executor's thread and cannot be interrupted safely. */

/* Renews |w| when its last renewal is a third of its tier's window old, unless its handler is
 * running and has run past the tier's timeout. The handler's own run is timed (the engine stamps
 * it), not the message's time in the batch: the messages before a stuck handler in its batch
 * returned in time and wait for the commit with it, and a copy of them delivered elsewhere could
 * only be a duplicate, logged as a handler that never overran. Called with mu held. */
static void renew(tb_dispatcher_t *d, tb_work_t *w, int64_t now) {
  const tb_config_t *cfg = d->cfg;
  if (w->lapsed || w->orphan) return; /* an orphan has no ack subject */
  /* Relaxed: nothing else is read through the stamp, and the executor takes mu between
   * handlers, so the keeper never sees a stamp of a handler that returned long ago. */
  int64_t since = atomic_load_explicit(&w->handler_mono_us, memory_order_relaxed);
  if (since != 0 && now - since > cfg->tiers[w->tier].timeout_ms * 1000) {
    w->lapsed = 1;
    /* The subject and stream sequence name the message without reading its headers, which
     * cnats parses lazily, in place, while the executor may be reading them. */
    jsMsgMetaData *meta = NULL;
    uint64_t seq = natsMsg_GetMetaData(&meta, w->msg) == NATS_OK ? meta->Sequence.Stream : 0;
    jsMsgMetaData_Destroy(meta);
    TB_LOG(TB_LOG_WARN, "dispatch",
           "%s: a handler ran past the tier's timeout (%lld ms) on %s, stream seq %llu; its "
           "message is no longer renewed and will be redelivered",
           cfg->tiers[w->tier].name, (long long)cfg->tiers[w->tier].timeout_ms,
           natsMsg_GetSubject(w->msg), (unsigned long long)seq);
    return;
  }
  if (now - w->progress_mono_us > tb_config_ack_wait_ms(cfg, w->tier) * 1000 / 3) {
    tb_bus_in_progress(d->bus, w->msg); /* a lost one costs a redelivery, never an effect */
    w->progress_mono_us = now;
  }
}

static void *keep_loop(void *arg) {
  tb_dispatcher_t *d = arg;
  const tb_config_t *cfg = d->cfg;
  /* A tick of a sixth of the shortest window: a renewal is sent at most a sixth late. */
  int64_t tick_us = INT64_MAX;
  for (int t = 0; t < cfg->n_tiers; t++)
    if (tb_config_ack_wait_ms(cfg, t) * 1000 / 6 < tick_us)
      tick_us = tb_config_ack_wait_ms(cfg, t) * 1000 / 6;
  if (tick_us > 1000000) tick_us = 1000000;
  pthread_mutex_lock(&d->mu);
  while (!d->keeper_stop) {
    int64_t now = tb_mono_us();
    for (int t = 0; t < cfg->n_tiers; t++) {
      ready_queue_t *q = &d->queues[t];
      for (int i = 0; i < q->count; i++) renew(d, q->items[(q->head + i) % q->ring], now);
    }
    for (int i = 0; i < d->n_running; i++) renew(d, d->running[i], now);
    tb_cond_wait_ms(&d->keep_cv, &d->mu, (int)(tick_us / 1000));
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

/* The tiers as the policy sees them: the one place that turns queue state into heads. Called
 * with mu held. */
static void read_heads(const tb_dispatcher_t *d, tb_ready_head_t *heads) {
  for (int t = 0; t < d->cfg->n_tiers; t++) {
    const ready_queue_t *q = &d->queues[t];
    /* The stream holds more of this tier, and a fetcher may still bring it: once the
     * dispatcher is stopping, no fetcher asks for it again (a fetch under way is served by its
     * tier when it lands), and holding for it would only delay the stop's drain and count
     * inversions. */
    int waiting = q->active && q->pending > 0 && !d->stopping;
    heads[t].present = q->count > 0;
    heads[t].ready_mono_us = q->count > 0 ? q->items[q->head]->ready_mono_us : 0;
    heads[t].backlog = waiting && q->count < q->cap;
  }
}

/* Takes the next message by policy, or NULL. With |force| 0 it returns NULL and sets *hold when a
 * tier that outranks the choice has backlog its fetcher is about to deliver; with |force| 1 it
 * serves the choice anyway and the auditor counts the inversion. Called with mu held. */
static tb_work_t *take_next(tb_dispatcher_t *d, int64_t now, int force, int *hold) {
  tb_ready_head_t heads[TB_MAX_TIERS];
  *hold = 0;
  if (d->stopping) return NULL; /* what has not started goes back: release_ready() */
  read_heads(d, heads);
  tb_choice_t c = tb_dispatch_choose(d->cfg, heads, now);
  if (c.tier < 0) return NULL;
  if (!force && tb_dispatch_must_wait(d->cfg, heads, &c)) {
    *hold = 1;
    return NULL;
  }
  int inv = tb_dispatch_audit(d->cfg, heads, now, &c);
  ready_queue_t *q = &d->queues[c.tier];
  tb_work_t *w = q_pop(q);
  d->ready_total--;
  if (inv > 0) { /* counted under the domain of the message served */
    d->inversions += inv;
    tb_engine_note_inversion(d->engine, c.tier, w->domain);
    TB_LOG(TB_LOG_WARN, "dispatch", "priority inversion: served %s (effective %s) over %d better",
           d->cfg->tiers[c.tier].name, d->cfg->tiers[c.eff_tier].name, inv);
  }
  /* Only at the free counts a fetcher waits for (fetch_threshold: 1, or half the tier), and
   * when the tier is empty: a wake per message would wake every domain's fetcher for nothing.
   * Under the worker's overall cap any tier's fetcher may be waiting for this slot. */
  int free = free_slots(d, q), cap = cur_cap(d, q);
  if (d->max_inflight > 0 || free == 1 || free == (cap + 1) / 2 || free == cap)
    wake_fetchers(d, c.tier);
  w->eff_tier = c.eff_tier;
  w->boost = c.boost;
  w->reason = c.reason;
  w->wait_us = now - w->ready_mono_us;
  int64_t bound = tb_dispatch_aging_bound_us(d->cfg, c.tier);
  w->over_bound_us = bound < 0 ? -1 : w->wait_us > bound ? w->wait_us - bound : 0;
  return w;
}

/* Waits for a higher tier's delivery at most this long before serving lower work anyway. Known
 * backlog arrives within a round trip; when it does not come (another worker took it), the
 * fetcher's own wait runs out and clears the tier's pending count, which ends the hold. So the
 * bound is the fetcher's wait plus slack: an earlier 50 ms bound ran out under scheduler delays on
 * a saturated 2-core machine and served lower work during a real higher-tier backlog. Running
 * out is counted as an inversion. */
#define HOLD_MAX_US ((FETCH_WAIT_MS + 50) * 1000LL)

/* 1 if some consumed tier has backlog in the stream and free slots: its fetcher is delivering.
 * Called with mu held. */
static int backlog_arriving(tb_dispatcher_t *d) {
  tb_ready_head_t heads[TB_MAX_TIERS];
  read_heads(d, heads);
  for (int t = 0; t < d->cfg->n_tiers; t++)
    if (heads[t].backlog) return 1;
  return 0;
}

/* The next message to run, honouring holds, or NULL to close the batch. While the batch is
 * younger than commit_batch_time and backlog is still arriving, an empty ready queue does not
 * close it: committing a handful of messages at a time would spend the disk on commits. Handler
 * start is not delayed by this, only the commit. Takes and releases mu. */
static tb_work_t *next_work(tb_dispatcher_t *d, int64_t opened_us) {
  pthread_mutex_lock(&d->mu);
  int64_t hold_start = 0;
  tb_work_t *w = NULL;
  if (d->orphans != NULL) { /* rare, and each only a lookup */
    w = d->orphans;
    d->orphans = w->next;
    d->running[d->n_running++] = w;
    pthread_mutex_unlock(&d->mu);
    return w;
  }
  for (;;) {
    int hold = 0;
    int64_t now = tb_mono_us();
    int force = hold_start != 0 && now - hold_start >= HOLD_MAX_US;
    w = take_next(d, now, force, &hold);
    if (w != NULL) break;
    if (hold) {
      if (hold_start == 0) hold_start = now;
    } else if (d->stopping || now - opened_us >= d->cfg->commit_batch_us || !backlog_arriving(d)) {
      break;
    }
    tb_cond_wait_ms(&d->work_cv, &d->mu, 1);
  }
  if (w != NULL) d->running[d->n_running++] = w; /* the lease keeper renews it until settled */
  pthread_mutex_unlock(&d->mu);
  return w;
}

/* 1 when at least as many messages are ready as the open batch has applied (|n|): they could
 * not all run within another commit_batch_time, so their own commits are not delayed by this
 * batch running on, while each commit saved is executor time for them. Without that backlog (a
 * steady load the worker keeps up with) a longer batch only delays the follow-ups of what it
 * holds: workflow runs at 300/s took p95 13 ms instead of 8 when every batch ran to 10 ms. */
static int backlog_waits(tb_dispatcher_t *d, int n) {
  pthread_mutex_lock(&d->mu);
  int waits = d->ready_total >= n;
  pthread_mutex_unlock(&d->mu);
  return waits;
}

static void run_batch(tb_dispatcher_t *d, tb_work_t **batch) {
  const tb_config_t *cfg = d->cfg;
  tb_status st = tb_engine_begin(d->engine);
  if (st != TB_OK) {
    /* Another process holds the write lock (or the disk failed): the messages stay ready. */
    TB_LOG(st == TB_ERR_BUSY ? TB_LOG_DEBUG : TB_LOG_ERROR, "dispatch", "begin batch: %s",
           tb_errdetail());
    tb_sleep_us(2000);
    return;
  }
  int n = 0;
  int64_t opened = tb_mono_us();
  /* Past commit_batch_time the batch runs on, to commit_batch_busy_time, only through a
   * backlog, and never once it holds first-tier work, whose effects and acks must not wait. */
  int64_t span = cfg->commit_batch_busy_us > cfg->commit_batch_us ? cfg->commit_batch_busy_us
                                                                  : cfg->commit_batch_us;
  pthread_mutex_lock(&d->mu);
  d->running = batch; /* next_work() appends to it under mu */
  d->n_running = 0;
  pthread_mutex_unlock(&d->mu);
  while (n < cfg->commit_batch_max) {
    tb_work_t *w = next_work(d, opened);
    if (w == NULL) break;
    n++;
    if (w->tier == 0) span = cfg->commit_batch_us;
    st = tb_engine_apply(d->engine, w);
    if (st != TB_OK) break;
    int64_t age = tb_mono_us() - opened;
    if (age >= span || (age >= cfg->commit_batch_us && !backlog_waits(d, n))) break;
  }
  if (st == TB_OK) st = tb_engine_commit(d->engine, batch, n);
  if (st != TB_OK) {
    TB_LOG(TB_LOG_ERROR, "dispatch", "batch of %d rolled back, messages will be redelivered: %s", n,
           tb_errdetail());
    tb_engine_abort(d->engine, batch, n);
  }
  /* Settling acks (or naks) and destroys each message: the keeper must not touch them after. */
  pthread_mutex_lock(&d->mu);
  d->n_running = 0;
  pthread_mutex_unlock(&d->mu);
  for (int i = 0; i < n; i++) {
    tb_engine_settle(d->engine, batch[i]);
    free(batch[i]);
  }
}

/* Hands every fetched message that has not started back to its stream (a nak without delay), so
 * that the tiers' other workers, or this one's successor, take it in priority order. A stopping
 * worker finishes what it started and no more: with queues prefetch deep, running all it held
 * would spend the stop on up to prefetch messages of every lower tier. Returns how many. */
static int release_ready(tb_dispatcher_t *d) {
  int n = 0;
  for (int t = 0; t < d->cfg->n_tiers; t++) {
    ready_queue_t *q = &d->queues[t];
    for (;;) {
      pthread_mutex_lock(&d->mu);
      tb_work_t *w = q->count > 0 ? q_pop(q) : NULL;
      if (w != NULL) {
        d->ready_total--;
      }
      pthread_mutex_unlock(&d->mu);
      if (w == NULL) break;
      tb_bus_nak(d->bus, w->msg, 0); /* lost: redelivered after AckWait instead */
      natsMsg_Destroy(w->msg);
      free(w);
      n++;
    }
  }
  return n;
}

static void *exec_loop(void *arg) {
  tb_dispatcher_t *d = arg;
  tb_work_t **batch = calloc((size_t)d->cfg->commit_batch_max, sizeof(*batch));
  if (batch == NULL) {
    TB_LOG(TB_LOG_ERROR, "dispatch", "out of memory for the batch");
    return NULL;
  }
  int released = 0;
  for (;;) {
    pthread_mutex_lock(&d->mu);
    while (d->ready_total == 0 && d->orphans == NULL && !(d->stopping && d->fetchers_done)) {
      tb_cond_wait_ms(&d->work_cv, &d->mu, 100);
    }
    int stopping = d->stopping, orphans = d->orphans != NULL;
    int done = d->ready_total == 0 && d->orphans == NULL && d->stopping && d->fetchers_done;
    pthread_mutex_unlock(&d->mu);
    if (stopping) released += release_ready(d); /* also what a fetch under way brings in */
    if (done) break;
    if (stopping && !orphans) continue; /* wait for the fetchers; only orphans still run */
    run_batch(d, batch);
  }
  if (released > 0)
    TB_LOG(TB_LOG_INFO, "dispatch",
           "stopping: %d fetched messages not started went back to the stream", released);
  free(batch);
  return NULL;
}

/* ---------------------------------------------------------------- orphans */

/* JetStream announces a message whose deliveries ran out without an ack or term: its worker died
 * holding the last delivery (a worker that sees the last delivery fail dead-letters it itself).
 * The message is read back by sequence and queued for the executor, which dead-letters it unless
 * it was applied. One worker of the queue group gets each advisory. */
static void on_max_deliveries(natsConnection *nc, natsSubscription *sub, natsMsg *adv, void *arg) {
  fetcher_t *f = arg;
  tb_dispatcher_t *d = f->d;
  json_error_t jerr;
  json_t *j = json_loadb(natsMsg_GetData(adv), (size_t)natsMsg_GetDataLength(adv), 0, &jerr);
  natsMsg_Destroy(adv);
  json_int_t seq = json_integer_value(json_object_get(j, "stream_seq"));
  json_int_t deliveries = json_integer_value(json_object_get(j, "deliveries"));
  const char *stream = json_string_value(json_object_get(j, "stream"));
  natsMsg *m = NULL;
  tb_work_t *w = NULL;
  if (stream != NULL && seq > 0 &&
      js_GetMsg(&m, tb_bus_js(d->bus), stream, (uint64_t)seq, NULL, NULL) == NATS_OK &&
      (w = calloc(1, sizeof(*w))) != NULL) {
    w->msg = m;
    w->tier = w->eff_tier = f->tier;
    w->domain = f->domain;
    w->reason = "orphan";
    w->orphan = 1;
    snprintf(w->orphan_stream, sizeof(w->orphan_stream), "%s", stream);
    w->orphan_seq = (uint64_t)seq;
    w->orphan_deliveries = (uint64_t)deliveries;
    w->ready_mono_us = w->progress_mono_us = tb_mono_us();
    pthread_mutex_lock(&d->mu);
    w->next = d->orphans;
    d->orphans = w;
    pthread_cond_signal(&d->work_cv);
    pthread_mutex_unlock(&d->mu);
  } else {
    natsMsg_Destroy(m);
    TB_LOG(TB_LOG_ERROR, "dispatch", "max-deliveries advisory for %s seq %lld: message unreadable",
           stream ? stream : "?", (long long)seq);
  }
  json_decref(j);
}

/* ---------------------------------------------------------------- lifecycle */

void tb_worker_scope_all(const tb_config_t *cfg, tb_worker_scope_t *scope) {
  memset(scope, 0, sizeof(*scope));
  for (int t = 0; t < cfg->n_tiers; t++) scope->tiers[scope->n_tiers++] = t;
  for (int i = 0; i < cfg->n_domains; i++) scope->domains[scope->n_domains++] = i;
}

/* Binds fetcher |f| to its consumer and its max-deliveries advisories, and reads the consumer's
 * backlog: a worker that starts on a backlog must know of it before its first fetch returns, or
 * it serves a lower tier whose fetch happened to answer first. */
static tb_status open_fetcher(tb_dispatcher_t *d, fetcher_t *f) {
  const tb_config_t *cfg = d->cfg;
  const char *tier = cfg->tiers[f->tier].name, *domain = cfg->domains[f->domain];
  f->buf = calloc((size_t)d->queues[f->tier].cap, sizeof(natsMsg *));
  if (f->buf == NULL) return tb__fail(TB_ERR_NOMEM, "fetch buffer");
  tb_status st = tb_consumer_open(&f->consumer, d->bus, cfg, tier, domain);
  if (st == TB_OK) {
    char stream[64], durable[64], subject[200];
    tb_bus_stream_name(cfg, tier, domain, stream, sizeof(stream));
    tb_bus_consumer_name(tier, domain, durable, sizeof(durable));
    snprintf(subject, sizeof(subject), "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", stream,
             durable);
    natsStatus ns = natsConnection_QueueSubscribe(&f->advisories, tb_bus_conn(d->bus), subject,
                                                  "tb-advisories", on_max_deliveries, f);
    if (ns != NATS_OK) {
      st = tb__nats_fail(ns, 0, "subscribe to max-deliveries advisories");
      tb_consumer_close(f->consumer);
    }
  }
  if (st != TB_OK) {
    free(f->buf);
    return st;
  }
  uint64_t pending = 0, ack_pending = 0, redelivered = 0; /* best effort: unknown stays 0 */
  if (tb_consumer_pending(d->bus, cfg, tier, domain, &pending, &ack_pending, &redelivered) == TB_OK)
    set_pending(&d->queues[f->tier], f, pending);
  return TB_OK;
}

tb_status tb_dispatcher_start(tb_dispatcher_t **out, const tb_config_t *cfg, tb_bus_t *bus,
                              tb_engine_t *engine, const tb_worker_scope_t *scope) {
  tb_dispatcher_t *d = calloc(1, sizeof(*d));
  if (d == NULL) return tb__fail(TB_ERR_NOMEM, "dispatcher");
  d->cfg = cfg;
  d->bus = bus;
  d->engine = engine;
  d->max_inflight = scope->max_inflight;
  pthread_mutex_init(&d->mu, NULL);
  tb_cond_init(&d->work_cv);
  tb_cond_init(&d->keep_cv);
  for (int t = 0; t < cfg->n_tiers; t++) tb_cond_init(&d->queues[t].slots_cv);
  tb_status st = TB_OK;
  for (int t = 0; t < cfg->n_tiers && st == TB_OK; t++) {
    ready_queue_t *q = &d->queues[t];
    q->cap = tb_dispatch_ready_cap(cfg, t);
    q->yield_cap = tb_dispatch_yield_cap(cfg, t);
    q->ring = q->cap + scope->n_domains; /* each idle consumer's probe may land one more */
    q->items = calloc((size_t)q->ring, sizeof(tb_work_t *));
    if (q->items == NULL) st = tb__fail(TB_ERR_NOMEM, "ready queue");
  }
  for (int i = 0; i < scope->n_tiers && st == TB_OK; i++) {
    d->queues[scope->tiers[i]].active = 1;
    for (int k = 0; k < scope->n_domains && st == TB_OK; k++) {
      fetcher_t *f = &d->fetchers[d->n_fetchers];
      f->d = d;
      f->tier = scope->tiers[i];
      f->domain = scope->domains[k];
      st = open_fetcher(d, f);
      if (st == TB_OK) d->n_fetchers++;
    }
  }
  if (st != TB_OK) {
    tb_dispatcher_stop(d); /* no thread started yet */
    return st;
  }
  int rc = pthread_create(&d->keeper, NULL, keep_loop, d);
  d->keeper_running = rc == 0;
  if (rc == 0) rc = pthread_create(&d->executor, NULL, exec_loop, d);
  d->executor_running = d->keeper_running && rc == 0;
  for (int i = 0; i < d->n_fetchers && rc == 0; i++) {
    rc = pthread_create(&d->fetchers[i].thread, NULL, fetch_loop, &d->fetchers[i]);
    d->fetchers_running += rc == 0;
  }
  if (rc != 0) {
    st = tb__fail(TB_ERR_IO, "dispatcher: start a thread: %s", strerror(rc));
    tb_dispatcher_stop(d); /* what the started fetchers brought in goes back */
    return st;
  }
  *out = d;
  return TB_OK;
}

void tb_dispatcher_stop_fetching(tb_dispatcher_t *d) {
  if (d == NULL) return;
  pthread_mutex_lock(&d->mu);
  int first = !d->stopping;
  pthread_mutex_unlock(&d->mu);
  if (!first) return;
  /* Advisories first, so that every orphan they queued is run by the executor's final drain. */
  for (int i = 0; i < d->n_fetchers; i++) natsSubscription_Unsubscribe(d->fetchers[i].advisories);
  pthread_mutex_lock(&d->mu);
  d->stopping = 1;
  for (int t = 0; t < d->cfg->n_tiers; t++) pthread_cond_broadcast(&d->queues[t].slots_cv);
  pthread_mutex_unlock(&d->mu);
}

void tb_dispatcher_stop(tb_dispatcher_t *d) {
  if (d == NULL) return;
  tb_dispatcher_stop_fetching(d);
  for (int i = 0; i < d->fetchers_running; i++) pthread_join(d->fetchers[i].thread, NULL);
  pthread_mutex_lock(&d->mu);
  d->fetchers_done = 1;
  pthread_cond_signal(&d->work_cv);
  pthread_mutex_unlock(&d->mu);
  if (d->executor_running) pthread_join(d->executor, NULL);
  /* Last: until the executor's final batch is settled, what it holds is renewed. */
  pthread_mutex_lock(&d->mu);
  d->keeper_stop = 1;
  pthread_cond_signal(&d->keep_cv);
  pthread_mutex_unlock(&d->mu);
  if (d->keeper_running) pthread_join(d->keeper, NULL);
  for (int i = 0; i < d->n_fetchers; i++) {
    natsSubscription_Destroy(d->fetchers[i].advisories);
    tb_consumer_close(d->fetchers[i].consumer);
    free(d->fetchers[i].buf);
  }
  while (d->orphans != NULL) { /* only when start-up failed half way: nothing ran */
    tb_work_t *w = d->orphans;
    d->orphans = w->next;
    natsMsg_Destroy(w->msg);
    free(w);
  }
  for (int t = 0; t < TB_MAX_TIERS; t++) free(d->queues[t].items);
  for (int t = 0; t < d->cfg->n_tiers; t++) pthread_cond_destroy(&d->queues[t].slots_cv);
  pthread_mutex_destroy(&d->mu);
  pthread_cond_destroy(&d->work_cv);
  pthread_cond_destroy(&d->keep_cv);
  free(d);
}

int tb_dispatcher_peak_inflight(tb_dispatcher_t *d) {
  pthread_mutex_lock(&d->mu);
  int v = d->peak_ready;
  pthread_mutex_unlock(&d->mu);
  return v;
}

int64_t tb_dispatcher_inversions(tb_dispatcher_t *d) {
  pthread_mutex_lock(&d->mu);
  int64_t v = d->inversions;
  pthread_mutex_unlock(&d->mu);
  return v;
}
