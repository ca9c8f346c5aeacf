/* Integration: the NATS server goes away and comes back (same port, same store) while a worker is
 * busy. A server stopped with SIGTERM between two batches: the worker survives as the same process
 * and applies every event exactly once. A server killed with SIGKILL in the middle of 100,000
 * events published asynchronously: every publish the stream acknowledged survives the kill, the
 * ones whose acks were lost are published again under the same ids (the stream's Nats-Msg-Id
 * dedupe keeps the copies it already had out), and each event is applied exactly once. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/envelope.h"
#include "support/itest.h"
#include "tierbus/v1/events.pb-c.h"

#define RUN_MS 30000

/* A 5 s AckWait, so that a delivery lost with the connection comes back within the test rather
 * than after the default 5 minutes. Nothing else differs from the shipped tiers. */
static const char config_yaml[] = "redelivery_bound: 5s\n"
                                  "tiers:\n"
                                  "  - {name: critical, timeout: 5s, concurrency: 50}\n"
                                  "  - {name: high, timeout: 5s, concurrency: 30}\n"
                                  "  - {name: normal, timeout: 5s, concurrency: 15}\n"
                                  "  - {name: low, timeout: 5s, concurrency: 8}\n"
                                  "  - {name: background, timeout: 5s, concurrency: 5}\n";

static void test_server_restart(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t worker;
  char batch1[TB_H_PATH], batch2[TB_H_PATH];
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", config_yaml));
  tb_assert_ok(tb_h_write_events(h, "a.ndjson", "a", 0, 2000, NULL, batch1, sizeof(batch1)));
  tb_assert_ok(tb_h_write_events(h, "b.ndjson", "b", 0, 1000, NULL, batch2, sizeof(batch2)));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  /* Small batches keep the worker busy for longer, so that the stop lands mid-stream. */
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", "--set", "commit_batch_max=16", NULL));
  pid_t worker_pid = worker.pid;
  /* The worker has its store open once the schema exists. */
  assert_int_equal(tb_h_wait_sql(h, 0, 10000, "SELECT count(*) FROM processed"), 0);

  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", batch1, NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "published 2000 events");
  tb_h_result_free(&r);

  assert_true(tb_h_wait_sql(h, 1, 20000, "SELECT count(*) FROM processed") >= 1);
  tb_h_server_stop(h);
  int64_t at_stop = tb_h_sql_int(h, "SELECT count(*) FROM processed");
  print_message("server stopped with %lld of 2000 processed\n", (long long)at_stop);
  tb_h_sleep_ms(1000);
  assert_true(tb_h_child_alive(&worker));
  tb_assert_ok(tb_h_server_start(h));

  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", batch2, NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "published 1000 events");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_WORKSPACE"), 3000);

  assert_int_equal(tb_h_wait_sql(h, 3000, 60000, "SELECT count(*) FROM processed"), 3000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM processed"), 3000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE outcome='applied'"), 3000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), 3000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM activity_log"), 3000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE msg_id LIKE 'b-%%'"),
                   1000);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);

  /* The same process did all of it: it reconnected rather than exiting. */
  assert_true(tb_h_child_alive(&worker));
  assert_int_equal(worker.pid, worker_pid);
  char *log = tb_h_child_stderr(&worker);
  tb_assert_contains(log, "worker ready");
  free(log);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
}

/* ---------------------------------------------------------------- kill -9 mid-load */

/* The size. TB_SERVER_KILL_EVENTS sets another (the sanitizer build sets it in CMake). */
#define KILL_EVENTS 100000
#define KILL_SUBJECT "tb.evt.high.workspace.repository-sync"
#define KILL_STREAM "TB_HIGH_WORKSPACE"
/* Most publishes awaiting their ack at once (cnats stalls the publisher beyond it), and how long
 * one waits for its ack before cnats reports it failed: past the kill those acks never come. */
#define MAX_PENDING 4096
#define ACK_WAIT_MS 5000
/* How long the server stays dead. */
#define DOWN_MS 500

enum { NOT_SENT = 0, IN_FLIGHT, ACKED, FAILED };

/* What the test's own asynchronous publisher knows of each event: fate[i] of event "kill-<i>",
 * written by cnats' ack callback. */
typedef struct publisher {
  pthread_mutex_t mu;
  unsigned char *fate; /* under mu */
  int n;
  atomic_int acked, failed, sent;
} publisher_t;

/* The killer thread: waits until |kill_at| publishes were acked, then SIGKILLs the server (the
 * publisher still publishing, the worker still processing) and restarts it on the same store and
 * port after DOWN_MS. */
typedef struct killer {
  tb_h_t *h;
  publisher_t *pub;
  int kill_at;
  int64_t processed_at_kill, sent_at_kill, acked_at_kill;
  tb_status restart; /* of tb_h_server_start */
} killer_t;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  (void)js;
  (void)pae;
  publisher_t *p = closure;
  const char *id = NULL;
  int i = -1;
  if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id != NULL &&
      strncmp(id, "kill-", 5) == 0)
    i = atoi(id + 5);
  /* A pub ack is a stored message; an error (the ack timed out, the stream refused) is not. */
  int ok = pa != NULL && pae == NULL;
  pthread_mutex_lock(&p->mu);
  if (i >= 0 && i < p->n) p->fate[i] = ok ? ACKED : FAILED;
  pthread_mutex_unlock(&p->mu);
  atomic_fetch_add(ok ? &p->acked : &p->failed, 1);
  natsMsg_Destroy(msg);
}

static void *killer_main(void *arg) {
  killer_t *k = arg;
  /* A publisher that failed never gets there: the thread then ends without touching the server,
   * which the test's teardown stops. */
  int64_t deadline = tb_h_now_ms() + 120000;
  while (atomic_load(&k->pub->acked) < k->kill_at) {
    if (tb_h_now_ms() > deadline) {
      k->restart = TB_ERR_TIMEOUT;
      return NULL;
    }
    tb_h_sleep_ms(1);
  }
  k->acked_at_kill = atomic_load(&k->pub->acked);
  k->sent_at_kill = atomic_load(&k->pub->sent);
  tb_h_server_kill(k->h);
  k->processed_at_kill = tb_h_sql_int(k->h, "SELECT count(*) FROM processed");
  tb_h_sleep_ms(DOWN_MS);
  k->restart = tb_h_server_start(k->h);
  return NULL;
}

/* A capture/repository.sync event "kill-<i>" (one activity_log row when applied). */
static natsMsg *kill_event(int i) {
  char id[32], repo[32];
  snprintf(id, sizeof(id), "kill-%06d", i);
  snprintf(repo, sizeof(repo), "kill-r%d", i);
  Tierbus__V1__RepositorySync rs = TIERBUS__V1__REPOSITORY_SYNC__INIT;
  rs.repository_id = repo;
  uint8_t payload[128], *body = NULL;
  size_t plen = tierbus__v1__repository_sync__pack(&rs, payload);
  size_t len = tb_h_pack_envelope(id, "capture/repository.sync", "high", "test_nats_restart",
                                  payload, plen, &body);
  assert_non_null(body);
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create(&m, KILL_SUBJECT, NULL, (const char *)body, (int)len);
  if (s == NATS_OK) s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
  free(body);
  assert_int_equal(s, NATS_OK);
  return m;
}

/* Publishes events 0..n-1 asynchronously on a connection of the test's own, which reconnects to
 * the restarted server by itself, and returns once every publish has its outcome in p->fate. */
static void publish_async(tb_h_t *h, publisher_t *p) {
  natsOptions *opts = NULL;
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, h->url);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 50);
  /* Publishes made while the server is down wait here for the reconnect. */
  if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024);
  if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = MAX_PENDING;
  jo.PublishAsync.AckHandler = on_ack;
  jo.PublishAsync.AckHandlerClosure = p;
  if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, &jo);
  if (s != NATS_OK) fail_msg("publisher: %s", natsStatus_GetText(s));
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = ACK_WAIT_MS;
  int64_t stalled_since = 0;
  for (int i = 0; i < p->n;) {
    natsMsg *m = kill_event(i);
    pthread_mutex_lock(&p->mu);
    p->fate[i] = IN_FLIGHT; /* before the call: the ack may come before it returns */
    pthread_mutex_unlock(&p->mu);
    s = js_PublishMsgAsync(js, &m, &po); /* takes |m| on success */
    natsMsg_Destroy(m);
    if (s == NATS_OK) {
      atomic_fetch_add(&p->sent, 1);
      stalled_since = 0;
      i++;
      continue;
    }
    pthread_mutex_lock(&p->mu);
    p->fate[i] = NOT_SENT;
    pthread_mutex_unlock(&p->mu);
    /* Two refusals send the same event again:
     * - NATS_TIMEOUT: MAX_PENDING await their acks and cnats waited its stall time; this goes on
     *   as long as the acks or their timeouts come.
     * - NATS_IO_ERROR: the server died under the socket write. cnats took the message back
     *   without calling on_ack, and the next publish goes to its reconnect buffer. The message
     *   may have reached the stream before the kill: its Nats-Msg-Id makes the resend a
     *   duplicate there.
     * Anything else is a publisher that cannot go on. */
    if (s != NATS_TIMEOUT && s != NATS_IO_ERROR)
      fail_msg("publish kill-%06d: %s", i, natsStatus_GetText(s));
    if (s == NATS_IO_ERROR) tb_h_sleep_ms(10);
    if (stalled_since == 0) stalled_since = tb_h_now_ms();
    if (tb_h_now_ms() - stalled_since > 60000) fail_msg("publisher stalled for 60 s at %d", i);
  }
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  s = js_PublishAsyncComplete(js, &po);
  if (s != NATS_OK) print_message("publish complete: %s\n", natsStatus_GetText(s));
  /* Every publish has its outcome once its callback ran. */
  int64_t deadline = tb_h_now_ms() + 30000;
  while (atomic_load(&p->acked) + atomic_load(&p->failed) < atomic_load(&p->sent) &&
         tb_h_now_ms() < deadline)
    tb_h_sleep_ms(10);
  assert_int_equal(atomic_load(&p->acked) + atomic_load(&p->failed), atomic_load(&p->sent));
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  natsOptions_Destroy(opts);
}

static void test_server_killed_mid_load(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_h_child_t worker;
  const char *env = getenv("TB_SERVER_KILL_EVENTS");
  const int n = env != NULL && atoi(env) > 0 ? atoi(env) : KILL_EVENTS;
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", config_yaml));
  tb_it_start_and_init(h);
  tb_assert_ok(tb_h_spawn(h, &worker, "worker", "worker", NULL));
  pid_t worker_pid = worker.pid;
  assert_int_equal(tb_h_wait_sql(h, 0, 10000, "SELECT count(*) FROM processed"), 0);

  publisher_t pub = {.n = n};
  pub.fate = calloc((size_t)n, 1);
  assert_non_null(pub.fate);
  pthread_mutex_init(&pub.mu, NULL);
  /* The kill comes once the stream acked 30% of the events: the publisher is still publishing,
   * with up to MAX_PENDING acks outstanding, and the worker is still processing. */
  killer_t k = {.h = h, .pub = &pub, .kill_at = n * 3 / 10};
  pthread_t killer;
  int64_t t0 = tb_h_now_ms();
  assert_int_equal(pthread_create(&killer, NULL, killer_main, &k), 0);
  publish_async(h, &pub);
  pthread_join(killer, NULL);
  tb_assert_ok(k.restart);
  int64_t acked = atomic_load(&pub.acked), failed = atomic_load(&pub.failed);
  print_message("nats-server killed at %lld acked, %lld sent, %lld processed; after the restart "
                "%lld of %d publishes acked, %lld failed (%lld ms)\n",
                (long long)k.acked_at_kill, (long long)k.sent_at_kill,
                (long long)k.processed_at_kill, (long long)acked, n, (long long)failed,
                (long long)(tb_h_now_ms() - t0));
  /* Mid-load: publishing and processing were both under way at the kill, and it cost the
   * publisher acks (else the republish below proves nothing). */
  assert_true(k.sent_at_kill < n);
  assert_true(k.processed_at_kill >= 0 && k.processed_at_kill < n);
  assert_true(failed > 0);
  assert_int_equal(acked + failed, n);

  /* Every acked publish is in the stream (a lost one would be missing for good: only the
   * unacked ones are published again). */
  int64_t stored = tb_h_stream_msgs(h, KILL_STREAM);
  assert_true(stored >= acked);
  /* The unacked ones again, with their ids, through `tierbus publish --file` (async too): the
   * stream drops those it stored before the kill as duplicates. */
  char path[TB_H_PATH];
  FILE *f = tb_h_fopen(h, "unacked.ndjson", path, sizeof(path));
  assert_non_null(f);
  int again = 0;
  for (int i = 0; i < n; i++)
    if (pub.fate[i] != ACKED) {
      fprintf(f,
              "{\"type\": \"capture/repository.sync\", \"id\": \"kill-%06d\", \"priority\": "
              "\"high\", \"payload\": {\"repository_id\": \"kill-r%d\"}}\n",
              i, i);
      again++;
    }
  assert_int_equal(fclose(f), 0);
  assert_int_equal(again, failed);
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  print_message("%lld in the stream after the restart (%lld of them stored but not acked); %d "
                "published again\n",
                (long long)stored, (long long)(stored - acked), again);
  /* Each id once in the stream, and applied once. */
  assert_int_equal(tb_h_stream_msgs(h, KILL_STREAM), n);
  assert_int_equal(tb_h_wait_sql(h, n, 180000, "SELECT count(*) FROM processed"), n);
  print_message("all %d processed %lld ms after the first publish\n", n,
                (long long)(tb_h_now_ms() - t0));
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM processed"), n);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE outcome='applied' AND "
                                   "msg_id LIKE 'kill-%%'"),
                   n);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), n);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM activity_log"), n);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);
  /* The same worker did it all: it reconnected to the restarted server by itself. */
  assert_true(tb_h_child_alive(&worker));
  assert_int_equal(worker.pid, worker_pid);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);
  pthread_mutex_destroy(&pub.mu);
  free(pub.fate);
}

int main(void) {
  tb_h_watchdog(290);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_server_restart, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_server_killed_mid_load, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
