/* The scheduler thread: one pass a second over the enabled tasks, publishing each due slot with
 * the publish path every other event takes (tb_publish_prepare, tb_publish_send). */
#include "sched/scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "api/publish.h"
#include "bus/lease.h"
#include "core/bgthread.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "sched/sched.h"
#include "store/sched.h"

/* Pass interval, aligned to the wall clock's seconds. */
#define TICK_MS 1000

struct tb_scheduler {
  const tb_config_t *cfg;    /* borrowed */
  const tb_catalogue_t *cat; /* borrowed */
  tb_bus_t *bus;             /* borrowed */
  tb_store_t *store;         /* owned: this scheduler's connection */
  tb_bgthread_t *thread;     /* owned; NULL until tb_scheduler_start */
  tb_lease_t *lease;         /* owned: the "scheduler" lease; NULL until the first step */
  int failing; /* the last pass could not publish: log the outage once, not every second */
  int leading; /* the lease was held at the last step: log changes of leader, not every pass */
};

tb_status tb_scheduler_create(tb_scheduler_t **out, const tb_config_t *cfg,
                              const tb_catalogue_t *cat, const char *db_path, tb_bus_t *bus) {
  tb_scheduler_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return tb__fail(TB_ERR_NOMEM, "scheduler");
  s->cfg = cfg;
  s->cat = cat;
  s->bus = bus;
  tb_status st = tb_store_open(&s->store, db_path);
  if (st != TB_OK) {
    free(s);
    return st;
  }
  *out = s;
  return TB_OK;
}

/* The enabled tasks, copied out so that no read statement stays open while publishing. */
typedef struct task_list {
  tb_sched_task_t *items;
  int n, cap;
  int oom;
} task_list_t;

static int collect(void *arg, const tb_sched_task_t *t) {
  task_list_t *l = arg;
  if (!t->enabled) return 0;
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 8;
    tb_sched_task_t *grown = realloc(l->items, (size_t)cap * sizeof(*grown));
    if (grown == NULL) {
      l->oom = 1;
      return 1;
    }
    l->items = grown;
    l->cap = cap;
  }
  l->items[l->n++] = *t;
  return 0;
}

/* Publishes the slot; TB_OK when the stream has it (a duplicate included). */
static tb_status publish_slot(tb_scheduler_t *s, const tb_sched_task_t *t, int64_t slot_us,
                              const char *trigger, int *duplicate) {
  tb_prepared_t p;
  tb_status st = tb_sched_prepare(s->cfg, s->cat, t, slot_us, 1, trigger, &p);
  if (st != TB_OK) return st;
  st = tb_publish_send(s->bus, &p, NULL, duplicate);
  tb_prepared_free(&p);
  return st;
}

tb_status tb_scheduler_tick(tb_scheduler_t *s, int64_t now_us, int *fired) {
  task_list_t l = {0};
  int n_fired = 0, n_failed = 0;
  tb_status st = tb_store_sched_list(s->store, collect, &l);
  if (st == TB_OK && l.oom) st = tb__fail(TB_ERR_NOMEM, "scheduler: task list");
  for (int i = 0; st == TB_OK && i < l.n; i++) {
    const tb_sched_task_t *t = &l.items[i];
    tb_cron_t c;
    if (tb_cron_parse(t->pattern, &c) != TB_OK) {
      /* Only a hand-edited row can get here: add checks the pattern. */
      TB_LOG(TB_LOG_WARN, "scheduler", "task %s: %s", t->name, tb_errdetail());
      continue;
    }
    int64_t slot = 0;
    tb_sched_action a;
    st = tb_sched_due(t, &c, now_us, s->cfg->scheduler_grace_ms * 1000, &slot, &a);
    if (st != TB_OK || a == TB_SCHED_IDLE) continue;
    char when[32];
    tb_cron_format_utc(slot, when, sizeof(when));
    if (a == TB_SCHED_SKIP) {
      TB_LOG(TB_LOG_INFO, "scheduler", "task %s: missed slot %s skipped (catch-up: skip)", t->name,
             when);
      st = tb_store_sched_advance(s->store, t->name, slot, NULL);
      continue;
    }
    int dup = 0;
    tb_status ps = publish_slot(s, t, slot, a == TB_SCHED_CATCH_UP ? "catch-up" : "cron", &dup);
    if (ps != TB_OK) {
      if (!s->failing)
        TB_LOG(TB_LOG_WARN, "scheduler", "task %s: slot %s not published, retrying every pass: %s",
               t->name, when, tb_errdetail());
      n_failed++;
      continue;
    }
    n_fired++;
    TB_LOG(TB_LOG_INFO, "scheduler", "task %s: slot %s %s on %s%s", t->name, when,
           a == TB_SCHED_CATCH_UP ? "caught up" : "fired", tb_sched_tier(s->cfg, t),
           dup ? " (already published by another scheduler)" : "");
    st = tb_store_sched_advance(s->store, t->name, slot, NULL);
  }
  free(l.items);
  if (s->failing && n_failed == 0 && st == TB_OK)
    TB_LOG(TB_LOG_INFO, "scheduler", "publishing again");
  if (st == TB_OK) s->failing = n_failed > 0;
  if (fired != NULL) *fired = n_fired;
  return st;
}

/* This process's name as a lease holder: host, pid and a random part, so that a restarted
 * process with a reused pid is not taken for the one before it. */
static void holder_name(char *buf, size_t cap) {
  char host[64] = "host";
  uint32_t r = 0;
  gethostname(host, sizeof(host) - 1);
  host[sizeof(host) - 1] = '\0';
  if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) r = (uint32_t)tb_mono_us();
  snprintf(buf, cap, "%.60s/%ld/%08x", host, (long)getpid(), r);
}

tb_status tb_scheduler_step(tb_scheduler_t *s, int64_t now_us, int *fired, int *leading) {
  if (fired != NULL) *fired = 0;
  tb_status st = TB_OK;
  if (s->lease == NULL) {
    char holder[128];
    holder_name(holder, sizeof(holder));
    st = tb_lease_open(&s->lease, s->bus, s->cfg, "scheduler", holder,
                       s->cfg->scheduler_lease_ttl_ms);
  }
  int held = 0;
  if (st == TB_OK) st = tb_lease_tick(s->lease, &held);
  if (held != s->leading)
    TB_LOG(TB_LOG_INFO, "scheduler",
           held ? "leading: this process fires the schedule"
                : "no longer leading: another process fires the schedule");
  s->leading = held;
  if (leading != NULL) *leading = held;
  if (st != TB_OK || !held) return st;
  return tb_scheduler_tick(s, now_us, fired);
}

/* One pass, then the wait until just after the next whole second of the wall clock: slots are
 * whole minutes, so a pass then finds a slot within milliseconds of its time instead of up to a
 * tick later. */
static int64_t scheduler_pass(void *arg, int stopping) {
  tb_scheduler_t *s = arg;
  tb_status st = tb_scheduler_step(s, tb_wall_us(), NULL, NULL);
  if (st != TB_OK) TB_LOG(TB_LOG_WARN, "scheduler", "pass failed: %s", tb_errdetail());
  return TICK_MS - tb_wall_us() / 1000 % TICK_MS + 2;
}

tb_status tb_scheduler_start(tb_scheduler_t *s) {
  if (s->thread != NULL) return tb__fail(TB_ERR_INVALID, "scheduler: already started");
  return tb_bgthread_start(&s->thread, &(tb_bgthread_opts_t){.name = "scheduler",
                                                             .tick = scheduler_pass,
                                                             .arg = s,
                                                             .interval_ms = TICK_MS});
}

void tb_scheduler_destroy(tb_scheduler_t *s) {
  if (s == NULL) return;
  tb_bgthread_stop(s->thread);
  tb_lease_close(s->lease); /* released: a successor need not wait out the ttl */
  tb_store_close(s->store);
  free(s);
}
