/* What the publish-side harnesses share: the compiled-in catalogue and the shipped config (its
 * tiers are what requests name), loaded once per process. Aborts when they cannot be loaded: the
 * harness would fuzz nothing. */
#ifndef TB_FUZZ_ENV_H
#define TB_FUZZ_ENV_H

#include <stdlib.h>

#include "codec/catalogue.h"
#include "config/config.h"

static inline void fuzz_env(tb_catalogue_t **cat, tb_config_t *cfg) {
  if (*cat != NULL) return;
  if (tb_catalogue_load(cat) != TB_OK) abort();
  tb_config_init(cfg);
  if (tb_config_load_file(cfg, TB_SOURCE_DIR "/config/tierbus.yaml") != TB_OK) abort();
  const char *domains[TB_MAX_DOMAINS];
  int n = tb_catalogue_domains(*cat, domains, TB_MAX_DOMAINS);
  if (tb_config_set_domains(cfg, domains, n) != TB_OK) abort();
}

#endif
