/* The command simulator: answers every command on tb.cmd.> the way the owning service would
 * (email, AI generation, PDF, enrichment), with configurable latency and failure injection, so
 * that workflows can run end to end in demos and tests without any real service. Used by
 * `tierbus sim` and, in-process, by `tierbus dev --demo`. */
#ifndef TB_SIM_SIM_H
#define TB_SIM_SIM_H

#include <jansson.h>
#include <stdint.h>

#include "bus/bus.h"
#include "codec/catalogue.h"
#include "config/config.h"
#include "tierbus.h"
#include "tierbus/v1/command.pb-c.h"

#define TB_SIM_MAX_FAILS 32
#define TB_SIM_ACTION_MAX 128
/* A --fail rule whose code is this answers nothing at all (to exercise step timeouts). */
#define TB_SIM_DROP 0
/* Most subscribers one enrichment.submit may carry (seed 003 batches at most 100). */
#define TB_SIM_ENRICH_BATCH_MAX 100

/* One failure-injection rule: attempts 1..|attempts| of every command of |action| get |code|
 * (or nothing, for TB_SIM_DROP). Decided by Command.attempt alone, so it holds across restarts
 * and across several simulators sharing the consumer. */
typedef struct tb_sim_fail {
  char action[TB_SIM_ACTION_MAX]; /* "service.action" */
  int code;                       /* 400..599, or TB_SIM_DROP */
  uint32_t attempts;              /* 0 = every attempt */
} tb_sim_fail_t;

typedef struct tb_sim_opts {
  tb_bus_t *bus;             /* borrowed; must outlive the simulator */
  const tb_config_t *cfg;    /* borrowed; tiers for the replies, stream prefix */
  const tb_catalogue_t *cat; /* borrowed; command-reply and enrichment-complete */
  const char *durable;       /* consumer on the command stream; default "tb-sim" */
  int64_t latency_ms;        /* delay before each reply; default 0 */
  int64_t enrich_delay_ms;   /* delay between the submit reply and enrichment-complete */
  int max_inflight;          /* commands held at once (waiting out their latency); default 256 */
  tb_sim_fail_t fails[TB_SIM_MAX_FAILS];
  int n_fails;
} tb_sim_opts_t;

/* Fills |o| with the defaults; the caller then sets bus, cfg, cat and whatever else. */
void tb_sim_opts_init(tb_sim_opts_t *o);

/* Parses a --fail spec "ACTION=CODE[:N]" ("enrichment.submit=429:1", "email.send=drop") into
 * |out|. TB_ERR_INVALID with a detail naming the spec and the bad part: an action the simulator
 * does not answer, a code outside 400..599 that is not "drop", N not an integer >= 1. */
tb_status tb_sim_parse_fail(const char *spec, tb_sim_fail_t *out);

/* How the simulator answers one command. */
typedef struct tb_sim_answer {
  int drop;            /* 1: answer nothing (the rest is unset) */
  int32_t status_code; /* HTTP-like: 200, 400 (bad input), 404 (unknown action), injected... */
  char *result_json;   /* owned: the result object as compact JSON; "{}" on failure */
  char *error;         /* owned: why it failed; "" on success */
  /* enrichment.submit only: the enrichment-complete payload to publish after the reply (owned
   * reference), and its envelope id "enrich:<enrichment_id>". NULL / "" otherwise. */
  json_t *enrichment;
  char enrichment_msg_id[96];
} tb_sim_answer_t;

/* Computes the answer to |cmd| from |o|'s failure rules and the command vocabulary: a pure
 * function of the command (ids are "sim-<kind>-<hash of command_id>"), so a redelivered command
 * gets the same answer. Service and action come from the command's fields. Bad input is not a
 * failure here: it is a 400 answer naming the field. Returns TB_ERR_NOMEM only; on success the
 * caller frees with tb_sim_answer_free(). */
tb_status tb_sim_answer(const tb_sim_opts_t *o, const Tierbus__V1__Command *cmd,
                        tb_sim_answer_t *out);

/* Frees what an answer owns and zeroes it. Accepts a zeroed answer. */
void tb_sim_answer_free(tb_sim_answer_t *a);

/* Counters since start, for the demo and the stop message. */
typedef struct tb_sim_stats {
  int64_t commands;    /* commands taken from the stream (malformed ones included) */
  int64_t replies;     /* command-reply events published (any status) */
  int64_t failures;    /* of those, non-2xx answers */
  int64_t dropped;     /* commands answered with nothing (drop rules) */
  int64_t malformed;   /* commands that could not be decoded: terminated */
  int64_t enrichments; /* enrichment-complete events published */
} tb_sim_stats_t;

typedef struct tb_sim tb_sim_t;

/* Creates (or updates) the shared durable consumer on the command stream, which must exist
 * (tb_bus_provision), and starts the answering thread. |o| is copied. TB_ERR_INVALID for bad
 * options, the bus's status when the consumer cannot be made. Caller stops and frees with
 * tb_sim_stop(). */
tb_status tb_sim_start(tb_sim_t **out, const tb_sim_opts_t *o);

/* Stops taking commands, finishes the ones already due within a short grace (publishing and
 * acking them), hands the rest back to the stream unanswered (nak: another simulator or the next
 * run answers them), joins the thread and frees. |final| (may be NULL) receives the counters at
 * the end. Accepts a NULL |sim|. */
void tb_sim_stop(tb_sim_t *sim, tb_sim_stats_t *final);

/* Copies the counters (any thread). */
void tb_sim_get_stats(tb_sim_t *sim, tb_sim_stats_t *out);

#endif
