/* The circuit breaker per command service and the alert events (seed 000's "implement circuit
 * breakers" and "alert on critical workflow failures or delays"). See breaker.h. */
#include "workflows/breaker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "store/escalation.h"
#include "tierbus/v1/command.pb-c.h"

int tb_wf_breaker_counts(int code) {
  return code == 0 || code == 408 || code == 429 || code >= 500;
}

tb_status tb_wf_breaker_open_until(const tb_handler_ctx_t *ctx, const char *service, int64_t now_us,
                                   int64_t *until) {
  *until = 0;
  if (ctx->cfg->breaker_failures <= 0 || service == NULL) return TB_OK;
  tb_breaker_t b;
  int found = 0;
  tb_status s = tb_store_breaker_get(ctx->store, service, &b, &found);
  if (s == TB_OK && found && b.open_until_us > now_us) *until = b.open_until_us;
  return s;
}

tb_status tb_wf_breaker_held(const tb_handler_ctx_t *ctx, const char *service) {
  tb_breaker_t b;
  int found = 0;
  tb_status s = tb_store_breaker_get(ctx->store, service, &b, &found);
  if (s != TB_OK) return s;
  b.held++;
  b.updated_us = tb_wall_us();
  return tb_store_breaker_put(ctx->store, &b);
}

tb_status tb_wf_breaker_record(const tb_handler_ctx_t *ctx, const char *service, int ok,
                               const char *error, int64_t now_us, int *opened) {
  if (opened != NULL) *opened = 0;
  const tb_config_t *cfg = ctx->cfg;
  if (cfg->breaker_failures <= 0 || service == NULL) return TB_OK;
  tb_breaker_t b;
  int found = 0;
  tb_status s = tb_store_breaker_get(ctx->store, service, &b, &found);
  if (s != TB_OK) return s;
  int just_opened = 0;
  if (ok) {
    if (found && b.failures == 0 && b.open_until_us == 0) return TB_OK; /* nothing to write */
    b.failures = 0;
    b.window_start_us = 0;
    b.open_until_us = 0;
  } else {
    if (b.failures == 0 || now_us - b.window_start_us > cfg->breaker_window_ms * 1000) {
      b.failures = 0;
      b.window_start_us = now_us;
    }
    b.failures++;
    snprintf(b.last_error, sizeof(b.last_error), "%s", error ? error : "");
    if (b.failures >= cfg->breaker_failures && b.open_until_us <= now_us) {
      b.opened_us = now_us;
      b.open_until_us = now_us + cfg->breaker_cooldown_ms * 1000;
      b.trips++;
      /* Half-open after the cool-down: the count restarts there one short of the threshold, so
       * the first command that fails again reopens the breaker. */
      b.failures = cfg->breaker_failures - 1;
      b.window_start_us = b.open_until_us;
      just_opened = 1;
      if (opened != NULL) *opened = 1;
    }
  }
  b.updated_us = now_us;
  s = tb_store_breaker_put(ctx->store, &b);
  if (s == TB_OK && just_opened) {
    TB_LOG(TB_LOG_WARN, "breaker", "circuit open for service %s until %lld (trip %d): %s", service,
           (long long)b.open_until_us, b.trips, b.last_error);
    char key[96];
    snprintf(key, sizeof(key), "%s:%d", service, b.trips);
    json_t *f =
        json_pack("{s:s,s:i,s:I,s:s}", "service", service, "failures", cfg->breaker_failures,
                  "open_until_us", (json_int_t)b.open_until_us, "detail", b.last_error);
    s = f ? tb_wf_alert(ctx, "circuit-open", key, f) : tb__fail(TB_ERR_NOMEM, "alert");
    json_decref(f);
  }
  return s;
}

tb_status tb_wf_alert(const tb_handler_ctx_t *ctx, const char *kind, const char *key,
                      const json_t *fields) {
  char id[TB_ID_MAX];
  int n = snprintf(id, sizeof(id), "alert:%s:%s", kind, key);
  if (n < 0 || (size_t)n >= sizeof(id))
    return tb__fail(TB_ERR_INVALID, "alert %s: key '%.40s...' too long", kind, key);
  int64_t now = tb_wall_us();
  json_t *in = json_pack("{s:s,s:I}", "kind", kind, "at_us", (json_int_t)now);
  if (in != NULL && fields != NULL) json_object_update(in, (json_t *)fields);
  char *text = in ? json_dumps(in, JSON_COMPACT) : NULL;
  json_decref(in);
  if (text == NULL) return tb__fail(TB_ERR_NOMEM, "alert %s", kind);
  const char *wf = json_string_value(json_object_get(fields, "workflow_id"));
  Tierbus__V1__Command cmd = TIERBUS__V1__COMMAND__INIT;
  cmd.command_id = id;
  cmd.workflow_id = (char *)(wf ? wf : "");
  cmd.step = (char *)kind;
  cmd.attempt = 1;
  cmd.service = "alerts";
  cmd.action = "raise";
  cmd.input_json = text;
  uint8_t *buf = NULL;
  size_t len = 0;
  tb_status s = tb_codec_pack(&cmd.base, &buf, &len);
  free(text);
  if (s == TB_OK) s = tb_handler_emit(ctx, TB_ALERT_SUBJECT, id, buf, len);
  free(buf);
  return s;
}
