/* Replay: re-drives the history kept in the tier streams through the engine. Each selected
 * stream is read by an ordered consumer (ephemeral, no acks: nothing is left behind on the
 * server), started by time or sequence; the streams are merged by their stored time, so a
 * follow-up is applied after the message that caused it, as it was live. The engine's processed
 * record makes a second replay of the same message a no-op. */
#ifndef TB_REPLAY_REPLAY_H
#define TB_REPLAY_REPLAY_H

#include <signal.h>
#include <stdint.h>

#include "api/handler.h"
#include "bus/bus.h"
#include "codec/catalogue.h"
#include "config/config.h"
#include "engine/engine.h"
#include "store/store.h"

/* Where the figures of a run stand; passed to the progress callback and returned at the end. */
typedef struct tb_replay_stats {
  int64_t total;    /* messages in the selected range when the run started (for the ETA) */
  int64_t read;     /* messages taken from the streams that passed the filters */
  int64_t applied;  /* handler ran and committed (forced ones included) */
  int64_t forced;   /* of applied: run again with --force */
  int64_t skipped;  /* already processed: no second effect */
  int64_t failed;   /* handler failed (left for a later replay or the live workers) */
  int64_t dead;     /* rejected or undecodable: recorded as dead letters */
  int64_t pruned;   /* published before the prune horizon with no record: not re-applied */
  int64_t filtered; /* read but not of the --event type */
  int64_t streams;  /* streams read */
  double secs;
} tb_replay_stats_t;

typedef void (*tb_replay_progress_fn)(void *arg, const tb_replay_stats_t *s);

typedef struct tb_replay_opts {
  int tiers[TB_MAX_TIERS]; /* indexes into cfg->tiers */
  int n_tiers;
  int64_t since_us, until_us; /* stream time bounds (wall clock); 0 = open */
  uint64_t from_seq, to_seq;  /* per-stream sequence bounds; 0 = open */
  /* When set, each stream's first sequence instead of from_seq (0 = its start): a rebuild from a
   * snapshot resumes every stream where the snapshot left it. */
  uint64_t (*start_seq)(void *arg, const char *stream);
  void *start_arg;
  const char *subject;            /* NATS filter (wildcards allowed) or NULL */
  const char *event;              /* catalogue event name or NULL */
  int64_t limit;                  /* most messages to re-drive; 0 = no limit */
  int dry_run;                    /* read and judge each message, write nothing */
  tb_handler_safe_fn force;       /* --force: re-run handlers it accepts; NULL = never */
  int batch;                      /* messages per transaction; 0 = commit_batch_max */
  tb_replay_progress_fn progress; /* called about 4 times a second; may be NULL */
  void *progress_arg;
  volatile sig_atomic_t *stop; /* set to non-zero to stop after the current batch; may be NULL */
} tb_replay_opts_t;

/* Re-drives the selected history through |handlers| into |store|: in replay mode (see
 * tb_engine_set_replay), with nothing acked and nothing published. A message the store already
 * processed is skipped (or re-run with --force when its handler is safe to re-apply). The stream
 * state is read once at the start: messages published meanwhile are left to the live workers.
 * TB_ERR_INVALID when the subject filter selects no stream; TB_ERR_NATS / TB_ERR_UNAVAILABLE
 * when a stream cannot be read; TB_ERR_STORE when a batch cannot commit (the batches before it
 * stay committed); TB_ERR_STOPPED when |stop| was set. |out| is filled in every case. All
 * arguments are borrowed. */
tb_status tb_replay_run(tb_bus_t *bus, const tb_config_t *cfg, const tb_catalogue_t *cat,
                        tb_store_t *store, tb_handler_lookup_fn handlers,
                        const tb_replay_opts_t *opts, tb_replay_stats_t *out);

/* Collects the Nats-Msg-Id of every message in |stream| (the command stream, for a rebuild) into
 * a new array *ids of *n strings. Caller frees with tb_replay_ids_free(). An absent or empty
 * stream gives none. */
tb_status tb_replay_stream_ids(tb_bus_t *bus, const char *stream, char ***ids, int64_t *n);
void tb_replay_ids_free(char **ids, int64_t n);

/* Writes into |buf| the intersection of NATS subject filter |filter| with |pattern| (a stream's
 * "tb.evt.high.crm.>"): the subjects both match. Returns 0 when they share none. */
int tb_replay_subject_meet(const char *filter, const char *pattern, char *buf, size_t cap);

#endif
