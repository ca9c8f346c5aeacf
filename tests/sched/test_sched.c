/* Scheduler rules against a real SQLite file: the seeded default tasks, missed slots after
 * downtime under both catch-up policies, a slot that runs once, the retry-then-failed path with
 * its outbox rows and backoff, database-backup (a valid SQLite copy, only the newest N kept),
 * the reminder, cleanup-files and cleanup-old-jobs jobs. No server: publishing is covered by
 * tests/integration/test_schedule.c. */
#include <dirent.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include <cmocka.h>

#include "codec/codec.h"
#include "core/clock.h"
#include "core/status.h"
#include "sched/sched.h"
#include "sched/scheduler.h"
#include "store/crm.h"
#include "store/sched.h"
#include "tierbus/v1/command.pb-c.h"

typedef struct world {
  char dir[64];
  char db[128];
  tb_catalogue_t *cat;
  tb_store_t *st;
  tb_config_t cfg;
  tb_handler_ctx_t ctx;
} world_t;

static int setup(void **state) {
  static const char *const tiers[] = {"critical", "high", "normal", "low", "background"};
  world_t *w = calloc(1, sizeof(*w));
  snprintf(w->dir, sizeof(w->dir), "/tmp/tb_sched_XXXXXX");
  if (w == NULL || mkdtemp(w->dir) == NULL) return -1;
  snprintf(w->db, sizeof(w->db), "%s/t.db", w->dir);
  if (tb_catalogue_load(&w->cat) != TB_OK || tb_store_open(&w->st, w->db) != TB_OK) {
    fprintf(stderr, "setup: %s\n", tb_errdetail());
    return -1;
  }
  tb_config_init(&w->cfg);
  for (int i = 0; i < 5; i++) {
    snprintf(w->cfg.tiers[i].name, sizeof(w->cfg.tiers[i].name), "%s", tiers[i]);
    w->cfg.tiers[i].timeout_ms = 60000;
    w->cfg.tiers[i].concurrency = 1;
    w->cfg.tiers[i].max_deliver = 5;
  }
  w->cfg.n_tiers = 5;
  snprintf(w->cfg.data_dir, sizeof(w->cfg.data_dir), "%s/data", w->dir);
  snprintf(w->cfg.db_path, sizeof(w->cfg.db_path), "%s", w->db);
  w->ctx = (tb_handler_ctx_t){.store = w->st, .cfg = &w->cfg, .cat = w->cat, .tier = "low"};
  *state = w;
  return 0;
}

static int teardown(void **state) {
  world_t *w = *state;
  tb_store_close(w->st);
  tb_catalogue_destroy(w->cat);
  char cmd[200];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", w->dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", w->dir);
  free(w);
  return 0;
}

static int64_t at(const char *iso) {
  struct tm tm = {0};
  sscanf(iso, "%d-%d-%dT%d:%d:%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
         &tm.tm_sec);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (int64_t)timegm(&tm) * 1000000;
}

static void add_task(world_t *w, const char *name, const char *pattern, const char *job,
                     const char *payload, int once, int64_t last_slot_us) {
  tb_sched_task_t t = {0};
  snprintf(t.name, sizeof(t.name), "%s", name);
  snprintf(t.pattern, sizeof(t.pattern), "%s", pattern);
  snprintf(t.job, sizeof(t.job), "%s", job);
  snprintf(t.payload, sizeof(t.payload), "%s", payload ? payload : "{}");
  snprintf(t.tier, sizeof(t.tier), "low");
  t.enabled = 1;
  t.catch_up_once = once;
  t.last_slot_us = last_slot_us;
  if (tb_sched_check(&w->cfg, w->cat, &t) != TB_OK) fail_msg("check %s: %s", name, tb_errdetail());
  if (tb_store_sched_put(w->st, &t) != TB_OK) fail_msg("put %s: %s", name, tb_errdetail());
}

static tb_sched_task_t get_task(world_t *w, const char *name) {
  tb_sched_task_t t;
  int found = 0;
  assert_int_equal(tb_store_sched_get(w->st, name, &t, &found), TB_OK);
  if (!found) fail_msg("no task %s", name);
  return t;
}

/* Runs one attempt in its own transaction, as the engine would. */
static tb_sched_outcome_t run(world_t *w, const char *name, int64_t slot, int attempt,
                              int allow_retry) {
  tb_sched_outcome_t out;
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  tb_status s = tb_sched_execute(&w->ctx, name, slot, attempt, attempt > 1 ? "retry" : "cron",
                                 allow_retry, &out);
  if (s != TB_OK) fail_msg("execute %s: %s", name, tb_errdetail());
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  return out;
}

/* The outbox rows due at |now_us|; caller frees with tb_store_outbox_free. */
static tb_outbox_row_t *due_rows(world_t *w, int64_t now_us, int *n) {
  tb_outbox_row_t *rows = NULL;
  assert_int_equal(tb_store_outbox_next(w->st, now_us, 100, &rows, n), TB_OK);
  return rows;
}

static void clear_outbox(world_t *w) {
  int n = 0;
  tb_outbox_row_t *rows = due_rows(w, INT64_MAX / 2, &n);
  for (int i = 0; i < n; i++) assert_int_equal(tb_store_outbox_delete(w->st, rows[i].id), TB_OK);
  tb_store_outbox_free(rows, n);
}

static int count_rows(const char *db, const char *sql, char *text, size_t cap);

/* ---------------------------------------------------------------- defaults */

static void test_defaults_seeded(void **state) {
  world_t *w = *state;
  static const struct {
    const char *name, *pattern, *job, *tier;
    int enabled, once;
  } want[] = {
      {"cleanup-temp-files", "DAILY_AT_2AM", "CLEANUP_FILES", "background", 1, 0},
      {"database-backup", "DAILY_AT_MIDNIGHT", "BACKUP_DATABASE", "low", 1, 1},
      {"cleanup-old-jobs", "WEEKLY_SUNDAY", "CLEANUP_OLD_JOBS", "background", 1, 1},
      {"send-reminder-emails", "DAILY_AT_NOON", "SEND_REMINDER_EMAILS", "normal", 1, 1},
      {"update-client-metrics", "EVERY_6_HOURS", "UPDATE_CLIENT_METRICS", "low", 0, 0},
      /* Seed 002's six-hourly full sync, through its catalogue event. */
      {"workspace-priority-sync", "EVERY_6_HOURS", "workspace/priorities.sync", "background", 1, 1},
      /* MONTH_TRANSITION for every active client at each month's start (issue 12). */
      {"month-transition", "MONTHLY_FIRST", "MONTH_TRANSITIONS", "normal", 1, 1},
  };
  int64_t now = tb_wall_us();
  /* The migrations seed exactly the defaults table that reset-defaults restores. */
  assert_int_equal(tb_sched_default_count(), (int)(sizeof(want) / sizeof(want[0])));
  assert_int_equal(count_rows(w->db, "SELECT count(*) FROM sched_tasks", NULL, 0),
                   tb_sched_default_count());
  for (int i = 0; i < tb_sched_default_count(); i++) {
    tb_sched_task_t d;
    tb_sched_default(i, &d);
    tb_sched_task_t t = get_task(w, d.name);
    if (!tb_sched_same_definition(&d, &t))
      fail_msg("default %s differs from the migrations' row", d.name);
    assert_string_equal(d.name, want[i].name);
  }
  tb_sched_task_t out_of_range;
  tb_sched_default(tb_sched_default_count(), &out_of_range);
  assert_string_equal(out_of_range.name, "");
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    tb_sched_task_t t = get_task(w, want[i].name);
    assert_string_equal(t.pattern, want[i].pattern);
    assert_string_equal(t.job, want[i].job);
    assert_string_equal(t.tier, want[i].tier);
    assert_int_equal(t.enabled, want[i].enabled);
    assert_int_equal(t.catch_up_once, want[i].once);
    assert_string_equal(t.status, "idle");
    /* Created just now: no slot from before the database existed is "missed". */
    assert_true(t.last_slot_us <= now && t.last_slot_us > now - 60LL * 1000000);
    assert_int_equal(tb_sched_check(&w->cfg, w->cat, &t), TB_OK);
  }
}

/* ---------------------------------------------------------------- missed slots */

static void test_missed_slot_policies(void **state) {
  world_t *w = *state;
  tb_cron_t c;
  assert_int_equal(tb_cron_parse("EVERY_HOUR", &c), TB_OK);
  tb_sched_task_t t = {.last_slot_us = at("2026-11-23T10:00:00Z")};
  const int64_t grace = 60LL * 1000000;
  int64_t slot = 0;
  tb_sched_action a;
  assert_int_equal(tb_sched_due(&t, &c, at("2026-11-23T10:59:59Z"), grace, &slot, &a), TB_OK);
  assert_int_equal(a, TB_SCHED_IDLE);
  /* On time, and at the edge of the grace. */
  assert_int_equal(tb_sched_due(&t, &c, at("2026-11-23T11:00:00Z"), grace, &slot, &a), TB_OK);
  assert_int_equal(a, TB_SCHED_FIRE);
  assert_int_equal(slot, at("2026-11-23T11:00:00Z"));
  assert_int_equal(tb_sched_due(&t, &c, at("2026-11-23T11:01:00Z"), grace, &slot, &a), TB_OK);
  assert_int_equal(a, TB_SCHED_FIRE);
  assert_int_equal(tb_sched_due(&t, &c, at("2026-11-23T11:01:01Z"), grace, &slot, &a), TB_OK);
  assert_int_equal(a, TB_SCHED_SKIP);
  /* Down from 10:30 to 14:30: 11, 12, 13 and 14 were missed; only 14:00 is considered. */
  int64_t back = at("2026-11-23T14:30:00Z");
  assert_int_equal(tb_sched_due(&t, &c, back, grace, &slot, &a), TB_OK);
  assert_int_equal(a, TB_SCHED_SKIP);
  assert_int_equal(slot, at("2026-11-23T14:00:00Z"));
  t.catch_up_once = 1;
  assert_int_equal(tb_sched_due(&t, &c, back, grace, &slot, &a), TB_OK);
  assert_int_equal(a, TB_SCHED_CATCH_UP);
  assert_int_equal(slot, at("2026-11-23T14:00:00Z"));
  /* Once the slot is recorded nothing more is due until 15:00. */
  t.last_slot_us = slot;
  assert_int_equal(tb_sched_due(&t, &c, back, grace, &slot, &a), TB_OK);
  assert_int_equal(a, TB_SCHED_IDLE);

  /* The scheduler applies "skip" without publishing anything (no bus is given). */
  static const char *const defaults[] = {"cleanup-temp-files", "database-backup",
                                         "cleanup-old-jobs", "send-reminder-emails",
                                         "workspace-priority-sync"};
  for (int i = 0; i < 5; i++)
    assert_int_equal(tb_store_sched_enable(w->st, defaults[i], 0, tb_wall_us()), TB_OK);
  add_task(w, "hourly-skip", "EVERY_HOUR", "CLEANUP_FILES", NULL, 0, at("2026-11-23T10:00:00Z"));
  tb_scheduler_t *s = NULL;
  assert_int_equal(tb_scheduler_create(&s, &w->cfg, w->cat, w->db, NULL), TB_OK);
  int fired = -1;
  assert_int_equal(tb_scheduler_tick(s, back, &fired), TB_OK);
  assert_int_equal(fired, 0);
  assert_int_equal(get_task(w, "hourly-skip").last_slot_us, at("2026-11-23T14:00:00Z"));
  assert_int_equal(tb_scheduler_tick(s, back, &fired), TB_OK);
  assert_int_equal(fired, 0);
  tb_scheduler_destroy(s);
  /* last_slot only moves forward: a slower scheduler cannot move it back. */
  int moved = -1;
  assert_int_equal(tb_store_sched_advance(w->st, "hourly-skip", at("2026-11-23T13:00:00Z"), &moved),
                   TB_OK);
  assert_int_equal(moved, 0);
  assert_int_equal(get_task(w, "hourly-skip").last_slot_us, at("2026-11-23T14:00:00Z"));
  /* Enabling after a pause starts from now: the paused time is not caught up. */
  assert_int_equal(tb_store_sched_enable(w->st, "hourly-skip", 0, back), TB_OK);
  int64_t later = at("2026-11-25T09:30:00Z");
  assert_int_equal(tb_store_sched_enable(w->st, "hourly-skip", 1, later), TB_OK);
  assert_int_equal(get_task(w, "hourly-skip").last_slot_us, later);
}

/* ---------------------------------------------------------------- one run per slot */

static void test_slot_runs_once(void **state) {
  world_t *w = *state;
  add_task(w, "sync", "EVERY_5_MINUTES", "capture/repository.sync", "{\"repository_id\":\"r1\"}", 0,
           0);
  clear_outbox(w);
  int64_t slot = at("2026-11-23T10:05:00Z");
  tb_sched_outcome_t o = run(w, "sync", slot, 1, 1);
  assert_int_equal(o.ran, 1);
  assert_string_equal(o.status, "ok");
  o = run(w, "sync", slot, 1, 1); /* the same slot again: a copy from outside the dedupe window */
  assert_int_equal(o.ran, 0);
  assert_string_equal(o.status, "duplicate");
  int n = 0;
  tb_outbox_row_t *rows = due_rows(w, INT64_MAX / 2, &n);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].subject, "tb.evt.low.workspace.repository-sync");
  char want[128];
  snprintf(want, sizeof(want), "sched:sync:%lld:event", (long long)slot);
  assert_string_equal(rows[0].msg_id, want);
  tb_store_outbox_free(rows, n);
  tb_sched_run_t r;
  int found = 0;
  assert_int_equal(tb_store_sched_run_get(w->st, "sync", slot, &r, &found), TB_OK);
  assert_int_equal(found, 1);
  assert_int_equal(r.attempts, 1);
  assert_string_equal(r.status, "ok");
  /* The next slot is a new run. */
  o = run(w, "sync", slot + 300LL * 1000000, 1, 1);
  assert_int_equal(o.ran, 1);
  /* A removed task runs nothing. */
  assert_int_equal(tb_store_sched_remove(w->st, "sync"), TB_OK);
  o = run(w, "sync", slot + 600LL * 1000000, 1, 1);
  assert_int_equal(o.ran, 0);
  assert_string_equal(o.status, "gone");
  assert_int_equal(tb_store_sched_remove(w->st, "sync"), TB_ERR_NOT_FOUND);
}

/* ---------------------------------------------------------------- retries */

/* The one due outbox row at |due_us| is the retry of attempt |attempt| of (task, slot). */
static void expect_retry_row(world_t *w, const char *task, int64_t slot, int attempt,
                             int64_t due_us) {
  int n = 0;
  tb_outbox_row_t *rows = due_rows(w, due_us - 1, &n);
  assert_int_equal(n, 0); /* held back until due */
  tb_store_outbox_free(rows, n);
  rows = due_rows(w, due_us, &n);
  assert_int_equal(n, 1);
  char id[128];
  tb_sched_msg_id(task, slot, attempt, id, sizeof(id));
  assert_string_equal(rows[0].msg_id, id);
  assert_string_equal(rows[0].subject, "tb.evt.low.ops.scheduled-task");
  tb_decoded_t d;
  assert_int_equal(tb_codec_decode(w->cat, rows[0].payload, rows[0].len, &d), TB_OK);
  const Tierbus__V1__ScheduledTask *m = (const Tierbus__V1__ScheduledTask *)d.payload;
  assert_string_equal(m->task, task);
  assert_int_equal(m->slot_us, slot);
  assert_int_equal(m->attempt, attempt);
  assert_string_equal(m->trigger, "retry");
  tb_decoded_free(&d);
  assert_int_equal(tb_store_outbox_delete(w->st, rows[0].id), TB_OK);
  tb_store_outbox_free(rows, n);
}

static void test_retry_then_failed(void **state) {
  world_t *w = *state;
  /* data_dir is a regular file, so the backup directory cannot be made: an I/O failure. */
  char blocker[160];
  snprintf(blocker, sizeof(blocker), "%s/not-a-dir", w->dir);
  FILE *f = fopen(blocker, "w");
  assert_non_null(f);
  fclose(f);
  char good_dir[sizeof(w->cfg.data_dir)];
  snprintf(good_dir, sizeof(good_dir), "%s", w->cfg.data_dir);
  snprintf(w->cfg.data_dir, sizeof(w->cfg.data_dir), "%s", blocker);
  w->cfg.schedule_retry_delay_ms = 1000;
  add_task(w, "bk", "DAILY_AT_MIDNIGHT", "BACKUP_DATABASE", NULL, 1, 0);
  clear_outbox(w);
  int64_t slot = at("2026-11-24T00:00:00Z");
  for (int attempt = 1; attempt <= TB_SCHED_RETRIES; attempt++) {
    int64_t before = tb_wall_us();
    tb_sched_outcome_t o = run(w, "bk", slot, attempt, 1);
    int64_t after = tb_wall_us();
    assert_int_equal(o.ran, 1);
    assert_string_equal(o.status, "retrying");
    int64_t delay = 1000000LL << (attempt - 1); /* 1 s, 2 s, 4 s */
    assert_true(o.retry_at_us >= before + delay && o.retry_at_us <= after + delay);
    assert_non_null(strstr(o.detail, "I/O error: backup: create"));
    tb_sched_task_t t = get_task(w, "bk");
    assert_string_equal(t.status, "retrying");
    assert_int_equal(t.failure_count, attempt);
    assert_non_null(strstr(t.last_error, "not-a-dir/backups/tierbus-20261124T000000Z.db.part"));
    expect_retry_row(w, "bk", slot, attempt + 1, o.retry_at_us);
    /* A redelivered copy of this attempt does nothing. */
    tb_sched_outcome_t dup = run(w, "bk", slot, attempt, 1);
    assert_int_equal(dup.ran, 0);
    assert_string_equal(dup.status, "duplicate");
  }
  tb_sched_outcome_t o = run(w, "bk", slot, TB_SCHED_RETRIES + 1, 1);
  assert_int_equal(o.ran, 1);
  assert_string_equal(o.status, "failed");
  int n = 0;
  tb_outbox_row_t *rows = due_rows(w, INT64_MAX / 2, &n);
  assert_int_equal(n, 0); /* no fifth attempt */
  tb_store_outbox_free(rows, n);
  tb_sched_task_t t = get_task(w, "bk");
  assert_string_equal(t.status, "failed");
  assert_int_equal(t.failure_count, 4);
  tb_sched_run_t r;
  int found = 0;
  assert_int_equal(tb_store_sched_run_get(w->st, "bk", slot, &r, &found), TB_OK);
  assert_int_equal(r.attempts, 4);
  assert_string_equal(r.status, "failed");
  assert_true(r.finished_us > 0);

  /* Kept as failed until a manual run, which succeeds once the cause is fixed. */
  snprintf(w->cfg.data_dir, sizeof(w->cfg.data_dir), "%s", good_dir);
  o = run(w, "bk", at("2026-11-24T09:00:00Z"), 1, 0);
  assert_string_equal(o.status, "ok");
  t = get_task(w, "bk");
  assert_string_equal(t.status, "ok");
  assert_int_equal(t.failure_count, 0);
  assert_string_equal(t.last_error, "");

  /* A permanent failure is not retried: a stored payload that `add` would have refused. */
  tb_sched_task_t bad = {.name = "bad-dir",
                         .pattern = "EVERY_HOUR",
                         .job = "CLEANUP_FILES",
                         .payload = "{\"dir\":\"/etc\"}",
                         .enabled = 1,
                         .tier = "low"};
  assert_int_equal(tb_store_sched_put(w->st, &bad), TB_OK);
  o = run(w, "bad-dir", slot, 1, 1);
  assert_string_equal(o.status, "failed");
  assert_non_null(strstr(o.detail, "CLEANUP_FILES: payload dir '/etc' must be a path inside"));
  rows = due_rows(w, INT64_MAX / 2, &n);
  assert_int_equal(n, 0);
  tb_store_outbox_free(rows, n);
}

/* ---------------------------------------------------------------- database-backup */

static int count_rows(const char *db, const char *sql, char *text, size_t cap) {
  sqlite3 *h = NULL;
  if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    sqlite3_close(h);
    return -1;
  }
  sqlite3_stmt *s = NULL;
  int v = -1;
  if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    v = sqlite3_column_int(s, 0);
    if (text != NULL)
      snprintf(text, cap, "%s",
               sqlite3_column_text(s, 0) ? (const char *)sqlite3_column_text(s, 0) : "");
  }
  sqlite3_finalize(s);
  sqlite3_close(h);
  return v;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_backup_keeps_last_n(void **state) {
  world_t *w = *state;
  w->cfg.backup_keep = 3;
  /* A committed marker must be in every copy. */
  add_task(w, "marker", "EVERY_HOUR", "CLEANUP_FILES", NULL, 0, 0);
  char dir[4200];
  snprintf(dir, sizeof(dir), "%s/backups", w->cfg.data_dir);
  static const char *const days[] = {"2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z",
                                     "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z",
                                     "2026-11-24T00:00:00Z"};
  for (int i = 0; i < 5; i++) {
    tb_sched_outcome_t o = run(w, "database-backup", at(days[i]), 1, 1);
    if (strcmp(o.status, "ok") != 0) fail_msg("backup %d: %s", i, o.detail);
    if (i == 0) {
      /* A file that is not a backup is never rotated away. */
      char other[4300];
      snprintf(other, sizeof(other), "%s/notes.txt", dir);
      FILE *f = fopen(other, "w");
      assert_non_null(f);
      fclose(f);
    }
  }
  DIR *d = opendir(dir);
  assert_non_null(d);
  char *names[16];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < 16)
    if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)n, sizeof(*names), cmp_str);
  assert_int_equal(n, 4);
  assert_string_equal(names[0], "notes.txt");
  assert_string_equal(names[1], "tierbus-20261122T000000Z.db");
  assert_string_equal(names[2], "tierbus-20261123T000000Z.db");
  assert_string_equal(names[3], "tierbus-20261124T000000Z.db");
  for (int i = 1; i < n; i++) {
    char path[4400], text[64] = "";
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    count_rows(path, "PRAGMA integrity_check", text, sizeof(text));
    assert_string_equal(text, "ok");
    assert_int_equal(
        count_rows(path, "SELECT count(*) FROM sched_tasks WHERE name = 'marker'", NULL, 0), 1);
    assert_int_equal(count_rows(path, "PRAGMA user_version", NULL, 0),
                     tb_store_schema_version(w->st));
  }
  for (int i = 0; i < n; i++) free(names[i]);
  assert_string_equal(get_task(w, "database-backup").status, "ok");
}

/* ---------------------------------------------------------------- the other jobs */

static void test_reminders(void **state) {
  world_t *w = *state;
  int64_t now = tb_wall_us(), day = 86400LL * 1000000;
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 1, now - 3 * day, NULL, NULL),
                   TB_OK);
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 2, now + 3 * day, NULL, NULL),
                   TB_OK);
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c2", 3, now - 5 * day, NULL, NULL),
                   TB_OK);
  assert_int_equal(tb_store_crm_deliverable_completed(w->st, "c2", 3, "d-c2-3", NULL, now), TB_OK);
  int marked = 0;
  assert_int_equal(tb_store_crm_deliverable_overdue(w->st, "c3", 1, "d-c3-1", "Brand audit",
                                                    now - 10 * day, &marked),
                   TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  clear_outbox(w);
  tb_sched_outcome_t o = run(w, "send-reminder-emails", at("2026-11-23T12:00:00Z"), 1, 1);
  assert_string_equal(o.status, "ok");
  assert_string_equal(o.detail, "2 DELIVERABLE_OVERDUE events published");
  int n = 0;
  tb_outbox_row_t *rows = due_rows(w, INT64_MAX / 2, &n);
  assert_int_equal(n, 2);
  static const struct {
    const char *client;
    int month, days;
  } want[] = {{"c3", 1, 10}, {"c1", 1, 3}}; /* oldest due first */
  for (int i = 0; i < n; i++) {
    assert_string_equal(rows[i].subject, "tb.evt.high.crm.DELIVERABLE_OVERDUE");
    tb_decoded_t d;
    assert_int_equal(tb_codec_decode(w->cat, rows[i].payload, rows[i].len, &d), TB_OK);
    const Tierbus__V1__DeliverableOverdue *m = (const Tierbus__V1__DeliverableOverdue *)d.payload;
    assert_string_equal(m->client_id, want[i].client);
    assert_int_equal(m->month, want[i].month);
    assert_int_equal(m->days_overdue, want[i].days);
    tb_decoded_free(&d);
  }
  tb_store_outbox_free(rows, n);
}

static void test_cleanup_files(void **state) {
  world_t *w = *state;
  char tmp[4200], old_f[4300], new_f[4300];
  snprintf(tmp, sizeof(tmp), "%s/tmp", w->cfg.data_dir);
  mkdir(w->cfg.data_dir, 0755);
  assert_int_equal(mkdir(tmp, 0755), 0);
  snprintf(old_f, sizeof(old_f), "%s/upload-old.bin", tmp);
  snprintf(new_f, sizeof(new_f), "%s/upload-new.bin", tmp);
  fclose(fopen(old_f, "w"));
  fclose(fopen(new_f, "w"));
  struct utimbuf two_days = {.actime = time(NULL) - 2 * 86400, .modtime = time(NULL) - 2 * 86400};
  assert_int_equal(utime(old_f, &two_days), 0);
  /* Replayed from the log (a rebuild), the slot leaves the live files alone. */
  w->ctx.replay = 1;
  tb_sched_outcome_t o = run(w, "cleanup-temp-files", at("2026-11-23T02:00:00Z"), 1, 1);
  w->ctx.replay = 0;
  assert_string_equal(o.status, "ok");
  assert_non_null(strstr(o.detail, "not run: replayed from the log"));
  assert_int_equal(access(old_f, F_OK), 0);
  /* Subdirectories are walked: an old file two levels down goes, and its emptied (old)
   * directories with it; a directory still holding a new file stays. Old uploads go after
   * uploads_max_age (30d), newer ones stay. A symbolic link is neither followed nor removed. */
  char sub[4300], deep[4400], deep_f[4500], keep_dir[4300], keep_f[4400];
  snprintf(sub, sizeof(sub), "%s/a", tmp);
  snprintf(deep, sizeof(deep), "%s/b", sub);
  snprintf(deep_f, sizeof(deep_f), "%s/old.part", deep);
  snprintf(keep_dir, sizeof(keep_dir), "%s/k", tmp);
  snprintf(keep_f, sizeof(keep_f), "%s/new.part", keep_dir);
  assert_int_equal(mkdir(sub, 0755), 0);
  assert_int_equal(mkdir(deep, 0755), 0);
  assert_int_equal(mkdir(keep_dir, 0755), 0);
  fclose(fopen(deep_f, "w"));
  fclose(fopen(keep_f, "w"));
  assert_int_equal(utime(deep_f, &two_days), 0);
  assert_int_equal(utime(deep, &two_days), 0);
  assert_int_equal(utime(sub, &two_days), 0);
  assert_int_equal(utime(keep_dir, &two_days), 0);
  char uploads[4200], up_old[4300], up_mid[4300], up_dir[4300], up_dir_f[4400], link[4300];
  snprintf(uploads, sizeof(uploads), "%s/uploads", w->cfg.data_dir);
  snprintf(up_old, sizeof(up_old), "%s/old.pdf", uploads);
  snprintf(up_mid, sizeof(up_mid), "%s/mid.pdf", uploads);
  snprintf(up_dir, sizeof(up_dir), "%s/client-1", uploads);
  snprintf(up_dir_f, sizeof(up_dir_f), "%s/logo.png", up_dir);
  snprintf(link, sizeof(link), "%s/outside", uploads);
  assert_int_equal(mkdir(uploads, 0755), 0);
  assert_int_equal(mkdir(up_dir, 0755), 0);
  fclose(fopen(up_old, "w"));
  fclose(fopen(up_mid, "w"));
  fclose(fopen(up_dir_f, "w"));
  assert_int_equal(symlink(w->dir, link), 0); /* points at the database's directory */
  struct utimbuf forty = {.actime = time(NULL) - 40 * 86400, .modtime = time(NULL) - 40 * 86400};
  struct utimbuf ten = {.actime = time(NULL) - 10 * 86400, .modtime = time(NULL) - 10 * 86400};
  assert_int_equal(utime(up_old, &forty), 0);
  assert_int_equal(utime(up_mid, &ten), 0);
  assert_int_equal(utime(up_dir_f, &forty), 0);
  assert_int_equal(utime(up_dir, &forty), 0);

  o = run(w, "cleanup-temp-files", at("2026-11-24T02:00:00Z"), 1, 1);
  assert_string_equal(o.status, "ok");
  assert_int_equal(access(old_f, F_OK), -1);
  assert_int_equal(access(new_f, F_OK), 0);
  assert_int_equal(access(deep_f, F_OK), -1);
  assert_int_equal(access(deep, F_OK), -1);
  assert_int_equal(access(sub, F_OK), -1);
  assert_int_equal(access(keep_f, F_OK), 0);
  assert_int_equal(access(keep_dir, F_OK), 0);
  assert_int_equal(access(up_old, F_OK), -1);
  assert_int_equal(access(up_mid, F_OK), 0);
  assert_int_equal(access(up_dir_f, F_OK), -1);
  assert_int_equal(access(up_dir, F_OK), -1);
  assert_int_equal(access(tmp, F_OK), 0); /* the roots stay */
  assert_int_equal(access(uploads, F_OK), 0);
  assert_int_equal(access(w->db, F_OK), 0); /* nothing behind the link was touched */
  struct stat lsb;
  assert_int_equal(lstat(link, &lsb), 0);
  assert_non_null(strstr(o.detail, "removed 2 files from"));
  assert_non_null(strstr(o.detail, "(kept 2 newer), 2 uploads from"));
  assert_non_null(strstr(o.detail, "(kept 1 newer), 3 empty directories"));

  /* uploads_max_age from the payload: 5 days takes the 10-day-old upload too. */
  tb_sched_task_t t = get_task(w, "cleanup-temp-files");
  tb_sched_task_t custom = t;
  snprintf(custom.name, sizeof(custom.name), "uploads-5d");
  snprintf(custom.payload, sizeof(custom.payload), "{\"uploads_max_age\":\"5d\"}");
  assert_int_equal(tb_sched_check(&w->cfg, w->cat, &custom), TB_OK);
  assert_int_equal(tb_store_sched_put(w->st, &custom), TB_OK);
  o = run(w, "uploads-5d", at("2026-11-25T02:00:00Z"), 1, 1);
  assert_string_equal(o.status, "ok");
  assert_int_equal(access(up_mid, F_OK), -1);
  /* A payload dir outside data_dir is refused at add. */
  snprintf(custom.payload, sizeof(custom.payload), "{\"uploads_dir\":\"../x\"}");
  assert_int_equal(tb_sched_check(&w->cfg, w->cat, &custom), TB_ERR_JSON);
  assert_non_null(strstr(tb_errdetail(), "uploads_dir '../x' must be a path inside data_dir"));
}

static void test_cleanup_old_jobs(void **state) {
  world_t *w = *state;
  sqlite3 *h = NULL;
  assert_int_equal(sqlite3_open(w->db, &h), SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  int64_t now = tb_wall_us(), day = 86400LL * 1000000;
  char sql[4096];
  snprintf(sql, sizeof(sql),
           "INSERT INTO workflows(id, name, domain, tier, status, data, created_us, updated_us, "
           "finished_us) VALUES"
           "('old-done', 'ops.sleep', 'ops', 'low', 'completed', '{}', %lld, %lld, %lld),"
           "('old-failed', 'ops.sleep', 'ops', 'low', 'failed', '{}', %lld, %lld, %lld),"
           "('recent', 'ops.sleep', 'ops', 'low', 'completed', '{}', %lld, %lld, %lld),"
           "('old-running', 'ops.sleep', 'ops', 'low', 'running', '{}', %lld, %lld, NULL);"
           "INSERT INTO workflow_history(workflow_id, step, name, kind, attempt, status, "
           "started_us) VALUES('old-done', 0, 'nap', 'sleep', 1, 'ok', 0),"
           "('recent', 0, 'nap', 'sleep', 1, 'ok', 0);"
           /* Processed records: 40 days old (past older_than), 10 days, and half the dedupe
            * horizon (a copy of it may still be redelivered). */
           "INSERT INTO processed(msg_id, committed_us, outcome) VALUES"
           "('m-old', %lld, 'applied'), ('m-recent', %lld, 'applied'), ('m-young', %lld, 'dead');"
           "INSERT INTO activity_log(msg_id, at_us) VALUES ('a-old1', %lld), ('a-old2', %lld), "
           "('a-new', %lld);"
           "INSERT INTO workflow_escalations(workflow_id, from_tier, to_tier, rule, source, at_us) "
           "VALUES ('old-done', 'low', 'high', 'r', 'start', %lld), "
           "('old-running', 'low', 'high', 'r', 'sweeper', %lld), "
           "('recent', 'low', 'high', 'r', 'start', %lld);"
           "INSERT INTO dead_letters(msg_id, at_us, class) VALUES ('d-old', %lld, 'malformed'), "
           "('d-new', %lld, 'malformed');"
           "INSERT INTO workflow_inbox(event, key, msg_id, workflow_id, at_us) VALUES "
           "('command-reply', 'k1', 'i-old', NULL, %lld), ('command-reply', 'k2', 'i-new', NULL, "
           "%lld), ('command-reply', 'k3', 'i-claimed', 'old-running', %lld);",
           (long long)(now - 40 * day), (long long)(now - 40 * day), (long long)(now - 40 * day),
           (long long)(now - 35 * day), (long long)(now - 31 * day), (long long)(now - 31 * day),
           (long long)(now - 40 * day), (long long)(now - 10 * day), (long long)(now - 10 * day),
           (long long)(now - 40 * day), (long long)(now - 40 * day), (long long)(now - 40 * day),
           (long long)(now - 10 * day),
           (long long)(now - tb_config_dedupe_horizon_ms(&w->cfg) * 1000 / 2),
           (long long)(now - 40 * day), (long long)(now - 31 * day), (long long)(now - 10 * day),
           (long long)(now - 40 * day), (long long)(now - 40 * day), (long long)(now - day),
           (long long)(now - 40 * day), (long long)(now - 10 * day), (long long)(now - 40 * day),
           (long long)(now - 10 * day), (long long)(now - 40 * day));
  char *err = NULL;
  if (sqlite3_exec(h, sql, NULL, NULL, &err) != SQLITE_OK) fail_msg("insert: %s", err);
  sqlite3_close(h);
  tb_sched_outcome_t o = run(w, "cleanup-old-jobs", at("2026-11-29T00:00:00Z"), 1, 1);
  assert_string_equal(o.status, "ok");
  assert_string_equal(o.detail, "removed 2 finished workflow runs, 0 scheduled runs, 1 processed "
                                "record, 2 activity log rows, 1 escalation record and 1 unclaimed "
                                "inbox entry older than 30d, and 1 dead letter older than 30d");
  /* The logs: activity by age; escalations by age of runs no longer live; dead letters by age
   * but never inside the dedupe horizon. */
  char text[256];
  count_rows(w->db,
             "SELECT group_concat(msg_id, ',') FROM (SELECT msg_id FROM activity_log ORDER "
             "BY msg_id)",
             text, sizeof(text));
  assert_string_equal(text, "a-new");
  count_rows(w->db,
             "SELECT group_concat(workflow_id, ',') FROM (SELECT workflow_id FROM "
             "workflow_escalations ORDER BY workflow_id)",
             text, sizeof(text));
  assert_string_equal(text, "old-running,recent");
  count_rows(w->db,
             "SELECT group_concat(msg_id, ',') FROM (SELECT msg_id FROM dead_letters ORDER "
             "BY msg_id)",
             text, sizeof(text));
  assert_string_equal(text, "d-new");
  count_rows(w->db,
             "SELECT group_concat(msg_id, ',') FROM (SELECT msg_id FROM workflow_inbox "
             "ORDER BY msg_id)",
             text, sizeof(text));
  assert_string_equal(text, "i-claimed,i-new");
  assert_int_equal(count_rows(w->db, "SELECT count(*) FROM workflows", NULL, 0), 2);
  assert_int_equal(count_rows(w->db,
                              "SELECT count(*) FROM workflows WHERE id IN ('recent', "
                              "'old-running')",
                              NULL, 0),
                   2);
  assert_int_equal(count_rows(w->db, "SELECT count(*) FROM workflow_history", NULL, 0), 1);
  assert_int_equal(count_rows(w->db,
                              "SELECT count(*) FROM processed WHERE msg_id IN ('m-recent', "
                              "'m-young')",
                              NULL, 0),
                   2);
  assert_int_equal(
      count_rows(w->db, "SELECT count(*) FROM processed WHERE msg_id = 'm-old'", NULL, 0), 0);
  /* Replay learns where records were pruned. */
  assert_int_equal(
      count_rows(w->db, "SELECT count(*) FROM prune_horizon WHERE before_us > 0", NULL, 0), 1);

  /* older_than shorter than the dedupe horizon: the horizon wins, the young record stays. */
  assert_int_equal(sqlite3_open(w->db, &h), SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  if (sqlite3_exec(h,
                   "UPDATE sched_tasks SET payload = '{\"older_than\":\"1m\"}' "
                   "WHERE name = 'cleanup-old-jobs'",
                   NULL, NULL, &err) != SQLITE_OK)
    fail_msg("update: %s", err);
  sqlite3_close(h);
  o = run(w, "cleanup-old-jobs", at("2026-12-06T00:00:00Z"), 1, 1);
  assert_string_equal(o.status, "ok");
  assert_int_equal(count_rows(w->db, "SELECT count(*) FROM processed", NULL, 0), 1);
  assert_int_equal(
      count_rows(w->db, "SELECT count(*) FROM processed WHERE msg_id = 'm-young'", NULL, 0), 1);
}

/* ---------------------------------------------------------------- client journey jobs */

/* UPDATE_CLIENT_METRICS: on time = completed by the due date; overdue = open past it; days since
 * the newest journey activity. Each boundary on purpose: completed exactly at the due date is on
 * time, a microsecond later is late. */
static void test_client_metrics(void **state) {
  world_t *w = *state;
  int64_t now = tb_wall_us(), day = 86400LL * 1000000;
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_crm_client_put(w->st, "c1", "One", NULL, NULL), TB_OK);
  assert_int_equal(tb_store_crm_client_put(w->st, "c2", "Two", NULL, NULL), TB_OK);
  /* c1: M1 on time (at its due date), M2 late by 1 us, M3 open and overdue, M4 open, not due. */
  int64_t due1 = now - 40 * day, due2 = now - 10 * day;
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 1, due1, NULL, NULL), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_completed(w->st, "c1", 1, "d1", NULL, due1), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 2, due2, NULL, NULL), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_completed(w->st, "c1", 2, "d2", NULL, due2 + 1), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 3, now - day, NULL, NULL), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_schedule(w->st, "c1", 4, now + day, NULL, NULL), TB_OK);
  assert_int_equal(tb_store_crm_activity(w->st, "c1", "note", "three days ago", NULL, NULL), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  /* Back-date c1's activity to 3.5 days ago: whole days are counted. */
  sqlite3 *h = NULL;
  assert_int_equal(sqlite3_open(w->db, &h), SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  char sql[200];
  snprintf(sql, sizeof(sql), "UPDATE crm_activity SET at_us = %lld WHERE client_id = 'c1'",
           (long long)(now - 3 * day - day / 2));
  assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(h);

  assert_int_equal(tb_store_sched_enable(w->st, "update-client-metrics", 1, now), TB_OK);
  tb_sched_outcome_t o = run(w, "update-client-metrics", at("2026-11-23T12:00:00Z"), 1, 1);
  assert_string_equal(o.status, "ok");
  assert_string_equal(o.detail, "metrics of 2 clients updated");
  tb_crm_metrics_t m;
  int found = 0;
  assert_int_equal(tb_store_crm_metrics_get(w->st, "c1", &m, &found), TB_OK);
  assert_int_equal(found, 1);
  assert_int_equal(m.deliverables_completed, 2);
  assert_int_equal(m.completed_on_time, 1);
  assert_int_equal(m.completed_late, 1);
  assert_int_equal(m.overdue_open, 1);
  assert_true(m.on_time_rate > 0.499 && m.on_time_rate < 0.501);
  assert_int_equal(m.days_since_activity, 3);
  assert_true(m.computed_us >= now);
  /* c2: nothing completed, no activity. */
  assert_int_equal(tb_store_crm_metrics_get(w->st, "c2", &m, &found), TB_OK);
  assert_int_equal(found, 1);
  assert_int_equal(m.deliverables_completed, 0);
  assert_true(m.on_time_rate < 0); /* no rate without a completed deliverable */
  assert_int_equal(m.last_activity_us, 0);
  assert_int_equal(m.days_since_activity, -1);
  assert_int_equal(tb_store_crm_metrics_get(w->st, "nobody", &m, &found), TB_OK);
  assert_int_equal(found, 0);
  /* A second run updates in place. */
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_crm_deliverable_completed(w->st, "c1", 3, "d3", NULL, now), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  o = run(w, "update-client-metrics", at("2026-11-23T18:00:00Z"), 1, 1);
  assert_string_equal(o.status, "ok");
  assert_int_equal(tb_store_crm_metrics_get(w->st, "c1", &m, &found), TB_OK);
  assert_int_equal(m.deliverables_completed, 3);
  assert_int_equal(m.completed_late, 2);
  assert_int_equal(m.overdue_open, 0);
  assert_int_equal(count_rows(w->db, "SELECT count(*) FROM crm_client_metrics", NULL, 0), 2);
}

/* MONTH_TRANSITIONS: one MONTH_TRANSITION per active client with the programme month starting
 * at the slot; none for a client activated in the slot's month, one past month 8, or one that is
 * not active. A slot run again publishes nothing new. */
static void test_month_transitions(void **state) {
  world_t *w = *state;
  static const struct {
    const char *id, *status, *activated;
  } clients[] = {
      {"jan", "active", "2026-01-15T10:00:00Z"},     /* month 11: past the programme */
      {"jun", "active", "2026-06-30T23:59:59Z"},     /* Dec 1: month 6 */
      {"nov", "active", "2026-11-01T00:00:00Z"},     /* Dec 1: month 1 */
      {"dec", "active", "2026-12-01T00:00:00Z"},     /* the slot itself: month 0 */
      {"onb", "onboarding", "2026-10-01T00:00:00Z"}, /* not active */
      {"done", "completed", "2026-10-01T00:00:00Z"}, /* not active */
  };
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
    assert_int_equal(tb_store_crm_client_put(w->st, clients[i].id, NULL, NULL, NULL), TB_OK);
    assert_int_equal(tb_store_crm_client_status(w->st, clients[i].id, clients[i].status), TB_OK);
  }
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  sqlite3 *h = NULL;
  assert_int_equal(sqlite3_open(w->db, &h), SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
    char sql[200];
    snprintf(sql, sizeof(sql), "UPDATE crm_clients SET activated_us = %lld WHERE client_id = '%s'",
             (long long)at(clients[i].activated), clients[i].id);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
  }
  sqlite3_close(h);
  clear_outbox(w);

  int64_t slot = at("2026-12-01T00:00:00Z");
  tb_sched_outcome_t o = run(w, "month-transition", slot, 1, 1);
  assert_string_equal(o.status, "ok");
  assert_string_equal(o.detail, "2 MONTH_TRANSITION events published for 2026-12; 1 active client "
                                "activated this month, 1 past month 8");
  int n = 0;
  tb_outbox_row_t *rows = due_rows(w, INT64_MAX / 2, &n);
  assert_int_equal(n, 2);
  static const struct {
    const char *client;
    int month;
  } want[] = {{"jun", 6}, {"nov", 1}};
  for (int i = 0; i < n; i++) {
    /* The catalogue's tier for MONTH_TRANSITION (normal), not the task's. */
    assert_string_equal(rows[i].subject, "tb.evt.normal.crm.MONTH_TRANSITION");
    char id[128];
    snprintf(id, sizeof(id), "sched:month-transition:%lld:%s", (long long)slot, want[i].client);
    assert_string_equal(rows[i].msg_id, id);
    tb_decoded_t d;
    assert_int_equal(tb_codec_decode(w->cat, rows[i].payload, rows[i].len, &d), TB_OK);
    const Tierbus__V1__MonthTransition *m = (const Tierbus__V1__MonthTransition *)d.payload;
    assert_string_equal(m->client_id, want[i].client);
    assert_int_equal(m->month, want[i].month);
    assert_string_equal(m->period, "2026-12");
    tb_decoded_free(&d);
  }
  tb_store_outbox_free(rows, n);
  /* The same slot again: a duplicate, nothing runs. */
  o = run(w, "month-transition", slot, 1, 1);
  assert_string_equal(o.status, "duplicate");
}

/* Custom job types (config job_types): a task naming one sends a Command to its service with the
 * task's payload as input, once per slot; an unregistered name is still refused at add. */
static void test_custom_job_type(void **state) {
  world_t *w = *state;
  tb_sched_task_t t = {.name = "nightly-report",
                       .pattern = "DAILY_AT_2AM",
                       .job = "MY_CUSTOM_JOB",
                       .payload = "{\"someData\":\"value\"}",
                       .enabled = 1,
                       .tier = "normal"};
  assert_int_equal(tb_sched_check(&w->cfg, w->cat, &t), TB_ERR_UNKNOWN_EVENT);
  assert_non_null(strstr(tb_errdetail(), "a job type of the config (job_types)"));
  snprintf(w->cfg.job_types[0].type, sizeof(w->cfg.job_types[0].type), "MY_CUSTOM_JOB");
  snprintf(w->cfg.job_types[0].service, sizeof(w->cfg.job_types[0].service), "reports");
  snprintf(w->cfg.job_types[0].action, sizeof(w->cfg.job_types[0].action), "build");
  w->cfg.n_job_types = 1;
  assert_int_equal(tb_sched_check(&w->cfg, w->cat, &t), TB_OK);
  assert_int_equal(tb_store_sched_put(w->st, &t), TB_OK);
  clear_outbox(w);
  int64_t slot = at("2026-11-24T02:00:00Z");
  tb_sched_outcome_t o = run(w, "nightly-report", slot, 1, 1);
  assert_string_equal(o.status, "ok");
  char id[128], want[256];
  snprintf(id, sizeof(id), "sched:nightly-report:%lld:job", (long long)slot);
  snprintf(want, sizeof(want), "sent MY_CUSTOM_JOB to tb.cmd.reports.build (command %s)", id);
  assert_string_equal(o.detail, want);
  int n = 0;
  tb_outbox_row_t *rows = due_rows(w, INT64_MAX / 2, &n);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].subject, "tb.cmd.reports.build");
  assert_string_equal(rows[0].msg_id, id);
  Tierbus__V1__Command *cmd =
      tierbus__v1__command__unpack(NULL, rows[0].len, (const uint8_t *)rows[0].payload);
  assert_non_null(cmd);
  assert_string_equal(cmd->command_id, id);
  assert_string_equal(cmd->service, "reports");
  assert_string_equal(cmd->action, "build");
  assert_string_equal(cmd->input_json, "{\"someData\":\"value\"}");
  assert_string_equal(cmd->reply_tier, "normal");
  assert_string_equal(cmd->correlation_id, "nightly-report");
  tierbus__v1__command__free_unpacked(cmd, NULL);
  tb_store_outbox_free(rows, n);
  /* The slot again: nothing more is sent. */
  o = run(w, "nightly-report", slot, 1, 1);
  assert_string_equal(o.status, "duplicate");
  rows = due_rows(w, INT64_MAX / 2, &n);
  assert_int_equal(n, 1);
  tb_store_outbox_free(rows, n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_defaults_seeded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missed_slot_policies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_slot_runs_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retry_then_failed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backup_keeps_last_n, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reminders, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cleanup_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cleanup_old_jobs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_client_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_month_transitions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_custom_job_type, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
