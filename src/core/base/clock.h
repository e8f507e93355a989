/* Clocks, deadlines and spinning. */
#ifndef IP_BASE_CLOCK_H
#define IP_BASE_CLOCK_H

#include "base/base.h"

/* Monotonic clock in nanoseconds. */
int64_t ip_now_ns(void);

/* A point on CLOCK_MONOTONIC (the clock of every condvar here), or never. */
typedef struct ip_deadline {
    int forever;
    struct timespec at;
} ip_deadline;

/* The deadline `seconds` from now.  Negative or NaN: never.  Values too
 * large for the clock (inf, 1e19) are clamped to about a century, so a
 * timed wait never spins on EINVAL. */
void ip_deadline_in(ip_deadline *d, double seconds);
/* A deadline that has already passed (a poll). */
void ip_deadline_now(ip_deadline *d);
int ip_deadline_passed(const ip_deadline *d);

/* How long a thread about to sleep first spins on an atomic (nanoseconds).
 * Short: on a small machine a spinning thread steals the core it waits
 * for.  INTERPOOL_SPIN_US overrides it (read once, by ip_clock_init). */
extern long ip_spin_ns;
void ip_clock_init(void);

/* Spin (no lock, no thread state needed) until *flag != 0 or ip_spin_ns
 * pass.  Return 1 if the flag was seen set. */
int ip_spin_while_zero(atomic_int *flag);
/* The same until ready(arg) (which must read only atomics). */
int ip_spin_until(int (*ready)(void *), void *arg);

#endif
