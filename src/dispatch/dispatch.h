/* The dispatcher: one fetcher thread per subscribed (tier, domain) pulls from that durable
 * consumer into the tier's ready queue, bounded by the tier's concurrency (and the worker's
 * overall cap), and one executor thread serves the highest effective tier first, batching
 * commits. Aging raises a waiting message's effective tier
 * so no tier starves; every pick is audited for inversions. */
#ifndef TB_DISPATCH_DISPATCH_H
#define TB_DISPATCH_DISPATCH_H

#include <stdint.h>

#include "bus/bus.h"
#include "config/config.h"
#include "engine/engine.h"

/* ---- the pure policy, separate from the threads so that it can be tested on its own ---- */

/* A tier as the policy sees it: its oldest ready message, and whether the stream holds more of
 * it that this process has room to fetch (known from the consumer's pending count). */
typedef struct tb_ready_head {
  int present;
  int64_t ready_mono_us;
  int backlog; /* messages wait in the stream and the tier has free slots here */
} tb_ready_head_t;

typedef struct tb_choice {
  int tier; /* tier whose head runs next, or -1 when nothing is ready */
  int eff_tier;
  int boost;
  const char *reason; /* "strict": best native tier; "aged": aging lifted it */
} tb_choice_t;

/* Effective tier of a message of tier |t| that has waited |wait_us|: one tier higher per
 * aging interval of its own tier, never above tier 0. */
int tb_dispatch_effective(const tb_config_t *cfg, int t, int64_t wait_us);

/* How many messages of tier |t| one worker holds ready at most: the tier's concurrency, or
 * cfg->prefetch when larger. */
int tb_dispatch_ready_cap(const tb_config_t *cfg, int t);

/* The same while first-tier messages flow: a lower tier |t| holds its concurrency, or
 * cfg->prefetch_yield when larger, never more than tb_dispatch_ready_cap(). The first tier keeps
 * its cap. */
int tb_dispatch_yield_cap(const tb_config_t *cfg, int t);

/* The aging bound of tier |t|: the longest a ready message of that tier waits before aging has
 * lifted it to the top tier, where it runs before any message that became ready after it. That
 * is t aging intervals of its own tier. -1 when there is none: the top tier needs no aging, and a
 * tier with aging 0 can wait as long as higher tiers stay busy. */
int64_t tb_dispatch_aging_bound_us(const tb_config_t *cfg, int t);

/* Picks the head with the best (lowest) effective tier; among equals, the one waiting longest.
 * heads[] has cfg->n_tiers entries. */
tb_choice_t tb_dispatch_choose(const tb_config_t *cfg, const tb_ready_head_t *heads,
                               int64_t now_us);

/* 1 if serving |chosen| now would pass over a tier that outranks it, has nothing ready yet, but
 * has backlog and free slots: its fetcher is about to deliver, so the executor should wait for
 * it (briefly) rather than run lower work. */
int tb_dispatch_must_wait(const tb_config_t *cfg, const tb_ready_head_t *heads,
                          const tb_choice_t *chosen);

/* The auditor, written independently of choose(): the number of tiers that outrank the chosen
 * one, with a ready head of strictly better effective tier, or with backlog that free slots would
 * let in. Each is a priority inversion. */
int tb_dispatch_audit(const tb_config_t *cfg, const tb_ready_head_t *heads, int64_t now_us,
                      const tb_choice_t *chosen);

/* ---- the running dispatcher ---- */

typedef struct tb_dispatcher tb_dispatcher_t;

/* What one worker process consumes (`worker --tiers/--preset/--domains`). */
typedef struct tb_worker_scope {
  int tiers[TB_MAX_TIERS]; /* indexes into cfg->tiers */
  int n_tiers;
  int domains[TB_MAX_DOMAINS]; /* indexes into cfg->domains */
  int n_domains;
  /* Most messages (workflow steps and events) in flight in this process across its tiers; 0 =
   * only each tier's concurrency. Held strictly for reserved fetches; an idle consumer's
   * one-message probe may add one more while its first message arrives. */
  int max_inflight;
} tb_worker_scope_t;

/* Fills |scope| with every tier and domain of |cfg| and no cap. */
void tb_worker_scope_all(const tb_config_t *cfg, tb_worker_scope_t *scope);

/* Starts a fetcher for each (tier, domain) of |scope| and the executor. All pointers are
 * borrowed and must outlive the dispatcher; |scope| is copied. */
tb_status tb_dispatcher_start(tb_dispatcher_t **out, const tb_config_t *cfg, tb_bus_t *bus,
                              tb_engine_t *engine, const tb_worker_scope_t *scope);

/* Stops fetching and starting messages, and returns at once: the open batch commits and is
 * acked, and every fetched message not yet started goes back to its stream (nak, no delay) for
 * other workers. A stopping worker calls it first, so that it takes no new work while it winds
 * down its other threads. Accepts NULL. */
void tb_dispatcher_stop_fetching(tb_dispatcher_t *d);

/* tb_dispatcher_stop_fetching(), then waits for the open batch to commit and be acked and for
 * the unstarted messages to go back, joins and frees. Accepts NULL. */
void tb_dispatcher_stop(tb_dispatcher_t *d);

/* Inversions counted by this dispatcher so far. */
int64_t tb_dispatcher_inversions(tb_dispatcher_t *d);

/* The most messages this dispatcher has held ready at once (fetched, not yet started). */
int tb_dispatcher_peak_inflight(tb_dispatcher_t *d);

#endif
