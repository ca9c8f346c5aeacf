/* tierbus public interface: the status codes and the publisher API that other C programs link
 * against (libtierbus, `pkg-config --cflags --libs tierbus`; examples/publish_event.c). Everything
 * else in src/ is internal. */
#ifndef TIERBUS_H
#define TIERBUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, text). Zero is success; every other value is a failure class. Callers branch on the
 * class and print tb_strerror() plus tb_errdetail() for the specifics. */
#define TB_STATUS_MAP(XX)                                                                          \
  XX(OK, "ok")                                                                                     \
  XX(ERR_NOMEM, "out of memory")                                                                   \
  XX(ERR_INVALID, "invalid argument")                                                              \
  XX(ERR_CONFIG, "bad configuration")                                                              \
  XX(ERR_JSON, "bad JSON input")                                                                   \
  XX(ERR_UNKNOWN_EVENT, "unknown event type")                                                      \
  XX(ERR_DECODE, "malformed message")                                                              \
  XX(ERR_TOO_LARGE, "payload too large")                                                           \
  XX(ERR_NATS, "NATS error")                                                                       \
  XX(ERR_UNAVAILABLE, "NATS server unavailable")                                                   \
  XX(ERR_STORE, "SQLite error")                                                                    \
  XX(ERR_BUSY, "resource busy, retry later")                                                       \
  XX(ERR_NOT_FOUND, "not found")                                                                   \
  XX(ERR_TIMEOUT, "timed out")                                                                     \
  XX(ERR_IO, "I/O error")                                                                          \
  XX(ERR_HANDLER, "handler failed")                                                                \
  XX(ERR_STOPPED, "stopped")                                                                       \
  XX(ERR_AUTH, "NATS refused the credentials or the TLS handshake")                                \
  XX(ERR_NOT_IMPLEMENTED, "not implemented")

typedef enum tb_status {
#define TB__STATUS_ENUM(name, text) TB_##name,
  TB_STATUS_MAP(TB__STATUS_ENUM)
#undef TB__STATUS_ENUM
      TB__STATUS_COUNT
} tb_status;

/* Static text for a status; never NULL. */
const char *tb_strerror(tb_status s);
/* Static symbolic name ("ERR_DECODE"); never NULL. */
const char *tb_err_name(tb_status s);
/* Detail of the last failure on this thread ("" if none). Borrowed; valid until the next failure
 * on the same thread. */
const char *tb_errdetail(void);

/* ---------------------------------------------------------------- publisher API */

/* A connection to a tierbus deployment's bus, for publishing events the way `tierbus publish`
 * does: the payload is checked against the event's schema, the tier resolved (the caller's, else
 * the config's event_tiers, else the catalogue's), the envelope built, and the message published
 * with its id as Nats-Msg-Id and acknowledged by its stream. Use one client from one thread at a
 * time; open one per thread to publish from several. */
typedef struct tb_client tb_client_t;

typedef struct tb_client_opts {
  /* The deployment's tierbus.yaml (tiers, event_tiers, credentials). NULL: $TIERBUS_CONFIG, else
   * config/tierbus.yaml under the working directory, else the one of the source tree the
   * library was built from. */
  const char *config_path;
  const char *nats_url; /* NULL: the config's nats_url ($TIERBUS_NATS_URL overrides it) */
  /* The data directory whose nats-password `tierbus dev` generated; NULL: the config's data_dir
   * ($TIERBUS_DATA_DIR). Credentials in the config (nats_user/nats_password, nats_token,
   * nats_creds) win over it. */
  const char *data_dir;
} tb_client_opts_t;

/* Loads the config and the event catalogue and connects (one attempt). TB_ERR_CONFIG when the
 * config is wrong, TB_ERR_UNAVAILABLE when no server answers, TB_ERR_AUTH when it refuses the
 * credentials; tb_errdetail() says which and where. |opts| may be NULL (all defaults). On
 * success *out is the client; caller frees with tb_client_close(). */
tb_status tb_client_connect(tb_client_t **out, const tb_client_opts_t *opts);

typedef struct tb_client_event {
  const char *type;           /* catalogue event name: "CLIENT_CREATED" (`tierbus events`) */
  const char *payload_json;   /* the event's fields as a JSON object: "{\"client_id\": \"c1\"}" */
  const char *priority;       /* a tier name ("critical"); NULL: the event's configured tier */
  const char *id;             /* message id, 1 to 127 bytes; NULL: a time-ordered one is made */
  const char *correlation_id; /* may be NULL */
} tb_client_event_t;

typedef struct tb_client_ack {
  char id[128];      /* the id published: |ev->id|, or the one generated */
  char tier[64];     /* the tier it went to */
  char subject[256]; /* tb.evt.<tier>.<domain>.<event> */
  uint64_t seq;      /* its sequence in the tier's stream for its domain */
  int duplicate;     /* 1: the stream already held this id, so nothing new was stored */
} tb_client_ack_t;

/* Publishes one event and waits for its stream's acknowledgement. Refused before anything is
 * sent: TB_ERR_UNKNOWN_EVENT, TB_ERR_JSON (bad JSON, unknown field, wrong type), TB_ERR_INVALID
 * (unknown tier, id too long), TB_ERR_TOO_LARGE; the detail names the problem and what is
 * accepted. Publishing the same id again is safe: the stream stores it once (ack->duplicate).
 * |ack| may be NULL. */
tb_status tb_client_publish(tb_client_t *c, const tb_client_event_t *ev, tb_client_ack_t *ack);

/* Closes the connection and frees the client. Accepts NULL. */
void tb_client_close(tb_client_t *c);

#ifdef __cplusplus
}
#endif
#endif
