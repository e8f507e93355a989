#include "base/clock.h"

#include <math.h>
#include <sched.h>
#include <stdlib.h>

long ip_spin_ns = 50000;
int ip_ncpus = 1;
atomic_int ip_busy_workers;

/* The latest average wait of any waiter: where a new history starts (a
 * map's fresh completions, a new pool), so it need not relearn. */
static atomic_llong recent_wait_ns;
static _Thread_local ip_wait_counts counts;

/* About a century: far enough to mean "never", small enough for time_t. */
#define MAX_WAIT_SECONDS 3.0e9

int64_t
ip_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
ip_deadline_in(ip_deadline *d, double seconds)
{
    if (isnan(seconds) || seconds < 0) {
        d->forever = 1;
        return;
    }
    if (seconds > MAX_WAIT_SECONDS) {
        seconds = MAX_WAIT_SECONDS;
    }
    d->forever = 0;
    clock_gettime(CLOCK_MONOTONIC, &d->at);
    time_t whole = (time_t)seconds;
    d->at.tv_sec += whole;
    d->at.tv_nsec += (long)((seconds - (double)whole) * 1e9);
    if (d->at.tv_nsec >= 1000000000L) {
        d->at.tv_sec++;
        d->at.tv_nsec -= 1000000000L;
    }
}

void
ip_deadline_now(ip_deadline *d)
{
    d->forever = 0;
    clock_gettime(CLOCK_MONOTONIC, &d->at);
}

int
ip_deadline_passed(const ip_deadline *d)
{
    if (d->forever) {
        return 0;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > d->at.tv_sec ||
           (now.tv_sec == d->at.tv_sec && now.tv_nsec >= d->at.tv_nsec);
}

void
ip_clock_init(void)
{
    const char *spin = getenv("INTERPOOL_SPIN_US");
    if (spin != NULL && *spin) {
        ip_spin_ns = atol(spin) * 1000;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) {
        ip_ncpus = CPU_COUNT(&set);
    }
}

ip_wait_counts *
ip_wait_counts_here(void)
{
    return &counts;
}

void
ip_history_init(ip_wait_history *h)
{
    atomic_init(&h->avg_ns, atomic_load_explicit(&recent_wait_ns, memory_order_relaxed));
}

void
ip_history_add(ip_wait_history *h, int64_t start_ns, int64_t arrived_ns)
{
    /* Capped: one long wait should not stop spinning for dozens of short
     * ones after it.  Racy updates only blur the average. */
    int64_t sample = arrived_ns > start_ns ? arrived_ns - start_ns : 0;
    int64_t cap = 4 * (int64_t)ip_spin_ns;
    if (sample > cap) {
        sample = cap;
    }
    int64_t avg = atomic_load_explicit(&h->avg_ns, memory_order_relaxed);
    avg += (sample - avg) / 4;
    atomic_store_explicit(&h->avg_ns, avg, memory_order_relaxed);
    atomic_store_explicit(&recent_wait_ns, avg, memory_order_relaxed);
}

/* (A spinning worker counts itself, and so leaves a core to its submitter.) */
int
ip_spare_core(void)
{
    return atomic_load_explicit(&ip_busy_workers, memory_order_relaxed) < ip_ncpus;
}

int
ip_spin_pays(const ip_wait_history *h)
{
    return ip_spin_ns > 0 && ip_spare_core() &&
           (h == NULL || atomic_load_explicit(&h->avg_ns, memory_order_relaxed) <= ip_spin_ns);
}

int
ip_spin_until(int (*ready)(void *), void *arg)
{
    if (ready(arg)) {
        return 1;
    }
    if (ip_spin_ns <= 0) {
        return 0;
    }
    counts.spins++;
    int64_t deadline = ip_now_ns() + ip_spin_ns;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (ready(arg)) {
                counts.spun++;
                return 1;
            }
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ __volatile__("yield");
#endif
        }
        /* A worker that woke meanwhile needs the core more than we do. */
        if (ip_now_ns() >= deadline || !ip_spare_core()) {
            return 0;
        }
    }
}

static int
flag_set(void *flag)
{
    return atomic_load_explicit((atomic_int *)flag, memory_order_acquire) != 0;
}

int
ip_spin_while_zero(atomic_int *flag)
{
    return ip_spin_until(flag_set, flag);
}
