/* Building events for publication: tier resolution (publisher > config > catalogue), the
 * envelope, the message id and the subject. Preparation is separate from sending so that a batch
 * file can be validated whole before anything is published. */
#ifndef TB_API_PUBLISH_H
#define TB_API_PUBLISH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "codec/catalogue.h"
#include "codec/codec.h"
#include "config/config.h"

#define TB_PUBLISH_MAX_METADATA 8

typedef struct tb_publish_req {
  const char *event; /* canonical event name */
  json_t *payload;   /* borrowed JSON object with the event's fields */
  const char *tier;  /* NULL: config event_tiers, then the catalogue default */
  /* NULL: the event's own domain. A workflow's messages name their run's domain so that the
   * run's domain workers take them; it must be a catalogue domain. */
  const char *domain;
  const char *id;             /* NULL: a random id is generated */
  const char *correlation_id; /* may be NULL */
  const char *workflow_id;    /* may be NULL */
  const char *source;         /* NULL: "tierbus-cli" */
  int32_t priority_score;
  /* Envelope metadata: |n_metadata| key/value pairs, metadata[2i] the key and metadata[2i+1] the
   * value (borrowed); at most TB_PUBLISH_MAX_METADATA pairs. Seed 002's repository jobs carry
   * their priority's reasons here. */
  const char *const *metadata;
  int n_metadata;
  /* 0: now. A message queued for later (a workflow timer) is stamped with its due time, so that
   * latency figures measure from when it was meant to run. */
  int64_t occurred_at_us;
} tb_publish_req_t;

typedef struct tb_prepared {
  char subject[256];
  char id[TB_ENVELOPE_ID_MAX + 1];
  const char *tier; /* borrowed from the config */
  uint8_t *buf;     /* packed envelope, owned */
  size_t len;
} tb_prepared_t;

/* Validates |req| and encodes it. Failures name the problem: TB_ERR_UNKNOWN_EVENT, TB_ERR_JSON
 * (field errors from the codec), TB_ERR_INVALID (unknown tier, an id longer than
 * TB_ENVELOPE_ID_MAX, a catalogue-required field left empty), TB_ERR_TOO_LARGE.
 * On success the caller frees with tb_prepared_free(). */
tb_status tb_publish_prepare(const tb_config_t *cfg, const tb_catalogue_t *cat,
                             const tb_publish_req_t *req, tb_prepared_t *out);

void tb_prepared_free(tb_prepared_t *p);

/* Reads an event request in the JSON shape that `publish --file` lines and `POST /api/events`
 * share: {"type", "payload", "priority"?, "id"?, "correlation_id"|"correlationId"?,
 * "workflow_id"|"workflowId"?}. |req| borrows strings from |obj|. TB_ERR_JSON for anything else
 * (not an object, an unknown key, a value of the wrong type, type or payload missing), with a
 * detail that names it; *field (may be NULL) then names the key at fault, NULL when none. A
 * "priority" given as an integer (seed 001's JOB_PRIORITY) is rewritten in |obj| as its text. */
tb_status tb_publish_req_from_json(json_t *obj, tb_publish_req_t *req, const char **field);

/* The envelope step of tb_publish_prepare for a payload that is already packed: stamps
 * occurred_at with the current time, so a caller that prepares payloads ahead (the bench) still
 * measures latency from the moment of publishing. |tier| must be a config tier name (borrowed,
 * must outlive |out|), |id| 1 to TB_ENVELOPE_ID_MAX bytes (TB_ERR_INVALID otherwise: an id is
 * never cut). Caller frees with tb_prepared_free(). */
tb_status tb_publish_wrap(const tb_event_def_t *ev, const char *tier, const char *id,
                          const uint8_t *payload, size_t payload_len, const tb_publish_req_t *req,
                          tb_prepared_t *out);

/* A plausible JSON payload for any event, built from its schema so that every event in the
 * catalogue can be exercised without hand-written samples (demo, bench): ids are "<field>-<k>",
 * counts small, months 1..8, emails alternate personal and corporate. Caller frees with
 * json_decref(). */
json_t *tb_sample_payload(const tb_event_def_t *ev, unsigned n);

/* Publishes and waits for the stream ack (seq, duplicate may be NULL). */
tb_status tb_publish_send(tb_bus_t *bus, const tb_prepared_t *p, uint64_t *seq, int *duplicate);

/* Writes a fresh message id: "evt-" + 32 hex digits, 12 of milliseconds then 20 random, so ids
 * sort by time (the processed record appends instead of inserting at random). */
void tb_new_id(char *buf, size_t cap);

#endif
