/* Dead letters seen from outside: an entry as JSON and the replay of one entry, shared by
 * `tierbus dlq` (cli/cmd_dlq.c) and the HTTP API (GET /api/dlq, POST /api/dlq/{id}/replay,
 * POST /api/jobs/{id}/retry). The entries themselves are store/dlq.h's. */
#ifndef TB_API_DLQ_H
#define TB_API_DLQ_H

#include <jansson.h>
#include <stdint.h>

#include "bus/bus.h"
#include "codec/catalogue.h"
#include "config/config.h"
#include "store/dlq.h"

/* Entry |e| as JSON: no, msg_id, reason, event_type, tier, error, subject, stream, stream_seq,
 * deliveries, dlq_seq, at (RFC 3339), replays (and replayed_at once replayed); with |full| also
 * its headers and payload_bytes. New reference; NULL when memory runs out. */
json_t *tb_dlq_entry_json(const tb_dlq_entry_t *e, int full);

typedef enum tb_dlq_replay_outcome {
  TB_DLQ_REPLAYED = 0,        /* a copy was published to its tier's subject */
  TB_DLQ_ALREADY_APPLIED = 1, /* an earlier replay took effect: nothing was sent */
  TB_DLQ_SKIPPED = 2,         /* its class cannot apply unchanged (malformed, too large...) */
} tb_dlq_replay_outcome;

/* What one replay did. Caller releases with tb_dlq_replay_result_clear. */
typedef struct tb_dlq_replay_result {
  tb_dlq_replay_outcome outcome;
  int64_t no;
  char *msg_id; /* the entry's id, whole (owned) */
  char reason_class[32];
  const char *tier;  /* the tier it was sent to (borrowed from the config) */
  char subject[256]; /* where the copy went (TB_DLQ_REPLAYED) */
  int64_t round;     /* the replay round that names the copy */
  uint64_t seq;      /* the copy's stream sequence */
  int duplicate;     /* the stream already had this round's copy */
} tb_dlq_replay_result_t;

void tb_dlq_replay_result_clear(tb_dlq_replay_result_t *r);

/* Replays entry |key| (its message id, or its number) on |tier| (NULL = the entry's own): when
 * its class can apply unchanged, its 'dead' processed record is dropped (tb_store_dlq_replay_begin)
 * and it is republished to its event subject on that tier, with its envelope's tier rewritten and
 * nothing else, under Nats-Msg-Id "dlq-replay:<round>:<id>" with Tb-Replay-Of and
 * Tb-Replay-Round headers, so that the copy applies once. Replaying an entry whose message was
 * since applied does nothing (TB_DLQ_ALREADY_APPLIED). TB_ERR_NOT_FOUND when there is no such
 * entry, TB_ERR_INVALID when the tier is not configured or the entry's subject is not an event
 * subject, the store's or the bus's status when they fail (the entry can then be replayed again:
 * nothing was applied). |out| is filled whenever the entry was found. */
tb_status tb_dlq_replay(tb_bus_t *bus, tb_store_t *store, const tb_config_t *cfg, const char *key,
                        const char *tier, tb_dlq_replay_result_t *out);

/* Seed 002's failed repository jobs: dead-lettered capture/repository.sync events since
 * |since_us|, by the is_workspace_repo their payload carried (decoded with |cat|); an entry whose
 * body cannot be decoded counts in *unknown. */
tb_status tb_dlq_repo_jobs_failed(tb_store_t *store, const tb_catalogue_t *cat, int64_t since_us,
                                  int64_t *workspace, int64_t *tracked_only, int64_t *unknown);

#endif
