/* The "activity" handler: every event bound to it lands in the activity log, the end-to-end trail
 * that `tierbus` tools read to show what happened to a key or a correlation id. */
#include <jansson.h>
#include <stdlib.h>

#include "core/status.h"
#include "workflows/handlers.h"

tb_status tb__activity_record(const tb_handler_ctx_t *ctx, const char *payload_json) {
  const tb_decoded_t *m = ctx->msg;
  const char *msg_id = m->env ? m->env->id : NULL;
  const char *event = m->def ? m->def->name : (m->env ? m->env->type : NULL);
  char key[TB_ID_MAX * 2];
  tb_codec_ordering_key(m, key, sizeof(key));
  return tb_store_activity(ctx->store, msg_id, event, ctx->tier,
                           m->env ? m->env->correlation_id : NULL, key, payload_json);
}

tb_status tb__handle_activity(const tb_handler_ctx_t *ctx) {
  const tb_decoded_t *m = ctx->msg;
  char *payload_json = NULL;
  if (m->payload != NULL) {
    json_t *obj = NULL;
    tb_status s = tb_codec_payload_to_json(m->payload, &obj);
    if (s != TB_OK) return s; /* the codec's detail names the field */
    payload_json = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (payload_json == NULL) {
      const char *event = m->def ? m->def->name : (m->env ? m->env->type : NULL);
      return tb__fail(TB_ERR_NOMEM, "activity %s (msg %s): rendering the payload failed",
                      event ? event : "?", m->env && m->env->id ? m->env->id : "?");
    }
  }
  tb_status s = tb__activity_record(ctx, payload_json);
  free(payload_json);
  return s;
}
