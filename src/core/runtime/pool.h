/* The raw pool: a FIFO of tasks behind one mutex, shared by every worker
 * of the pool, and the pool's state (started, stopping, broken).
 *
 * Lock order: nobody waits for a GIL while holding pool->mu (workers
 * release their GIL before sleeping on it).  The worker threads themselves
 * are in worker.c; the Python-facing PoolCore in module/pool_type.c.
 */
#ifndef IP_RUNTIME_POOL_H
#define IP_RUNTIME_POOL_H

#include "runtime/control.h"
#include "runtime/owner.h"
#include "runtime/task.h"

struct ip_worker_ops;

/* Nothing / the initializer runs in a slot's `calling`, and the mark the
 * watch leaves when it takes a call over. */
#define IP_CALL_INIT ((ip_task *)(uintptr_t)1)
#define IP_CALL_TAKEN ((ip_task *)(uintptr_t)2)

/* A call asked to stop that still runs this long after the request (stuck
 * in a C call: a stop lands only when it returns) is taken over: its
 * future fails now and its worker is set aside. */
#define IP_STOP_GRACE_NS 100000000LL   /* 100 ms */
/* The grace in force (tests may change it: _core._set_stop_grace). */
extern _Atomic int64_t ip_stop_grace_ns;

/* What the pool knows of one worker interpreter (pool mutex unless said).
 * A record belongs to its worker thread: when the watch sets a worker
 * aside, a fresh record takes its index and the old one stays with the
 * old thread (on the pool's aside list) until that thread exits. */
typedef struct ip_slot {
    int index;
    int efd;                    /* eventfd of its event loop, or -1 */
    int waiting;                /* its loop waits for tasks: write efd on enqueue */
    long budget;                /* tasks its interpreter may still take; -1: no limit */
    /* while its interpreter lives (ip_pool_slot_attach): how to stop its tasks */
    PyInterpreterState *interp;
    const ip_control_hooks *hooks;
    void *hooks_arg;
    ip_control *control;        /* started on first need */
    ip_task *finished;          /* taken off the running list at the worker's next
                                 * visit to the pool mutex (its thread only) */
    /* The task whose sync user code runs now (a task on the running list,
     * IP_CALL_INIT, or NULL), set by its thread without the mutex; the
     * watch claims a call stuck past its grace by swapping in
     * IP_CALL_TAKEN, and the thread learns it when the call returns. */
    _Atomic(ip_task *) calling;
    int aside;                  /* set aside: finishes what it holds, takes nothing new */
    struct ip_slot *next_aside;
} ip_slot;

/* Why ip_pool_next_task() returned no task. */
enum ip_next {
    IP_NEXT_UPKEEP = 0,   /* woken for upkeep: call again */
    IP_NEXT_STOP = 1,     /* the pool stops and the queue is empty: exit */
    IP_NEXT_RECYCLE = 2,  /* this interpreter ran its max_tasks: replace it */
    IP_NEXT_ASIDE = 3,    /* this worker was set aside: end its interpreter and exit */
};

typedef struct ip_pool {
    pthread_mutex_t mu;
    pthread_cond_t work;        /* a task was queued, or stopping */
    pthread_cond_t changed;     /* a worker became ready or exited */
    atomic_int refcnt;          /* PoolCore + each live worker thread + handles */
    atomic_int has_work;        /* queue non-empty (spin target) */
    ip_task *head, *tail;
    Py_ssize_t nqueued;
    ip_task *running;           /* tasks workers took (one reference each); finished
                                 * ones leave lazily (ip_pool_task_done) */
    int sleepers;               /* workers asleep waiting for a task */
    atomic_int spinning;        /* workers spinning for a task: they need no wake-up */
    atomic_llong last_enqueue_ns;   /* when tasks were last queued */
    atomic_llong idle_start_ns;     /* when a worker last found the queue empty */
    ip_wait_history idle_history;   /* how long idle workers waited for a task */
    long idle_spins, idle_sleeps;   /* idle workers that spun / slept (mu) */
    unsigned wake_seq;          /* bumped by ip_pool_wake(): idle workers do upkeep */
    int stopping;               /* no new tasks; workers exit when the queue is empty */
    int cancel_running;         /* stopping also cancels running coroutines */
    int broken;
    ip_buf broken_msg;          /* UTF-8 */
    int nworkers, nready, nlive, started;   /* nlive: not set aside */
    int nthreads;               /* worker threads that started */
    int creating;               /* interpreters being created now */
    ip_slot **slots;            /* nworkers: each index's current record */
    ip_slot *aside;             /* records of workers set aside (their threads run on) */
    int naside;
    /* the watch: a thread (no GIL, ever) that takes over stopped calls
     * still running past IP_STOP_GRACE_NS and sets their workers aside */
    pthread_t watch;
    int watch_started, watch_stop;
    unsigned watch_kicks;       /* bumped by each request to look again */
    pthread_cond_t watch_wake;
    _Atomic int64_t interrupt_at_ns;   /* an interrupting stop (initializers too): when */
    /* starts the worker thread that replaces one set aside at `index`
     * (worker.c; mu held): 0, or -1 if it could not start */
    int (*replace)(struct ip_pool *p, int index);
    ip_owner *owner;            /* the creating interpreter's worker count */
    struct ip_pool *next_live, *prev_live;   /* all live pools (a global mutex) */
    /* configuration, immutable once started */
    const struct ip_worker_ops *ops;
    int concurrency;            /* coroutines per worker; 1: the C loop */
    long loop_factory;          /* fn id of the workers' loop factory, or -1 */
    int64_t task_timeout_ns;    /* default deadline of each call (0: none) */
    long max_tasks;             /* tasks per interpreter before it is replaced (0: no limit) */
    char **sys_path;
    Py_ssize_t n_path;
    int has_init;
    uint32_t init_fn;
    ip_buf init_payload;
    ip_buf setup_payload;       /* handed to each worker's setup */
    /* callable references, append-only (mu) */
    ip_buf *fns;
    uint32_t nfns, capfns;
} ip_pool;

/* Benchmarks: how long enqueues and takes hold the queue mutex, and how
 * long they waited for it (ns, and how many), over every pool. */
typedef struct ip_lock_stats {
    long long enqueue_ns, enqueues, take_ns, takes, wait_ns;
    long long contended;        /* acquisitions that found it held */
} ip_lock_stats;
/* Time from now on (on: the totals start at zero) or no longer; *out gets
 * the totals so far. */
void ip_pool_lock_timing(int on, ip_lock_stats *out);

/* Process-wide counts (leak checks). */
extern atomic_long ip_live_pools;
extern atomic_long ip_live_workers;

/* A new pool (refcnt 1) of `nworkers` run by `ops`; NULL on out of memory. */
ip_pool *ip_pool_new(int nworkers, const struct ip_worker_ops *ops, ip_owner *owner);
void ip_pool_incref(ip_pool *p);
void ip_pool_decref(ip_pool *p);

/* Configuration (before start): IP_OK, IP_ERR_STARTED or IP_ERR_NOMEM. */
int ip_pool_add_path(ip_pool *p, const char *path, Py_ssize_t len);
/* Takes over `ref` (left empty); its id in *id. */
int ip_pool_add_fn(ip_pool *p, ip_buf *ref, uint32_t *id);
/* A copy of the reference of fn `id` (any time; IP_ERR_NOMEM or -1 if unknown). */
int ip_pool_copy_fn(ip_pool *p, uint32_t id, ip_buf *out);

/* Queue a chain of n tasks (QUEUED, linked by ->next).  IP_OK, or
 * IP_ERR_STOPPED / IP_ERR_BROKEN with the chain untouched. */
int ip_pool_enqueue(ip_pool *p, ip_task *first, ip_task *last, Py_ssize_t n);
/* Remove a queued task (it will never run): IP_CANCEL_REMOVED; it is
 * DROPPED and its pipeline reference is the caller's.  Otherwise, if it
 * runs and `interrupt` is set, stop it (reason CANCEL): a coroutine gets
 * CancelledError at its await, sync code TaskInterrupted at its next
 * bytecode: IP_CANCEL_STOPPING.  Else IP_CANCEL_NONE. */
int ip_pool_cancel(ip_pool *p, ip_task *t, int interrupt);
enum { IP_CANCEL_NONE = 0, IP_CANCEL_REMOVED = 1, IP_CANCEL_STOPPING = 2 };
/* Stop every running task bound for `c` (NULL: every running task) for
 * `reason`; how many were asked. */
Py_ssize_t ip_pool_interrupt(ip_pool *p, ip_completions *c, int reason);
/* Remove every queued task bound for `c`; the chain (->next) of removed
 * tasks (DROPPED, references the caller's), their number in *n. */
ip_task *ip_pool_cancel_for(ip_pool *p, ip_completions *c, Py_ssize_t *n);
/* Pop up to n tasks for the worker of `slot` (RUNNING, references the
 * caller's), chained by ->next; *count how many.  If fewer came, the
 * worker's eventfd is armed for the next enqueue.  Never more than the
 * slot's budget; none for a worker set aside. */
ip_task *ip_pool_take(ip_pool *p, ip_slot *slot, Py_ssize_t n, Py_ssize_t *count);
/* A task the worker of `slot` took is finished (before it is delivered).
 * No lock: it leaves the running list at that worker's next visit to the
 * pool mutex, which keeps the hot path at one lock per task. */
void ip_pool_task_done(ip_pool *p, ip_slot *slot, ip_task *t);
/* Take the slot's finished tasks off the running list now (before its
 * worker sleeps for long, or exits). */
void ip_pool_slot_reap(ip_pool *p, ip_slot *slot);

/* Refuse new tasks; workers exit once the queue is empty.  `cancel`:
 * queued tasks are delivered as CANCELLED; `cancel_running`: running
 * coroutines are cancelled too; `interrupt`: running sync code is stopped
 * (reason SHUTDOWN). */
void ip_pool_stop(ip_pool *p, int cancel, int cancel_running, int interrupt);
/* ip_pool_stop on every live pool `owner` made (exit). */
void ip_pools_stop_owned(ip_owner *owner, int cancel, int cancel_running, int interrupt);
/* Mark the pool broken (first reason wins) and fail every queued task. */
void ip_pool_break(ip_pool *p, const char *msg, Py_ssize_t len);
/* Tests only: hold (1) the delivery of tasks ip_pool_break and ip_pool_stop
 * dropped until released (0). */
void ip_pool_hold_dropped(int hold);
/* Wake idle workers of this pool / of every live pool, for upkeep. */
void ip_pool_wake(ip_pool *p);
void ip_wake_all_pools(void);

/* Waits (no thread state attached): IP_OK, IP_ERR_TIMEOUT, IP_ERR_INTERRUPTED. */
int ip_pool_wait_ready(ip_pool *p, const ip_deadline *deadline, const ip_interrupt *intr);
int ip_pool_wait_exited(ip_pool *p, const ip_deadline *deadline, const ip_interrupt *intr);
/* The same, also for the workers set aside. */
int ip_pool_wait_gone(ip_pool *p, const ip_deadline *deadline, const ip_interrupt *intr);

/* Worker side: the next task for the worker of `slot` (RUNNING), or NULL
 * with *why (enum ip_next).  Called with the worker's thread state
 * attached; sleeps with it released. */
ip_task *ip_pool_next_task(ip_pool *p, ip_slot *slot, unsigned *wake_seen, int *why);
/* The current record of worker `index` (its thread takes it when it starts). */
ip_slot *ip_pool_slot(ip_pool *p, int index);
/* The slot's worker has a new interpreter (its budget starts again) / is
 * about to end it: returns its control thread (or NULL), which the caller
 * stops with no thread state attached. */
void ip_pool_slot_attach(ip_pool *p, ip_slot *slot, PyInterpreterState *interp,
                         const ip_control_hooks *hooks, void *arg);
ip_control *ip_pool_slot_detach(ip_pool *p, ip_slot *slot);
/* The slot's control thread (started if needed), or NULL. */
ip_control *ip_pool_slot_control(ip_pool *p, ip_slot *slot);
/* The slot's eventfd (made on first use; -1 with errno on failure); reset
 * it; forget it (the worker exits). */
int ip_pool_slot_fd(ip_pool *p, ip_slot *slot);
void ip_pool_slot_clear(ip_pool *p, ip_slot *slot);
void ip_pool_slot_close(ip_pool *p, ip_slot *slot);
/* A stop was asked for a task (its stop_at_ns set): the watch looks at it. */
void ip_pool_watch(ip_pool *p);
/* The worker of a slot set aside exits: forget its record (freed). */
void ip_pool_aside_exited(ip_pool *p, ip_slot *slot);
/* Snapshots under the mutex. */
int ip_pool_all_ready(ip_pool *p);
/* An event loop worker takes no more tasks: the pool stops with an empty
 * queue, this interpreter ran its max_tasks, or it was set aside. */
int ip_pool_slot_done(ip_pool *p, ip_slot *slot);
/* The slot's worker left its event loop: why (enum ip_next: STOP,
 * RECYCLE when a fresh interpreter takes over because this one ran its
 * max_tasks and the pool runs on or still has queued tasks, or ASIDE). */
int ip_pool_slot_next(ip_pool *p, ip_slot *slot);
/* A worker thread is about to create its interpreter: waits (no thread
 * state attached) while too many are being created; IP_OK, or
 * IP_ERR_STOPPED if none is needed any more (the pool broke, or it stops
 * with an empty queue).  After IP_OK, ip_pool_end_create once created (or
 * failed). */
int ip_pool_begin_create(ip_pool *p);
void ip_pool_end_create(ip_pool *p);
/* Running coroutines must be cancelled (shutdown, broken). */
int ip_pool_cancelling(ip_pool *p);
Py_ssize_t ip_pool_queued(ip_pool *p);
int ip_pool_live(ip_pool *p);
/* Copy the broken message (empty buffer and 0 when not broken). */
int ip_pool_broken_message(ip_pool *p, ip_buf *out);

#endif
