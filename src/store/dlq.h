/* Dead-letter entries (table dead_letters): what the engine could not apply, kept whole so that an
 * operator can list, show, replay and purge them (`tierbus dlq`). The TB_DLQ stream holds a copy
 * for other services; this table is what tierbus itself reads. */
#ifndef TB_STORE_DLQ_H
#define TB_STORE_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* X(enum, name, can_replay, meaning): every reason class, the one list the engine, the CLI's
 * --reason and the README follow. can_replay is 0 when the bytes themselves are what is wrong:
 * republishing them unchanged can only dead-letter them again. */
#define TB_DLQ_CLASSES(X)                                                                          \
  X(MALFORMED, "malformed", 0, "the body is not an envelope, or the payload not its event")        \
  X(TOO_LARGE, "too_large", 0, "the message or its payload is over max_payload")                   \
  X(ID_TOO_LONG, "id_too_long", 0,                                                                 \
    "the envelope id is longer than 127 bytes (TB_ENVELOPE_ID_MAX)")                               \
  X(UNKNOWN_EVENT, "unknown_event", 1, "the envelope's type is not in the catalogue")              \
  X(MISSING_FIELD, "missing_field", 1, "a field the catalogue marks required is empty")            \
  X(NO_HANDLER, "no_handler", 1, "no handler is bound to the event in this build")                 \
  X(HANDLER_FAILED, "handler_failed", 1, "the handler refused it for good (permanent failure)")    \
  X(MAX_DELIVERIES, "max_deliveries", 1, "every delivery allowed (max_deliver) failed or was lost")

typedef enum tb_dlq_class {
#define TB__DLQ_ENUM(e, name, replay, meaning) TB_DLQ_##e,
  TB_DLQ_CLASSES(TB__DLQ_ENUM)
#undef TB__DLQ_ENUM
      TB_DLQ__COUNT
} tb_dlq_class;

/* The class's name ("malformed"); never NULL. */
const char *tb_dlq_class_name(tb_dlq_class c);
/* The class named |name|, or -1. */
int tb_dlq_class_parse(const char *name);
/* 1 when republishing the message unchanged can succeed (see TB_DLQ_CLASSES). An entry of a
 * class this build does not know (rows written before v10: "unclassified") counts as replayable. */
int tb_dlq_class_replayable(const char *name);
/* Every class's name, "malformed, too_large, ...", into |buf| (for messages that list what is
 * accepted). */
void tb_dlq_class_list(char *buf, size_t cap);
/* The meaning of class |c|, for help texts. */
const char *tb_dlq_class_meaning(tb_dlq_class c);

/* One entry. Written by the engine with borrowed fields; read back with every field owned by the
 * entry (free with tb_dlq_entry_free). */
typedef struct tb_dlq_entry {
  int64_t no;             /* the row's number: a short name for `dlq show N` (read only) */
  const char *msg_id;     /* the envelope id; for an undecodable body the Nats-Msg-Id header, else
                             "<stream>:<seq>" */
  const char *event_type; /* "" when the body could not be decoded */
  const char *tier;
  const char *reason_class; /* a TB_DLQ_CLASSES name */
  const char *error;        /* the last error, as the engine logged it */
  const char *subject;      /* the original subject */
  const char *headers_json; /* the original headers, {"key": ["value", ...]}, or NULL */
  const void *payload;      /* the original body, |len| bytes */
  size_t len;
  const char *stream; /* where it was: stream and sequence, deliveries made */
  uint64_t stream_seq, deliveries;
  uint64_t dlq_seq;             /* its copy in the TB_DLQ stream (0 when unknown) */
  int64_t at_us;                /* when it was (last) dead-lettered */
  int64_t replays, replayed_us; /* `dlq replay` rounds so far, and the last one's time */
} tb_dlq_entry_t;

void tb_dlq_entry_free(tb_dlq_entry_t *e);

/* Records |e| (inside the caller's transaction). A message dead-lettered again (a replay that
 * failed again, or a process that died between the DLQ publish and the commit) replaces its
 * entry and keeps its replay count. TB_ERR_INVALID for an empty msg_id or an unknown class. */
tb_status tb_store_dlq_put(tb_store_t *st, const tb_dlq_entry_t *e);

/* Which entries list, replay and purge take; "" or 0 leaves a criterion out. */
typedef struct tb_dlq_filter {
  const char *reason_class;
  const char *tier;
  int64_t since_us;
  int64_t limit; /* 0 = no limit */
} tb_dlq_filter_t;

/* Calls |fn| for each entry matching |f|, oldest first, with fields borrowed for the call only.
 * |fn| returns non-zero to stop. It must not write to the store (copy what it needs). */
tb_status tb_store_dlq_list(tb_store_t *st, const tb_dlq_filter_t *f,
                            int (*fn)(void *arg, const tb_dlq_entry_t *e), void *arg);

/* Reads the entry whose msg_id is |key|, or else whose number is |key|, into |out| (owned; free
 * with tb_dlq_entry_free). *found = 0 when there is none. */
tb_status tb_store_dlq_get(tb_store_t *st, const char *key, tb_dlq_entry_t *out, int *found);

/* Removes entry |msg_id|. The processed record stays: the message is still dead, and a copy
 * arriving again is not applied. *removed (may be NULL) = 1 when there was one. */
tb_status tb_store_dlq_delete(tb_store_t *st, const char *msg_id, int *removed);

/* Readies entry |msg_id| for a replay, in one transaction of its own: when the message was since
 * applied (a replay already took effect) *round = 0 and nothing changes; otherwise its 'dead'
 * processed record is dropped, so the replayed copy can be applied once, and the entry's replay
 * count goes up: *round is the new count, which names the copy (two replays racing get the same
 * round, and the stream's dedupe keeps one copy). TB_ERR_NOT_FOUND when there is no entry. */
tb_status tb_store_dlq_replay_begin(tb_store_t *st, const char *msg_id, int64_t *round);

#endif
