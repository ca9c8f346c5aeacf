/* The HTTP server core: libmicrohttpd's daemon on a thread pool, the request headers and body
 * limited in size, the bearer token, the input helpers every route shares, and the answer. What
 * each path does is routes*.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec/codec.h"
#include "core/status.h"
#include "http/internal.h"

#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_MAX_HEADERS (16 * 1024)
/* A request's headers must fit in libmicrohttpd's per-connection memory pool, or it answers the
 * request itself (431, before any of this code runs). The pool is made larger than our own
 * header limit so that a request just over the limit gets our 413 with a JSON body; one over the
 * pool gets libmicrohttpd's answer. */
#define CONN_MEMORY (DEFAULT_MAX_HEADERS * 4)
/* More connections than this are refused by libmicrohttpd at accept: the load is 200
 * concurrent clients, and each connection costs one descriptor and CONN_MEMORY. */
#define CONNECTION_LIMIT 1024

/* Gathered across the access handler's calls for one request; freed when MHD completes it. */
typedef struct conn_state {
  char *body;
  size_t len, cap;
  int too_large;
  size_t header_bytes; /* names and values of every header, as received */
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

void tb__http_fail(tb_http_resp_t *r, tb_status st, const char *field, const char *what) {
  unsigned code;
  switch (st) {
  case TB_ERR_NOT_FOUND:
    code = 404;
    break;
  case TB_ERR_INVALID:
  case TB_ERR_JSON:
  case TB_ERR_UNKNOWN_EVENT:
  case TB_ERR_TOO_LARGE:
    code = 400;
    break;
  case TB_ERR_NOT_IMPLEMENTED:
    code = 501;
    break;
  case TB_ERR_BUSY:
  case TB_ERR_UNAVAILABLE:
  case TB_ERR_TIMEOUT:
    code = 503;
    break;
  case TB_ERR_NATS:
    code = 502;
    break;
  default:
    code = 500;
  }
  if (code == 404) /* the detail names what is missing; "what" would only repeat it */
    tb__http_error(r, code, NULL, "%s", tb_errdetail());
  else
    tb__http_error(r, code, code == 400 ? field : NULL, "%s: %s", what, tb_errdetail());
}

void tb__http_put(tb_http_text_t *t, const char *fmt, ...) {
  if (t->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      t->oom = 1;
      return;
    }
    if (t->buf != NULL && t->len + (size_t)n < t->cap) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = t->cap ? t->cap * 2 : 16384;
    while (cap < t->len + (size_t)n + 1) cap *= 2;
    char *b = realloc(t->buf, cap);
    if (b == NULL) {
      t->oom = 1;
      return;
    }
    t->buf = b;
    t->cap = cap;
  }
}

/* ---------------------------------------------------------------- input helpers */

typedef struct args_walk {
  const char *const *allowed;
  const char *bad; /* first unknown key */
  const char *dup; /* first key given twice */
  const char *seen[16];
  int n_seen;
} args_walk_t;

static enum MHD_Result walk_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value) {
  args_walk_t *w = cls;
  (void)kind;
  (void)value;
  int known = 0;
  for (int i = 0; w->allowed[i] != NULL && !known; i++) known = strcmp(w->allowed[i], key) == 0;
  if (!known) {
    w->bad = key;
    return MHD_NO;
  }
  for (int i = 0; i < w->n_seen; i++)
    if (strcmp(w->seen[i], key) == 0) {
      w->dup = key;
      return MHD_NO;
    }
  if (w->n_seen < (int)(sizeof(w->seen) / sizeof(w->seen[0]))) w->seen[w->n_seen++] = key;
  return MHD_YES;
}

int tb__http_args_check(const tb_http_req_t *req, tb_http_resp_t *resp,
                        const char *const *allowed) {
  args_walk_t w = {.allowed = allowed};
  MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, walk_arg, &w);
  if (w.bad != NULL || w.dup != NULL) {
    char names[256] = "";
    for (int i = 0; allowed[i] != NULL; i++)
      snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "",
               allowed[i]);
    if (w.bad != NULL)
      tb__http_error(resp, 400, w.bad, "unknown query argument '%s' (this endpoint takes: %s)",
                     w.bad, names[0] ? names : "none");
    else
      tb__http_error(resp, 400, w.dup, "query argument '%s' is given more than once", w.dup);
    return -1;
  }
  return 0;
}

const char *tb__http_arg(const tb_http_req_t *req, const char *name) {
  const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
  return v != NULL && v[0] != '\0' ? v : NULL;
}

int tb__http_arg_int(const tb_http_req_t *req, tb_http_resp_t *resp, const char *name, int64_t lo,
                     int64_t hi, int64_t def, int64_t *out) {
  const char *v = tb__http_arg(req, name);
  if (v == NULL) {
    *out = def;
    return 0;
  }
  char *end = NULL;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi) {
    tb__http_error(resp, 400, name, "%s: expected an integer from %lld to %lld, got '%.64s'", name,
                   (long long)lo, (long long)hi, v);
    return -1;
  }
  *out = n;
  return 0;
}

json_t *tb__http_body_object(const tb_http_req_t *req, tb_http_resp_t *resp, int optional) {
  if (req->body == NULL || req->len == 0) {
    if (optional) return json_object();
    tb__http_error(resp, 400, "body", "empty body: expected a JSON object");
    return NULL;
  }
  json_error_t jerr;
  json_t *v = json_loadb(req->body, req->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
  if (v == NULL) {
    tb__http_error(resp, 400, "body", "malformed JSON at line %d column %d: %s", jerr.line,
                   jerr.column, jerr.text);
    return NULL;
  }
  if (!json_is_object(v)) {
    tb__http_error(resp, 400, "body", "expected a JSON object, got %s", tb_json_kind(v));
    json_decref(v);
    return NULL;
  }
  return v;
}

int tb__http_fields(tb_http_resp_t *resp, json_t *obj, const char *prefix,
                    const tb_http_field_t *fields, int n) {
  const char *key;
  json_t *val;
  char name[160];
#define FULL(k)                                                                                    \
  (snprintf(name, sizeof(name), "%s%s%s", prefix ? prefix : "", prefix ? "." : "", k), name)
  json_object_foreach(obj, key, val) {
    const tb_http_field_t *f = NULL;
    for (int i = 0; i < n && f == NULL; i++)
      if (strcmp(fields[i].name, key) == 0) f = &fields[i];
    if (f == NULL) {
      char names[256] = "";
      for (int i = 0; i < n; i++)
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "",
                 fields[i].name);
      FULL(key);
      tb__http_error(resp, 400, name, "unknown field '%s' (expected %s)", name, names);
      return -1;
    }
    FULL(key);
    switch (f->type) {
    case TB_F_STRING:
      if (!json_is_string(val) || json_string_length(val) == 0) {
        tb__http_error(resp, 400, name, "'%s' must be a non-empty string, got %s", name,
                       json_is_string(val) ? "an empty one" : tb_json_kind(val));
        return -1;
      }
      *(const char **)f->out = json_string_value(val);
      break;
    case TB_F_BOOL:
      if (!json_is_boolean(val)) {
        tb__http_error(resp, 400, name, "'%s' must be true or false, got %s", name,
                       tb_json_kind(val));
        return -1;
      }
      *(int *)f->out = json_is_true(val);
      break;
    case TB_F_NUMBER:
      if (!json_is_number(val)) {
        tb__http_error(resp, 400, name, "'%s' must be a number, got %s", name, tb_json_kind(val));
        return -1;
      }
      *(double *)f->out = json_number_value(val);
      break;
    case TB_F_OBJECT:
    case TB_F_ARRAY_OR_OBJECT:
      if (!json_is_object(val) && !(f->type == TB_F_ARRAY_OR_OBJECT && json_is_array(val))) {
        tb__http_error(resp, 400, name, "'%s' must be %s, got %s", name,
                       f->type == TB_F_OBJECT ? "an object" : "an array or an object",
                       tb_json_kind(val));
        return -1;
      }
      *(json_t **)f->out = val;
      break;
    }
  }
  for (int i = 0; i < n; i++)
    if (fields[i].required && json_object_get(obj, fields[i].name) == NULL) {
      FULL(fields[i].name);
      tb__http_error(resp, 400, name, "missing field '%s'", name);
      return -1;
    }
#undef FULL
  return 0;
}

/* ---------------------------------------------------------------- page cursors */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void tb__http_cursor_make(const char *text, char *buf, size_t cap) {
  const unsigned char *in = (const unsigned char *)text;
  size_t n = strlen(text), o = 0;
  for (size_t i = 0; i < n && o + 5 < cap; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    buf[o++] = b64url[(v >> 18) & 63];
    buf[o++] = b64url[(v >> 12) & 63];
    if (i + 1 < n) buf[o++] = b64url[(v >> 6) & 63];
    if (i + 2 < n) buf[o++] = b64url[v & 63];
  }
  buf[o] = '\0';
}

int tb__http_cursor_read(tb_http_resp_t *resp, const char *cursor, const char *prefix, char *out,
                         size_t cap) {
  char text[1100];
  size_t n = strlen(cursor), o = 0;
  uint32_t v = 0;
  int bits = 0, bad = n == 0 || n > 1400 || n % 4 == 1;
  for (size_t i = 0; i < n && !bad; i++) {
    const char *p = strchr(b64url, cursor[i]);
    if (p == NULL || cursor[i] == '\0') {
      bad = 1;
      break;
    }
    v = (v << 6) | (uint32_t)(p - b64url);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (o + 1 >= sizeof(text))
        bad = 1;
      else
        text[o++] = (char)((v >> bits) & 0xff);
    }
  }
  text[o] = '\0';
  size_t lp = strlen(prefix);
  if (bad || memchr(text, '\0', o) != NULL || strncmp(text, prefix, lp) != 0 ||
      strlen(text + lp) >= cap) {
    tb__http_error(resp, 400, "cursor",
                   "cursor: not a cursor this endpoint gave out (pass next_cursor unchanged)");
    return -1;
  }
  memcpy(out, text + lp, strlen(text + lp) + 1);
  return 0;
}

/* ---------------------------------------------------------------- the server */

/* 1 if |a| and |b| are equal, taking the same time whatever the first difference: the token must
 * not be found a byte at a time by timing. The loop runs over the length of |a| (the client's
 * guess, which the client knows) and never stops early; a length mismatch only sets a bit. The
 * accumulator is volatile so that no compiler turns the loop into an early-exit compare. */
static int same_secret(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  volatile unsigned char diff = (unsigned char)(la != lb);
  for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
  return diff == 0;
}

/* 1 if the request may go on: the token matches, or none is set, or the path is not /api. */
static int authorized(const tb_http_t *h, const tb_http_req_t *req) {
  if (h->token[0] == '\0' || strncmp(req->path, "/api/", 5) != 0) return 1;
  const char *auth = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
  /* The scheme is case-insensitive (RFC 7235); the token is not. */
  if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) return 0;
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

static enum MHD_Result add_header_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value) {
  (void)kind;
  *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
  return MHD_YES;
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
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_bytes, &cs->header_bytes);
    /* The request line counts too: an overlong URL is the commonest oversized header. */
    cs->header_bytes += strlen(method) + strlen(url) + 16;
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
  /* Size first: headers over the limit may be an attack on the token check itself. */
  if (cs->header_bytes > h->o.max_headers)
    tb__http_error(&resp, 413, NULL, "request line and headers over %zu bytes", h->o.max_headers);
  else if (!authorized(h, &req))
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
  if (h->o.max_headers == 0 || h->o.max_headers > DEFAULT_MAX_HEADERS)
    h->o.max_headers = DEFAULT_MAX_HEADERS;
  if (h->o.threads <= 0) h->o.threads = TB_HTTP_DEFAULT_THREADS;
  snprintf(h->token, sizeof(h->token), "%s", token);
  pthread_mutex_init(&h->store_mu, NULL);
  /* A pool of threads, each with its own epoll set of connections: a route that waits (a publish
   * waits for the stream's ack, a store read for the lock) holds its thread, so the pool is what
   * bounds the requests in progress at once; the connection limit bounds the clients. */
  h->mhd = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
      on_request, h, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_THREAD_POOL_SIZE,
      (unsigned)h->o.threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
  if (h->mhd == NULL) {
    pthread_mutex_destroy(&h->store_mu);
    free(h);
    return tb__fail(TB_ERR_IO, "http: cannot listen on %s:%d (in use, or not allowed)", bind,
                    opts->port);
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : opts->port;
  tb_status st = h->o.bus != NULL ? tb__http_sampler_start(h) : TB_OK;
  if (st != TB_OK) {
    tb_http_stop(h);
    return st;
  }
  *out = h;
  return TB_OK;
}

int tb_http_port(const tb_http_t *h) {
  return h->port;
}

void tb_http_stop(tb_http_t *h) {
  if (h == NULL) return;
  MHD_stop_daemon(h->mhd);
  tb__http_sampler_stop(h);
  pthread_mutex_destroy(&h->store_mu);
  free(h);
}
