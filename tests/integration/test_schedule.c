/* Integration: the scheduler against a real nats-server and SQLite file. Two schedulers (two
 * threads, each with its own NATS connection and SQLite connection) fire the same slot: the
 * stream keeps one message and a worker runs the slot once, even when a second copy arrives under
 * another message id. After downtime a worker's scheduler fires the latest missed slot of a
 * catch-up "once" task exactly once and skips that of a "skip" task; with `scheduler: false` it
 * fires nothing. `tierbus schedule` refuses
 * bad input with exit 2 naming the field and value, and `schedule run` backs the database up. */
#include <pthread.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec/catalogue.h"
#include "config/config.h"
#include "core/clock.h"
#include "sched/cron.h"
#include "sched/scheduler.h"
#include "support/itest.h"

#define RUN_MS 20000

#define TB(cmd, ...) tb_h_tierbus(h, &r, RUN_MS, cmd, __VA_ARGS__, NULL)

/* Disables the seeded default tasks, so that only the test's tasks can fire. */
static void disable_defaults(tb_h_t *h) {
  static const char *const names[] = {"cleanup-temp-files", "database-backup", "cleanup-old-jobs",
                                      "send-reminder-emails"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    tb_h_result_t r;
    TB("schedule", "disable", names[i]);
    tb_assert_exit(r, 0);
    tb_h_result_free(&r);
  }
}

static void sql_exec(tb_h_t *h, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(h->db, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) fail_msg("%s: %s", sql, err);
  sqlite3_close(db);
}

/* One scheduler on its own connections, ticking at a fixed time when released. */
typedef struct racer {
  tb_scheduler_t *s;
  int64_t now_us;
  pthread_barrier_t *go;
  int fired;
  tb_status st;
} racer_t;

static void *race(void *arg) {
  racer_t *r = arg;
  pthread_barrier_wait(r->go);
  r->st = tb_scheduler_tick(r->s, r->now_us, &r->fired);
  return NULL;
}

static void test_two_schedulers_one_run(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);
  disable_defaults(h);
  TB("schedule", "add", "--name", "sync-r1", "--cron", "EVERY_MINUTE", "--event",
     "capture/repository.sync", "--payload", "{\"repository_id\":\"r-sched\"}", "--priority",
     "low");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  int64_t created = tb_h_sql_int(h, "SELECT last_slot_us FROM sched_tasks WHERE name='sync-r1'");
  assert_true(created > 0);
  tb_cron_t c;
  int64_t slot = 0;
  assert_int_equal(tb_cron_parse("EVERY_MINUTE", &c), TB_OK);
  assert_int_equal(tb_cron_next(&c, created, &slot), TB_OK);

  tb_config_t cfg;
  tb_config_init(&cfg);
  tb_assert_ok(tb_config_load_file(&cfg, h->config));
  snprintf(cfg.nats_url, sizeof(cfg.nats_url), "%s", h->url);
  tb_catalogue_t *cat = NULL;
  tb_assert_ok(tb_catalogue_load(&cat));
  tb_bus_t *bus[2] = {NULL, NULL};
  racer_t racers[2];
  pthread_t th[2];
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, 2);
  for (int i = 0; i < 2; i++) {
    tb_assert_ok(tb_bus_connect(&bus[i], h->url, "test-scheduler"));
    racers[i] = (racer_t){.now_us = slot + 1000000, .go = &go, .fired = -1};
    tb_assert_ok(tb_scheduler_create(&racers[i].s, &cfg, cat, h->db, bus[i]));
  }
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, race, &racers[i]);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&go);
  int fired = 0;
  for (int i = 0; i < 2; i++) {
    tb_assert_ok(racers[i].st);
    fired += racers[i].fired;
  }
  /* Each published unless it saw the other's recorded slot first; the stream holds one copy. */
  assert_true(fired >= 1 && fired <= 2);
  assert_int_equal(tb_h_stream_msgs(h, "TB_LOW_OPS"), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT last_slot_us = %lld FROM sched_tasks "
                                "WHERE name = 'sync-r1'",
                                (long long)slot),
                   1);
  /* A third pass at the same time finds nothing due. */
  int again = -1;
  tb_assert_ok(tb_scheduler_tick(racers[0].s, slot + 2000000, &again));
  assert_int_equal(again, 0);

  /* The same slot once more under another id, as a scheduler outside the dedupe window would. */
  char subject[128];
  snprintf(subject, sizeof(subject), "tb.evt.low.ops.scheduled-task");
  tb_h_result_t pr;
  char payload[256];
  snprintf(payload, sizeof(payload),
           "{\"task\":\"sync-r1\",\"slot_us\":%lld,\"attempt\":1,\"trigger\":\"cron\"}",
           (long long)slot);
  tb_h_tierbus(h, &pr, RUN_MS, "publish", "scheduled-task", "--json", payload, "--priority", "low",
               "--id", "late-copy", NULL);
  tb_assert_exit(pr, 0);
  tb_h_result_free(&pr);
  assert_int_equal(tb_h_stream_msgs(h, "TB_LOW_OPS"), 2);

  for (int i = 0; i < 2; i++) {
    tb_scheduler_destroy(racers[i].s);
    tb_bus_destroy(bus[i]);
  }
  tb_catalogue_destroy(cat);

  tb_h_child_t w;
  tb_assert_ok(tb_h_spawn(h, &w, "worker", "worker", NULL));
  /* Both messages are handled; the slot ran once and published its event once. */
  assert_int_equal(tb_h_wait_sql(h, 2, RUN_MS,
                                 "SELECT count(*) FROM processed WHERE event_type = "
                                 "'scheduled-task'"),
                   2);
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM activity_log WHERE event_type = "
                                 "'capture/repository.sync'"),
                   1);
  tb_h_sleep_ms(500);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE event_type = "
                                   "'capture/repository.sync'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_runs WHERE task = 'sync-r1'"), 1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM sched_runs WHERE task = 'sync-r1' AND "
                                "slot_us = %lld AND status = 'ok' AND attempts = 1",
                                (long long)slot),
                   1);
  assert_int_equal(tb_h_child_term(&w, 10000), 0);
}

/* Two schedulers step (as their threads do): only the one holding the scheduler lease fires, a
 * due slot waits while its process does not lead, and when the leader stops (releasing the
 * lease) the other fires at once. */
static void test_one_leader_fires(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);
  disable_defaults(h);
  TB("schedule", "add", "--name", "sync-r1", "--cron", "EVERY_MINUTE", "--event",
     "capture/repository.sync", "--payload", "{\"repository_id\":\"r-lead\"}", "--priority", "low");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  int64_t created = tb_h_sql_int(h, "SELECT last_slot_us FROM sched_tasks WHERE name='sync-r1'");
  tb_cron_t c;
  int64_t slot = 0;
  assert_int_equal(tb_cron_parse("EVERY_MINUTE", &c), TB_OK);
  assert_int_equal(tb_cron_next(&c, created, &slot), TB_OK);

  tb_config_t cfg;
  tb_config_init(&cfg);
  tb_assert_ok(tb_config_load_file(&cfg, h->config));
  cfg.scheduler_lease_ttl_ms = 1000;
  tb_catalogue_t *cat = NULL;
  tb_assert_ok(tb_catalogue_load(&cat));
  tb_bus_t *bus[2] = {NULL, NULL};
  tb_scheduler_t *s[2] = {NULL, NULL};
  for (int i = 0; i < 2; i++) {
    tb_assert_ok(tb_bus_connect(&bus[i], h->url, "test-scheduler"));
    tb_assert_ok(tb_scheduler_create(&s[i], &cfg, cat, h->db, bus[i]));
  }
  int fired = -1, leading = -1;
  tb_assert_ok(tb_scheduler_step(s[0], slot + 1000000, &fired, &leading));
  assert_int_equal(leading, 1);
  assert_int_equal(fired, 1);
  tb_assert_ok(tb_scheduler_step(s[1], slot + 1000000, &fired, &leading));
  assert_int_equal(leading, 0);
  assert_int_equal(fired, 0);
  /* The next slot comes due: the follower leaves it alone. */
  int64_t next = slot + 60000000;
  tb_assert_ok(tb_scheduler_step(s[1], next + 1000000, &fired, &leading));
  assert_int_equal(leading, 0);
  assert_int_equal(fired, 0);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT last_slot_us = %lld FROM sched_tasks WHERE name = "
                                "'sync-r1'",
                                (long long)slot),
                   1);
  assert_int_equal(tb_h_stream_msgs(h, "TB_LOW_OPS"), 1);
  /* The leader stops: its lease is released, and the follower leads and fires on its next step. */
  tb_scheduler_destroy(s[0]);
  s[0] = NULL;
  tb_assert_ok(tb_scheduler_step(s[1], next + 1000000, &fired, &leading));
  assert_int_equal(leading, 1);
  assert_int_equal(fired, 1);
  assert_int_equal(tb_h_stream_msgs(h, "TB_LOW_OPS"), 2);
  for (int i = 0; i < 2; i++) {
    tb_scheduler_destroy(s[i]);
    tb_bus_destroy(bus[i]);
  }
  tb_catalogue_destroy(cat);
}

static void test_missed_slots_after_downtime(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);
  disable_defaults(h);
  /* Hourly at the minute ten minutes ago: the latest slot is always ten minutes old, well past
   * the one-minute grace, so it counts as missed whatever the time of day. */
  int64_t now = tb_wall_us(), hour = 3600LL * 1000000;
  char pattern[32];
  snprintf(pattern, sizeof(pattern), "%d * * * *", (int)((now / 60000000 + 50) % 60));
  TB("schedule", "add", "--name", "hourly-once", "--cron", pattern, "--event",
     "capture/repository.sync", "--payload", "{\"repository_id\":\"r-once\"}", "--catch-up", "once",
     "--priority", "normal");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  TB("schedule", "add", "--name", "hourly-skip", "--cron", pattern, "--event",
     "capture/repository.sync", "--payload", "{\"repository_id\":\"r-skip\"}", "--catch-up",
     "skip");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_cron_t c;
  int64_t latest = 0;
  assert_int_equal(tb_cron_parse(pattern, &c), TB_OK);
  assert_int_equal(tb_cron_next(&c, now - hour, &latest), TB_OK);
  assert_true(latest <= now && now - latest >= 9LL * 60 * 1000000);
  /* Both were last fired three hours ago: three slots were missed while "down". */
  char sql[256];
  snprintf(sql, sizeof(sql),
           "UPDATE sched_tasks SET last_slot_us = %lld WHERE name LIKE 'hourly-%%'",
           (long long)(latest - 3 * hour));
  sql_exec(h, sql);

  /* With the scheduler switched off in config, a worker fires nothing. */
  tb_h_child_t off;
  tb_assert_ok(tb_h_spawn(h, &off, "worker-off", "worker", "--set", "scheduler=false", NULL));
  tb_h_sleep_ms(2500);
  assert_int_equal(tb_h_child_term(&off, 10000), 0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_runs"), 0);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM sched_tasks WHERE name LIKE 'hourly-%%' "
                                "AND last_slot_us = %lld",
                                (long long)(latest - 3 * hour)),
                   2);

  tb_h_child_t w;
  tb_assert_ok(tb_h_spawn(h, &w, "worker", "worker", NULL));
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM sched_runs WHERE task = 'hourly-once' AND "
                                 "status = 'ok'"),
                   1);
  assert_int_equal(tb_h_wait_sql(h, 1, RUN_MS,
                                 "SELECT count(*) FROM sched_tasks WHERE name = 'hourly-skip' AND "
                                 "last_slot_us = %lld",
                                 (long long)latest),
                   1);
  tb_h_sleep_ms(2500); /* two more scheduler passes */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_runs WHERE task = 'hourly-once'"),
                   1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT count(*) FROM sched_runs WHERE task = 'hourly-once' "
                                "AND slot_us = %lld AND trigger = 'catch-up'",
                                (long long)latest),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_runs WHERE task = 'hourly-skip'"),
                   0);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM activity_log WHERE event_type = "
                                   "'capture/repository.sync'"),
                   1);
  assert_int_equal(tb_h_sql_int(h,
                                "SELECT last_slot_us = %lld FROM sched_tasks "
                                "WHERE name = 'hourly-once'",
                                (long long)latest),
                   1);
  assert_int_equal(tb_h_child_term(&w, 10000), 0);
  char *log = tb_h_child_stderr(&w);
  tb_assert_contains(log, "task hourly-skip: missed slot");
  tb_assert_contains(log, "task hourly-once: slot");
  tb_assert_contains(log, "caught up on normal");
  free(log);
}

/* Runs `tierbus schedule ARGS...` expecting exit |code| and |needle| in stderr. */
static void expect(tb_h_t *h, int code, const char *needle, const char *const *args) {
  const char *argv[32] = {h->binary, "schedule", "--db", h->db, "--config", h->config};
  int n = 6;
  for (int i = 0; args[i] != NULL && n < 31; i++) argv[n++] = args[i];
  argv[n] = NULL;
  tb_h_result_t r;
  tb_h_execv(h, &r, RUN_MS, argv);
  tb_assert_exit(r, code);
  tb_assert_contains(r.err, needle);
  tb_h_result_free(&r);
}

#define EXPECT(code, needle, ...) expect(h, code, needle, (const char *const[]){__VA_ARGS__, NULL})

static void test_cli(void **state) {
  tb_h_t *h = *state;
  /* Only init, worker and dev create a database; the commands here need one to exist. An empty
   * file is an empty database. */
  FILE *touch = fopen(h->db, "a");
  assert_non_null(touch);
  fclose(touch);
  EXPECT(2, "--cron: cron '61 * * * *': minute: value '61' is outside 0-59", "add", "--name", "t",
         "--cron", "61 * * * *", "--event", "BACKUP_DATABASE");
  EXPECT(2, "--cron: cron '0 0 * 13 *': month: value '13' is outside 1-12", "add", "--name", "t",
         "--cron", "0 0 * 13 *", "--event", "BACKUP_DATABASE");
  EXPECT(2, "--cron: cron '*/0 * * * *': minute: step in '*/0' must be 1-59", "add", "--name", "t",
         "--cron", "*/0 * * * *", "--event", "BACKUP_DATABASE");
  EXPECT(2, "--cron: cron 'HOURLY': unknown schedule name", "add", "--name", "t", "--cron",
         "HOURLY", "--event", "BACKUP_DATABASE");
  EXPECT(2, "got 4", "add", "--name", "t", "--cron", "0 0 * *", "--event", "BACKUP_DATABASE");
  EXPECT(2, "--event: 'NOPE' is neither a built-in job", "add", "--name", "t", "--cron",
         "EVERY_HOUR", "--event", "NOPE");
  EXPECT(2, "--payload: capture/repository.sync: unknown field 'nope'", "add", "--name", "t",
         "--cron", "EVERY_HOUR", "--event", "capture/repository.sync", "--payload", "{\"nope\":1}");
  EXPECT(2, "--payload: task t: payload:", "add", "--name", "t", "--cron", "EVERY_HOUR", "--event",
         "BACKUP_DATABASE", "--payload", "{bad");
  EXPECT(2,
         "--payload: CLEANUP_FILES takes only the fields dir, max_age, uploads_dir, "
         "uploads_max_age, not 'foo'",
         "add", "--name", "t", "--cron", "EVERY_HOUR", "--event", "CLEANUP_FILES", "--payload",
         "{\"foo\":\"1\"}");
  EXPECT(2, "--payload: CLEANUP_FILES: max_age: duration '2x'", "add", "--name", "t", "--cron",
         "EVERY_HOUR", "--event", "CLEANUP_FILES", "--payload", "{\"max_age\":\"2x\"}");
  EXPECT(2, "--payload: BACKUP_DATABASE: dir '/etc' must be a path inside data_dir", "add",
         "--name", "t", "--cron", "EVERY_HOUR", "--event", "BACKUP_DATABASE", "--payload",
         "{\"dir\":\"/etc\"}");
  EXPECT(2, "--priority: unknown tier 'urgent'", "add", "--name", "t", "--cron", "EVERY_HOUR",
         "--event", "BACKUP_DATABASE", "--priority", "urgent");
  EXPECT(2, "--catch-up: expected skip or once, got 'always'", "add", "--name", "t", "--cron",
         "EVERY_HOUR", "--event", "BACKUP_DATABASE", "--catch-up", "always");
  EXPECT(2, "missing --name", "add", "--cron", "EVERY_HOUR", "--event", "BACKUP_DATABASE");
  EXPECT(2, "--name: 'a b' may use only", "add", "--name", "a b", "--cron", "EVERY_HOUR", "--event",
         "BACKUP_DATABASE");
  EXPECT(2, "a task named 'database-backup' already exists", "add", "--name", "database-backup",
         "--cron", "EVERY_HOUR", "--event", "BACKUP_DATABASE");
  EXPECT(2, "unknown subcommand 'start'", "start");
  EXPECT(2, "which task?", "run");
  EXPECT(1, "no task named 'nope'", "enable", "nope");
  EXPECT(1, "no task named 'nope'", "run", "nope");
  EXPECT(2, "removing task 'database-backup' deletes its definition; add --yes", "remove",
         "database-backup");
  EXPECT(2, "--priority: unknown tier '10'", "add", "--name", "t", "--cron", "EVERY_HOUR",
         "--event", "BACKUP_DATABASE", "--priority", "10");
  EXPECT(1, "no task named 'nope'", "remove", "nope", "--yes");
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_tasks"),
                   7); /* the defaults; nothing added or removed */

  /* A manual run of the backup, with no server running: a valid copy lands in data_dir. */
  char data_dir[TB_H_PATH];
  tb_h_path(h, "data", data_dir, sizeof(data_dir));
  tb_h_result_t r;
  TB("schedule", "run", "database-backup", "--data-dir", data_dir);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "database-backup: ok: backup ");
  tb_h_result_free(&r);
  TB("schedule", "list");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "DAILY_AT_MIDNIGHT (0 0 * * *)");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_runs WHERE task = "
                                   "'database-backup' AND trigger = 'manual' AND status = 'ok'"),
                   1);
}

/* Runs `tierbus schedule ARGS...`, which must exit 0; returns its stdout (caller frees). */
static char *ok_out(tb_h_t *h, const char *const *args) {
  const char *argv[32] = {h->binary, "schedule", "--db", h->db, "--config", h->config};
  int n = 6;
  for (int i = 0; args[i] != NULL && n < 31; i++) argv[n++] = args[i];
  argv[n] = NULL;
  tb_h_result_t r;
  tb_h_execv(h, &r, RUN_MS, argv);
  tb_assert_exit(r, 0);
  char *out = strdup(r.out ? r.out : "");
  tb_h_result_free(&r);
  return out;
}

#define OK_OUT(...) ok_out(h, (const char *const[]){__VA_ARGS__, NULL})

/* Job priority numbers for a task's tier; `remove --yes`; `reset-defaults` restores a removed
 * default, undoes a changed and a failed one, leaves the others and a custom task alone, and
 * a second reset changes nothing. */
static void test_remove_and_reset_defaults(void **state) {
  tb_h_t *h = *state;
  FILE *touch = fopen(h->db, "a");
  assert_non_null(touch);
  fclose(touch);
  /* 3 is HIGH in seed 001's JOB_PRIORITY; 2 goes there too (never more urgent than asked). */
  char *out = OK_OUT("add", "--name", "p3", "--cron", "EVERY_HOUR", "--event", "BACKUP_DATABASE",
                     "--priority", "3");
  tb_assert_contains(out, "on high");
  free(out);
  free(OK_OUT("add", "--name", "p2", "--cron", "EVERY_HOUR", "--event", "BACKUP_DATABASE",
              "--priority", "2"));
  free(OK_OUT("add", "--name", "p1", "--cron", "EVERY_HOUR", "--event", "BACKUP_DATABASE",
              "--priority", "1"));
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_tasks WHERE "
                                   "(name='p3' AND tier='high') OR (name='p2' AND tier='high') "
                                   "OR (name='p1' AND tier='critical')"),
                   3);

  out = OK_OUT("remove", "cleanup-temp-files", "--yes");
  tb_assert_contains(out, "removed cleanup-temp-files");
  free(out);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_tasks WHERE "
                                   "name='cleanup-temp-files'"),
                   0);
  free(OK_OUT("disable", "database-backup"));
  assert_int_equal(
      tb_h_sql_int(h, "SELECT count(*) FROM sched_tasks WHERE name='cleanup-old-jobs'"), 1);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(h->db, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  assert_int_equal(sqlite3_exec(db,
                                "UPDATE sched_tasks SET status='failed', failure_count=4, "
                                "last_error='boom' WHERE name='send-reminder-emails';"
                                "UPDATE sched_tasks SET pattern='EVERY_MINUTE' "
                                "WHERE name='month-transition'",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);

  out = OK_OUT("reset-defaults");
  tb_assert_contains(out, "cleanup-temp-files       restored\n");
  tb_assert_contains(out, "database-backup          reset\n");
  tb_assert_contains(out, "cleanup-old-jobs         unchanged\n");
  tb_assert_contains(out, "send-reminder-emails     reset\n");
  tb_assert_contains(out, "update-client-metrics    unchanged\n");
  tb_assert_contains(out, "workspace-priority-sync  unchanged\n");
  tb_assert_contains(out, "month-transition         reset\n");
  free(out);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_tasks WHERE "
                                   "name='cleanup-temp-files' AND pattern='DAILY_AT_2AM' AND "
                                   "job='CLEANUP_FILES' AND enabled=1 AND tier='background'"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_tasks WHERE "
                                   "name='database-backup' AND enabled=1"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_tasks WHERE "
                                   "name='send-reminder-emails' AND status='idle' AND "
                                   "failure_count=0 AND last_error IS NULL"),
                   1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_tasks WHERE "
                                   "name='month-transition' AND pattern='MONTHLY_FIRST'"),
                   1);
  /* Custom tasks are left alone. */
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_tasks WHERE name LIKE 'p_'"), 3);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM sched_tasks"), 10);

  out = OK_OUT("reset-defaults", "--json");
  json_error_t jerr;
  json_t *arr = json_loads(out, 0, &jerr);
  if (arr == NULL) fail_msg("reset-defaults --json: %s in:\n%s", jerr.text, out);
  free(out);
  assert_int_equal(json_array_size(arr), 7);
  size_t i;
  json_t *row;
  json_array_foreach(arr, i, row) {
    assert_string_equal(json_string_value(json_object_get(row, "action")), "unchanged");
  }
  json_decref(arr);
}

int main(void) {
  tb_h_watchdog(110);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_two_schedulers_one_run, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_one_leader_fires, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_missed_slots_after_downtime, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_cli, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_remove_and_reset_defaults, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
