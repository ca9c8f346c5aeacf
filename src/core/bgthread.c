/* The background-thread loop: waits on the monotonic clock between ticks, ends a wait early on a
 * kick or a stop, and joins on stop. */
#include "core/bgthread.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/status.h"
#include "core/sync.h"

struct tb_bgthread {
  tb_bgthread_opts_t o; /* name is not kept: it is borrowed only for the start */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC */
  int kicked;        /* under mu */
  int stop;          /* under mu */
};

/* Waits (mu held) until |wait_ms| has passed on the monotonic clock, or a kick or a stop comes.
 * A spurious wakeup waits again, so that a periodic thread never ticks before its time. */
static void wait_for(tb_bgthread_t *t, int64_t wait_ms) {
  if (wait_ms <= 0) return;
  int64_t deadline = tb_mono_us() + wait_ms * 1000;
  while (!t->stop && !t->kicked) {
    int64_t left_us = deadline - tb_mono_us();
    if (left_us <= 0) return;
    tb_cond_wait_ms(&t->cv, &t->mu, (left_us + 999) / 1000);
  }
}

static void *bgthread_main(void *arg) {
  tb_bgthread_t *t = arg;
  if (t->o.nice != 0 && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), t->o.nice) != 0) {
    /* best effort: the thread runs at the process's priority */
  }
  int64_t wait_ms = t->o.delay_first ? t->o.interval_ms : 0;
  pthread_mutex_lock(&t->mu);
  for (;;) {
    wait_for(t, wait_ms);
    if (t->stop && !t->o.drain) break;
    t->kicked = 0; /* this tick serves every kick so far */
    int stopping = t->stop;
    pthread_mutex_unlock(&t->mu);
    int64_t next = t->o.tick(t->o.arg, stopping);
    pthread_mutex_lock(&t->mu);
    if (next == TB_BGTHREAD_EXIT) break;
    wait_ms = next < 0 ? t->o.interval_ms : next; /* TB_BGTHREAD_PERIODIC */
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

tb_status tb_bgthread_start(tb_bgthread_t **out, const tb_bgthread_opts_t *opts) {
  const char *name = opts != NULL && opts->name != NULL ? opts->name : "background thread";
  if (out == NULL || opts == NULL || opts->tick == NULL)
    return tb__fail(TB_ERR_INVALID, "%s: no tick function", name);
  if (opts->interval_ms <= 0)
    return tb__fail(TB_ERR_INVALID, "%s: interval %lld ms must be > 0", name,
                    (long long)opts->interval_ms);
  tb_bgthread_t *t = calloc(1, sizeof(*t));
  if (t == NULL) return tb__fail(TB_ERR_NOMEM, "%s: thread state", name);
  t->o = *opts;
  t->o.name = NULL;
  int rc = pthread_mutex_init(&t->mu, NULL);
  if (rc != 0) {
    free(t);
    return tb__fail(TB_ERR_NOMEM, "%s: pthread_mutex_init: %s", name, strerror(rc));
  }
  rc = tb_cond_init(&t->cv);
  if (rc != 0) {
    pthread_mutex_destroy(&t->mu);
    free(t);
    return tb__fail(TB_ERR_NOMEM, "%s: pthread_cond_init: %s", name, strerror(rc));
  }
  rc = pthread_create(&t->thread, NULL, bgthread_main, t);
  if (rc != 0) {
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
    return tb__fail(TB_ERR_NOMEM, "%s: cannot start its thread: pthread_create: %s", name,
                    strerror(rc));
  }
  *out = t;
  return TB_OK;
}

void tb_bgthread_kick(tb_bgthread_t *t) {
  if (t == NULL) return;
  pthread_mutex_lock(&t->mu);
  t->kicked = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

void tb_bgthread_stop(tb_bgthread_t *t) {
  if (t == NULL) return;
  pthread_mutex_lock(&t->mu);
  t->stop = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  pthread_join(t->thread, NULL);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t);
}
