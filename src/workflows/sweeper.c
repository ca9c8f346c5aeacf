/* The stuck-run sweeper thread (seed 000): runs tb_wf_sweep on its own SQLite connection every
 * escalation_sweep interval, so that a run stuck behind a backlog or waiting too long is raised
 * to the tier its rules name, whichever worker process finds it first. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "core/sync.h"
#include "workflows/escalation.h"

struct tb_sweeper {
  tb_store_t *store; /* owned: this thread's connection */
  const tb_config_t *cfg;
  const tb_catalogue_t *cat;
  int64_t interval_ms;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC */
  int stop;          /* under mu */
};

static void *sweeper_main(void *arg) {
  tb_sweeper_t *sw = arg;
  pthread_mutex_lock(&sw->mu);
  while (!sw->stop) {
    pthread_mutex_unlock(&sw->mu);
    int n = 0;
    tb_status s = tb_wf_sweep(sw->store, sw->cfg, sw->cat, tb_wall_us(), &n);
    /* A busy database or a failed pass is tried again next interval: nothing is lost. */
    if (s != TB_OK)
      TB_LOG(TB_LOG_WARN, "sweeper", "stuck-run sweep failed: %s", tb_errdetail());
    else if (n > 0)
      TB_LOG(TB_LOG_INFO, "sweeper", "escalated %d stuck workflow run%s", n, n == 1 ? "" : "s");
    pthread_mutex_lock(&sw->mu);
    if (!sw->stop) tb_cond_wait_ms(&sw->cv, &sw->mu, sw->interval_ms);
  }
  pthread_mutex_unlock(&sw->mu);
  return NULL;
}

tb_status tb_sweeper_start(tb_sweeper_t **out, const char *db_path, const tb_config_t *cfg,
                           const tb_catalogue_t *cat, int64_t interval_ms) {
  if (interval_ms <= 0)
    return tb__fail(TB_ERR_INVALID, "sweeper: interval %lld ms", (long long)interval_ms);
  tb_sweeper_t *sw = calloc(1, sizeof(*sw));
  if (sw == NULL) return tb__fail(TB_ERR_NOMEM, "sweeper");
  sw->cfg = cfg;
  sw->cat = cat;
  sw->interval_ms = interval_ms;
  tb_status s = tb_store_open(&sw->store, db_path);
  if (s != TB_OK) {
    free(sw);
    return s;
  }
  pthread_mutex_init(&sw->mu, NULL);
  tb_cond_init(&sw->cv);
  int rc = pthread_create(&sw->thread, NULL, sweeper_main, sw);
  if (rc != 0) {
    pthread_cond_destroy(&sw->cv);
    pthread_mutex_destroy(&sw->mu);
    tb_store_close(sw->store);
    free(sw);
    return tb__fail(TB_ERR_IO, "sweeper: pthread_create: error %d", rc);
  }
  *out = sw;
  return TB_OK;
}

void tb_sweeper_stop(tb_sweeper_t *sw) {
  if (sw == NULL) return;
  pthread_mutex_lock(&sw->mu);
  sw->stop = 1;
  pthread_cond_signal(&sw->cv);
  pthread_mutex_unlock(&sw->mu);
  pthread_join(sw->thread, NULL);
  pthread_cond_destroy(&sw->cv);
  pthread_mutex_destroy(&sw->mu);
  tb_store_close(sw->store);
  free(sw);
}
