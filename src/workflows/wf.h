/* Durable workflows (seed 003, seed 004): definitions in C, one domain per file, run step by step
 * by src/workflows/runtime.c. Steps run inside the engine's batch transaction, so a step's state
 * change, its history row and its follow-up messages (a continuation, a command, a timer) commit
 * together or not at all. Consecutive local steps (run, branch) run on in the call that handled
 * the message before them, up to config's workflow_steps_per_message; commands, waits, sleeps,
 * retries and tier changes cross the bus as a `workflow-step` message on the workflow's tier.
 *
 * State lives in SQLite (store/workflow.h): the workflow row (status, current step, attempt,
 * data), one history row per step attempt, waits, and the event inbox. Timers are outbox rows
 * held back until their due time, so they survive a restart of every process.
 *
 * The workflow's data is one JSON object: {"input": <trigger input>, "steps": {<step name>:
 * <result>, ...}}. A step reads it through tb_wf_data() and its result lands under "steps". */
#ifndef TB_WORKFLOWS_WF_H
#define TB_WORKFLOWS_WF_H

#include <jansson.h>
#include <stdint.h>

#include "api/handler.h"
#include "workflows/retry.h"

typedef enum tb_step_kind {
  TB_STEP_RUN = 0,     /* a C function acting on tierbus's own state, inside the transaction */
  TB_STEP_COMMAND = 1, /* publish tb.cmd.<service>.<action>, then wait for the command-reply */
  TB_STEP_WAIT = 2,    /* wait for an event type matched by a correlation key, with a timeout */
  TB_STEP_SLEEP = 3,   /* a durable timer */
  TB_STEP_BRANCH = 4,  /* a condition on the data: jump to a named step */
} tb_step_kind;

/* The running workflow as a step function sees it. Borrowed by step functions; valid for the
 * call only. */
typedef struct tb_wf_run {
  const tb_handler_ctx_t *ctx; /* store, config, catalogue, the message being handled */
  const char *id;              /* workflow id */
  const char *name;            /* definition name */
  const char *tier;            /* the tier its continuations run on */
  const char *step;            /* current step name */
  int attempt;                 /* attempt of the current step, 1-based */
  json_t *data; /* the workflow's data (borrowed; a step may add to "input", never change a
                 * value already there in place) */
  /* A run step that fails sets these (status code for retryOn; 0 = no code). */
  int fail_code;
} tb_wf_run_t;

/* run: acts on tierbus's state through run->ctx->store. On success returns TB_OK and sets
 * *result to a new reference (or NULL for no result). On failure returns a status with the
 * detail set by tb__fail() and optionally run->fail_code; TB_ERR_INVALID is permanent (never
 * retried), anything else follows the step's retry policy. */
typedef tb_status (*tb_step_fn)(tb_wf_run_t *run, json_t **result);

/* command: the action's input object (new reference). Failing here fails the attempt. */
typedef tb_status (*tb_input_fn)(tb_wf_run_t *run, json_t **input);

/* wait: the correlation key to match (written to |key|, NUL-terminated). */
typedef tb_status (*tb_key_fn)(tb_wf_run_t *run, char *key, size_t cap);

/* branch: the name of the step to go to, or NULL for the next step in order. A name that is not
 * a step of the workflow fails it. */
typedef const char *(*tb_branch_fn)(tb_wf_run_t *run);

/* A step skipped when this returns 0 (conditional steps; NULL = always run). */
typedef int (*tb_when_fn)(tb_wf_run_t *run);

/* How long a command or wait step waits when its definition names no timeout. */
#define TB_WF_DEFAULT_TIMEOUT "1h"

typedef struct tb_step_def {
  const char *name; /* unique in the workflow; the key of its result in data.steps */
  tb_step_kind kind;
  const char *description;
  /* How long the step may take: a command's or a wait's wait for its reply or event, a run
   * step's... nothing (it runs inside one delivery: the tier's timeout bounds it). "24h", "30m",
   * "60s"; NULL = TB_WF_DEFAULT_TIMEOUT. */
  const char *timeout;
  /* Name of an input field that, when the workflow's input has it, overrides |timeout| (or a
   * sleep's |duration|) for this run: "timeout" lets `trigger --json-input '{"timeout":"5s"}'`
   * shorten a wait. NULL = fixed. */
  const char *timeout_field;
  /* Retry policy; max_attempts 0 means the default: one attempt. */
  tb_retry_policy_t retry;
  /* 1: a failure (after its retries) is recorded and the workflow goes on. Client-journey hooks
   * use it: a hook never fails its caller. */
  int optional;
  tb_when_fn when;
  /* Non-NULL: the step starts in a message of its own (a continuation) whenever this returns 1,
   * instead of running on in the call that finished the step before it (tb_wf_always: every
   * time). For a step that gains from what happens while its continuation crosses the bus:
   * enrichment's batch step takes the jobs that other subscribers' triggers queue meanwhile
   * (seed 003's batches), the priority sync lets higher tiers in between its batches. */
  tb_when_fn own_message;

  tb_step_fn run; /* TB_STEP_RUN */

  const char *service; /* TB_STEP_COMMAND: tb.cmd.<service>.<action> */
  const char *action;
  tb_input_fn input; /* NULL = {} */

  const char *event; /* TB_STEP_WAIT: the event type waited for (must be resumable: see below) */
  tb_key_fn key;

  const char *duration; /* TB_STEP_SLEEP */

  tb_branch_fn branch; /* TB_STEP_BRANCH */
} tb_step_def_t;

typedef struct tb_workflow_def {
  const char *name; /* unique over all domains, e.g. "subscriber-enrichment" */
  /* Another name it is found by (tb_wf_find), unique over all names: seed 000's camelCase
   * workflow type ("customerSupportMessageWorkflow"). NULL = none. Runs record |name|. */
  const char *alias;
  const char *domain; /* "crm", "enrichment", "workspace", "ops" */
  const char *tier;   /* default tier (a config tier name; unknown = the last tier) */
  const char *description;
  /* Seed 000: the category that config's workflow_tiers may name instead of the workflow
   * ("customer-support"), and the escalation context a run has unless its input says otherwise
   * (input.customer_facing, input.business_impact). NULL / 0 = none. */
  const char *category;
  int customer_facing;
  const char *business_impact;
  /* The event that starts it automatically (NULL = started only by trigger/execute-workflow),
   * and a filter on that event's payload (NULL = always start; e.g. personal emails only). */
  const char *trigger_event;
  int (*should_start)(const json_t *payload);
  /* The workflow input built from the trigger event's payload (NULL = the payload itself). New
   * reference. */
  json_t *(*trigger_input)(const json_t *payload);
  const tb_step_def_t *steps;
  int n_steps; /* TB_COUNTOF(steps), never a typed-in count: a step past it would never run */
  /* Runs once when the workflow fails (after the failed step's retries), inside the same
   * transaction; |error| is the failure. Its own failure is recorded, never raised. NULL = none. */
  tb_status (*on_error)(tb_wf_run_t *run, const char *error);
} tb_workflow_def_t;

/* An activity: a named unit of work that steps use, listed by `tierbus workflows list`. Run
 * steps' functions and the commands that workflows send are activities. */
typedef struct tb_activity_def {
  const char *name;   /* "enrichment.batch-pending-jobs", "email.send" */
  const char *domain; /* "shared" for activities used across domains */
  const char *kind;   /* "run" or "command" */
  const char *description;
} tb_activity_def_t;

/* ---------------------------------------------------------------- registry (registry.c) */

/* One domain file's contents (crm.c, enrichment.c, ops.c ...). */
typedef struct tb_wf_domain {
  const char *name;
  const tb_workflow_def_t *const *workflows;
  int n_workflows;
  const tb_activity_def_t *activities;
  int n_activities;
} tb_wf_domain_t;

/* Defined by the domain files; listed once in registry.c. */
extern const tb_wf_domain_t tb__domain_crm, tb__domain_enrichment, tb__domain_ops,
    tb__domain_workspace;

/* Every domain, in listing order; |*n| receives the count. */
const tb_wf_domain_t *const *tb_wf_domains(int *n);

/* The definition named |name| (its name, else its alias), or NULL. */
const tb_workflow_def_t *tb_wf_find(const char *name);

/* The event types that resume waits, and the payload field holding their correlation key. NULL
 * for an event that resumes nothing. */
const char *tb_wf_resume_key_field(const char *event);

/* The payload field of |event| that names the waiting run itself (seed 003: enrichment-complete
 * resumes by workflow_id as well as by enrichment_id), or NULL when it resumes by key only. */
const char *tb_wf_resume_run_field(const char *event);

/* ---------------------------------------------------------------- runtime (runtime.c) */

/* The tier a run of |def| goes to when nothing overrides it, before escalation: config's
 * workflow_tiers entry for its name or category (seed 000), else the definition's tier when the
 * config has it, else the config's last (least urgent) tier, so a deployment that renames tiers
 * still runs every workflow. Borrowed from |cfg|. */
const char *tb_wf_tier(const tb_config_t *cfg, const tb_workflow_def_t *def);

/* Config's workflow_tiers entry for |def|: by its name, else its alias (seed 000's camelCase
 * type), else its category; NULL when none applies. Borrowed from |cfg|. */
const char *tb_wf_type_tier(const tb_config_t *cfg, const tb_workflow_def_t *def);

/* 1 for a status after which a run does nothing more: completed, failed, cancelled. */
int tb_wf_status_final(const char *status);

/* Starts workflow |def| inside the handler's transaction: writes its row (status running), then
 * runs its first steps at once when the message being handled came on the run's tier and domain
 * (as a continuation would, up to workflow_steps_per_message), else writes the first continuation
 * on |tier| (NULL = the definition's tier, as resolved against the config).
 * |id| NULL derives a deterministic id from the message being handled, so a redelivery cannot
 * start a second run; *started = 0 when a workflow with that id already exists (not an error).
 * |input| is borrowed. The resolved id is written to |id_out| (may be NULL). */
tb_status tb_wf_start(const tb_handler_ctx_t *ctx, const tb_workflow_def_t *def, const char *id,
                      const char *tier, const json_t *input, const char *correlation_id,
                      char *id_out, size_t id_cap, int *started);

struct tb_esc_input;
/* tb_wf_start with the escalation context of execute-workflow's flags (seed 000), merged with
 * what the definition and the input say (workflows/escalation.h). |esc| NULL = none. With
 * |explicit_by| ("priority") |tier| is a caller's choice, honoured both ways under config's
 * priority_floors; without it the rules raise the run's tier from |tier| (or the default). A
 * raise is recorded with its rule, and the deciding rule and the run's deadline are kept in its
 * context (tb_wf_decide). */
tb_status tb_wf_start_ex(const tb_handler_ctx_t *ctx, const tb_workflow_def_t *def, const char *id,
                         const char *tier, const char *explicit_by, const json_t *input,
                         const char *correlation_id, const struct tb_esc_input *esc, char *id_out,
                         size_t id_cap, int *started);

/* Fails run |id| inside the caller's transaction (runtime.c; for the run-timeout sweep): a
 * "run-timeout" history row with |error|, its waits, timers and queued continuation dropped, its
 * onError run, status failed. TB_ERR_NOT_FOUND / TB_ERR_INVALID (already final). */
tb_status tb__wf_fail(const tb_handler_ctx_t *ctx, const char *id, const char *error);

/* Sends run |row|'s continuation for its current seq on row->tier, due at |due_us| (0 = now),
 * through the outbox (runtime.c; for escalation.c). |cause| is recorded in the history. */
struct tb_wf_row;
tb_status tb__wf_continue(const tb_handler_ctx_t *ctx, const struct tb_wf_row *row,
                          const char *cause, int64_t due_us);

/* The continuation message id of (run, seq): "wf:<id>:<seq>". */
void tb__wf_cont_id(const char *wf_id, int64_t seq, char *buf, size_t cap);

/* A tb_when_fn that always holds (for own_message). */
int tb_wf_always(tb_wf_run_t *run);

/* The workflow's data (borrowed). */
static inline json_t *tb_wf_data(tb_wf_run_t *run) {
  return run->data;
}
/* data.input.<field> as a string, or NULL. */
const char *tb_wf_input_str(tb_wf_run_t *run, const char *field);
/* data.steps.<step> (borrowed), or NULL. */
json_t *tb_wf_step_result(tb_wf_run_t *run, const char *step);
/* The time of the message being handled as the log has it: its envelope's occurred_at (wall
 * clock us), or the clock when the publisher gave none. A time a step keeps in tierbus's state
 * comes from here, not from the clock: a rebuild runs the step again from the same message and
 * must write the same state (`db checksum`). */
int64_t tb_wf_log_time_us(const tb_wf_run_t *run);

/* Publishes a catalogue event from a step (through the outbox, inside the transaction): |payload|
 * is the event's JSON (borrowed), |tier| NULL = the event's default tier. The message id is
 * "<workflow id>:<step>:<attempt>:<event>" so that a retried step sends it once. */
tb_status tb_wf_emit_event(tb_wf_run_t *run, const char *event, const char *tier,
                           const json_t *payload);

/* The handlers bound in the catalogue (the engine calls them through registry.c):
 *   workflow.step     a continuation: runs or resumes the current step
 *   workflow.resume   an event that may resume a wait (command-reply, enrichment-complete...)
 *   workflow.start    execute-workflow: start a registered workflow by name
 *   workflow.trigger  an event that starts the workflows whose trigger_event it is, and is
 *                     written to the activity log */
tb_status tb__handle_wf_step(const tb_handler_ctx_t *ctx);
tb_status tb__handle_wf_resume(const tb_handler_ctx_t *ctx);
tb_status tb__handle_wf_start(const tb_handler_ctx_t *ctx);
tb_status tb__handle_wf_trigger(const tb_handler_ctx_t *ctx);

/* Cancels workflow |id| in its own transaction on |store| (for the CLI): status cancelled, its
 * waits and pending timers dropped, a history row written. TB_ERR_NOT_FOUND for an unknown id,
 * TB_ERR_INVALID (detail names the status) for one already finished. */
tb_status tb_wf_cancel(tb_store_t *store, const char *id, const char *reason);

#endif
