/* Seed 000's resource guards around command services: a circuit breaker per service (after
 * breaker_failures consecutive failures within breaker_window its commands are held, not failed,
 * for breaker_cooldown, then sent again), and the alert events tierbus raises for operators:
 * a critical-tier run that failed, a run past its tier's timeout, a breaker that opened. The
 * state is one SQLite row per service (store/escalation.h), shared by every worker. */
#ifndef TB_WORKFLOWS_BREAKER_H
#define TB_WORKFLOWS_BREAKER_H

#include <jansson.h>
#include <stdint.h>

#include "api/handler.h"

/* The alert subject: a tierbus.v1.Command for the "alerts" service (stream TB_CMD), so that it is
 * stored, replayable and consumed like any command; no reply is expected. Documented in
 * subjects/catalogue.json (commands.alerts) and the README. */
#define TB_ALERT_SUBJECT "tb.cmd.alerts.raise"

/* 1 when a command reply with status |code| (0 = no reply before the step's timeout) counts
 * against its service: 5xx, 408, 429 and no reply. Other codes show the service answering. */
int tb_wf_breaker_counts(int code);

/* *until = when |service|'s breaker stops holding commands (> |now_us|), or 0 when it is closed
 * (or breakers are off). Read-only. */
tb_status tb_wf_breaker_open_until(const tb_handler_ctx_t *ctx, const char *service, int64_t now_us,
                                   int64_t *until);

/* Counts one command of |service| held by its open breaker. */
tb_status tb_wf_breaker_held(const tb_handler_ctx_t *ctx, const char *service);

/* Records a command outcome of |service| at |now_us|: |ok| closes the breaker and clears the
 * count; a failure (|error| borrowed) counts, and the breaker_failures-th within breaker_window
 * opens it for breaker_cooldown (a failure right after a cool-down opens it again at once), and
 * raises a "circuit-open" alert; *opened (may be NULL) = 1 then. No-op when breakers are off. */
tb_status tb_wf_breaker_record(const tb_handler_ctx_t *ctx, const char *service, int ok,
                               const char *error, int64_t now_us, int *opened);

/* Raises alert |kind| ("critical-failure", "run-timeout", "circuit-open") through the outbox on
 * TB_ALERT_SUBJECT, with message id "alert:<kind>:<key>" (the stream drops a second copy of the
 * same alert), and input {kind, at_us, ...|fields|} (borrowed object). */
tb_status tb_wf_alert(const tb_handler_ctx_t *ctx, const char *kind, const char *key,
                      const json_t *fields);

#endif
