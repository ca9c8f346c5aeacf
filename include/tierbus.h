/* tierbus public interface: the status codes and the publisher API that other C programs link
 * against. Everything else in src/ is internal. */
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

#ifdef __cplusplus
}
#endif
#endif
