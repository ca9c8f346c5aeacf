/* The handler table: the one place that binds the handler names used in subjects/catalogue.json to
 * C functions. */
#include "workflows/registry.h"

#include <string.h>

#include "workflows/handlers.h"

/* X(name, function). Adding a handler is one line here plus its function. */
#define HANDLERS(X)                                                                                \
  X("activity", tb__handle_activity)                                                               \
  X("workspace.repo_added", tb__handle_repo_added)                                                 \
  X("workspace.repo_removed", tb__handle_repo_removed)

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

#define N_HANDLERS ((int)(sizeof(names) / sizeof(names[0])))

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
