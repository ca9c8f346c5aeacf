/* Shared by the HTTP server core (http.c) and its routes (routes.c). */
#ifndef TB_HTTP_INTERNAL_H
#define TB_HTTP_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>

#include "http/http.h"
#include "store/store.h"

struct tb_http {
  tb_http_opts_t o;         /* copied; the pointers inside are borrowed */
  char token[256];          /* "" = none */
  struct MHD_Daemon *mhd;   /* owned */
  pthread_mutex_t store_mu; /* one request at a time on the store connection */
  int port;
};

/* One request, as the routes see it. The body is complete when a route runs. */
typedef struct tb_http_req {
  struct MHD_Connection *conn;
  const char *method;
  const char *path; /* without the query string */
  char *body;       /* owned by the server; NUL-terminated; NULL when empty */
  size_t len;
} tb_http_req_t;

/* What a route answers: |status| with |body| (owned, NUL-terminated) of |type|. */
typedef struct tb_http_resp {
  unsigned status;
  char *body;
  const char *type; /* static string */
} tb_http_resp_t;

/* Sets |r| to a JSON answer: |status| with |j|, whose reference it steals. */
void tb__http_json(tb_http_resp_t *r, unsigned status, json_t *j);

/* Sets |r| to {"error": <message>, "field": <field>} (field omitted when NULL). */
void tb__http_error(tb_http_resp_t *r, unsigned status, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One tier's figures: the store's (every worker sharing the file) and its consumers' on the
 * server, as `tierbus stats` reads them. */
typedef struct tier_figures {
  tb_store_tier_stats_t s;
  int have_queue; /* the consumers answered */
  uint64_t pending, in_flight, redelivered;
} tier_figures_t;

/* Reads every tier's figures into |out| (cfg->n_tiers entries). TB_OK, or the store's status. */
tb_status tb__http_read_figures(tb_http_t *h, tier_figures_t *out);

/* The figures of every tier, allocated (the caller frees them), or NULL after setting |resp| to
 * a 500. */
tier_figures_t *tb__http_figures(tb_http_t *h, tb_http_resp_t *resp);

/* A route: what answers |method| on |path|. */
typedef void (*tb_http_route_fn)(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);

/* The dashboard's routes (routes_ui.c): its files, and the figures it polls that no other route
 * answers. */
void tb__http_ui_index(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_ui_js(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_ui_css(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_get_tiers(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_get_schedules(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);

/* Finds the route for |req| and runs it; a path with no route is 404, a route with another method
 * 405. Called with no lock held. */
void tb__http_route(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);

#endif
