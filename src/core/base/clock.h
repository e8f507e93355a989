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

/* ------------------------------------------------------------ spinning
 *
 * A thread about to sleep (a caller waiting for a result, a worker that
 * found the queue empty) may first spin on an atomic for up to
 * ip_spin_ns: a wake-up through the kernel costs both sides several µs and
 * a context switch.  Spinning pays only when it takes no core from anyone
 * (a spare core: fewer busy workers than the CPUs this process may use)
 * and what it waits for is expected within the spin window (learned from
 * the waits before it).  Otherwise the thread sleeps at once. */

/* The spin window (ns).  INTERPOOL_SPIN_US overrides it (0: never spin). */
extern long ip_spin_ns;
/* CPUs this process may run on (sched_getaffinity when the module loads). */
extern int ip_ncpus;
/* Worker threads on a core, every pool of the process: all but those
 * asleep waiting for a task (a worker counts itself). */
extern atomic_int ip_busy_workers;
void ip_clock_init(void);

/* How long recent waits of one waiter took until what they waited for
 * arrived: an average (ns), seeded from the process's latest waits. */
typedef struct ip_wait_history {
    atomic_llong avg_ns;
} ip_wait_history;

void ip_history_init(ip_wait_history *h);
/* One wait that began at `start_ns`; what it waited for arrived at
 * `arrived_ns` (before the start: it was already there). */
void ip_history_add(ip_wait_history *h, int64_t start_ns, int64_t arrived_ns);

/* A core nobody of ours needs: fewer busy workers than usable CPUs. */
int ip_spare_core(void);
/* Should a waiter with history `h` (NULL: none) spin before it sleeps? */
int ip_spin_pays(const ip_wait_history *h);

/* Spin (no lock, no thread state needed) until ready(arg) (which must read
 * only atomics), ip_spin_ns pass, or the spare core is gone.  Return 1 if
 * it became ready.  Counted in this thread's ip_wait_counts. */
int ip_spin_until(int (*ready)(void *), void *arg);
/* The same until *flag != 0. */
int ip_spin_while_zero(atomic_int *flag);

/* What this thread's waits did (for tests and benchmarks): spins begun,
 * spins that ended with what they waited for, and sleeps (each blocking
 * wait on a condvar: every return from one is a wake-up). */
typedef struct ip_wait_counts {
    long spins, spun, sleeps;
} ip_wait_counts;
ip_wait_counts *ip_wait_counts_here(void);

#endif
