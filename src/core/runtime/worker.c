#include "runtime/worker.h"

#include <string.h>

/* What a new worker thread is given (freed by it). */
typedef struct {
    ip_pool *pool;    /* one reference, the thread's */
    int index;
    int first;        /* one of the pool's first threads (not a replacement) */
} worker_start;

static void
mark_ready(ip_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->nready++;
    assert(p->nready <= p->nthreads);
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
}

static void
break_with(ip_pool *p, const char *prefix, const char *why)
{
    ip_buf msg = {0};
    (void)ip_buf_append(&msg, prefix, (Py_ssize_t)strlen(prefix));
    (void)ip_buf_append(&msg, why, (Py_ssize_t)strlen(why));
    ip_pool_break(p, msg.data ? msg.data : prefix, msg.data ? msg.len : (Py_ssize_t)strlen(prefix));
    ip_buf_free(&msg);
}

/* Hand a task the worker took back to its consumer (or, if the watch took
 * it over and delivered it, just let go of it). */
static void
finish_task(ip_worker *w, ip_task *t)
{
    if (t->taken_over) {
        ip_task_decref(t);   /* what was its pipeline reference */
        return;
    }
    ip_pool_task_done(w->pool, w->slot, t);
    ip_buf_free(&t->payload);
    ip_task_set_state(t, IP_RUNNING, IP_DONE);
    w->done++;
    t->done.work_behind = atomic_load_explicit(&w->pool->has_work, memory_order_relaxed);
    ip_task_deliver(t);   /* gives the pipeline reference away */
}

/* The C loop (concurrency 1): pop, run, deliver.  Returns the reason it
 * stopped: IP_NEXT_STOP, IP_NEXT_RECYCLE or IP_NEXT_ASIDE. */
static int
run_loop(ip_worker *w)
{
    ip_pool *p = w->pool;
    unsigned wake_seen = 0;
    for (;;) {
        int why;
        p->ops->upkeep(w);
        ip_task *t = ip_pool_next_task(p, w->slot, &wake_seen, &why);
        if (t == NULL) {
            if (why != IP_NEXT_UPKEEP) {
                return why;
            }
            continue;
        }
        p->ops->run(w, t);
        finish_task(w, t);
    }
}

/* By the control thread, holding this worker interpreter's GIL. */
static int
deliver(void *arg, ip_task *t)
{
    ip_worker *w = arg;
    if (t == NULL) {
        /* "Whatever runs" (a shutdown) means an initializer: running tasks
         * get requests of their own, and one stop each is enough. */
        if (w->current == NULL || atomic_load(&w->current->state) == IP_RUNNING) {
            return 0;
        }
    }
    else if (w->current != t) {
        return 0;   /* it finished, or its user code has not started */
    }
    w->interrupted = w->current;
    w->pool->ops->interrupt(w);
    return 1;
}

/* By the control thread, holding no lock and no GIL: the watch looks at t
 * (if its call is stuck in C, the GIL above never comes). */
static void
timed_out(void *arg, ip_task *t)
{
    (void)t;
    ip_pool_watch(((ip_worker *)arg)->pool);
}

static const ip_control_hooks control_hooks = {deliver, timed_out};

/* One interpreter's life: create, start, serve, end.  Returns 1 if the
 * thread should start another interpreter (it ran its max_tasks, or its
 * event loop failed after serving). */
static int
one_interpreter(ip_worker *w, int first)
{
    ip_pool *p = w->pool;
    PyThreadState *ts = NULL;
    PyInterpreterConfig cfg = {
        .use_main_obmalloc = 0,
        .allow_fork = 0,
        .allow_exec = 0,
        .allow_threads = 1,
        .allow_daemon_threads = 0,
        .check_multi_interp_extensions = 1,
        .gil = PyInterpreterConfig_OWN_GIL,
    };
    if (ip_pool_begin_create(p) < 0) {
        return 0;   /* broken, or stopped with nothing left to run: no interpreter */
    }
    PyStatus status = Py_NewInterpreterFromConfig(&ts, &cfg);
    ip_pool_end_create(p);
    if (PyStatus_Exception(status) || ts == NULL) {
        break_with(p, "interpool: could not create a worker interpreter: ",
                   status.err_msg ? status.err_msg : "unknown error");
        return 0;
    }
    w->data = NULL;
    w->current = NULL;
    w->done = 0;
    w->thread_id = PyThread_get_thread_ident();
    ip_pool_slot_attach(p, w->slot, PyThreadState_GetInterpreter(ts), &control_hooks, w);
    int again = 0;
    if (p->ops->start(w) == IP_OK) {
        if (first) {
            mark_ready(p);
        }
        if (p->concurrency > 1) {
            char *why = NULL;
            if (p->ops->serve(w, &why) == IP_OK) {
                again = ip_pool_slot_next(p, w->slot) == IP_NEXT_RECYCLE;
            }
            else if (w->done > 0) {
                again = 1;   /* the loop failed after serving: a fresh one takes over */
            }
            else {
                /* Failed before its first task: a replacement would too. */
                break_with(p, "interpool: a worker's event loop failed:\n", why ? why : "");
            }
            PyMem_RawFree(why);
        }
        else {
            again = run_loop(w) == IP_NEXT_RECYCLE;
        }
    }
    p->ops->finish(w);
    ip_pool_slot_reap(p, w->slot);
    ip_control *control = ip_pool_slot_detach(p, w->slot);
    if (control != NULL) {
        Py_BEGIN_ALLOW_THREADS
        ip_control_stop(control);   /* it deletes its thread state here first */
        Py_END_ALLOW_THREADS
    }
    ip_pool_slot_close(p, w->slot);
    Py_EndInterpreter(ts);
    /* A worker set aside meanwhile hands nothing on: its index has a new thread. */
    return again && !p->broken && !w->slot->aside;
}

static void *
worker_main(void *arg)
{
    worker_start *start = arg;
    ip_worker w = {.pool = start->pool, .index = start->index};
    ip_pool *p = w.pool;
    int first = start->first;
    PyMem_RawFree(start);
    atomic_fetch_add(&ip_busy_workers, 1);   /* on a core but while it sleeps for a task */
    w.slot = ip_pool_slot(p, w.index);
    while (one_interpreter(&w, first)) {
        first = 0;
    }
    atomic_fetch_sub(&ip_busy_workers, 1);
    int aside = w.slot->aside;   /* (only the watch sets it, before the call returned) */
    if (aside) {
        ip_pool_aside_exited(p, w.slot);   /* not counted in nlive any more */
    }
    else {
        pthread_mutex_lock(&p->mu);
        p->nlive--;
        assert(p->nlive >= 0);
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->mu);
    }
    ip_owner *owner = p->owner;   /* kept alive by this thread's reference */
    ip_pool_decref(p);
    atomic_fetch_sub(&ip_live_workers, 1);
    ip_owner_worker_exited(owner, aside);
    return NULL;
}

/* Start the thread of worker `index`, counted as live (mu held).  0, or -1
 * (nothing counted) if it could not start. */
static int
spawn_locked(ip_pool *p, int index, int first)
{
    worker_start *start = PyMem_RawMalloc(sizeof(worker_start));
    if (start == NULL) {
        return -1;
    }
    start->pool = p;
    start->index = index;
    start->first = first;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 16 * 1024 * 1024);
    ip_pool_incref(p);
    ip_owner_add_worker(p->owner);
    atomic_fetch_add(&ip_live_workers, 1);
    pthread_t th;
    int rc = pthread_create(&th, &attr, worker_main, start);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        PyMem_RawFree(start);
        ip_owner_worker_exited(p->owner, 0);
        atomic_fetch_sub(&ip_live_workers, 1);
        ip_pool_decref(p);   /* not the last: the caller's is held */
        return -1;
    }
    p->nlive++;
    return 0;
}

/* The watch set a worker aside: its replacement (mu held). */
static int
replace_locked(ip_pool *p, int index)
{
    return spawn_locked(p, index, 0);
}

int
ip_workers_start(ip_pool *p)
{
    if (p->started) {
        return IP_OK;
    }
    p->started = 1;
    p->replace = replace_locked;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nworkers; i++) {
        if (spawn_locked(p, i, 1) == 0) {
            p->nthreads++;   /* wait_ready() waits for the threads that exist */
        }
    }
    int none = p->nthreads == 0;
    pthread_mutex_unlock(&p->mu);
    if (none) {
        const char *msg = "interpool: could not start any worker thread";
        ip_pool_break(p, msg, (Py_ssize_t)strlen(msg));
    }
    return IP_OK;
}

/* The call of t is over (or never started): clear `calling`.  0, or
 * IP_ERR_TAKEN if the watch took it over first. */
static int
leave_call(ip_worker *w, ip_task *t)
{
    w->current = NULL;
    if (atomic_exchange(&w->slot->calling, NULL) == IP_CALL_TAKEN) {
        t->taken_over = 1;
        return IP_ERR_TAKEN;
    }
    return 0;
}

int
ip_worker_begin_call(ip_worker *w, ip_task *t)
{
    int init = t->completions == NULL;   /* the initializer's stand-in */
    w->current = t;
    w->interrupted = NULL;
    atomic_store(&w->slot->calling, init ? IP_CALL_INIT : t);
    /* Asked to stop before it started: it never does.  (Checked after
     * `calling` is set, as a stop sets the reason before it wakes the
     * watch, which then reads `calling`: one of the two sees the other.) */
    if (atomic_load(&t->stop_reason) != IP_STOP_NONE) {
        int rc = leave_call(w, t);
        return rc < 0 ? rc : IP_ERR_STOPPED;
    }
    if (init && w->pool->interrupt_at_ns != 0) {
        ip_pool_watch(w->pool);   /* an interrupting stop came first */
    }
    if (t->timeout_ns > 0) {
        ip_control *c = ip_pool_slot_control(w->pool, w->slot);
        if (c != NULL) {
            ip_control_set_deadline(c, t, ip_now_ns() + t->timeout_ns);
        }
    }
    return IP_OK;
}

int
ip_worker_end_call(ip_worker *w, int returned)
{
    ip_task *t = w->current;
    if (t == NULL) {
        return 0;
    }
    if (t->timeout_ns > 0) {
        /* After this, the control thread gives t no stop reason any more. */
        ip_control *c = ip_pool_slot_control(w->pool, w->slot);
        if (c != NULL) {
            ip_control_set_deadline(c, NULL, 0);
        }
    }
    int rc = leave_call(w, t);
    if (rc == 0 && returned && w->interrupted != t) {
        /* Its deadline passed as it returned (no stop reached it): the
         * result it made wins. */
        int timeout = IP_STOP_TIMEOUT;
        (void)atomic_compare_exchange_strong(&t->stop_reason, &timeout, IP_STOP_NONE);
    }
    return rc;
}

void
ip_worker_complete(ip_worker *w, ip_task *t)
{
    finish_task(w, t);
}
