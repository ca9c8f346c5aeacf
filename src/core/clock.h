/* Time helpers: wall-clock microseconds for timestamps that cross processes (envelope
 * occurred_at, latencies) and monotonic microseconds for local deadlines. */
#ifndef TB_CORE_CLOCK_H
#define TB_CORE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "tierbus.h"

int64_t tb_wall_us(void);
int64_t tb_mono_us(void);

/* Sleeps |us| microseconds (no-op when <= 0). */
void tb_sleep_us(int64_t us);

/* Parses a duration such as "24h", "30m", "60s", "250ms" or "1500" (milliseconds) into
 * milliseconds. Returns TB_ERR_INVALID, with a detail naming the text, for anything else,
 * including negative values and overflow. */
tb_status tb_duration_parse_ms(const char *text, int64_t *out_ms);

/* Parses a point in time: RFC 3339 ("2026-01-02T03:04:05Z", fractional seconds and offsets
 * allowed) or a duration before |now_us| ("90s", "2h", "3d"), into wall-clock microseconds.
 * TB_ERR_INVALID with a detail naming what is wrong. (replay --since/--until, dlq --since, the
 * HTTP API's since=.) */
tb_status tb_time_parse_us(const char *text, int64_t now_us, int64_t *out_us);

/* Wall-clock microseconds as "2025-11-23T15:00:01.123Z" ("-" for 0 or less). */
void tb_time_format(int64_t us, char *buf, size_t cap);

#endif
