/* Starting a run from outside tierbus (seed 000, seed 004): everything `tierbus trigger`, `trigger
 * --batch` and POST /api/execute-workflow[-with-priority] check before anything is sent, the
 * tier the run goes to and the rule that chose it, and the execute-workflow event that starts it.
 * The worker that takes the event decides the tier again from the same inputs with the same
 * function (tb_wf_start_tier), so what a caller is told is what runs. */
#ifndef TB_WORKFLOWS_TRIGGER_H
#define TB_WORKFLOWS_TRIGGER_H

#include <jansson.h>

#include "api/publish.h"
#include "codec/catalogue.h"
#include "config/config.h"
#include "store/repo.h"
#include "workflows/escalation.h"
#include "workflows/wf.h"

/* A run id given by the caller: 1 to TB_WF_TRIGGER_ID_MAX of A-Z a-z 0-9 . _ -. The cap leaves
 * room in TB_ID_MAX-sized message ids for ":<step>:<attempt>:<event>". */
#define TB_WF_TRIGGER_ID_MAX 64

/* How the caller names each input in its error messages ("--priority" on the command line,
 * "priority" in a JSON body); a failure's detail starts with that name, and |field| reports it. */
typedef struct tb_wf_trigger_names {
  const char *workflow, *input, *priority, *queue, *id;
} tb_wf_trigger_names_t;

/* What to start. Strings and |input| are borrowed. */
typedef struct tb_wf_trigger {
  const char *workflow; /* a registered name */
  /* The run's input: an object, or an array (seed 000's args), which the run sees as
   * {"args": [...]}. NULL = {}. */
  const json_t *input;
  const char *priority; /* a tier name to run on; NULL = automatic */
  const char *queue;    /* a tier, or a worker preset (its first tier); NULL = none */
  const char *id;       /* the run's id; NULL = "wf-" + 32 hex digits */
  int expedite;         /* the most urgent tier any escalation rule names */
  /* Seed 000's context beyond the input's own fields (customer_facing, business_impact):
   * -1 / NULL / 0 = not given. */
  int customer_facing;
  const char *business_impact; /* "low", "medium", "high" */
  int failed_retry;
  double hours_stuck;
  const char *source;                 /* envelope source; NULL = "tierbus-cli" */
  const tb_wf_trigger_names_t *names; /* NULL = the JSON names of POST /api/execute-workflow */
} tb_wf_trigger_t;

/* Where a prepared run goes, and why. */
typedef struct tb_wf_triggered {
  char id[TB_ID_MAX];
  const tb_workflow_def_t *def;
  const char *tier;         /* the tier it runs on (borrowed from the config) */
  const char *base_tier;    /* before escalation: the requested tier, else the automatic base */
  const char *assigned_by;  /* what chose base_tier: "priority", "task-queue", "workflow_tiers",
                             * "definition" or "least-urgent-tier" (the definition's tier is not
                             * in this config) */
  const char *escalated_by; /* the escalation rule that raised it, "expedite",
                             * "priority_floors", or NULL */
  /* The rule that chose |tier|: escalated_by when set, else assigned_by. */
  const char *rule;
  const char *automatic_tier; /* what the rules alone give (type tier escalated) */
  const char *requested_tier; /* the explicit tier asked for (priority / queue); NULL = none */
  tb_esc_input_t context;     /* the merged context the rules saw */
  const char *field; /* after a failure: the input at fault, as |names| call it (NULL: none) */
} tb_wf_triggered_t;

/* Checks |t| and prepares its execute-workflow event in |msg| (caller frees with
 * tb_prepared_free) on the run's tier and domain, with Nats-Msg-Id "execute-workflow:<id>", so
 * that triggering the same id again is deduplicated by the stream and never starts a second run.
 * |out| says where it goes and why. TB_ERR_INVALID with a detail starting with the input's name
 * (out->field) for an unknown workflow (with the close names), tier or queue, a preset whose
 * workers do not take the workflow's domain, a priority and a queue that disagree, a bad id, or a
 * context field of the input with the wrong type; |msg| is then untouched. */
tb_status tb_wf_trigger_prepare(const tb_config_t *cfg, const tb_catalogue_t *cat,
                                const tb_wf_trigger_t *t, tb_wf_triggered_t *out,
                                tb_prepared_t *msg);

/* Writes "unknown workflow '<name>' (did you mean a, b?)", or with every registered name when
 * none is close, into |buf|. */
void tb_wf_unknown_message(const char *name, char *buf, size_t cap);

#endif
