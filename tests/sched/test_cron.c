/* The cron parser and next-fire search against tables of patterns and times: month and year
 * boundaries, leap days, lists, ranges, steps, the day-of-month/day-of-week rule, every SCHEDULES
 * constant of seed 001, and invalid patterns with their exact error text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "sched/cron.h"

/* "2026-11-23T10:00:30Z" as unix microseconds. */
static int64_t at(const char *iso) {
  struct tm tm = {0};
  if (sscanf(iso, "%d-%d-%dT%d:%d:%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
             &tm.tm_min, &tm.tm_sec) != 6)
    fail_msg("bad test time %s", iso);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (int64_t)timegm(&tm) * 1000000;
}

static const struct {
  const char *pattern, *after, *next;
} cases[] = {
    {"* * * * *", "2026-03-01T10:00:30Z", "2026-03-01T10:01:00Z"},
    {"* * * * *", "2026-03-01T10:00:00Z", "2026-03-01T10:01:00Z"}, /* strictly after */
    {"*/15 * * * *", "2026-03-01T10:14:59Z", "2026-03-01T10:15:00Z"},
    {"*/15 * * * *", "2026-03-01T10:45:00Z", "2026-03-01T11:00:00Z"},
    {"0 */6 * * *", "2026-12-31T18:00:00Z", "2027-01-01T00:00:00Z"},  /* year boundary */
    {"0 0 1 * *", "2026-01-31T12:00:00Z", "2026-02-01T00:00:00Z"},    /* month boundary */
    {"0 0 31 * *", "2026-04-01T00:00:00Z", "2026-05-31T00:00:00Z"},   /* April has no 31st */
    {"0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},   /* next leap day */
    {"30 9 * * 1-5", "2026-11-27T10:00:00Z", "2026-11-30T09:30:00Z"}, /* Friday -> Monday */
    {"0 0 * * 7", "2026-11-23T00:00:00Z", "2026-11-29T00:00:00Z"},    /* 7 is Sunday */
    {"0 12 1,15 * *", "2026-11-15T12:00:00Z", "2026-12-01T12:00:00Z"},
    {"5,10-20/5 * * * *", "2026-11-23T10:05:00Z", "2026-11-23T10:10:00Z"},
    {"5,10-20/5 * * * *", "2026-11-23T10:10:00Z", "2026-11-23T10:15:00Z"},
    {"5,10-20/5 * * * *", "2026-11-23T10:20:00Z", "2026-11-23T11:05:00Z"},
    {"10/20 * * * *", "2026-11-23T10:31:00Z", "2026-11-23T10:50:00Z"},
    /* Both day fields restricted: the 13th OR a Friday (Vixie cron). */
    {"0 0 13 * 5", "2026-11-23T00:00:00Z", "2026-11-27T00:00:00Z"},
    {"0 0 13 * 5", "2026-11-27T00:00:00Z", "2026-12-04T00:00:00Z"},
    /* Day-of-month restricted, day-of-week '*': the 13th only. */
    {"0 0 13 * *", "2026-11-23T00:00:00Z", "2026-12-13T00:00:00Z"},
    {"0 0 1 1 *", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"},
    {"59 23 31 12 *", "2026-12-31T23:58:59Z", "2026-12-31T23:59:00Z"},
    {"0 9-17/4 * * *", "2026-11-23T13:00:00Z", "2026-11-23T17:00:00Z"},
    {"0 9-17/4 * * *", "2026-11-23T17:00:00Z", "2026-11-24T09:00:00Z"},
    /* The SCHEDULES constants of seed 001, by name. */
    {"EVERY_MINUTE", "2026-11-23T10:00:59Z", "2026-11-23T10:01:00Z"},
    {"EVERY_5_MINUTES", "2026-11-23T10:58:00Z", "2026-11-23T11:00:00Z"},
    {"EVERY_15_MINUTES", "2026-11-23T23:50:00Z", "2026-11-24T00:00:00Z"},
    {"EVERY_30_MINUTES", "2026-11-23T10:29:59Z", "2026-11-23T10:30:00Z"},
    {"EVERY_HOUR", "2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z"},
    {"EVERY_6_HOURS", "2026-11-23T06:00:01Z", "2026-11-23T12:00:00Z"},
    {"EVERY_12_HOURS", "2026-11-23T12:00:00Z", "2026-11-24T00:00:00Z"},
    {"DAILY_AT_MIDNIGHT", "2026-02-28T00:00:00Z", "2026-03-01T00:00:00Z"},
    {"DAILY_AT_2AM", "2026-11-23T02:00:00Z", "2026-11-24T02:00:00Z"},
    {"DAILY_AT_NOON", "2026-11-23T11:59:59Z", "2026-11-23T12:00:00Z"},
    {"WEEKLY_SUNDAY", "2026-11-23T00:00:00Z", "2026-11-29T00:00:00Z"},
    {"WEEKLY_MONDAY", "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"},
    {"MONTHLY_FIRST", "2026-12-15T08:00:00Z", "2027-01-01T00:00:00Z"},
};

static void test_next_table(void **state) {
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    tb_cron_t c;
    if (tb_cron_parse(cases[i].pattern, &c) != TB_OK)
      fail_msg("%s: %s", cases[i].pattern, tb_errdetail());
    int64_t next = 0;
    assert_int_equal(tb_cron_next(&c, at(cases[i].after), &next), TB_OK);
    char got[40];
    tb_cron_format_utc(next, got, sizeof(got));
    if (strcmp(got, cases[i].next) != 0)
      fail_msg("'%s' after %s: got %s, expected %s", cases[i].pattern, cases[i].after, got,
               cases[i].next);
  }
}

static void count_constant(void *arg, const char *name, const char *pattern) {
  (*(int *)arg)++;
  assert_string_equal(tb_cron_constant(name), pattern);
}

static void test_constants(void **state) {
  int n = 0;
  tb_cron_constants(count_constant, &n);
  assert_int_equal(n, 13); /* the seed lists 13 */
  assert_string_equal(tb_cron_constant("EVERY_MINUTE"), "* * * * *");
  assert_string_equal(tb_cron_constant("EVERY_6_HOURS"), "0 */6 * * *");
  assert_string_equal(tb_cron_constant("DAILY_AT_2AM"), "0 2 * * *");
  assert_string_equal(tb_cron_constant("WEEKLY_SUNDAY"), "0 0 * * 0");
  assert_string_equal(tb_cron_constant("MONTHLY_FIRST"), "0 0 1 * *");
  assert_null(tb_cron_constant("HOURLY"));
  assert_null(tb_cron_constant("every_minute")); /* names are exact */
}

static const struct {
  const char *pattern, *error;
} invalid[] = {
    {"61 * * * *", "cron '61 * * * *': minute: value '61' is outside 0-59"},
    {"* 24 * * *", "cron '* 24 * * *': hour: value '24' is outside 0-23"},
    {"* * 0 * *", "cron '* * 0 * *': day-of-month: value '0' is outside 1-31"},
    {"* * * 13 *", "cron '* * * 13 *': month: value '13' is outside 1-12"},
    {"* * * * 8", "cron '* * * * 8': day-of-week: value '8' is outside 0-7"},
    {"0-60 * * * *", "cron '0-60 * * * *': minute: value '60' is outside 0-59"},
    {"*/0 * * * *", "cron '*/0 * * * *': minute: step in '*/0' must be 1-59"},
    {"* */25 * * *", "cron '* */25 * * *': hour: step in '*/25' must be 1-23"},
    {"5-1 * * * *", "cron '5-1 * * * *': minute: range '5-1' runs backwards"},
    {"a * * * *", "cron 'a * * * *': minute: bad value 'a'"},
    {"1-2-3 * * * *", "cron '1-2-3 * * * *': minute: bad value '1-2-3'"},
    {"1,,2 * * * *", "cron '1,,2 * * * *': minute: empty list item in '1,,2'"},
    {"* * * * MON", "cron '* * * * MON': day-of-week: bad value 'MON'"},
    {"* * * *", "cron '* * * *': expected 5 fields (minute hour day-of-month month day-of-week), "
                "got 4"},
    {"* * * * * *", "cron '* * * * * *': expected 5 fields (minute hour day-of-month month "
                    "day-of-week), got more than 5"},
    {"", "cron '': expected 5 fields (minute hour day-of-month month day-of-week), got 0"},
    {"0 0 30 2 *", "cron '0 0 30 2 *': day-of-month: '30' never occurs in the chosen months, so "
                   "the pattern never fires"},
};

static void test_invalid(void **state) {
  for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
    tb_cron_t c;
    memset(&c, 0xab, sizeof(c));
    tb_cron_t before = c;
    if (tb_cron_parse(invalid[i].pattern, &c) != TB_ERR_INVALID)
      fail_msg("'%s' was accepted", invalid[i].pattern);
    if (strcmp(tb_errdetail(), invalid[i].error) != 0)
      fail_msg("'%s': got error \"%s\", expected \"%s\"", invalid[i].pattern, tb_errdetail(),
               invalid[i].error);
    assert_memory_equal(&c, &before, sizeof(c)); /* out untouched on failure */
  }
  tb_cron_t c;
  assert_int_equal(tb_cron_parse("EVERY_DAY", &c), TB_ERR_INVALID);
  const char *d = tb_errdetail();
  assert_non_null(strstr(d, "cron 'EVERY_DAY': unknown schedule name (known: EVERY_MINUTE,"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_next_table),
      cmocka_unit_test(test_constants),
      cmocka_unit_test(test_invalid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
