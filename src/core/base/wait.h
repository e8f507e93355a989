/* The one blocking wait of the core.
 *
 * Every thread that blocks on a condition (a caller waiting for results, a
 * worker waiting for tasks, a queue waiting for items, exit waiting for
 * workers) goes through ip_wait, so how waits end (deadlines, interrupts)
 * is decided here and nowhere else.
 */
#ifndef IP_BASE_WAIT_H
#define IP_BASE_WAIT_H

#include "base/clock.h"

/* Asked at least every `slice_ns` while a wait sleeps (mu NOT held): a
 * negative return ends the wait with IP_ERR_INTERRUPTED.  The module layer
 * supplies one that runs pending signal handlers. */
typedef struct ip_interrupt {
    int (*check)(void *arg);
    void *arg;
    int64_t slice_ns;
} ip_interrupt;

/* Wait on `cond` until ready(arg) is true, the deadline passes, or the
 * interrupt check fails.  `mu` is held on entry and on return, and
 * ready() is called with it held.  Returns IP_OK (ready), IP_ERR_TIMEOUT
 * or IP_ERR_INTERRUPTED.  `intr` may be NULL (no interruption). */
int ip_wait(pthread_mutex_t *mu, pthread_cond_t *cond, int (*ready)(void *), void *arg,
            const ip_deadline *deadline, const ip_interrupt *intr);

/* Benchmarks: the CPU (ns) one sleep and wake-up through ip_wait costs the
 * sleeper, averaged over n wake-ups, while `busy` threads spin in periods
 * of `period_ns` (the first signals after each); -1 if no thread started. */
int64_t ip_wake_cost_ns(int n, int busy, int64_t period_ns);

#endif
