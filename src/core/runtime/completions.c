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
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->refcnt, 1);
    c->free_item = free_item;
    c->efd = -1;
    ip_history_init(&c->history);
    atomic_init(&c->gap_ns, IP_HOLD_MIN_NS);   /* no batching until results come fast */
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
    PyMem_RawFree(c);
}

/* Wake every sleeping waiter (each checks its own condition); mu held. */
static void
wake_all_locked(ip_completions *c)
{
    IP_ASSERT_LOCKED(&c->mu);
    for (ip_waiter *w = c->waiters; w != NULL; w = w->next) {
        if (w->sleeping) {
            pthread_cond_signal(&w->cond);
        }
    }
}

/* The last outstanding task is gone: a waiter for "closed with nothing
 * outstanding" must hear it (it checked under mu, so taking mu orders
 * this after its check or before its sleep). */
static void
wake_if_none_left(ip_completions *c, long old, Py_ssize_t n)
{
    if (old == n) {
        pthread_mutex_lock(&c->mu);
        wake_all_locked(c);
        pthread_mutex_unlock(&c->mu);
    }
}

void
ip_completions_expect(ip_completions *c, Py_ssize_t n)
{
    long old = atomic_fetch_add_explicit(&c->outstanding, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->inflight, n, memory_order_relaxed);
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
    int64_t now = ip_now_ns();
    int64_t prev = atomic_exchange_explicit(&c->last_push_ns, now, memory_order_relaxed);
    long inflight = atomic_fetch_sub_explicit(&c->inflight, 1, memory_order_relaxed) - 1;
    atomic_store_explicit(&c->ready, 1, memory_order_release);
    /* Wake only a waiter whose item (or batch) this is: a caller waiting
     * for the next index of a map, or for its own future's task, is not
     * woken by every other result.  Under mu: the waiter's condvar lives
     * on its stack. */
    for (ip_waiter *w = c->waiters; w != NULL; w = w->next) {
        if (!atomic_load_explicit(&w->arrived, memory_order_relaxed) &&
            (item->key == w->key || (w->want > 0 && c->ndone >= w->want))) {
            atomic_store_explicit(&w->arrived, 1, memory_order_release);
            if (w->sleeping) {
                pthread_cond_signal(&w->cond);
            }
        }
    }
    if (c->efd >= 0) {
        int64_t gap = now - prev, avg = atomic_load_explicit(&c->gap_ns, memory_order_relaxed);
        gap = gap < IP_HOLD_MAX_NS ? gap : IP_HOLD_MAX_NS;
        atomic_store_explicit(&c->gap_ns, avg + (gap - avg) / 4, memory_order_relaxed);
    }
    /* The eventfd: one write per batch (the consumer takes everything). */
    int wake_fd = c->efd >= 0 && !c->signalled;
    if (wake_fd) {
        /* Held for a batch (see ip_completions_hold): the loop looks by
         * then anyway, more results come, and no worker idles for it. */
        if (now < atomic_load_explicit(&c->hold_until_ns, memory_order_relaxed) &&
            inflight > 0 && item->work_behind && c->ndone < IP_HOLD_MAX && !ip_spare_core()) {
            wake_fd = 0;
        }
        else {
            c->signalled = 1;
        }
    }
    if (!wake_fd) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    /* Written after unlocking, so the woken loop does not block on mu at
     * once.  The reference keeps the fd open meanwhile: once mu is
     * released, the consumer may take the item, drop the last other
     * reference and free c. */
    ip_completions_incref(c);
    pthread_mutex_unlock(&c->mu);
    ip_efd_signal(c->efd);
    ip_completions_decref(c);
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
    wake_all_locked(c);
    pthread_mutex_unlock(&c->mu);
    Py_ssize_t n = 0;
    for (ip_done *item = ip_completions_take_all(c), *next; item != NULL; item = next) {
        next = item->next;
        c->free_item(item);
        n++;
    }
    ip_completions_consumed(c, n);
}

int64_t
ip_completions_hold(ip_completions *c)
{
    int64_t window = 0;
    int64_t gap = atomic_load_explicit(&c->gap_ns, memory_order_relaxed);
    if (atomic_load(&c->inflight) > 0 && !ip_spare_core() && gap <= IP_HOLD_GAP_NS) {
        window = gap * IP_HOLD_BATCH;
        window = window < IP_HOLD_MIN_NS ? IP_HOLD_MIN_NS
                 : window > IP_HOLD_MAX_NS ? IP_HOLD_MAX_NS : window;
    }
    atomic_store(&c->hold_until_ns, window ? ip_now_ns() + window : 0);
    return window;
}

void
ip_completions_close(ip_completions *c)
{
    pthread_mutex_lock(&c->mu);
    c->closed = 1;
    wake_all_locked(c);
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

/* Spin first only where it pays (see ip_spin_pays). */
static int
spin_first(ip_completions *c, const ip_deadline *deadline, int (*ready)(void *), void *arg)
{
    int polling = !deadline->forever && ip_deadline_passed(deadline);
    return !polling && ip_spin_pays(&c->history) && ip_spin_until(ready, arg);
}

/* What a wait that began at `start` teaches the completions' history
 * (after it slept: when the latest item arrived, not when we woke, so
 * that a slow wake-up does not look like a long wait). */
static void
learn(ip_completions *c, int64_t start, int rc)
{
    if (rc == IP_OK) {
        ip_history_add(&c->history, start,
                       atomic_load_explicit(&c->last_push_ns, memory_order_relaxed));
    }
    else if (rc == IP_ERR_TIMEOUT) {
        ip_history_add(&c->history, start, ip_now_ns());
    }
}

/* Link w in (mu held); it has arrived already if the list is long enough
 * or (`scan`) its key is on it. */
static void
add_waiter_locked(ip_completions *c, ip_waiter *w, int scan)
{
    IP_ASSERT_LOCKED(&c->mu);
    int arrived = w->want > 0 && c->ndone >= w->want;
    for (ip_done *d = scan ? c->head : NULL; d != NULL && !arrived && w->key >= 0; d = d->next) {
        arrived = d->key == w->key;
    }
    atomic_init(&w->arrived, arrived);
    w->sleeping = 0;
    ip_cond_init(&w->cond);
    w->next = c->waiters;
    c->waiters = w;
}

static void
remove_waiter_locked(ip_completions *c, ip_waiter *w)
{
    IP_ASSERT_LOCKED(&c->mu);
    for (ip_waiter **pp = &c->waiters; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    pthread_cond_destroy(&w->cond);
}

/* Sleep on cond as waiter w until ready(arg); mu held. */
static int
sleep_locked(ip_completions *c, ip_waiter *w, int (*ready)(void *), void *arg,
             const ip_deadline *deadline, const ip_interrupt *intr)
{
    w->sleeping = 1;
    int rc = ip_wait(&c->mu, &w->cond, ready, arg, deadline, intr);
    w->sleeping = 0;
    return rc;
}

typedef struct {
    ip_completions *c;
    ip_waiter *w;
    int (*done)(void *);   /* wait_until's own condition, or NULL */
    void *arg;
} wait_arg;

/* The waiter's item came, or nothing more will come. */
static int
wait_ready(void *arg)
{
    wait_arg *a = arg;
    ip_completions *c = a->c;
    return atomic_load(&a->w->arrived) || (a->done != NULL && a->done(a->arg)) || c->orphaned ||
           (c->closed && atomic_load(&c->outstanding) == 0);
}

static int
flag_set(void *flag)
{
    return atomic_load_explicit((atomic_int *)flag, memory_order_acquire) != 0;
}

int
ip_completions_wait(ip_completions *c, Py_ssize_t batch, int64_t key,
                    const ip_deadline *deadline, const ip_interrupt *intr)
{
    if (batch <= 1 && atomic_load_explicit(&c->ready, memory_order_acquire)) {
        return IP_OK;
    }
    int64_t start = ip_now_ns();
    Py_ssize_t want = batch;
    Py_ssize_t expected = atomic_load(&c->outstanding);
    if (want > expected) {
        want = expected;
    }
    if (want < 1) {
        want = 1;
    }
    ip_waiter w = {.key = key, .want = want};
    wait_arg arg = {c, &w, NULL, NULL};
    pthread_mutex_lock(&c->mu);
    add_waiter_locked(c, &w, 1);
    int rc = IP_OK;
    if (!wait_ready(&arg)) {
        pthread_mutex_unlock(&c->mu);
        int spun = spin_first(c, deadline, flag_set, &w.arrived);
        pthread_mutex_lock(&c->mu);
        if (!spun) {
            rc = sleep_locked(c, &w, wait_ready, &arg, deadline, intr);
        }
    }
    remove_waiter_locked(c, &w);
    int ready = c->head != NULL;
    pthread_mutex_unlock(&c->mu);
    if (rc == IP_ERR_INTERRUPTED) {
        return rc;
    }
    rc = ready ? IP_OK : IP_ERR_TIMEOUT;
    learn(c, start, rc);
    return rc;
}

int
ip_completions_wait_until(ip_completions *c, int (*done)(void *), void *arg, int64_t key,
                          const ip_deadline *deadline, const ip_interrupt *intr)
{
    if (done(arg)) {
        return IP_OK;
    }
    int64_t start = ip_now_ns();
    int rc = IP_OK;
    if (!spin_first(c, deadline, done, arg)) {
        ip_waiter w = {.key = key, .want = 0};
        wait_arg a = {c, &w, done, arg};
        pthread_mutex_lock(&c->mu);
        add_waiter_locked(c, &w, 0);   /* done() says if it came already */
        rc = sleep_locked(c, &w, wait_ready, &a, deadline, intr);
        remove_waiter_locked(c, &w);
        pthread_mutex_unlock(&c->mu);
        if (rc == IP_OK && !done(arg)) {
            rc = IP_ERR_TIMEOUT;   /* closed or orphaned: it will not come */
        }
    }
    learn(c, start, rc);
    return rc;
}

void
ip_completions_forget(ip_completions *c, int64_t key)
{
    pthread_mutex_lock(&c->mu);
    for (ip_waiter *w = c->waiters; w != NULL; w = w->next) {
        if (w->key == key) {
            atomic_store(&w->arrived, 1);
            if (w->sleeping) {
                pthread_cond_signal(&w->cond);
            }
        }
    }
    pthread_mutex_unlock(&c->mu);
}
