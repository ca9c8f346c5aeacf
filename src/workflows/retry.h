/* Step retry policies (seed 003): maxAttempts, exponential / linear / constant backoff from an
 * initial delay up to a cap, and retryOn, the status codes (carried in reply events) that may be
 * retried. Pure functions: the workflow engine stores attempts and timers, this decides. */
#ifndef TB_WORKFLOWS_RETRY_H
#define TB_WORKFLOWS_RETRY_H

#include <stdint.h>

#include "tierbus.h"

typedef enum tb_backoff {
  TB_BACKOFF_CONSTANT = 0,    /* the same delay before every retry: 1s, 1s, 1s */
  TB_BACKOFF_LINEAR = 1,      /* the delay grows by the initial delay: 1s, 2s, 3s */
  TB_BACKOFF_EXPONENTIAL = 2, /* the delay doubles: 1s, 2s, 4s, 8s */
} tb_backoff;

#define TB_RETRY_ON_MAX 16

typedef struct tb_retry_policy {
  int max_attempts; /* attempts in all, the first included; 1 = never retry */
  tb_backoff backoff;
  int64_t initial_delay_ms;      /* delay before the first retry */
  int64_t max_delay_ms;          /* cap on any delay; 0 = no cap */
  int retry_on[TB_RETRY_ON_MAX]; /* status codes that may be retried; none listed = any code */
  int n_retry_on;
} tb_retry_policy_t;

/* The policy of seed 003's submit step: 5 attempts, exponential from 1 s, capped at 60 s, on
 * 429, 500, 502, 503 and 504. */
void tb_retry_policy_seed_default(tb_retry_policy_t *p);

/* Checks the fields: max_attempts 1..1000, delays >= 0, max_delay (if set) >= initial_delay,
 * status codes 100..599. TB_ERR_INVALID with a detail naming the field. */
tb_status tb_retry_policy_validate(const tb_retry_policy_t *p);

/* Delay before the retry that follows failed attempt |failed_attempt| (1 = the first attempt
 * failed). Never negative, never above max_delay_ms when that is set, and saturates instead of
 * overflowing. */
int64_t tb_retry_delay_ms(const tb_retry_policy_t *p, int failed_attempt);

typedef struct tb_retry_decision {
  int retry; /* 1: run attempt failed_attempt + 1 after delay_ms */
  int64_t delay_ms;
  const char *reason; /* static text for the step history */
} tb_retry_decision_t;

/* What to do after attempt |failed_attempt| failed with |status_code|. A code of 0 means the step
 * failed without a status (it timed out, or its reply never came): such failures are transient
 * by nature and are retried whatever retry_on lists; retry_on filters only coded failures. */
tb_retry_decision_t tb_retry_decide(const tb_retry_policy_t *p, int failed_attempt,
                                    int status_code);

/* "constant", "linear", "exponential" <-> enum. Parse fails with TB_ERR_INVALID naming the text. */
tb_status tb_backoff_parse(const char *name, tb_backoff *out);
const char *tb_backoff_name(tb_backoff b);

#endif
