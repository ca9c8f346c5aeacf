/* Shared by the HTTP server core (http.c) and its routes (routes*.c): the server, one request as a
 * route sees it, and the helpers every route uses to read its input (query arguments, a JSON
 * body) and to answer, so that every route refuses bad input the same way: 400 naming the
 * field. */
#ifndef TB_HTTP_INTERNAL_H
#define TB_HTTP_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>

#include "config/config.h"
#include "http/http.h"
#include "store/store.h"

struct tb_http_sampler;

struct tb_http {
  tb_http_opts_t o;         /* copied; the pointers inside are borrowed */
  char token[256];          /* "" = none */
  struct MHD_Daemon *mhd;   /* owned */
  pthread_mutex_t store_mu; /* one request at a time on the store connection */
  int port;
  struct tb_http_sampler *sampler; /* utilisation over time (routes_monitor.c); owned */
};

#define TB_HTTP_MAX_PARAMS 2

/* One request, as the routes see it. The body is complete when a route runs. */
typedef struct tb_http_req {
  struct MHD_Connection *conn;
  const char *method;
  const char *path; /* without the query string, percent-decoded */
  char *body;       /* owned by the server; NUL-terminated; NULL when empty */
  size_t len;
  /* The path's {id} segments, in order (routes.c's table says where they are): copies owned by
   * the router, valid for the call. */
  const char *params[TB_HTTP_MAX_PARAMS];
} tb_http_req_t;

/* What a route answers: |status| with |body| (owned, NUL-terminated) of |type|. */
typedef struct tb_http_resp {
  unsigned status;
  char *body;
  const char *type; /* static string */
} tb_http_resp_t;

typedef void (*tb_http_route_fn)(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);

/* Sets |r| to a JSON answer: |status| with |j|, whose reference it steals. */
void tb__http_json(tb_http_resp_t *r, unsigned status, json_t *j);

/* Sets |r| to {"error": <message>, "field": <field>} (field omitted when NULL). */
void tb__http_error(tb_http_resp_t *r, unsigned status, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Answers a failed call of a lower layer by its status: TB_ERR_NOT_FOUND 404, TB_ERR_INVALID and
 * TB_ERR_JSON 400 (naming |field|, may be NULL), TB_ERR_BUSY 503, TB_ERR_UNAVAILABLE and
 * TB_ERR_TIMEOUT 503 (NATS), TB_ERR_NATS 502, anything else 500; the message is |what| and
 * tb_errdetail(). */
void tb__http_fail(tb_http_resp_t *r, tb_status st, const char *field, const char *what);

/* Finds the route for |req| and runs it; a path with no route is 404, a route with another method
 * 405. Called with no lock held. */
void tb__http_route(tb_http_t *h, tb_http_req_t *req, tb_http_resp_t *resp);

/* ---------------------------------------------------------------- input */

/* Refuses (400 naming it, returns -1) a query argument that is not in |allowed| (NULL-terminated)
 * or that is given twice; 0 when all are known. */
int tb__http_args_check(const tb_http_req_t *req, tb_http_resp_t *resp, const char *const *allowed);

/* Query argument |name| (borrowed from the connection), or NULL when absent. An empty value
 * ("?status=") counts as absent. */
const char *tb__http_arg(const tb_http_req_t *req, const char *name);

/* Query argument |name| as an integer in [lo, hi] into *out, |def| when absent. -1 after a 400
 * naming it. */
int tb__http_arg_int(const tb_http_req_t *req, tb_http_resp_t *resp, const char *name, int64_t lo,
                     int64_t hi, int64_t def, int64_t *out);

/* The request body as a JSON object (new reference), or NULL after a 400 ("body": malformed JSON
 * with its line and column, or not an object). An empty body is {} when |optional|, else a 400.
 * Duplicate keys are refused: which one would win is not the client's guess to make. */
json_t *tb__http_body_object(const tb_http_req_t *req, tb_http_resp_t *resp, int optional);

/* One field a route takes from a JSON object. */
typedef enum {
  TB_F_STRING,         /* out: const char ** (borrowed from the object), never "" */
  TB_F_BOOL,           /* out: int *, 0 or 1 */
  TB_F_NUMBER,         /* out: double * (an integer or a real) */
  TB_F_OBJECT,         /* out: json_t ** (borrowed) */
  TB_F_ARRAY_OR_OBJECT /* out: json_t ** (borrowed) */
} tb_http_ftype;
typedef struct tb_http_field {
  const char *name;
  tb_http_ftype type;
  int required;
  void *out;
} tb_http_field_t;

/* Reads |obj|'s keys into |fields| (|n| of them; outputs of absent fields are left alone):
 * -1 after a 400 naming the key for an unknown key, a value of the wrong type, an empty string
 * or a missing required field. |prefix| (NULL at the top) names a nested object in the field:
 * "context.hoursStuck". */
int tb__http_fields(tb_http_resp_t *resp, json_t *obj, const char *prefix,
                    const tb_http_field_t *fields, int n);

/* An opaque page cursor: |text| (what the route needs to resume, e.g. "wf:1234") encoded as
 * base64url into |buf|. */
void tb__http_cursor_make(const char *text, char *buf, size_t cap);

/* Decodes |cursor| into |out| (cap bytes) when it is one that tb__http_cursor_make made from a
 * text starting with |prefix|; the rest after the prefix goes to |out|. -1 after a 400 naming
 * "cursor" otherwise. */
int tb__http_cursor_read(tb_http_resp_t *resp, const char *cursor, const char *prefix, char *out,
                         size_t cap);

/* ---------------------------------------------------------------- text answers */

/* A growing text buffer (the Prometheus exposition); |oom| set once memory ran out, after which
 * puts do nothing. */
typedef struct tb_http_text {
  char *buf;
  size_t len, cap;
  int oom;
} tb_http_text_t;

/* Appends printf-style to |t|. */
void tb__http_put(tb_http_text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- figures (routes.c) */

/* One tier's figures: the store's counters and histograms (every worker sharing the database),
 * its counters per domain, and its consumers' figures on the server, per domain and summed; the
 * per-domain arrays are in cfg->domains order. */
typedef struct tb_http_tier_figures {
  tb_store_tier_stats_t s;
  tb_store_counters_t d_counts[TB_MAX_DOMAINS];
  int have_queue; /* every domain's consumer answered */
  uint64_t pending, in_flight, redelivered;
  int have_domain[TB_MAX_DOMAINS];
  uint64_t d_pending[TB_MAX_DOMAINS], d_in_flight[TB_MAX_DOMAINS], d_redelivered[TB_MAX_DOMAINS];
} tb_http_tier_figures_t;

/* 1 when the server has a bus and its NATS connection is up. The consumers are asked only then:
 * a request on a connection that is down waits out its whole timeout. */
int tb__http_nats_up(const tb_http_t *h);

/* A new array of cfg->n_tiers figures (caller frees with free()), or NULL after a 500. With NATS
 * down the consumers' figures are left out (have_queue 0) rather than waited for. */
tb_http_tier_figures_t *tb__http_figures(tb_http_t *h, tb_http_resp_t *resp);

/* ---------------------------------------------------------------- routes by file */

/* routes_workflows.c */
void tb__http_post_execute(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_post_execute_prio(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_get_workflows(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_get_workflow(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_post_workflow_cancel(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_post_job_retry(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
/* routes_dlq.c */
void tb__http_get_dlq(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_get_activity(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_post_dlq_replay(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
/* Replays dead letter |key| on |tier| (NULL = its own) into |resp|, under the store lock; shared
 * by POST /api/dlq/{id}/replay and POST /api/jobs/{id}/retry. |not_found| (NULL = the store's
 * words) is the 404's message when there is no such entry. */
void tb__http_dlq_replay(tb_http_t *h, const char *key, const char *tier, const char *not_found,
                         tb_http_resp_t *resp);
/* routes_repos.c */
void tb__http_get_repositories(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_get_repository(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_get_distribution(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_get_syncs(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
/* routes_monitor.c */
void tb__http_get_monitoring(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);

/* The dashboard (routes_ui.c): its files, and the figures it polls that no other route answers. */
void tb__http_ui_index(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_ui_js(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_ui_css(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_get_tiers(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
void tb__http_get_schedules(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp);
/* The monitoring families of GET /metrics (workflows, escalations, outbox, scheduler,
 * utilisation, repository inversions), appended to |t| with |put| semantics; -1 after a 500. */
int tb__http_metrics_monitor(tb_http_t *h, const tb_http_tier_figures_t *f, tb_http_text_t *t,
                             tb_http_resp_t *resp);

/* The utilisation sampler (routes_monitor.c): a thread that reads every tier's in-flight count
 * every TB_HTTP_SAMPLE_MS and keeps the last TB_HTTP_SAMPLES, so that /api/monitoring can show
 * utilisation over time without a Prometheus. Started by tb_http_start when a bus is given;
 * stop accepts NULL. */
#define TB_HTTP_SAMPLE_MS 5000
#define TB_HTTP_SAMPLES 720 /* one hour */
tb_status tb__http_sampler_start(tb_http_t *h);
void tb__http_sampler_stop(tb_http_t *h);

#endif
