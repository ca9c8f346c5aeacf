/* Integration: the redelivery bound. The consumers' AckWait is redelivery_bound (3 s here), not
 * the tiers' handler timeouts (5 minutes here, the shipped value for high): a worker killed with
 * SIGKILL every few seconds through a 100k-event run releases what it held within the bound, loses
 * nothing and applies nothing twice, and leaves the state a run without kills reaches; a live
 * worker keeps what it holds, however long it holds it, with in-progress acks. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "support/itest.h"

#define RUN_MS 30000
#define BOUND_MS 3000

/* The shipped tiers' timeouts. max_deliver is above the kill loop's MAX_KILLS + 1: a delivery to a
 * worker killed before it started the message still counts, and a worker that prefetched
 * low-tier messages behind a high-tier backlog dies holding them again and again (under ASan,
 * with 21 kills, 768 normal and low messages reached the shipped 5 and were dead-lettered as
 * max_deliveries). The bound is what this test is about, not that policy. */
static const char config_yaml[] =
    "redelivery_bound: 3s\n"
    "workspace_add_sync: false\n"
    "tiers:\n"
    "  - {name: critical, timeout: 2m, concurrency: 50, max_deliver: 30}\n"
    "  - {name: high, timeout: 5m, concurrency: 30, max_deliver: 30}\n"
    "  - {name: normal, timeout: 15m, concurrency: 15, max_deliver: 30}\n"
    "  - {name: low, timeout: 30m, concurrency: 8, max_deliver: 30}\n"
    "  - {name: background, timeout: 60m, concurrency: 5, max_deliver: 30}\n";

/* AckWait of the high tier's workspace consumer in ms, -1 if it cannot be read. */
static int64_t ack_wait_ms(tb_h_t *h) {
  jsConsumerInfo *ci = NULL;
  if (js_GetConsumerInfo(&ci, tb_h_js(h), "TB_HIGH_WORKSPACE", "tb-high-workspace", NULL, NULL) !=
      NATS_OK)
    return -1;
  int64_t ms = ci->Config->AckWait / 1000000;
  jsConsumerInfo_Destroy(ci);
  return ms;
}

static void setup_events(tb_h_t *h, int events, char *batch, size_t cap) {
  tb_h_result_t r;
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", config_yaml));
  tb_assert_ok(tb_h_write_events(h, "events.ndjson", "k", 0, events, NULL, batch, cap));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(ack_wait_ms(h), BOUND_MS); /* the bound, not the tier's 5 min */
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", batch, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* `init` moves consumers created with another bound to the configured one. */
static void test_init_updates_ack_wait(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", config_yaml));
  tb_assert_ok(tb_h_server_start(h));
  tb_h_tierbus(h, &r, RUN_MS, "init", "--set", "redelivery_bound=45s", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(ack_wait_ms(h), 45000);
  tb_h_tierbus(h, &r, RUN_MS, "init", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(ack_wait_ms(h), BOUND_MS);
}

/* ---------------------------------------------------------------- kill -9 every few seconds */

/* The run: 100,000 events published before the first worker starts (90,000 capture
 * events across three tiers, 10,000 workspace membership changes whose repository-sync jobs the
 * workers publish through the outbox), a worker killed with SIGKILL every KILL_EVERY_MS of its
 * life, or sooner once it has processed a sixth of the log. TB_REDELIVERY_EVENTS sets another total
 * (the sanitizer build sets it in CMake). */
#define KILL_RUN_EVENTS 100000
#define KILL_EVERY_MS 1500
/* What a redelivered high-tier message may take past the bound before its handler starts: the
 * next worker starting, pulling it and serving the messages ahead of it in its ready queue. */
#define START_SLACK_MS 3000

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Over the workspace streams the run publishes to: messages delivered and not acked (what a
 * killed worker strands), and into *pending (may be NULL) those not delivered yet. */
static int64_t unacked(tb_h_t *h, int64_t *pending) {
  static const char *const streams[] = {"TB_HIGH_WORKSPACE", "TB_NORMAL_WORKSPACE",
                                        "TB_LOW_WORKSPACE"};
  int64_t held = 0, waiting = 0;
  for (int i = 0; i < 3; i++) {
    uint64_t p = 0;
    int64_t a = 0;
    assert_int_equal(tb_h_consumer_info(h, streams[i], NULL, NULL, &p, &a), 0);
    held += a;
    waiting += (int64_t)p;
  }
  if (pending != NULL) *pending = waiting;
  return held;
}

/* Waits until every message of the log is processed, follow-ups included (the outbox empty and
 * its messages processed too). Returns the number of messages in the log. */
static int64_t wait_all_processed(tb_h_t *h, int timeout_ms) {
  int64_t msgs = 0, done = -1, outbox = -1;
  tb_h_wait_settled(h, timeout_ms, &msgs, &done, &outbox);
  if (done != msgs || outbox != 0) tb_h_dump_logs(h, 25);
  assert_int_equal(outbox, 0);
  assert_int_equal(done, msgs);
  return msgs;
}

/* `db checksum` of the test's database into |sum|. */
static void checksum(tb_h_t *h, char sum[33]) {
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "db", "checksum", NULL);
  tb_assert_exit(r, 0);
  snprintf(sum, 33, "%.32s", r.out);
  tb_h_result_free(&r);
}

/* Copies the (stopped) server's store <dir>/nats to <dir>/|name|. */
static void copy_store(tb_h_t *h, const char *name) {
  char from[TB_H_PATH], to[TB_H_PATH];
  tb_h_path(h, "nats", from, sizeof(from));
  tb_h_path(h, name, to, sizeof(to));
  tb_h_result_t r;
  tb_h_execv(h, &r, RUN_MS, (const char *const[]){"/bin/cp", "-a", from, to, NULL});
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* Publishes the run's events: a tenth workspace additions, each of its own repository, then
 * capture events spread over three tiers. No removals: a worker's kill reorders a key's changes
 * (what it held comes back after the bound, behind later ones), and a removal that overtakes its
 * addition leaves the same membership and priorities but not the same follow-ups (the overtaken
 * addition is stale and sends no repository-sync job), so the activity trail would differ from
 * a run without kills by design. Additions of distinct repositories commute. */
static void publish_run(tb_h_t *h, int total) {
  int adds = total / 10, captures = total - adds;
  static const char *const tiers[] = {"high", "normal", "low"};
  const int share[] = {captures * 4 / 9, captures * 3 / 9, captures - captures * 7 / 9};
  tb_h_result_t r;
  char path[TB_H_PATH];
  FILE *f = tb_h_fopen(h, "members.ndjson", path, sizeof(path));
  assert_non_null(f);
  for (int i = 0; i < adds; i++)
    fprintf(f,
            "{\"type\":\"WORKSPACE_REPO_ADDED\",\"payload\":{\"workspace_id\":\"w%d\","
            "\"repository_id\":\"r%d\"}}\n",
            i % 50, i);
  assert_int_equal(fclose(f), 0);
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  for (int t = 0, first = 0; t < 3; first += share[t], t++) {
    char name[32];
    snprintf(name, sizeof(name), "%s.ndjson", tiers[t]);
    tb_assert_ok(tb_h_write_events(h, name, "k", first, share[t], tiers[t], path, sizeof(path)));
    tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", path, NULL);
    tb_assert_exit(r, 0);
    tb_h_result_free(&r);
  }
}

/* For every message of |tier| whose applying delivery was a redelivery, the time from the last
 * kill before its handler started to that start; the most of them into *worst_ms. Returns how
 * many there were. */
static int64_t redelivery_delays(tb_h_t *h, const char *tier, const int64_t *kills, int n_kills,
                                 int64_t *worst_ms) {
  sqlite3 *db = tb_h_db_open(h);
  assert_non_null(db);
  sqlite3_stmt *q = NULL;
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT started_us / 1000 FROM processed WHERE "
                                      "deliveries > 1 AND tier = ?",
                                      -1, &q, NULL),
                   SQLITE_OK);
  sqlite3_bind_text(q, 1, tier, -1, SQLITE_STATIC);
  int64_t n = 0, worst = 0;
  while (sqlite3_step(q) == SQLITE_ROW) {
    int64_t started = sqlite3_column_int64(q, 0), kill = 0;
    for (int k = 0; k < n_kills && kills[k] <= started; k++) kill = kills[k];
    if (kill > 0 && started - kill > worst) worst = started - kill;
    n++;
  }
  sqlite3_finalize(q);
  sqlite3_close(db);
  *worst_ms = worst;
  return n;
}

/* A worker killed every few seconds through a 100k-event run: nothing lost, no effect twice,
 * every stranded message redelivered within the bound (with the tiers' timeouts as AckWait it
 * would wait 5 to 60 minutes), and the state's checksum equal to that of the same log processed
 * by one worker that was never killed. */
static void test_kill_loop_within_bound(void **state) {
  tb_h_t *h = *state;
  const char *env = getenv("TB_REDELIVERY_EVENTS");
  const int total = env != NULL && atoi(env) > 0 ? atoi(env) : KILL_RUN_EVENTS;
  tb_assert_ok(tb_h_use_config(h, "tierbus.yaml", config_yaml));
  tb_it_start_and_init(h);
  assert_int_equal(ack_wait_ms(h), BOUND_MS); /* the bound, not the tier's 5 min */
  publish_run(h, total);
  /* The workers run no scheduler, and config_yaml turns the workspace_add sync off: a cron
   * slot, or a debounce window (wall clock), that fell inside one run and not the other would
   * change the state between them. */
  /* The log as published, before any worker: the run without kills starts from this copy. */
  tb_h_server_stop(h);
  copy_store(h, "nats-published");
  tb_assert_ok(tb_h_server_start(h));

  enum { MAX_KILLS = 24 }; /* below max_deliver: see config_yaml */
  int64_t kills[MAX_KILLS];
  int n_kills = 0;
  tb_h_child_t w;
  char name[32];
  int64_t t0 = tb_h_now_ms(), last_kill = 0, at_kill = 0;
  for (;;) {
    snprintf(name, sizeof(name), "worker%d", n_kills);
    tb_assert_ok(tb_h_spawn(h, &w, name, "worker", "--set", "commit_batch_max=64", "--set",
                            "scheduler=false", NULL));
    /* Killed after KILL_EVERY_MS, or sooner once it has done a sixth of the log: a fast worker
     * must still be killed several times during the run. */
    int64_t spawned = tb_h_now_ms(), from = tb_h_sql_int(h, "SELECT count(*) FROM processed");
    while (tb_h_now_ms() - spawned < KILL_EVERY_MS &&
           tb_h_sql_int(h, "SELECT count(*) FROM processed") - from < total / 6)
      tb_h_sleep_ms(50);
    assert_true(tb_h_child_alive(&w)); /* it died by itself: a crash, not a kill */
    /* Killing stops once nine tenths of the log are done, so that the last kill leaves work,
     * and stranded messages, to the worker that is not killed. */
    int64_t done = tb_h_sql_int(h, "SELECT count(*) FROM processed");
    if (done >= tb_h_all_tier_msgs(h) * 9 / 10 || n_kills == MAX_KILLS) break;
    int64_t held = unacked(h, NULL);
    tb_h_child_kill(&w);
    last_kill = tb_h_now_ms();
    kills[n_kills++] = wall_ms();
    at_kill = tb_h_sql_int(h, "SELECT count(*) FROM processed");
    print_message("kill %d at %lld ms: %lld processed, %lld delivered and unacked\n", n_kills,
                  (long long)(last_kill - t0), (long long)at_kill, (long long)held);
  }
  assert_true(n_kills >= 3); /* every few seconds of a run that lasts several kills */
  assert_true(at_kill <
              tb_h_all_tier_msgs(h)); /* the last kill left work, and stranded messages, behind */
  int64_t msgs = wait_all_processed(h, 180000);
  int64_t took = tb_h_now_ms() - last_kill;
  print_message("all %lld messages of the log (%d published) processed %lld ms after kill %d "
                "(bound %d ms)\n",
                (long long)msgs, total, (long long)took, n_kills, BOUND_MS);
  assert_true(msgs > total); /* the membership changes' repository-sync jobs are in it too */
  /* Nothing lost, nothing twice. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM processed"), msgs);
  int64_t activity = tb_h_sql_int(h, "SELECT count(*) FROM activity_log");
  assert_int_equal(tb_h_sql_int(h, "SELECT count(DISTINCT msg_id) FROM activity_log"), activity);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE event_type = "
                                   "'capture/repository.sync' AND outcome = 'applied'"),
                   activity);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM dead_letters"), 0);
  /* Every stranded message came back within the bound. Its handler start shows it where the
   * worker pulls at once what the server redelivers: on the high tier, which it serves first.
   * A lower tier's redelivered message is pulled only when the worker has room on that tier,
   * and then waits behind the higher tiers' backlog: priority, not redelivery, so its start
   * is only reported. */
  static const char *const tiers[] = {"high", "normal", "low"};
  for (int t = 0; t < 3; t++) {
    int64_t worst = 0, redelivered = redelivery_delays(h, tiers[t], kills, n_kills, &worst);
    print_message("%s: %lld messages applied on a redelivery, the latest started %lld ms after "
                  "the kill before it (bound %d ms)\n",
                  tiers[t], (long long)redelivered, (long long)worst, BOUND_MS);
    if (t > 0) continue;
    assert_true(redelivered > 0);
    assert_true(worst <= BOUND_MS + START_SLACK_MS);
  }
  /* And the copies the killed workers had committed but not acked were acked since. */
  int64_t pending = -1;
  assert_int_equal(unacked(h, &pending), 0);
  assert_int_equal(pending, 0);
  assert_int_equal(tb_h_child_term(&w, 20000), 0);
  char killed[33], clean[33];
  checksum(h, killed);

  /* The run without kills: the same log (the copy made before any worker, so the same
   * messages at the same stream positions) processed by one worker into another database. */
  tb_h_server_stop(h);
  copy_store(h, "nats-killed");
  tb_h_result_t r;
  char live[TB_H_PATH], published[TB_H_PATH];
  tb_h_path(h, "nats", live, sizeof(live));
  tb_h_path(h, "nats-published", published, sizeof(published));
  tb_h_execv(h, &r, RUN_MS, (const char *const[]){"/bin/rm", "-rf", live, NULL});
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(rename(published, live), 0);
  tb_h_path(h, "clean.db", h->db, sizeof(h->db)); /* every later command and query uses it */
  tb_assert_ok(tb_h_server_start(h));
  tb_assert_ok(tb_h_spawn(h, &w, "clean-worker", "worker", "--set", "commit_batch_max=64", "--set",
                          "scheduler=false", NULL));
  assert_int_equal(wait_all_processed(h, 180000), msgs);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE deliveries > 1"), 0);
  assert_int_equal(tb_h_child_term(&w, 20000), 0);
  checksum(h, clean);
  print_message("checksum after %d kills %s, of the run without them %s\n", n_kills, killed, clean);
  assert_string_equal(killed, clean);
}

/* The database's write lock is held for three bounds while the worker holds a ready queue and an
 * open batch: its in-progress acks keep every message, so nothing is delivered twice. */
static void test_held_messages_renewed(void **state) {
  tb_h_t *h = *state;
  /* The first events create the database; the lock is taken once they are in, and the rest are
   * published only then, so the worker holds them whatever its speed (taking the lock while it
   * ran found it, under ASan and on a fast run alike, already done). */
  enum { FIRST = 100, EVENTS = 3000 };
  char batch[TB_H_PATH];
  setup_events(h, FIRST, batch, sizeof(batch));
  tb_h_child_t w;
  tb_assert_ok(tb_h_spawn(h, &w, "worker", "worker", "--set", "commit_batch_max=16", "--set",
                          "prefetch=256", NULL));
  assert_int_equal(tb_h_wait_sql(h, FIRST, 20000, "SELECT count(*) FROM processed"), FIRST);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(h->db, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  int64_t held_from = tb_h_sql_int(h, "SELECT count(*) FROM processed");
  char more[TB_H_PATH];
  tb_assert_ok(
      tb_h_write_events(h, "more.ndjson", "m", 0, EVENTS - FIRST, NULL, more, sizeof(more)));
  tb_h_result_t r;
  tb_h_tierbus(h, &r, RUN_MS, "publish", "--file", more, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_h_sleep_ms(3 * BOUND_MS);
  int64_t ack_pending = 0;
  tb_h_consumer_info(h, "TB_HIGH_WORKSPACE", NULL, NULL, NULL, &ack_pending);
  print_message("held the write lock for %d ms at %lld processed, %lld unacked\n", 3 * BOUND_MS,
                (long long)held_from, (long long)ack_pending);
  assert_true(ack_pending > 0); /* it really held messages past the AckWait */
  assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(tb_h_wait_sql(h, EVENTS, 30000, "SELECT count(*) FROM processed"), EVENTS);
  uint64_t delivered = 0;
  assert_int_equal(tb_h_consumer_info(h, "TB_HIGH_WORKSPACE", NULL, &delivered, NULL, NULL), 0);
  assert_int_equal(delivered, EVENTS); /* no redelivery at all */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log"), EVENTS);
  assert_int_equal(tb_h_child_term(&w, 20000), 0);
}

int main(void) {
  tb_h_watchdog(290);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_init_updates_ack_wait, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_kill_loop_within_bound, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_held_messages_renewed, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
