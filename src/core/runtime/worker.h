/* Worker threads: each creates an isolated interpreter (own GIL, own
 * obmalloc), keeps one thread state in it, and runs the pool's tasks
 * there.  After max_tasks tasks, or when its event loop fails, the thread
 * ends that interpreter and starts a fresh one (the initializer runs
 * again), so no task is lost and none runs twice.
 *
 * What a worker does inside its interpreter (load functions, call them,
 * encode results: all Python) is given by the module layer as a table of
 * operations, so this file stays raw.
 */
#ifndef IP_RUNTIME_WORKER_H
#define IP_RUNTIME_WORKER_H

#include "runtime/pool.h"

/* One worker, as its operations see it. */
typedef struct ip_worker {
    ip_pool *pool;
    int index;
    ip_slot *slot;              /* its record (kept when it is set aside) */
    void *data;                 /* the operations' own state for this interpreter */
    unsigned long thread_id;    /* for PyThreadState_SetAsyncExc */
    ip_task *current;           /* whose user code runs now (changed with this
                                 * interpreter's GIL held, so its control thread,
                                 * holding that GIL, sees a settled value) */
    ip_task *interrupted;       /* the call the control thread raised into (GIL held) */
    long done;                  /* tasks this interpreter finished */
} ip_worker;

/* Called on the worker's thread, inside its interpreter (thread state
 * attached), except `interrupt`. */
typedef struct ip_worker_ops {
    /* Before the first task.  IP_OK, or an error code after breaking the
     * pool (ip_pool_break) with the reason. */
    int (*start)(ip_worker *w);
    /* Between tasks, and when idle workers are woken for upkeep. */
    void (*upkeep)(ip_worker *w);
    /* Run one task: set its status and result. */
    void (*run)(ip_worker *w, ip_task *t);
    /* concurrency > 1: run the worker's event loop until the pool stops or
     * the interpreter ran its max_tasks.  IP_OK, or an error code if the
     * loop failed (with the reason in *why, raw memory the caller frees). */
    int (*serve)(ip_worker *w, char **why);
    /* Last, before the interpreter ends (also after a failed start). */
    void (*finish)(ip_worker *w);
    /* By the control thread, holding this interpreter's GIL while
     * w->current is the task to stop: raise the stop exception in the
     * worker's thread. */
    void (*interrupt)(ip_worker *w);
} ip_worker_ops;

/* Start the pool's worker threads (each creates its interpreter in
 * parallel).  IP_OK (also when some threads could not start: the pool
 * then runs with fewer, or breaks if none started) or IP_ERR_NOMEM. */
int ip_workers_start(ip_pool *p);

/* The sync user code of t starts / ended (worker's GIL held); t is a task
 * this worker took, or a stand-in with no completions for the
 * initializer.  begin returns IP_ERR_STOPPED, and t must not start, if t
 * was asked to stop.  end says whether the call returned a value (it
 * then keeps it even if its deadline passed meanwhile: a produced result
 * wins); it returns IP_ERR_TAKEN if the watch took the call over (t's
 * `taken_over` is then set: its worker discards what the call made and
 * neither encodes nor delivers anything for t).  begin returns it too if
 * that happened before the call could start. */
int ip_worker_begin_call(ip_worker *w, ip_task *t);
int ip_worker_end_call(ip_worker *w, int returned);

/* Finish a task run by an event loop (status and result set), or let go
 * of one the watch took over. */
void ip_worker_complete(ip_worker *w, ip_task *t);

#endif
