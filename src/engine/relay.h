/* The outbox relay: a thread with its own SQLite connection that publishes the outbox rows
 * (store.h, tb_store_outbox_*) to JetStream with the row's msg_id as Nats-Msg-Id and deletes
 * each row once the stream acked it. A crash between commit and publish loses nothing (the rows
 * are durable); a crash between publish and delete duplicates nothing (the stream drops the
 * second publish inside its duplicate window). Several relays may share one database file (one
 * per worker process): they may publish the same row twice, which the stream absorbs the same
 * way. Delivery order across rows is oldest first, except that a failing row does not hold back
 * the rows behind it. */
#ifndef TB_ENGINE_RELAY_H
#define TB_ENGINE_RELAY_H

#include <stdint.h>

#include "bus/bus.h"
#include "tierbus.h"

typedef struct tb_relay tb_relay_t;

/* Rows taken per pass: one read, then the deletes of the whole pass in one write transaction (the
 * engine's next batch, or the relay's own: see tb_relay_take_acked). */
#define TB_RELAY_BATCH 64
/* Acked rows wait at most this long, or until this many wait, for an engine batch to delete them
 * before the relay deletes them in a transaction of its own. */
#define TB_RELAY_HANDOFF_MS 100
#define TB_RELAY_HANDOFF_MAX 512
/* A failing row is retried after interval * 2^(attempts-1), capped here. */
#define TB_RELAY_MAX_BACKOFF_MS 30000
/* How long tb_relay_stop keeps publishing rows that are due before it gives up on them (they stay
 * in the outbox for the next run). */
#define TB_RELAY_DRAIN_MS 3000

/* Opens a connection of its own to the database at |db_path| (a file; ":memory:" is
 * TB_ERR_INVALID since another connection would see a different database) and starts the relay
 * thread. It wakes every |interval_ms| (> 0), and at once on tb_relay_kick(). |bus| is borrowed
 * and must outlive the relay. On failure nothing is left running. Caller stops and frees with
 * tb_relay_stop(). */
tb_status tb_relay_start(tb_relay_t **out, const char *db_path, tb_bus_t *bus, int interval_ms);

/* Wakes the relay now (rows were just committed). Cheap; safe from any thread. */
void tb_relay_kick(tb_relay_t *r);

/* Publishes what is due for at most TB_RELAY_DRAIN_MS (less if the server is unreachable), then
 * joins the thread, closes the connection and frees. Rows not delivered stay for the next run.
 * Accepts NULL. */
void tb_relay_stop(tb_relay_t *r);

/* The ids of outbox rows the stream has acked and that wait for their delete, handed to the
 * caller, which deletes them (tb_store_outbox_delete) in the write transaction it has open and
 * then reports with tb_relay_acked_settled(). The engine does this in every batch: the relay then
 * needs no write transaction of its own, and never waits for the write lock the executor holds
 * (it waited up to tens of ms in SQLite's busy handler, and each following command waited behind
 * it). Until settled, the relay does not publish those rows again. Returns how many (0: none, or
 * another caller holds the last ones); *ids is the relay's, valid until the settle. Accepts NULL.
 * Thread-safe. */
int tb_relay_take_acked(tb_relay_t *r, const int64_t **ids);

/* Ends a tb_relay_take_acked() that returned ids (only the caller that took them may settle):
 * |committed| 1 when the deletes committed; 0 when the transaction rolled back, and the rows wait
 * for the next taker. Accepts NULL. */
void tb_relay_acked_settled(tb_relay_t *r, int committed);

/* What one relay did since it started. */
typedef struct tb_relay_stats {
  int64_t published;  /* rows the stream stored */
  int64_t duplicates; /* rows the stream already had (a re-publish after a crash): delivered too */
  int64_t failures;   /* failed publish attempts */
  int64_t passes;     /* times the relay read the outbox */
} tb_relay_stats_t;

/* Copies the relay's figures (thread-safe). */
void tb_relay_stats(tb_relay_t *r, tb_relay_stats_t *out);

#endif
