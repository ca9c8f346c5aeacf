/* The engine applies delivered messages: decode, dedupe by message id, run the catalogue's
 * handler in the batch transaction (undone alone when it fails), record the dispatch, and decide
 * each message's fate (ack, nak with the tier's backoff, or dead-letter). The dispatcher decides
 * what runs when; the engine decides what a message does. */
#ifndef TB_ENGINE_ENGINE_H
#define TB_ENGINE_ENGINE_H

#include <nats/nats.h>
#include <stdatomic.h>
#include <stdint.h>

#include "api/handler.h"
#include "bus/bus.h"
#include "codec/catalogue.h"
#include "config/config.h"
#include "core/hist.h"
#include "engine/relay.h"
#include "store/store.h"

typedef enum tb_fate {
  TB_FATE_ACK = 0,  /* applied, duplicate, or dead-lettered and recorded: done */
  TB_FATE_NAK = 1,  /* failed this time: redeliver after nak_delay_ms */
  TB_FATE_TERM = 2, /* copied to the dead-letter stream: never redeliver */
} tb_fate;

/* One delivered message on its way through a batch. The dispatcher fills the first block; the
 * engine fills the rest. */
typedef struct tb_work {
  natsMsg *msg;             /* owned by the work item until tb_engine_settle() */
  int tier;                 /* index of the tier it was delivered on */
  int domain;               /* index in cfg->domains of the consumer it came from; its counters
                             * are kept under that domain (out of range: under none) */
  int eff_tier;             /* tier it was served as after aging */
  int boost;                /* tier - eff_tier */
  const char *reason;       /* static text: why it was dispatched now */
  int64_t ready_mono_us;    /* when it reached this process */
  int64_t wait_us;          /* ready -> dispatched: the wait that aging bounds */
  int64_t over_bound_us;    /* how far wait_us passed the tier's aging bound: 0 = within it,
                             * -1 = the tier has no bound (tb_dispatch_aging_bound_us) */
  int64_t progress_mono_us; /* last in-progress ack sent (or ready time) */
  int lapsed; /* its handler ran past the tier's timeout: its lease is no longer renewed */
  /* An orphan is a message whose deliveries ran out with no outcome (its worker died holding the
   * last one): the dispatcher read it back from the stream after JetStream's max-deliveries
   * advisory. It has no ack subject; the engine dead-letters it unless it was applied. */
  int orphan;
  char orphan_stream[64];
  uint64_t orphan_seq, orphan_deliveries;
  struct tb_work *next; /* the dispatcher's orphan list */
  /* engine: */
  /* Monotonic start of its handler while the handler runs, else 0 (a batch redone after a
   * failure runs it again): written in the executor's thread, read by the dispatcher's lease
   * keeper, which times the tier's handler timeout from it (dispatch.c, renew). */
  _Atomic int64_t handler_mono_us;
  int64_t started_us;   /* handler start, wall clock */
  int64_t published_us; /* envelope occurred_at (0 if undecodable) */
  tb_fate fate;
  int64_t nak_delay_ms;
  int applied; /* 1 if this delivery changed state (not a duplicate or dead letter) */
  int forced;  /* replay --force: applied again although it was processed before */
  /* Its copy was published to the dead-letter stream, as |dlq_seq|: a batch applied again within
   * its transaction (engine.c, redo_carefully) does not publish it a second time. */
  int dlq_copied;
  uint64_t dlq_seq;
} tb_work_t;

typedef struct tb_engine tb_engine_t;

/* Per-tier figures kept in memory by one process (the bench reads them; stats use the store). */
typedef struct tb_engine_tier_stats {
  int64_t processed, failed, dead, duplicates;
  tb_hist_t start;  /* publish -> handler start, us */
  tb_hist_t commit; /* publish -> commit, us */
  tb_hist_t wait;   /* ready in this process -> dispatched, us (tb_work_t.wait_us) */
  /* Past the aging bound, us (tb_work_t.over_bound_us; 0 = within). Kept apart from |wait|
   * because a bound of seconds lies in buckets tens of ms wide, while the overshoot is small:
   * the overshoot's quantile is the wait's quantile minus the bound, at the overshoot's
   * resolution. Empty for a tier without a bound. */
  tb_hist_t over_bound;
  int64_t aged;           /* dispatches that aging lifted (boost > 0) */
  int64_t late;           /* dispatches past the aging bound */
  int64_t last_commit_us; /* wall clock of the process's latest commit (any tier) */
  int64_t commits;        /* batches committed by the process (any tier) */
} tb_engine_tier_stats_t;

/* |handlers| resolves each catalogue entry's handler name (tb_registry_handler in a worker, fake
 * handlers in the engine's tests). All arguments are borrowed and must outlive the engine.
 * Caller frees with tb_engine_destroy(). */
tb_status tb_engine_create(tb_engine_t **out, const tb_config_t *cfg, const tb_catalogue_t *cat,
                           tb_store_t *store, tb_bus_t *bus, tb_handler_lookup_fn handlers);
void tb_engine_destroy(tb_engine_t *e);

/* The outbox relay to wake after a commit whose handlers emitted follow-ups (borrowed; NULL =
 * none, the relay's own tick picks them up). */
void tb_engine_set_relay(tb_engine_t *e, tb_relay_t *relay);

/* Whether a handler may run again for a message already applied (replay --force). */
typedef int (*tb_handler_safe_fn)(const char *handler);

/* Replay mode, for `tierbus replay` and `rebuild`: the messages come from an ordered consumer
 * reading history, not from the durable consumer. A dead letter is recorded in the store only
 * (the stream already holds the message, and its first dead-lettering already copied it to the
 * DLQ), and the per-tier counters and histograms are left alone, since they describe the live
 * workers. With |force| set, a message already processed runs its handler again when |force|
 * says its handler is safe to re-apply (the processed record is kept as it is). */
void tb_engine_set_replay(tb_engine_t *e, int on, tb_handler_safe_fn force);

/* Opens the batch transaction. TB_ERR_BUSY if another process holds the write lock. */
tb_status tb_engine_begin(tb_engine_t *e);

/* Applies one message inside the open batch. Never fails the batch: every outcome is recorded in
 * |w| (fate, delay). Returns TB_OK, or the store status when the batch itself is broken (the
 * caller then rolls the whole batch back with tb_engine_abort()). */
tb_status tb_engine_apply(tb_engine_t *e, tb_work_t *w);

/* Commits the batch (with the batch's counters and histograms). On failure the batch is rolled
 * back and every message in it must be nak'ed: call tb_engine_abort(). */
tb_status tb_engine_commit(tb_engine_t *e, tb_work_t *const *items, int n);
void tb_engine_abort(tb_engine_t *e, tb_work_t *const *items, int n);

/* Acks, naks or terminates the message as its fate says, and destroys it. */
void tb_engine_settle(tb_engine_t *e, tb_work_t *w);

/* Counts one dispatch-time inversion for |tier|, under the domain (index in cfg->domains) of the
 * message served; stored with the next commit. */
void tb_engine_note_inversion(tb_engine_t *e, int tier, int domain);

/* Copies this process's per-tier figures (thread-safe). */
void tb_engine_tier_stats(tb_engine_t *e, int tier, tb_engine_tier_stats_t *out);

/* Messages of |tier| this process has handled and committed: applied, dead-lettered or
 * duplicates. For progress polling: unlike tb_engine_tier_stats() it copies no histograms. */
int64_t tb_engine_handled(tb_engine_t *e, int tier);

#endif
