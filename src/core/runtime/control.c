#include "runtime/control.h"

#include "base/sync.h"
#include "base/wait.h"

struct ip_control {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    PyInterpreterState *interp;
    const ip_control_hooks *hooks;
    void *arg;
    ip_task *target;          /* to stop now (strong), or NULL */
    int any;                  /* stop whatever runs (a shutdown) */
    int64_t any_at_ns;        /* when to (again) */
    int64_t retry_at_ns;      /* target was delivered: ask again then */
    ip_task *deadline_task;   /* strong, or NULL */
    int64_t deadline_ns;
    unsigned changes;         /* bumped by every request: the sleeper recomputes */
    unsigned seen;            /* the changes it slept through last */
    int stop;
};

/* Set a new target (mu held); the old one is dropped. */
static void
set_target(ip_control *c, ip_task *t, int64_t retry_at_ns)
{
    IP_ASSERT_LOCKED(&c->mu);
    if (t != NULL) {
        ip_task_incref(t);
    }
    if (c->target != NULL) {
        ip_task_decref(c->target);
    }
    c->target = t;
    c->retry_at_ns = retry_at_ns;
}

typedef struct {
    ip_control *c;
} wake_arg;

/* Something to do now, or a new request (whose time the sleeper must
 * compute again: it sleeps until the due time it computed before). */
static int
has_work(void *arg)
{
    ip_control *c = arg;
    int64_t now = ip_now_ns();
    return c->stop || c->changes != c->seen || (c->target != NULL && c->retry_at_ns <= now) ||
           (c->any && c->any_at_ns <= now) ||
           (c->deadline_task != NULL && c->deadline_ns <= now);
}

/* The earliest moment something is due (mu held), or never. */
static void
next_due(ip_control *c, ip_deadline *d)
{
    int64_t due = INT64_MAX;
    if (c->target != NULL && c->retry_at_ns < due) {
        due = c->retry_at_ns;
    }
    if (c->any && c->any_at_ns < due) {
        due = c->any_at_ns;
    }
    if (c->deadline_task != NULL && c->deadline_ns < due) {
        due = c->deadline_ns;
    }
    if (due == INT64_MAX) {
        ip_deadline_in(d, -1);
    }
    else {
        int64_t wait = due - ip_now_ns();
        ip_deadline_in(d, wait > 0 ? (double)wait / 1e9 : 0);
    }
}

static void *
control_main(void *arg)
{
    ip_control *c = arg;
    PyThreadState *ts = PyThreadState_New(c->interp);   /* no GIL needed */
    pthread_mutex_lock(&c->mu);
    for (;;) {
        ip_deadline due;
        next_due(c, &due);
        c->seen = c->changes;
        (void)ip_wait(&c->mu, &c->cond, has_work, c, &due, NULL);
        c->seen = c->changes;
        if (c->stop) {
            break;
        }
        int64_t now = ip_now_ns();
        ip_task *t = NULL;
        int any = 0;
        int timed_out = 0;
        if (c->deadline_task != NULL && c->deadline_ns <= now) {
            t = c->deadline_task;   /* its reference moves to t */
            c->deadline_task = NULL;
            /* under mu: once ip_control_set_deadline(NULL) returns, no
             * reason is given any more (a call that returned keeps its result) */
            timed_out = ip_task_request_stop(t, IP_STOP_TIMEOUT);
        }
        else if (c->any && c->any_at_ns <= now) {
            any = 1;
        }
        else if (c->target != NULL && c->retry_at_ns <= now) {
            t = c->target;
            ip_task_incref(t);
        }
        if (t == NULL && !any) {
            continue;
        }
        pthread_mutex_unlock(&c->mu);
        if (timed_out) {
            c->hooks->timed_out(c->arg, t);
        }
        int delivered = 0;
        if (ts != NULL) {
            PyEval_RestoreThread(ts);   /* the worker lets go at its next eval-breaker check */
            delivered = c->hooks->deliver(c->arg, t);
            (void)PyEval_SaveThread();
        }
        pthread_mutex_lock(&c->mu);
        if (any) {
            c->any = delivered;   /* ask again while something keeps running */
            c->any_at_ns = now + IP_CONTROL_RETRY_NS;
            continue;
        }
        if (delivered) {
            set_target(c, t, now + IP_CONTROL_RETRY_NS);   /* ask again if it keeps running */
        }
        else if (c->target == t) {
            set_target(c, NULL, 0);   /* it finished: nothing more to do */
        }
        ip_task_decref(t);
    }
    set_target(c, NULL, 0);
    if (c->deadline_task != NULL) {
        ip_task_decref(c->deadline_task);
        c->deadline_task = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (ts != NULL) {
        PyEval_RestoreThread(ts);
        PyThreadState_Clear(ts);
        PyThreadState_DeleteCurrent();
    }
    return NULL;
}

ip_control *
ip_control_start(PyInterpreterState *interp, const ip_control_hooks *hooks, void *arg)
{
    ip_control *c = PyMem_RawCalloc(1, sizeof(ip_control));
    if (c == NULL) {
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    ip_cond_init(&c->cond);
    c->interp = interp;
    c->hooks = hooks;
    c->arg = arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1024 * 1024);   /* runs no Python frames */
    int rc = pthread_create(&c->thread, &attr, control_main, c);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cond);
        PyMem_RawFree(c);
        return NULL;
    }
    return c;
}

void
ip_control_request(ip_control *c, ip_task *t)
{
    pthread_mutex_lock(&c->mu);
    if (t == NULL) {
        c->any = 1;
        c->any_at_ns = 0;
    }
    else {
        set_target(c, t, 0);
    }
    c->changes++;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

void
ip_control_set_deadline(ip_control *c, ip_task *t, int64_t deadline_ns)
{
    pthread_mutex_lock(&c->mu);
    if (t != NULL) {
        ip_task_incref(t);
    }
    if (c->deadline_task != NULL) {
        ip_task_decref(c->deadline_task);
    }
    c->deadline_task = t;
    c->deadline_ns = deadline_ns;
    c->changes++;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

void
ip_control_stop(ip_control *c)
{
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    PyMem_RawFree(c);
}
