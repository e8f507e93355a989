#include "runtime/pool.h"

#include <string.h>

#include "base/sync.h"

atomic_long ip_live_pools;
atomic_long ip_live_workers;

/* Every live pool, so a released shared value can wake all their workers. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static ip_pool *live_head;

/* ------------------------------------------------------------ lifetime */

ip_pool *
ip_pool_new(int nworkers, const struct ip_worker_ops *ops, ip_owner *owner)
{
    assert(nworkers >= 1);
    ip_pool *p = PyMem_RawCalloc(1, sizeof(ip_pool));
    ip_slot *slots = PyMem_RawCalloc(nworkers, sizeof(ip_slot));
    char **path = PyMem_RawCalloc(1, sizeof(char *));
    if (p == NULL || slots == NULL || path == NULL) {
        PyMem_RawFree(p);
        PyMem_RawFree(slots);
        PyMem_RawFree(path);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    ip_cond_init(&p->work);
    ip_cond_init(&p->changed);
    atomic_init(&p->refcnt, 1);
    p->nworkers = nworkers;
    p->slots = slots;
    for (int i = 0; i < nworkers; i++) {
        slots[i].efd = -1;
        slots[i].budget = -1;
    }
    p->sys_path = path;
    p->ops = ops;
    p->concurrency = 1;
    p->loop_factory = -1;
    ip_owner_incref(owner);
    p->owner = owner;
    pthread_mutex_lock(&live_mu);
    p->next_live = live_head;
    if (live_head != NULL) {
        live_head->prev_live = p;
    }
    live_head = p;
    pthread_mutex_unlock(&live_mu);
    atomic_fetch_add(&ip_live_pools, 1);
    return p;
}

void
ip_pool_incref(ip_pool *p)
{
    int old = atomic_fetch_add_explicit(&p->refcnt, 1, memory_order_relaxed);
    assert(old > 0);
    (void)old;
}

void
ip_pool_decref(ip_pool *p)
{
    int old = atomic_fetch_sub_explicit(&p->refcnt, 1, memory_order_acq_rel);
    assert(old > 0);
    if (old != 1) {
        return;
    }
    pthread_mutex_lock(&live_mu);
    if (p->prev_live) {
        p->prev_live->next_live = p->next_live;
    }
    else {
        live_head = p->next_live;
    }
    if (p->next_live) {
        p->next_live->prev_live = p->prev_live;
    }
    pthread_mutex_unlock(&live_mu);
    /* Workers drain the queue before exiting, and a pool that never
     * started is stopped with cancel: the queue is empty here. */
    assert(p->head == NULL && p->running == NULL && p->nlive == 0);
    for (Py_ssize_t i = 0; i < p->n_path; i++) {
        PyMem_RawFree(p->sys_path[i]);
    }
    PyMem_RawFree(p->sys_path);
    for (uint32_t i = 0; i < p->nfns; i++) {
        ip_buf_free(&p->fns[i]);
    }
    PyMem_RawFree(p->fns);
    ip_buf_free(&p->init_payload);
    ip_buf_free(&p->setup_payload);
    ip_owner_decref(p->owner);
    ip_buf_free(&p->broken_msg);
    for (int i = 0; i < p->nworkers; i++) {
        assert(p->slots[i].control == NULL);
        ip_efd_close(p->slots[i].efd);
    }
    PyMem_RawFree(p->slots);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->changed);
    PyMem_RawFree(p);
    atomic_fetch_sub(&ip_live_pools, 1);
}

/* ------------------------------------------------------------ configuration */

int
ip_pool_add_path(ip_pool *p, const char *path, Py_ssize_t len)
{
    if (p->started) {
        return IP_ERR_STARTED;
    }
    char **grown = PyMem_RawRealloc(p->sys_path, (p->n_path + 1) * sizeof(char *));
    if (grown == NULL) {
        return IP_ERR_NOMEM;
    }
    p->sys_path = grown;
    char *s = PyMem_RawMalloc(len + 1);
    if (s == NULL) {
        return IP_ERR_NOMEM;
    }
    memcpy(s, path, len);
    s[len] = '\0';
    p->sys_path[p->n_path++] = s;
    return IP_OK;
}

int
ip_pool_add_fn(ip_pool *p, ip_buf *ref, uint32_t *id)
{
    pthread_mutex_lock(&p->mu);
    if (p->nfns == p->capfns) {
        uint32_t cap = p->capfns ? p->capfns * 2 : 16;
        ip_buf *fns = PyMem_RawRealloc(p->fns, cap * sizeof(ip_buf));
        if (fns == NULL) {
            pthread_mutex_unlock(&p->mu);
            return IP_ERR_NOMEM;
        }
        p->fns = fns;
        p->capfns = cap;
    }
    *id = p->nfns++;
    p->fns[*id] = *ref;
    memset(ref, 0, sizeof(*ref));
    pthread_mutex_unlock(&p->mu);
    return IP_OK;
}

int
ip_pool_copy_fn(ip_pool *p, uint32_t id, ip_buf *out)
{
    pthread_mutex_lock(&p->mu);
    int rc = id < p->nfns ? ip_buf_copy(out, &p->fns[id]) : -1;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* ------------------------------------------------------------ the queue */

/* Wake the event loops of workers waiting for tasks (all: stop); mu held. */
static void
wake_loops_locked(ip_pool *p, int all)
{
    IP_ASSERT_LOCKED(&p->mu);
    for (int i = 0; i < p->nworkers; i++) {
        ip_slot *slot = &p->slots[i];
        if (slot->efd >= 0 && (all || slot->waiting)) {
            slot->waiting = 0;
            ip_efd_signal(slot->efd);
        }
    }
}

/* Append tasks (linked through ->next, already QUEUED); mu held. */
static void
append_locked(ip_pool *p, ip_task *first, ip_task *last, Py_ssize_t n)
{
    IP_ASSERT_LOCKED(&p->mu);
    first->prev = p->tail;
    if (p->tail) {
        p->tail->next = first;
    }
    else {
        p->head = first;
    }
    p->tail = last;
    last->next = NULL;
    p->nqueued += n;
    atomic_store_explicit(&p->has_work, 1, memory_order_release);
    if (p->concurrency > 1) {
        wake_loops_locked(p, 0);
    }
    if (p->sleepers > 0) {
        if (n >= p->sleepers) {
            pthread_cond_broadcast(&p->work);
        }
        else {
            for (Py_ssize_t i = 0; i < n; i++) {
                pthread_cond_signal(&p->work);
            }
        }
    }
}

static void
unlink_locked(ip_pool *p, ip_task *t)
{
    IP_ASSERT_LOCKED(&p->mu);
    if (t->prev) {
        t->prev->next = t->next;
    }
    else {
        p->head = t->next;
    }
    if (t->next) {
        t->next->prev = t->prev;
    }
    else {
        p->tail = t->prev;
    }
    t->prev = t->next = NULL;
    p->nqueued--;
    assert(p->nqueued >= 0);
    if (p->nqueued == 0) {
        atomic_store_explicit(&p->has_work, 0, memory_order_relaxed);
    }
}

/* Take `slot`'s finished tasks off the running list; mu held. */
static void
reap_locked(ip_pool *p, ip_slot *slot)
{
    IP_ASSERT_LOCKED(&p->mu);
    while (slot->finished != NULL) {
        ip_task *t = slot->finished;
        slot->finished = t->fin_next;
        if (t->run_prev != NULL) {
            t->run_prev->run_next = t->run_next;
        }
        else {
            assert(p->running == t);
            p->running = t->run_next;
        }
        if (t->run_next != NULL) {
            t->run_next->run_prev = t->run_prev;
        }
        t->run_prev = t->run_next = t->fin_next = NULL;
        ip_task_decref(t);   /* the running list's reference */
    }
}

/* The next task for `slot` (RUNNING, on the running list), unless the
 * slot's interpreter has no budget left; mu held. */
static ip_task *
pop_locked(ip_pool *p, ip_slot *slot)
{
    IP_ASSERT_LOCKED(&p->mu);
    reap_locked(p, slot);
    ip_task *t = p->head;
    if (t == NULL || slot->budget == 0) {
        return NULL;
    }
    unlink_locked(p, t);
    ip_task_set_state(t, IP_QUEUED, IP_RUNNING);
    if (slot->budget > 0) {
        slot->budget--;
    }
    t->slot = slot;
    ip_task_incref(t);   /* the running list's */
    t->run_prev = NULL;
    t->run_next = p->running;
    if (p->running != NULL) {
        p->running->run_prev = t;
    }
    p->running = t;
    return t;
}

void
ip_pool_task_done(ip_pool *p, int index, ip_task *t)
{
    ip_slot *slot = &p->slots[index];
    assert(atomic_load(&t->state) == IP_RUNNING);
    t->fin_next = slot->finished;
    slot->finished = t;
}

void
ip_pool_slot_reap(ip_pool *p, int index)
{
    pthread_mutex_lock(&p->mu);
    reap_locked(p, &p->slots[index]);
    pthread_mutex_unlock(&p->mu);
}

/* Ask running task t to stop (its reason already set); mu held.  A
 * coroutine is cancelled through its worker's eventfd, sync code through
 * the worker's control thread. */
static void
stop_running_locked(ip_pool *p, ip_task *t)
{
    IP_ASSERT_LOCKED(&p->mu);
    if (atomic_load(&t->state) != IP_RUNNING) {
        return;   /* finished, still on the list until its worker comes by */
    }
    atomic_store(&t->cancel_requested, 1);
    ip_slot *slot = t->slot;
    if (slot == NULL) {
        return;
    }
    if (slot->efd >= 0) {
        ip_efd_signal(slot->efd);
    }
    if (slot->interp != NULL && slot->control == NULL) {
        slot->control = ip_control_start(slot->interp, slot->deliver, slot->deliver_arg);
    }
    if (slot->control != NULL) {
        ip_control_request(slot->control, t);
    }
}

/* Is t (QUEUED) in the queue?  A queued task has a predecessor or is the
 * head; one take_all_locked detached has neither, and is no longer the
 * queue's to give away (deliver_dropped delivers it); mu held. */
static int
in_queue_locked(ip_pool *p, ip_task *t)
{
    IP_ASSERT_LOCKED(&p->mu);
    return t->prev != NULL || p->head == t;
}

/* Detach the whole queue, chained by ->next (->prev cleared: cancel() no
 * longer finds these tasks in the queue); mu held. */
static ip_task *
take_all_locked(ip_pool *p)
{
    IP_ASSERT_LOCKED(&p->mu);
    ip_task *t = p->head;
    for (ip_task *it = t; it != NULL; it = it->next) {
        it->prev = NULL;
    }
    p->head = p->tail = NULL;
    p->nqueued = 0;
    atomic_store_explicit(&p->has_work, 0, memory_order_relaxed);
    return t;
}

/* Test hook (_core._hold_dropped): while held, dropped tasks wait before
 * they are delivered, so a test can act on them in between. */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_released = PTHREAD_COND_INITIALIZER;
static atomic_int hold_dropped;

void
ip_pool_hold_dropped(int hold)
{
    pthread_mutex_lock(&hold_mu);
    atomic_store(&hold_dropped, hold);
    pthread_cond_broadcast(&hold_released);
    pthread_mutex_unlock(&hold_mu);
}

/* Deliver tasks take_all_locked detached (no lock: they are ours alone)
 * with `status`; `msg` (may be NULL) becomes each result. */
static void
deliver_dropped(ip_task *t, int status, const ip_buf *msg)
{
    if (t != NULL && atomic_load_explicit(&hold_dropped, memory_order_relaxed)) {
        pthread_mutex_lock(&hold_mu);
        while (atomic_load(&hold_dropped)) {
            pthread_cond_wait(&hold_released, &hold_mu);
        }
        pthread_mutex_unlock(&hold_mu);
    }
    while (t != NULL) {
        ip_task *next = t->next;
        t->next = NULL;
        ip_buf_free(&t->payload);   /* never runs: unpin its arguments now */
        t->status = status;
        t->result.len = 0;
        if (msg != NULL && msg->len) {
            (void)ip_buf_append(&t->result, msg->data, msg->len);
        }
        ip_task_set_state(t, IP_QUEUED, IP_DONE);
        ip_task_deliver(t);
        t = next;
    }
}

int
ip_pool_enqueue(ip_pool *p, ip_task *first, ip_task *last, Py_ssize_t n)
{
    pthread_mutex_lock(&p->mu);
    int rc = p->broken ? IP_ERR_BROKEN : p->stopping ? IP_ERR_STOPPED : IP_OK;
    if (rc == IP_OK) {
        append_locked(p, first, last, n);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int
ip_pool_cancel(ip_pool *p, ip_task *t, int interrupt)
{
    int removed = 0, stopping = 0;
    pthread_mutex_lock(&p->mu);
    int state = atomic_load(&t->state);
    if (state == IP_QUEUED && in_queue_locked(p, t)) {
        unlink_locked(p, t);
        ip_task_set_state(t, IP_QUEUED, IP_DROPPED);
        removed = 1;
    }
    else if (interrupt && state == IP_RUNNING) {
        (void)ip_task_request_stop(t, IP_STOP_CANCEL);
        stop_running_locked(p, t);
        stopping = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (removed) {
        ip_buf_free(&t->payload);   /* never runs: unpin its arguments now */
        return IP_CANCEL_REMOVED;
    }
    return stopping ? IP_CANCEL_STOPPING : IP_CANCEL_NONE;
}

ip_task *
ip_pool_cancel_for(ip_pool *p, ip_completions *c, Py_ssize_t *n)
{
    ip_task *dropped = NULL;
    *n = 0;
    pthread_mutex_lock(&p->mu);
    for (ip_task *t = p->head, *next; t != NULL; t = next) {
        next = t->next;
        if (t->completions == c) {
            unlink_locked(p, t);
            ip_task_set_state(t, IP_QUEUED, IP_DROPPED);
            t->next = dropped;
            dropped = t;
            (*n)++;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return dropped;
}

Py_ssize_t
ip_pool_interrupt(ip_pool *p, ip_completions *c, int reason)
{
    Py_ssize_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (ip_task *t = p->running; t != NULL; t = t->run_next) {
        if ((c == NULL || t->completions == c) && atomic_load(&t->state) == IP_RUNNING) {
            (void)ip_task_request_stop(t, reason);
            stop_running_locked(p, t);
            n++;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

ip_task *
ip_pool_take(ip_pool *p, int index, Py_ssize_t n, Py_ssize_t *count)
{
    assert(index >= 0 && index < p->nworkers);
    ip_task *taken = NULL, **tail = &taken;
    Py_ssize_t got = 0;
    ip_slot *slot = &p->slots[index];
    pthread_mutex_lock(&p->mu);
    while (got < n) {
        ip_task *t = pop_locked(p, slot);
        if (t == NULL) {
            break;
        }
        *tail = t;
        tail = &t->next;
        got++;
    }
    slot->waiting = got < n && !p->stopping && slot->budget != 0;
    pthread_mutex_unlock(&p->mu);
    *count = got;
    return taken;
}

typedef struct {
    ip_pool *p;
    ip_slot *slot;
    unsigned wake_seen;
} idle_arg;

/* An idle worker wakes for a task, a stop, or upkeep (ip_pool_wake). */
static int
idle_wakes(void *arg)
{
    idle_arg *a = arg;
    return a->p->head != NULL || a->p->stopping || a->p->wake_seq != a->wake_seen ||
           a->slot->budget == 0;
}

/* Why worker `slot` got no task; mu held. */
static int
why_none_locked(ip_pool *p, ip_slot *slot)
{
    if (slot->budget == 0 && !p->broken && (!p->stopping || p->head != NULL)) {
        return IP_NEXT_RECYCLE;   /* a fresh interpreter takes over */
    }
    return p->stopping ? IP_NEXT_STOP : IP_NEXT_UPKEEP;
}

ip_task *
ip_pool_next_task(ip_pool *p, int index, unsigned *wake_seen, int *why)
{
    ip_slot *slot = &p->slots[index];
    ip_task *t;
    pthread_mutex_lock(&p->mu);
    t = pop_locked(p, slot);
    *why = t ? IP_NEXT_UPKEEP : why_none_locked(p, slot);
    pthread_mutex_unlock(&p->mu);
    if (t != NULL || *why != IP_NEXT_UPKEEP) {
        return t;
    }
    Py_BEGIN_ALLOW_THREADS
    (void)ip_spin_while_zero(&p->has_work);
    idle_arg arg = {p, slot, *wake_seen};
    ip_deadline never = {.forever = 1};
    pthread_mutex_lock(&p->mu);
    p->sleepers++;
    (void)ip_wait(&p->mu, &p->work, idle_wakes, &arg, &never, NULL);
    p->sleepers--;
    t = pop_locked(p, slot);
    *why = t ? IP_NEXT_UPKEEP : why_none_locked(p, slot);
    *wake_seen = p->wake_seq;
    pthread_mutex_unlock(&p->mu);
    Py_END_ALLOW_THREADS
    return t;
}

void
ip_pool_slot_attach(ip_pool *p, int index, PyInterpreterState *interp, ip_deliver_fn deliver,
                    void *arg)
{
    ip_slot *slot = &p->slots[index];
    pthread_mutex_lock(&p->mu);
    assert(slot->interp == NULL && slot->control == NULL);
    slot->interp = interp;
    slot->deliver = deliver;
    slot->deliver_arg = arg;
    slot->budget = p->max_tasks > 0 ? p->max_tasks : -1;
    pthread_mutex_unlock(&p->mu);
}

ip_control *
ip_pool_slot_detach(ip_pool *p, int index)
{
    ip_slot *slot = &p->slots[index];
    pthread_mutex_lock(&p->mu);
    ip_control *c = slot->control;
    slot->control = NULL;
    slot->interp = NULL;
    slot->deliver = NULL;
    slot->deliver_arg = NULL;
    pthread_mutex_unlock(&p->mu);
    return c;
}

ip_control *
ip_pool_slot_control(ip_pool *p, int index)
{
    ip_slot *slot = &p->slots[index];
    pthread_mutex_lock(&p->mu);
    if (slot->control == NULL && slot->interp != NULL) {
        slot->control = ip_control_start(slot->interp, slot->deliver, slot->deliver_arg);
    }
    ip_control *c = slot->control;
    pthread_mutex_unlock(&p->mu);
    return c;
}

/* ------------------------------------------------------------ stop, break, wake */

void
ip_pool_stop(ip_pool *p, int cancel, int cancel_running, int interrupt)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    p->cancel_running |= cancel_running;
    ip_task *dropped = cancel ? take_all_locked(p) : NULL;
    pthread_cond_broadcast(&p->work);
    wake_loops_locked(p, 1);
    if (interrupt) {
        for (ip_task *t = p->running; t != NULL; t = t->run_next) {
            if (atomic_load(&t->state) == IP_RUNNING) {
                (void)ip_task_request_stop(t, IP_STOP_SHUTDOWN);
                stop_running_locked(p, t);
            }
        }
        /* And whatever else runs user code: an initializer. */
        for (int i = 0; i < p->nworkers; i++) {
            ip_slot *slot = &p->slots[i];
            if (slot->interp != NULL && slot->control == NULL) {
                slot->control = ip_control_start(slot->interp, slot->deliver, slot->deliver_arg);
            }
            if (slot->control != NULL) {
                ip_control_request(slot->control, NULL);
            }
        }
    }
    pthread_mutex_unlock(&p->mu);
    deliver_dropped(dropped, IP_TASK_CANCELLED, NULL);
}

void
ip_pools_stop_owned(ip_owner *owner, int cancel, int cancel_running, int interrupt)
{
    /* Stopping delivers dropped tasks (no pool lock is taken under
     * live_mu by anything else, so holding it here is safe). */
    pthread_mutex_lock(&live_mu);
    for (ip_pool *p = live_head; p != NULL; p = p->next_live) {
        if (p->owner == owner) {
            ip_pool_stop(p, cancel, cancel_running, interrupt);
        }
    }
    pthread_mutex_unlock(&live_mu);
}

void
ip_pool_break(ip_pool *p, const char *msg, Py_ssize_t len)
{
    pthread_mutex_lock(&p->mu);
    if (!p->broken) {
        p->broken = 1;
        (void)ip_buf_append(&p->broken_msg, msg, len);
    }
    p->stopping = 1;
    p->cancel_running = 1;
    ip_task *dropped = take_all_locked(p);
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->changed);
    wake_loops_locked(p, 1);
    pthread_mutex_unlock(&p->mu);
    /* broken_msg no longer changes once set: read it unlocked */
    deliver_dropped(dropped, IP_TASK_BROKEN, &p->broken_msg);
}

void
ip_pool_wake(ip_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->wake_seq++;
    pthread_cond_broadcast(&p->work);
    wake_loops_locked(p, 1);
    pthread_mutex_unlock(&p->mu);
}

void
ip_wake_all_pools(void)
{
    pthread_mutex_lock(&live_mu);
    for (ip_pool *p = live_head; p != NULL; p = p->next_live) {
        ip_pool_wake(p);
    }
    pthread_mutex_unlock(&live_mu);
}

/* ------------------------------------------------------------ waits */

static int
all_exited(void *arg)
{
    return ((ip_pool *)arg)->nlive == 0;
}

static int
ready_or_done(void *arg)
{
    ip_pool *p = arg;
    return p->nready == p->nthreads || p->broken || p->nlive == 0;
}

int
ip_pool_wait_ready(ip_pool *p, const ip_deadline *deadline, const ip_interrupt *intr)
{
    pthread_mutex_lock(&p->mu);
    int rc = ip_wait(&p->mu, &p->changed, ready_or_done, p, deadline, intr);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int
ip_pool_wait_exited(ip_pool *p, const ip_deadline *deadline, const ip_interrupt *intr)
{
    pthread_mutex_lock(&p->mu);
    int rc = ip_wait(&p->mu, &p->changed, all_exited, p, deadline, intr);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* ------------------------------------------------------------ worker slots */

int
ip_pool_slot_fd(ip_pool *p, int index)
{
    ip_slot *slot = &p->slots[index];
    pthread_mutex_lock(&p->mu);
    if (slot->efd < 0) {
        slot->efd = ip_efd_new();
    }
    int fd = slot->efd;
    pthread_mutex_unlock(&p->mu);
    return fd;
}

void
ip_pool_slot_clear(ip_pool *p, int index)
{
    pthread_mutex_lock(&p->mu);
    int fd = p->slots[index].efd;
    pthread_mutex_unlock(&p->mu);
    if (fd >= 0) {
        ip_efd_clear(fd);
    }
}

void
ip_pool_slot_close(ip_pool *p, int index)
{
    pthread_mutex_lock(&p->mu);
    ip_slot *slot = &p->slots[index];
    ip_efd_close(slot->efd);
    slot->efd = -1;
    slot->waiting = 0;
    pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------ snapshots */

int
ip_pool_all_ready(ip_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int all = p->nthreads > 0 && p->nready == p->nthreads && !p->broken;
    pthread_mutex_unlock(&p->mu);
    return all;
}

int
ip_pool_slot_done(ip_pool *p, int index)
{
    pthread_mutex_lock(&p->mu);
    int done = (p->stopping && p->nqueued == 0) || p->slots[index].budget == 0;
    pthread_mutex_unlock(&p->mu);
    return done;
}

int
ip_pool_slot_recycle(ip_pool *p, int index)
{
    pthread_mutex_lock(&p->mu);
    int recycle = why_none_locked(p, &p->slots[index]) == IP_NEXT_RECYCLE;
    pthread_mutex_unlock(&p->mu);
    return recycle;
}

int
ip_pool_cancelling(ip_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int c = p->cancel_running;
    pthread_mutex_unlock(&p->mu);
    return c;
}

Py_ssize_t
ip_pool_queued(ip_pool *p)
{
    pthread_mutex_lock(&p->mu);
    Py_ssize_t n = p->nqueued;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int
ip_pool_live(ip_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->nlive;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int
ip_pool_broken_message(ip_pool *p, ip_buf *out)
{
    pthread_mutex_lock(&p->mu);
    int broken = p->broken;
    int rc = broken ? ip_buf_append(out, p->broken_msg.data, p->broken_msg.len) : IP_OK;
    pthread_mutex_unlock(&p->mu);
    return rc < 0 ? rc : broken;
}
