/* Dead letters seen from outside: an entry's JSON and the replay of one entry (api/dlq.h). */
#include "api/dlq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "codec/codec.h"
#include "core/status.h"
#include "tierbus/v1/envelope.pb-c.h"

json_t *tb_dlq_entry_json(const tb_dlq_entry_t *e, int full) {
  char at[40], rep[40];
  tb_time_format(e->at_us, at, sizeof(at));
  tb_time_format(e->replayed_us, rep, sizeof(rep));
  json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:I}", "no",
                        (json_int_t)e->no, "msg_id", e->msg_id, "reason", e->reason_class,
                        "event_type", e->event_type, "tier", e->tier, "error", e->error, "subject",
                        e->subject, "stream", e->stream, "stream_seq", (json_int_t)e->stream_seq,
                        "deliveries", (json_int_t)e->deliveries, "dlq_seq", (json_int_t)e->dlq_seq,
                        "at", at, "replays", (json_int_t)e->replays);
  if (o == NULL) return NULL;
  if (e->replays > 0) json_object_set_new(o, "replayed_at", json_string(rep));
  if (full) {
    json_t *h = e->headers_json ? json_loads(e->headers_json, 0, NULL) : NULL;
    json_object_set_new(o, "headers", h ? h : json_object());
    json_object_set_new(o, "payload_bytes", json_integer((json_int_t)e->len));
  }
  return o;
}

void tb_dlq_replay_result_clear(tb_dlq_replay_result_t *r) {
  free(r->msg_id);
  memset(r, 0, sizeof(*r));
}

/* The message to send for |e| on tier |tier|: its subject with the tier token replaced, and its
 * body, re-encoded with the new tier when the envelope named another one (*body is then owned:
 * *owned = 1). TB_ERR_INVALID for a subject that is not an event subject. */
static tb_status replay_target(const tb_dlq_entry_t *e, const char *tier, char *subject, size_t cap,
                               const void **body, size_t *len, int *owned) {
  *body = e->payload;
  *len = e->len;
  *owned = 0;
  const char *rest = strncmp(e->subject, "tb.evt.", 7) == 0 ? strchr(e->subject + 7, '.') : NULL;
  if (rest == NULL)
    return tb__fail(TB_ERR_INVALID, "subject '%s' is not an event subject (tb.evt.<tier>...)",
                    e->subject);
  if (snprintf(subject, cap, "tb.evt.%s%s", tier, rest) >= (int)cap)
    return tb__fail(TB_ERR_INVALID, "subject too long");
  Tierbus__V1__Envelope *env =
      tierbus__v1__envelope__unpack(NULL, e->len, (const uint8_t *)e->payload);
  if (env == NULL) return TB_OK; /* sent as it was; the engine decides again */
  tb_status s = TB_OK;
  if (env->tier == NULL || strcmp(env->tier, tier) != 0) {
    char *old = env->tier;
    env->tier = (char *)tier;
    size_t n = tierbus__v1__envelope__get_packed_size(env);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf != NULL) {
      tierbus__v1__envelope__pack(env, buf);
      *body = buf;
      *len = n;
      *owned = 1;
    } else {
      s = tb__fail(TB_ERR_NOMEM, "re-encoding the envelope");
    }
    env->tier = old;
  }
  tierbus__v1__envelope__free_unpacked(env, NULL);
  return s;
}

/* Builds the replayed copy's headers: the original ones but Nats-Msg-Id and Tb-Replay-*, then
 * Tb-Replay-Of (the entry's id: the engine keys a copy it cannot decode by it, so the copy
 * keeps the identity) and Tb-Replay-Round. |hdrs| holds 2 * MAX_HEADERS + 5. */
#define MAX_HEADERS 64
static void replay_headers(json_t *orig, const char *msg_id, const char *round, const char **hdrs) {
  int n = 0;
  const char *key;
  json_t *vals;
  json_object_foreach(orig, key, vals) {
    if (n >= 2 * MAX_HEADERS) break;
    if (strcasecmp(key, "Nats-Msg-Id") == 0 || strncasecmp(key, "Tb-Replay-", 10) == 0) continue;
    const char *v = json_string_value(json_array_get(vals, 0));
    hdrs[n++] = key;
    hdrs[n++] = v ? v : "";
  }
  hdrs[n++] = "Tb-Replay-Of";
  hdrs[n++] = msg_id;
  hdrs[n++] = "Tb-Replay-Round";
  hdrs[n++] = round;
  hdrs[n] = NULL;
}

tb_status tb_dlq_replay(tb_bus_t *bus, tb_store_t *store, const tb_config_t *cfg, const char *key,
                        const char *tier, tb_dlq_replay_result_t *out) {
  memset(out, 0, sizeof(*out));
  tb_dlq_entry_t e;
  int found = 0;
  tb_status st = tb_store_dlq_get(store, key, &e, &found);
  if (st != TB_OK) return st;
  if (!found) return tb__fail(TB_ERR_NOT_FOUND, "no dead letter with id or number '%s'", key);
  out->no = e.no;
  out->msg_id = strdup(e.msg_id);
  snprintf(out->reason_class, sizeof(out->reason_class), "%s", e.reason_class);
  int ti = tb_config_tier_index(cfg, tier ? tier : e.tier);
  const void *body = NULL;
  size_t len = 0;
  int owned = 0;
  if (out->msg_id == NULL) {
    st = tb__fail(TB_ERR_NOMEM, "dead letter %s", key);
  } else if (!tb_dlq_class_replayable(e.reason_class)) {
    out->outcome = TB_DLQ_SKIPPED;
  } else if (ti < 0) {
    st = tb__fail(TB_ERR_INVALID, "tier '%s' is not configured (give another tier)",
                  tier ? tier : e.tier);
  } else if (bus == NULL) { /* before its record is touched: nothing changes */
    st = tb__fail(TB_ERR_UNAVAILABLE, "no NATS connection to replay on");
  } else {
    out->tier = cfg->tiers[ti].name;
    st = replay_target(&e, out->tier, out->subject, sizeof(out->subject), &body, &len, &owned);
  }
  if (st == TB_OK && out->outcome != TB_DLQ_SKIPPED)
    st = tb_store_dlq_replay_begin(store, e.msg_id, &out->round);
  if (st == TB_OK && out->outcome != TB_DLQ_SKIPPED && out->round == 0) {
    out->outcome = TB_DLQ_ALREADY_APPLIED;
  } else if (st == TB_OK && out->outcome != TB_DLQ_SKIPPED) {
    char roundbuf[24];
    snprintf(roundbuf, sizeof(roundbuf), "%lld", (long long)out->round);
    size_t id_len = strlen(e.msg_id) + 40;
    char *nats_id = malloc(id_len);
    json_t *orig = e.headers_json ? json_loads(e.headers_json, 0, NULL) : NULL;
    const char *hdrs[2 * MAX_HEADERS + 5];
    replay_headers(orig, e.msg_id, roundbuf, hdrs);
    if (nats_id == NULL) {
      st = tb__fail(TB_ERR_NOMEM, "replay id");
    } else {
      snprintf(nats_id, id_len, "dlq-replay:%lld:%s", (long long)out->round, e.msg_id);
      /* Its 'dead' record is gone if this fails: a later replay still works, and nothing was
       * applied. */
      st = tb_bus_publish(bus, out->subject, nats_id, body, len, hdrs, &out->seq, &out->duplicate);
    }
    json_decref(orig);
    free(nats_id);
    out->outcome = TB_DLQ_REPLAYED;
  }
  if (owned) free((void *)body);
  tb_dlq_entry_free(&e);
  return st;
}

typedef struct repo_fail {
  const tb_catalogue_t *cat;
  int64_t ws, tracked, unknown;
} repo_fail_t;

static int count_repo_fail(void *arg, const tb_dlq_entry_t *e) {
  repo_fail_t *rf = arg;
  if (strcmp(e->event_type, "capture/repository.sync") != 0) return 0;
  tb_decoded_t d;
  json_t *pj = NULL;
  int is_ws = -1;
  if (tb_codec_decode(rf->cat, (const uint8_t *)e->payload, e->len, &d) == TB_OK) {
    if (d.payload != NULL && tb_codec_payload_to_json(d.payload, &pj) == TB_OK) {
      json_t *v = json_object_get(json_object_get(pj, "metadata"), "is_workspace_repo");
      if (json_is_boolean(v)) is_ws = json_is_true(v);
      json_decref(pj);
    }
    tb_decoded_free(&d);
  }
  if (is_ws == 1)
    rf->ws++;
  else if (is_ws == 0)
    rf->tracked++;
  else
    rf->unknown++;
  return 0;
}

tb_status tb_dlq_repo_jobs_failed(tb_store_t *store, const tb_catalogue_t *cat, int64_t since_us,
                                  int64_t *workspace, int64_t *tracked_only, int64_t *unknown) {
  repo_fail_t rf = {.cat = cat};
  tb_dlq_filter_t f = {.since_us = since_us};
  tb_status s = tb_store_dlq_list(store, &f, count_repo_fail, &rf);
  *workspace = rf.ws;
  *tracked_only = rf.tracked;
  *unknown = rf.unknown;
  return s;
}
