#include "base/clock.h"

#include <math.h>
#include <stdlib.h>

long ip_spin_ns = 50000;

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
    int64_t deadline = ip_now_ns() + ip_spin_ns;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (ready(arg)) {
                return 1;
            }
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ __volatile__("yield");
#endif
        }
        if (ip_now_ns() >= deadline) {
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
