/* The HTTP API (libmicrohttpd): tierbus's figures, its publish and workflow paths, the dead
 * letters and the repository priorities for the seeds' users, who reach their workflow systems
 * over HTTP. A server uses a NATS connection and a store connection (both borrowed from the
 * caller) and answers on a thread pool; every /api call needs the bearer token when one is set.
 * The routes are in routes*.c, their JSON shapes in the README. */
#ifndef TB_HTTP_HTTP_H
#define TB_HTTP_HTTP_H

#include <stddef.h>

#include "bus/bus.h"
#include "codec/catalogue.h"
#include "config/config.h"
#include "store/store.h"
#include "tierbus.h"

typedef struct tb_http tb_http_t;

typedef struct tb_http_opts {
  const char *bind; /* address to listen on; NULL = 127.0.0.1 */
  int port;         /* 0 = any free port (tb_http_port() tells which) */
  /* Every /api call must carry "Authorization: Bearer <token>". NULL or "" = no token, which the
   * caller allows only on loopback (tb_http_start refuses another bind without one). */
  const char *token;
  size_t max_body;    /* bytes; larger bodies get 413. 0 = 1 MiB */
  size_t max_headers; /* bytes of request line and headers; more get 413. 0 (or more than
                       * 16 KiB) = 16 KiB */
  /* Requests in progress at once: each waits on its thread (a publish for the stream's ack).
   * 0 = TB_HTTP_DEFAULT_THREADS (config.h, the default of config http_threads). */
  int threads;
  /* Borrowed, must outlive the server. The store is used under the server's own lock; the bus
   * may be NULL (then publishing answers 503 and /readyz says NATS is down). */
  const tb_config_t *cfg;
  const tb_catalogue_t *cat;
  tb_bus_t *bus;
  tb_store_t *store;
} tb_http_opts_t;

/* Starts listening. TB_ERR_INVALID for a non-loopback bind without a token or a bad address,
 * TB_ERR_IO when the port cannot be had (the detail names it). Caller stops with
 * tb_http_stop(). */
tb_status tb_http_start(tb_http_t **out, const tb_http_opts_t *opts);

/* The port it listens on. */
int tb_http_port(const tb_http_t *h);

/* Stops answering (requests under way finish) and frees. Accepts NULL. */
void tb_http_stop(tb_http_t *h);

#endif
