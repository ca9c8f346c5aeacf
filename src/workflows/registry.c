/* The registries: the one place that binds the handler names used in subjects/catalogue.json to
 * C functions, lists the workflow domains, and names the events that resume waits. */
#include "workflows/registry.h"

#include <string.h>

#include "core/util.h"
#include "sched/sched.h"
#include "workflows/handlers.h"
#include "workflows/wf.h"

/* X(name, function). Adding a handler is one line here plus its function. */
#define HANDLERS(X)                                                                                \
  X("activity", tb__handle_activity)                                                               \
  X("workspace.repo_added", tb__handle_repo_added)                                                 \
  X("workspace.repo_removed", tb__handle_repo_removed)                                             \
  X("workflow.step", tb__handle_wf_step)                                                           \
  X("workflow.resume", tb__handle_wf_resume)                                                       \
  X("workflow.start", tb__handle_wf_start)                                                         \
  X("workflow.trigger", tb__handle_wf_trigger)                                                     \
  X("sched.run", tb_sched_handle)

static const tb_handler_fn fns[] = {
#define FN(name, fn) fn,
    HANDLERS(FN)
#undef FN
};

static const char *const names[] = {
#define NAME(name, fn) name,
    HANDLERS(NAME)
#undef NAME
};

#define N_HANDLERS ((int)TB_COUNTOF(names))

tb_handler_fn tb_registry_handler(const char *name) {
  if (name == NULL) return NULL;
  for (int i = 0; i < N_HANDLERS; i++)
    if (strcmp(names[i], name) == 0) return fns[i];
  return NULL;
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
  return NULL;
}

/* X(event, payload field holding the correlation key). An event listed here is bound to the
 * workflow.resume handler in the catalogue. */
#define RESUMABLE(X)                                                                               \
  X("command-reply", "command_id")                                                                 \
  X("enrichment-complete", "enrichment_id")

const char *tb_wf_resume_key_field(const char *event) {
#define MATCH(ev, field)                                                                           \
  if (event != NULL && strcmp(event, ev) == 0) return field;
  RESUMABLE(MATCH)
#undef MATCH
  return NULL;
}
