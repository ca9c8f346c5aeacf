/* Integration: a tier's handler timeout. A handler that runs past its tier's `timeout` loses its
 * lease: the lease keeper stops renewing its message, the consumer's AckWait (redelivery_bound)
 * lapses, JetStream delivers the message again, and the second copy is a duplicate by its processed
 * record. The message that ran before it in the same batch, whose handler returned in time, keeps
 * its lease while it waits for the commit. The worker runs in this process (dispatcher and engine
 * over a real nats-server and a real SQLite file) with a test-only handler that blocks on one event
 * until the redelivery is seen: no production handler can be made slow on purpose, and none should
 * be. */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/itest.h"

#include "codec/catalogue.h"
#include "config/config.h"
#include "dispatch/dispatch.h"
#include "engine/engine.h"
#include "store/store.h"

#define RUN_MS 30000
/* The high tier's timeout and the consumers' AckWait. The timeout is longer than the AckWait on
 * purpose: a redelivery after the timeout shows both halves of the lease, the in-progress acks
 * that held the message past its AckWait and the lapse that let it go once the timeout passed.
 * The messages waiting in the ready queue meanwhile are renewed every third of the bound, so
 * two thirds of it (1.3 s) is their slack against a late renewal. */
#define TIMEOUT_MS 3000
#define BOUND_MS 2000
/* What the redelivery may take past timeout + AckWait: the keeper's tick, the server's redelivery
 * timer and this test's polling, on a loaded 2-core machine. */
#define LATE_MS 3000
/* Events published while the slow handler runs: fewer than the high tier's ready queue holds
 * (prefetch, 128), so the fetcher still has room to take the redelivered copy. */
#define OTHERS 20
#define SLOW_ID "slow-00000"
/* Published just before the slow one and run first in its batch: its handler returns at once,
 * then its effects wait in the batch's open transaction for the slow handler. A stuck handler
 * seldom has a batch of its own under load. */
#define MATE_ID "mate-00000"
#define STREAM "TB_HIGH_WORKSPACE"
#define CONSUMER "tb-high-workspace"

/* A batch open for up to 1 s (commit_batch_time, commit_batch_busy_time) so that the mate and the
 * slow event, both in the stream before the worker starts, run in one batch even if the first
 * fetch brings only one of them or the mate's handler is slowed by a loaded machine. */
static const char config_yaml[] = "redelivery_bound: 2s\n"
                                  "commit_batch_time: 1s\n"
                                  "commit_batch_busy_time: 1s\n"
                                  "tiers:\n"
                                  "  - {name: critical, timeout: 3s, concurrency: 50}\n"
                                  "  - {name: high, timeout: 3s, concurrency: 30}\n"
                                  "  - {name: normal, timeout: 3s, concurrency: 15}\n"
                                  "  - {name: low, timeout: 3s, concurrency: 8}\n"
                                  "  - {name: background, timeout: 3s, concurrency: 5}\n";

/* ---------------------------------------------------------------- the test's handler */

/* Written by the executor thread (the handler), read by the test's thread. calls_before_slow: the
 * calls made when the slow handler started (the mate's among them). */
static atomic_int slow_started, slow_calls, calls, calls_before_slow;
/* Set by the test's thread once the redelivery is seen (or it gave up): the slow handler ends. */
static atomic_int release_slow;

/* Writes one activity row per call (the effect the test counts). On SLOW_ID it first blocks, as a
 * handler stuck on a slow outside service would, until the test has seen the message delivered
 * again; 30 s at most, so that a broken lapse fails the test instead of hanging it. */
static tb_status slow_handler(const tb_handler_ctx_t *ctx) {
  const char *id = ctx->msg->env->id;
  atomic_fetch_add(&calls, 1);
  if (strcmp(id, SLOW_ID) == 0) {
    atomic_fetch_add(&slow_calls, 1);
    atomic_store(&calls_before_slow, atomic_load(&calls) - 1);
    atomic_store(&slow_started, 1);
    int64_t until = tb_h_now_ms() + 30000;
    while (!atomic_load(&release_slow) && tb_h_now_ms() < until) tb_h_sleep_ms(5);
  }
  tb_activity_t a = {
      .msg_id = id, .event_type = ctx->msg->def->name, .tier = ctx->tier, .key = "timeout-test"};
  return tb_store_activity(ctx->store, &a);
}

static tb_handler_fn slow_lookup(const char *name) {
  (void)name;
  return slow_handler;
}

/* ---------------------------------------------------------------- helpers */

/* Deliveries the high workspace consumer made so far, redeliveries included (its consumer
 * sequence); -1 when it cannot be read. */
static int64_t delivered(tb_h_t *h) {
  uint64_t n = 0;
  return tb_h_consumer_info(h, STREAM, CONSUMER, &n, NULL, NULL) == 0 ? (int64_t)n : -1;
}

/* The config tierbus init used, loaded here as `tierbus worker` loads it. */
static void load_config(tb_h_t *h, tb_config_t *cfg, tb_catalogue_t **cat) {
  tb_config_init(cfg);
  tb_assert_ok(tb_config_load_file(cfg, h->config));
  tb_assert_ok(tb_config_validate(cfg));
  tb_assert_ok(tb_catalogue_load(cat));
  const char *domains[TB_MAX_DOMAINS];
  int n = tb_catalogue_domains(*cat, domains, TB_MAX_DOMAINS);
  tb_assert_ok(tb_config_set_domains(cfg, domains, n));
}

/* The worker's log lines go to stderr: they are kept in a file of the temp dir while it runs, so
 * that the test can read the lease keeper's warning. Returns the saved stderr. */
static int capture_stderr(tb_h_t *h, char *path, size_t cap) {
  tb_h_path(h, "worker.log", path, cap);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  assert_true(saved >= 0);
  assert_true(dup2(fd, STDERR_FILENO) >= 0);
  close(fd);
  return saved;
}

static void restore_stderr(int saved) {
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
}

/* Occurrences of |needle| in |hay|. */
static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; p != NULL && (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

/* ---------------------------------------------------------------- the test */

/* `tierbus publish --file |path|`: its exit status. */
static int publish_file(tb_h_t *h, const char *path) {
  tb_h_result_t r;
  int status = tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
  if (status != 0) print_error("publish --file %s: exit %d\n%s\n", path, status, r.err);
  tb_h_result_free(&r);
  return status;
}

/* What the worker's run saw, for the assertions once stderr is back. Times are tb_h_now_ms();
 * -1 = never happened. */
typedef struct run {
  int published;      /* the others' publish exited 0 */
  int64_t t_start;    /* the slow handler was seen running */
  int64_t mate_rows;  /* the mate's committed activity rows then: 0 when in the slow one's batch */
  int64_t t_again;    /* the consumer was seen delivering a message again */
  int64_t deliveries; /* the consumer's deliveries when last read */
} run_t;

/* The scenario, with the dispatcher just started on the mate and the slow event: the slow handler
 * starts after the mate's in one batch, then the others are published and wait in the ready queue
 * behind it (renewed there); then the wait for the lapse: every message delivered once, and one
 * of them again. Returns at the first step that fails, leaving the rest of |out| at -1. */
static void run_scenario(tb_h_t *h, const char *others_file, run_t *out) {
  *out = (run_t){.published = 0, .t_start = -1, .mate_rows = -1, .t_again = -1, .deliveries = -1};
  int64_t deadline = tb_h_now_ms() + 10000;
  while (!atomic_load(&slow_started) && tb_h_now_ms() < deadline) tb_h_sleep_ms(5);
  if (!atomic_load(&slow_started)) return;
  out->t_start = tb_h_now_ms();
  out->mate_rows =
      tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE msg_id = '%s'", MATE_ID);
  if (publish_file(h, others_file) != 0) return;
  out->published = 1;
  deadline = out->t_start + TIMEOUT_MS + BOUND_MS + LATE_MS + 5000;
  while (tb_h_now_ms() < deadline) {
    out->deliveries = delivered(h);
    if (out->deliveries > 2 + OTHERS) {
      out->t_again = tb_h_now_ms();
      return;
    }
    tb_h_sleep_ms(10);
  }
}

static void test_handler_past_timeout(void **state) {
  tb_h_t *h = *state;
  char mate_file[TB_H_PATH], slow_file[TB_H_PATH], others_file[TB_H_PATH], log_path[TB_H_PATH];
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", config_yaml));
  tb_assert_ok(
      tb_h_write_events(h, "mate.ndjson", "mate", 0, 1, NULL, mate_file, sizeof(mate_file)));
  tb_assert_ok(
      tb_h_write_events(h, "slow.ndjson", "slow", 0, 1, NULL, slow_file, sizeof(slow_file)));
  tb_assert_ok(tb_h_write_events(h, "others.ndjson", "ev", 0, OTHERS, NULL, others_file,
                                 sizeof(others_file)));
  tb_it_start_and_init(h);
  /* In the stream, in this order, before the worker starts: one fetch, one batch. */
  assert_int_equal(publish_file(h, mate_file), 0);
  assert_int_equal(publish_file(h, slow_file), 0);

  tb_config_t cfg;
  tb_catalogue_t *cat = NULL;
  load_config(h, &cfg, &cat);
  int high = tb_config_tier_index(&cfg, "high");
  assert_true(high >= 0);
  assert_int_equal(cfg.tiers[high].timeout_ms, TIMEOUT_MS);
  assert_int_equal(tb_config_ack_wait_ms(&cfg, high), BOUND_MS);
  tb_bus_t *bus = NULL;
  tb_store_t *store = NULL;
  tb_engine_t *engine = NULL;
  tb_dispatcher_t *disp = NULL;
  tb_assert_ok(tb_bus_connect(&bus, h->url, "test_handler_timeout"));
  tb_assert_ok(tb_store_open(&store, h->db));
  tb_assert_ok(tb_engine_create(&engine, &cfg, cat, store, bus, slow_lookup));
  tb_worker_scope_t scope;
  tb_worker_scope_all(&cfg, &scope);
  scope.tiers[0] = high;
  scope.n_tiers = 1;

  int saved = capture_stderr(h, log_path, sizeof(log_path));
  run_t run = {.t_again = -1};
  tb_status started = tb_dispatcher_start(&disp, &cfg, bus, engine, &scope);
  if (started == TB_OK) run_scenario(h, others_file, &run);
  atomic_store(&release_slow, 1);
  /* Everything settles: the slow one applied, its second copy a duplicate, the others applied.
   * Without a second copy there is none to wait for, and the test fails below. */
  int64_t deadline = tb_h_now_ms() + 20000;
  int64_t handled = (run.t_again >= 0 ? 3 : 2) + OTHERS;
  while (started == TB_OK && tb_engine_handled(engine, high) < handled && tb_h_now_ms() < deadline)
    tb_h_sleep_ms(10);
  tb_dispatcher_stop(disp);
  restore_stderr(saved);

  char *log = tb_h_read_file(log_path);
  assert_non_null(log);
  /* The log holds the publishes' errors too: they ran while stderr went to it. */
  if (started != TB_OK || !run.published) print_error("worker log:\n%s\n", log);
  tb_assert_ok(started);
  assert_true(run.t_start >= 0);
  /* The premise of the mate's half: its handler ran before the slow one's, in the same batch
   * (nothing of it committed while the slow handler runs). */
  assert_int_equal(atomic_load(&calls_before_slow), 1);
  assert_int_equal(run.mate_rows, 0);
  assert_true(run.published);
  if (run.t_again < 0) {
    print_error("no redelivery within %d ms of the slow handler's start (%lld deliveries of %d "
                "messages); worker log:\n%s\n",
                TIMEOUT_MS + BOUND_MS + LATE_MS + 5000, (long long)run.deliveries, 2 + OTHERS, log);
    fail();
  }
  int64_t after = run.t_again - run.t_start;
  print_message("the slow handler's message was delivered again %lld ms after its handler started "
                "(timeout %d ms, AckWait %d ms)\n",
                (long long)after, TIMEOUT_MS, BOUND_MS);
  /* Not when its AckWait first ran out (the in-progress acks held it), but once the timeout had
   * passed and the last renewal's AckWait ran out. */
  assert_true(after >= TIMEOUT_MS);
  assert_true(after <= TIMEOUT_MS + BOUND_MS + LATE_MS);
  /* The keeper said why, once, for the one message that ran past the timeout: the slow event,
   * stream sequence 2 (the mate is 1). */
  int lapses = count_of(log, "a handler ran past the tier's timeout");
  int slow_lapses = count_of(log, ", stream seq 2;");
  if (lapses != 1 || slow_lapses != 1) print_error("worker log:\n%s\n", log ? log : "");
  assert_int_equal(lapses, 1);
  assert_int_equal(slow_lapses, 1);
  free(log);

  /* Exactly one redelivery: the mate, held in the batch past the timeout, and the messages that
   * waited behind the slow one in the ready queue, past the AckWait, were renewed. */
  assert_int_equal(delivered(h), 3 + OTHERS);
  tb_engine_tier_stats_t ts;
  tb_engine_tier_stats(engine, high, &ts);
  /* The acks go out before anything is read from the server: the bus flushes them as it closes. */
  tb_engine_destroy(engine);
  tb_store_close(store);
  tb_bus_destroy(bus);
  tb_catalogue_destroy(cat);
  assert_int_equal(ts.processed, 2 + OTHERS);
  assert_int_equal(ts.duplicates, 1);
  assert_int_equal(ts.dead, 0);
  /* The second copy never reached the handler: one effect. */
  assert_int_equal(atomic_load(&slow_calls), 1);
  assert_int_equal(atomic_load(&calls), 2 + OTHERS);
  assert_int_equal(
      tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE msg_id = '%s'", SLOW_ID), 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), 2 + OTHERS);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM activity_log"), 2 + OTHERS);
  /* The copy that committed was the first delivery; the second was counted a duplicate. */
  assert_int_equal(tb_h_sql_int(h, "SELECT deliveries FROM processed WHERE msg_id = '%s'", SLOW_ID),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT deliveries FROM processed WHERE msg_id = '%s'", MATE_ID),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE outcome = 'applied'"),
                   2 + OTHERS);
  assert_int_equal(tb_h_sql_int(h, "SELECT value FROM tier_counters WHERE tier = 'high' AND name = "
                                   "'redelivered'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);
  /* Nothing lost or left behind: the stream holds each event once and the consumer owes none. */
  assert_int_equal(tb_h_stream_msgs(h, STREAM), 2 + OTHERS);
  uint64_t pending = 1;
  int64_t ack_pending = 1;
  deadline = tb_h_now_ms() + 5000;
  do {
    assert_int_equal(tb_h_consumer_info(h, STREAM, CONSUMER, NULL, &pending, &ack_pending), 0);
  } while (ack_pending > 0 && tb_h_now_ms() < deadline && (tb_h_sleep_ms(20), 1));
  assert_int_equal(pending, 0);
  assert_int_equal(ack_pending, 0);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_handler_past_timeout, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
