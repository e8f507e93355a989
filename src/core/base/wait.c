#include "base/wait.h"

#include "base/sync.h"

/* The earlier of the deadline and `slice_ns` from now. */
static void
slice_end(const ip_deadline *deadline, int64_t slice_ns, ip_deadline *out)
{
    ip_deadline_in(out, (double)slice_ns / 1e9);
    if (!deadline->forever &&
        (deadline->at.tv_sec < out->at.tv_sec ||
         (deadline->at.tv_sec == out->at.tv_sec && deadline->at.tv_nsec < out->at.tv_nsec))) {
        *out = *deadline;
    }
}

int
ip_wait(pthread_mutex_t *mu, pthread_cond_t *cond, int (*ready)(void *), void *arg,
        const ip_deadline *deadline, const ip_interrupt *intr)
{
    IP_ASSERT_LOCKED(mu);
    ip_wait_counts *counts = ip_wait_counts_here();
    for (;;) {
        if (ready(arg)) {
            return IP_OK;
        }
        if (ip_deadline_passed(deadline)) {
            return ready(arg) ? IP_OK : IP_ERR_TIMEOUT;
        }
        int rc;
        counts->sleeps++;
        if (intr != NULL && intr->check != NULL) {
            ip_deadline until;
            slice_end(deadline, intr->slice_ns, &until);
            rc = pthread_cond_timedwait(cond, mu, &until.at);
            if (rc == ETIMEDOUT && !ready(arg)) {
                pthread_mutex_unlock(mu);
                int stop = intr->check(intr->arg);
                pthread_mutex_lock(mu);
                if (stop < 0) {
                    return IP_ERR_INTERRUPTED;
                }
            }
        }
        else if (deadline->forever) {
            (void)pthread_cond_wait(cond, mu);
        }
        else {
            (void)pthread_cond_timedwait(cond, mu, &deadline->at);
        }
    }
}
