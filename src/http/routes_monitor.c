/* Seed 000's and seed 002's monitoring over HTTP: per tier, workflow execution time (p50/p99 of
 * run duration), utilisation (in flight over concurrency, now and over the last hour),
 * escalations, waiting workflows, the events' latency; the outbox's lag, the scheduler's runs,
 * and the success rate of repository jobs for workspace vs tracked-only repositories. GET
 * /api/monitoring answers it as JSON; GET /metrics gets the same families as Prometheus text
 * (tb__http_metrics_monitor). The figures are the store's (store/monitor.h) and the consumers'. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/activity.h"
#include "api/dlq.h"
#include "core/bgthread.h"
#include "core/clock.h"
#include "core/hist.h"
#include "core/status.h"
#include "http/internal.h"
#include "store/escalation.h"
#include "store/monitor.h"
#include "store/repo.h"

#define DEFAULT_WINDOW_MS (24LL * 3600 * 1000)
/* The activity rows one look at the repository jobs may read (store/monitor.h says why). */
#define REPO_JOBS_SCAN 500000

/* ---------------------------------------------------------------- the sampler */

/* Owned by the server (tb_http_t.sampler); the ring is guarded by |mu|, written by the thread and
 * read by the monitoring route. */
struct tb_http_sampler {
  tb_http_t *h; /* borrowed: the server that owns this */
  tb_bgthread_t *thread;
  /* Set before the thread is stopped: a tick between consumer requests gives up at once, so a
   * stop never waits out a request per (tier, domain). */
  atomic_int stopping;
  pthread_mutex_t mu;
  int head, count; /* next slot to write; samples held */
  int64_t at_us[TB_HTTP_SAMPLES];
  int32_t in_flight[TB_HTTP_SAMPLES][TB_MAX_TIERS]; /* -1: the tier's consumers did not answer */
};

static int64_t sample(void *arg, int stopping) {
  (void)stopping;
  struct tb_http_sampler *s = arg;
  const tb_config_t *cfg = s->h->o.cfg;
  int32_t row[TB_MAX_TIERS];
  /* Without a connection every request would wait out its timeout: record the gap instead. */
  int up = tb__http_nats_up(s->h);
  for (int t = 0; t < cfg->n_tiers && t < TB_MAX_TIERS; t++) {
    uint64_t p = 0, a = 0, r = 0;
    row[t] =
        up && !atomic_load(&s->stopping) &&
                tb_consumer_pending(s->h->o.bus, cfg, cfg->tiers[t].name, NULL, &p, &a, &r) == TB_OK
            ? (int32_t)a
            : -1;
  }
  pthread_mutex_lock(&s->mu);
  s->at_us[s->head] = tb_wall_us();
  memcpy(s->in_flight[s->head], row, sizeof(row));
  s->head = (s->head + 1) % TB_HTTP_SAMPLES;
  if (s->count < TB_HTTP_SAMPLES) s->count++;
  pthread_mutex_unlock(&s->mu);
  return TB_BGTHREAD_PERIODIC;
}

tb_status tb__http_sampler_start(tb_http_t *h) {
  struct tb_http_sampler *s = calloc(1, sizeof(*s));
  if (s == NULL) return tb__fail(TB_ERR_NOMEM, "http: utilisation sampler");
  s->h = h;
  pthread_mutex_init(&s->mu, NULL);
  tb_status st = tb_bgthread_start(
      &s->thread,
      &(tb_bgthread_opts_t){
          .name = "http-sampler", .tick = sample, .arg = s, .interval_ms = TB_HTTP_SAMPLE_MS});
  if (st != TB_OK) {
    pthread_mutex_destroy(&s->mu);
    free(s);
    return st;
  }
  h->sampler = s;
  return TB_OK;
}

void tb__http_sampler_stop(tb_http_t *h) {
  struct tb_http_sampler *s = h->sampler;
  if (s == NULL) return;
  atomic_store(&s->stopping, 1);
  tb_bgthread_stop(s->thread);
  pthread_mutex_destroy(&s->mu);
  free(s);
  h->sampler = NULL;
}

/* Tier |t|'s samples of the last |minutes| as [[unix ms, in flight, utilisation], ...], oldest
 * first; an empty array without a sampler. */
static json_t *history(tb_http_t *h, int t, int64_t minutes) {
  json_t *arr = json_array();
  struct tb_http_sampler *s = h->sampler;
  if (s == NULL || arr == NULL) return arr;
  int64_t since = tb_wall_us() - minutes * 60 * 1000000;
  int conc = h->o.cfg->tiers[t].concurrency;
  pthread_mutex_lock(&s->mu);
  for (int k = 0; k < s->count; k++) {
    int i = (s->head - s->count + k + TB_HTTP_SAMPLES) % TB_HTTP_SAMPLES;
    if (s->at_us[i] < since || s->in_flight[i][t] < 0) continue;
    json_array_append_new(arr,
                          json_pack("[I,i,f]", (json_int_t)(s->at_us[i] / 1000), s->in_flight[i][t],
                                    conc > 0 ? (double)s->in_flight[i][t] / conc : 0.0));
  }
  pthread_mutex_unlock(&s->mu);
  return arr;
}

/* ---------------------------------------------------------------- reading the store */

/* Everything the store holds for monitoring, read under the store lock in one go. */
typedef struct mon {
  json_t *runs;        /* {tier: {finished, completed, failed, avg_ms, p50_ms, p99_ms, max_ms}} */
  json_t *active;      /* {tier: {running, waiting, sleeping}} */
  json_t *escalations; /* {tier: {rule: n}} */
  json_t *sched;       /* {task: {status: n}} */
  int64_t outbox_due, outbox_held, outbox_oldest_us;
  int64_t repo_inversions;
  int64_t ws_ok, tracked_ok, ws_failed, tracked_failed, unknown_failed;
  int repo_truncated;
} mon_t;

static void mon_free(mon_t *m) {
  json_decref(m->runs);
  json_decref(m->active);
  json_decref(m->escalations);
  json_decref(m->sched);
}

static int add_runs(void *arg, const tb_mon_runs_t *r) {
  json_t *v = json_pack("{s:I,s:I,s:I,s:f,s:f,s:f,s:f}", "finished", (json_int_t)r->finished,
                        "completed", (json_int_t)r->completed, "failed", (json_int_t)r->failed,
                        "avg_ms", r->avg_us / 1000.0, "p50_ms", (double)r->p50_us / 1000.0,
                        "p99_ms", (double)r->p99_us / 1000.0, "max_ms", (double)r->max_us / 1000.0);
  return v == NULL || json_object_set_new(arg, r->tier, v) != 0;
}

/* {a: {b: n}}: the shape of active runs, escalations and scheduler runs. */
static int add_pair(void *arg, const char *a, const char *b, int64_t n) {
  json_t *inner = json_object_get(arg, a);
  if (inner == NULL) {
    inner = json_object();
    if (inner == NULL || json_object_set_new(arg, a, inner) != 0) return 1;
  }
  return json_object_set_new(inner, b, json_integer((json_int_t)n)) != 0;
}

/* Reads |m| (runs finished since |since_us|, repository jobs since then too). The repository
 * figures are skipped unless |repos|: they cost a bounded scan and a decode per dead letter,
 * which /metrics does not pay on every scrape. */
static tb_status mon_read(tb_http_t *h, int64_t since_us, int repos, mon_t *m) {
  memset(m, 0, sizeof(*m));
  m->runs = json_object();
  m->active = json_object();
  m->escalations = json_object();
  m->sched = json_object();
  if (!m->runs || !m->active || !m->escalations || !m->sched)
    return tb__fail(TB_ERR_NOMEM, "monitoring");
  tb_store_t *st = h->o.store;
  pthread_mutex_lock(&h->store_mu);
  tb_status s = tb_store_mon_runs(st, since_us, add_runs, m->runs);
  if (s == TB_OK) s = tb_store_mon_active(st, add_pair, m->active);
  if (s == TB_OK) s = tb_store_mon_escalations(st, add_pair, m->escalations);
  if (s == TB_OK) s = tb_store_mon_sched_runs(st, add_pair, m->sched);
  if (s == TB_OK)
    s = tb_store_mon_outbox(st, tb_wall_us(), &m->outbox_due, &m->outbox_held,
                            &m->outbox_oldest_us);
  if (s == TB_OK) s = tb_store_repo_inversions(st, 0, NULL, NULL, &m->repo_inversions, NULL);
  if (s == TB_OK && repos)
    s = tb_activity_repo_jobs_ok(st, since_us, REPO_JOBS_SCAN, &m->ws_ok, &m->tracked_ok,
                                 &m->repo_truncated);
  if (s == TB_OK && repos)
    s = tb_dlq_repo_jobs_failed(st, h->o.cat, since_us, &m->ws_failed, &m->tracked_failed,
                                &m->unknown_failed);
  pthread_mutex_unlock(&h->store_mu);
  return s;
}

static json_t *count_of(json_t *o, const char *a, const char *b) {
  return json_integer(json_integer_value(json_object_get(json_object_get(o, a), b)));
}

/* {succeeded, failed, success_rate}: the rate in percent, null with no job. */
static json_t *rate_json(int64_t ok, int64_t failed) {
  return json_pack(
      "{s:I,s:I,s:o}", "succeeded", (json_int_t)ok, "failed", (json_int_t)failed, "success_rate",
      ok + failed ? json_real(100.0 * (double)ok / (double)(ok + failed)) : json_null());
}

/* ---------------------------------------------------------------- GET /api/monitoring */

/* GET /api/monitoring?window=24h&history=15: runs finished in the window (a duration, default
 * 24h, at most 30d) and the last |history| minutes (default 15, at most 60) of utilisation
 * samples. */
void tb__http_get_monitoring(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  static const char *const allowed[] = {"window", "history", NULL};
  if (tb__http_args_check(req, resp, allowed) != 0) return;
  int64_t window_ms = DEFAULT_WINDOW_MS, minutes = 0;
  const char *window = tb__http_arg(req, "window");
  if (window != NULL && (tb_duration_parse_ms(window, &window_ms) != TB_OK || window_ms <= 0 ||
                         window_ms > 30LL * 24 * 3600 * 1000)) {
    tb__http_error(resp, 400, "window",
                   "window: expected a duration from 1ms to 30d (2h, 7d), "
                   "got '%.32s'",
                   window);
    return;
  }
  if (tb__http_arg_int(req, resp, "history", 0, 60, 15, &minutes) != 0) return;
  int64_t now = tb_wall_us(), since = now - window_ms * 1000;
  tb_http_tier_figures_t *f = tb__http_figures(h, resp);
  if (f == NULL) return;
  mon_t m;
  tb_status st = mon_read(h, since, 1, &m);
  if (st != TB_OK) {
    mon_free(&m);
    free(f);
    tb__http_fail(resp, st, NULL, "reading the monitoring figures");
    return;
  }
  const tb_config_t *cfg = h->o.cfg;
  json_t *tiers = json_array();
  int64_t esc_total = 0, inversions = 0;
  for (int t = 0; t < cfg->n_tiers; t++) {
    const char *name = cfg->tiers[t].name;
    json_t *runs = json_object_get(m.runs, name);
    json_t *esc = json_object_get(m.escalations, name);
    int64_t tier_esc = 0;
    const char *rule;
    json_t *v;
    json_object_foreach(esc, rule, v) tier_esc += json_integer_value(v);
    esc_total += tier_esc;
    inversions += f[t].s.inversions;
    int conc = cfg->tiers[t].concurrency;
    json_t *tj = json_pack(
        "{s:s,s:i,s:I,s:o,s:{s:o,s:o,s:o},s:{s:I,s:o},s:{s:I,s:I,s:I,s:f,s:f}}", "tier", name,
        "concurrency", conc, "timeout_ms", (json_int_t)cfg->tiers[t].timeout_ms, "runs",
        runs ? json_incref(runs)
             : json_pack("{s:i,s:i,s:i,s:n,s:n,s:n,s:n}", "finished", 0, "completed", 0, "failed",
                         0, "avg_ms", "p50_ms", "p99_ms", "max_ms"),
        "active", "running", count_of(m.active, name, "running"), "waiting",
        count_of(m.active, name, "waiting"), "sleeping", count_of(m.active, name, "sleeping"),
        "escalations", "total", (json_int_t)tier_esc, "by_rule",
        esc ? json_incref(esc) : json_object(), "events", "processed", (json_int_t)f[t].s.processed,
        "dead_lettered", (json_int_t)f[t].s.dead, "inversions", (json_int_t)f[t].s.inversions,
        "publish_to_commit_p50_ms", tb_hist_quantile(&f[t].s.commit, .5) / 1000.0,
        "publish_to_commit_p99_ms", tb_hist_quantile(&f[t].s.commit, .99) / 1000.0);
    if (tj == NULL) continue;
    if (f[t].have_queue) {
      json_object_set_new(tj, "queue",
                          json_pack("{s:I,s:I,s:I}", "depth", (json_int_t)f[t].pending, "in_flight",
                                    (json_int_t)f[t].in_flight, "redelivered",
                                    (json_int_t)f[t].redelivered));
      json_object_set_new(tj, "utilisation",
                          json_real(conc > 0 ? (double)f[t].in_flight / conc : 0.0));
    } else {
      json_object_set_new(tj, "queue", json_null());
      json_object_set_new(tj, "utilisation", json_null());
    }
    json_object_set_new(tj, "utilisation_history", history(h, t, minutes));
    json_array_append_new(tiers, tj);
  }
  char since_text[40];
  tb_time_format(since, since_text, sizeof(since_text));
  json_t *repos =
      json_pack("{s:o,s:o,s:I,s:b}", "workspace", rate_json(m.ws_ok, m.ws_failed), "tracked_only",
                rate_json(m.tracked_ok, m.tracked_failed), "failed_undecodable",
                (json_int_t)m.unknown_failed, "truncated", m.repo_truncated);
  json_t *root = json_pack(
      "{s:s,s:I,s:o,s:{s:I,s:O},s:o,s:{s:I,s:I,s:f},s:O,s:{s:I,s:I}}", "since", since_text,
      "window_ms", (json_int_t)window_ms, "tiers", tiers, "escalations", "total",
      (json_int_t)esc_total, "by_tier", m.escalations, "repository_jobs", repos, "outbox", "due",
      (json_int_t)m.outbox_due, "held", (json_int_t)m.outbox_held, "lag_seconds",
      m.outbox_due > 0 && m.outbox_oldest_us > 0 ? (double)(now - m.outbox_oldest_us) / 1e6 : 0.0,
      "scheduler_runs", m.sched, "inversions", "dispatch", (json_int_t)inversions, "repositories",
      (json_int_t)m.repo_inversions);
  mon_free(&m);
  free(f);
  tb__http_json(resp, 200, root);
}

/* ---------------------------------------------------------------- GET /metrics */

#define put tb__http_put

/* A label value in the text format: backslash, quote and newline escaped. Rule and task names
 * come from config and the operator, so they are not trusted to be plain. */
static const char *label(const char *v, char *buf, size_t cap) {
  size_t o = 0;
  for (; *v && o + 3 < cap; v++) {
    if (*v == '\\' || *v == '"') buf[o++] = '\\';
    if (*v == '\n') {
      buf[o++] = '\\';
      buf[o++] = 'n';
      continue;
    }
    buf[o++] = *v;
  }
  buf[o] = '\0';
  return buf;
}

/* The samples of family |name| from |obj|, an object of objects of counts: one sample a count,
 * labelled |k1| (the outer key) and |k2| (the inner). */
static void two_labels(tb_http_text_t *t, const char *name, const char *k1, const char *k2,
                       json_t *obj) {
  char l1[256], l2[256];
  const char *outer, *inner;
  json_t *counts, *n;
  json_object_foreach(obj, outer, counts) {
    json_object_foreach(counts, inner, n)
        put(t, "%s{%s=\"%s\",%s=\"%s\"} %lld\n", name, k1, label(outer, l1, sizeof(l1)), k2,
            label(inner, l2, sizeof(l2)), (long long)json_integer_value(n));
  }
}

int tb__http_metrics_monitor(tb_http_t *h, const tb_http_tier_figures_t *f, tb_http_text_t *t,
                             tb_http_resp_t *resp) {
  mon_t m;
  int64_t now = tb_wall_us();
  tb_status st = mon_read(h, now - DEFAULT_WINDOW_MS * 1000, 0, &m);
  if (st != TB_OK) {
    mon_free(&m);
    tb__http_fail(resp, st, NULL, "reading the monitoring figures");
    return -1;
  }
  const tb_config_t *cfg = h->o.cfg;
  put(t, "# HELP tierbus_tier_concurrency Messages a worker runs at once on the tier (config).\n"
         "# TYPE tierbus_tier_concurrency gauge\n");
  for (int i = 0; i < cfg->n_tiers; i++)
    put(t, "tierbus_tier_concurrency{tier=\"%s\"} %d\n", cfg->tiers[i].name,
        cfg->tiers[i].concurrency);
  put(t, "# HELP tierbus_tier_utilisation_ratio In flight over concurrency (seed 000); above 1 "
         "when several workers serve the tier.\n# TYPE tierbus_tier_utilisation_ratio gauge\n");
  for (int i = 0; i < cfg->n_tiers; i++)
    if (f[i].have_queue && cfg->tiers[i].concurrency > 0)
      put(t, "tierbus_tier_utilisation_ratio{tier=\"%s\"} %.6g\n", cfg->tiers[i].name,
          (double)f[i].in_flight / cfg->tiers[i].concurrency);
  put(t, "# HELP tierbus_workflows Workflow runs not finished, by tier and status (waiting: for "
         "an event or a reply; sleeping: on a timer).\n# TYPE tierbus_workflows gauge\n");
  static const char *const active[] = {"running", "waiting", "sleeping"};
  for (int i = 0; i < cfg->n_tiers; i++)
    for (int k = 0; k < 3; k++)
      put(t, "tierbus_workflows{tier=\"%s\",status=\"%s\"} %lld\n", cfg->tiers[i].name, active[k],
          (long long)json_integer_value(
              json_object_get(json_object_get(m.active, cfg->tiers[i].name), active[k])));
  put(t, "# HELP tierbus_workflow_run_duration_seconds Run duration, creation to finish, of the "
         "runs finished in the last 24 h (exact ranks).\n"
         "# TYPE tierbus_workflow_run_duration_seconds gauge\n");
  for (int i = 0; i < cfg->n_tiers; i++) {
    json_t *r = json_object_get(m.runs, cfg->tiers[i].name);
    if (r == NULL) continue;
    put(t, "tierbus_workflow_run_duration_seconds{tier=\"%s\",quantile=\"0.5\"} %.6f\n",
        cfg->tiers[i].name, json_number_value(json_object_get(r, "p50_ms")) / 1000.0);
    put(t, "tierbus_workflow_run_duration_seconds{tier=\"%s\",quantile=\"0.99\"} %.6f\n",
        cfg->tiers[i].name, json_number_value(json_object_get(r, "p99_ms")) / 1000.0);
  }
  put(t, "# HELP tierbus_workflow_runs_finished Runs finished in the last 24 h, by tier and "
         "status.\n# TYPE tierbus_workflow_runs_finished gauge\n");
  for (int i = 0; i < cfg->n_tiers; i++) {
    json_t *r = json_object_get(m.runs, cfg->tiers[i].name);
    put(t, "tierbus_workflow_runs_finished{tier=\"%s\",status=\"completed\"} %lld\n",
        cfg->tiers[i].name, (long long)json_integer_value(json_object_get(r, "completed")));
    put(t, "tierbus_workflow_runs_finished{tier=\"%s\",status=\"failed\"} %lld\n",
        cfg->tiers[i].name, (long long)json_integer_value(json_object_get(r, "failed")));
  }
  put(t, "# HELP tierbus_escalations_total Runs raised to the tier by the rule (seed 000).\n"
         "# TYPE tierbus_escalations_total counter\n");
  two_labels(t, "tierbus_escalations_total", "tier", "rule", m.escalations);
  put(t,
      "# HELP tierbus_outbox_due Follow-up messages due and not yet published by a relay.\n"
      "# TYPE tierbus_outbox_due gauge\ntierbus_outbox_due %lld\n"
      "# HELP tierbus_outbox_held Follow-up messages held back until later (timers, retry "
      "delays).\n# TYPE tierbus_outbox_held gauge\ntierbus_outbox_held %lld\n"
      "# HELP tierbus_outbox_lag_seconds How long the oldest due follow-up has waited for a "
      "relay.\n# TYPE tierbus_outbox_lag_seconds gauge\ntierbus_outbox_lag_seconds %.6f\n",
      (long long)m.outbox_due, (long long)m.outbox_held,
      m.outbox_due > 0 && m.outbox_oldest_us > 0 ? (double)(now - m.outbox_oldest_us) / 1e6 : 0.0);
  put(t, "# HELP tierbus_scheduler_runs Scheduler runs kept (purged with old jobs), by task and "
         "status.\n# TYPE tierbus_scheduler_runs gauge\n");
  two_labels(t, "tierbus_scheduler_runs", "task", "status", m.sched);
  put(t,
      "# HELP tierbus_repository_priority_inversions Tracked repositories whose stored "
      "priority disagrees with the rules (seed 002, target 0).\n"
      "# TYPE tierbus_repository_priority_inversions gauge\n"
      "tierbus_repository_priority_inversions %lld\n",
      (long long)m.repo_inversions);
  put(t,
      "# HELP tierbus_nats_connected 1 when this process's NATS connection is up.\n"
      "# TYPE tierbus_nats_connected gauge\ntierbus_nats_connected %d\n",
      tb__http_nats_up(h));
  mon_free(&m);
  return 0;
}
