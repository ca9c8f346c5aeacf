/* Condition variables that time out on the monotonic clock, so that a step of the wall clock
 * (NTP, an operator) neither stretches nor cuts a timed wait. */
#ifndef TB_CORE_SYNC_H
#define TB_CORE_SYNC_H

#include <pthread.h>
#include <stdint.h>

/* Initializes |cv| to measure timeouts on CLOCK_MONOTONIC. Returns pthread_cond_init's result. */
int tb_cond_init(pthread_cond_t *cv);

/* Waits on |cv| (initialized with tb_cond_init, |mu| held) for at most |ms| milliseconds.
 * Returns like pthread_cond_timedwait: 0 when signalled, ETIMEDOUT otherwise (spurious wakeups
 * are the caller's to handle, as always). */
int tb_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms);

#endif
