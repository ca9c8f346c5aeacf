/* The handler functions bound by registry.c. Internal to src/workflows: everything else reaches
 * them through tb_registry_handler(). Each follows the contract of api/handler.h. */
#ifndef TB_WORKFLOWS_HANDLERS_H
#define TB_WORKFLOWS_HANDLERS_H

#include "api/handler.h"

/* "activity": appends the event to the activity log (payload as compact JSON, ordering key,
 * correlation id). Fails only on a store or render error, which the engine retries. */
tb_status tb__handle_activity(const tb_handler_ctx_t *ctx);

/* The same with the payload already rendered as compact JSON by the caller (|payload_json|
 * borrowed, NULL for none), for handlers that render it for their own use too. */
tb_status tb__activity_record(const tb_handler_ctx_t *ctx, const char *payload_json);

/* "workspace.repo_added" / "workspace.repo_removed": seed 002's priority rules (workspace.c). */
tb_status tb__handle_repo_added(const tb_handler_ctx_t *ctx);
tb_status tb__handle_repo_removed(const tb_handler_ctx_t *ctx);

#endif
