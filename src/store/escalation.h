/* Escalation state (seed 000, migration v8): a run's escalation context, the record of every
 * escalation with the rule that caused it, and the queries of the stuck-run sweeper. Only data
 * access lives here; src/workflows/escalation.c decides. Every call runs inside the caller's
 * transaction (or alone, in autocommit, for the read-only ones). */
#ifndef TB_STORE_ESCALATION_H
#define TB_STORE_ESCALATION_H

#include <stdint.h>

#include "store/repo.h"
#include "store/store.h"

/* What the rules look at besides time. */
typedef struct tb_wf_context {
  char category[32];
  int customer_facing;
  char business_impact[16]; /* "" = unspecified */
  int retries;              /* `workflows retry` calls so far */
  /* How the run's starting tier was decided (seed 000; migration "run tier decision"): the
   * explicit tier a caller asked for ("" = none), the tier the rules alone gave, and the rule
   * that chose the tier it started on. "" for runs started before. */
  char requested_tier[32];
  char automatic_tier[32];
  char tier_rule[48];
  /* The run's deadline: its start plus its tier's timeout (0 = none), past which the run-timeout
   * rule acts; moved when the run changes tier. */
  int64_t deadline_us;
} tb_wf_context_t;

/* Writes run |id|'s context once (a second put for the same run is a no-op). */
tb_status tb_store_wf_context_put(tb_store_t *st, const char *id, const tb_wf_context_t *c);

/* Reads run |id|'s context into |out| (zeroed first); *found = 0 for a run without one (started
 * before migration v8). */
tb_status tb_store_wf_context_get(tb_store_t *st, const char *id, tb_wf_context_t *out, int *found);

/* Counts one more retry of run |id| (creating its context when it has none). */
tb_status tb_store_wf_context_retried(tb_store_t *st, const char *id);

/* Moves run |id|'s deadline (see tb_wf_context_t) to |deadline_us| (0 = none). */
tb_status tb_store_wf_set_deadline(tb_store_t *st, const char *id, int64_t deadline_us);

/* Moves run |id|'s deadline later by |delta_us| (time it spent parked); no-op without one. */
tb_status tb_store_wf_shift_deadline(tb_store_t *st, const char *id, int64_t delta_us);

/* A run past its deadline. */
typedef struct tb_wf_overdue {
  char id[128];
  char tier[32];
  int64_t deadline_us;
} tb_wf_overdue_t;

/* Up to |limit| runs with status running whose deadline is at or before |now_us|, the most
 * overdue first, into *out (caller frees with free()) and *n. Runs parked in a wait or a sleep
 * are left out: that time does not count (tb_store_wf_shift_deadline). */
tb_status tb_store_wf_overdue(tb_store_t *st, int64_t now_us, int limit, tb_wf_overdue_t **out,
                              int *n);

/* One command service's circuit breaker (seed 000; workflows/breaker.h decides). */
typedef struct tb_breaker {
  char service[64];
  int failures;            /* consecutive failures since window_start_us */
  int64_t window_start_us; /* when the count started */
  int64_t open_until_us;   /* commands are held until then; 0 = closed */
  int64_t opened_us;       /* when it last opened */
  int trips;               /* times it opened */
  int64_t held;            /* commands held so far */
  char last_error[256];
  int64_t updated_us;
} tb_breaker_t;

/* Reads |service|'s breaker into |out| (zeroed, service set, when there is none: *found = 0). */
tb_status tb_store_breaker_get(tb_store_t *st, const char *service, tb_breaker_t *out, int *found);

/* Writes |b| (insert or replace by service). */
tb_status tb_store_breaker_put(tb_store_t *st, const tb_breaker_t *b);

/* Calls |fn| for every breaker, by service; a non-zero return stops. */
tb_status tb_store_breaker_list(tb_store_t *st, int (*fn)(void *arg, const tb_breaker_t *b),
                                void *arg);

/* Sets run |id|'s tier without touching updated_us: an escalation is not progress, so a run
 * raised by the sweeper stays stuck until a step really moves it. */
tb_status tb_store_wf_set_tier(tb_store_t *st, const char *id, const char *tier);

/* One escalation. |source| is "start", "sweeper" or "retry". Strings borrowed. */
typedef struct tb_wf_escalation {
  const char *workflow_id, *from_tier, *to_tier, *rule, *source, *detail;
  int64_t at_us; /* 0 = now (add) */
} tb_wf_escalation_t;

/* Records |e|. *added (may be NULL) = 0 when the sweeper already recorded this rule for this run
 * (nothing written). */
tb_status tb_store_wf_escalation_add(tb_store_t *st, const tb_wf_escalation_t *e, int *added);

/* Calls |fn| for each escalation of run |id|, oldest first (strings borrowed for the call);
 * non-zero stops. */
tb_status tb_store_wf_escalations(tb_store_t *st, const char *id,
                                  int (*fn)(void *arg, const tb_wf_escalation_t *e), void *arg);

/* *fired = 1 when the sweeper already escalated run |id| by |rule|. */
tb_status tb_store_wf_escalation_fired(tb_store_t *st, const char *id, const char *rule,
                                       int *fired);

/* Calls |fn| with each rule name and its count of escalations (all runs), most frequent first. */
tb_status tb_store_escalation_counts(tb_store_t *st,
                                     int (*fn)(void *arg, const char *rule, int64_t n), void *arg);

/* A run the sweeper looks at. */
typedef struct tb_wf_stuck {
  char id[TB_ID_MAX];
  char tier[32];
  int64_t updated_us; /* its last progress */
  int customer_facing;
  char business_impact[16];
} tb_wf_stuck_t;

/* Runs running or waiting whose last progress is at or before |before_us| and whose tier is not
 * in |skip_tiers_json| (a JSON array of tier names: those no rule can raise), least recent first,
 * at most |limit|. *out (caller frees with free()) receives *n rows; NULL when none. */
tb_status tb_store_wf_stuck(tb_store_t *st, int64_t before_us, const char *skip_tiers_json,
                            int limit, tb_wf_stuck_t **out, int *n);

/* The due time of the pending outbox row |msg_id|; *found = 0 when there is none (published
 * already, or never written). */
tb_status tb_store_outbox_due_of(tb_store_t *st, const char *msg_id, int64_t *due_us, int *found);

#endif
