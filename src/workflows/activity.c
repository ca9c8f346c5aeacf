/* The "activity" handler: every event bound to it lands in the activity log, the end-to-end trail
 * that `tierbus activity` reads to show what happened to a key or a correlation id. */
#include "core/status.h"
#include "workflows/handlers.h"

/* The row of the message in |ctx|: its ids, tier and ordering key; the payload is the caller's. */
static tb_activity_t activity_row(const tb_handler_ctx_t *ctx, char *key, size_t key_cap) {
  const tb_decoded_t *m = ctx->msg;
  tb_codec_ordering_key(m, key, key_cap);
  return (tb_activity_t){
      .msg_id = m->env ? m->env->id : NULL,
      .event_type = m->def ? m->def->name : (m->env ? m->env->type : NULL),
      .tier = ctx->tier,
      .correlation_id = m->env ? m->env->correlation_id : NULL,
      .key = key,
  };
}

tb_status tb__activity_record(const tb_handler_ctx_t *ctx, const char *payload_json) {
  char key[TB_ID_MAX * 2];
  tb_activity_t a = activity_row(ctx, key, sizeof(key));
  a.payload_json = payload_json;
  return tb_store_activity(ctx->store, &a);
}

tb_status tb__handle_activity(const tb_handler_ctx_t *ctx) {
  /* The payload's bytes as published, not rendered: the handler runs for most events and the
   * trail is read rarely, so readers render (issue 9: rendering JSON here was 14% of the
   * executor's time). The decode already checked that the bytes are the event's message. */
  char key[TB_ID_MAX * 2];
  tb_activity_t a = activity_row(ctx, key, sizeof(key));
  const Tierbus__V1__Envelope *env = ctx->msg->env;
  if (env != NULL && ctx->msg->payload != NULL) {
    a.payload = env->payload.len > 0 ? env->payload.data : (const uint8_t *)"";
    a.payload_len = env->payload.len;
  }
  return tb_store_activity(ctx->store, &a);
}
