/* The worker pool: OS threads that each own one isolated interpreter.
 *
 * A PoolCore (main side) owns a raw ip_pool: a FIFO of tasks behind one
 * mutex, shared by every worker.  Workers pop a task, call the function in
 * their own interpreter, encode the result into the task's raw buffer and
 * push it to the task's sink.  Lock order: nobody waits for a GIL while
 * holding pool->mu (workers release their GIL before sleeping on it).
 */
#include "_pool.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static atomic_long live_pools;
atomic_long ip_live_workers;

ip_owner *
ip_owner_new(void)
{
    ip_owner *o = PyMem_RawCalloc(1, sizeof(ip_owner));
    if (o != NULL) {
        atomic_init(&o->refcnt, 1);
        pthread_mutex_init(&o->mu, NULL);
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&o->exited, &attr);
        pthread_condattr_destroy(&attr);
    }
    return o;
}

void
ip_owner_decref(ip_owner *o)
{
    if (atomic_fetch_sub_explicit(&o->refcnt, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&o->mu);
        pthread_cond_destroy(&o->exited);
        PyMem_RawFree(o);
    }
}
extern atomic_long ip_live_tasks;

/* ------------------------------------------------------------ raw pool */

/* Every live pool, so a released shared value can wake all their workers. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static ip_pool *live_head;

static void wake_loops_locked(ip_pool *p, int all);

static void
wake_pool(ip_pool *p)
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
        wake_pool(p);
    }
    pthread_mutex_unlock(&live_mu);
}

static ip_pool *
pool_new(void)
{
    ip_pool *p = PyMem_RawCalloc(1, sizeof(ip_pool));
    if (p == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&live_mu);
    p->next_live = live_head;
    if (live_head != NULL) {
        live_head->prev_live = p;
    }
    live_head = p;
    pthread_mutex_unlock(&live_mu);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->work, &attr);
    pthread_cond_init(&p->changed, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&p->refcnt, 1);
    atomic_fetch_add(&live_pools, 1);
    return p;
}

void
ip_pool_decref(ip_pool *p)
{
    if (atomic_fetch_sub_explicit(&p->refcnt, 1, memory_order_acq_rel) != 1) {
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
    /* Workers drain the queue before exiting, so it is empty here. */
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
    if (p->owner != NULL) {
        ip_owner_decref(p->owner);
    }
    ip_buf_free(&p->broken_msg);
    PyMem_RawFree(p->slots);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->changed);
    PyMem_RawFree(p);
    atomic_fetch_sub(&live_pools, 1);
}

void
ip_write_efd(int efd)
{
    uint64_t one = 1;
    while (write(efd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

/* Wake the event loops of workers waiting for tasks (all: stop); mu held. */
static void
wake_loops_locked(ip_pool *p, int all)
{
    if (p->slots == NULL) {
        return;
    }
    for (int i = 0; i < p->nworkers; i++) {
        ip_slot *slot = &p->slots[i];
        if (slot->efd >= 0 && (all || slot->waiting)) {
            slot->waiting = 0;
            ip_write_efd(slot->efd);
        }
    }
}

/* Append tasks (linked through ->next, already in QUEUED state); mu held. */
static void
queue_append_locked(ip_pool *p, ip_task *first, ip_task *last, Py_ssize_t n)
{
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
queue_unlink_locked(ip_pool *p, ip_task *t)
{
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
    if (p->nqueued == 0) {
        atomic_store_explicit(&p->has_work, 0, memory_order_relaxed);
    }
}

ip_task *
ip_queue_pop_locked(ip_pool *p)
{
    ip_task *t = p->head;
    if (t != NULL) {
        queue_unlink_locked(p, t);
        atomic_store_explicit(&t->state, IP_RUNNING, memory_order_release);
    }
    return t;
}

/* Detach the whole queue; mu held. */
static ip_task *
queue_take_all_locked(ip_pool *p)
{
    ip_task *t = p->head;
    p->head = p->tail = NULL;
    p->nqueued = 0;
    atomic_store_explicit(&p->has_work, 0, memory_order_relaxed);
    return t;
}

/* Deliver detached tasks with `status`; `msg` (may be NULL) becomes each result. */
static void
deliver_dropped(ip_task *t, int status, const ip_buf *msg)
{
    while (t != NULL) {
        ip_task *next = t->next;
        t->prev = t->next = NULL;
        ip_buf_free(&t->payload);   /* never runs: unpin its arguments now */
        t->status = status;
        t->result.len = 0;
        if (msg != NULL && msg->len) {
            (void)ip_buf_append(&t->result, msg->data, msg->len);
        }
        atomic_store(&t->state, IP_DONE);
        ip_sink_push(t->sink, t);
        t = next;
    }
}

/* Mark the pool broken (first reason wins) and fail every queued task. */
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
    ip_task *dropped = queue_take_all_locked(p);
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->changed);
    wake_loops_locked(p, 1);
    pthread_mutex_unlock(&p->mu);
    deliver_dropped(dropped, IP_BROKEN, &p->broken_msg);
}

/* ------------------------------------------------------------ TaskHandle */

typedef struct {
    PyObject_HEAD
    ip_task *task;
    ip_pool *pool;
    ip_completions *completions;   /* strong: where the task's owner is bound */
} TaskHandleObject;

static void
handle_dealloc(PyObject *op)
{
    TaskHandleObject *self = (TaskHandleObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->task != NULL) {
        ip_task_decref(self->task);
    }
    Py_XDECREF(self->completions);
    ip_pool_decref(self->pool);
    tp->tp_free(op);
    Py_DECREF(tp);
}

PyDoc_STRVAR(handle_cancel_doc,
"cancel($self, interrupt=False, /)\n--\n\n"
"Remove the task from the queue if no worker has started it.  If it runs\n"
"and interrupt is true, a coroutine task is cancelled in its worker.\n"
"Return True\n"
"if it was removed (it will never run and its future is forgotten).");

static PyObject *
handle_cancel(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    TaskHandleObject *self = (TaskHandleObject *)op;
    ip_task *t = self->task;
    ip_pool *p = self->pool;
    int removed = 0, interrupt = 0;
    if (nargs > 1 || (nargs == 1 && (interrupt = PyObject_IsTrue(args[0])) < 0)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "cancel() takes at most 1 argument");
        }
        return NULL;
    }
    pthread_mutex_lock(&p->mu);
    if (atomic_load(&t->state) == IP_QUEUED && (t->prev || p->head == t)) {
        queue_unlink_locked(p, t);
        atomic_store(&t->state, IP_DROPPED);
        removed = 1;
    }
    else if (interrupt && atomic_load(&t->state) == IP_RUNNING) {
        /* A running coroutine gets CancelledError at its current await. */
        atomic_store(&t->cancel_requested, 1);
        ip_slot *slot = t->slot;
        if (slot != NULL && slot->efd >= 0) {
            ip_write_efd(slot->efd);
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (removed) {
        ip_buf_free(&t->payload);   /* never runs: unpin its arguments now */
        ip_completions_unbind(self->completions, t->seq);
        ip_sink_expect(t->sink, -1);
        ip_task_decref(t);   /* the pipeline reference */
    }
    return PyBool_FromLong(removed);
}

static PyObject *
handle_get_running(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(atomic_load(&((TaskHandleObject *)op)->task->state) == IP_RUNNING);
}

static PyObject *
handle_get_state(PyObject *op, void *Py_UNUSED(closure))
{
    static const char *names[] = {"queued", "running", "done", "dropped"};
    int s = atomic_load(&((TaskHandleObject *)op)->task->state);
    return PyUnicode_FromString(names[s & 3]);
}

static PyMethodDef handle_methods[] = {
    {"cancel", (PyCFunction)(void (*)(void))handle_cancel, METH_FASTCALL, handle_cancel_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef handle_getset[] = {
    {"running", handle_get_running, NULL, "Whether a worker is running the task now.", NULL},
    {"state", handle_get_state, NULL, "'queued', 'running', 'done' or 'dropped'.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_doc, (void *)"A submitted task: lets its submitter cancel it before it starts."},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, handle_getset},
    {0, NULL},
};

static PyType_Spec handle_spec = {
    .name = "interpool._core.TaskHandle",
    .basicsize = sizeof(TaskHandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = handle_slots,
};

/* ------------------------------------------------------------ PoolCore */

typedef struct {
    PyObject_HEAD
    ip_pool *pool;
} PoolCoreObject;

static PyObject *
poolcore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"workers", "sys_path", NULL};
    int workers;
    PyObject *path;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO!:PoolCore", kwlist,
                                     &workers, &PyList_Type, &path)) {
        return NULL;
    }
    if (workers < 1) {
        PyErr_SetString(PyExc_ValueError, "workers must be at least 1");
        return NULL;
    }
    PoolCoreObject *self = (PoolCoreObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    ip_pool *p = self->pool = pool_new();
    if (p == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    ip_state *st = ip_state_of_type(type);
    if (st == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    atomic_fetch_add(&st->owner->refcnt, 1);
    p->owner = st->owner;
    p->nworkers = workers;
    p->concurrency = 1;
    p->loop_factory = -1;
    Py_ssize_t n = PyList_GET_SIZE(path);
    p->sys_path = PyMem_RawCalloc(n ? n : 1, sizeof(char *));
    if (p->sys_path == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(path, i), *enc;
        if (!PyUnicode_Check(item) || (enc = PyUnicode_EncodeFSDefault(item)) == NULL) {
            PyErr_Clear();
            continue;   /* sys.path may hold odd entries; workers skip them */
        }
        Py_ssize_t len = PyBytes_GET_SIZE(enc);
        char *s = PyMem_RawMalloc(len + 1);
        if (s == NULL) {
            Py_DECREF(enc);
            Py_DECREF(self);
            return PyErr_NoMemory();
        }
        memcpy(s, PyBytes_AS_STRING(enc), len + 1);
        Py_DECREF(enc);
        p->sys_path[p->n_path++] = s;
    }
    return (PyObject *)self;
}

static void
pool_stop(ip_pool *p, int cancel, int cancel_running)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    p->cancel_running |= cancel_running;
    ip_task *dropped = cancel ? queue_take_all_locked(p) : NULL;
    pthread_cond_broadcast(&p->work);
    wake_loops_locked(p, 1);
    pthread_mutex_unlock(&p->mu);
    deliver_dropped(dropped, IP_CANCELLED, NULL);
}

static void
poolcore_dealloc(PyObject *op)
{
    PoolCoreObject *self = (PoolCoreObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->pool != NULL) {
        if (!self->pool->started) {
            /* never started: nobody else will drain the queue */
            pool_stop(self->pool, 1, 1);
        }
        else {
            pool_stop(self->pool, 0, 0);   /* workers finish the queue, then exit */
        }
        ip_pool_decref(self->pool);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

static ip_pool *
get_pool(PyObject *op)
{
    return ((PoolCoreObject *)op)->pool;
}

PyDoc_STRVAR(register_doc,
"register($self, ref, /)\n--\n\n"
"Record how workers load a callable (any codec value, handed to\n"
"interpool._support.load_callable in the worker); return its id.");

static PyObject *
poolcore_register(PyObject *op, PyObject *ref)
{
    ip_pool *p = get_pool(op);
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    ip_buf b = {0};
    if (ip_encode(st, &b, ref) < 0) {
        ip_buf_free(&b);
        return NULL;
    }
    pthread_mutex_lock(&p->mu);
    if (p->nfns == p->capfns) {
        uint32_t cap = p->capfns ? p->capfns * 2 : 16;
        ip_buf *fns = PyMem_RawRealloc(p->fns, cap * sizeof(ip_buf));
        if (fns == NULL) {
            pthread_mutex_unlock(&p->mu);
            ip_buf_free(&b);
            return PyErr_NoMemory();
        }
        p->fns = fns;
        p->capfns = cap;
    }
    uint32_t id = p->nfns++;
    p->fns[id] = b;
    pthread_mutex_unlock(&p->mu);
    return PyLong_FromUnsignedLong(id);
}

static int
encode_call(ip_state *st, ip_buf *b, PyObject *args, PyObject *kwargs)
{
    if (ip_encode(st, b, args) < 0) {
        return -1;
    }
    if (kwargs != NULL && kwargs != Py_None && PyDict_GET_SIZE(kwargs) > 0) {
        return ip_encode(st, b, kwargs);
    }
    return ip_encode(st, b, Py_None);
}

PyDoc_STRVAR(set_initializer_doc,
"set_initializer($self, fn_id, args, /)\n--\n\n"
"Run fn(*args) in each worker before its first task (call before start()).");

static PyObject *
poolcore_set_initializer(PyObject *op, PyObject *args)
{
    ip_pool *p = get_pool(op);
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    unsigned int fn_id;
    PyObject *initargs;
    if (st == NULL || !PyArg_ParseTuple(args, "IO!:set_initializer", &fn_id,
                                        &PyTuple_Type, &initargs)) {
        return NULL;
    }
    if (p->started) {
        PyErr_SetString(PyExc_RuntimeError, "the pool has already started");
        return NULL;
    }
    ip_buf_free(&p->init_payload);
    if (encode_call(st, &p->init_payload, initargs, NULL) < 0) {
        return NULL;
    }
    p->init_fn = fn_id;
    p->has_init = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(configure_doc,
"configure($self, concurrency, loop_factory_id, /)\n--\n\n"
"Coroutines per worker (1: the C loop) and the fn id of the workers'\n"
"event loop factory (-1: asyncio's default).  Call before start().");

static PyObject *
poolcore_configure(PyObject *op, PyObject *args)
{
    ip_pool *p = get_pool(op);
    int concurrency;
    long loop_factory;
    if (!PyArg_ParseTuple(args, "il:configure", &concurrency, &loop_factory)) {
        return NULL;
    }
    if (p->started) {
        PyErr_SetString(PyExc_RuntimeError, "the pool has already started");
        return NULL;
    }
    if (concurrency < 1) {
        PyErr_SetString(PyExc_ValueError, "concurrency must be at least 1");
        return NULL;
    }
    p->concurrency = concurrency;
    p->loop_factory = loop_factory;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_setup_doc,
"set_setup($self, config, /)\n--\n\n"
"A codec value each worker passes to interpool._support.worker_setup\n"
"before anything else (call before start()).");

static PyObject *
poolcore_set_setup(PyObject *op, PyObject *config)
{
    ip_pool *p = get_pool(op);
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    if (p->started) {
        PyErr_SetString(PyExc_RuntimeError, "the pool has already started");
        return NULL;
    }
    ip_buf_free(&p->setup_payload);
    if (ip_encode(st, &p->setup_payload, config) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(start_doc,
"start($self, /)\n--\n\n"
"Start the worker threads; each creates its interpreter in parallel.");

static PyObject *
poolcore_start(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ip_pool *p = get_pool(op);
    if (p->started) {
        Py_RETURN_NONE;
    }
    p->started = 1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 16 * 1024 * 1024);
    int failed = 0;
    p->slots = PyMem_RawCalloc(p->nworkers, sizeof(ip_slot));
    if (p->slots == NULL) {
        pthread_attr_destroy(&attr);
        return PyErr_NoMemory();
    }
    for (int i = 0; i < p->nworkers; i++) {
        p->slots[i].efd = -1;
    }
    for (int i = 0; i < p->nworkers; i++) {
        pthread_t th;
        ip_worker_start *start = PyMem_RawMalloc(sizeof(ip_worker_start));
        if (start == NULL) {
            failed++;
            continue;
        }
        start->pool = p;
        start->index = i;
        atomic_fetch_add(&p->refcnt, 1);
        atomic_fetch_add(&p->owner->refcnt, 1);
        pthread_mutex_lock(&p->owner->mu);
        p->owner->live++;
        pthread_mutex_unlock(&p->owner->mu);
        pthread_mutex_lock(&p->mu);
        p->nlive++;
        pthread_mutex_unlock(&p->mu);
        atomic_fetch_add(&ip_live_workers, 1);
        if (pthread_create(&th, &attr, ip_worker_main, start) != 0) {
            PyMem_RawFree(start);
            pthread_mutex_lock(&p->owner->mu);
            p->owner->live--;
            pthread_mutex_unlock(&p->owner->mu);
            ip_owner_decref(p->owner);
            pthread_mutex_lock(&p->mu);
            p->nlive--;
            pthread_mutex_unlock(&p->mu);
            atomic_fetch_sub(&ip_live_workers, 1);
            atomic_fetch_sub(&p->refcnt, 1);
            failed++;
        }
    }
    pthread_attr_destroy(&attr);
    if (failed == p->nworkers) {
        const char *msg = "interpool: could not start any worker thread";
        ip_pool_break(p, msg, (Py_ssize_t)strlen(msg));
    }
    Py_RETURN_NONE;
}

/* Raise the error that submitting to a stopped or broken pool gets. */
static PyObject *
refuse(ip_state *st, ip_pool *p)
{
    if (p->broken) {
        PyObject *msg = PyUnicode_DecodeUTF8(p->broken_msg.data, p->broken_msg.len, "replace");
        PyObject *make = msg ? ip_support_attr(st, "broken_error") : NULL;
        PyObject *exc = make ? PyObject_CallOneArg(make, msg) : NULL;
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        }
        Py_XDECREF(exc);
        Py_XDECREF(make);
        Py_XDECREF(msg);
        return NULL;
    }
    PyErr_SetString(PyExc_RuntimeError, "cannot schedule new futures after shutdown");
    return NULL;
}

static ip_task *
make_task(ip_state *st, ip_sink *sink, uint32_t fn_id, int kind,
          PyObject *args, PyObject *kwargs)
{
    ip_task *t = ip_task_new();
    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    t->fn_id = fn_id;
    t->kind = kind;
    int saved = ip_tls_share_buffers;
    ip_tls_share_buffers = 1;   /* buffers in arguments travel zero-copy */
    int rc = encode_call(st, &t->payload, args, kwargs);
    ip_tls_share_buffers = saved;
    if (rc < 0) {
        ip_task_decref(t);
        return NULL;
    }
    ip_sink_incref(sink);
    t->sink = sink;
    return t;
}

/* Free tasks that will never run, forgetting their owners (if any). */
static void
discard_tasks(ip_completions *c, ip_task *t)
{
    while (t != NULL) {
        ip_task *next = t->next;
        if (c != NULL) {
            ip_completions_unbind(c, t->seq);
        }
        ip_buf_free(&t->payload);
        ip_task_decref(t);
        t = next;
    }
}

/* Queue a chain of n tasks; -1 (chain freed, exception set) if refused. */
static int
enqueue(ip_state *st, ip_pool *p, ip_completions *c,
        ip_task *first, ip_task *last, Py_ssize_t n)
{
    pthread_mutex_lock(&p->mu);
    if (p->stopping || p->broken) {
        pthread_mutex_unlock(&p->mu);
        discard_tasks(c, first);
        (void)refuse(st, p);
        return -1;
    }
    queue_append_locked(p, first, last, n);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

PyDoc_STRVAR(submit_doc,
"submit($self, fn_id, args, kwargs, sink, owner, /)\n--\n\n"
"Queue fn(*args, **kwargs); its result resolves the future `owner` when\n"
"`sink` (a Completions) resolves.\n"
"Return a TaskHandle.");

static PyObject *
poolcore_submit(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ip_pool *p = get_pool(op);
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "submit() takes exactly 5 arguments");
        return NULL;
    }
    long fn_id = PyLong_AsLong(args[0]);
    if (fn_id == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyTuple_Check(args[1]) || (args[2] != Py_None && !PyDict_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "submit() needs an args tuple and a kwargs dict or None");
        return NULL;
    }
    ip_completions *c = ip_completions_check(st, args[3]);
    if (c == NULL) {
        return NULL;
    }
    ip_sink *sink = c->sink;
    if (p->stopping || p->broken) {
        return refuse(st, p);
    }
    ip_release_deferred();
    TaskHandleObject *h = PyObject_New(TaskHandleObject, st->TaskType);
    if (h == NULL) {
        return NULL;
    }
    h->task = NULL;
    h->pool = p;
    h->completions = (ip_completions *)Py_NewRef(c);
    atomic_fetch_add(&p->refcnt, 1);
    ip_task *t = make_task(st, sink, (uint32_t)fn_id, IP_CALL, args[1], args[2]);
    if (t == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    if (ip_completions_bind(c, args[4], &t->seq) < 0) {
        ip_task_decref(t);
        Py_DECREF(h);
        return NULL;
    }
    atomic_fetch_add(&t->refcnt, 1);
    h->task = t;
    ip_sink_expect(sink, 1);
    if (enqueue(st, p, c, t, t, 1) < 0) {
        ip_sink_expect(sink, -1);
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

PyDoc_STRVAR(submit_many_doc,
"submit_many($self, fn_id, items, sink, first_index, chunked=False, /)\n--\n\n"
"Queue one task per item of the list `items` (each an args tuple, or with\n"
"chunked=True a list of args tuples run in one go); sink.drain() reports\n"
"task i as first_index + i.  All or nothing: on error nothing is queued.");

static PyObject *
poolcore_submit_many(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ip_pool *p = get_pool(op);
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "submit_many() takes 4 or 5 arguments");
        return NULL;
    }
    long fn_id = PyLong_AsLong(args[0]);
    Py_ssize_t first = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "submit_many() needs a list of items");
        return NULL;
    }
    int chunked = nargs == 5 ? PyObject_IsTrue(args[4]) : 0;
    if (chunked < 0) {
        return NULL;
    }
    ip_completions *c = ip_completions_check(st, args[2]);
    if (c == NULL) {
        return NULL;
    }
    ip_sink *sink = c->sink;
    if (p->stopping || p->broken) {
        return refuse(st, p);
    }
    PyObject *items = args[1];
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (n == 0) {
        Py_RETURN_NONE;
    }
    ip_task *head = NULL, *tail = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (chunked ? !PyList_Check(item) : !PyTuple_Check(item)) {
            PyErr_Format(PyExc_TypeError, "submit_many() item %zd has the wrong type", i);
            goto error;
        }
        ip_task *t = make_task(st, sink, (uint32_t)fn_id, chunked ? IP_CHUNK : IP_CALL,
                               item, NULL);
        if (t == NULL) {
            goto error;
        }
        t->seq = first + i;
        t->prev = tail;
        if (tail) {
            tail->next = t;
        }
        else {
            head = t;
        }
        tail = t;
    }
    ip_sink_expect(sink, n);
    if (enqueue(st, p, NULL, head, tail, n) < 0) {
        ip_sink_expect(sink, -n);
        return NULL;
    }
    Py_RETURN_NONE;
error:
    discard_tasks(NULL, head);
    return NULL;
}

PyDoc_STRVAR(cancel_queued_doc,
"cancel_queued($self, sink, /)\n--\n\n"
"Drop every queued task bound for `sink` (they never run); return how many.");

static PyObject *
poolcore_cancel_queued(PyObject *op, PyObject *arg)
{
    ip_pool *p = get_pool(op);
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    ip_completions *c = st ? ip_completions_check(st, arg) : NULL;
    if (c == NULL) {
        return NULL;
    }
    ip_sink *sink = c->sink;
    ip_task *dropped = NULL;
    Py_ssize_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (ip_task *t = p->head, *next; t != NULL; t = next) {
        next = t->next;
        if (t->sink == sink) {
            queue_unlink_locked(p, t);
            atomic_store(&t->state, IP_DROPPED);
            t->next = dropped;
            dropped = t;
            n++;
        }
    }
    pthread_mutex_unlock(&p->mu);
    discard_tasks(c, dropped);
    ip_sink_expect(sink, -n);
    return PyLong_FromSsize_t(n);
}

PyDoc_STRVAR(stop_doc,
"stop($self, cancel=False, cancel_running=False, /)\n--\n\n"
"Refuse new tasks and let workers exit once the queue is empty; with\n"
"cancel=True, queued tasks are dropped and delivered as cancelled; with\n"
"cancel_running=True, running coroutines are cancelled too.");

static PyObject *
poolcore_stop(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    int cancel = 0, cancel_running = 0;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "stop() takes at most 2 arguments");
        return NULL;
    }
    if (nargs >= 1 && (cancel = PyObject_IsTrue(args[0])) < 0) {
        return NULL;
    }
    if (nargs == 2 && (cancel_running = PyObject_IsTrue(args[1])) < 0) {
        return NULL;
    }
    pool_stop(get_pool(op), cancel, cancel_running);
    Py_RETURN_NONE;
}

/* Wait (GIL released) on cond until pred(arg) holds under mu, or timeout
 * seconds (<0: forever) pass.  Return the final value of pred. */
static int
wait_until(pthread_mutex_t *mu, pthread_cond_t *cond, int (*pred)(void *), void *arg,
           double timeout)
{
    struct timespec deadline;
    (void)ip_deadline(timeout > 0 ? timeout : -1, &deadline);
    int ok;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(mu);
    while (!(ok = pred(arg)) && timeout != 0) {
        int rc = timeout < 0 ? pthread_cond_wait(cond, mu)
                             : pthread_cond_timedwait(cond, mu, &deadline);
        if (rc == ETIMEDOUT) {
            ok = pred(arg);
            break;
        }
    }
    pthread_mutex_unlock(mu);
    Py_END_ALLOW_THREADS
    return ok;
}

static int
pred_exited(void *arg)
{
    return ((ip_pool *)arg)->nlive == 0;
}

static int
pred_ready(void *arg)
{
    ip_pool *p = arg;
    return p->nready == p->nworkers || p->broken || p->nlive == 0;
}

static int
parse_timeout(PyObject *const *args, Py_ssize_t nargs, double *timeout)
{
    *timeout = -1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "expected at most 1 argument");
        return -1;
    }
    if (nargs == 1 && args[0] != Py_None) {
        *timeout = PyFloat_AsDouble(args[0]);
        if (*timeout == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (*timeout < 0) {
            *timeout = 0;
        }
    }
    return 0;
}

PyDoc_STRVAR(join_doc,
"join($self, timeout=None, /)\n--\n\n"
"Wait until every worker has exited (after stop()).  Return True if so.");

static PyObject *
poolcore_join(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    double timeout;
    if (parse_timeout(args, nargs, &timeout) < 0) {
        return NULL;
    }
    ip_pool *p = get_pool(op);
    int exited = wait_until(&p->mu, &p->changed, pred_exited, p, timeout);
    ip_release_deferred();
    return PyBool_FromLong(exited);
}

PyDoc_STRVAR(wait_ready_doc,
"wait_ready($self, timeout=None, /)\n--\n\n"
"Wait until every worker has its interpreter and ran the initializer\n"
"(or the pool broke).  Return True if all workers are ready.");

static PyObject *
poolcore_wait_ready(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    double timeout;
    if (parse_timeout(args, nargs, &timeout) < 0) {
        return NULL;
    }
    ip_pool *p = get_pool(op);
    (void)wait_until(&p->mu, &p->changed, pred_ready, p, timeout);
    pthread_mutex_lock(&p->mu);
    int all = p->nready == p->nworkers && !p->broken;
    pthread_mutex_unlock(&p->mu);
    return PyBool_FromLong(all);
}

static PyObject *
poolcore_get_broken(PyObject *op, void *Py_UNUSED(closure))
{
    ip_pool *p = get_pool(op);
    PyObject *res;
    pthread_mutex_lock(&p->mu);
    if (!p->broken) {
        pthread_mutex_unlock(&p->mu);
        Py_RETURN_NONE;
    }
    res = PyUnicode_DecodeUTF8(p->broken_msg.data, p->broken_msg.len, "replace");
    pthread_mutex_unlock(&p->mu);
    return res;
}

static PyObject *
poolcore_get_stopping(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(get_pool(op)->stopping);
}

static PyObject *
poolcore_get_queued(PyObject *op, void *Py_UNUSED(closure))
{
    ip_pool *p = get_pool(op);
    pthread_mutex_lock(&p->mu);
    Py_ssize_t n = p->nqueued;
    pthread_mutex_unlock(&p->mu);
    return PyLong_FromSsize_t(n);
}

static PyObject *
poolcore_get_live(PyObject *op, void *Py_UNUSED(closure))
{
    ip_pool *p = get_pool(op);
    pthread_mutex_lock(&p->mu);
    int n = p->nlive;
    pthread_mutex_unlock(&p->mu);
    return PyLong_FromLong(n);
}

static PyMethodDef poolcore_methods[] = {
    {"register", poolcore_register, METH_O, register_doc},
    {"set_initializer", poolcore_set_initializer, METH_VARARGS, set_initializer_doc},
    {"configure", poolcore_configure, METH_VARARGS, configure_doc},
    {"set_setup", poolcore_set_setup, METH_O, set_setup_doc},
    {"start", poolcore_start, METH_NOARGS, start_doc},
    {"submit", (PyCFunction)(void (*)(void))poolcore_submit, METH_FASTCALL, submit_doc},
    {"submit_many", (PyCFunction)(void (*)(void))poolcore_submit_many, METH_FASTCALL,
     submit_many_doc},
    {"cancel_queued", poolcore_cancel_queued, METH_O, cancel_queued_doc},
    {"stop", (PyCFunction)(void (*)(void))poolcore_stop, METH_FASTCALL, stop_doc},
    {"join", (PyCFunction)(void (*)(void))poolcore_join, METH_FASTCALL, join_doc},
    {"wait_ready", (PyCFunction)(void (*)(void))poolcore_wait_ready, METH_FASTCALL,
     wait_ready_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef poolcore_getset[] = {
    {"broken", poolcore_get_broken, NULL, "Why the pool broke, or None.", NULL},
    {"stopping", poolcore_get_stopping, NULL, "Whether stop() was called.", NULL},
    {"queued", poolcore_get_queued, NULL, "Tasks waiting for a worker.", NULL},
    {"live_workers", poolcore_get_live, NULL, "Worker threads not yet exited.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(poolcore_doc,
"PoolCore(workers, sys_path)\n--\n\n"
"The C side of a Pool: worker threads, each with its own interpreter.");

static PyType_Slot poolcore_slots[] = {
    {Py_tp_doc, (void *)poolcore_doc},
    {Py_tp_new, poolcore_new},
    {Py_tp_dealloc, poolcore_dealloc},
    {Py_tp_methods, poolcore_methods},
    {Py_tp_getset, poolcore_getset},
    {0, NULL},
};

static PyType_Spec poolcore_spec = {
    .name = "interpool._core.PoolCore",
    .basicsize = sizeof(PoolCoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = poolcore_slots,
};

PyDoc_STRVAR(live_counts_doc,
"live_counts($module, /)\n--\n\n"
"Process-wide counts of live C objects (pools, workers, tasks), for leak tests.");

static PyObject *
live_counts(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    ip_release_deferred();
    PyObject *d = Py_BuildValue("{slslsl}", "pools", atomic_load(&live_pools),
                                "workers", atomic_load(&ip_live_workers),
                                "tasks", atomic_load(&ip_live_tasks));
    if (d != NULL && ip_data_counts(d) < 0) {
        Py_CLEAR(d);
    }
    return d;
}

static int
pred_owner_idle(void *arg)
{
    return ((ip_owner *)arg)->live == 0;
}

PyDoc_STRVAR(join_all_doc,
"join_all_workers($module, timeout=None, /)\n--\n\n"
"Wait until every worker thread of every pool this interpreter created has\n"
"left its interpreter (used at exit, after the pools were stopped).\n"
"Return True if so.");

static PyObject *
join_all_workers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    ip_owner *o = ip_get_state(module)->owner;
    double timeout;
    if (parse_timeout(args, nargs, &timeout) < 0) {
        return NULL;
    }
    int done = wait_until(&o->mu, &o->exited, pred_owner_idle, o, timeout);
    ip_release_deferred();   /* the workers' views are gone now */
    return PyBool_FromLong(done);
}

static PyMethodDef pool_functions[] = {
    {"live_counts", live_counts, METH_NOARGS, live_counts_doc},
    {"join_all_workers", (PyCFunction)(void (*)(void))join_all_workers, METH_FASTCALL,
     join_all_doc},
    {NULL, NULL, 0, NULL},
};

int
ip_pool_module_init(PyObject *module, ip_state *st)
{
    st->PoolType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &poolcore_spec, NULL);
    if (st->PoolType == NULL || PyModule_AddType(module, st->PoolType) < 0) {
        return -1;
    }
    st->TaskType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &handle_spec, NULL);
    if (st->TaskType == NULL || PyModule_AddType(module, st->TaskType) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, pool_functions);
}
