/* Time helpers: wall-clock microseconds for timestamps that cross processes (envelope
 * occurred_at, latencies) and monotonic microseconds for local deadlines. */
#ifndef TB_CORE_CLOCK_H
#define TB_CORE_CLOCK_H

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

#endif
