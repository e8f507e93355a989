#include "runtime/owner.h"

#include "base/sync.h"

ip_owner *
ip_owner_new(void)
{
    ip_owner *o = PyMem_RawCalloc(1, sizeof(ip_owner));
    if (o != NULL) {
        atomic_init(&o->refcnt, 1);
        pthread_mutex_init(&o->mu, NULL);
        ip_cond_init(&o->exited);
    }
    return o;
}

void
ip_owner_incref(ip_owner *o)
{
    long old = atomic_fetch_add_explicit(&o->refcnt, 1, memory_order_relaxed);
    assert(old > 0);
    (void)old;
}

void
ip_owner_decref(ip_owner *o)
{
    long old = atomic_fetch_sub_explicit(&o->refcnt, 1, memory_order_acq_rel);
    assert(old > 0);
    if (old == 1) {
        assert(o->live == 0);
        pthread_mutex_destroy(&o->mu);
        pthread_cond_destroy(&o->exited);
        PyMem_RawFree(o);
    }
}

void
ip_owner_add_worker(ip_owner *o)
{
    ip_owner_incref(o);   /* the worker thread's reference */
    pthread_mutex_lock(&o->mu);
    o->live++;
    pthread_mutex_unlock(&o->mu);
}

void
ip_owner_set_aside(ip_owner *o)
{
    pthread_mutex_lock(&o->mu);
    assert(o->live > o->aside);
    o->aside++;
    pthread_cond_broadcast(&o->exited);
    pthread_mutex_unlock(&o->mu);
}

void
ip_owner_worker_exited(ip_owner *o, int aside)
{
    pthread_mutex_lock(&o->mu);
    assert(o->live > 0 && (!aside || o->aside > 0));
    o->live--;
    o->aside -= aside != 0;
    pthread_cond_broadcast(&o->exited);
    pthread_mutex_unlock(&o->mu);
    ip_owner_decref(o);
}

static int
idle(void *arg)
{
    ip_owner *o = arg;
    return o->live == o->aside;
}

static int
all_gone(void *arg)
{
    return ((ip_owner *)arg)->live == 0;
}

int
ip_owner_wait_idle(ip_owner *o, int aside, const ip_deadline *deadline,
                   const ip_interrupt *intr)
{
    pthread_mutex_lock(&o->mu);
    int rc = ip_wait(&o->mu, &o->exited, aside ? all_gone : idle, o, deadline, intr);
    pthread_mutex_unlock(&o->mu);
    return rc;
}
