/* The contract between the engine and every event handler. It lives in api/, below both: the
 * handlers (workflows/, sched/) implement it, and the engine is handed a lookup at creation, so
 * the engine knows no handler by name and runs in its tests with fake ones. A handler runs inside
 * the batch's SQLite transaction; its writes commit together with the processed-message record,
 * so a redelivered message never has a second effect. A handler changes the database only (and,
 * outside a replay, files it may remove again): when a later message of its batch fails, the
 * engine rolls the batch back and runs the handler again in the same state, and a failing
 * handler's own writes are undone whatever it wrote before failing. */
#ifndef TB_API_HANDLER_H
#define TB_API_HANDLER_H

#include "codec/catalogue.h"
#include "codec/codec.h"
#include "config/config.h"
#include "store/repo.h"
#include "store/store.h"

typedef struct tb_handler_ctx {
  tb_store_t *store;         /* borrowed; the batch's transaction is open */
  const tb_config_t *cfg;    /* borrowed */
  const tb_catalogue_t *cat; /* borrowed; for handlers that publish catalogue events */
  const tb_decoded_t *msg;   /* borrowed: envelope, catalogue entry, payload */
  const char *tier;          /* tier the message was delivered on */
  tb_order_t order;          /* the message's place in its key's history */
  int *emitted;              /* set to 1 by tb_handler_emit: the batch has follow-ups to relay */
  int replay; /* 1 in `tierbus replay` and `rebuild`: the message is read back from the log, and
               * a handler leaves alone what is outside the database (files) */
} tb_handler_ctx_t;

/* Returns TB_OK to commit. A permanent failure (TB_ERR_INVALID: the event can never apply) sends
 * the message to the dead-letter stream at once; any other failure is retried with the tier's
 * backoff until max_deliver. A handler sets the detail with tb__fail(). */
typedef tb_status (*tb_handler_fn)(const tb_handler_ctx_t *ctx);

/* The handler registry as the engine sees it: the function bound to a catalogue handler name, or
 * NULL when there is none (the message is then dead-lettered, naming the handler). */
typedef tb_handler_fn (*tb_handler_lookup_fn)(const char *name);

/* Queues a follow-up message (a command on tb.cmd.<service>.<action>, an event on tb.evt...) in
 * the transactional outbox, in the handler's transaction: it is published by the relay only if
 * the handler's writes commit, and a failing handler leaves no follow-up. |msg_id| becomes the
 * Nats-Msg-Id; it must be deterministic for the step (for example "<workflow id>:<step>:<attempt>")
 * so that a retried step emitting it again sends it once. The message carries the headers
 * Tb-Cause-Id (the id of the message being handled) and Tb-Correlation-Id (when it has one).
 * Arguments are borrowed. TB_ERR_INVALID (detail names it) for an empty msg_id or an unpublishable
 * subject; TB_ERR_STORE/TB_ERR_BUSY from SQLite. Implemented in engine/emit.c. */
tb_status tb_handler_emit(const tb_handler_ctx_t *ctx, const char *subject, const char *msg_id,
                          const void *data, size_t len);

/* tb_handler_emit for a message due later: the relay holds it back until |not_before_us| (wall
 * clock). This is how a durable timer is kept: a row that survives any restart and is published
 * once, when due. */
tb_status tb_handler_emit_at(const tb_handler_ctx_t *ctx, const char *subject, const char *msg_id,
                             const void *data, size_t len, int64_t not_before_us);

#endif
