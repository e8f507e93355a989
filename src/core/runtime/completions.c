#include "runtime/completions.h"

#include <errno.h>

#include "base/sync.h"

ip_completions *
ip_completions_new(int want_efd, void (*free_item)(ip_done *))
{
    ip_completions *c = PyMem_RawCalloc(1, sizeof(ip_completions));
    if (c == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    ip_cond_init(&c->cond);
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->refcnt, 1);
    c->free_item = free_item;
    c->want_key = -1;
    c->efd = -1;
    if (want_efd) {
        c->efd = ip_efd_new();
        if (c->efd < 0) {
            int e = errno;
            ip_completions_decref(c);
            errno = e;
            return NULL;
        }
    }
    return c;
}

void
ip_completions_incref(ip_completions *c)
{
    int old = atomic_fetch_add_explicit(&c->refcnt, 1, memory_order_relaxed);
    assert(old > 0);
    (void)old;
}

void
ip_completions_decref(ip_completions *c)
{
    int old = atomic_fetch_sub_explicit(&c->refcnt, 1, memory_order_acq_rel);
    assert(old > 0);
    if (old != 1) {
        return;
    }
    /* Nobody can push any more: every task holds a reference. */
    assert(c->head == NULL);
    ip_efd_close(c->efd);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    PyMem_RawFree(c);
}

/* The last outstanding task is gone: a waiter for "closed with nothing
 * outstanding" must hear it (it checked under mu, so taking mu orders
 * this after its check or before its sleep). */
static void
wake_if_none_left(ip_completions *c, long old, Py_ssize_t n)
{
    if (old == n) {
        pthread_mutex_lock(&c->mu);
        if (c->waiting) {
            pthread_cond_broadcast(&c->cond);
        }
        pthread_mutex_unlock(&c->mu);
    }
}

void
ip_completions_expect(ip_completions *c, Py_ssize_t n)
{
    long old = atomic_fetch_add_explicit(&c->outstanding, n, memory_order_relaxed);
    if (n < 0) {
        wake_if_none_left(c, old, -n);   /* withdrawn */
    }
}

void
ip_completions_push(ip_completions *c, ip_done *item)
{
    item->next = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->orphaned) {
        /* Nobody will take it (an abandoned map): free it now. */
        pthread_mutex_unlock(&c->mu);
        c->free_item(item);
        return;
    }
    if (c->tail) {
        c->tail->next = item;
    }
    else {
        c->head = item;
    }
    c->tail = item;
    atomic_store_explicit(&item->delivered, 1, memory_order_release);
    c->ndone++;
    atomic_store_explicit(&c->ready, 1, memory_order_release);
    if (c->want_key >= 0 && item->key == c->want_key) {
        atomic_store_explicit(&c->key_arrived, 1, memory_order_release);
    }
    /* One waiter: wake it at its batch size.  Several (each may wait for
     * its own task): wake them all, each checks its own condition. */
    int wake_all = c->waiting > 1;
    int wake_cond = c->waiting == 1 && (c->ndone >= c->want || atomic_load(&c->key_arrived));
    int wake_fd = c->efd >= 0 && !c->signalled;
    if (wake_fd) {
        c->signalled = 1;
        /* One write per batch (the consumer takes everything on wake-up),
         * made under the lock: once it is released, the consumer may take
         * the task, drop the last reference and close the fd. */
        ip_efd_signal(c->efd);
    }
    if (wake_all) {
        pthread_cond_broadcast(&c->cond);
    }
    else if (wake_cond) {
        pthread_cond_signal(&c->cond);
    }
    pthread_mutex_unlock(&c->mu);
}

ip_done *
ip_completions_take_all(ip_completions *c)
{
    if (c->efd >= 0) {
        /* Clear the counter BEFORE taking the list, so a push racing with
         * us either lands in this batch or writes the fd again. */
        ip_efd_clear(c->efd);
    }
    pthread_mutex_lock(&c->mu);
    ip_done *head = c->head;
    c->head = c->tail = NULL;
    c->ndone = 0;
    c->signalled = 0;
    atomic_store_explicit(&c->ready, 0, memory_order_relaxed);
    pthread_mutex_unlock(&c->mu);
    return head;
}

void
ip_completions_consumed(ip_completions *c, Py_ssize_t n)
{
    long old = atomic_fetch_sub_explicit(&c->outstanding, n, memory_order_relaxed);
    assert(old >= n);
    if (n > 0) {
        wake_if_none_left(c, old, n);
    }
}

void
ip_completions_orphan(ip_completions *c)
{
    pthread_mutex_lock(&c->mu);
    c->closed = 1;
    c->orphaned = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    Py_ssize_t n = 0;
    for (ip_done *item = ip_completions_take_all(c), *next; item != NULL; item = next) {
        next = item->next;
        c->free_item(item);
        n++;
    }
    ip_completions_consumed(c, n);
}

void
ip_completions_close(ip_completions *c)
{
    pthread_mutex_lock(&c->mu);
    c->closed = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

void
ip_completions_wake(ip_completions *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->waiting) {
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->mu);
}

int
ip_completions_closed(ip_completions *c)
{
    pthread_mutex_lock(&c->mu);
    int closed = c->closed;
    pthread_mutex_unlock(&c->mu);
    return closed;
}

typedef struct {
    ip_completions *c;
    Py_ssize_t want;
} wait_arg;

static int
wait_ready(void *arg)
{
    wait_arg *w = arg;
    ip_completions *c = w->c;
    return c->ndone >= w->want || atomic_load(&c->key_arrived) || c->orphaned ||
           (c->closed && atomic_load(&c->outstanding) == 0);
}

int
ip_completions_wait(ip_completions *c, Py_ssize_t batch, int64_t key,
                    const ip_deadline *deadline, const ip_interrupt *intr)
{
    if (batch <= 1 && atomic_load_explicit(&c->ready, memory_order_acquire)) {
        return IP_OK;
    }
    if (key >= 0) {
        /* The consumer drained the list before waiting, so the key is not
         * in it: a push will say when it comes (mu orders it with pushes). */
        pthread_mutex_lock(&c->mu);
        c->want_key = key;
        atomic_store(&c->key_arrived, 0);
        for (ip_done *d = c->head; d != NULL; d = d->next) {
            if (d->key == key) {
                atomic_store(&c->key_arrived, 1);
            }
        }
        pthread_mutex_unlock(&c->mu);
    }
    Py_ssize_t want = batch;
    Py_ssize_t expected = atomic_load(&c->outstanding);
    if (want > expected) {
        want = expected;
    }
    if (want < 1) {
        want = 1;
    }
    int polling = !deadline->forever && ip_deadline_passed(deadline);
    if (!polling && (want == 1 ? ip_spin_while_zero(&c->ready)
                               : key >= 0 && ip_spin_while_zero(&c->key_arrived))) {
        return IP_OK;
    }
    wait_arg arg = {c, want};
    pthread_mutex_lock(&c->mu);
    c->want = want;
    c->waiting++;
    int rc = ip_wait(&c->mu, &c->cond, wait_ready, &arg, deadline, intr);
    c->waiting--;
    int ready = c->head != NULL;
    c->want_key = -1;
    pthread_mutex_unlock(&c->mu);
    if (rc == IP_ERR_INTERRUPTED) {
        return rc;
    }
    return ready ? IP_OK : IP_ERR_TIMEOUT;
}

typedef struct {
    int (*done)(void *);
    void *arg;
} until_arg;

static int
until_done(void *arg)
{
    until_arg *u = arg;
    return u->done(u->arg);
}

int
ip_completions_wait_until(ip_completions *c, int (*done)(void *), void *arg,
                          const ip_deadline *deadline, const ip_interrupt *intr)
{
    int polling = !deadline->forever && ip_deadline_passed(deadline);
    if (done(arg) || (!polling && ip_spin_until(done, arg))) {
        return IP_OK;
    }
    until_arg u = {done, arg};
    pthread_mutex_lock(&c->mu);
    int saved_want = c->want;
    c->want = 1;   /* any push may be the one */
    c->waiting++;
    int rc = ip_wait(&c->mu, &c->cond, until_done, &u, deadline, intr);
    c->waiting--;
    c->want = saved_want;
    pthread_mutex_unlock(&c->mu);
    return rc;
}
