/* Log-linear histogram: values below TB_HIST_SUB map 1:1; above, each power of two is split into
 * TB_HIST_SUB equal buckets. */
#include "core/hist.h"

#include <string.h>

void tb_hist_reset(tb_hist_t *h) {
  memset(h, 0, sizeof(*h));
}

int tb_hist_bucket(int64_t v) {
  if (v < TB_HIST_SUB) return v < 0 ? 0 : (int)v;
  int msb = 63 - __builtin_clzll((unsigned long long)v); /* >= 5 */
  int shift = msb - 5;                                   /* log2(TB_HIST_SUB) == 5 */
  int b = (shift + 1) * TB_HIST_SUB + (int)((v >> shift) - TB_HIST_SUB);
  return b >= TB_HIST_BUCKETS ? TB_HIST_BUCKETS - 1 : b;
}

int64_t tb_hist_bucket_upper(int b) {
  if (b < TB_HIST_SUB) return b;
  int shift = b / TB_HIST_SUB - 1;
  int64_t sub = b % TB_HIST_SUB + TB_HIST_SUB;
  return ((sub + 1) << shift) - 1;
}

void tb_hist_add(tb_hist_t *h, int64_t v) {
  h->counts[tb_hist_bucket(v)]++;
  h->total++;
  if (v > h->max) h->max = v;
}

void tb_hist_merge(tb_hist_t *into, const tb_hist_t *from) {
  for (int i = 0; i < TB_HIST_BUCKETS; i++) into->counts[i] += from->counts[i];
  into->total += from->total;
  if (from->max > into->max) into->max = from->max;
}

int64_t tb_hist_quantile(const tb_hist_t *h, double q) {
  if (h->total == 0) return 0;
  uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999);
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < TB_HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      int64_t up = tb_hist_bucket_upper(i);
      return up > h->max ? h->max : up;
    }
  }
  return h->max;
}
