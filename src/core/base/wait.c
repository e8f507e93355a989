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

/* ------------------------------------------------------- the wake-up floor */

/* A benchmark probe (_core._wake_cost): what one sleep and wake-up through
 * ip_wait costs the thread that sleeps, in CPU, on this machine, with no
 * interpool (and no Python) around it.  `busy` threads each spin for
 * `period_ns` at a time, as workers running tasks do; the first signals
 * the sleeper after each period.  A thread that waits for results once per
 * task pays at least this much per task: on a VM it is several µs. */
typedef struct wake_probe {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int64_t posted, seen;
    int64_t period_ns;
    atomic_int stop;
} wake_probe;

typedef struct probe_thread {
    wake_probe *p;
    int signals;
} probe_thread;

static void *
probe_busy(void *arg)
{
    probe_thread *me = arg;
    wake_probe *p = me->p;
    while (!atomic_load(&p->stop)) {
        int64_t end = ip_now_ns() + p->period_ns;
        while (ip_now_ns() < end && !atomic_load(&p->stop)) {
        }
        if (me->signals) {
            /* Signalled after unlocking: a sleeper woken while the signaller
             * still held the mutex would block on it (a second switch). */
            pthread_mutex_lock(&p->mu);
            p->posted++;
            pthread_mutex_unlock(&p->mu);
            pthread_cond_signal(&p->cond);
        }
    }
    return NULL;
}

static int
probe_posted(void *arg)
{
    wake_probe *p = arg;
    return p->posted != p->seen;
}

int64_t
ip_wake_cost_ns(int n, int busy, int64_t period_ns)
{
    enum { MAX_BUSY = 64 };
    wake_probe p = {.period_ns = period_ns};
    pthread_t threads[MAX_BUSY];
    probe_thread roles[MAX_BUSY];
    int started = 0;
    busy = busy < 1 ? 1 : busy > MAX_BUSY ? MAX_BUSY : busy;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cond, NULL);
    atomic_init(&p.stop, 0);
    for (; started < busy; started++) {
        roles[started] = (probe_thread){.p = &p, .signals = started == 0};
        if (pthread_create(&threads[started], NULL, probe_busy, &roles[started]) != 0) {
            break;
        }
    }
    int64_t cpu = -1;
    if (started > 0) {
        ip_deadline forever = {.forever = 1};
        struct timespec t0, t1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        pthread_mutex_lock(&p.mu);
        for (int i = 0; i < n; i++) {
            (void)ip_wait(&p.mu, &p.cond, probe_posted, &p, &forever, NULL);
            p.seen = p.posted;
        }
        pthread_mutex_unlock(&p.mu);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
        cpu = ((int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)) /
              (n > 0 ? n : 1);
    }
    atomic_store(&p.stop, 1);
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.mu);
    return cpu;
}
