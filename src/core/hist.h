/* Latency histogram with log-linear buckets (about 3% resolution from 1 us to ~1.5 h) so that
 * percentiles can be merged across threads and processes by adding counts. */
#ifndef TB_CORE_HIST_H
#define TB_CORE_HIST_H

#include <stdint.h>

#define TB_HIST_SUB 32                     /* buckets per power of two */
#define TB_HIST_BUCKETS (TB_HIST_SUB * 33) /* covers values up to 2^33 us */

typedef struct tb_hist {
  uint64_t counts[TB_HIST_BUCKETS];
  uint64_t total;
  int64_t max;
} tb_hist_t;

void tb_hist_reset(tb_hist_t *h);
void tb_hist_add(tb_hist_t *h, int64_t value_us);
void tb_hist_merge(tb_hist_t *into, const tb_hist_t *from);
/* Bucket index for a value; values < 0 count as 0, values past the range go to the last bucket. */
int tb_hist_bucket(int64_t value_us);
/* Upper bound of bucket |b| in microseconds. */
int64_t tb_hist_bucket_upper(int b);
/* Value at quantile q (0 < q <= 1): the upper bound of the bucket holding it; 0 if empty. */
int64_t tb_hist_quantile(const tb_hist_t *h, double q);

#endif
