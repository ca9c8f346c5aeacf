/* Seed 000's priority escalation: one pure function that applies config's escalation rules to a
 * run's context, and the three places that use it: a run's start (runtime.c), the stuck-run
 * sweeper (a pass here, a thread in sweeper.c) and `tierbus workflows retry`. Each escalation is
 * recorded with the rule that caused it (store/escalation.h). */
#ifndef TB_WORKFLOWS_ESCALATION_H
#define TB_WORKFLOWS_ESCALATION_H

#include <jansson.h>
#include <stdint.h>

#include "codec/catalogue.h"
#include "config/config.h"
#include "store/store.h"
#include "workflows/wf.h"

/* What the rules look at. */
typedef struct tb_esc_input {
  int failed_retry;            /* a retry of a failed run */
  int customer_facing;         /* the run is customer-facing */
  const char *business_impact; /* "low", "medium", "high"; NULL or "" = unspecified */
  int64_t stuck_ms;            /* time since the run's last progress */
  int expedite;                /* force the most urgent tier any rule names */
  uint32_t skip;               /* bit i set: rule i is left out */
} tb_esc_input_t;

typedef struct tb_esc_result {
  int tier;         /* resulting tier index: never greater (less urgent) than the base */
  const char *rule; /* the rule that raised it ("expedite" for expedite); NULL = not raised */
  int rule_index;   /* index of that rule in the rules in force; -1 for none or expedite */
} tb_esc_result_t;

/* The rules in force (tb_config_escalation) applied to |in| from tier index |base|: each rule
 * whose every set condition holds names a tier; the result is the most urgent of |base| and
 * those, and the recorded rule is the first (in config order) that names it. A rule whose tier
 * the config does not have is ignored. With in->expedite the result is at least the most urgent
 * tier any rule names, conditions aside. Pure: no I/O, no clock. */
tb_esc_result_t tb_wf_escalate(const tb_config_t *cfg, int base, const tb_esc_input_t *in);

/* The context a run of |def| starts with: the definition's, overridden by the input's fields
 * customer_facing (boolean), business_impact (string) and expedite (boolean). |input| borrowed
 * (may be NULL); out->business_impact points into |def| or |input|. TB_ERR_INVALID naming the
 * field when one has the wrong type or an impact other than low, medium, high. */
tb_status tb_wf_esc_context(const tb_workflow_def_t *def, const json_t *input, tb_esc_input_t *out);

/* Why a run starts on its tier (seed 000): the automatic assignment, the escalation rules, and
 * an explicit priority, which is honoured both ways except under a priority floor. */
typedef struct tb_wf_decision {
  int tier;      /* index of the tier the run starts on */
  int base;      /* index before escalation: the requested tier, else the automatic base */
  int automatic; /* index the rules alone give: type tier (or |tier| as a base) escalated */
  int requested; /* index of the explicit tier asked for; -1 = none */
  /* What chose |tier|: an escalation rule's name, "expedite", "priority_floors", the explicit
   * source ("priority", "task-queue"), or what chose the base ("workflow_tiers", "definition",
   * "least-urgent-tier", or the caller's base label). Static or borrowed from the config. */
  const char *rule;
  const char *assigned_by;  /* what chose |base| */
  const char *escalated_by; /* the rule that raised |tier| above |base|; NULL = not raised */
  tb_esc_input_t in;        /* the merged context the rules saw */
} tb_wf_decision_t;

/* The tier a run of |def| starts on. |tier| NULL: the automatic tier (tb_wf_tier) raised by the
 * escalation rules. |tier| given with |explicit_by| ("priority", "task-queue"): that tier,
 * honoured both ways (raising or lowering the automatic tier), except that expedite still raises
 * it and config's priority_floors (by name, alias or category) keeps it from going below the
 * floor. |tier| given with |explicit_by| NULL: a base the rules only raise (a trigger event's
 * tier), recorded as |base_by| (NULL = "base"). The context is the definition's and |input|'s
 * (tb_wf_esc_context) merged with the trigger's |flags| (may be NULL: customer_facing and
 * expedite add, a business impact replaces, failed_retry and stuck_ms are taken as given). The
 * one decision behind a run's start (tb_wf_start_ex) and what a trigger tells its caller
 * beforehand (workflows/trigger.h). TB_ERR_INVALID for an unknown tier or a context field of
 * the wrong type. Pure: no I/O. */
tb_status tb_wf_decide(const tb_config_t *cfg, const tb_workflow_def_t *def, const char *tier,
                       const char *explicit_by, const char *base_by, const json_t *input,
                       const tb_esc_input_t *flags, tb_wf_decision_t *out);

/* A run's input from an execute-workflow's args: an object as it is, anything else (seed 000
 * passes an argument array) as {"args": <it>} plus the fields of the array's objects (the first
 * argument having a field wins; "args" itself stays the array), NULL as {}. New reference; NULL
 * only when memory runs out. */
json_t *tb_wf_args_input(const json_t *args);

/* Records that run |id| went from |from| to |to| by |rule| (source "start", "sweeper" or
 * "retry"), with |in| described in the detail ("customer-facing, impact high, stuck 7.0 h").
 * *added (may be NULL) as tb_store_wf_escalation_add. */
tb_status tb_wf_esc_record(tb_store_t *store, const char *id, const char *from, const char *to,
                           const char *rule, const char *source, const tb_esc_input_t *in,
                           int *added);

/* One sweeper pass at |now_us|, in its own transaction on |store|: every run running or waiting
 * without progress for longer than a rule's `stuck` threshold is escalated by the stuck rules
 * (only those; each at most once per run, across processes and restarts): its tier is raised,
 * the escalation recorded, and its current continuation re-sent on the new tier through the
 * outbox (a pending timer keeps its due time). *escalated (may be NULL) receives the count. */
tb_status tb_wf_sweep(tb_store_t *store, const tb_config_t *cfg, const tb_catalogue_t *cat,
                      int64_t now_us, int *escalated);

/* One run-timeout pass at |now_us| (seed 000: a run's tier timeout bounds the whole run), in
 * its own transaction on |store|: every running run past its deadline (time parked in a wait or
 * a sleep not counted) is, by config's run_timeout, escalated one tier (once per run: the
 * escalation "run-timeout" is recorded, the deadline becomes now plus the new tier's timeout,
 * and its continuation is re-sent on the new tier) or failed ("fail", an escalated run past its
 * new deadline, or a run already on the most urgent tier), with a history row either way.
 * *escalated and *failed (may be NULL) receive the counts. "off" does nothing. */
tb_status tb_wf_sweep_deadlines(tb_store_t *store, const tb_config_t *cfg,
                                const tb_catalogue_t *cat, int64_t now_us, int *escalated,
                                int *failed);

/* The stuck-run sweeper of a worker process: a thread with its own connection to |db_path| that
 * runs tb_wf_sweep and tb_wf_sweep_deadlines at once and then every |interval_ms| (> 0). |cfg| and
 * |cat| are borrowed and must outlive it. The outbox rows it writes go out through the worker's
 * relay. On failure nothing is left running. Caller stops and frees with tb_sweeper_stop(). */
typedef struct tb_sweeper tb_sweeper_t;
tb_status tb_sweeper_start(tb_sweeper_t **out, const char *db_path, const tb_config_t *cfg,
                           const tb_catalogue_t *cat, int64_t interval_ms);

/* Stops the thread (a pass under way finishes first), closes its connection and frees. Accepts
 * NULL. */
void tb_sweeper_stop(tb_sweeper_t *sw);

/* What `workflows retry` did. */
typedef struct tb_wf_retry_result {
  char from_tier[TB_NAME_MAX], to_tier[TB_NAME_MAX];
  char rule[TB_NAME_MAX]; /* the rule that raised it, "priority" for --priority, "" = unchanged */
  char step[64];          /* the step it restarts from */
  int failures;           /* failures of the run so far, this one included */
} tb_wf_retry_result_t;

/* Retries failed run |id| from its failed step, in its own transaction on |store|: status
 * running, attempt 1, the error cleared, a new continuation on the new tier. The tier is |tier|
 * when given (an explicit choice, which may also lower it), else the run's tier escalated as a
 * failed retry (failures, hours since it failed, customer-facing, business impact). A history
 * row and, when the tier rose, an escalation record are written. TB_ERR_NOT_FOUND for an unknown
 * id; TB_ERR_INVALID (detail names the status) for a run that is not failed, or an unknown
 * tier. */
tb_status tb_wf_retry(tb_store_t *store, const tb_config_t *cfg, const tb_catalogue_t *cat,
                      const char *id, const char *tier, tb_wf_retry_result_t *out);

#endif
