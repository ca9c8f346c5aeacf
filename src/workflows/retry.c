/* Retry decisions and backoff arithmetic. */
#include "workflows/retry.h"

#include <string.h>

#include "core/status.h"
#include "core/util.h"

static const char *const backoff_names[] = {"constant", "linear", "exponential"};

const char *tb_backoff_name(tb_backoff b) {
  return (unsigned)b < TB_COUNTOF(backoff_names) ? backoff_names[b] : "?";
}

tb_status tb_backoff_parse(const char *name, tb_backoff *out) {
  for (unsigned i = 0; i < TB_COUNTOF(backoff_names); i++)
    if (name != NULL && strcmp(name, backoff_names[i]) == 0) {
      *out = (tb_backoff)i;
      return TB_OK;
    }
  return tb__fail(TB_ERR_INVALID, "backoff '%s': expected constant, linear or exponential",
                  name ? name : "");
}

void tb_retry_policy_seed_default(tb_retry_policy_t *p) {
  static const int codes[] = {429, 500, 502, 503, 504};
  memset(p, 0, sizeof(*p));
  p->max_attempts = 5;
  p->backoff = TB_BACKOFF_EXPONENTIAL;
  p->initial_delay_ms = 1000;
  p->max_delay_ms = 60000;
  p->n_retry_on = TB_COUNTOF(codes);
  memcpy(p->retry_on, codes, sizeof(codes));
}

tb_status tb_retry_policy_validate(const tb_retry_policy_t *p) {
  if (p->max_attempts < 1 || p->max_attempts > 1000)
    return tb__fail(TB_ERR_INVALID, "retry maxAttempts: must be 1 to 1000 (got %d)",
                    p->max_attempts);
  if ((unsigned)p->backoff > TB_BACKOFF_EXPONENTIAL)
    return tb__fail(TB_ERR_INVALID, "retry backoff: unknown kind %d", (int)p->backoff);
  if (p->initial_delay_ms < 0)
    return tb__fail(TB_ERR_INVALID, "retry initialDelay: must not be negative (got %lld)",
                    (long long)p->initial_delay_ms);
  if (p->max_delay_ms < 0 || (p->max_delay_ms > 0 && p->max_delay_ms < p->initial_delay_ms))
    return tb__fail(TB_ERR_INVALID,
                    "retry maxDelay: must be 0 (no cap) or at least initialDelay %lld (got %lld)",
                    (long long)p->initial_delay_ms, (long long)p->max_delay_ms);
  if (p->n_retry_on < 0 || p->n_retry_on > TB_RETRY_ON_MAX)
    return tb__fail(TB_ERR_INVALID, "retry retryOn: at most %d codes (got %d)", TB_RETRY_ON_MAX,
                    p->n_retry_on);
  for (int i = 0; i < p->n_retry_on; i++)
    if (p->retry_on[i] < 100 || p->retry_on[i] > 599)
      return tb__fail(TB_ERR_INVALID, "retry retryOn[%d]: %d is not a status code (100-599)", i,
                      p->retry_on[i]);
  return TB_OK;
}

int64_t tb_retry_delay_ms(const tb_retry_policy_t *p, int failed_attempt) {
  const int64_t cap = p->max_delay_ms > 0 ? p->max_delay_ms : INT64_MAX;
  int64_t d = p->initial_delay_ms < 0 ? 0 : p->initial_delay_ms;
  int n = failed_attempt < 1 ? 1 : failed_attempt;
  switch (p->backoff) {
  case TB_BACKOFF_CONSTANT:
    break;
  case TB_BACKOFF_LINEAR:
    d = d != 0 && n > INT64_MAX / d ? INT64_MAX : d * n;
    break;
  case TB_BACKOFF_EXPONENTIAL:
    for (int i = 1; i < n && d < cap; i++) d = d > INT64_MAX / 2 ? INT64_MAX : d * 2;
    break;
  }
  return d < cap ? d : cap;
}

tb_retry_decision_t tb_retry_decide(const tb_retry_policy_t *p, int failed_attempt,
                                    int status_code) {
  tb_retry_decision_t d = {0, 0, "attempts exhausted"};
  if (failed_attempt >= p->max_attempts) return d;
  if (status_code != 0 && p->n_retry_on > 0) {
    int listed = 0;
    for (int i = 0; i < p->n_retry_on && !listed; i++) listed = p->retry_on[i] == status_code;
    if (!listed) {
      d.reason = "status not in retryOn";
      return d;
    }
  }
  d.retry = 1;
  d.delay_ms = tb_retry_delay_ms(p, failed_attempt);
  d.reason = status_code != 0 ? "status in retryOn" : "failed without a status";
  return d;
}
