/* The activity log seen from outside (api/activity.h). */
#include "api/activity.h"

#include <string.h>

#include "codec/codec.h"
#include "core/clock.h"
#include "core/status.h"
#include "store/monitor.h"

/* The row's payload as JSON (new reference, or NULL with *error set). */
static json_t *payload_json(const tb_catalogue_t *cat, const tb_activity_t *a, const char **error) {
  *error = NULL;
  if (a->payload != NULL) {
    const tb_event_def_t *ev = a->event_type ? tb_catalogue_find(cat, a->event_type) : NULL;
    json_t *out = NULL;
    if (ev == NULL)
      *error = "event type not in this build's catalogue";
    else if (tb_codec_payload_bytes_to_json(ev, a->payload, a->payload_len, &out) != TB_OK)
      *error = tb_errdetail();
    return out;
  }
  if (a->payload_json != NULL) {
    json_error_t jerr;
    json_t *out = json_loads(a->payload_json, JSON_DECODE_ANY, &jerr);
    if (out == NULL) *error = "payload_json is not JSON";
    return out;
  }
  return NULL;
}

json_t *tb_activity_json(const tb_catalogue_t *cat, const tb_activity_t *a) {
  char at[40];
  tb_time_format(a->at_us, at, sizeof(at));
  const char *error = NULL;
  json_t *payload = payload_json(cat, a, &error);
  json_t *o =
      json_pack("{s:I, s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:o}", "id", (json_int_t)a->id, "at", at,
                "msg_id", a->msg_id, "event_type", a->event_type, "tier", a->tier, "correlation_id",
                a->correlation_id, "key", a->key, "payload", payload ? payload : json_null());
  if (o != NULL && error != NULL) json_object_set_new(o, "payload_error", json_string(error));
  return o;
}

typedef struct repo_ok {
  int64_t ws, tracked;
} repo_ok_t;

/* Counts one applied repository job by the is_workspace_repo its payload carried (false when the
 * payload has no metadata, as protobuf's default says). */
static int count_repo_ok(void *arg, const tb_activity_t *a) {
  repo_ok_t *r = arg;
  int is_ws = 0;
  if (a->payload != NULL) {
    Tierbus__V1__RepositorySync *m = tierbus__v1__repository_sync__unpack(
        NULL, a->payload_len, a->payload_len ? a->payload : (const uint8_t *)"");
    if (m != NULL) {
      is_ws = m->metadata != NULL && m->metadata->is_workspace_repo;
      tierbus__v1__repository_sync__free_unpacked(m, NULL);
    }
  } else if (a->payload_json != NULL) { /* a row written before schema 16 */
    json_t *j = json_loads(a->payload_json, 0, NULL);
    is_ws = json_is_true(json_object_get(json_object_get(j, "metadata"), "is_workspace_repo"));
    json_decref(j);
  }
  if (is_ws)
    r->ws++;
  else
    r->tracked++;
  return 0;
}

tb_status tb_activity_repo_jobs_ok(tb_store_t *st, int64_t since_us, int64_t max_rows,
                                   int64_t *workspace_ok, int64_t *tracked_only_ok,
                                   int *truncated) {
  repo_ok_t r = {0};
  tb_activity_filter_t f = {
      .event_type = "capture/repository.sync", .since_us = since_us, .scan_newest = max_rows};
  tb_status s = tb_store_activity_list(st, &f, count_repo_ok, &r);
  *workspace_ok = r.ws;
  *tracked_only_ok = r.tracked;
  if (s == TB_OK) s = tb_store_mon_activity_truncated(st, since_us, max_rows, truncated);
  return s;
}
