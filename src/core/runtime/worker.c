#include "runtime/worker.h"

#include <string.h>

/* What a new worker thread is given (freed by it). */
typedef struct {
    ip_pool *pool;    /* one reference, the thread's */
    int index;
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

/* Hand a task the worker took back to its consumer. */
static void
finish_task(ip_worker *w, ip_task *t)
{
    ip_pool_task_done(w->pool, w->index, t);
    ip_buf_free(&t->payload);
    ip_task_set_state(t, IP_RUNNING, IP_DONE);
    w->done++;
    ip_task_deliver(t);   /* gives the pipeline reference away */
}

/* The C loop (concurrency 1): pop, run, deliver.  Returns the reason it
 * stopped: IP_NEXT_STOP or IP_NEXT_RECYCLE. */
static int
run_loop(ip_worker *w)
{
    ip_pool *p = w->pool;
    unsigned wake_seen = 0;
    for (;;) {
        int why;
        p->ops->upkeep(w);
        ip_task *t = ip_pool_next_task(p, w->index, &wake_seen, &why);
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
    w->pool->ops->interrupt(w);
    return 1;
}

/* One interpreter's life: create, start, serve, end.  Returns 1 if the
 * thread should start another interpreter. */
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
    PyStatus status = Py_NewInterpreterFromConfig(&ts, &cfg);
    if (PyStatus_Exception(status) || ts == NULL) {
        break_with(p, "interpool: could not create a worker interpreter: ",
                   status.err_msg ? status.err_msg : "unknown error");
        return 0;
    }
    w->data = NULL;
    w->current = NULL;
    w->done = 0;
    w->thread_id = PyThread_get_thread_ident();
    ip_pool_slot_attach(p, w->index, PyThreadState_GetInterpreter(ts), deliver, w);
    int again = 0;
    if (p->ops->start(w) == IP_OK) {
        if (first) {
            mark_ready(p);
        }
        if (p->concurrency > 1) {
            char *why = NULL;
            if (p->ops->serve(w, &why) == IP_OK) {
                again = ip_pool_slot_recycle(p, w->index);
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
    ip_pool_slot_reap(p, w->index);
    ip_control *control = ip_pool_slot_detach(p, w->index);
    if (control != NULL) {
        Py_BEGIN_ALLOW_THREADS
        ip_control_stop(control);   /* it deletes its thread state here first */
        Py_END_ALLOW_THREADS
    }
    ip_pool_slot_close(p, w->index);
    Py_EndInterpreter(ts);
    return again && !p->broken;
}

static void *
worker_main(void *arg)
{
    worker_start *start = arg;
    ip_worker w = {.pool = start->pool, .index = start->index};
    ip_pool *p = w.pool;
    PyMem_RawFree(start);
    for (int first = 1; one_interpreter(&w, first); first = 0) {
    }
    pthread_mutex_lock(&p->mu);
    p->nlive--;
    assert(p->nlive >= 0);
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    ip_owner *owner = p->owner;   /* kept alive by this thread's reference */
    ip_pool_decref(p);
    atomic_fetch_sub(&ip_live_workers, 1);
    ip_owner_worker_exited(owner);
    return NULL;
}

int
ip_workers_start(ip_pool *p)
{
    if (p->started) {
        return IP_OK;
    }
    p->started = 1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 16 * 1024 * 1024);
    for (int i = 0; i < p->nworkers; i++) {
        pthread_t th;
        worker_start *start = PyMem_RawMalloc(sizeof(worker_start));
        if (start == NULL) {
            continue;
        }
        start->pool = p;
        start->index = i;
        ip_pool_incref(p);
        ip_owner_add_worker(p->owner);
        pthread_mutex_lock(&p->mu);
        p->nlive++;
        p->nthreads++;
        pthread_mutex_unlock(&p->mu);
        atomic_fetch_add(&ip_live_workers, 1);
        if (pthread_create(&th, &attr, worker_main, start) != 0) {
            PyMem_RawFree(start);
            ip_owner_worker_exited(p->owner);
            pthread_mutex_lock(&p->mu);
            p->nlive--;
            p->nthreads--;   /* wait_ready() waits for the threads that exist */
            pthread_cond_broadcast(&p->changed);
            pthread_mutex_unlock(&p->mu);
            atomic_fetch_sub(&ip_live_workers, 1);
            ip_pool_decref(p);
        }
    }
    pthread_attr_destroy(&attr);
    if (p->nthreads == 0) {
        const char *msg = "interpool: could not start any worker thread";
        ip_pool_break(p, msg, (Py_ssize_t)strlen(msg));
    }
    return IP_OK;
}

int
ip_worker_begin_call(ip_worker *w, ip_task *t)
{
    if (atomic_load(&t->stop_reason) != IP_STOP_NONE) {
        return IP_ERR_STOPPED;   /* asked to stop before it started: it never does */
    }
    w->current = t;
    if (t->timeout_ns > 0) {
        ip_control *c = ip_pool_slot_control(w->pool, w->index);
        if (c != NULL) {
            ip_control_set_deadline(c, t, ip_now_ns() + t->timeout_ns);
        }
    }
    return IP_OK;
}

void
ip_worker_end_call(ip_worker *w)
{
    ip_task *t = w->current;
    w->current = NULL;
    if (t != NULL && t->timeout_ns > 0) {
        ip_control *c = ip_pool_slot_control(w->pool, w->index);
        if (c != NULL) {
            ip_control_set_deadline(c, NULL, 0);
        }
    }
}

void
ip_worker_complete(ip_worker *w, ip_task *t)
{
    finish_task(w, t);
}
