/* The HTTP server core: libmicrohttpd's daemon on a small thread pool, the request body
 * gathered up to a limit, the bearer token, and the answer. What each path does is routes.c. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "http/internal.h"

#define DEFAULT_MAX_BODY (1024 * 1024)
#define POOL_THREADS 2 /* the machine has two cores; the store takes one request at a time */

/* Gathered across the access handler's calls for one request; freed when MHD completes it. */
typedef struct conn_state {
  char *body;
  size_t len, cap;
  int too_large;
} conn_state_t;

void tb__http_json(tb_http_resp_t *r, unsigned status, json_t *j) {
  r->status = status;
  r->type = "application/json";
  r->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  if (r->body == NULL) { /* out of memory, or a NULL built from a failed json_pack */
    r->status = 500;
    r->body = strdup("{\"error\":\"out of memory building the answer\"}");
  }
  json_decref(j);
}

void tb__http_error(tb_http_resp_t *r, unsigned status, const char *field, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  json_t *j = json_pack("{s:s}", "error", msg);
  if (j != NULL && field != NULL) json_object_set_new(j, "field", json_string(field));
  tb__http_json(r, status, j);
}

/* 1 if |a| and |b| are equal, taking the same time whatever the first difference: the token must
 * not be found a byte at a time by timing. */
static int same_secret(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char diff = (unsigned char)(la != lb);
  for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
  return diff == 0;
}

/* 1 if the request may go on: the token matches, or none is set, or the path is not /api. */
static int authorized(const tb_http_t *h, const tb_http_req_t *req) {
  if (h->token[0] == '\0' || strncmp(req->path, "/api/", 5) != 0) return 1;
  const char *auth = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
  if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0) return 0;
  return same_secret(auth + 7, h->token);
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, tb_http_resp_t *r) {
  const char *body = r->body ? r->body : "";
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
  free(r->body);
  if (resp == NULL) return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", r->type ? r->type : "application/json");
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  if (r->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
  enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  tb_http_t *h = cls;
  (void)version;
  conn_state_t *cs = *con_cls;
  if (cs == NULL) { /* the headers are in; the body, if any, comes in the next calls */
    cs = calloc(1, sizeof(*cs));
    if (cs == NULL) return MHD_NO;
    *con_cls = cs;
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (cs->too_large || cs->len + n > h->o.max_body) {
      cs->too_large = 1; /* keep reading (and dropping) so that the answer can be sent */
      return MHD_YES;
    }
    if (cs->len + n + 1 > cs->cap) {
      size_t cap = cs->cap ? cs->cap : 4096;
      while (cap < cs->len + n + 1) cap *= 2;
      char *b = realloc(cs->body, cap);
      if (b == NULL) return MHD_NO;
      cs->body = b;
      cs->cap = cap;
    }
    memcpy(cs->body + cs->len, upload_data, n);
    cs->len += n;
    cs->body[cs->len] = '\0';
    return MHD_YES;
  }
  tb_http_req_t req = {
      .conn = conn, .method = method, .path = url, .body = cs->body, .len = cs->len};
  tb_http_resp_t resp = {0};
  if (!authorized(h, &req))
    tb__http_error(&resp, 401, NULL, "missing or wrong bearer token (Authorization: Bearer ...)");
  else if (cs->too_large)
    tb__http_error(&resp, 413, NULL, "body over %zu bytes", h->o.max_body);
  else
    tb__http_route(h, &req, &resp);
  return send_resp(conn, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)conn;
  (void)toe;
  conn_state_t *cs = *con_cls;
  if (cs != NULL) free(cs->body);
  free(cs);
  *con_cls = NULL;
}

static int is_loopback(const struct sockaddr_in *a) {
  return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
}

tb_status tb_http_start(tb_http_t **out, const tb_http_opts_t *opts) {
  const char *bind = opts->bind ? opts->bind : "127.0.0.1";
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opts->port)};
  if (inet_pton(AF_INET, bind, &addr.sin_addr) != 1)
    return tb__fail(TB_ERR_INVALID, "http: bind address '%s' is not an IPv4 address", bind);
  const char *token = opts->token ? opts->token : "";
  if (token[0] == '\0' && !is_loopback(&addr))
    return tb__fail(TB_ERR_INVALID,
                    "http: refusing to serve the API on %s without a token: set TIERBUS_API_TOKEN "
                    "(or bind to 127.0.0.1)",
                    bind);
  if (strlen(token) >= sizeof(((tb_http_t *)0)->token))
    return tb__fail(TB_ERR_INVALID, "http: the API token is over %zu characters",
                    sizeof(((tb_http_t *)0)->token) - 1);
  tb_http_t *h = calloc(1, sizeof(*h));
  if (h == NULL) return tb__fail(TB_ERR_NOMEM, "http server");
  h->o = *opts;
  if (h->o.max_body == 0) h->o.max_body = DEFAULT_MAX_BODY;
  snprintf(h->token, sizeof(h->token), "%s", token);
  pthread_mutex_init(&h->store_mu, NULL);
  h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0,
                            NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, &addr,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)POOL_THREADS,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
  if (h->mhd == NULL) {
    pthread_mutex_destroy(&h->store_mu);
    free(h);
    return tb__fail(TB_ERR_IO, "http: cannot listen on %s:%d (in use, or not allowed)", bind,
                    opts->port);
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : opts->port;
  *out = h;
  return TB_OK;
}

int tb_http_port(const tb_http_t *h) {
  return h->port;
}

void tb_http_stop(tb_http_t *h) {
  if (h == NULL) return;
  MHD_stop_daemon(h->mhd);
  pthread_mutex_destroy(&h->store_mu);
  free(h);
}
