/* The event catalogue: every event's canonical name, protobuf message, domain, subject pattern,
 * default tier, ordering key and handler, loaded from subjects/catalogue.json (compiled into the
 * binary) and bound to the protobuf-c descriptors generated from schemas/. */
#ifndef TB_CODEC_CATALOGUE_H
#define TB_CODEC_CATALOGUE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

#include "tierbus.h"

#define TB_CATALOGUE_MAX_REQUIRED 4

typedef struct tb_event_def {
  const char *name;         /* canonical: "CLIENT_CREATED", "enrichment-complete" */
  const char *message;      /* fully qualified: "tierbus.v1.ClientCreated" */
  const char *domain;       /* subject token: "crm", "enrichment", "workspace", ... */
  const char *token;        /* the event's subject token ("CLIENT_CREATED", "priorities-sync") */
  const char *default_tier; /* tier name used when neither publisher nor config says */
  const char *ordering_key; /* payload field whose value orders events of one key, or NULL */
  const char *handler;      /* handler name bound in src/workflows/registry.c */
  /* String fields a publisher must set (catalogue "required"): publish refuses an event without
   * one, the engine dead-letters it as missing_field. Borrowed from the catalogue. */
  const char *required[TB_CATALOGUE_MAX_REQUIRED];
  int n_required;
  const ProtobufCMessageDescriptor *descriptor; /* resolved from the generated code */
} tb_event_def_t;

/* A loaded catalogue is immutable: lookups from any number of threads need no lock. */
typedef struct tb_catalogue tb_catalogue_t;

/* Loads the catalogue compiled into the binary. Fails with TB_ERR_CONFIG if an entry names a
 * message that the generated schemas do not define. Caller frees with tb_catalogue_destroy(). */
tb_status tb_catalogue_load(tb_catalogue_t **out);

/* Same, from a JSON file on disk (tests, tools). TB_ERR_IO if the file cannot be read,
 * TB_ERR_CONFIG ("PATH:LINE:COL: ..." or "PATH: catalogue event ...") if it is not valid. */
tb_status tb_catalogue_load_file(tb_catalogue_t **out, const char *path);

void tb_catalogue_destroy(tb_catalogue_t *cat);

/* Event named |name| (exact canonical name), or NULL. Borrowed from |cat|. */
const tb_event_def_t *tb_catalogue_find(const tb_catalogue_t *cat, const char *name);

size_t tb_catalogue_count(const tb_catalogue_t *cat);
const tb_event_def_t *tb_catalogue_at(const tb_catalogue_t *cat, size_t i);

/* The distinct domains of the catalogue's events, in order of first appearance: up to |max|
 * borrowed names in |out|. Returns how many there are (which may exceed |max|). */
int tb_catalogue_domains(const tb_catalogue_t *cat, const char **out, int max);

/* Writes the subject for an event on a tier: "tb.evt.<tier>.<domain>.<event>". |domain| NULL
 * means the event's own domain; a workflow's messages (continuations, command replies) name
 * their run's domain instead, so that the run's domain workers get them. Returns TB_ERR_INVALID
 * if |cap| is too small (|buf| is then "") or |tier| or |domain| is not a valid NATS token. */
tb_status tb_catalogue_subject(const tb_event_def_t *ev, const char *tier, const char *domain,
                               char *buf, size_t cap);

/* True if |token| can be one token of a NATS subject: non-empty, no '.', '*', '>', whitespace or
 * control characters. Used for tiers, domains and event tokens. */
bool tb_nats_token_valid(const char *token);

#endif
