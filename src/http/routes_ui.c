/* The dashboard: its three files, built into the binary from src/http/web/ so that the page needs
 * no build step, no CDN and no file beside the binary, and the two figures it polls that the rest
 * of the API does not answer (per-tier latency buckets, schedules). Everything else the page shows
 * comes from the API's own routes, with the same token. */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/hist.h"
#include "core/status.h"
#include "http/internal.h"
#include "sched/sched.h"

/* Generated from src/http/web/ by embed_file.cmake. */
extern const unsigned char tb_ui_index_html[], tb_ui_app_js[], tb_ui_style_css[];
extern const size_t tb_ui_index_html_len, tb_ui_app_js_len, tb_ui_style_css_len;

static void file(tb_http_resp_t *resp, const unsigned char *data, size_t len, const char *type) {
  resp->body = malloc(len + 1);
  if (resp->body == NULL) {
    tb__http_error(resp, 500, NULL, "out of memory");
    return;
  }
  memcpy(resp->body, data, len + 1); /* the generated array ends with a NUL */
  resp->status = 200;
  resp->type = type;
}

void tb__http_ui_index(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  (void)h;
  (void)req;
  file(resp, tb_ui_index_html, tb_ui_index_html_len, "text/html; charset=utf-8");
}

void tb__http_ui_js(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  (void)h;
  (void)req;
  file(resp, tb_ui_app_js, tb_ui_app_js_len, "text/javascript; charset=utf-8");
}

void tb__http_ui_css(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  (void)h;
  (void)req;
  file(resp, tb_ui_style_css, tb_ui_style_css_len, "text/css; charset=utf-8");
}

/* ---------------------------------------------------------------- GET /api/tiers */

/* A latency histogram as the page reads it: quantiles since the deployment began, and the counts
 * per power-of-two bucket (the store's finer buckets summed, as /metrics does), which the page
 * subtracts from its previous poll to chart the latency of each interval. */
static json_t *hist_json(const tb_hist_t *hist) {
  json_t *counts = json_array();
  uint64_t sum = 0;
  for (int b = 0; b < TB_HIST_BUCKETS; b++) {
    sum += hist->counts[b];
    if ((b + 1) % TB_HIST_SUB == 0) {
      json_array_append_new(counts, json_integer((json_int_t)sum));
      sum = 0;
    }
  }
  return json_pack("{s:I,s:f,s:f,s:o}", "count", (json_int_t)hist->total, "p50_ms",
                   tb_hist_quantile(hist, .5) / 1000.0, "p99_ms",
                   tb_hist_quantile(hist, .99) / 1000.0, "counts", counts);
}

static json_t *or_null(int have, uint64_t v) {
  return have ? json_integer((json_int_t)v) : json_null();
}

/* GET /api/tiers: each tier's queue (from its consumers: null when they did not answer), its
 * counters and its two latency histograms; |bucket_upper_ms| gives the bucket bounds. */
void tb__http_get_tiers(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  (void)req;
  tb_http_tier_figures_t *f = tb__http_figures(h, resp);
  if (f == NULL) return;
  const tb_config_t *cfg = h->o.cfg;
  json_t *tiers = json_array();
  for (int t = 0; t < cfg->n_tiers; t++) {
    const tb_http_tier_figures_t *x = &f[t];
    json_array_append_new(
        tiers, json_pack("{s:s,s:i,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:o,s:o}", "name",
                         cfg->tiers[t].name, "concurrency", cfg->tiers[t].concurrency, "depth",
                         or_null(x->have_queue, x->pending), "in_flight",
                         or_null(x->have_queue, x->in_flight), "redelivered",
                         or_null(x->have_queue, x->redelivered), "processed",
                         (json_int_t)x->s.processed, "failed", (json_int_t)x->s.failed, "dead",
                         (json_int_t)x->s.dead, "inversions", (json_int_t)x->s.inversions, "start",
                         hist_json(&x->s.start), "commit", hist_json(&x->s.commit)));
  }
  free(f);
  json_t *upper = json_array();
  for (int b = TB_HIST_SUB - 1; b < TB_HIST_BUCKETS; b += TB_HIST_SUB)
    json_array_append_new(upper, json_real((double)tb_hist_bucket_upper(b) / 1000.0));
  tb__http_json(resp, 200,
                json_pack("{s:I,s:o,s:o}", "now_us", (json_int_t)tb_wall_us(), "tiers", tiers,
                          "bucket_upper_ms", upper));
}

/* ---------------------------------------------------------------- GET /api/schedules */

typedef struct sched_list {
  int64_t now_us;
  json_t *arr;
} sched_list_t;

static int sched_row(void *arg, const tb_sched_task_t *t) {
  sched_list_t *l = arg;
  json_array_append_new(l->arr, tb_sched_task_json(t, l->now_us));
  return 0;
}

/* GET /api/schedules: every task as `schedule list --json` prints it, with its next run. */
void tb__http_get_schedules(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  (void)req;
  sched_list_t l = {.now_us = tb_wall_us(), .arr = json_array()};
  pthread_mutex_lock(&h->store_mu);
  tb_status st = tb_store_sched_list(h->o.store, sched_row, &l);
  pthread_mutex_unlock(&h->store_mu);
  if (st != TB_OK) {
    json_decref(l.arr);
    tb__http_error(resp, 500, NULL, "reading the schedules: %s", tb_errdetail());
    return;
  }
  tb__http_json(resp, 200, json_pack("{s:o}", "schedules", l.arr));
}
