/* The HTTP API's routes: health, publishing, and the figures (Prometheus text and seed 001's
 * /api/jobs/metrics). Each route fills a tb_http_resp_t; the core sends it. Figures come from the
 * store (what every worker sharing the file recorded) and, for queue depths, from the consumers on
 * the server, as `tierbus stats` reads them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/publish.h"
#include "core/clock.h"
#include "core/hist.h"
#include "core/status.h"
#include "http/internal.h"
#include "workflows/priority.h"
#include "store/monitor.h"

/* ---------------------------------------------------------------- figures */

int tb__http_nats_up(const tb_http_t *h) {
  return h->o.bus != NULL &&
         natsConnection_Status(tb_bus_conn(h->o.bus)) == NATS_CONN_STATUS_CONNECTED;
}

tb_http_tier_figures_t *tb__http_figures(tb_http_t *h, tb_http_resp_t *resp) {
  const tb_config_t *cfg = h->o.cfg;
  tb_http_tier_figures_t *f = calloc((size_t)cfg->n_tiers, sizeof(*f));
  if (f == NULL) {
    tb__http_error(resp, 500, NULL, "out of memory");
    return NULL;
  }
  tb_status st = TB_OK;
  const char *domains[TB_MAX_DOMAINS];
  for (int d = 0; d < cfg->n_domains; d++) domains[d] = cfg->domains[d];
  pthread_mutex_lock(&h->store_mu);
  for (int t = 0; t < cfg->n_tiers && st == TB_OK; t++) {
    st = tb_store_tier_stats(h->o.store, cfg->tiers[t].name, &f[t].s);
    if (st == TB_OK)
      st = tb_store_tier_domain_counters(h->o.store, cfg->tiers[t].name, domains, cfg->n_domains,
                                         f[t].d_counts);
  }
  pthread_mutex_unlock(&h->store_mu);
  if (st != TB_OK) {
    tb__http_error(resp, 500, NULL, "reading the figures: %s", tb_errdetail());
    free(f);
    return NULL;
  }
  /* The consumers, one per (tier, domain): a tier's figures are whole only when every domain's
   * consumer answered; a partial sum would read as a false low. */
  int up = tb__http_nats_up(h);
  for (int t = 0; t < cfg->n_tiers; t++) {
    f[t].have_queue = up && cfg->n_domains > 0;
    for (int d = 0; d < cfg->n_domains && up; d++) {
      f[t].have_domain[d] = tb_consumer_pending(h->o.bus, cfg, cfg->tiers[t].name, cfg->domains[d],
                                                &f[t].d_pending[d], &f[t].d_in_flight[d],
                                                &f[t].d_redelivered[d]) == TB_OK;
      f[t].have_queue &= f[t].have_domain[d];
      f[t].pending += f[t].d_pending[d];
      f[t].in_flight += f[t].d_in_flight[d];
      f[t].redelivered += f[t].d_redelivered[d];
    }
  }
  return f;
}

/* ---------------------------------------------------------------- health */

static void get_healthz(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  (void)h;
  (void)req;
  tb__http_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

/* Ready when NATS is connected, the database answers and the first tier's consumers exist. */
static void get_readyz(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  (void)req;
  int nats = tb__http_nats_up(h);
  pthread_mutex_lock(&h->store_mu);
  int db = tb_store_schema_version(h->o.store) > 0;
  pthread_mutex_unlock(&h->store_mu);
  uint64_t p = 0, a = 0, r = 0;
  int consumers = nats && tb_consumer_pending(h->o.bus, h->o.cfg, h->o.cfg->tiers[0].name, NULL, &p,
                                              &a, &r) == TB_OK;
  int ok = nats && db && consumers;
  tb__http_json(resp, ok ? 200 : 503,
                json_pack("{s:s,s:b,s:b,s:b}", "status", ok ? "ready" : "not ready", "nats", nats,
                          "database", db, "consumers", consumers));
}

/* ---------------------------------------------------------------- publish */

/* POST /api/events {type, priority?, id?, correlationId?, workflowId?, payload}
 * (tb_publish_req_from_json, the shape of `publish --file` lines): publishes as `tierbus publish`
 * does and answers with the tier, subject, stream sequence and whether the
 * stream already had the id. */
static void post_events(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  json_t *body = tb__http_body_object(req, resp, 0);
  if (body == NULL) return;
  const char *field = NULL;
  tb_publish_req_t pr;
  if (tb_publish_req_from_json(body, &pr, &field) != TB_OK) {
    tb__http_error(resp, 400, field, "%s", tb_errdetail());
    json_decref(body);
    return;
  }
  pr.source = "tierbus-http";
  /* Seed 002: a repository's sync job without a priority goes by the repository's. */
  tb_repo_route_t rt;
  int routed = 0;
  pthread_mutex_lock(&h->store_mu);
  tb_status st = tb_repo_route_sync_job(h->o.store, h->o.cfg, &pr, &rt, &routed);
  pthread_mutex_unlock(&h->store_mu);
  if (st != TB_OK) {
    tb__http_error(resp, 500, NULL, "repository priority lookup: %s", tb_errdetail());
    json_decref(body);
    return;
  }
  tb_prepared_t p;
  st = tb_publish_prepare(h->o.cfg, h->o.cat, &pr, &p);
  if (st != TB_OK) {
    tb__http_error(resp, 400, st == TB_ERR_UNKNOWN_EVENT ? "type" : "payload", "%s: %s",
                   tb_err_name(st), tb_errdetail());
    json_decref(body);
    return;
  }
  uint64_t seq = 0;
  int dup = 0;
  st = h->o.bus ? tb_publish_send(h->o.bus, &p, &seq, &dup)
                : tb__fail(TB_ERR_UNAVAILABLE, "no NATS connection");
  if (st != TB_OK)
    tb__http_error(resp, st == TB_ERR_UNAVAILABLE || st == TB_ERR_TIMEOUT ? 503 : 502, NULL,
                   "publish: %s", tb_errdetail());
  else
    tb__http_json(resp, dup ? 200 : 201,
                  json_pack("{s:s,s:s,s:s,s:I,s:b}", "id", p.id, "tier", p.tier, "subject",
                            p.subject, "stream_seq", (json_int_t)seq, "duplicate", dup));
  tb_prepared_free(&p);
  json_decref(body);
}

/* ---------------------------------------------------------------- seed 001 metrics */

static int add_delayed(void *arg, const char *tier, const char *unused, int64_t n) {
  (void)unused;
  return tier[0] != '\0' && json_object_set_new(arg, tier, json_integer((json_int_t)n)) != 0;
}

/* GET /api/jobs/metrics in seed 001's shape, a queue per tier. "failed" counts dead-lettered
 * events (given up for good); a failed attempt that a retry later completed is not a failure
 * here. "delayed" counts the tier's messages held back in the outbox until a later time (workflow
 * timers, retry delays). */
static void get_jobs_metrics(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  static const char *const allowed[] = {NULL};
  if (tb__http_args_check(req, resp, allowed) != 0) return;
  tb_http_tier_figures_t *f = tb__http_figures(h, resp);
  if (f == NULL) return;
  json_t *delayed = json_object();
  pthread_mutex_lock(&h->store_mu);
  tb_status st = delayed ? tb_store_mon_delayed(h->o.store, tb_wall_us(), add_delayed, delayed)
                         : tb__fail(TB_ERR_NOMEM, "delayed");
  pthread_mutex_unlock(&h->store_mu);
  if (st != TB_OK) {
    json_decref(delayed);
    free(f);
    tb__http_fail(resp, st, NULL, "reading the delayed jobs");
    return;
  }
  json_t *queues = json_object();
  int64_t completed = 0, failed = 0, queued = 0, processing = 0;
  tb_hist_t all;
  tb_hist_reset(&all);
  double sum_ms = 0;
  for (int t = 0; t < h->o.cfg->n_tiers; t++) {
    completed += f[t].s.processed;
    failed += f[t].s.dead;
    queued += (int64_t)f[t].pending;
    processing += (int64_t)f[t].in_flight;
    tb_hist_merge(&all, &f[t].s.commit);
    json_object_set_new(
        queues, h->o.cfg->tiers[t].name,
        json_pack(
            "{s:o,s:o,s:I,s:I,s:I}", "waiting",
            f[t].have_queue ? json_integer((json_int_t)f[t].pending) : json_null(), "active",
            f[t].have_queue ? json_integer((json_int_t)f[t].in_flight) : json_null(), "completed",
            (json_int_t)f[t].s.processed, "failed", (json_int_t)f[t].s.dead, "delayed",
            (json_int_t)json_integer_value(json_object_get(delayed, h->o.cfg->tiers[t].name))));
  }
  json_decref(delayed);
  /* The mean from the buckets: each counts at its upper bound, about 3% high. */
  for (int b = 0; b < TB_HIST_BUCKETS; b++)
    sum_ms += (double)all.counts[b] * (double)tb_hist_bucket_upper(b) / 1000.0;
  double avg_ms = all.total ? sum_ms / (double)all.total : 0;
  double rate = completed + failed ? 100.0 * (double)completed / (double)(completed + failed) : 100;
  json_t *data = json_pack(
      "{s:{s:I,s:I,s:I,s:I,s:I,s:f},s:o,s:{s:f,s:f,s:f,s:f,s:f}}", "overview", "total",
      (json_int_t)(completed + failed + queued + processing), "queued", (json_int_t)queued,
      "processing", (json_int_t)processing, "completed", (json_int_t)completed, "failed",
      (json_int_t)failed, "successRate", rate, "queueMetrics", queues, "performance",
      "avgProcessingTimeMs", avg_ms, "avgProcessingTimeSec", avg_ms / 1000.0, "p50Ms",
      tb_hist_quantile(&all, .5) / 1000.0, "p95Ms", tb_hist_quantile(&all, .95) / 1000.0, "p99Ms",
      tb_hist_quantile(&all, .99) / 1000.0);
  free(f);
  tb__http_json(resp, 200, json_pack("{s:b,s:o}", "success", 1, "data", data));
}

/* ---------------------------------------------------------------- Prometheus */

#define put tb__http_put

/* A counter family over (tier, domain): every tier of the config times every domain of the
 * catalogue, a pair that never counted anything as 0, so that the series exist from the start
 * and a rate over them needs no absent-series special case. |field| is the offset of the value
 * in tb_store_counters_t. */
static void counter(tb_http_text_t *t, const tb_http_t *h, const tb_http_tier_figures_t *f,
                    const char *name, const char *help, size_t field) {
  const tb_config_t *cfg = h->o.cfg;
  put(t, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
  for (int i = 0; i < cfg->n_tiers; i++)
    for (int d = 0; d < cfg->n_domains; d++)
      put(t, "%s{tier=\"%s\",domain=\"%s\"} %lld\n", name, cfg->tiers[i].name, cfg->domains[d],
          (long long)*(const int64_t *)((const char *)&f[i].d_counts[d] + field));
}

/* A histogram family over the tiers, in seconds, with a bucket at each power-of-two microsecond
 * bound (the store's finer buckets summed into them) and +Inf. */
static void histogram(tb_http_text_t *t, const tb_http_t *h, const tb_http_tier_figures_t *f,
                      const char *name, const char *help, size_t field) {
  put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  for (int i = 0; i < h->o.cfg->n_tiers; i++) {
    const tb_hist_t *hist = (const tb_hist_t *)((const char *)&f[i].s + field);
    const char *tier = h->o.cfg->tiers[i].name;
    uint64_t cum = 0;
    double sum = 0;
    for (int b = 0; b < TB_HIST_BUCKETS; b++) {
      cum += hist->counts[b];
      sum += (double)hist->counts[b] * (double)tb_hist_bucket_upper(b) / 1e6;
      if ((b + 1) % TB_HIST_SUB == 0 && b < TB_HIST_BUCKETS - 1)
        put(t, "%s_bucket{tier=\"%s\",le=\"%.6g\"} %llu\n", name, tier,
            (double)tb_hist_bucket_upper(b) / 1e6, (unsigned long long)cum);
    }
    put(t, "%s_bucket{tier=\"%s\",le=\"+Inf\"} %llu\n", name, tier,
        (unsigned long long)hist->total);
    put(t, "%s_sum{tier=\"%s\"} %.6f\n%s_count{tier=\"%s\"} %llu\n", name, tier, sum, name, tier,
        (unsigned long long)hist->total);
  }
}

/* A gauge family over (tier, domain) from the consumers; a consumer that did not answer is left
 * out rather than shown as 0. |which| 0: depth, 1: in flight, 2: redelivered. */
static void consumer_gauge(tb_http_text_t *t, const tb_http_t *h, const tb_http_tier_figures_t *f,
                           const char *name, const char *help, int which) {
  const tb_config_t *cfg = h->o.cfg;
  put(t, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
  for (int i = 0; i < cfg->n_tiers; i++)
    for (int d = 0; d < cfg->n_domains; d++) {
      if (!f[i].have_domain[d]) continue;
      const uint64_t *v = which == 0   ? f[i].d_pending
                          : which == 1 ? f[i].d_in_flight
                                       : f[i].d_redelivered;
      put(t, "%s{tier=\"%s\",domain=\"%s\"} %llu\n", name, cfg->tiers[i].name, cfg->domains[d],
          (unsigned long long)v[d]);
    }
}

/* GET /metrics in the Prometheus text exposition format (version 0.0.4). The counters and
 * histograms are the store's, so any process that opens the deployment's database serves every
 * worker's figures; the gauges of depth and in flight are the consumers', which every worker
 * shares too: one scrape of one API process covers the deployment. */
static void get_metrics(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  (void)req;
  tb_http_tier_figures_t *f = tb__http_figures(h, resp);
  if (f == NULL) return;
  tb_http_text_t t = {0};
#define C_FIELD(m) offsetof(tb_store_counters_t, m)
  counter(&t, h, f, "tierbus_events_processed_total", "Events applied by a handler.",
          C_FIELD(processed));
  counter(&t, h, f, "tierbus_events_failed_total",
          "Handler attempts that failed (each retried attempt counts).", C_FIELD(failed));
  counter(&t, h, f, "tierbus_events_dead_lettered_total", "Events given up for good (DLQ).",
          C_FIELD(dead));
  counter(&t, h, f, "tierbus_events_redelivered_total",
          "Deliveries that were not an event's first (after a nak, a lapsed lease or a worker "
          "that stopped), whatever came of them.",
          C_FIELD(redeliveries));
  counter(&t, h, f, "tierbus_events_duplicate_total",
          "Deliveries of an event already processed (a redelivery absorbed, no second effect).",
          C_FIELD(redelivered));
  counter(&t, h, f, "tierbus_events_stale_total",
          "Events ignored as older than what was already applied for their key.", C_FIELD(stale));
  counter(&t, h, f, "tierbus_priority_inversions_total",
          "Dispatches that served a tier while a better one waited (target 0), by the domain of "
          "the event served.",
          C_FIELD(inversions));
#undef C_FIELD
#define S_FIELD(m) offsetof(tb_http_tier_figures_t, s) + offsetof(tb_store_tier_stats_t, m)
  histogram(&t, h, f, "tierbus_publish_to_start_seconds", "From publish to the handler's start.",
            S_FIELD(start));
  histogram(&t, h, f, "tierbus_publish_to_commit_seconds", "From publish to the commit.",
            S_FIELD(commit));
#undef S_FIELD
  consumer_gauge(&t, h, f, "tierbus_queue_depth",
                 "Messages in the (tier, domain) stream not yet delivered to a worker.", 0);
  consumer_gauge(&t, h, f, "tierbus_in_flight", "Messages delivered to a worker and not yet acked.",
                 1);
  consumer_gauge(&t, h, f, "tierbus_redelivered",
                 "Messages delivered more than once and not yet acked.", 2);
  int rc = tb__http_metrics_monitor(h, f, &t, resp);
  free(f);
  if (rc != 0 || t.oom) {
    free(t.buf);
    if (rc == 0) tb__http_error(resp, 500, NULL, "out of memory");
    return;
  }
  resp->status = 200;
  resp->body = t.buf ? t.buf : strdup("");
  resp->type = "text/plain; version=0.0.4; charset=utf-8";
}

/* ---------------------------------------------------------------- routing */

/* Every endpoint. A path may hold one {} : the id, which may itself contain '/' (a repository
 * "owner/name" arrives percent-decoded). When several patterns match a path, the one with the
 * longest fixed text wins, so "/api/workflows/x/cancel" is the cancel route, not run
 * "x/cancel". */
static const struct {
  const char *method, *path;
  tb_http_route_fn fn;
} routes[] = {
    {"GET", "/", tb__http_ui_index},
    {"GET", "/ui/app.js", tb__http_ui_js},
    {"GET", "/ui/style.css", tb__http_ui_css},
    {"GET", "/healthz", get_healthz},
    {"GET", "/readyz", get_readyz},
    {"GET", "/metrics", get_metrics},
    {"POST", "/api/events", post_events},
    {"GET", "/api/jobs/metrics", get_jobs_metrics},
    {"POST", "/api/jobs/{}/retry", tb__http_post_job_retry},
    {"POST", "/api/execute-workflow", tb__http_post_execute},
    {"POST", "/api/execute-workflow-with-priority", tb__http_post_execute_prio},
    {"GET", "/api/workflows", tb__http_get_workflows},
    {"GET", "/api/workflows/{}", tb__http_get_workflow},
    {"POST", "/api/workflows/{}/cancel", tb__http_post_workflow_cancel},
    {"GET", "/api/dlq", tb__http_get_dlq},
    {"POST", "/api/dlq/{}/replay", tb__http_post_dlq_replay},
    {"GET", "/api/activity", tb__http_get_activity},
    {"GET", "/api/repositories", tb__http_get_repositories},
    {"GET", "/api/repositories/{}", tb__http_get_repository},
    {"GET", "/api/priority/distribution", tb__http_get_distribution},
    {"GET", "/api/priority/syncs", tb__http_get_syncs},
    {"GET", "/api/monitoring", tb__http_get_monitoring},
    {"GET", "/api/tiers", tb__http_get_tiers},
    {"GET", "/api/schedules", tb__http_get_schedules},
};

/* The length of |pattern|'s fixed text when |path| matches it, else -1; the {} part is copied to
 * |param| (|cap| bytes; a longer one does not match). */
static int match(const char *pattern, const char *path, char *param, size_t cap) {
  const char *hole = strstr(pattern, "{}");
  if (hole == NULL) return strcmp(pattern, path) == 0 ? (int)strlen(pattern) : -1;
  size_t pre = (size_t)(hole - pattern), suf = strlen(hole + 2), n = strlen(path);
  if (n <= pre + suf || strncmp(path, pattern, pre) != 0 || strcmp(path + n - suf, hole + 2) != 0)
    return -1;
  size_t len = n - pre - suf;
  if (len >= cap) return -1;
  memcpy(param, path + pre, len);
  param[len] = '\0';
  return (int)(pre + suf);
}

void tb__http_route(tb_http_t *h, tb_http_req_t *req, tb_http_resp_t *resp) {
  char param[1024], best_param[1024] = "";
  int best = -1, best_len = -1, path_known = 0;
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    int len = match(routes[i].path, req->path, param, sizeof(param));
    if (len < 0) continue;
    if (len > best_len) { /* a longer fixed text: the earlier matches were the wrong reading */
      best_len = len;
      best = -1;
      path_known = 0;
    }
    if (len < best_len) continue;
    path_known = 1;
    if (best < 0 && strcmp(req->method, routes[i].method) == 0) {
      best = (int)i;
      memcpy(best_param, param, sizeof(param));
    }
  }
  if (best >= 0) {
    req->params[0] = best_param;
    routes[best].fn(h, req, resp);
    req->params[0] = NULL;
  } else if (path_known) {
    tb__http_error(resp, 405, NULL, "%s is not allowed on %s", req->method, req->path);
  } else {
    tb__http_error(resp, 404, NULL, "no such endpoint: %s %s", req->method, req->path);
  }
}
