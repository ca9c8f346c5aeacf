/* Wire codec: the protobuf envelope that every tierbus message carries, the event payloads inside
 * it, and the JSON mapping (proto field names, lowerCamelCase accepted) used by the CLI. */
#ifndef TB_CODEC_CODEC_H
#define TB_CODEC_CODEC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/catalogue.h"
#include "tierbus/v1/envelope.pb-c.h"
#include "tierbus/v1/events.pb-c.h"
#include "tierbus.h"

/* Builds the payload message for |ev| from a JSON object. Every JSON key must name a field of the
 * event's message (proto name or lowerCamelCase) and have a compatible type; otherwise returns
 * TB_ERR_JSON with a detail such as "CLIENT_CREATED: field 'client_id': expected a string, got
 * number" or "CLIENT_CREATED: unknown field 'foo'"; nested paths read "results[0].fields[email]".
 * JSON null leaves a field unset. Integers are range-checked and may also be decimal strings (as
 * in protobuf's JSON mapping); enums are value names or numbers; bytes are base64. Caller frees
 * with protobuf_c_message_free_unpacked(*out, NULL). */
tb_status tb_codec_payload_from_json(const tb_event_def_t *ev, json_t *obj, ProtobufCMessage **out);

/* Renders a payload (or any message) as a JSON object with proto field names. Every scalar,
 * repeated and map field appears, with its default when unset; unset message fields are left
 * out. int64 is a JSON number, uint64 above INT64_MAX a decimal string, enums their value name
 * (the number if unknown), bytes base64, non-finite floats "NaN"/"Infinity"/"-Infinity".
 * Returns TB_ERR_DECODE if a string is not valid UTF-8 (protobuf-c does not check), TB_ERR_NOMEM.
 * Caller frees with json_decref(). */
tb_status tb_codec_payload_to_json(const ProtobufCMessage *msg, json_t **out);

/* The same for a payload still packed: |data| (|len| bytes) as event |ev|'s message. TB_ERR_DECODE
 * when the bytes are not one. */
tb_status tb_codec_payload_bytes_to_json(const tb_event_def_t *ev, const uint8_t *data, size_t len,
                                         json_t **out);

/* Packs any message into a malloc'd buffer. Caller frees *buf with free(). */
tb_status tb_codec_pack(const ProtobufCMessage *msg, uint8_t **buf, size_t *len);

/* A decoded tierbus message: the envelope, its catalogue entry and its unpacked payload. */
typedef struct tb_decoded {
  Tierbus__V1__Envelope *env; /* owned */
  const tb_event_def_t *def;  /* borrowed from the catalogue */
  ProtobufCMessage *payload;  /* owned */
} tb_decoded_t;

/* Decodes a message body. Failures, each with a detail that names the problem:
 *  - TB_ERR_DECODE: the body is not an Envelope, or the payload is not the event's message, or a
 *    required envelope field (id, type) is empty;
 *  - TB_ERR_UNKNOWN_EVENT: env->type is not in the catalogue.
 * On success the caller frees with tb_decoded_free(). On failure |out| is zeroed. */
tb_status tb_codec_decode(const tb_catalogue_t *cat, const uint8_t *data, size_t len,
                          tb_decoded_t *out);

void tb_decoded_free(tb_decoded_t *d);

/* Value of the event's ordering key field as a string (empty if the event has none). Writes at
 * most |cap| bytes including the NUL. */
void tb_codec_ordering_key(const tb_decoded_t *d, char *buf, size_t cap);

/* The longest envelope id, in bytes. The id is the dedupe key (Nats-Msg-Id, the processed
 * record) and names a run's messages in buffers sized for it, so a longer one is never cut:
 * publish refuses it and the engine dead-letters it (id_too_long). */
#define TB_ENVELOPE_ID_MAX 127

/* The first field of |ev|'s catalogue "required" list that |payload| leaves empty, or NULL when
 * every one is set. Borrowed from the catalogue. */
const char *tb_codec_missing_field(const tb_event_def_t *ev, const ProtobufCMessage *payload);

/* Reads a string field of |msg| by proto field name; NULL if absent or not a string. A proto3
 * string has no presence, so an empty string counts as absent and gives NULL. Borrowed. */
const char *tb_codec_get_string(const ProtobufCMessage *msg, const char *field);

/* JSON helpers shared by the CLI's and the API's answers. */

/* What |v| is, as an error message names it: "an object", "a string", "a number", ... */
const char *tb_json_kind(const json_t *v);

/* A JSON string of |s|, or null when |s| is NULL. New reference. */
json_t *tb_json_str_or_null(const char *s);

/* Stored JSON text as a value: parsed when it parses, else the text itself (a step may record a
 * result that is not JSON); null for NULL. New reference. */
json_t *tb_json_text(const char *text);

#endif
