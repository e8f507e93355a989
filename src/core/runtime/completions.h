/* Completions: where finished tasks wait for the interpreter that
 * submitted them.
 *
 * A worker (any interpreter) pushes a finished task onto the done list
 * without touching a Python object, then wakes the consumer: a thread
 * sleeping in ip_completions_wait(), or an event loop watching the
 * eventfd.  The consumer takes the whole list in one batch.
 */
#ifndef IP_RUNTIME_COMPLETIONS_H
#define IP_RUNTIME_COMPLETIONS_H

#include "base/wait.h"

/* What a done list links: embedded in what is delivered (a task), which
 * the completions know nothing else about. */
typedef struct ip_done {
    struct ip_done *next;
    int64_t key;                /* its consumer's key (a task's seq) */
    atomic_int delivered;       /* on the done list (or taken from it): a waiter
                                 * may take it now */
    int work_behind;            /* its worker had more queued work when it
                                 * finished: a held wake-up idles nobody */
} ip_done;

/* A consumer thread waiting for something particular (on its stack,
 * linked in the completions while it waits, with a condvar of its own): a
 * push wakes it only when that arrives, never for another thread's item. */
typedef struct ip_waiter {
    struct ip_waiter *next;
    int64_t key;                /* wake when the item with this key arrives (-1: none) */
    Py_ssize_t want;            /* ...or when the done list holds this many (0: never) */
    atomic_int arrived;         /* it came (mu, or spun on) */
    int sleeping;               /* on cond now: signal it (mu) */
    pthread_cond_t cond;
} ip_waiter;

typedef struct ip_completions ip_completions;
struct ip_completions {
    pthread_mutex_t mu;
    atomic_int refcnt;
    atomic_int ready;          /* done list non-empty (spin target) */
    atomic_long outstanding;   /* expected and not yet consumed */
    ip_done *head, *tail;      /* done list, FIFO */
    void (*free_item)(ip_done *);   /* drops an item nobody will take */
    ip_waiter *waiters;        /* consumer threads in a wait */
    Py_ssize_t ndone;          /* length of the done list */
    int signalled;             /* efd written since the last take */
    int closed;                /* no more submissions */
    int orphaned;              /* nobody will consume: pushes free the task */
    int efd;                   /* -1 when no eventfd was asked for */
    atomic_llong last_push_ns; /* when the latest item arrived */
    ip_wait_history history;   /* how long its consumers' waits took: spin or not */
    /* Batched wake-ups of an event loop (eventfd), see ip_completions_hold. */
    atomic_long inflight;      /* expected and not yet pushed */
    atomic_llong gap_ns;       /* average time between pushes (eventfd only) */
    atomic_llong hold_until_ns;    /* the consumer looks again by then */
};

/* Most items an eventfd wake-up is held for.  Results are held only when
 * they come at least every IP_HOLD_GAP_NS; the window is the time about
 * IP_HOLD_BATCH of them take, within [IP_HOLD_MIN_NS, IP_HOLD_MAX_NS]: a
 * loop's wake-up under load costs it tens of µs (the epoll round, asyncio's
 * own iteration, cold caches), so ~32 results share one, and no result
 * waits longer than 4 ms. */
#define IP_HOLD_MAX 64
#define IP_HOLD_BATCH 32
#define IP_HOLD_GAP_NS 500000
#define IP_HOLD_MIN_NS 1000000
#define IP_HOLD_MAX_NS 4000000

/* refcnt 1; NULL with errno set (ENOMEM, or eventfd's error).  `free_item`
 * drops an item pushed after the consumer left. */
ip_completions *ip_completions_new(int want_efd, void (*free_item)(ip_done *));
void ip_completions_incref(ip_completions *c);
void ip_completions_decref(ip_completions *c);

/* The submitter announces n more tasks (negative: withdrawn). */
void ip_completions_expect(ip_completions *c, Py_ssize_t n);
/* Hand a finished item over (with the reference it stands for).  Any
 * thread, any interpreter; makes no Python call. */
void ip_completions_push(ip_completions *c, ip_done *item);
/* Take the whole done list (FIFO, linked by ->next); consumer side. */
ip_done *ip_completions_take_all(ip_completions *c);
/* The consumer is done with n taken items. */
void ip_completions_consumed(ip_completions *c, Py_ssize_t n);
/* Nobody will consume any more: free what arrived, and make later pushes
 * free their task at once.  Also closes. */
void ip_completions_orphan(ip_completions *c);
/* An event loop consumer (eventfd) has resolved a batch and will look
 * again when the window returned ends, whatever happens (a timer).  If
 * results arrive at least every IP_HOLD_GAP_NS and no core is spare (its
 * every wake-up takes a core from a worker), pushes until then do not
 * write the eventfd (up to IP_HOLD_MAX results, while more are in flight
 * and their workers have work queued): the loop wakes once per batch, not
 * per result.  Returns the window (ns) to look again in, or 0: every push
 * wakes it. */
int64_t ip_completions_hold(ip_completions *c);
/* No more submissions: wakes every waiter. */
void ip_completions_close(ip_completions *c);
/* Wake every waiter to re-check its condition (a task of these completions
 * was dropped from the queue: a wait for it ends). */
int ip_completions_closed(ip_completions *c);

/* Sleep until a task has finished (batch > 1: that many, or all that are
 * outstanding; key >= 0: or the item with that key), the completions are
 * closed with nothing outstanding, or the deadline passes.  Call without a
 * thread state attached.  Returns IP_OK when something finished,
 * IP_ERR_TIMEOUT, or IP_ERR_INTERRUPTED.  A consumer that needs results in
 * order waits for the key it needs next with a large batch: it wakes as
 * soon as that one is there, never later, and not for every other one. */
int ip_completions_wait(ip_completions *c, Py_ssize_t batch, int64_t key,
                        const ip_deadline *deadline, const ip_interrupt *intr);
/* Sleep until done(arg) (checked after the push of the item with `key`,
 * and spun on first: it must read only atomics), or the deadline passes.
 * Call without a thread state attached.  IP_OK, IP_ERR_TIMEOUT or
 * IP_ERR_INTERRUPTED. */
int ip_completions_wait_until(ip_completions *c, int (*done)(void *), void *arg, int64_t key,
                              const ip_deadline *deadline, const ip_interrupt *intr);
/* The item with `key` will never be pushed (it was dropped): wake a
 * thread waiting for it. */
void ip_completions_forget(ip_completions *c, int64_t key);

#endif
