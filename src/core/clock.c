/* Clock reads and duration parsing. */
#include "core/clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "core/util.h"

int64_t tb_wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t tb_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void tb_sleep_us(int64_t us) {
  if (us <= 0) return;
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

tb_status tb_duration_parse_ms(const char *text, int64_t *out_ms) {
  static const struct {
    const char *suffix;
    int64_t ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1}};
  if (text == NULL || *text < '0' || *text > '9')
    return tb__fail(TB_ERR_INVALID, "duration '%s': expected a number with a unit (ms, s, m, h, d)",
                    text ? text : "");
  errno = 0;
  char *end;
  long long v = strtoll(text, &end, 10);
  if (errno != 0) return tb__fail(TB_ERR_INVALID, "duration '%s': out of range", text);
  for (size_t i = 0; i < TB_COUNTOF(units); i++) {
    if (strcmp(end, units[i].suffix) != 0) continue;
    if (v > INT64_MAX / units[i].ms)
      return tb__fail(TB_ERR_INVALID, "duration '%s': out of range", text);
    *out_ms = v * units[i].ms;
    return TB_OK;
  }
  return tb__fail(TB_ERR_INVALID, "duration '%s': unknown unit '%s' (use ms, s, m, h or d)", text,
                  end);
}
