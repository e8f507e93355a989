#include "runtime/pool.h"

#include <string.h>
#include <unistd.h>

#include "base/sync.h"

atomic_long ip_live_pools;
atomic_long ip_live_workers;
_Atomic int64_t ip_stop_grace_ns = IP_STOP_GRACE_NS;

/* Every live pool, so a released shared value can wake all their workers. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static ip_pool *live_head;

/* ------------------------------------------------------------ lock timing
 *
 * Off unless a benchmark asks (_core._lock_stats): then enqueues and takes
 * read the clock around the queue mutex.  Off, it costs one relaxed load. */

enum { LOCK_ENQUEUE = 0, LOCK_TAKE = 1 };
static atomic_int lock_timing;
static atomic_llong lock_ns[2], lock_ops[2], lock_wait_ns, lock_contended;

typedef struct {
    int64_t asked, got;   /* 0: not timed */
} lock_clock;

static inline void
queue_lock(ip_pool *p, lock_clock *lc)
{
    lc->asked = atomic_load_explicit(&lock_timing, memory_order_relaxed) ? ip_now_ns() : 0;
    lc->got = 0;
    if (!lc->asked) {
        pthread_mutex_lock(&p->mu);
        return;
    }
    if (pthread_mutex_trylock(&p->mu) != 0) {
        atomic_fetch_add_explicit(&lock_contended, 1, memory_order_relaxed);
        pthread_mutex_lock(&p->mu);
    }
    lc->got = ip_now_ns();
}

/* The hold starts again now (after a wait on a condvar, which released it). */
static inline void
queue_relocked(lock_clock *lc)
{
    lc->got = lc->asked ? ip_now_ns() : 0;
}

static inline void
queue_unlock(ip_pool *p, lock_clock *lc, int op)
{
    int64_t released = lc->asked ? ip_now_ns() : 0;
    pthread_mutex_unlock(&p->mu);
    if (lc->asked) {
        atomic_fetch_add_explicit(&lock_ns[op], released - lc->got, memory_order_relaxed);
        atomic_fetch_add_explicit(&lock_ops[op], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&lock_wait_ns, lc->got - lc->asked, memory_order_relaxed);
    }
}

void
ip_pool_lock_timing(int on, ip_lock_stats *out)
{
    if (on) {
        for (int i = 0; i < 2; i++) {
            atomic_store(&lock_ns[i], 0);
            atomic_store(&lock_ops[i], 0);
        }
        atomic_store(&lock_wait_ns, 0);
        atomic_store(&lock_contended, 0);
    }
    atomic_store(&lock_timing, on);
    out->enqueue_ns = atomic_load(&lock_ns[LOCK_ENQUEUE]);
    out->enqueues = atomic_load(&lock_ops[LOCK_ENQUEUE]);
    out->take_ns = atomic_load(&lock_ns[LOCK_TAKE]);
    out->takes = atomic_load(&lock_ops[LOCK_TAKE]);
    out->wait_ns = atomic_load(&lock_wait_ns);
    out->contended = atomic_load(&lock_contended);
}

/* ------------------------------------------------------------ lifetime */

/* A fresh record for worker `index`; NULL on out of memory. */
static ip_slot *
slot_new(int index)
{
    ip_slot *slot = PyMem_RawCalloc(1, sizeof(ip_slot));
    if (slot != NULL) {
        slot->index = index;
        slot->efd = -1;
        slot->budget = -1;
    }
    return slot;
}

static void
slot_free(ip_slot *slot)
{
    assert(slot->control == NULL);
    ip_efd_close(slot->efd);
    PyMem_RawFree(slot);
}

ip_pool *
ip_pool_new(int nworkers, const struct ip_worker_ops *ops, ip_owner *owner)
{
    assert(nworkers >= 1);
    ip_pool *p = PyMem_RawCalloc(1, sizeof(ip_pool));
    ip_slot **slots = PyMem_RawCalloc(nworkers, sizeof(ip_slot *));
    char **path = PyMem_RawCalloc(1, sizeof(char *));
    int ok = p != NULL && slots != NULL && path != NULL;
    for (int i = 0; ok && i < nworkers; i++) {
        ok = (slots[i] = slot_new(i)) != NULL;
    }
    if (!ok) {
        for (int i = 0; slots != NULL && i < nworkers; i++) {
            PyMem_RawFree(slots[i]);
        }
        PyMem_RawFree(p);
        PyMem_RawFree(slots);
        PyMem_RawFree(path);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    ip_cond_init(&p->work);
    ip_cond_init(&p->changed);
    ip_cond_init(&p->watch_wake);
    atomic_init(&p->refcnt, 1);
    p->nworkers = nworkers;
    p->slots = slots;
    p->sys_path = path;
    p->ops = ops;
    p->concurrency = 1;
    p->loop_factory = -1;
    ip_history_init(&p->idle_history);
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
     * started is stopped with cancel: the queue is empty here.  Workers
     * set aside hold a reference of their own until they exit. */
    assert(p->head == NULL && p->running == NULL && p->nlive == 0 && p->aside == NULL);
    if (p->watch_started) {
        /* Nothing is left to watch; whoever let go last (never the watch,
         * which holds no reference) ends it. */
        pthread_mutex_lock(&p->mu);
        p->watch_stop = 1;
        pthread_cond_signal(&p->watch_wake);   /* (watch_woken sees watch_stop) */
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->watch, NULL);
    }
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
        slot_free(p->slots[i]);
    }
    PyMem_RawFree(p->slots);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->changed);
    pthread_cond_destroy(&p->watch_wake);
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

static void
wake_loop_locked(ip_slot *slot, int all)
{
    if (slot->efd >= 0 && (all || slot->waiting)) {
        slot->waiting = 0;
        ip_efd_signal(slot->efd);
    }
}

/* Wake the event loops of workers waiting for tasks (all: also those set
 * aside, for a stop); mu held. */
static void
wake_loops_locked(ip_pool *p, int all)
{
    IP_ASSERT_LOCKED(&p->mu);
    for (int i = 0; i < p->nworkers; i++) {
        wake_loop_locked(p->slots[i], all);
    }
    for (ip_slot *slot = p->aside; all && slot != NULL; slot = slot->next_aside) {
        wake_loop_locked(slot, all);
    }
}

/* Append tasks (linked through ->next, already QUEUED); mu held.  Returns
 * how many sleeping workers to wake once mu is released (*all: every one). */
static Py_ssize_t
append_locked(ip_pool *p, ip_task *first, ip_task *last, Py_ssize_t n, int *all)
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
    atomic_store_explicit(&p->last_enqueue_ns, ip_now_ns(), memory_order_relaxed);
    atomic_store_explicit(&p->has_work, 1, memory_order_release);
    if (p->concurrency > 1) {
        wake_loops_locked(p, 0);
    }
    /* A spinning worker takes a task without a wake-up (or finds it under
     * mu when its spin ends): wake sleepers only for what spinners leave. */
    Py_ssize_t wake = p->nqueued - atomic_load(&p->spinning);
    if (wake > n) {
        wake = n;
    }
    if (wake > p->sleepers) {
        wake = p->sleepers;
    }
    *all = wake > 0 && wake == p->sleepers;
    return wake > 0 ? wake : 0;
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

static void unlist_running_locked(ip_pool *p, ip_task *t);

/* Take `slot`'s finished tasks off the running list; mu held. */
static void
reap_locked(ip_pool *p, ip_slot *slot)
{
    IP_ASSERT_LOCKED(&p->mu);
    while (slot->finished != NULL) {
        ip_task *t = slot->finished;
        slot->finished = t->fin_next;
        t->fin_next = NULL;
        unlist_running_locked(p, t);
        ip_task_decref(t);   /* the running list's reference */
    }
}

/* Take t off the running list now; its reference is the caller's; mu held. */
static void
unlist_running_locked(ip_pool *p, ip_task *t)
{
    IP_ASSERT_LOCKED(&p->mu);
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
    t->run_prev = t->run_next = NULL;
}

/* The next task for `slot` (RUNNING, on the running list), unless the
 * slot's interpreter has no budget left; mu held. */
static ip_task *
pop_locked(ip_pool *p, ip_slot *slot)
{
    IP_ASSERT_LOCKED(&p->mu);
    reap_locked(p, slot);
    ip_task *t = p->head;
    if (t == NULL || slot->budget == 0 || slot->aside) {
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
ip_pool_task_done(ip_pool *p, ip_slot *slot, ip_task *t)
{
    (void)p;
    assert(atomic_load(&t->state) == IP_RUNNING);
    t->fin_next = slot->finished;
    slot->finished = t;
}

void
ip_pool_slot_reap(ip_pool *p, ip_slot *slot)
{
    pthread_mutex_lock(&p->mu);
    reap_locked(p, slot);
    pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------ the watch
 *
 * A stop lands in running code only at its next bytecode: a call stuck in
 * C (time.sleep, a socket read, a regex that backtracks for minutes) holds
 * it until the call returns, and one that holds its GIL keeps even the
 * control thread waiting.  The watch, a thread that never takes a GIL,
 * gives each stopped call IP_STOP_GRACE_NS; then it takes the call over:
 * it claims the slot's `calling` (the worker learns it when the call
 * returns, and discards what it made), delivers the task (its stop reason
 * says how its future fails), and sets the worker aside: a fresh record
 * and a fresh thread (new interpreter, initializer run) take its index, so
 * the pool keeps its capacity, while the old thread finishes what it holds
 * and ends its interpreter itself once the call returns.  Set-aside
 * threads count apart (p->aside, the owner's `aside`): joins and the exit
 * do not wait for them. */

static void *watch_main(void *arg);

/* Make sure the watch looks at the running calls now (started on first
 * need; if it cannot start, stopped calls keep their futures until they
 * return, as before); mu held. */
static void
watch_locked(ip_pool *p)
{
    IP_ASSERT_LOCKED(&p->mu);
    if (!p->watch_started) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);   /* runs no Python */
        p->watch_started = pthread_create(&p->watch, &attr, watch_main, p) == 0;
        pthread_attr_destroy(&attr);
    }
    p->watch_kicks++;
    pthread_cond_signal(&p->watch_wake);
}

typedef struct {
    ip_pool *p;
    unsigned seen;
} watch_arg;

static int
watch_woken(void *arg)
{
    watch_arg *a = arg;
    return a->p->watch_stop || a->p->watch_kicks != a->seen;
}

void
ip_pool_watch(ip_pool *p)
{
    pthread_mutex_lock(&p->mu);
    watch_locked(p);
    pthread_mutex_unlock(&p->mu);
}

/* Set the worker of `slot` aside (its call was just taken over): `spare`
 * becomes the index's record and a fresh thread starts for it unless the
 * pool has no more use for one.  1 if the pool has no worker left that
 * could run its queue (the caller breaks it); mu held. */
static int
set_aside_locked(ip_pool *p, ip_slot *slot, ip_slot *spare)
{
    IP_ASSERT_LOCKED(&p->mu);
    slot->aside = 1;
    slot->waiting = 0;
    slot->next_aside = p->aside;
    p->aside = slot;
    p->naside++;
    spare->index = slot->index;
    p->slots[slot->index] = spare;
    p->nlive--;
    ip_owner_set_aside(p->owner);
    int stranded = 0;
    if (!p->broken && (!p->stopping || p->head != NULL)) {
        stranded = p->replace(p, spare->index) < 0 && p->nlive == 0;
    }
    pthread_cond_broadcast(&p->changed);
    return stranded;
}

/* Take over the call running in `slot` if it was asked to stop more than
 * the grace ago.  A task taken over is pushed on *taken (by ->next; its
 * running-list reference becomes its pipeline reference); *due gets the
 * next moment to look again.  Returns 1 if the pool is left without a
 * worker (see set_aside_locked); mu held. */
static int
take_over_locked(ip_pool *p, ip_slot *slot, int64_t now, int64_t *due, ip_slot **spare,
                 ip_task **taken)
{
    IP_ASSERT_LOCKED(&p->mu);
    /* A task in `calling` is on the running list, which only a holder of
     * mu takes it off: it cannot be freed while we look at it. */
    ip_task *cur = atomic_load(&slot->calling);
    int64_t since = 0;
    if (cur == IP_CALL_INIT) {
        since = p->interrupt_at_ns;
    }
    else if (cur != NULL && cur != IP_CALL_TAKEN &&
             atomic_load(&cur->stop_reason) != IP_STOP_NONE) {
        since = atomic_load(&cur->stop_at_ns);
    }
    if (since == 0) {
        return 0;
    }
    int64_t end = since + atomic_load_explicit(&ip_stop_grace_ns, memory_order_relaxed);
    if (end > now) {
        if (end < *due) {
            *due = end;
        }
        return 0;
    }
    if (!slot->aside && *spare == NULL) {
        *due = now;   /* the record its replacement needs first */
        return 0;
    }
    if (!atomic_compare_exchange_strong(&slot->calling, &cur, IP_CALL_TAKEN)) {
        return 0;   /* it returned just now: its worker delivers it */
    }
    if (cur != IP_CALL_INIT) {
        unlist_running_locked(p, cur);
        cur->status = IP_TASK_ERROR;   /* how it fails: its stop reason */
        cur->result.len = 0;
        ip_task_set_state(cur, IP_RUNNING, IP_DONE);
        cur->next = *taken;
        *taken = cur;
    }
    if (slot->aside) {
        return 0;   /* already set aside: only its call is taken over */
    }
    int stranded = set_aside_locked(p, slot, *spare);
    *spare = NULL;
    return stranded;
}

static void *
watch_main(void *arg)
{
    ip_pool *p = arg;   /* no reference: ip_pool_decref ends this thread first */
    ip_slot *spare = slot_new(-1);
    pthread_mutex_lock(&p->mu);
    while (!p->watch_stop) {
        watch_arg woken = {p, p->watch_kicks};
        int64_t now = ip_now_ns(), due = INT64_MAX;
        ip_task *taken = NULL;
        int stranded = 0;
        for (int i = 0; i < p->nworkers; i++) {
            stranded |= take_over_locked(p, p->slots[i], now, &due, &spare, &taken);
        }
        for (ip_slot *slot = p->aside; slot != NULL; slot = slot->next_aside) {
            stranded |= take_over_locked(p, slot, now, &due, &spare, &taken);
        }
        if (taken != NULL || stranded || spare == NULL) {
            pthread_mutex_unlock(&p->mu);
            while (taken != NULL) {
                ip_task *t = taken;
                taken = t->next;
                t->next = NULL;
                ip_task_deliver(t);
            }
            if (stranded) {
                const char *msg = "interpool: could not start a worker thread to replace "
                                  "one stuck in a C call";
                ip_pool_break(p, msg, (Py_ssize_t)strlen(msg));
            }
            if (spare == NULL && (spare = slot_new(-1)) == NULL) {
                struct timespec pause = {0, 10 * 1000 * 1000};   /* out of memory: later */
                nanosleep(&pause, NULL);
            }
            pthread_mutex_lock(&p->mu);
            continue;
        }
        ip_deadline until;
        if (due == INT64_MAX) {
            ip_deadline_in(&until, -1);
        }
        else {
            ip_deadline_in(&until, (double)(due - now) / 1e9);
        }
        /* Until a new stop (ip_pool_watch) or the end of the first grace. */
        (void)ip_wait(&p->mu, &p->watch_wake, watch_woken, &woken, &until, NULL);
    }
    pthread_mutex_unlock(&p->mu);
    PyMem_RawFree(spare);
    return NULL;
}

void
ip_pool_aside_exited(ip_pool *p, ip_slot *slot)
{
    pthread_mutex_lock(&p->mu);
    assert(slot->aside && slot->finished == NULL);
    for (ip_slot **link = &p->aside; *link != NULL; link = &(*link)->next_aside) {
        if (*link == slot) {
            *link = slot->next_aside;
            break;
        }
    }
    p->naside--;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    slot_free(slot);
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
        slot->control = ip_control_start(slot->interp, slot->hooks, slot->hooks_arg);
    }
    if (slot->control != NULL) {
        ip_control_request(slot->control, t);
    }
    watch_locked(p);   /* in case its call is stuck in C */
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
    Py_ssize_t wake = 0;
    int all = 0;
    lock_clock lc;
    queue_lock(p, &lc);
    int rc = p->broken ? IP_ERR_BROKEN : p->stopping ? IP_ERR_STOPPED : IP_OK;
    if (rc == IP_OK) {
        wake = append_locked(p, first, last, n, &all);
    }
    queue_unlock(p, &lc, LOCK_ENQUEUE);
    /* After unlocking, so a woken worker does not block on mu at once (the
     * caller's reference keeps p alive). */
    if (all) {
        pthread_cond_broadcast(&p->work);
    }
    else {
        for (Py_ssize_t i = 0; i < wake; i++) {
            pthread_cond_signal(&p->work);
        }
    }
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
ip_pool_take(ip_pool *p, ip_slot *slot, Py_ssize_t n, Py_ssize_t *count)
{
    ip_task *taken = NULL, **tail = &taken;
    Py_ssize_t got = 0;
    lock_clock lc;
    queue_lock(p, &lc);
    while (got < n) {
        ip_task *t = pop_locked(p, slot);
        if (t == NULL) {
            break;
        }
        *tail = t;
        tail = &t->next;
        got++;
    }
    slot->waiting = got < n && !p->stopping && slot->budget != 0 && !slot->aside;
    queue_unlock(p, &lc, LOCK_TAKE);
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
           a->slot->budget == 0 || a->slot->aside;
}

/* Why worker `slot` got no task; mu held. */
static int
why_none_locked(ip_pool *p, ip_slot *slot)
{
    if (slot->aside) {
        return IP_NEXT_ASIDE;
    }
    if (slot->budget == 0 && !p->broken && (!p->stopping || p->head != NULL)) {
        return IP_NEXT_RECYCLE;   /* a fresh interpreter takes over */
    }
    return p->stopping ? IP_NEXT_STOP : IP_NEXT_UPKEEP;
}

ip_task *
ip_pool_next_task(ip_pool *p, ip_slot *slot, unsigned *wake_seen, int *why)
{
    ip_task *t;
    lock_clock lc;
    queue_lock(p, &lc);
    t = pop_locked(p, slot);
    *why = t ? IP_NEXT_UPKEEP : why_none_locked(p, slot);
    queue_unlock(p, &lc, LOCK_TAKE);
    if (t != NULL || *why != IP_NEXT_UPKEEP) {
        return t;
    }
    Py_BEGIN_ALLOW_THREADS
    /* Idle: spin for the next task only where it pays (a spare core, and
     * tasks have come soon after a worker went idle), else sleep at once. */
    int64_t start = ip_now_ns();
    atomic_store_explicit(&p->idle_start_ns, start, memory_order_relaxed);
    int spin = ip_spin_pays(&p->idle_history);
    if (spin) {
        atomic_fetch_add(&p->spinning, 1);
        (void)ip_spin_while_zero(&p->has_work);
        atomic_fetch_sub(&p->spinning, 1);
    }
    idle_arg arg = {p, slot, *wake_seen};
    ip_deadline never = {.forever = 1};
    queue_lock(p, &lc);
    p->idle_spins += spin;
    if (!idle_wakes(&arg)) {
        p->idle_sleeps++;
        p->sleepers++;
        atomic_fetch_sub(&ip_busy_workers, 1);   /* asleep: its core is spare */
        (void)ip_wait(&p->mu, &p->work, idle_wakes, &arg, &never, NULL);
        atomic_fetch_add(&ip_busy_workers, 1);
        p->sleepers--;
        queue_relocked(&lc);
    }
    t = pop_locked(p, slot);
    if (t != NULL) {
        /* Timed from when the pool's latest worker went idle (if before the
         * task came): a sleeper woken after another worker went idle would
         * count that one's turn as its own wait, and two workers taking
         * turns on one call at a time would never learn to spin. */
        int64_t arrived = atomic_load_explicit(&p->last_enqueue_ns, memory_order_relaxed);
        int64_t latest = atomic_load_explicit(&p->idle_start_ns, memory_order_relaxed);
        ip_history_add(&p->idle_history, latest > start && latest <= arrived ? latest : start,
                       arrived);
    }
    *why = t ? IP_NEXT_UPKEEP : why_none_locked(p, slot);
    *wake_seen = p->wake_seq;
    queue_unlock(p, &lc, LOCK_TAKE);
    Py_END_ALLOW_THREADS
    return t;
}

ip_slot *
ip_pool_slot(ip_pool *p, int index)
{
    pthread_mutex_lock(&p->mu);
    ip_slot *slot = p->slots[index];
    pthread_mutex_unlock(&p->mu);
    return slot;
}

void
ip_pool_slot_attach(ip_pool *p, ip_slot *slot, PyInterpreterState *interp,
                    const ip_control_hooks *hooks, void *arg)
{
    pthread_mutex_lock(&p->mu);
    assert(slot->interp == NULL && slot->control == NULL);
    slot->interp = interp;
    slot->hooks = hooks;
    slot->hooks_arg = arg;
    slot->budget = p->max_tasks > 0 ? p->max_tasks : -1;
    pthread_mutex_unlock(&p->mu);
}

ip_control *
ip_pool_slot_detach(ip_pool *p, ip_slot *slot)
{
    pthread_mutex_lock(&p->mu);
    ip_control *c = slot->control;
    slot->control = NULL;
    slot->interp = NULL;
    slot->hooks = NULL;
    slot->hooks_arg = NULL;
    pthread_mutex_unlock(&p->mu);
    return c;
}

ip_control *
ip_pool_slot_control(ip_pool *p, ip_slot *slot)
{
    pthread_mutex_lock(&p->mu);
    if (slot->control == NULL && slot->interp != NULL) {
        slot->control = ip_control_start(slot->interp, slot->hooks, slot->hooks_arg);
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
        if (p->interrupt_at_ns == 0) {
            p->interrupt_at_ns = ip_now_ns();
        }
        for (int i = 0; i < p->nworkers; i++) {
            ip_slot *slot = p->slots[i];
            if (atomic_load(&slot->calling) == IP_CALL_INIT) {
                watch_locked(p);   /* in case it is stuck in C */
            }
            if (slot->interp != NULL && slot->control == NULL) {
                slot->control = ip_control_start(slot->interp, slot->hooks, slot->hooks_arg);
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

/* ------------------------------------------------------------ creating interpreters */

/* Interpreters created at once, per pool: one per core.  Creating one is
 * CPU work (8-11 ms), so more at a time gains nothing; and when memory
 * runs out, each creation that fails prints CPython's own "Exception
 * ignored" block, so after the first failure (which breaks the pool) the
 * threads still waiting create none. */
static int
max_creating(void)
{
    static atomic_int n;
    if (atomic_load_explicit(&n, memory_order_relaxed) == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        atomic_store_explicit(&n, cpus > 2 ? (int)cpus : 2, memory_order_relaxed);
    }
    return atomic_load_explicit(&n, memory_order_relaxed);
}

/* No new interpreter is needed: the pool broke, or stops with nothing left
 * to run; mu held. */
static int
unneeded_locked(ip_pool *p)
{
    return p->broken || (p->stopping && p->head == NULL);
}

static int
may_create(void *arg)
{
    ip_pool *p = arg;
    return p->creating < max_creating() || unneeded_locked(p);
}

int
ip_pool_begin_create(ip_pool *p)
{
    ip_deadline never = {.forever = 1};
    pthread_mutex_lock(&p->mu);
    (void)ip_wait(&p->mu, &p->changed, may_create, p, &never, NULL);
    int unneeded = unneeded_locked(p);
    if (!unneeded) {
        p->creating++;
    }
    pthread_mutex_unlock(&p->mu);
    return unneeded ? IP_ERR_STOPPED : IP_OK;
}

void
ip_pool_end_create(ip_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->creating--;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
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

static int
all_gone(void *arg)
{
    ip_pool *p = arg;
    return p->nlive == 0 && p->aside == NULL;
}

/* Wait until ready(p), as workers change (p->changed). */
static int
wait_changed(ip_pool *p, int (*ready)(void *), const ip_deadline *deadline,
             const ip_interrupt *intr)
{
    pthread_mutex_lock(&p->mu);
    int rc = ip_wait(&p->mu, &p->changed, ready, p, deadline, intr);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int
ip_pool_wait_ready(ip_pool *p, const ip_deadline *deadline, const ip_interrupt *intr)
{
    return wait_changed(p, ready_or_done, deadline, intr);
}

int
ip_pool_wait_exited(ip_pool *p, const ip_deadline *deadline, const ip_interrupt *intr)
{
    return wait_changed(p, all_exited, deadline, intr);
}

int
ip_pool_wait_gone(ip_pool *p, const ip_deadline *deadline, const ip_interrupt *intr)
{
    return wait_changed(p, all_gone, deadline, intr);
}

/* ------------------------------------------------------------ worker slots */

int
ip_pool_slot_fd(ip_pool *p, ip_slot *slot)
{
    pthread_mutex_lock(&p->mu);
    if (slot->efd < 0) {
        slot->efd = ip_efd_new();
    }
    int fd = slot->efd;
    pthread_mutex_unlock(&p->mu);
    return fd;
}

void
ip_pool_slot_clear(ip_pool *p, ip_slot *slot)
{
    pthread_mutex_lock(&p->mu);
    int fd = slot->efd;
    pthread_mutex_unlock(&p->mu);
    if (fd >= 0) {
        ip_efd_clear(fd);
    }
}

void
ip_pool_slot_close(ip_pool *p, ip_slot *slot)
{
    pthread_mutex_lock(&p->mu);
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
ip_pool_slot_done(ip_pool *p, ip_slot *slot)
{
    pthread_mutex_lock(&p->mu);
    int done = (p->stopping && p->nqueued == 0) || slot->budget == 0 || slot->aside;
    pthread_mutex_unlock(&p->mu);
    return done;
}

int
ip_pool_slot_next(ip_pool *p, ip_slot *slot)
{
    pthread_mutex_lock(&p->mu);
    int why = why_none_locked(p, slot);
    pthread_mutex_unlock(&p->mu);
    return why == IP_NEXT_UPKEEP ? IP_NEXT_RECYCLE : why;   /* (serve ended early) */
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
