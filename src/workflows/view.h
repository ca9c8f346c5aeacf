/* A workflow run as its readers see it: the JSON of a run (state, step history, escalations) that
 * `tierbus workflows show --json` / `runs --json` print and GET /api/workflows[/{id}] answers, so
 * that the command line and the API cannot drift apart. */
#ifndef TB_WORKFLOWS_VIEW_H
#define TB_WORKFLOWS_VIEW_H

#include <jansson.h>

#include "store/escalation.h"
#include "store/workflow.h"

/* The statuses a run can have (running, waiting, sleeping, completed, failed, cancelled), in that
 * order; |*n| receives the count. */
const char *const *tb_wf_statuses(int *n);

/* 1 when |status| is one of tb_wf_statuses(). */
int tb_wf_status_valid(const char *status);

/* Name of step |step| of the run named |name|: "(end)" past the last step, "-" for an unknown
 * definition. Borrowed, static. */
const char *tb_wf_step_name(const char *name, int step);

/* The run as JSON: id, name, domain, tier, status, step (index and name), step_state, attempt,
 * seq, error, data (parsed), correlation_id, cause_msg_id, created/updated/finished_us. New
 * reference; NULL only when memory runs out. */
json_t *tb_wf_row_json(const tb_wf_row_t *r);

/* One history row / one escalation as JSON (new references; NULL when memory runs out). */
json_t *tb_wf_hist_json(const tb_wf_hist_t *h);
json_t *tb_wf_escalation_json(const tb_wf_escalation_t *e);

/* How run |id|'s starting tier was decided and its deadline (seed 000), from its context:
 * {"rule", "requested_tier" (null = none), "automatic_tier", "deadline_us" (null = none)}, or
 * JSON null for a run started before tierbus kept them. New reference into *out. */
tb_status tb_wf_decision_view(tb_store_t *st, const char *id, json_t **out);

/* Run |id| with its escalations and history, oldest first:
 * {"workflow": {...}, "tier_decision": {...} (tb_wf_decision_view), "escalations": [...],
 * "history": [...]}, into *out (caller frees with json_decref). TB_ERR_NOT_FOUND (detail names the
 * id) when there is no such run; the store's status when it fails. */
tb_status tb_wf_run_view(tb_store_t *st, const char *id, json_t **out);

#endif
