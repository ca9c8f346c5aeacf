/* Fuzzes the config loader (libyaml events into the option tables, durations, sizes, tiers,
 * presets) and the validation after it. A bad file must be refused with a status naming the
 * problem, never crash or leak. The loader reads a path, so each input goes through a file of
 * this process's own. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (path[0] == '\0') snprintf(path, sizeof(path), "/tmp/tb-fuzz-config-%d.yaml", (int)getpid());
  FILE *f = fopen(path, "wb");
  if (f == NULL) abort();
  if (size > 0 && fwrite(data, 1, size, f) != size) abort();
  fclose(f);
  tb_config_t cfg;
  tb_config_init(&cfg);
  if (tb_config_load_file(&cfg, path) == TB_OK) tb_config_validate(&cfg);
  return 0;
}
