/* The registries: the one place that binds the handler names used in subjects/catalogue.json to
 * C functions, lists the workflow domains, and names the events that resume waits. */
#include "workflows/registry.h"

#include <string.h>

#include "core/util.h"
#include "sched/sched.h"
#include "workflows/handlers.h"
#include "workflows/wf.h"

/* X(name, function, safe to re-apply). Adding a handler is one line here plus its function.
 * "Safe to re-apply" means a second run for the same message leaves the state as one run did, so
 * `replay --force` may run it again: the workspace membership handlers qualify (a change at or
 * before the pair's recorded stream position is ignored). The others append (activity log,
 * history rows) or move a run forward, and a second run would be a second effect. */
#define HANDLERS(X)                                                                                \
  X("activity", tb__handle_activity, 0)                                                            \
  X("workspace.repo_added", tb__handle_repo_added, 1)                                              \
  X("workspace.repo_removed", tb__handle_repo_removed, 1)                                          \
  X("workflow.step", tb__handle_wf_step, 0)                                                        \
  X("workflow.resume", tb__handle_wf_resume, 0)                                                    \
  X("workflow.start", tb__handle_wf_start, 0)                                                      \
  X("workflow.trigger", tb__handle_wf_trigger, 0)                                                  \
  X("sched.run", tb_sched_handle, 0)

static const tb_handler_fn fns[] = {
#define FN(name, fn, safe) fn,
    HANDLERS(FN)
#undef FN
};

static const char *const names[] = {
#define NAME(name, fn, safe) name,
    HANDLERS(NAME)
#undef NAME
};

static const int safe_flags[] = {
#define SAFE(name, fn, safe) safe,
    HANDLERS(SAFE)
#undef SAFE
};

#define N_HANDLERS ((int)TB_COUNTOF(names))

tb_handler_fn tb_registry_handler(const char *name) {
  if (name == NULL) return NULL;
  for (int i = 0; i < N_HANDLERS; i++)
    if (strcmp(names[i], name) == 0) return fns[i];
  return NULL;
}

int tb_registry_safe_to_reapply(const char *name) {
  if (name == NULL) return 0;
  for (int i = 0; i < N_HANDLERS; i++)
    if (strcmp(names[i], name) == 0) return safe_flags[i];
  return 0;
}

const char *const *tb_registry_names(int *n) {
  *n = N_HANDLERS;
  return names;
}

/* ---------------------------------------------------------------- workflows */

static const tb_wf_domain_t *const domains[] = {&tb__domain_crm, &tb__domain_enrichment,
                                                &tb__domain_ops, &tb__domain_workspace};

#define N_DOMAINS ((int)TB_COUNTOF(domains))

const tb_wf_domain_t *const *tb_wf_domains(int *n) {
  *n = N_DOMAINS;
  return domains;
}

const tb_workflow_def_t *tb_wf_find(const char *name) {
  if (name == NULL) return NULL;
  for (int d = 0; d < N_DOMAINS; d++)
    for (int i = 0; i < domains[d]->n_workflows; i++)
      if (strcmp(domains[d]->workflows[i]->name, name) == 0) return domains[d]->workflows[i];
  /* Seed 000's names, after every registered name: an alias never shadows a workflow. */
  for (int d = 0; d < N_DOMAINS; d++)
    for (int i = 0; i < domains[d]->n_workflows; i++) {
      const char *alias = domains[d]->workflows[i]->alias;
      if (alias != NULL && strcmp(alias, name) == 0) return domains[d]->workflows[i];
    }
  return NULL;
}

/* X(event, payload field holding the correlation key, payload field naming the waiting run or
 * NULL). An event listed here is bound to the workflow.resume handler in the catalogue. A
 * command reply resumes by its command id only: its workflow_id alone could answer a later
 * attempt of the step. */
#define RESUMABLE(X)                                                                               \
  X("command-reply", "command_id", NULL)                                                           \
  X("enrichment-complete", "enrichment_id", "workflow_id")

const char *tb_wf_resume_key_field(const char *event) {
#define MATCH(ev, field, run)                                                                      \
  if (event != NULL && strcmp(event, ev) == 0) return field;
  RESUMABLE(MATCH)
#undef MATCH
  return NULL;
}

const char *tb_wf_resume_run_field(const char *event) {
#define MATCH(ev, field, run)                                                                      \
  if (event != NULL && strcmp(event, ev) == 0) return run;
  RESUMABLE(MATCH)
#undef MATCH
  return NULL;
}
