/* Scheduler rules: slot decisions, the scheduled-task event, the built-in jobs of seed 001's
 * default tasks and the run of one slot with its retries. Everything here runs inside the
 * caller's transaction; the files a job writes or removes (backups, temp files) are named after
 * the slot, so running a slot again does the same thing. */
#include "sched/sched.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/fs.h"
#include "core/status.h"
#include "core/util.h"
#include "store/crm.h"
#include "store/logstate.h"
#include "tierbus/v1/command.pb-c.h"

/* Returns |s| with the current detail prefixed by |prefix|. */
static tb_status refail(tb_status s, const char *prefix) {
  return tb__fail(s, "%s%s", prefix, tb_errdetail());
}

/* ------------------------------------------------------------------------------------------------
 * Tasks as the CLI and the API show them
 * --------------------------------------------------------------------------------------------- */

int64_t tb_sched_next_us(const tb_sched_task_t *t, int64_t now_us) {
  tb_cron_t c;
  int64_t next = 0;
  if (!t->enabled || tb_cron_parse(t->pattern, &c) != TB_OK) return 0;
  int64_t from = t->last_slot_us > now_us ? t->last_slot_us : now_us;
  return tb_cron_next(&c, from, &next) == TB_OK ? next : 0;
}

json_t *tb_sched_task_json(const tb_sched_task_t *t, int64_t now_us) {
  int64_t next_us = tb_sched_next_us(t, now_us);
  const char *expanded = tb_cron_constant(t->pattern);
  json_t *payload = json_loads(t->payload, 0, NULL);
  return json_pack(
      "{s:s, s:s, s:s, s:s, s:o, s:b, s:s, s:s, s:s, s:o, s:s, s:i, s:o, s:o}", "name", t->name,
      "pattern", t->pattern, "cron", expanded ? expanded : t->pattern, "event", t->job, "payload",
      payload ? payload : json_object(), "enabled", t->enabled, "priority", t->tier, "description",
      t->description, "catch_up", t->catch_up_once ? "once" : "skip", "next_us",
      next_us ? json_integer(next_us) : json_null(), "status", t->status, "failure_count",
      t->failure_count, "last_error", t->last_error[0] ? json_string(t->last_error) : json_null(),
      "last_run_us", t->last_run_us ? json_integer(t->last_run_us) : json_null());
}

/* ------------------------------------------------------------------------------------------------
 * Built-in jobs
 * --------------------------------------------------------------------------------------------- */

/* One job run: the handler context, the task, the slot and the parsed payload (borrowed). The job
 * writes a one-line summary into |result|. */
typedef struct job_run {
  const tb_handler_ctx_t *ctx;
  const tb_sched_task_t *task;
  int64_t slot_us;
  json_t *payload;
  char result[512];
} job_run_t;

/* payload.<field> as a string, or |def|. */
static const char *payload_str(const job_run_t *r, const char *field, const char *def) {
  const char *v = json_string_value(json_object_get(r->payload, field));
  return v != NULL && v[0] != '\0' ? v : def;
}

/* payload.<field> as a duration in microseconds (default |def| text). */
static tb_status payload_duration_us(const job_run_t *r, const char *field, const char *def,
                                     int64_t *out) {
  const char *text = payload_str(r, field, def);
  int64_t ms = 0;
  tb_status s = tb_duration_parse_ms(text, &ms);
  if (s != TB_OK) {
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "%s: payload %s: ", r->task->job, field);
    return refail(TB_ERR_INVALID, prefix);
  }
  *out = ms * 1000;
  return TB_OK;
}

/* <data_dir>/<payload.<field> or |def|>; a dir that leaves data_dir (absolute, "..") is refused. */
static tb_status job_dir_field(const job_run_t *r, const char *field, const char *def, char *buf,
                               size_t cap) {
  const char *sub = payload_str(r, field, def);
  if (sub[0] == '/' || strstr(sub, "..") != NULL)
    return tb__fail(TB_ERR_INVALID, "%s: payload %s '%s' must be a path inside data_dir",
                    r->task->job, field, sub);
  if ((size_t)snprintf(buf, cap, "%s/%s", r->ctx->cfg->data_dir, sub) >= cap)
    return tb__fail(TB_ERR_INVALID, "%s: %s '%s' is too long", r->task->job, field, sub);
  return TB_OK;
}

static tb_status job_dir(const job_run_t *r, const char *def, char *buf, size_t cap) {
  return job_dir_field(r, "dir", def, buf, cap);
}

/* What one cleanup walk removed and kept. */
typedef struct sweep {
  int64_t cutoff_s; /* files not modified since are removed */
  int removed, kept, dirs;
} sweep_t;

/* Walks |dir| and its subdirectories (symbolic links are neither followed nor removed, so the
 * walk never leaves the directory), removing the regular files not modified since the cutoff and
 * the subdirectories that end up empty; |dir| itself stays. |depth| bounds the recursion. */
static tb_status sweep_dir(const char *dir, sweep_t *sw, int depth) {
  if (depth > 32) return tb__fail(TB_ERR_IO, "CLEANUP_FILES: %s: nested more than 32 deep", dir);
  DIR *d = opendir(dir);
  if (d == NULL) {
    if (errno == ENOENT) return TB_OK;
    return tb__fail(TB_ERR_IO, "CLEANUP_FILES: %s: %s", dir, strerror(errno));
  }
  tb_status s = TB_OK;
  struct dirent *e;
  while (s == TB_OK && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char path[4096];
    struct stat sb;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path)) {
      s = tb__fail(TB_ERR_IO, "CLEANUP_FILES: path under %.200s is too long", dir);
      break;
    }
    if (lstat(path, &sb) != 0) continue; /* gone meanwhile */
    if (S_ISDIR(sb.st_mode)) {
      s = sweep_dir(path, sw, depth + 1);
      /* Only an emptied directory goes, and only an old one: a fresh one may be an upload that is
       * being written. ENOTEMPTY/EEXIST: it still holds something, which is fine. */
      if (s == TB_OK && (int64_t)sb.st_mtime < sw->cutoff_s && rmdir(path) == 0) sw->dirs++;
    } else if (!S_ISREG(sb.st_mode)) {
      continue;
    } else if ((int64_t)sb.st_mtime >= sw->cutoff_s) {
      sw->kept++;
    } else if (unlink(path) == 0 || errno == ENOENT) {
      sw->removed++;
    } else {
      s = tb__fail(TB_ERR_IO, "CLEANUP_FILES: remove %s: %s", path, strerror(errno));
    }
  }
  closedir(d);
  return s;
}

/* CLEANUP_FILES: the seed's "temporary files and old uploads". Removes the regular files under
 * <data_dir>/<dir> (default "tmp") not modified for payload.max_age (default 24h), and under
 * <data_dir>/<uploads_dir> (default "uploads") not modified for payload.uploads_max_age (default
 * 30d), walking subdirectories and removing those left empty. A missing directory has nothing to
 * clean. */
static tb_status job_cleanup_files(job_run_t *r) {
  char dirs[2][2048];
  int64_t ages_us[2] = {0, 0};
  tb_status s = job_dir_field(r, "dir", "tmp", dirs[0], sizeof(dirs[0]));
  if (s == TB_OK) s = payload_duration_us(r, "max_age", "24h", &ages_us[0]);
  if (s == TB_OK) s = job_dir_field(r, "uploads_dir", "uploads", dirs[1], sizeof(dirs[1]));
  if (s == TB_OK) s = payload_duration_us(r, "uploads_max_age", "30d", &ages_us[1]);
  if (s != TB_OK) return s;
  sweep_t sw[2];
  int64_t now = tb_wall_us();
  for (int i = 0; i < 2 && s == TB_OK; i++) {
    sw[i] = (sweep_t){.cutoff_s = (now - ages_us[i]) / 1000000};
    s = sweep_dir(dirs[i], &sw[i], 0);
  }
  if (s == TB_OK)
    snprintf(r->result, sizeof(r->result),
             "removed %d file%s from %.200s (kept %d newer), %d upload%s from %.200s (kept %d "
             "newer), %d empty director%s",
             sw[0].removed, sw[0].removed == 1 ? "" : "s", dirs[0], sw[0].kept, sw[1].removed,
             sw[1].removed == 1 ? "" : "s", dirs[1], sw[1].kept, sw[0].dirs + sw[1].dirs,
             sw[0].dirs + sw[1].dirs == 1 ? "y" : "ies");
  return s;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A backup file's name: "tierbus-YYYYmmddTHHMMSSZ.db", so that names sort by time. */
static int is_backup_name(const char *n) {
  size_t len = strlen(n);
  return len == strlen("tierbus-20260101T000000Z.db") && strncmp(n, "tierbus-", 8) == 0 &&
         strcmp(n + len - 3, ".db") == 0;
}

/* Removes all but the |keep| newest backups in |dir|; *removed gets the count. */
static tb_status rotate_backups(const char *dir, int keep, int *removed) {
  *removed = 0;
  DIR *d = opendir(dir);
  if (d == NULL) return tb__fail(TB_ERR_IO, "BACKUP_DATABASE: %s: %s", dir, strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0;
  tb_status s = TB_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!is_backup_name(e->d_name)) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      char **grown = realloc(names, cap * sizeof(*names));
      if (grown == NULL) {
        s = tb__fail(TB_ERR_NOMEM, "BACKUP_DATABASE: listing %s", dir);
        break;
      }
      names = grown;
    }
    names[n] = strdup(e->d_name);
    if (names[n] == NULL) {
      s = tb__fail(TB_ERR_NOMEM, "BACKUP_DATABASE: listing %s", dir);
      break;
    }
    n++;
  }
  closedir(d);
  if (s == TB_OK && n > (size_t)keep) {
    qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; i + (size_t)keep < n && s == TB_OK; i++) {
      char path[4096];
      snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
      if (unlink(path) == 0 || errno == ENOENT)
        (*removed)++;
      else
        s = tb__fail(TB_ERR_IO, "BACKUP_DATABASE: remove %s: %s", path, strerror(errno));
    }
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return s;
}

/* BACKUP_DATABASE: an online backup of the database to <data_dir>/<dir>/tierbus-<slot>.db
 * (dir default "backups"), then only the newest backup_keep copies are kept. */
static tb_status job_backup(job_run_t *r) {
  char dir[2048], path[4096], stamp[32];
  tb_status s = job_dir(r, "backups", dir, sizeof(dir));
  if (s != TB_OK) return s;
  tb_mkdirs(dir, 1);
  time_t t = (time_t)(r->slot_us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
  snprintf(path, sizeof(path), "%s/tierbus-%s.db", dir, stamp);
  s = tb_store_backup(r->ctx->store, path);
  int removed = 0;
  if (s == TB_OK) s = rotate_backups(dir, r->ctx->cfg->backup_keep, &removed);
  if (s == TB_OK)
    snprintf(r->result, sizeof(r->result), "backup %.400s; removed %d older (keep %d)", path,
             removed, r->ctx->cfg->backup_keep);
  return s;
}

/* CLEANUP_OLD_JOBS: in tierbus a "job" is a workflow run (and a scheduled task's run): those that
 * finished more than payload.older_than (default 30d) ago are deleted with their history. The
 * logs go by the same age: the activity log, and the escalation records of runs no longer live.
 * Dead-letter entries go after payload.dead_letters_older_than (default: older_than). The
 * processed-message records and dead-letter entries are never pruned younger than the dedupe
 * horizon (tb_config_dedupe_horizon_ms): they are what makes a redelivery harmless. */
static tb_status job_cleanup_old_jobs(job_run_t *r) {
  int64_t age_us = 0, dlq_age_us = 0;
  tb_status s = payload_duration_us(r, "older_than", "30d", &age_us);
  if (s == TB_OK)
    s = payload_duration_us(r, "dead_letters_older_than", payload_str(r, "older_than", "30d"),
                            &dlq_age_us);
  int64_t wf = 0, runs = 0, records = 0, activity = 0, dead = 0, escalations = 0, inbox = 0,
          now = tb_wall_us();
  if (s == TB_OK) s = tb_store_purge_finished(r->ctx->store, now - age_us, &wf, &runs);
  int64_t horizon_us = tb_config_dedupe_horizon_ms(r->ctx->cfg) * 1000;
  if (s == TB_OK)
    s = tb_store_prune_processed(r->ctx->store, now - (age_us > horizon_us ? age_us : horizon_us),
                                 &records);
  if (s == TB_OK)
    s = tb_store_purge_logs(r->ctx->store, now - age_us,
                            now - (dlq_age_us > horizon_us ? dlq_age_us : horizon_us), &activity,
                            &dead, &escalations, &inbox);
  if (s == TB_OK)
    snprintf(r->result, sizeof(r->result),
             "removed %lld finished workflow run%s, %lld scheduled run%s, %lld processed "
             "record%s, %lld activity log row%s, %lld escalation record%s and %lld unclaimed "
             "inbox entr%s older than %s, and %lld dead letter%s older than %s",
             (long long)wf, wf == 1 ? "" : "s", (long long)runs, runs == 1 ? "" : "s",
             (long long)records, records == 1 ? "" : "s", (long long)activity,
             activity == 1 ? "" : "s", (long long)escalations, escalations == 1 ? "" : "s",
             (long long)inbox, inbox == 1 ? "y" : "ies", payload_str(r, "older_than", "30d"),
             (long long)dead, dead == 1 ? "" : "s",
             payload_str(r, "dead_letters_older_than", payload_str(r, "older_than", "30d")));
  return s;
}

/* Publishes one catalogue event through the outbox (payload borrowed; tier NULL = the event's
 * configured or default tier). */
static tb_status emit_event(const tb_handler_ctx_t *ctx, const char *event, const char *tier,
                            const char *id, json_t *payload, int64_t due_us) {
  tb_publish_req_t req = {.event = event,
                          .payload = payload,
                          .tier = tier,
                          .id = id,
                          .source = "tierbus-scheduler",
                          .occurred_at_us = due_us};
  tb_prepared_t p;
  tb_status s = tb_publish_prepare(ctx->cfg, ctx->cat, &req, &p);
  if (s != TB_OK) return s;
  s = tb_handler_emit_at(ctx, p.subject, p.id, p.buf, p.len, due_us);
  tb_prepared_free(&p);
  return s;
}

typedef struct reminders {
  job_run_t *r;
  int64_t now_us;
  int sent;
  tb_status s;
} reminders_t;

/* FNV-1a of |text|, for message ids built from ids of any length. */
static uint64_t fnv(const char *text) {
  uint64_t h = 1469598103934665603ULL;
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    h ^= *p;
    h *= 1099511628211ULL;
  }
  return h;
}

static int remind_one(void *arg, const tb_crm_deliverable_t *d) {
  reminders_t *rm = arg;
  char key[512], id[64];
  snprintf(key, sizeof(key), "%s\n%lld\n%s\n%d", rm->r->task->name, (long long)rm->r->slot_us,
           d->client_id, d->month);
  snprintf(id, sizeof(id), "sched-remind:%016llx", (unsigned long long)fnv(key));
  json_int_t days = (json_int_t)((rm->now_us - d->due_us) / (86400LL * 1000000));
  json_t *p = json_pack("{s:s, s:s, s:i, s:I, s:I}", "client_id", d->client_id, "user_id",
                        "tierbus-scheduler", "month", d->month, "due_at_us", (json_int_t)d->due_us,
                        "days_overdue", days);
  if (p != NULL && d->deliverable_id[0])
    json_object_set_new(p, "deliverable_id", json_string(d->deliverable_id));
  if (p != NULL && d->title[0]) json_object_set_new(p, "title", json_string(d->title));
  rm->s = p ? emit_event(rm->r->ctx, "DELIVERABLE_OVERDUE", NULL, id, p, 0)
            : tb__fail(TB_ERR_NOMEM, "SEND_REMINDER_EMAILS: payload");
  json_decref(p);
  if (rm->s == TB_OK) rm->sent++;
  return rm->s != TB_OK;
}

/* SEND_REMINDER_EMAILS: one DELIVERABLE_OVERDUE event per deliverable past its due date and not
 * completed; the client journey's crm.deliverable-overdue workflow marks it, logs it and sends
 * the reminder email (when email_workflows is on). */
static tb_status job_reminders(job_run_t *r) {
  reminders_t rm = {.r = r, .now_us = tb_wall_us()};
  tb_status s = tb_store_crm_deliverables_past_due(r->ctx->store, rm.now_us, remind_one, &rm);
  if (s == TB_OK) s = rm.s;
  if (s == TB_OK)
    snprintf(r->result, sizeof(r->result), "%d DELIVERABLE_OVERDUE event%s published", rm.sent,
             rm.sent == 1 ? "" : "s");
  return s;
}

/* UPDATE_CLIENT_METRICS: recomputes every client's engagement metrics (store/crm.h,
 * crm_client_metrics): deliverables completed on time (by their due date) and late, open
 * deliverables past due, the on-time share, and days since the client's last journey activity. */
static tb_status job_client_metrics(job_run_t *r) {
  int64_t clients = 0;
  tb_status s = tb_store_crm_metrics_update(r->ctx->store, tb_wall_us(), &clients);
  if (s == TB_OK)
    snprintf(r->result, sizeof(r->result), "metrics of %lld client%s updated", (long long)clients,
             clients == 1 ? "" : "s");
  return s;
}

/* The programme month that starts at |slot_us| for a client activated at |activated_us|: the
 * calendar months from the activation's month to the slot's. Activation schedules month 1 and the
 * first month start after it generates it (client journey), so a client activated in January is
 * in month 1 on February 1st and month 8 on September 1st. 0 in the month of activation (or for
 * an activation after the slot). */
static int programme_month(int64_t activated_us, int64_t slot_us) {
  time_t a = (time_t)(activated_us / 1000000), n = (time_t)(slot_us / 1000000);
  struct tm ta, tn;
  gmtime_r(&a, &ta);
  gmtime_r(&n, &tn);
  int months = (tn.tm_year * 12 + tn.tm_mon) - (ta.tm_year * 12 + ta.tm_mon);
  return months > 0 ? months : 0;
}

typedef struct transitions {
  job_run_t *r;
  char period[8]; /* the slot's calendar month, "YYYY-MM" */
  int sent, not_started, finished;
  tb_status s;
} transitions_t;

static int transition_one(void *arg, const char *client_id, int64_t activated_us) {
  transitions_t *tr = arg;
  int month = programme_month(activated_us, tr->r->slot_us);
  if (month < 1) {
    tr->not_started++;
    return 0;
  }
  if (month > TB_CRM_MONTHS) {
    tr->finished++;
    return 0;
  }
  /* One id per (task, slot, client): a slot that runs again publishes nothing new. */
  char id[TB_SCHED_NAME_MAX + TB_ID_MAX + 48];
  snprintf(id, sizeof(id), "sched:%s:%lld:%s", tr->r->task->name, (long long)tr->r->slot_us,
           client_id);
  json_t *p = json_pack("{s:s, s:s, s:i, s:s}", "client_id", client_id, "user_id",
                        "tierbus-scheduler", "month", month, "period", tr->period);
  tr->s = p != NULL ? emit_event(tr->r->ctx, "MONTH_TRANSITION", NULL, id, p, 0)
                    : tb__fail(TB_ERR_NOMEM, "MONTH_TRANSITIONS: payload");
  json_decref(p);
  if (tr->s == TB_OK) tr->sent++;
  return tr->s != TB_OK;
}

/* MONTH_TRANSITIONS: seed 001's MONTH_TRANSITION ("start of calendar month") for every active
 * client, with the programme month now starting (programme_month) and the period; clients in
 * their month of activation or past month 8 get none. The client journey's crm.month-transition
 * workflow generates the month's deliverable unless it already is. */
static tb_status job_month_transitions(job_run_t *r) {
  transitions_t tr = {.r = r};
  time_t t = (time_t)(r->slot_us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(tr.period, sizeof(tr.period), "%Y-%m", &tm);
  tb_status s = tb_store_crm_clients_active(r->ctx->store, transition_one, &tr);
  if (s == TB_OK) s = tr.s;
  if (s == TB_OK)
    snprintf(r->result, sizeof(r->result),
             "%d MONTH_TRANSITION event%s published for %s; %d active client%s activated this "
             "month, %d past month %d",
             tr.sent, tr.sent == 1 ? "" : "s", tr.period, tr.not_started,
             tr.not_started == 1 ? "" : "s", tr.finished, TB_CRM_MONTHS);
  return s;
}

/* X(job type, function, payload fields it reads (durations marked ~), files: 1 when it acts on
 * files outside the database, what it does): the built-in jobs, named as seed 001's job types. A
 * job with files set does nothing when its scheduled-task event is replayed from the log
 * (`replay --force`, `rebuild`): the files are the live system's, and a rebuild must not delete
 * or back up anything again. */
#define JOBS(X)                                                                                    \
  X("CLEANUP_FILES", job_cleanup_files, "dir ~max_age uploads_dir ~uploads_max_age", 1,            \
    "remove files under <data_dir>/<dir> (default tmp) older than max_age (24h) and under "        \
    "<data_dir>/<uploads_dir> (uploads) older than uploads_max_age (30d), subdirectories too")     \
  X("BACKUP_DATABASE", job_backup, "dir", 1,                                                       \
    "online SQLite backup to <data_dir>/backups, keeping the newest backup_keep")                  \
  X("CLEANUP_OLD_JOBS", job_cleanup_old_jobs, "~older_than ~dead_letters_older_than", 0,           \
    "delete workflow runs and scheduled runs finished more than older_than (30d) ago, the "        \
    "activity log and escalation records past it, dead letters past dead_letters_older_than, "     \
    "and processed records past older_than and the dedupe horizon")                                \
  X("SEND_REMINDER_EMAILS", job_reminders, "", 0,                                                  \
    "publish DELIVERABLE_OVERDUE for every past-due deliverable (client journey)")                 \
  X("UPDATE_CLIENT_METRICS", job_client_metrics, "", 0,                                            \
    "recompute every client's metrics: deliverables on time and late, overdue, days since the "    \
    "last activity (table crm_client_metrics)")                                                    \
  X("MONTH_TRANSITIONS", job_month_transitions, "", 0,                                             \
    "publish MONTH_TRANSITION for every active client with its programme month (client journey)")

static const struct {
  const char *job;
  tb_status (*fn)(job_run_t *r);
  const char *fields;
  int files;
  const char *what;
} jobs[] = {
#define ROW(j, f, p, fl, w) {j, f, p, fl, w},
    JOBS(ROW)
#undef ROW
};

#define N_JOBS TB_COUNTOF(jobs)

void tb_sched_jobs(void (*fn)(void *arg, const char *job, const char *what), void *arg) {
  for (size_t i = 0; i < N_JOBS; i++) fn(arg, jobs[i].job, jobs[i].what);
}

static int job_index(const char *job) {
  for (size_t i = 0; job != NULL && i < N_JOBS; i++)
    if (strcmp(jobs[i].job, job) == 0) return (int)i;
  return -1;
}

int tb_sched_is_job(const char *job) {
  return job_index(job) >= 0;
}

/* The built-in job types, comma-separated, into |buf|, for messages. */
static const char *job_names(char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < N_JOBS && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", jobs[i].job);
  return buf;
}

/* ------------------------------------------------------------------------------------------------
 * Default tasks
 * --------------------------------------------------------------------------------------------- */

/* Seed 001's default scheduled tasks (its table, with its schedules and descriptions), plus
 * tierbus's: seed 002's 6-hourly priority sync and the monthly MONTH_TRANSITION. A new database
 * gets them from its migrations (v8 and v16, which must agree with this table: test_schedule
 * checks that a fresh database has exactly these); `schedule reset-defaults` puts them back. */
static const struct default_task {
  const char *name, *pattern, *job, *payload;
  int enabled;
  const char *tier, *description;
  int catch_up_once;
} default_tasks[] = {
    {"cleanup-temp-files", "DAILY_AT_2AM", "CLEANUP_FILES", "{\"dir\":\"tmp\",\"max_age\":\"24h\"}",
     1, "background", "Clean up temporary files and old uploads", 0},
    {"database-backup", "DAILY_AT_MIDNIGHT", "BACKUP_DATABASE", "{}", 1, "low",
     "Create automated database backup", 1},
    {"cleanup-old-jobs", "WEEKLY_SUNDAY", "CLEANUP_OLD_JOBS", "{\"older_than\":\"30d\"}", 1,
     "background", "Remove completed jobs older than 30 days", 1},
    {"send-reminder-emails", "DAILY_AT_NOON", "SEND_REMINDER_EMAILS", "{}", 1, "normal",
     "Send reminder emails for overdue deliverables", 1},
    /* Disabled as in the seed: enable it with `schedule enable update-client-metrics`. */
    {"update-client-metrics", "EVERY_6_HOURS", "UPDATE_CLIENT_METRICS", "{}", 0, "low",
     "Update client engagement metrics", 0},
    {"workspace-priority-sync", "EVERY_6_HOURS", "workspace/priorities.sync", "{}", 1, "background",
     "Full workspace repository priority sync (seed 002)", 1},
    {"month-transition", "MONTHLY_FIRST", "MONTH_TRANSITIONS", "{}", 1, "normal",
     "Publish MONTH_TRANSITION for every active client", 1},
};

int tb_sched_default_count(void) {
  return (int)TB_COUNTOF(default_tasks);
}

void tb_sched_default(int i, tb_sched_task_t *out) {
  memset(out, 0, sizeof(*out));
  if (i < 0 || i >= tb_sched_default_count()) return;
  const struct default_task *d = &default_tasks[i];
  snprintf(out->name, sizeof(out->name), "%s", d->name);
  snprintf(out->pattern, sizeof(out->pattern), "%s", d->pattern);
  snprintf(out->job, sizeof(out->job), "%s", d->job);
  snprintf(out->payload, sizeof(out->payload), "%s", d->payload);
  out->enabled = d->enabled;
  snprintf(out->tier, sizeof(out->tier), "%s", d->tier);
  snprintf(out->description, sizeof(out->description), "%s", d->description);
  out->catch_up_once = d->catch_up_once;
  snprintf(out->status, sizeof(out->status), "idle");
}

int tb_sched_same_definition(const tb_sched_task_t *a, const tb_sched_task_t *b) {
  json_t *pa = json_loads(a->payload[0] ? a->payload : "{}", 0, NULL);
  json_t *pb = json_loads(b->payload[0] ? b->payload : "{}", 0, NULL);
  int same_payload = pa != NULL && pb != NULL && json_equal(pa, pb);
  json_decref(pa);
  json_decref(pb);
  return same_payload && strcmp(a->pattern, b->pattern) == 0 && strcmp(a->job, b->job) == 0 &&
         a->enabled == b->enabled && strcmp(a->tier, b->tier) == 0 &&
         strcmp(a->description, b->description) == 0 && a->catch_up_once == b->catch_up_once;
}

/* ------------------------------------------------------------------------------------------------
 * Tasks and slots
 * --------------------------------------------------------------------------------------------- */

/* Parses a task's payload text; TB_ERR_JSON with line and column when it is not an object. Caller
 * frees with json_decref(). */
static tb_status parse_payload(const tb_sched_task_t *t, json_t **out) {
  json_error_t err;
  json_t *v = json_loads(t->payload[0] ? t->payload : "{}", JSON_REJECT_DUPLICATES, &err);
  if (v == NULL)
    return tb__fail(TB_ERR_JSON, "task %s: payload: %s (line %d, column %d)", t->name, err.text,
                    err.line, err.column);
  if (!json_is_object(v)) {
    json_decref(v);
    return tb__fail(TB_ERR_JSON, "task %s: payload must be a JSON object", t->name);
  }
  *out = v;
  return TB_OK;
}

/* Checks a built-in job's payload: only the fields it reads, strings, durations that parse, a dir
 * inside data_dir. */
static tb_status check_job_payload(int j, json_t *payload) {
  const char *key;
  json_t *v;
  json_object_foreach(payload, key, v) {
    char want[64], tilde[64];
    snprintf(want, sizeof(want), " %s ", key);
    snprintf(tilde, sizeof(tilde), " ~%s ", key);
    char fields[128];
    snprintf(fields, sizeof(fields), " %s ", jobs[j].fields);
    int is_duration = strstr(fields, tilde) != NULL;
    if (strstr(fields, want) == NULL && !is_duration) {
      char shown[128]; /* the field list without the duration marks, comma-separated */
      size_t n = 0;
      for (const char *c = jobs[j].fields; *c && n + 3 < sizeof(shown); c++) {
        if (*c == ' ') shown[n++] = ',';
        if (*c != '~') shown[n++] = *c;
      }
      shown[n] = '\0';
      return tb__fail(TB_ERR_JSON, "--payload: %s takes %s%s, not '%s'", jobs[j].job,
                      n ? "only the fields " : "no fields", shown, key);
    }
    const char *text = json_string_value(v);
    if (text == NULL)
      return tb__fail(TB_ERR_JSON, "--payload: %s: field '%s' must be a string", jobs[j].job, key);
    int64_t ms;
    if (is_duration && tb_duration_parse_ms(text, &ms) != TB_OK) {
      char prefix[128];
      snprintf(prefix, sizeof(prefix), "--payload: %s: %s: ", jobs[j].job, key);
      return refail(TB_ERR_JSON, prefix);
    }
    size_t klen = strlen(key);
    int is_dir = klen >= 3 && strcmp(key + klen - 3, "dir") == 0; /* dir, uploads_dir */
    if (is_dir && (text[0] == '/' || strstr(text, "..") != NULL))
      return tb__fail(TB_ERR_JSON, "--payload: %s: %s '%s' must be a path inside data_dir",
                      jobs[j].job, key, text);
  }
  return TB_OK;
}

tb_status tb_sched_check(const tb_config_t *cfg, const tb_catalogue_t *cat,
                         const tb_sched_task_t *t) {
  if (t->name[0] == '\0') return tb__fail(TB_ERR_INVALID, "--name: a task needs a name");
  for (const char *c = t->name; *c; c++)
    if (!(*c == '-' || *c == '_' || *c == '.' || (*c >= 'a' && *c <= 'z') ||
          (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
      return tb__fail(TB_ERR_INVALID, "--name: '%s' may use only letters, digits, '-', '_' and '.'",
                      t->name);
  tb_cron_t c;
  tb_status s = tb_cron_parse(t->pattern, &c);
  if (s != TB_OK) return refail(s, "--cron: ");
  if (tb_config_tier_index(cfg, t->tier) < 0) {
    char tiers[256] = "";
    for (int i = 0; i < cfg->n_tiers; i++)
      snprintf(tiers + strlen(tiers), sizeof(tiers) - strlen(tiers), "%s%s", i ? ", " : "",
               cfg->tiers[i].name);
    return tb__fail(TB_ERR_INVALID, "--priority: unknown tier '%s' (tiers: %s)", t->tier, tiers);
  }
  json_t *payload = NULL;
  s = parse_payload(t, &payload);
  if (s != TB_OK) return refail(s, "--payload: ");
  int j = job_index(t->job);
  if (j >= 0) {
    s = check_job_payload(j, payload);
  } else if (tb_config_job_type(cfg, t->job) != NULL) {
    /* A custom job type: its payload is the command's input, any JSON object. */
  } else {
    tb_publish_req_t req = {.event = t->job, .payload = payload, .tier = t->tier};
    tb_prepared_t p;
    s = tb_publish_prepare(cfg, cat, &req, &p);
    if (s == TB_OK)
      tb_prepared_free(&p);
    else if (s == TB_ERR_UNKNOWN_EVENT) {
      char names[256];
      s = tb__fail(s,
                   "--event: '%s' is neither a built-in job (%s), a job type of the config "
                   "(job_types) nor a catalogue event (tierbus events)",
                   t->job, job_names(names, sizeof(names)));
    } else
      s = refail(s, "--payload: ");
  }
  json_decref(payload);
  return s;
}

const char *tb_sched_tier(const tb_config_t *cfg, const tb_sched_task_t *t) {
  int i = tb_config_tier_index(cfg, t->tier);
  return cfg->tiers[i >= 0 ? i : cfg->n_tiers - 1].name;
}

/* How far back the latest missed slot is looked for: a task down longer than this catches up on
 * the slots of the last 400 days only, which bounds the walk of an every-minute pattern. */
#define MAX_LOOKBACK_US (400LL * 86400 * 1000000)

tb_status tb_sched_due(const tb_sched_task_t *t, const tb_cron_t *c, int64_t now_us,
                       int64_t grace_us, int64_t *slot_us, tb_sched_action *action) {
  *action = TB_SCHED_IDLE;
  int64_t from = t->last_slot_us;
  if (now_us - from > MAX_LOOKBACK_US) from = now_us - MAX_LOOKBACK_US;
  int64_t next = 0;
  tb_status s = tb_cron_next(c, from, &next);
  if (s != TB_OK || next > now_us) return s;
  int64_t latest = next;
  while (tb_cron_next(c, latest, &next) == TB_OK && next <= now_us) latest = next;
  *slot_us = latest;
  if (now_us - latest <= grace_us)
    *action = TB_SCHED_FIRE;
  else
    *action = t->catch_up_once ? TB_SCHED_CATCH_UP : TB_SCHED_SKIP;
  return TB_OK;
}

void tb_sched_msg_id(const char *task, int64_t slot_us, int attempt, char *buf, size_t cap) {
  if (attempt <= 1)
    snprintf(buf, cap, "sched:%s:%lld", task, (long long)slot_us);
  else
    snprintf(buf, cap, "sched:%s:%lld:a%d", task, (long long)slot_us, attempt);
}

/* The scheduled-task payload. Caller frees with json_decref(); NULL on out-of-memory. */
static json_t *slot_payload(const char *task, int64_t slot_us, int attempt, const char *trigger) {
  return json_pack("{s:s, s:I, s:i, s:s}", "task", task, "slot_us", (json_int_t)slot_us, "attempt",
                   attempt, "trigger", trigger);
}

tb_status tb_sched_prepare(const tb_config_t *cfg, const tb_catalogue_t *cat,
                           const tb_sched_task_t *t, int64_t slot_us, int attempt,
                           const char *trigger, tb_prepared_t *out) {
  char id[TB_SCHED_NAME_MAX + 48];
  tb_sched_msg_id(t->name, slot_us, attempt, id, sizeof(id));
  json_t *p = slot_payload(t->name, slot_us, attempt, trigger);
  if (p == NULL) return tb__fail(TB_ERR_NOMEM, "scheduled-task %s", t->name);
  tb_publish_req_t req = {.event = "scheduled-task",
                          .payload = p,
                          .tier = tb_sched_tier(cfg, t),
                          .id = id,
                          .correlation_id = t->name,
                          .source = "tierbus-scheduler",
                          .occurred_at_us = slot_us};
  tb_status s = tb_publish_prepare(cfg, cat, &req, out);
  json_decref(p);
  return s;
}

/* ------------------------------------------------------------------------------------------------
 * Running a slot
 * --------------------------------------------------------------------------------------------- */

/* A custom job type (config job_types): a tierbus.v1.Command to tb.cmd.<service>.<action>
 * through the outbox, its input the task's payload. The command id (also its Nats-Msg-Id) is
 * "sched:<task>:<slot_us>:job", so a slot run again sends no second command. No workflow waits
 * for the reply: it goes to the workflow inbox unclaimed, where cleanup-old-jobs prunes it with
 * the other unclaimed entries past older_than. */
static tb_status emit_job_command(const tb_handler_ctx_t *ctx, const tb_sched_task_t *t,
                                  const tb_job_type_t *jt, int64_t slot_us, char *result,
                                  size_t cap) {
  char id[TB_SCHED_NAME_MAX + 48], subject[128];
  snprintf(id, sizeof(id), "sched:%s:%lld:job", t->name, (long long)slot_us);
  snprintf(subject, sizeof(subject), "tb.cmd.%s.%s", jt->service, jt->action);
  Tierbus__V1__Command cmd = TIERBUS__V1__COMMAND__INIT;
  cmd.command_id = id;
  cmd.step = (char *)t->job;
  cmd.attempt = 1;
  cmd.service = (char *)jt->service;
  cmd.action = (char *)jt->action;
  cmd.reply_tier = (char *)tb_sched_tier(ctx->cfg, t);
  cmd.input_json = (char *)(t->payload[0] ? t->payload : "{}");
  cmd.correlation_id = (char *)t->name;
  uint8_t *buf = NULL;
  size_t len = 0;
  tb_status s = tb_codec_pack(&cmd.base, &buf, &len);
  if (s == TB_OK) s = tb_handler_emit(ctx, subject, id, buf, len);
  free(buf);
  if (s == TB_OK) snprintf(result, cap, "sent %s to %s (command %s)", t->job, subject, id);
  return s;
}

/* Runs the task's job, or publishes its event, inside the open transaction. */
static tb_status run_task(const tb_handler_ctx_t *ctx, const tb_sched_task_t *t, int64_t slot_us,
                          char *result, size_t cap) {
  json_t *payload = NULL;
  tb_status s = parse_payload(t, &payload);
  if (s != TB_OK) return refail(TB_ERR_INVALID, "");
  int j = job_index(t->job);
  if (j >= 0 && jobs[j].files && ctx->replay) {
    snprintf(result, cap, "not run: replayed from the log (%s acts on the live files)", t->job);
  } else if (j >= 0) {
    job_run_t r = {.ctx = ctx, .task = t, .slot_us = slot_us, .payload = payload};
    s = jobs[j].fn(&r);
    snprintf(result, cap, "%s", r.result);
  } else if (tb_config_job_type(ctx->cfg, t->job) != NULL) {
    s = emit_job_command(ctx, t, tb_config_job_type(ctx->cfg, t->job), slot_us, result, cap);
  } else {
    char id[TB_SCHED_NAME_MAX + 48];
    snprintf(id, sizeof(id), "sched:%s:%lld:event", t->name, (long long)slot_us);
    s = emit_event(ctx, t->job, tb_sched_tier(ctx->cfg, t), id, payload, 0);
    if (s == TB_OK) snprintf(result, cap, "published %s (id %s)", t->job, id);
    /* An event that no longer encodes (the catalogue changed) cannot succeed on a retry. */
    if (s == TB_ERR_JSON || s == TB_ERR_UNKNOWN_EVENT) s = refail(TB_ERR_INVALID, "");
  }
  json_decref(payload);
  return s;
}

tb_status tb_sched_execute(const tb_handler_ctx_t *ctx, const char *name, int64_t slot_us,
                           int attempt, const char *trigger, int allow_retry,
                           tb_sched_outcome_t *out) {
  memset(out, 0, sizeof(*out));
  tb_sched_task_t *t = malloc(sizeof(*t));
  if (t == NULL) return tb__fail(TB_ERR_NOMEM, "scheduled task %s", name);
  int found = 0, fresh = 0;
  tb_status s = tb_store_sched_get(ctx->store, name, t, &found);
  if (s == TB_OK && !found) {
    snprintf(out->status, sizeof(out->status), "gone");
    snprintf(out->detail, sizeof(out->detail), "no task named '%s' (removed?)", name);
    free(t);
    return TB_OK;
  }
  if (s == TB_OK) s = tb_store_sched_claim(ctx->store, name, slot_us, attempt, trigger, &fresh);
  if (s != TB_OK || !fresh) {
    if (s == TB_OK) {
      snprintf(out->status, sizeof(out->status), "duplicate");
      snprintf(out->detail, sizeof(out->detail), "slot %lld attempt %d of %s already ran",
               (long long)slot_us, attempt, name);
    }
    free(t);
    return s;
  }
  out->ran = 1;
  char result[512] = "";
  s = tb_store_step_begin(ctx->store);
  if (s != TB_OK) {
    free(t);
    return s;
  }
  tb__clear_detail();
  tb_status js = run_task(ctx, t, slot_us, result, sizeof(result));
  char error[512] = "";
  if (js != TB_OK) snprintf(error, sizeof(error), "%s: %s", tb_strerror(js), tb_errdetail());
  s = tb_store_step_end(ctx->store, js == TB_OK);
  if (s == TB_OK && js == TB_OK) {
    snprintf(out->status, sizeof(out->status), "ok");
    snprintf(out->detail, sizeof(out->detail), "%s", result);
    s = tb_store_sched_end(ctx->store, name, slot_us, "ok", result, NULL, 0);
  } else if (s == TB_OK) {
    int failures = t->failure_count + 1;
    snprintf(out->detail, sizeof(out->detail), "%s", error);
    /* Bad input and a job that does not exist yet fail the same way on every attempt. */
    if (allow_retry && attempt <= TB_SCHED_RETRIES && js != TB_ERR_INVALID &&
        js != TB_ERR_NOT_IMPLEMENTED) {
      int64_t delay_us = ctx->cfg->schedule_retry_delay_ms * 1000;
      for (int i = 1; i < attempt; i++) delay_us *= 2;
      out->retry_at_us = tb_wall_us() + delay_us;
      snprintf(out->status, sizeof(out->status), "retrying");
      tb_prepared_t p;
      s = tb_sched_prepare(ctx->cfg, ctx->cat, t, slot_us, attempt + 1, "retry", &p);
      if (s == TB_OK) {
        s = tb_handler_emit_at(ctx, p.subject, p.id, p.buf, p.len, out->retry_at_us);
        tb_prepared_free(&p);
      }
      if (s == TB_OK)
        s = tb_store_sched_end(ctx->store, name, slot_us, "retrying", NULL, error, failures);
    } else {
      snprintf(out->status, sizeof(out->status), "failed");
      s = tb_store_sched_end(ctx->store, name, slot_us, "failed", NULL, error, failures);
    }
  }
  free(t);
  return s;
}

tb_status tb_sched_handle(const tb_handler_ctx_t *ctx) {
  const Tierbus__V1__ScheduledTask *m = (const Tierbus__V1__ScheduledTask *)ctx->msg->payload;
  if (m->task == NULL || m->task[0] == '\0')
    return tb__fail(TB_ERR_INVALID, "scheduled-task: no task name");
  if (m->attempt > TB_SCHED_RETRIES + 1)
    return tb__fail(TB_ERR_INVALID, "scheduled-task %s: attempt %u is past the %d retries", m->task,
                    m->attempt, TB_SCHED_RETRIES);
  tb_sched_outcome_t out;
  return tb_sched_execute(ctx, m->task, m->slot_us, m->attempt ? (int)m->attempt : 1,
                          m->trigger && m->trigger[0] ? m->trigger : "cron", 1, &out);
}
