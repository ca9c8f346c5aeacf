/* Status text tables and the per-thread failure detail. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char detail[1024];

const char *tb_strerror(tb_status s) {
  switch (s) {
#define XX(name, text)                                                                             \
  case TB_##name:                                                                                  \
    return text;
    TB_STATUS_MAP(XX)
#undef XX
  default:
    return "unknown status";
  }
}

const char *tb_err_name(tb_status s) {
  switch (s) {
#define XX(name, text)                                                                             \
  case TB_##name:                                                                                  \
    return #name;
    TB_STATUS_MAP(XX)
#undef XX
  default:
    return "UNKNOWN";
  }
}

const char *tb_errdetail(void) {
  return detail;
}

void tb__clear_detail(void) {
  detail[0] = '\0';
}

tb_status tb__fail(tb_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  return s;
}
