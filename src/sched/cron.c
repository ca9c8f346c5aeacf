/* Cron pattern parsing and next-fire-time search (UTC). The search walks forward by the largest
 * unit that does not match (month, day, hour, minute), so a yearly pattern costs a few dozen
 * steps, not half a million minutes. */
#include "sched/cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "core/util.h"

/* Seed 001's SCHEDULES, in its order. X(name, pattern) */
#define SCHEDULES(X)                                                                               \
  X("EVERY_MINUTE", "* * * * *")                                                                   \
  X("EVERY_5_MINUTES", "*/5 * * * *")                                                              \
  X("EVERY_15_MINUTES", "*/15 * * * *")                                                            \
  X("EVERY_30_MINUTES", "*/30 * * * *")                                                            \
  X("EVERY_HOUR", "0 * * * *")                                                                     \
  X("EVERY_6_HOURS", "0 */6 * * *")                                                                \
  X("EVERY_12_HOURS", "0 */12 * * *")                                                              \
  X("DAILY_AT_MIDNIGHT", "0 0 * * *")                                                              \
  X("DAILY_AT_2AM", "0 2 * * *")                                                                   \
  X("DAILY_AT_NOON", "0 12 * * *")                                                                 \
  X("WEEKLY_SUNDAY", "0 0 * * 0")                                                                  \
  X("WEEKLY_MONDAY", "0 0 * * 1")                                                                  \
  X("MONTHLY_FIRST", "0 0 1 * *")

static const struct {
  const char *name, *pattern;
} constants[] = {
#define ROW(n, p) {n, p},
    SCHEDULES(ROW)
#undef ROW
};

#define N_CONSTANTS TB_COUNTOF(constants)

const char *tb_cron_constant(const char *name) {
  for (size_t i = 0; name != NULL && i < N_CONSTANTS; i++)
    if (strcmp(constants[i].name, name) == 0) return constants[i].pattern;
  return NULL;
}

void tb_cron_constants(void (*fn)(void *arg, const char *name, const char *pattern), void *arg) {
  for (size_t i = 0; i < N_CONSTANTS; i++) fn(arg, constants[i].name, constants[i].pattern);
}

/* The five fields: name and bounds. */
static const struct {
  const char *name;
  int lo, hi;
} fields[5] = {{"minute", 0, 59},
               {"hour", 0, 23},
               {"day-of-month", 1, 31},
               {"month", 1, 12},
               {"day-of-week", 0, 7}};

/* Parses a decimal number at *p (advancing it). -1 when there is no digit; -2 on overflow. */
static long number(const char **p) {
  if (!isdigit((unsigned char)**p)) return -1;
  long v = 0;
  while (isdigit((unsigned char)**p)) {
    v = v * 10 + (**p - '0');
    if (v > 1000) return -2;
    (*p)++;
  }
  return v;
}

/* Parses one comma-separated item of field |f| (|item| NUL-terminated) into |bits|. */
static tb_status parse_item(const char *text, int f, const char *item, uint64_t *bits) {
  const char *fname = fields[f].name;
  int lo = fields[f].lo, hi = fields[f].hi;
  const char *p = item;
  long a, b, step = 1;
  if (*p == '*') {
    a = lo;
    b = hi;
    p++;
  } else {
    a = number(&p);
    if (a < 0) return tb__fail(TB_ERR_INVALID, "cron '%s': %s: bad value '%s'", text, fname, item);
    if (a < lo || a > hi)
      return tb__fail(TB_ERR_INVALID, "cron '%s': %s: value '%ld' is outside %d-%d", text, fname, a,
                      lo, hi);
    b = a;
    if (*p == '-') {
      p++;
      b = number(&p);
      if (b < 0)
        return tb__fail(TB_ERR_INVALID, "cron '%s': %s: bad range '%s'", text, fname, item);
      if (b < lo || b > hi)
        return tb__fail(TB_ERR_INVALID, "cron '%s': %s: value '%ld' is outside %d-%d", text, fname,
                        b, lo, hi);
      if (b < a)
        return tb__fail(TB_ERR_INVALID, "cron '%s': %s: range '%s' runs backwards", text, fname,
                        item);
    }
  }
  if (*p == '/') {
    p++;
    step = number(&p);
    if (step < 1 || step > hi)
      return tb__fail(TB_ERR_INVALID, "cron '%s': %s: step in '%s' must be 1-%d", text, fname, item,
                      hi);
    /* "a/n" means a, a+n, ... up to the field's end, as in Vixie cron. */
    if (item[0] != '*' && strchr(item, '-') == NULL) b = hi;
  }
  if (*p != '\0')
    return tb__fail(TB_ERR_INVALID, "cron '%s': %s: bad value '%s'", text, fname, item);
  for (long v = a; v <= b; v += step) *bits |= (uint64_t)1 << (f == 4 && v == 7 ? 0 : v);
  return TB_OK;
}

/* Parses field |f| (|tok| NUL-terminated, may be modified) into |bits|. */
static tb_status parse_field(const char *text, int f, char *tok, uint64_t *bits) {
  *bits = 0;
  char *save = NULL;
  if (tok[0] == ',' || tok[strlen(tok) - 1] == ',' || strstr(tok, ",,") != NULL)
    return tb__fail(TB_ERR_INVALID, "cron '%s': %s: empty list item in '%s'", text, fields[f].name,
                    tok);
  for (char *item = strtok_r(tok, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
    tb_status s = parse_item(text, f, item, bits);
    if (s != TB_OK) return s;
  }
  return TB_OK;
}

tb_status tb_cron_parse(const char *text, tb_cron_t *out) {
  if (text == NULL) return tb__fail(TB_ERR_INVALID, "cron: no pattern");
  const char *named = tb_cron_constant(text);
  const char *pattern = named ? named : text;
  char buf[256];
  if (strlen(pattern) >= sizeof(buf))
    return tb__fail(TB_ERR_INVALID, "cron '%.40s...': longer than %zu characters", pattern,
                    sizeof(buf) - 1);
  snprintf(buf, sizeof(buf), "%s", pattern);
  char *tok[6] = {0};
  int n = 0;
  char *save = NULL;
  for (char *t = strtok_r(buf, " \t", &save); t != NULL && n < 6; t = strtok_r(NULL, " \t", &save))
    tok[n++] = t;
  if (n != 5) {
    int upper = text[0] != '\0';
    for (const char *c = text; *c; c++)
      if (!(isupper((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '_')) upper = 0;
    if (upper)
      return tb__fail(TB_ERR_INVALID,
                      "cron '%s': unknown schedule name (known: EVERY_MINUTE, EVERY_5_MINUTES, "
                      "EVERY_15_MINUTES, EVERY_30_MINUTES, EVERY_HOUR, EVERY_6_HOURS, "
                      "EVERY_12_HOURS, DAILY_AT_MIDNIGHT, DAILY_AT_2AM, DAILY_AT_NOON, "
                      "WEEKLY_SUNDAY, WEEKLY_MONDAY, MONTHLY_FIRST)",
                      text);
    return tb__fail(TB_ERR_INVALID,
                    "cron '%s': expected 5 fields (minute hour day-of-month month day-of-week), "
                    "got %s%d",
                    text, n > 5 ? "more than " : "", n > 5 ? 5 : n);
  }
  tb_cron_t c = {0};
  uint64_t bits[5];
  char dom_text[64];
  snprintf(dom_text, sizeof(dom_text), "%s", tok[2]); /* parse_field cuts its token up */
  for (int f = 0; f < 5; f++) {
    int star = tok[f][0] == '*';
    tb_status s = parse_field(text, f, tok[f], &bits[f]);
    if (s != TB_OK) return s;
    if (f == 2) c.dom_star = star;
    if (f == 4) c.dow_star = star;
  }
  c.minute = bits[0];
  c.hour = (uint32_t)bits[1];
  c.dom = (uint32_t)bits[2];
  c.month = (uint16_t)bits[3];
  c.dow = (uint8_t)bits[4];
  /* A day-of-month that no chosen month has (31 in February, 30 April) never fires. */
  int64_t probe;
  if (tb_cron_next(&c, 946684800LL * 1000000, &probe) != TB_OK)
    return tb__fail(TB_ERR_INVALID,
                    "cron '%s': day-of-month: '%s' never occurs in the chosen months, so the "
                    "pattern never fires",
                    text, dom_text);
  *out = c;
  return TB_OK;
}

/* Whether the day of |tm| matches (see tb_cron_t on how the two day fields combine). */
static int day_matches(const tb_cron_t *c, const struct tm *tm) {
  int dom = (c->dom >> tm->tm_mday) & 1, dow = (c->dow >> tm->tm_wday) & 1;
  if (c->dom_star || c->dow_star) return dom && dow;
  return dom || dow;
}

tb_status tb_cron_next(const tb_cron_t *c, int64_t after_us, int64_t *next_us) {
  int64_t after_s = after_us >= 0 ? after_us / 1000000 : -((-after_us + 999999) / 1000000);
  time_t t = (time_t)(after_s - (after_s % 60 + 60) % 60 + 60);
  const time_t limit = t + (time_t)5 * 366 * 86400;
  struct tm tm;
  while (t <= limit) {
    gmtime_r(&t, &tm);
    if (!((c->month >> (tm.tm_mon + 1)) & 1)) {
      tm.tm_mon++;
      tm.tm_mday = 1;
      tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    } else if (!day_matches(c, &tm)) {
      tm.tm_mday++;
      tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    } else if (!((c->hour >> tm.tm_hour) & 1)) {
      tm.tm_hour++;
      tm.tm_min = tm.tm_sec = 0;
    } else if (!((c->minute >> tm.tm_min) & 1)) {
      t += 60;
      continue;
    } else {
      *next_us = (int64_t)t * 1000000;
      return TB_OK;
    }
    t = timegm(&tm); /* normalizes the overflowed field: month 12 -> next January, ... */
  }
  return tb__fail(TB_ERR_NOT_FOUND, "cron: no matching time within five years");
}

void tb_cron_format_utc(int64_t us, char *buf, size_t cap) {
  time_t t = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
