/* File-system helpers. */
#include "core/fs.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void tb_mkdirs(const char *path, int is_dir) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof(tmp), "%s", path);
  if (!is_dir) {
    char *slash = strrchr(tmp, '/');
    if (slash == NULL) return;
    *slash = '\0';
  }
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(tmp, 0755);
    *p = '/';
  }
  if (*tmp) mkdir(tmp, 0755);
}
