/* Clock reads, duration and time parsing, time formatting. */
#define _XOPEN_SOURCE 700 /* strptime */
#define _DEFAULT_SOURCE   /* timegm */
#include "core/clock.h"

#include <errno.h>
#include <stdio.h>
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

tb_status tb_time_parse_us(const char *text, int64_t now_us, int64_t *out_us) {
  if (text == NULL || *text == '\0') return tb__fail(TB_ERR_INVALID, "empty time");
  int64_t ms = 0;
  if (text[0] >= '0' && text[0] <= '9' && strchr(text, '-') == NULL &&
      tb_duration_parse_ms(text, &ms) == TB_OK) {
    *out_us = now_us - ms * 1000;
    return TB_OK;
  }
  struct tm tm = {0};
  const char *p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
  if (p == NULL)
    return tb__fail(TB_ERR_INVALID,
                    "'%s' is neither RFC 3339 (2026-01-02T03:04:05Z) nor a duration before now "
                    "(90s, 2h, 3d)",
                    text);
  int64_t frac_us = 0;
  if (*p == '.') {
    int64_t scale = 100000;
    for (p++; *p >= '0' && *p <= '9'; p++) {
      frac_us += (*p - '0') * scale;
      scale /= 10;
    }
  }
  int64_t off_s = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
    int hh = 0, mm = 0;
    if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || hh > 23 || mm > 59)
      return tb__fail(TB_ERR_INVALID, "'%s': bad UTC offset", text);
    off_s = (*p == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
    p += 6;
  } else {
    return tb__fail(TB_ERR_INVALID, "'%s': RFC 3339 needs a zone (Z or +HH:MM)", text);
  }
  if (*p != '\0') return tb__fail(TB_ERR_INVALID, "'%s': unexpected '%s' at the end", text, p);
  int64_t secs = (int64_t)timegm(&tm) - off_s;
  *out_us = secs * 1000000 + frac_us;
  return TB_OK;
}

void tb_time_format(int64_t us, char *buf, size_t cap) {
  if (us <= 0) {
    snprintf(buf, cap, "-");
    return;
  }
  time_t secs = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char day[32];
  strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, cap, "%s.%03dZ", day, (int)(us % 1000000 / 1000));
}
