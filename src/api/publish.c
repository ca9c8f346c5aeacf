/* Event preparation and publication. */
#include "api/publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "codec/codec.h"
#include "core/clock.h"
#include "core/status.h"

void tb_new_id(char *buf, size_t cap) {
  /* Time-ordered, like a UUIDv7: 48 bits of milliseconds, then 80 random bits. The processed
   * record's unique index is keyed by this id, and a key that grows with time is appended to the
   * index's last page, where a random key dirties a random page per insert (a quarter of the
   * throughput, measured for issue 9). The random part comes from a per-thread generator seeded
   * from the kernel: ids must be unique across processes, and a syscall per id would cost more than
   * the publish itself in a bulk load. */
  static _Thread_local uint64_t s[2];
  if (s[0] == 0 && s[1] == 0) {
    if (getrandom(s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
      s[0] = (uint64_t)tb_wall_us() ^ (uint64_t)(uintptr_t)&s;
      s[1] = 0x9e3779b97f4a7c15ULL;
    }
  }
  uint64_t out[2];
  for (int i = 0; i < 2; i++) { /* xorshift128+ */
    uint64_t a = s[0], b = s[1];
    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    out[i] = s[1] + b;
  }
  uint64_t ms = (uint64_t)tb_wall_us() / 1000;
  snprintf(buf, cap, "evt-%012llx%04llx%016llx", (unsigned long long)(ms & 0xffffffffffffULL),
           (unsigned long long)(out[0] & 0xffff), (unsigned long long)out[1]);
}

/* Every consumer filters one domain, so a message on any other domain would never be read. */
static int known_domain(const tb_catalogue_t *cat, const char *domain) {
  const char *names[TB_MAX_DOMAINS];
  int n = tb_catalogue_domains(cat, names, TB_MAX_DOMAINS);
  for (int i = 0; i < n && i < TB_MAX_DOMAINS; i++)
    if (strcmp(names[i], domain) == 0) return 1;
  return 0;
}

tb_status tb_publish_prepare(const tb_config_t *cfg, const tb_catalogue_t *cat,
                             const tb_publish_req_t *req, tb_prepared_t *out) {
  memset(out, 0, sizeof(*out));
  const tb_event_def_t *ev = tb_catalogue_find(cat, req->event);
  if (ev == NULL) {
    /* Every event, unless a catalogue ever outgrows the detail: then where the list is. */
    char names[1280] = "";
    size_t off = 0;
    for (size_t i = 0; i < tb_catalogue_count(cat); i++) {
      const char *name = tb_catalogue_at(cat, i)->name;
      if (off + strlen(name) + 2 >= sizeof(names) - 24) {
        snprintf(names + off, sizeof(names) - off, ", ...");
        break;
      }
      off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "", name);
    }
    return tb__fail(TB_ERR_UNKNOWN_EVENT, "unknown event '%s' (events: %s; see tierbus events)",
                    req->event, names);
  }
  const char *tier = req->tier;
  if (tier == NULL) tier = tb_config_event_tier(cfg, ev->name);
  if (tier == NULL) tier = ev->default_tier;
  int ti = tb_config_tier_index(cfg, tier);
  if (ti < 0) {
    char tiers[256] = "";
    for (int i = 0; i < cfg->n_tiers; i++)
      snprintf(tiers + strlen(tiers), sizeof(tiers) - strlen(tiers), "%s%s", i ? ", " : "",
               cfg->tiers[i].name);
    return tb__fail(TB_ERR_INVALID, "unknown tier '%s' for %s (tiers: %s)", tier, ev->name, tiers);
  }
  out->tier = cfg->tiers[ti].name;
  if (req->domain != NULL && !known_domain(cat, req->domain))
    return tb__fail(TB_ERR_INVALID, "%s: '%s' is not a catalogue domain", ev->name, req->domain);
  if (req->id != NULL) {
    if (*req->id == '\0' || strlen(req->id) > TB_ENVELOPE_ID_MAX)
      return tb__fail(TB_ERR_INVALID, "%s: id must be 1 to %d bytes, got %zu", ev->name,
                      TB_ENVELOPE_ID_MAX, strlen(req->id));
    snprintf(out->id, sizeof(out->id), "%s", req->id);
  } else {
    tb_new_id(out->id, sizeof(out->id));
  }

  ProtobufCMessage *payload = NULL;
  tb_status st = tb_codec_payload_from_json(ev, req->payload, &payload);
  if (st != TB_OK) return st;
  uint8_t *pbuf = NULL;
  size_t plen = 0;
  /* The engine would dead-letter it (missing_field): refused here, where the publisher sees why. */
  const char *missing = tb_codec_missing_field(ev, payload);
  if (missing != NULL) {
    protobuf_c_message_free_unpacked(payload, NULL);
    return tb__fail(TB_ERR_INVALID, "%s: field '%s' is required", ev->name, missing);
  }
  st = tb_codec_pack(payload, &pbuf, &plen);
  protobuf_c_message_free_unpacked(payload, NULL);
  if (st != TB_OK) return st;
  if ((int64_t)plen > cfg->max_payload_bytes) {
    free(pbuf);
    return tb__fail(TB_ERR_TOO_LARGE, "%s payload is %zu bytes, max_payload is %lld", ev->name,
                    plen, (long long)cfg->max_payload_bytes);
  }

  st = tb_publish_wrap(ev, out->tier, out->id, pbuf, plen, req, out);
  free(pbuf);
  return st;
}

tb_status tb_publish_wrap(const tb_event_def_t *ev, const char *tier, const char *id,
                          const uint8_t *payload, size_t payload_len, const tb_publish_req_t *req,
                          tb_prepared_t *out) {
  if (id == NULL || *id == '\0' || strlen(id) > TB_ENVELOPE_ID_MAX)
    return tb__fail(TB_ERR_INVALID, "%s: id must be 1 to %d bytes, got %zu", ev->name,
                    TB_ENVELOPE_ID_MAX, id ? strlen(id) : 0);
  if (out->id != id) memcpy(out->id, id, strlen(id) + 1);
  out->tier = tier;
  Tierbus__V1__Envelope env = TIERBUS__V1__ENVELOPE__INIT;
  env.id = out->id;
  env.type = (char *)ev->name;
  env.tier = (char *)tier;
  env.occurred_at_us = req != NULL && req->occurred_at_us > 0 ? req->occurred_at_us : tb_wall_us();
  env.source = (char *)(req && req->source ? req->source : "tierbus-cli");
  env.correlation_id = (char *)(req && req->correlation_id ? req->correlation_id : "");
  env.workflow_id = (char *)(req && req->workflow_id ? req->workflow_id : "");
  env.attempt = 1;
  env.priority_score = req ? req->priority_score : 0;
  int n_meta = req && req->metadata ? req->n_metadata : 0;
  if (n_meta < 0 || n_meta > TB_PUBLISH_MAX_METADATA)
    return tb__fail(TB_ERR_INVALID, "%s %s: %d metadata entries (0 to %d allowed)", ev->name, id,
                    n_meta, TB_PUBLISH_MAX_METADATA);
  Tierbus__V1__Envelope__MetadataEntry entries[TB_PUBLISH_MAX_METADATA];
  Tierbus__V1__Envelope__MetadataEntry *entry_ptrs[TB_PUBLISH_MAX_METADATA];
  for (int i = 0; i < n_meta; i++) {
    tierbus__v1__envelope__metadata_entry__init(&entries[i]);
    entries[i].key = (char *)req->metadata[2 * i];
    entries[i].value = (char *)req->metadata[2 * i + 1];
    entry_ptrs[i] = &entries[i];
  }
  env.n_metadata = (size_t)n_meta;
  env.metadata = n_meta > 0 ? entry_ptrs : NULL;
  env.payload.data = (uint8_t *)payload;
  env.payload.len = payload_len;
  tb_status st = tb_codec_pack(&env.base, &out->buf, &out->len);
  if (st == TB_OK)
    st = tb_catalogue_subject(ev, tier, req ? req->domain : NULL, out->subject,
                              sizeof(out->subject));
  if (st != TB_OK) tb_prepared_free(out);
  return st;
}

void tb_prepared_free(tb_prepared_t *p) {
  free(p->buf);
  p->buf = NULL;
  p->len = 0;
}

tb_status tb_publish_send(tb_bus_t *bus, const tb_prepared_t *p, uint64_t *seq, int *duplicate) {
  return tb_bus_publish(bus, p->subject, p->id, p->buf, p->len, NULL, seq, duplicate);
}

json_t *tb_sample_payload(const tb_event_def_t *ev, unsigned n) {
  json_t *obj = json_object();
  const ProtobufCMessageDescriptor *d = ev->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->label == PROTOBUF_C_LABEL_REPEATED) continue;
    char buf[96];
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
      if (strcmp(f->name, "email") == 0)
        snprintf(buf, sizeof(buf), "user%u@%s", n % 50, n % 3 ? "gmail.com" : "acme.io");
      else
        snprintf(buf, sizeof(buf), "%.40s-%u", f->name, n % 64);
      json_object_set_new(obj, f->name, json_string(buf));
      break;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SINT64:
      json_object_set_new(obj, f->name, json_integer(strstr(f->name, "month") ? n % 8 + 1 : 200));
      break;
    case PROTOBUF_C_TYPE_BOOL:
      json_object_set_new(obj, f->name, json_boolean(n % 4 == 0));
      break;
    case PROTOBUF_C_TYPE_ENUM: {
      /* The value after UNSPECIFIED, except that an email type follows the email's domain, so
       * that personal subscribers (and only they) start the enrichment workflow. */
      const ProtobufCEnumDescriptor *ed = f->descriptor;
      int v = ed->n_values > 1 ? 1 : 0;
      if (strcmp(f->name, "email_type") == 0 && ed->n_values > 2) v = n % 3 ? 1 : 2;
      json_object_set_new(obj, f->name, json_string(ed->values[v].name));
      break;
    }
    default:
      break; /* nested messages, floats: left at their defaults */
    }
  }
  return obj;
}

tb_status tb_publish_req_from_json(json_t *obj, tb_publish_req_t *req, const char **field) {
  const char *dummy;
  if (field == NULL) field = &dummy;
  *field = NULL;
  memset(req, 0, sizeof(*req));
  if (!json_is_object(obj)) return tb__fail(TB_ERR_JSON, "expected a JSON object");
  /* Seed 001 passes JOB_PRIORITY as a number ("priority": 3): it stands for its tier like the
   * number's text does (tb_config_job_priority_tier). Rewritten in place as text, so that the
   * request can borrow it from |obj| like every other field. */
  json_t *prio = json_object_get(obj, "priority");
  if (json_is_integer(prio)) {
    char text[24];
    snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(prio));
    if (json_object_set_new(obj, "priority", json_string(text)) != 0)
      return tb__fail(TB_ERR_NOMEM, "priority");
  }
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    const char **slot = NULL;
    if (strcmp(key, "type") == 0)
      slot = &req->event;
    else if (strcmp(key, "priority") == 0)
      slot = &req->tier;
    else if (strcmp(key, "id") == 0)
      slot = &req->id;
    else if (strcmp(key, "correlation_id") == 0 || strcmp(key, "correlationId") == 0)
      slot = &req->correlation_id;
    else if (strcmp(key, "workflow_id") == 0 || strcmp(key, "workflowId") == 0)
      slot = &req->workflow_id;
    else if (strcmp(key, "payload") == 0) {
      if (!json_is_object(val)) {
        *field = "payload";
        return tb__fail(TB_ERR_JSON, "'payload' must be an object");
      }
      req->payload = val;
      continue;
    } else {
      *field = key;
      return tb__fail(TB_ERR_JSON,
                      "unknown key '%.100s' (expected type, payload, priority, id, "
                      "correlation_id, workflow_id)",
                      key);
    }
    if (!json_is_string(val)) {
      *field = key;
      return tb__fail(TB_ERR_JSON, "'%.100s' must be a string", key);
    }
    *slot = json_string_value(val);
  }
  if (req->event == NULL) {
    *field = "type";
    return tb__fail(TB_ERR_JSON, "missing 'type' (an event name, see `tierbus events`)");
  }
  if (req->payload == NULL) {
    *field = "payload";
    return tb__fail(TB_ERR_JSON, "missing 'payload'");
  }
  return TB_OK;
}
