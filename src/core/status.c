/* Status text tables and the per-thread failure detail. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Room for a message that lists every accepted value (the config's options, the catalogue's
 * events) besides what went wrong. */
static _Thread_local char detail[2048];

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
  /* Formatted aside first: an argument may be the detail itself (a prefix added to the current
   * failure), and vsnprintf into a buffer it is reading from is undefined. */
  char text[sizeof(detail)];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  if (n < 0) n = 0; /* an encoding error: record an empty detail rather than garbage */
  size_t len = (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1;
  memcpy(detail, text, len);
  detail[len] = '\0';
  return s;
}
