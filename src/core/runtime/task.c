#include "runtime/task.h"

atomic_long ip_live_tasks;

ip_task *
ip_task_new(void)
{
    ip_task *t = PyMem_RawCalloc(1, sizeof(ip_task));
    if (t != NULL) {
        atomic_init(&t->refcnt, 1);
        atomic_init(&t->state, IP_QUEUED);
        atomic_fetch_add(&ip_live_tasks, 1);
    }
    return t;
}

void
ip_task_incref(ip_task *t)
{
    int old = atomic_fetch_add_explicit(&t->refcnt, 1, memory_order_relaxed);
    assert(old > 0);
    (void)old;
}

void
ip_task_decref(ip_task *t)
{
    int old = atomic_fetch_sub_explicit(&t->refcnt, 1, memory_order_acq_rel);
    assert(old > 0);   /* refcounts never go negative */
    if (old != 1) {
        return;
    }
    ip_buf_free(&t->payload);
    ip_buf_free(&t->result);
    if (t->completions != NULL) {
        ip_completions_decref(t->completions);
    }
    PyMem_RawFree(t);
    atomic_fetch_sub(&ip_live_tasks, 1);
}

void
ip_task_set_state(ip_task *t, int from, int to)
{
#ifndef NDEBUG
    int old = atomic_exchange(&t->state, to);
    assert(old == from);
#else
    (void)from;
    atomic_store_explicit(&t->state, to, memory_order_release);
#endif
}

void
ip_task_deliver(ip_task *t)
{
    assert(atomic_load(&t->state) == IP_DONE);
    t->done.key = t->seq;
    ip_completions_push(t->completions, &t->done);
}

static void
free_task(ip_done *item)
{
    ip_task_decref(ip_task_of(item));
}

ip_completions *
ip_task_completions_new(int want_efd)
{
    return ip_completions_new(want_efd, free_task);
}

int
ip_task_request_stop(ip_task *t, int reason)
{
    int none = IP_STOP_NONE;
    if (!atomic_compare_exchange_strong(&t->stop_reason, &none, reason)) {
        return 0;
    }
    atomic_store(&t->stop_at_ns, ip_now_ns());
    return 1;
}
