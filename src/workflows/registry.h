/* Handler registry: binds the handler names used in subjects/catalogue.json to C functions. */
#ifndef TB_WORKFLOWS_REGISTRY_H
#define TB_WORKFLOWS_REGISTRY_H

#include "api/handler.h"

/* Function bound to |name|, or NULL if none. */
tb_handler_fn tb_registry_handler(const char *name);

/* 1 if handler |name| may run again for a message it already applied (`replay --force`): a
 * second run leaves the state as one run did. 0 for any other name. */
int tb_registry_safe_to_reapply(const char *name);

/* Handler names, for listing and for the catalogue check; |*n| receives the count. Borrowed. */
const char *const *tb_registry_names(int *n);

#endif
