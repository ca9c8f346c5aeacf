/* Cron patterns for the scheduler: the five standard fields (minute hour day-of-month month
 * day-of-week), each a comma list of `*`, `a`, `a-b`, optionally stepped with `/n` (`*` + `/5` is
 * every fifth), plus seed 001's named SCHEDULES constants, and the next fire time in UTC. */
#ifndef TB_SCHED_CRON_H
#define TB_SCHED_CRON_H

#include <stddef.h>
#include <stdint.h>

#include "tierbus.h"

/* A parsed pattern: one bit per allowed value of each field. */
typedef struct tb_cron {
  uint64_t minute; /* bits 0..59 */
  uint32_t hour;   /* bits 0..23 */
  uint32_t dom;    /* bits 1..31 */
  uint16_t month;  /* bits 1..12 */
  uint8_t dow;     /* bits 0..6, Sunday = 0 (7 is accepted as Sunday) */
  /* Whether day-of-month / day-of-week were written with a leading '*'. As in Vixie cron, when
   * both are restricted a day matches if either matches; otherwise both must. */
  int dom_star, dow_star;
} tb_cron_t;

/* The pattern behind a seed 001 SCHEDULES name ("EVERY_HOUR" -> "0 * * * *"), or NULL. Static. */
const char *tb_cron_constant(const char *name);

/* Calls |fn| with each SCHEDULES name and its pattern, in the seed's order. */
void tb_cron_constants(void (*fn)(void *arg, const char *name, const char *pattern), void *arg);

/* Parses |text|: a SCHEDULES name or a 5-field pattern. TB_ERR_INVALID with a detail naming the
 * field and the value ("cron '61 * * * *': minute: value '61' is outside 0-59"), including for a
 * pattern that can never fire ("0 0 31 2 *"). |out| is written only on success. */
tb_status tb_cron_parse(const char *text, tb_cron_t *out);

/* *next_us = the first minute strictly after |after_us| (unix microseconds, UTC) that the pattern
 * matches. TB_ERR_NOT_FOUND when none falls within the next five years (a pattern accepted by
 * tb_cron_parse always has one). */
tb_status tb_cron_next(const tb_cron_t *c, int64_t after_us, int64_t *next_us);

/* Formats |us| (unix microseconds) as "2026-11-23T12:00:00Z" into |buf|. */
void tb_cron_format_utc(int64_t us, char *buf, size_t cap);

#endif
