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
} ip_done;

typedef struct ip_completions ip_completions;
struct ip_completions {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    atomic_int refcnt;
    atomic_int ready;          /* done list non-empty (spin target) */
    atomic_long outstanding;   /* expected and not yet consumed */
    ip_done *head, *tail;      /* done list, FIFO */
    void (*free_item)(ip_done *);   /* drops an item nobody will take */
    int waiting;               /* consumers sleeping on cond */
    Py_ssize_t ndone;          /* length of the done list */
    Py_ssize_t want;           /* wake a sleeping consumer at this many */
    int64_t want_key;          /* ...or when this key arrives (-1: none) */
    atomic_int key_arrived;
    int signalled;             /* efd written since the last take */
    int closed;                /* no more submissions */
    int orphaned;              /* nobody will consume: pushes free the task */
    int efd;                   /* -1 when no eventfd was asked for */
};

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
/* No more submissions: wakes every waiter. */
void ip_completions_close(ip_completions *c);
/* Wake every waiter to re-check its condition (a task of these completions
 * was dropped from the queue: a wait for it ends). */
void ip_completions_wake(ip_completions *c);
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
/* Sleep until done(arg) (checked after every push; it must read only
 * atomics, it is also spun on first), or the deadline passes.  Call
 * without a thread state attached.  IP_OK, IP_ERR_TIMEOUT or
 * IP_ERR_INTERRUPTED. */
int ip_completions_wait_until(ip_completions *c, int (*done)(void *), void *arg,
                              const ip_deadline *deadline, const ip_interrupt *intr);

#endif
