/* tb_handler_emit: how a handler sends a follow-up message (declared in api/handler.h, the
 * handler contract). It only writes an outbox row in the handler's savepoint, so it lives here,
 * below the handlers that call it; the relay (engine/relay.c) publishes the row after the batch
 * commits. */
#include <jansson.h>
#include <stdlib.h>

#include "core/status.h"
#include "api/handler.h"

/* The causing message's id and correlation id as a JSON header object, or NULL when there is no
 * message (a handler run outside the engine) or on out-of-memory (*oom set). Caller frees. */
static char *cause_headers(const tb_handler_ctx_t *ctx, int *oom) {
  if (ctx->msg == NULL || ctx->msg->env == NULL) return NULL;
  const char *id = ctx->msg->env->id, *corr = ctx->msg->env->correlation_id;
  json_t *h = json_object();
  if (h == NULL) goto nomem;
  if (id && id[0] && json_object_set_new(h, "Tb-Cause-Id", json_string(id)) != 0) goto nomem;
  if (corr && corr[0] && json_object_set_new(h, "Tb-Correlation-Id", json_string(corr)) != 0)
    goto nomem;
  if (json_object_size(h) == 0) {
    json_decref(h);
    return NULL;
  }
  char *text = json_dumps(h, JSON_COMPACT);
  json_decref(h);
  if (text == NULL) *oom = 1;
  return text;
nomem:
  json_decref(h);
  *oom = 1;
  return NULL;
}

tb_status tb_handler_emit(const tb_handler_ctx_t *ctx, const char *subject, const char *msg_id,
                          const void *data, size_t len) {
  return tb_handler_emit_at(ctx, subject, msg_id, data, len, 0);
}

tb_status tb_handler_emit_at(const tb_handler_ctx_t *ctx, const char *subject, const char *msg_id,
                             const void *data, size_t len, int64_t not_before_us) {
  if (ctx == NULL || ctx->store == NULL)
    return tb__fail(TB_ERR_INVALID, "emit '%s': no handler context", msg_id ? msg_id : "");
  int oom = 0;
  char *headers = cause_headers(ctx, &oom);
  if (oom) return tb__fail(TB_ERR_NOMEM, "emit '%s': headers", msg_id ? msg_id : "");
  tb_status s =
      tb_store_outbox_add_at(ctx->store, subject, msg_id, data, len, headers, not_before_us);
  free(headers);
  if (s == TB_OK && ctx->emitted != NULL) *ctx->emitted = 1;
  return s;
}
