/* A task: one call (or one chunk of calls) in flight.
 *
 * Created by the submitter.  Its "pipeline" reference travels
 * queue -> worker -> completions -> consumer; a TaskHandle may hold
 * another.  It holds no PyObject: the consumer's Completions object maps
 * `seq` to the future it resolves.
 */
#ifndef IP_RUNTIME_TASK_H
#define IP_RUNTIME_TASK_H

#include "mem/buf.h"
#include "runtime/completions.h"

typedef struct ip_task ip_task;

/* How a task ended (set before it is delivered). */
enum ip_task_status {
    IP_TASK_OK = 0,
    IP_TASK_ERROR = 1,       /* result: a packed exception */
    IP_TASK_CANCELLED = 2,   /* dropped from the queue at shutdown */
    IP_TASK_BROKEN = 3,      /* the pool broke; result: the reason (UTF-8) */
};

/* Where a task is.  Transitions: QUEUED -> RUNNING -> DONE, QUEUED ->
 * DROPPED (cancelled, never delivered), QUEUED -> DONE (failed unrun). */
enum ip_task_state { IP_QUEUED = 0, IP_RUNNING = 1, IP_DONE = 2, IP_DROPPED = 3 };

/* Why a running task is being stopped (the first reason asked wins). */
enum ip_stop_reason {
    IP_STOP_NONE = 0,
    IP_STOP_CANCEL = 1,     /* its future was cancelled with interrupt */
    IP_STOP_TIMEOUT = 2,    /* it ran past its deadline */
    IP_STOP_SHUTDOWN = 3,   /* the pool shuts down with interrupt */
};

enum ip_task_kind {
    IP_CALL = 0,    /* payload: args tuple, then kwargs dict or None */
    IP_CHUNK = 1,   /* payload: list of args tuples, then None */
};

struct ip_task {
    ip_done done;               /* first: its link in the done list */
    ip_task *prev, *next;       /* pool queue (pool mutex) */
    ip_task *run_prev, *run_next;   /* pool's running list (pool mutex) */
    ip_task *fin_next;          /* its worker's finished-but-listed tasks (that worker only) */
    atomic_int refcnt;
    atomic_int state;           /* enum ip_task_state */
    int kind;                   /* enum ip_task_kind */
    int status;                 /* enum ip_task_status */
    uint32_t fn_id;
    ip_buf payload;
    ip_buf result;              /* encoded result, packed exception or reason */
    ip_completions *completions;    /* strong: where it is delivered */
    int64_t seq;                /* its key in the consumer's Completions */
    atomic_int cancel_requested;    /* its awaiter gave up while it ran */
    atomic_int stop_reason;     /* enum ip_stop_reason */
    _Atomic int64_t stop_at_ns; /* when the stop reason was given (monotonic) */
    int taken_over;             /* the watch delivered it while its call ran
                                 * (known to, and set by, its worker thread only) */
    int64_t timeout_ns;         /* each call must end this long after it starts (0: none) */
    void *slot;                 /* the worker slot running it (pool mutex) */
};

/* refcnt 1, state QUEUED; NULL on out of memory. */
ip_task *ip_task_new(void);
void ip_task_incref(ip_task *t);
void ip_task_decref(ip_task *t);
/* Move from state `from` to `to` (asserted in debug builds). */
void ip_task_set_state(ip_task *t, int from, int to);
/* Ask for t to stop for `reason`: 1 if that reason is now t's (and
 * stop_at_ns now), 0 if it already had one (the first wins). */
int ip_task_request_stop(ip_task *t, int reason);

/* Deliver a finished task (status and result set, state DONE) to its
 * completions, giving its pipeline reference away. */
void ip_task_deliver(ip_task *t);
/* New completions whose items are tasks. */
ip_completions *ip_task_completions_new(int want_efd);
/* A task taken from completions (ip_completions_take_all). */
static inline ip_task *
ip_task_of(ip_done *item)
{
    return (ip_task *)item;   /* `done` is the first member */
}

/* Live tasks in the process (leak checks). */
extern atomic_long ip_live_tasks;

#endif
