/* The stuck-run sweeper thread (seed 000): runs tb_wf_sweep and tb_wf_sweep_deadlines on its own
 * SQLite connection every escalation_sweep interval, so that a run stuck behind a backlog or
 * waiting too long is raised to the tier its rules name, and a run past its tier's timeout is
 * escalated or failed, whichever worker process finds it first. */
#include <stdlib.h>

#include "core/bgthread.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "workflows/escalation.h"

struct tb_sweeper {
  tb_store_t *store; /* owned: this thread's connection */
  const tb_config_t *cfg;
  const tb_catalogue_t *cat;
  tb_bgthread_t *thread; /* owned */
};

/* One sweep. A busy database or a failed pass is tried again next interval: nothing is lost. */
static int64_t sweep_tick(void *arg, int stopping) {
  tb_sweeper_t *sw = arg;
  int n = 0;
  tb_status s = tb_wf_sweep(sw->store, sw->cfg, sw->cat, tb_wall_us(), &n);
  if (s != TB_OK)
    TB_LOG(TB_LOG_WARN, "sweeper", "stuck-run sweep failed: %s", tb_errdetail());
  else if (n > 0)
    TB_LOG(TB_LOG_INFO, "sweeper", "escalated %d stuck workflow run%s", n, n == 1 ? "" : "s");
  /* Seed 000: a run's tier timeout bounds the whole run (config run_timeout). */
  int esc = 0, failed = 0;
  s = tb_wf_sweep_deadlines(sw->store, sw->cfg, sw->cat, tb_wall_us(), &esc, &failed);
  if (s != TB_OK)
    TB_LOG(TB_LOG_WARN, "sweeper", "run-timeout sweep failed: %s", tb_errdetail());
  else if (esc + failed > 0)
    TB_LOG(TB_LOG_INFO, "sweeper", "runs past their tier's timeout: %d escalated, %d failed", esc,
           failed);
  return TB_BGTHREAD_PERIODIC;
}

tb_status tb_sweeper_start(tb_sweeper_t **out, const char *db_path, const tb_config_t *cfg,
                           const tb_catalogue_t *cat, int64_t interval_ms) {
  if (interval_ms <= 0)
    return tb__fail(TB_ERR_INVALID, "sweeper: interval %lld ms", (long long)interval_ms);
  tb_sweeper_t *sw = calloc(1, sizeof(*sw));
  if (sw == NULL) return tb__fail(TB_ERR_NOMEM, "sweeper");
  sw->cfg = cfg;
  sw->cat = cat;
  tb_status s = tb_store_open(&sw->store, db_path);
  if (s == TB_OK)
    s = tb_bgthread_start(&sw->thread, &(tb_bgthread_opts_t){.name = "sweeper",
                                                             .tick = sweep_tick,
                                                             .arg = sw,
                                                             .interval_ms = interval_ms});
  if (s != TB_OK) {
    tb_store_close(sw->store);
    free(sw);
    return s;
  }
  *out = sw;
  return TB_OK;
}

void tb_sweeper_stop(tb_sweeper_t *sw) {
  if (sw == NULL) return;
  tb_bgthread_stop(sw->thread);
  tb_store_close(sw->store);
  free(sw);
}
