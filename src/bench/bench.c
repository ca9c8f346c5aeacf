/* The benchmark. Each scenario runs on a fresh embedded nats-server, and the process that consumes
 * is a forked child of its own, so that its peak RSS is the worker's alone and not the
 * publisher's buffers. The raw ceiling (async JetStream publish, fetch, one SQLite insert per
 * message, ack) is measured in the same run with the same message bytes. */
#include "bench/bench.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/publish.h"
#include "bus/bus.h"
#include "bus/server.h"
#include "codec/codec.h"
#include "core/clock.h"
#include "core/hist.h"
#include "core/log.h"
#include "core/status.h"
#include "core/util.h"
#include "dispatch/dispatch.h"
#include "engine/engine.h"
#include "engine/relay.h"
#include "replay/replay.h"
#include "sim/sim.h"
#include "store/logstate.h"
#include "store/store.h"
#include "workflows/priority.h"
#include "workflows/registry.h"

/* Share of each tier in the throughput mix, by tier index (critical .. background). */
static const int mix_pct[] = {5, 15, 40, 25, 15};

typedef struct bench {
  const tb_config_t *cfg;
  const tb_catalogue_t *cat;
  const tb_bench_opts_t *opts;
  char dir[PATH_MAX];
} bench_t;

/* ---------------------------------------------------------------- helpers */

static uint32_t lcg(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

/* One message to publish: event, tier and packed payload; the envelope is made at send time. */
typedef struct item {
  const tb_event_def_t *ev;
  const char *tier;
  uint8_t *payload;
  size_t len;
} item_t;

/* Builds |n| items. |tier| NULL = the throughput mix; else every item on that tier. */
static item_t *make_items(const bench_t *b, long n, const char *tier) {
  /* The bus scenarios measure one message's way through a handler; events bound to the
   * workflow handlers would add the follow-up messages of whole workflows (or dead-letter a
   * sample workflow id), so they are left out of the mix. */
  const tb_event_def_t *evs[256];
  size_t n_ev = 0;
  for (size_t k = 0; k < tb_catalogue_count(b->cat) && n_ev < 256; k++) {
    const tb_event_def_t *ev = tb_catalogue_at(b->cat, k);
    if (strncmp(ev->handler, "workflow.", 9) != 0 && strcmp(ev->handler, "sched.run") != 0)
      evs[n_ev++] = ev; /* a scheduled-task names a task: the scheduler's own traffic */
  }
  if (n_ev == 0) return NULL;
  item_t *items = calloc((size_t)n, sizeof(*items));
  uint32_t seed = 42;
  for (long i = 0; items && i < n; i++) {
    const tb_event_def_t *ev = evs[lcg(&seed) % n_ev];
    int t = 0;
    if (tier == NULL) {
      int r = (int)(lcg(&seed) % 100), acc = 0;
      for (t = 0; t < b->cfg->n_tiers - 1 && t < (int)TB_COUNTOF(mix_pct) - 1; t++) {
        acc += mix_pct[t];
        if (r < acc) break;
      }
    } else {
      t = tb_config_tier_index(b->cfg, tier);
    }
    json_t *js = tb_sample_payload(ev, (unsigned)i);
    ProtobufCMessage *m = NULL;
    if (tb_codec_payload_from_json(ev, js, &m) == TB_OK) {
      tb_codec_pack(m, &items[i].payload, &items[i].len);
      protobuf_c_message_free_unpacked(m, NULL);
    }
    json_decref(js);
    items[i].ev = ev;
    items[i].tier = b->cfg->tiers[t].name;
  }
  return items;
}

static void free_items(item_t *items, long n) {
  for (long i = 0; items && i < n; i++) free(items[i].payload);
  free(items);
}

/* How the throughput publisher makes its ids and headers (bench --no-msg-id, --random-ids). */
enum { SEND_MSG_ID = 1, SEND_RANDOM_ID = 2 };

/* Queues one item for asynchronous publishing on its tier subject, wrapped at send time so that
 * its occurred_at is the moment of sending. |how|: SEND_MSG_ID sets the id as Nats-Msg-Id;
 * SEND_RANDOM_ID uses a random id, as a foreign publisher might, instead of tierbus's
 * time-ordered one. */
static tb_status send_item(tb_bus_t *bus, const item_t *it, int how) {
  tb_prepared_t p = {0};
  char id[64];
  static _Thread_local uint32_t seed = 7;
  if (how & SEND_RANDOM_ID)
    snprintf(id, sizeof(id), "evt-%08x%08x%08x%08x", lcg(&seed), lcg(&seed), lcg(&seed),
             lcg(&seed));
  else
    tb_new_id(id, sizeof(id));
  tb_status st = tb_publish_wrap(it->ev, it->tier, id, it->payload, it->len, NULL, &p);
  if (st == TB_OK)
    st = tb_bus_publish_async(bus, p.subject, how & SEND_MSG_ID ? p.id : NULL, p.buf, p.len);
  tb_prepared_free(&p);
  return st;
}

/* Publishes every item and waits for the acks. */
static tb_status publish_items(tb_bus_t *bus, const item_t *items, long n, int how,
                               int64_t *failed) {
  tb_status st = TB_OK;
  for (long i = 0; i < n && st == TB_OK; i++) st = send_item(bus, &items[i], how);
  tb_status wst = tb_bus_publish_wait(bus, 120000, failed);
  return st != TB_OK ? st : wst;
}

/* Runs |fn| in a forked child that writes one JSON document to the pipe; returns it with the
 * child's peak RSS in KiB. |ready_fd_out|, when non-NULL, receives a pipe end on which the child
 * writes one byte once it is ready (the caller must read it). */
typedef json_t *(*child_fn)(bench_t *b, void *arg, int ready_fd);

typedef struct child {
  pid_t pid;
  int out_fd, ready_fd;
} child_t;

static int child_start(child_t *c, bench_t *b, child_fn fn, void *arg) {
  *c = (child_t){.pid = -1, .out_fd = -1, .ready_fd = -1}; /* defined when the start fails */
  int out[2], ready[2];
  if (pipe(out) != 0 || pipe(ready) != 0) return -1;
  fflush(NULL);
  c->pid = fork();
  if (c->pid < 0) return -1;
  if (c->pid == 0) {
    close(out[0]);
    close(ready[0]);
    json_t *res = fn(b, arg, ready[1]);
    char *text = res ? json_dumps(res, JSON_COMPACT) : strdup("{\"error\":\"no result\"}");
    size_t len = strlen(text), off = 0;
    while (off < len) {
      ssize_t w = write(out[1], text + off, len - off);
      if (w <= 0) break;
      off += (size_t)w;
    }
    _exit(0);
  }
  close(out[1]);
  close(ready[1]);
  c->out_fd = out[0];
  c->ready_fd = ready[0];
  return 0;
}

static int child_wait_ready(child_t *c) {
  char ch;
  return read(c->ready_fd, &ch, 1) == 1 ? 0 : -1;
}

static json_t *child_finish(child_t *c, long *rss_kb, double *cpu_s) {
  *rss_kb = 0;
  if (cpu_s) *cpu_s = 0;
  if (c->pid < 0) /* never started: nothing to read or wait for (wait4(-1) would take any child) */
    return json_pack("{s:s}", "error", "could not start the child process (pipe or fork failed)");
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 1024 > cap) buf = realloc(buf, cap *= 2);
    ssize_t r = read(c->out_fd, buf + len, cap - len - 1);
    if (r <= 0) break;
    len += (size_t)r;
  }
  buf[len] = '\0';
  close(c->out_fd);
  close(c->ready_fd);
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof(ru));
  wait4(c->pid, &status, 0, &ru);
  *rss_kb = ru.ru_maxrss;
  if (cpu_s)
    *cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
             (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  json_error_t err;
  json_t *res = json_loads(buf, 0, &err);
  if (res == NULL)
    res = json_pack("{s:s,s:i}", "error", "child produced no result", "status", status);
  free(buf);
  return res;
}

static void signal_ready(int fd) {
  char ch = 'R';
  if (write(fd, &ch, 1) != 1) return;
}

static json_t *err_json(const char *what) {
  return json_pack("{s:s,s:s}", "error", what, "detail", tb_errdetail());
}

/* ---------------------------------------------------------------- the plain pipeline */

/* The ceiling is the plainest durable pipeline this machine runs with the same parts, written as
 * anyone would with plain cnats (shared/reference/pipe_ceiling.c): a work-queue file stream, an
 * async publisher without Nats-Msg-Id, a pull consumer fetching up to 256, one INSERT per
 * message keyed by its stream sequence in one transaction per fetch, commit, ack. None of
 * tierbus's choices (its streams, ids, connection options, store) are in it, so it measures the
 * machine, not tierbus. The messages are tierbus's own envelopes, byte for byte. */

#define PIPE_STREAM "PIPE"
#define PIPE_SUBJECT "pipe.evt"
#define PIPE_FETCH 256

typedef struct pipe_args {
  const char *url;
  long n;
} pipe_args_t;

static natsStatus pipe_connect(const char *url, natsConnection **nc, jsCtx **js) {
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = 4096;
  natsStatus s = natsConnection_ConnectTo(nc, url);
  if (s == NATS_OK) s = natsConnection_JetStream(js, *nc, &jo);
  return s;
}

static json_t *pipe_consumer(bench_t *b, void *arg, int ready_fd) {
  pipe_args_t *a = arg;
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  natsSubscription *sub = NULL;
  jsErrCode je = 0;
  natsStatus s = pipe_connect(a->url, &nc, &js);
  if (s == NATS_OK) {
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subj[] = {PIPE_SUBJECT};
    sc.Name = PIPE_STREAM;
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Retention = js_WorkQueuePolicy;
    s = js_AddStream(NULL, js, &sc, NULL, &je);
  }
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = PIPE_STREAM;
  so.Config.AckPolicy = js_AckExplicit;
  so.Config.MaxAckPending = 100000;
  if (s == NATS_OK) s = js_PullSubscribe(&sub, js, PIPE_SUBJECT, "pipe-durable", NULL, &so, &je);
  char dbpath[PATH_MAX + 32];
  snprintf(dbpath, sizeof(dbpath), "%s/pipe-%ld.db", b->dir, a->n);
  sqlite3 *db = NULL;
  sqlite3_stmt *ins = NULL;
  if (s == NATS_OK && sqlite3_open(dbpath, &db) == SQLITE_OK &&
      sqlite3_exec(db,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                   "CREATE TABLE ev(seq INTEGER PRIMARY KEY, payload BLOB, processed_at REAL)",
                   NULL, NULL, NULL) == SQLITE_OK)
    sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO ev(seq, payload, processed_at) VALUES(?,?,?)", -1,
                       &ins, NULL);
  if (ins == NULL) {
    json_t *err = json_pack("{s:s,s:s}", "error", "pipe setup", "detail",
                            s != NATS_OK ? natsStatus_GetText(s) : sqlite3_errmsg(db));
    sqlite3_close(db);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return err;
  }
  signal_ready(ready_fd);
  long got = 0;
  int64_t last = 0;
  while (got < a->n) {
    natsMsgList l;
    if (natsSubscription_Fetch(&l, sub, PIPE_FETCH, 5000, &je) != NATS_OK) break;
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (int i = 0; i < l.Count; i++) {
      uint64_t seq = 0;
      jsMsgMetaData *md = NULL;
      if (natsMsg_GetMetaData(&md, l.Msgs[i]) == NATS_OK) seq = md->Sequence.Stream;
      jsMsgMetaData_Destroy(md);
      sqlite3_bind_int64(ins, 1, (sqlite3_int64)seq);
      sqlite3_bind_blob(ins, 2, natsMsg_GetData(l.Msgs[i]), natsMsg_GetDataLength(l.Msgs[i]),
                        SQLITE_STATIC);
      sqlite3_bind_double(ins, 3, (double)tb_wall_us() / 1e6);
      sqlite3_step(ins);
      sqlite3_reset(ins);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    for (int i = 0; i < l.Count; i++) natsMsg_Ack(l.Msgs[i], NULL);
    got += l.Count;
    natsMsgList_Destroy(&l);
    last = tb_wall_us();
  }
  sqlite3_finalize(ins);
  sqlite3_close(db);
  natsSubscription_Destroy(sub);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return json_pack("{s:I,s:I}", "consumed", (json_int_t)got, "last_us", (json_int_t)last);
}

static json_t *pipe_publisher(bench_t *b, void *arg, int ready_fd) {
  pipe_args_t *a = arg;
  item_t *items = make_items(b, a->n, NULL);
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  if (items == NULL || pipe_connect(a->url, &nc, &js) != NATS_OK) return err_json("publisher");
  signal_ready(ready_fd);
  int64_t t0 = tb_wall_us();
  natsStatus s = NATS_OK;
  for (long i = 0; i < a->n && s == NATS_OK; i++) {
    tb_prepared_t p = {0};
    char id[64];
    tb_new_id(id, sizeof(id));
    if (tb_publish_wrap(items[i].ev, items[i].tier, id, items[i].payload, items[i].len, NULL, &p) ==
        TB_OK)
      s = js_PublishAsync(js, PIPE_SUBJECT, p.buf, (int)p.len, NULL);
    tb_prepared_free(&p);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 120000;
  if (s == NATS_OK) s = js_PublishAsyncComplete(js, &po);
  int64_t t1 = tb_wall_us();
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  free_items(items, a->n);
  return json_pack("{s:I,s:I,s:I,s:s}", "start_us", (json_int_t)t0, "acked_us", (json_int_t)t1,
                   "failed", (json_int_t)(s == NATS_OK ? 0 : 1), "status", natsStatus_GetText(s));
}

typedef struct pub_args {
  const char *url;
  long n;
  const char *tier; /* NULL = mix */
} pub_args_t;

static json_t *bulk_publisher(bench_t *b, void *arg, int ready_fd) {
  pub_args_t *a = arg;
  item_t *items = make_items(b, a->n, a->tier);
  tb_bus_t *bus = NULL;
  if (items == NULL || tb_bus_connect(&bus, a->url, "bench-pub") != TB_OK)
    return err_json("publisher");
  signal_ready(ready_fd);
  int64_t t0 = tb_wall_us(), failed = 0;
  tb_status st = publish_items(
      bus, items, a->n,
      (b->opts->no_msg_id ? 0 : SEND_MSG_ID) | (b->opts->random_ids ? SEND_RANDOM_ID : 0), &failed);
  int64_t t1 = tb_wall_us();
  tb_bus_destroy(bus);
  free_items(items, a->n);
  return json_pack("{s:I,s:I,s:I,s:s}", "start_us", (json_int_t)t0, "acked_us", (json_int_t)t1,
                   "failed", (json_int_t)failed, "status", tb_err_name(st));
}

/* ---------------------------------------------------------------- tierbus worker */

/* Threads of this process now (the worker's, with cnats' and SQLite's). */
static int thread_count(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[128];
  int n = 0;
  while (f != NULL && fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "Threads: %d", &n) == 1) break;
  if (f != NULL) fclose(f);
  return n;
}

typedef struct worker_args {
  const char *url;
  long target;        /* stop once this many messages were handled */
  int trickle_rate;   /* >0: also publish critical events at this rate until target */
  long trickle_until; /* ... counting only messages of the last tier */
  int64_t run_us;     /* >0: stop after this long instead, and report each tier's backlog left */
  /* Non-NULL: shared memory where the worker keeps its count of handled top-tier messages
   * current, for a publisher that keeps the tier saturated (asking the server instead, with
   * consumer info requests, slowed the worker down fivefold). */
  volatile int64_t *top_handled;
} worker_args_t;

typedef struct trickle {
  bench_t *b;
  tb_bus_t *bus;
  int rate;
  volatile int stop;
  long sent;
} trickle_t;

static void *trickle_loop(void *arg) {
  trickle_t *t = arg;
  const char *tier = t->b->cfg->tiers[0].name;
  item_t *items = make_items(t->b, 64, tier);
  long gap = 1000000L / t->rate;
  int64_t next = tb_mono_us();
  while (!t->stop && items) {
    if (send_item(t->bus, &items[t->sent % 64], SEND_MSG_ID) == TB_OK) t->sent++;
    next += gap;
    int64_t now = tb_mono_us();
    if (next > now) tb_sleep_us(next - now);
  }
  int64_t failed = 0;
  tb_bus_publish_wait(t->bus, 10000, &failed);
  free_items(items, 64);
  return NULL;
}

static json_t *tier_json(const tb_engine_tier_stats_t *s) {
  return json_pack("{s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:f,s:f}", "handled",
                   (json_int_t)(s->processed + s->dead + s->duplicates), "dead",
                   (json_int_t)s->dead, "start_p50_ms", tb_hist_quantile(&s->start, .5) / 1000.0,
                   "start_p95_ms", tb_hist_quantile(&s->start, .95) / 1000.0, "start_p99_ms",
                   tb_hist_quantile(&s->start, .99) / 1000.0, "start_max_ms", s->start.max / 1000.0,
                   "commit_p50_ms", tb_hist_quantile(&s->commit, .5) / 1000.0, "commit_p99_ms",
                   tb_hist_quantile(&s->commit, .99) / 1000.0, "commit_max_ms",
                   s->commit.max / 1000.0, "wait_p50_ms", tb_hist_quantile(&s->wait, .5) / 1000.0,
                   "wait_p99_ms", tb_hist_quantile(&s->wait, .99) / 1000.0, "wait_max_ms",
                   s->wait.max / 1000.0, "aged", (json_int_t)s->aged, "late", (json_int_t)s->late,
                   "over_bound_p99_ms", tb_hist_quantile(&s->over_bound, .99) / 1000.0,
                   "over_bound_max_ms", s->over_bound.max / 1000.0);
}

/* A scenario's consuming process, put together as `tierbus worker` does it: every tier and
 * domain, its own store file |dbpath|, and the outbox relay when |with_relay| (workflows need
 * it; plain events emit nothing). Closed with bench_worker_close() after the caller stopped
 * (and NULLed) the dispatcher. */
typedef struct bench_worker {
  tb_bus_t *bus;
  tb_store_t *store;
  tb_engine_t *engine;
  tb_relay_t *relay;
  tb_dispatcher_t *disp;
} bench_worker_t;

static tb_status bench_worker_open(bench_worker_t *w, const bench_t *b, const tb_config_t *cfg,
                                   const char *url, const char *name, const char *dbpath,
                                   int with_relay) {
  memset(w, 0, sizeof(*w));
  tb_status st = tb_bus_connect(&w->bus, url, name);
  if (st == TB_OK) st = tb_bus_provision(w->bus, cfg);
  if (st == TB_OK) st = tb_store_open(&w->store, dbpath);
  if (st == TB_OK) st = tb_store_offload_checkpoints(w->store, dbpath, 0);
  if (st == TB_OK)
    st = tb_engine_create(&w->engine, cfg, b->cat, w->store, w->bus, tb_registry_handler);
  if (st == TB_OK && with_relay) st = tb_relay_start(&w->relay, dbpath, w->bus, 200);
  if (st == TB_OK) tb_engine_set_relay(w->engine, w->relay);
  tb_worker_scope_t scope;
  tb_worker_scope_all(cfg, &scope);
  if (st == TB_OK) st = tb_dispatcher_start(&w->disp, cfg, w->bus, w->engine, &scope);
  return st;
}

static void bench_worker_close(bench_worker_t *w) {
  tb_dispatcher_stop(w->disp);
  tb_relay_stop(w->relay);
  tb_engine_destroy(w->engine);
  tb_store_close(w->store);
  tb_bus_destroy(w->bus);
}

/* Messages the engine has handled on every tier: applied, dead-lettered or duplicates. */
static long handled_total(const tb_config_t *cfg, tb_engine_t *engine) {
  long n = 0;
  for (int t = 0; t < cfg->n_tiers; t++) n += (long)tb_engine_handled(engine, t);
  return n;
}

static json_t *tierbus_worker(bench_t *b, void *arg, int ready_fd) {
  worker_args_t *a = arg;
  bench_worker_t w;
  char dbpath[PATH_MAX + 16];
  snprintf(dbpath, sizeof(dbpath), "%s/tierbus-%d.db", b->dir, (int)getpid());
  if (bench_worker_open(&w, b, b->cfg, a->url, "bench-worker", dbpath, 0) != TB_OK)
    return err_json("worker setup");
  tb_engine_t *engine = w.engine;
  tb_bus_t *bus = w.bus;
  signal_ready(ready_fd);

  trickle_t tr = {.b = b, .bus = bus, .rate = a->trickle_rate};
  pthread_t tt;
  if (a->trickle_rate > 0 && pthread_create(&tt, NULL, trickle_loop, &tr) != 0)
    return json_pack("{s:s}", "error", "cannot start the trickle thread");
  int64_t t0 = tb_wall_us(), deadline = tb_mono_us() + 900LL * 1000000;
  if (a->run_us > 0) deadline = tb_mono_us() + a->run_us;
  int last = b->cfg->n_tiers - 1;
  tb_engine_tier_stats_t s;
  for (;;) {
    long handled = 0, last_tier = 0;
    for (int t = 0; t < b->cfg->n_tiers; t++) {
      long h = (long)tb_engine_handled(engine, t);
      handled += h;
      if (t == last) last_tier = h;
      if (t == 0 && a->top_handled) *a->top_handled = h;
    }
    if (a->run_us == 0 &&
        (a->trickle_rate > 0 ? last_tier >= a->trickle_until : handled >= a->target))
      break;
    if (tb_mono_us() > deadline) break;
    /* The figures come from the engine (last commit), not from this loop, so it need not spin:
     * at 1 ms it was 3% of the measured worker's CPU. The saturation publisher's counter is
     * fresh enough at 5 ms. */
    tb_sleep_us(5000);
  }
  if (a->trickle_rate > 0) {
    tr.stop = 1;
    pthread_join(tt, NULL);
    tb_sleep_us(200000); /* let the last critical events through */
  }
  /* The figures are taken before the stop, which serves the messages still held: a fixed-length
   * run must not count them, they ran after the window. */
  int64_t inversions = tb_dispatcher_inversions(w.disp);
  json_t *tiers = json_object();
  long total = 0;
  int64_t last_commit = 0;
  for (int t = 0; t < b->cfg->n_tiers; t++) {
    tb_engine_tier_stats(engine, t, &s);
    total += (long)(s.processed + s.dead + s.duplicates);
    last_commit = s.last_commit_us;
    json_t *tj = tier_json(&s);
    uint64_t pending = 0, ack_pending = 0, redelivered = 0;
    if (a->run_us > 0 && tb_consumer_pending(bus, b->cfg, b->cfg->tiers[t].name, NULL, &pending,
                                             &ack_pending, &redelivered) == TB_OK)
      json_object_set_new(tj, "backlog_at_end", json_integer((json_int_t)pending));
    json_object_set_new(tiers, b->cfg->tiers[t].name, tj);
  }
  int threads = thread_count();
  tb_dispatcher_stop(w.disp);
  w.disp = NULL;
  bench_worker_close(&w);
  /* The replay scenario reads the database this worker filled. */
  return json_pack(
      "{s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:i,s:o}", "db", dbpath, "handled", (json_int_t)total,
      "inversions", (json_int_t)inversions, "ready_us", (json_int_t)t0, "last_commit_us",
      (json_int_t)last_commit, "critical_sent", (json_int_t)tr.sent, "events_per_commit",
      s.commits > 0 ? (double)total / (double)s.commits : 0.0, "threads", threads, "tiers", tiers);
}

/* ---------------------------------------------------------------- scenarios */

static int start_server(bench_t *b, const char *name, tb_server_t *srv) {
  /* Each run starts with nothing dirty in the page cache: the run before it (the ceiling before
   * tierbus at each size) leaves hundreds of megabytes for the kernel to write back, which would
   * otherwise land in the next run's flushes and CPU time. */
  sync();
  char dir[PATH_MAX + 64];
  snprintf(dir, sizeof(dir), "%s/%s", b->dir, name);
  char conf[PATH_MAX];
  snprintf(conf, sizeof(conf), "%s/config/nats-server.conf", TB_SOURCE_DIR);
  if (access(conf, R_OK) != 0) conf[0] = '\0';
  tb_status st = tb_server_start(srv, dir, 0, conf[0] ? conf : NULL, 10000);
  if (st != TB_OK) fprintf(stderr, "tierbus bench: %s\n", tb_errdetail());
  return st == TB_OK ? 0 : -1;
}

/* CPU seconds nats-server |srv| has used so far (user + system, from /proc); 0 if unreadable. */
static double server_cpu_s(const tb_server_t *srv) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)srv->pid);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  if (f) fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long long ut = 0, st = 0;
  if (p == NULL ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return 0;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double jnum(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return v ? json_number_value(v) : 0;
}

/* The plain pipeline (|pipe| 1) or tierbus moving |n| events of the tier mix: consumer child
 * ready first, then the publisher child. Events per second run from the publisher's first send
 * to the consumer's last commit. */
static json_t *throughput_run(bench_t *b, long n, int pipe) {
  tb_server_t srv;
  char name[64];
  snprintf(name, sizeof(name), "%s-%ld", pipe ? "ceiling" : "throughput", n);
  if (start_server(b, name, &srv) != 0) return json_pack("{s:s}", "error", "server");
  pipe_args_t pipe_args = {.url = srv.url, .n = n};
  worker_args_t wa = {.url = srv.url, .target = n};
  pub_args_t pa = {.url = srv.url, .n = n};
  child_t consumer, publisher;
  long rss_c = 0, rss_p = 0;
  child_start(&consumer, b, pipe ? pipe_consumer : tierbus_worker,
              pipe ? (void *)&pipe_args : (void *)&wa);
  child_wait_ready(&consumer);
  child_start(&publisher, b, pipe ? pipe_publisher : bulk_publisher,
              pipe ? (void *)&pipe_args : (void *)&pa);
  child_wait_ready(&publisher);
  double cpu_c = 0;
  json_t *pub = child_finish(&publisher, &rss_p, NULL);
  json_t *con = child_finish(&consumer, &rss_c, &cpu_c);
  double cpu_srv = server_cpu_s(&srv);
  tb_server_stop(&srv, 5000);
  double t0 = jnum(pub, "start_us"), t1 = jnum(con, pipe ? "last_us" : "last_commit_us");
  double secs = (t1 - t0) / 1e6;
  long handled = (long)jnum(con, pipe ? "consumed" : "handled");
  json_t *r = json_pack("{s:I,s:I,s:f,s:f,s:f}", "events", (json_int_t)n, "handled",
                        (json_int_t)handled, "seconds", secs, "events_per_s",
                        secs > 0 ? handled / secs : 0.0, "peak_rss_mib", rss_c / 1024.0);
  json_object_set_new(r, "publish_events_per_s",
                      json_real(n / ((jnum(pub, "acked_us") - t0) / 1e6 + 1e-9)));
  /* Where the machine's time went: CPU seconds per 100k events, of the consuming process and of
   * nats-server (which also served the publisher). */
  json_object_set_new(r, "consumer_cpu_s_per_100k", json_real(n > 0 ? cpu_c * 1e5 / n : 0));
  json_object_set_new(r, "server_cpu_s_per_100k", json_real(n > 0 ? cpu_srv * 1e5 / n : 0));
  if (!pipe) {
    json_object_set(r, "inversions", json_object_get(con, "inversions"));
    json_object_set(r, "events_per_commit", json_object_get(con, "events_per_commit"));
    json_object_set(r, "threads", json_object_get(con, "threads"));
    json_object_set(r, "tiers", json_object_get(con, "tiers"));
  }
  if (json_object_get(con, "error")) json_object_set(r, "error", json_object_get(con, "error"));
  if (json_object_get(pub, "error")) json_object_set(r, "error", json_object_get(pub, "error"));
  json_decref(pub);
  json_decref(con);
  return r;
}

/* Creates the streams and consumers on |url|, as a preload needs them before any worker runs: a
 * worker with target 0 provisions them and stops at once. */
static void provision(bench_t *b, const char *url) {
  worker_args_t wp = {.url = url, .target = 0};
  child_t prov;
  long rss = 0;
  child_start(&prov, b, tierbus_worker, &wp);
  child_wait_ready(&prov);
  json_decref(child_finish(&prov, &rss, NULL));
}

/* Backlog: preload background, then run the worker with a steady critical trickle while it
 * drains; the figure that matters is the critical tier's publish-to-start p99. */
static json_t *backlog_run(bench_t *b) {
  tb_server_t srv;
  if (start_server(b, "backlog", &srv) != 0) return json_pack("{s:s}", "error", "server");
  const char *bg = b->cfg->tiers[b->cfg->n_tiers - 1].name;
  long n = b->opts->backlog;
  long rss = 0;
  pub_args_t pa = {.url = srv.url, .n = n, .tier = bg};
  worker_args_t wa = {
      .url = srv.url, .target = 0, .trickle_rate = b->opts->critical_rate, .trickle_until = n};
  provision(b, srv.url);
  child_t publisher, worker;
  child_start(&publisher, b, bulk_publisher, &pa);
  child_wait_ready(&publisher);
  json_t *pub = child_finish(&publisher, &rss, NULL);
  child_start(&worker, b, tierbus_worker, &wa);
  child_wait_ready(&worker);
  json_t *con = child_finish(&worker, &rss, NULL);
  tb_server_stop(&srv, 5000);
  double secs = (jnum(con, "last_commit_us") - jnum(con, "ready_us")) / 1e6;
  json_t *tiers = json_object_get(con, "tiers");
  json_t *crit = json_object_get(tiers, b->cfg->tiers[0].name);
  json_t *r =
      json_pack("{s:I,s:I,s:f,s:f,s:f}", "backlog", (json_int_t)n, "critical_rate",
                (json_int_t)b->opts->critical_rate, "drain_seconds", secs, "drain_events_per_s",
                secs > 0 ? n / secs : 0.0, "peak_rss_mib", rss / 1024.0);
  json_object_set(r, "critical_sent", json_object_get(con, "critical_sent"));
  json_object_set(r, "critical", crit);
  json_object_set(r, "inversions", json_object_get(con, "inversions"));
  json_object_set(r, "tiers", tiers);
  if (json_object_get(con, "error")) json_object_set(r, "error", json_object_get(con, "error"));
  json_decref(pub);
  json_decref(con);
  return r;
}

/* ---------------------------------------------------------------- saturation */

/* Every tier saturated at once, to measure aging: each lower tier gets a backlog it cannot drain
 * in the window, and the critical stream is kept non-empty for the whole window, so that without
 * aging nothing below critical would ever run. What aging promises is measured per tier: how long
 * a message held ready in the worker waits before it is dispatched, against the tier's bound
 * (tb_dispatch_aging_bound_us). Time spent in the stream before a slot frees is not part of that
 * wait: when work arrives faster than it is done, no policy bounds it. */
typedef struct sat_args {
  const char *url;
  long preload[TB_MAX_TIERS];    /* messages published per tier before the worker starts */
  int64_t run_us;                /* how long to keep the top tier topped up once ready */
  long low, chunk;               /* top up by |chunk| whenever fewer than |low| are unhandled */
  volatile int64_t *top_handled; /* the worker's count (worker_args_t.top_handled) */
} sat_args_t;

static json_t *saturation_publisher(bench_t *b, void *arg, int ready_fd) {
  sat_args_t *a = arg;
  const tb_config_t *cfg = b->cfg;
  tb_bus_t *bus = NULL;
  if (tb_bus_connect(&bus, a->url, "bench-sat-pub") != TB_OK) return err_json("publisher");
  int64_t failed = 0;
  tb_status st = TB_OK;
  for (int t = 0; t < cfg->n_tiers && st == TB_OK; t++) {
    item_t *items = make_items(b, a->preload[t], cfg->tiers[t].name);
    st = items ? publish_items(bus, items, a->preload[t], SEND_MSG_ID, &failed) : TB_ERR_NOMEM;
    free_items(items, a->preload[t]);
  }
  item_t *pool = make_items(b, a->chunk, cfg->tiers[0].name);
  if (st != TB_OK || pool == NULL || failed > 0) {
    free_items(pool, a->chunk);
    tb_bus_destroy(bus);
    return err_json("preload");
  }
  signal_ready(ready_fd);
  int64_t end = tb_mono_us() + a->run_us, sent = a->preload[0], min_unhandled = INT64_MAX;
  while (tb_mono_us() < end && st == TB_OK) {
    int64_t unhandled = sent - *a->top_handled;
    if (unhandled < min_unhandled) min_unhandled = unhandled;
    if (unhandled < a->low) {
      st = publish_items(bus, pool, a->chunk, SEND_MSG_ID, &failed);
      sent += a->chunk;
    } else {
      tb_sleep_us(5000);
    }
  }
  free_items(pool, a->chunk);
  tb_bus_destroy(bus);
  return json_pack("{s:I,s:I,s:I,s:s}", "critical_sent", (json_int_t)sent, "critical_min_unhandled",
                   (json_int_t)min_unhandled, "failed", (json_int_t)failed, "status",
                   tb_err_name(st));
}

static json_t *saturation_run(bench_t *b) {
  const tb_config_t *cfg = b->cfg;
  tb_server_t srv;
  if (start_server(b, "saturation", &srv) != 0) return json_pack("{s:s}", "error", "server");
  int64_t run_us = b->opts->saturate_seconds * 1000000LL;
  volatile int64_t *top_handled =
      mmap(NULL, sizeof(int64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (top_handled == MAP_FAILED) {
    tb_server_stop(&srv, 5000);
    return json_pack("{s:s}", "error", "shared memory");
  }
  *top_handled = 0;
  sat_args_t sa = {.url = srv.url,
                   .run_us = run_us + 3000000,
                   .low = 10000,
                   .chunk = 5000,
                   .top_handled = top_handled};
  /* A lower tier under saturated critical runs about the messages it holds ready
   * (tb_dispatch_ready_cap) per aging bound; three times that over the window, and never fewer
   * than 2,000, cannot drain. */
  for (int t = 1; t < cfg->n_tiers; t++) {
    int64_t bound = tb_dispatch_aging_bound_us(cfg, t);
    long n = bound > 0 ? (long)(3 * tb_dispatch_ready_cap(cfg, t) * (run_us / bound + 2)) : 0;
    sa.preload[t] = n > 2000 ? n : 2000;
  }
  sa.preload[0] = 2 * sa.low;
  worker_args_t wa = {.url = srv.url, .run_us = run_us, .top_handled = top_handled};
  child_t publisher, worker;
  long rss = 0, rss_p = 0;
  provision(b, srv.url);
  child_start(&publisher, b, saturation_publisher, &sa);
  child_wait_ready(&publisher);
  child_start(&worker, b, tierbus_worker, &wa);
  child_wait_ready(&worker);
  json_t *con = child_finish(&worker, &rss, NULL);
  json_t *pub = child_finish(&publisher, &rss_p, NULL);
  tb_server_stop(&srv, 5000);

  json_t *r = json_pack("{s:I,s:f}", "seconds", (json_int_t)b->opts->saturate_seconds,
                        "peak_rss_mib", rss / 1024.0);
  json_object_set(r, "inversions", json_object_get(con, "inversions"));
  json_object_set(r, "critical_sent", json_object_get(pub, "critical_sent"));
  json_object_set(r, "critical_min_unhandled", json_object_get(pub, "critical_min_unhandled"));
  json_t *tiers = json_object(), *ctiers = json_object_get(con, "tiers");
  /* The worker holds at most the top tier's ready messages and an open batch: more unhandled
   * than that means the stream never ran dry. */
  int saturated =
      jnum(pub, "critical_min_unhandled") > tb_dispatch_ready_cap(cfg, 0) + cfg->commit_batch_max;
  int within = 1;
  for (int t = 0; t < cfg->n_tiers; t++) {
    json_t *tj = json_object_get(ctiers, cfg->tiers[t].name);
    if (tj == NULL) continue;
    json_t *o = json_pack(
        "{s:I,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "preloaded", (json_int_t)sa.preload[t], "handled",
        json_object_get(tj, "handled"), "backlog_at_end", json_object_get(tj, "backlog_at_end"),
        "aged", json_object_get(tj, "aged"), "wait_p50_ms", json_object_get(tj, "wait_p50_ms"),
        "wait_p99_ms", json_object_get(tj, "wait_p99_ms"), "wait_max_ms",
        json_object_get(tj, "wait_max_ms"), "start_p99_ms", json_object_get(tj, "start_p99_ms"),
        "late", json_object_get(tj, "late"));
    if (jnum(tj, "backlog_at_end") <= 0) saturated = 0;
    int64_t bound = tb_dispatch_aging_bound_us(cfg, t);
    if (bound >= 0) {
      double bound_ms = bound / 1000.0;
      json_object_set_new(o, "aging_bound_ms", json_real(bound_ms));
      if (jnum(tj, "handled") > 0) {
        /* p99 of the wait = bound + p99 of the overshoot (the overshoot is the wait minus the
         * bound, floored at 0: a monotone map keeps quantiles), at the overshoot's
         * resolution. */
        double over = jnum(tj, "over_bound_p99_ms");
        json_object_set_new(o, "p99_over_bound_ms", json_real(over));
        json_object_set_new(o, "max_over_bound_ms", json_real(jnum(tj, "over_bound_max_ms")));
        json_object_set_new(o, "p99_wait_to_bound", json_real((bound_ms + over) / bound_ms));
      } else if (bound >= run_us) {
        /* Nothing of the tier can have run in the window yet: not measured, not failed. */
        json_object_set_new(o, "bound_longer_than_window", json_true());
      } else {
        within = 0; /* starved */
      }
    }
    json_object_set_new(tiers, cfg->tiers[t].name, o);
  }
  munmap((void *)top_handled, sizeof(int64_t));
  json_object_set_new(r, "saturated_throughout", json_boolean(saturated));
  json_object_set_new(r, "tiers", tiers);
  json_object_set_new(r, "every_bounded_tier_ran", json_boolean(within));
  if (json_object_get(con, "error")) json_object_set(r, "error", json_object_get(con, "error"));
  if (json_object_get(pub, "error")) json_object_set(r, "error", json_object_get(pub, "error"));
  json_decref(pub);
  json_decref(con);
  return r;
}

/* ---------------------------------------------------------------- workflows */

/* The enrichment workflows: |n| subscriber-created events (personal emails, distinct
 * subscribers), each starting a subscriber-enrichment run that records its job, claims a batch,
 * sends enrichment.submit as a command, waits for enrichment-complete, resumes, processes the
 * results and completes. The enrichment service is the simulator, in the worker's process, with
 * no added latency. The triggers go out at once (a burst: throughput) or at a steady |rate| per
 * second (latency at a load the worker keeps up with). */
typedef struct wf_args {
  const char *url;
  long n;
  int rate;               /* triggers per second; 0 = all at once */
  const tb_config_t *cfg; /* the bench config with enrichment_batch_max 1: a batch per run */
} wf_args_t;

static json_t *subscriber_publisher(bench_t *b, void *arg, int ready_fd) {
  wf_args_t *a = arg;
  tb_bus_t *bus = NULL;
  if (tb_bus_connect(&bus, a->url, "bench-wf-pub") != TB_OK) return err_json("publisher");
  signal_ready(ready_fd);
  int64_t t0 = tb_wall_us(), m0 = tb_mono_us(), failed = 0, late_max_us = 0;
  tb_status st = TB_OK;
  for (long i = 0; i < a->n && st == TB_OK; i++) {
    if (a->rate > 0) {
      /* Trigger i is due at i / rate: sleep until then, and record how late the publisher
       * itself ran (a late publisher would understate the latency at the rate). */
      int64_t due = m0 + (int64_t)((double)i * 1e6 / a->rate), now = tb_mono_us();
      if (now < due)
        tb_sleep_us(due - now);
      else if (now - due > late_max_us)
        late_max_us = now - due;
    }
    char sid[32], email[64];
    snprintf(sid, sizeof(sid), "sub-%ld", i);
    snprintf(email, sizeof(email), "person%ld@gmail.com", i);
    json_t *js = json_pack("{s:s,s:s,s:s,s:s}", "subscriber_id", sid, "email", email, "email_type",
                           "EMAIL_TYPE_PERSONAL", "source", "bench");
    tb_publish_req_t req = {.event = "subscriber-created", .payload = js, .source = "bench"};
    tb_prepared_t p;
    st = js ? tb_publish_prepare(a->cfg, b->cat, &req, &p) : TB_ERR_NOMEM;
    json_decref(js);
    if (st == TB_OK) st = tb_bus_publish_async(bus, p.subject, p.id, p.buf, p.len);
    if (st == TB_OK) tb_prepared_free(&p);
  }
  tb_status wst = tb_bus_publish_wait(bus, 120000, &failed);
  int64_t t1 = tb_wall_us();
  tb_bus_destroy(bus);
  return json_pack("{s:I,s:I,s:I,s:f,s:s}", "start_us", (json_int_t)t0, "acked_us", (json_int_t)t1,
                   "failed", (json_int_t)failed, "late_max_ms", late_max_us / 1000.0, "status",
                   tb_err_name(st != TB_OK ? st : wst));
}

static int64_t sql_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *q = NULL;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    v = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return v;
}

static int cmp_i64(const void *x, const void *y) {
  int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
  return a < b ? -1 : a > b;
}

/* Trigger-to-completion latencies of the completed runs: from the publish of the event that
 * started each run to the run's end. */
static json_t *wf_latency(sqlite3 *db) {
  sqlite3_stmt *q = NULL;
  size_t n = 0, cap = 1024;
  int64_t *v = malloc(cap * sizeof(*v));
  if (v != NULL && sqlite3_prepare_v2(db,
                                      "SELECT w.finished_us - p.published_us FROM workflows w "
                                      "JOIN processed p ON p.msg_id = w.cause_msg_id "
                                      "WHERE w.status = 'completed' AND p.published_us > 0",
                                      -1, &q, NULL) == SQLITE_OK) {
    while (sqlite3_step(q) == SQLITE_ROW) {
      if (n == cap) {
        int64_t *nv = realloc(v, (cap *= 2) * sizeof(*v));
        if (nv == NULL) break;
        v = nv;
      }
      v[n++] = sqlite3_column_int64(q, 0);
    }
  }
  sqlite3_finalize(q);
  json_t *r = json_pack("{s:I}", "runs", (json_int_t)n);
  if (n > 0) {
    qsort(v, n, sizeof(*v), cmp_i64);
    static const struct {
      const char *name;
      double q;
    } qs[] = {{"p50_ms", .50}, {"p95_ms", .95}, {"p99_ms", .99}, {"max_ms", 1.0}};
    for (size_t i = 0; i < TB_COUNTOF(qs); i++) {
      size_t k = (size_t)(qs[i].q * (double)(n - 1) + 0.5);
      json_object_set_new(r, qs[i].name, json_real(v[k] / 1000.0));
    }
  }
  free(v);
  return r;
}

static json_t *workflow_worker(bench_t *b, void *arg, int ready_fd) {
  wf_args_t *a = arg;
  const tb_config_t *cfg = a->cfg;
  bench_worker_t w;
  tb_sim_t *sim = NULL;
  sqlite3 *db = NULL;
  char dbpath[PATH_MAX + 16];
  snprintf(dbpath, sizeof(dbpath), "%s/workflows-%d.db", b->dir, (int)getpid());
  tb_status st = bench_worker_open(&w, b, cfg, a->url, "bench-wf-worker", dbpath, 1);
  tb_sim_opts_t so;
  tb_sim_opts_init(&so);
  so.bus = w.bus;
  so.cfg = cfg;
  so.cat = b->cat;
  if (st == TB_OK) st = tb_sim_start(&sim, &so);
  if (st == TB_OK && sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
    st = tb__fail(TB_ERR_IO, "open %s to watch the runs", dbpath);
  if (st != TB_OK) return err_json("workflow worker setup");
  sqlite3_busy_timeout(db, 1000);
  signal_ready(ready_fd);

  int64_t deadline = tb_mono_us() + 900LL * 1000000;
  int64_t finished = 0;
  while (tb_mono_us() < deadline) {
    finished = sql_int(db, "SELECT count(*) FROM workflows WHERE status IN ('completed', "
                           "'failed', 'cancelled')");
    if (finished >= a->n) break;
    tb_sleep_us(50000);
  }
  int64_t inversions = tb_dispatcher_inversions(w.disp);
  tb_dispatcher_stop(w.disp);
  w.disp = NULL;
  tb_sim_stats_t ss;
  tb_sim_stop(sim, &ss);
  long handled = handled_total(cfg, w.engine);
  json_t *r = json_pack(
      "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "completed",
      (json_int_t)sql_int(db, "SELECT count(*) FROM workflows WHERE status = 'completed'"),
      "failed", (json_int_t)sql_int(db, "SELECT count(*) FROM workflows WHERE status = 'failed'"),
      "steps", (json_int_t)sql_int(db, "SELECT count(*) FROM workflow_history"), "commands",
      (json_int_t)ss.replies, "resumed", (json_int_t)ss.enrichments, "messages",
      (json_int_t)handled, "inversions", (json_int_t)inversions, "first_publish_us",
      (json_int_t)sql_int(db, "SELECT min(published_us) FROM processed "
                              "WHERE event_type = 'subscriber-created'"),
      "last_finish_us", (json_int_t)sql_int(db, "SELECT max(finished_us) FROM workflows"),
      "jobs_done",
      (json_int_t)sql_int(db, "SELECT count(*) FROM enrichment_jobs WHERE status = 'done'"));
  json_object_set_new(r, "latency_trigger_to_completion", wf_latency(db));
  sqlite3_close(db);
  bench_worker_close(&w);
  return r;
}

static json_t *workflow_run(bench_t *b) {
  tb_server_t srv;
  if (start_server(b, "workflows", &srv) != 0) return json_pack("{s:s}", "error", "server");
  tb_config_t cfg = *b->cfg;
  cfg.enrichment_batch_max = 1;
  wf_args_t wa = {
      .url = srv.url, .n = b->opts->workflows, .rate = b->opts->workflow_rate, .cfg = &cfg};
  child_t worker, publisher;
  long rss_w = 0, rss_p = 0;
  child_start(&worker, b, workflow_worker, &wa);
  child_wait_ready(&worker);
  child_start(&publisher, b, subscriber_publisher, &wa);
  child_wait_ready(&publisher);
  json_t *pub = child_finish(&publisher, &rss_p, NULL);
  json_t *con = child_finish(&worker, &rss_w, NULL);
  tb_server_stop(&srv, 5000);
  double secs = (jnum(con, "last_finish_us") - jnum(con, "first_publish_us")) / 1e6;
  double done = jnum(con, "completed");
  json_t *r = json_pack(
      "{s:I,s:i,s:f,s:f,s:f,s:f,s:f}", "workflows", (json_int_t)wa.n, "batch_max",
      cfg.enrichment_batch_max, "seconds", secs, "workflows_per_s", secs > 0 ? done / secs : 0.0,
      "steps_per_s", secs > 0 ? jnum(con, "steps") / secs : 0.0, "messages_per_s",
      secs > 0 ? jnum(con, "messages") / secs : 0.0, "peak_rss_mib", rss_w / 1024.0);
  /* At a steady rate the run's throughput is the offered rate when the worker keeps up; what
   * tells is the latency, and whether the publisher itself kept the pace. */
  json_object_set_new(r, "mode", json_string(wa.rate > 0 ? "steady" : "burst"));
  if (wa.rate > 0) {
    json_object_set_new(r, "offered_per_s", json_integer(wa.rate));
    json_object_set_new(r, "publisher_late_max_ms", json_real(jnum(pub, "late_max_ms")));
  }
  static const char *const copy[] = {"completed",  "failed",    "steps",
                                     "commands",   "resumed",   "messages",
                                     "inversions", "jobs_done", "latency_trigger_to_completion",
                                     "error"};
  for (size_t i = 0; i < TB_COUNTOF(copy); i++)
    if (json_object_get(con, copy[i])) json_object_set(r, copy[i], json_object_get(con, copy[i]));
  if (json_object_get(pub, "error")) json_object_set(r, "error", json_object_get(pub, "error"));
  json_decref(pub);
  json_decref(con);
  return r;
}

/* Seed 002's full sync over |repos| tracked repositories, 30% in a workspace (a tenth of those in
 * two), 5% of the rest marked low, in three passes: the backfill (every row still at the
 * default, medium and unflagged: the seed's first sync), a drifted table (one row in ten
 * flipped), and a sync with nothing to change. No NATS: the sync writes SQLite and the outbox. */
static json_t *prio_sync_pass(tb_store_t *st, const bench_t *b, const char *name) {
  tb_prio_sync_result_t r;
  tb_prio_sync_opts_t o = {.trigger = "bench", .max_retries = -1};
  tb_status s = tb_prio_sync_run(st, b->cfg, b->cat, &o, &r);
  double secs = r.elapsed_us / 1e6;
  json_t *j = json_pack(
      "{s:s, s:I, s:I, s:I, s:I, s:I, s:i, s:f, s:f, s:f}", "pass", name, "workspace_repos",
      (json_int_t)r.workspace_repos, "tracked_only_repos", (json_int_t)r.tracked_only_repos,
      "priority_changes", (json_int_t)r.priority_changes, "rows_updated",
      (json_int_t)r.rows_updated, "jobs_queued", (json_int_t)r.jobs_queued, "batches", r.batches,
      "seconds", secs, "changes_per_s", secs > 0 ? r.priority_changes / secs : 0.0, "repos_per_s",
      secs > 0 ? (r.workspace_repos + r.tracked_only_repos) / secs : 0.0);
  json_object_set_new(j, "errors", json_integer((json_int_t)json_array_size(r.errors)));
  if (s != TB_OK) json_object_set_new(j, "error", json_string(tb_errdetail()));
  tb_prio_sync_result_clear(&r);
  return j;
}

static json_t *prio_sync_run(bench_t *b) {
  char path[PATH_MAX + 32];
  snprintf(path, sizeof(path), "%s/prio-sync.db", b->dir);
  tb_store_t *st = NULL;
  if (tb_store_open(&st, path) != TB_OK) return json_pack("{s:s}", "error", tb_errdetail());
  sqlite3 *db = NULL;
  char sql[1024];
  long n = b->opts->repos;
  /* The table as the seed's migration finds it: tracked, medium, no workspace flags. */
  snprintf(sql, sizeof(sql),
           "BEGIN;"
           "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < %ld) "
           "INSERT INTO tracked_repositories(repository_id, marked_low, updated_at) "
           "SELECT printf('org-%%03d/repo-%%07d', i %% 997, i), i %% 10 >= 3 AND i %% 20 = 3, 0 "
           "FROM k;"
           "INSERT INTO workspace_repositories(workspace_id, repository_id, added_at) "
           "SELECT printf('ws-%%04d', rowid %% 5000), repository_id, 0 FROM tracked_repositories "
           "WHERE rowid %% 10 < 3;"
           "INSERT INTO workspace_repositories(workspace_id, repository_id, added_at) "
           "SELECT printf('ws-%%04d', (rowid + 1) %% 5000), repository_id, 0 "
           "FROM tracked_repositories WHERE rowid %% 100 < 3;"
           "COMMIT;",
           n);
  int rc = sqlite3_open(path, &db);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    json_t *e = json_pack("{s:s}", "error", sqlite3_errmsg(db));
    sqlite3_close(db);
    tb_store_close(st);
    return e;
  }
  json_t *passes = json_array();
  json_array_append_new(passes, prio_sync_pass(st, b, "backfill"));
  /* Drift: one row in ten gets the other priority, as if updates had been lost. */
  sqlite3_exec(db,
               "UPDATE tracked_repositories SET priority = CASE priority WHEN 'high' THEN 'medium' "
               "ELSE 'high' END, priority_score = CASE priority WHEN 'high' THEN 50 ELSE 100 END "
               "WHERE rowid % 10 = 7",
               NULL, NULL, NULL);
  json_array_append_new(passes, prio_sync_pass(st, b, "drift"));
  json_array_append_new(passes, prio_sync_pass(st, b, "steady"));
  int64_t outbox = sql_int(db, "SELECT count(*) FROM outbox");
  sqlite3_close(db);
  tb_store_close(st);
  return json_pack("{s:I, s:I, s:o}", "repos", (json_int_t)n, "jobs_in_outbox", (json_int_t)outbox,
                   "passes", passes);
}

/* Replay: |n| events of the tier mix are published and processed by a worker (the live
 * database), then replayed over that database (every message read back through the ordered
 * consumers, judged already processed: the skip path) and rebuilt into an empty one (every
 * message applied again, nothing published). Both run in this process, as `tierbus replay` and
 * `tierbus rebuild` do; the rebuild's checksum must equal the live one. */
static json_t *replay_run(bench_t *b, long n) {
  tb_server_t srv;
  if (start_server(b, "replay", &srv) != 0) return json_pack("{s:s}", "error", "server");
  worker_args_t wa = {.url = srv.url, .target = n};
  pub_args_t pa = {.url = srv.url, .n = n};
  child_t consumer, publisher;
  long rss = 0;
  child_start(&consumer, b, tierbus_worker, &wa);
  child_wait_ready(&consumer);
  child_start(&publisher, b, bulk_publisher, &pa);
  child_wait_ready(&publisher);
  json_decref(child_finish(&publisher, &rss, NULL));
  json_t *con = child_finish(&consumer, &rss, NULL);
  json_t *r = json_pack("{s:I,s:I}", "events", (json_int_t)n, "live_handled",
                        (json_int_t)jnum(con, "handled"));
  const char *live = json_string_value(json_object_get(con, "db"));
  char fresh[PATH_MAX + 16];
  snprintf(fresh, sizeof(fresh), "%s/rebuilt.db", b->dir);
  tb_bus_t *bus = NULL;
  tb_store_t *st_live = NULL, *st_new = NULL;
  tb_status st = live ? tb_bus_connect(&bus, srv.url, "bench-replay") : TB_ERR_INVALID;
  if (st == TB_OK) st = tb_store_open(&st_live, live);
  if (st == TB_OK) st = tb_store_open(&st_new, fresh);
  tb_replay_opts_t o = {0};
  for (int i = 0; i < b->cfg->n_tiers; i++) o.tiers[o.n_tiers++] = i;
  tb_replay_stats_t rs = {0}, bs = {0};
  if (st == TB_OK) {
    fprintf(stderr, "tierbus bench: replay of %ld events over the live database...\n", n);
    st = tb_replay_run(bus, b->cfg, b->cat, st_live, tb_registry_handler, &o, &rs);
  }
  if (st == TB_OK) {
    fprintf(stderr, "tierbus bench: rebuild of %ld events into an empty database...\n", n);
    o.batch = 4096;
    st = tb_replay_run(bus, b->cfg, b->cat, st_new, tb_registry_handler, &o, &bs);
  }
  char sum_live[33] = "", sum_new[33] = "";
  if (st == TB_OK) st = tb_store_checksum(st_live, sum_live, NULL);
  if (st == TB_OK) st = tb_store_checksum(st_new, sum_new, NULL);
  if (st != TB_OK) json_object_set_new(r, "error", json_string(tb_errdetail()));
  json_object_set_new(r, "replay",
                      json_pack("{s:I,s:I,s:I,s:f,s:f}", "read", (json_int_t)rs.read, "applied",
                                (json_int_t)rs.applied, "skipped", (json_int_t)rs.skipped,
                                "seconds", rs.secs, "events_per_s",
                                rs.secs > 0 ? (double)rs.read / rs.secs : 0.0));
  json_object_set_new(r, "rebuild",
                      json_pack("{s:I,s:I,s:I,s:f,s:f}", "read", (json_int_t)bs.read, "applied",
                                (json_int_t)bs.applied, "failed", (json_int_t)bs.failed, "seconds",
                                bs.secs, "events_per_s",
                                bs.secs > 0 ? (double)bs.read / bs.secs : 0.0));
  json_object_set_new(r, "checksum_live", json_string(sum_live));
  json_object_set_new(r, "checksum_rebuilt", json_string(sum_new));
  json_object_set_new(r, "checksums_equal",
                      json_boolean(sum_live[0] && strcmp(sum_live, sum_new) == 0));
  tb_store_close(st_live);
  tb_store_close(st_new);
  tb_bus_destroy(bus);
  json_decref(con);
  tb_server_stop(&srv, 5000);
  return r;
}

static void machine_json(json_t *root) {
  char model[256] = "unknown";
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[512];
  while (f && fgets(line, sizeof(line), f)) {
    if (strncmp(line, "model name", 10) == 0) {
      char *c = strchr(line, ':');
      if (c) snprintf(model, sizeof(model), "%s", c + 2);
      model[strcspn(model, "\n")] = '\0';
      break;
    }
  }
  if (f) fclose(f);
  time_t now = time(NULL);
  char date[32];
  strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  json_object_set_new(root, "date", json_string(date));
  json_object_set_new(
      root, "machine",
      json_pack("{s:s,s:I}", "cpu", model, "cores", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN)));
}

int tb_bench_run(const tb_config_t *cfg, const tb_catalogue_t *cat, const tb_bench_opts_t *opts) {
  bench_t b = {.cfg = cfg, .cat = cat, .opts = opts};
  int made_tmp = 0;
  /* A fresh directory for every run, kept under --work-dir (for a look at the files after) or
   * removed at the end: a second run in the same directory found the first one's databases and
   * failed to set up. */
  if (opts->work_dir) mkdir(opts->work_dir, 0755);
  snprintf(b.dir, sizeof(b.dir), "%s/tierbus-bench-XXXXXX",
           opts->work_dir ? opts->work_dir : "/tmp");
  if (mkdtemp(b.dir) == NULL) {
    fprintf(stderr, "tierbus bench: %s: %s\n", b.dir, strerror(errno));
    return 1;
  }
  made_tmp = opts->work_dir == NULL;
  if (tb__log_level < TB_LOG_WARN)
    tb__log_level = TB_LOG_WARN; /* the children inherit it: no progress noise in the figures */
  json_t *root = json_object();
  machine_json(root);
  int rc = 0;
  /* The plain pipeline runs before tierbus at every size, so that each ratio compares two runs
   * minutes apart at most; the workflow scenario is reported against the first size's. */
  json_t *ceil = NULL, *runs = json_array();
  double worst = -1;
  int n_sizes = opts->run_throughput ? opts->n_events : opts->run_workflows ? 1 : 0;
  for (int i = 0; i < n_sizes; i++) {
    long n = opts->events[i];
    fprintf(stderr, "tierbus bench: plain pipeline (the ceiling), %ld events...\n", n);
    json_t *c = throughput_run(&b, n, 1);
    if (ceil == NULL) ceil = c;
    json_t *run = json_pack("{s:I,s:o}", "events", (json_int_t)n, "ceiling", c);
    if (opts->run_throughput) {
      fprintf(stderr, "tierbus bench: tierbus, %ld events with the tier mix...\n", n);
      json_t *tp = throughput_run(&b, n, 0);
      double cr = jnum(c, "events_per_s"), ratio = cr > 0 ? jnum(tp, "events_per_s") / cr : 0;
      json_object_set_new(run, "tierbus", tp);
      json_object_set_new(run, "ratio_to_ceiling", json_real(ratio));
      if (worst < 0 || ratio < worst) worst = ratio;
      if (jnum(tp, "handled") < n || json_object_get(tp, "error")) rc = 1;
    }
    if (json_object_get(c, "error") || jnum(c, "handled") < n) rc = 1;
    json_array_append_new(runs, run);
  }
  if (ceil != NULL) json_object_set(root, "ceiling", ceil);
  if (opts->run_throughput)
    json_object_set_new(root, "throughput",
                        json_pack("{s:o,s:f}", "runs", runs, "worst_ratio", worst));
  else
    json_decref(runs);
  if (opts->run_backlog) {
    fprintf(stderr, "tierbus bench: backlog of %ld background events + critical at %d/s...\n",
            opts->backlog, opts->critical_rate);
    json_t *bl = backlog_run(&b);
    json_object_set_new(root, "backlog", bl);
    if (json_object_get(bl, "error")) rc = 1;
  }
  if (opts->run_saturation) {
    fprintf(stderr, "tierbus bench: every tier saturated for %ld s (aging bounds)...\n",
            opts->saturate_seconds);
    json_t *sat = saturation_run(&b);
    json_object_set_new(root, "saturation", sat);
    if (json_object_get(sat, "error")) rc = 1;
  }
  if (opts->run_workflows) {
    fprintf(stderr, "tierbus bench: %ld enrichment workflows (command, wait, resume)...\n",
            opts->workflows);
    json_t *wf = workflow_run(&b);
    /* Each workflow message is one consumed, applied, committed message: the same unit as the
     * ceiling's events. */
    double c = jnum(ceil, "events_per_s");
    json_object_set_new(wf, "messages_ratio_to_ceiling",
                        json_real(c > 0 ? jnum(wf, "messages_per_s") / c : 0));
    json_object_set_new(root, "workflows", wf);
    if (jnum(wf, "completed") < opts->workflows || json_object_get(wf, "error")) rc = 1;
  }
  if (opts->run_prio_sync) {
    fprintf(stderr, "tierbus bench: priority sync over %ld tracked repositories...\n", opts->repos);
    json_t *ps = prio_sync_run(&b);
    json_object_set_new(root, "prio_sync", ps);
    if (json_object_get(ps, "error")) rc = 1;
  }
  if (opts->run_replay) {
    long n = 0;
    for (int i = 0; i < opts->n_events; i++)
      if (opts->events[i] > n) n = opts->events[i];
    fprintf(stderr, "tierbus bench: replay and rebuild of %ld events...\n", n);
    json_t *rp = replay_run(&b, n);
    /* The plain pipeline moves each event once through a consumer and one insert; a rebuild
     * does that work plus the handlers, so the same ratio applies when the ceiling ran. */
    double c = jnum(ceil, "events_per_s");
    if (c > 0)
      json_object_set_new(rp, "rebuild_ratio_to_ceiling",
                          json_real(jnum(json_object_get(rp, "rebuild"), "events_per_s") / c));
    json_object_set_new(root, "replay", rp);
    if (json_object_get(rp, "error") || !json_is_true(json_object_get(rp, "checksums_equal")))
      rc = 1;
  }
  /* The goals of the foundation issue, evaluated on this run's figures. */
  json_t *goals = json_object();
  json_t *tp = json_object_get(root, "throughput"), *bl = json_object_get(root, "backlog");
  if (tp) {
    double rss = 0, inversions = 0;
    size_t i;
    json_t *run;
    json_array_foreach(json_object_get(tp, "runs"), i, run) {
      json_t *t = json_object_get(run, "tierbus");
      if (jnum(t, "peak_rss_mib") > rss) rss = jnum(t, "peak_rss_mib");
      inversions += jnum(t, "inversions");
    }
    json_object_set_new(goals, "throughput_ratio_ge_0.60_at_every_size",
                        json_boolean(jnum(tp, "worst_ratio") >= 0.60));
    json_object_set_new(goals, "rss_le_64mib", json_boolean(rss <= 64));
    json_object_set_new(goals, "zero_inversions_throughput", json_boolean(inversions == 0));
  }
  if (bl) {
    json_t *crit = json_object_get(bl, "critical");
    json_object_set_new(goals, "critical_p99_le_5ms",
                        json_boolean(crit && jnum(crit, "start_p99_ms") <= 5.0));
    json_object_set_new(goals, "zero_inversions_backlog",
                        json_boolean(jnum(bl, "inversions") == 0));
  }
  json_t *sat = json_object_get(root, "saturation");
  if (sat) {
    /* Aging lets a message overtake at its bound; it then runs after the messages that reached
     * the top before it, at most its own tier's cohort. 5% of the bound allows for that. */
    int held = json_is_true(json_object_get(sat, "every_bounded_tier_ran"));
    const char *k;
    json_t *t;
    json_object_foreach(json_object_get(sat, "tiers"), k, t) {
      if (json_object_get(t, "aging_bound_ms") && jnum(t, "p99_wait_to_bound") > 1.05) held = 0;
    }
    json_object_set_new(goals, "saturation_p99_wait_within_5pct_of_aging_bound",
                        json_boolean(held));
    json_object_set_new(goals, "saturation_every_tier_saturated",
                        json_boolean(json_is_true(json_object_get(sat, "saturated_throughout"))));
    json_object_set_new(goals, "zero_inversions_saturation",
                        json_boolean(jnum(sat, "inversions") == 0));
  }
  json_t *ps = json_object_get(root, "prio_sync");
  if (ps) {
    int ok = json_array_size(json_object_get(ps, "passes")) == 3;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(ps, "passes"), i, p) {
      if (jnum(p, "seconds") >= 120 || json_object_get(p, "error")) ok = 0;
    }
    json_object_set_new(goals, "prio_sync_under_2_min", json_boolean(ok));
  }
  json_t *rp = json_object_get(root, "replay");
  if (rp) {
    json_object_set_new(
        goals, "replay_ge_100k_events_per_s",
        json_boolean(jnum(json_object_get(rp, "replay"), "events_per_s") >= 100000));
    json_object_set(goals, "rebuild_checksum_equals_live", json_object_get(rp, "checksums_equal"));
  }
  json_object_set_new(root, "goals", goals);
  json_dumpf(root, stdout, JSON_INDENT(2));
  putchar('\n');
  json_decref(root);
  if (made_tmp) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b.dir);
    if (system(cmd) != 0) fprintf(stderr, "tierbus bench: could not remove %s\n", b.dir);
  }
  return rc;
}
