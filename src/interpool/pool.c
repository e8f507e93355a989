/* The worker pool: OS threads that each own one isolated interpreter.
 *
 * A PoolCore (main side) owns a raw ip_pool: a FIFO of tasks behind one
 * mutex, shared by every worker.  Workers pop a task, call the function in
 * their own interpreter, encode the result into the task's raw buffer and
 * push it to the task's sink.  Lock order: nobody waits for a GIL while
 * holding pool->mu (workers release their GIL before sleeping on it).
 */
#include "_core.h"

#include <errno.h>
#include <string.h>
#include <time.h>

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t work;        /* a task was queued, or stopping */
    pthread_cond_t changed;     /* a worker became ready or exited */
    atomic_int refcnt;          /* PoolCore + each live worker thread */
    atomic_int has_work;        /* queue non-empty (spin target) */
    ip_task *head, *tail;
    Py_ssize_t nqueued;
    int sleepers;
    unsigned wake_seq;          /* bumped by wake(): idle workers do upkeep */
    int stopping;               /* no new tasks; workers exit when queue empties */
    int broken;
    ip_buf broken_msg;          /* UTF-8 */
    int nworkers, nready, nlive, started;
    /* configuration, immutable once started */
    char **sys_path;
    Py_ssize_t n_path;
    int has_init;
    uint32_t init_fn;
    ip_buf init_payload;
    /* callable references, append-only (mu) */
    ip_buf *fns;
    uint32_t nfns, capfns;
} ip_pool;

static atomic_long live_pools, live_workers;
extern atomic_long ip_live_tasks;

/* ------------------------------------------------------------ raw pool */

static ip_pool *
pool_new(void)
{
    ip_pool *p = PyMem_RawCalloc(1, sizeof(ip_pool));
    if (p == NULL) {
        return NULL;
    }
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

static void
pool_decref(ip_pool *p)
{
    if (atomic_fetch_sub_explicit(&p->refcnt, 1, memory_order_acq_rel) != 1) {
        return;
    }
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
    ip_buf_free(&p->broken_msg);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->changed);
    PyMem_RawFree(p);
    atomic_fetch_sub(&live_pools, 1);
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

static ip_task *
queue_pop_locked(ip_pool *p)
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
static void
pool_break(ip_pool *p, const char *msg, Py_ssize_t len)
{
    pthread_mutex_lock(&p->mu);
    if (!p->broken) {
        p->broken = 1;
        (void)ip_buf_append(&p->broken_msg, msg, len);
    }
    p->stopping = 1;
    ip_task *dropped = queue_take_all_locked(p);
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    deliver_dropped(dropped, IP_BROKEN, &p->broken_msg);
}

/* ------------------------------------------------------------ worker side */

/* The current exception as text (traceback when possible); clears it.
 * Raw memory, caller frees; never NULL unless out of memory. */
static char *
format_current_exception(Py_ssize_t *len)
{
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *text = NULL;
    PyObject *tb = PyImport_ImportModule("traceback");
    if (tb != NULL && exc != NULL) {
        PyObject *lines = PyObject_CallMethod(tb, "format_exception", "O", exc);
        if (lines != NULL) {
            PyObject *empty = PyUnicode_FromString("");
            text = empty ? PyUnicode_Join(empty, lines) : NULL;
            Py_XDECREF(empty);
            Py_DECREF(lines);
        }
    }
    Py_XDECREF(tb);
    if (text == NULL && exc != NULL) {
        PyErr_Clear();
        text = PyObject_Str(exc);
    }
    PyErr_Clear();
    Py_XDECREF(exc);
    const char *utf8 = text ? PyUnicode_AsUTF8AndSize(text, len) : NULL;
    if (utf8 == NULL) {
        PyErr_Clear();
        utf8 = "unknown error";
        *len = (Py_ssize_t)strlen(utf8);
    }
    char *out = PyMem_RawMalloc(*len + 1);
    if (out != NULL) {
        memcpy(out, utf8, *len + 1);
    }
    Py_XDECREF(text);
    return out;
}

static void
break_with_current_exception(ip_pool *p, const char *prefix)
{
    Py_ssize_t len = 0;
    char *text = format_current_exception(&len);
    ip_buf msg = {0};
    (void)ip_buf_append(&msg, prefix, (Py_ssize_t)strlen(prefix));
    if (text != NULL) {
        (void)ip_buf_append(&msg, text, len);
    }
    pool_break(p, msg.data ? msg.data : prefix, msg.data ? msg.len : (Py_ssize_t)strlen(prefix));
    ip_buf_free(&msg);
    PyMem_RawFree(text);
}

/* The callable for fn_id in this worker (borrowed from the cache list),
 * loading it on first use.  NULL with an exception set. */
static PyObject *
worker_callable(ip_pool *p, ip_state *st, PyObject *cache, uint32_t fn_id)
{
    if ((Py_ssize_t)fn_id < PyList_GET_SIZE(cache)) {
        PyObject *fn = PyList_GET_ITEM(cache, fn_id);
        if (fn != Py_None) {
            return fn;
        }
    }
    ip_buf ref = {0};
    pthread_mutex_lock(&p->mu);
    int ok = fn_id < p->nfns &&
             ip_buf_append(&ref, p->fns[fn_id].data, p->fns[fn_id].len) == 0;
    pthread_mutex_unlock(&p->mu);
    if (!ok) {
        ip_buf_free(&ref);
        PyErr_Format(PyExc_RuntimeError, "interpool: unknown function id %u", fn_id);
        return NULL;
    }
    PyObject *desc = ip_decode_all(st, ref.data, ref.len);
    ip_buf_free(&ref);
    if (desc == NULL) {
        return NULL;
    }
    PyObject *load = ip_support_attr(st, "load_callable");
    PyObject *fn = load ? PyObject_CallOneArg(load, desc) : NULL;
    Py_XDECREF(load);
    Py_DECREF(desc);
    if (fn == NULL) {
        return NULL;
    }
    while (PyList_GET_SIZE(cache) <= (Py_ssize_t)fn_id) {
        if (PyList_Append(cache, Py_None) < 0) {
            Py_DECREF(fn);
            return NULL;
        }
    }
    PyList_SetItem(cache, fn_id, fn);   /* steals fn */
    return fn;
}

/* Decode a payload: args tuple (or list of tuples for a chunk), then kwargs. */
static int
decode_call(ip_state *st, ip_task *t, PyObject **args, PyObject **kwargs)
{
    Py_ssize_t pos = 0;
    *kwargs = NULL;
    ip_pins *saved = ip_tls_decode_pins;
    ip_tls_decode_pins = &t->payload.pins;
    *args = ip_decode(st, t->payload.data, t->payload.len, &pos);
    PyObject *kw = *args ? ip_decode(st, t->payload.data, t->payload.len, &pos) : NULL;
    ip_tls_decode_pins = saved;
    if (*args == NULL) {
        return -1;
    }
    if (kw == NULL) {
        Py_CLEAR(*args);
        return -1;
    }
    if (kw == Py_None) {
        Py_DECREF(kw);
    }
    else {
        *kwargs = kw;
    }
    return 0;
}

static PyObject *
call_task(ip_state *st, PyObject *fn, ip_task *t)
{
    PyObject *args, *kwargs, *res = NULL;
    if (decode_call(st, t, &args, &kwargs) < 0) {
        return NULL;
    }
    ip_buf_free(&t->payload);
    if (t->kind == IP_CALL && PyTuple_CheckExact(args) &&
        (kwargs == NULL || PyDict_CheckExact(kwargs))) {
        res = PyObject_Call(fn, args, kwargs);
    }
    else if (t->kind == IP_CHUNK && PyList_CheckExact(args) && kwargs == NULL) {
        Py_ssize_t n = PyList_GET_SIZE(args);
        res = PyList_New(n);
        for (Py_ssize_t i = 0; res != NULL && i < n; i++) {
            PyObject *a = PyList_GET_ITEM(args, i);
            PyObject *r = PyTuple_CheckExact(a) ? PyObject_Call(fn, a, NULL) : NULL;
            if (r == NULL) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(st->codec_error, "malformed chunk");
                }
                Py_CLEAR(res);
                break;
            }
            PyList_SET_ITEM(res, i, r);
        }
    }
    else {
        PyErr_SetString(st->codec_error, "malformed task payload");
    }
    Py_DECREF(args);
    Py_XDECREF(kwargs);
    return res;
}

/* Pack the current exception into t->result; clears it. */
static void
store_exception(ip_state *st, ip_task *t)
{
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *pack = ip_support_attr(st, "pack_exception");
    PyObject *packed = pack ? PyObject_CallOneArg(pack, exc) : NULL;
    Py_XDECREF(pack);
    t->result.len = 0;
    t->status = IP_ERROR;
    if (packed != NULL && ip_encode(st, &t->result, packed) == 0) {
        Py_DECREF(packed);
        Py_XDECREF(exc);
        return;
    }
    Py_XDECREF(packed);
    PyErr_Clear();
    /* Last resort: a RemoteError with the type name only. */
    PyObject *fallback = Py_BuildValue(
        "(OssNs)", Py_None, "builtins",
        exc ? Py_TYPE(exc)->tp_name : "Exception",
        PyUnicode_FromString("the worker could not report this exception"), "");
    t->result.len = 0;
    if (fallback == NULL || ip_encode(st, &t->result, fallback) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(fallback);
    Py_XDECREF(exc);
}

static void
run_task(ip_pool *p, ip_state *st, PyObject *cache, ip_task *t)
{
    PyObject *fn = worker_callable(p, st, cache, t->fn_id);
    PyObject *res = fn ? call_task(st, fn, t) : NULL;
    if (res != NULL) {
        t->result.len = 0;
        if (ip_encode(st, &t->result, res) == 0) {
            t->status = IP_OK;
        }
        Py_DECREF(res);
    }
    if (PyErr_Occurred()) {
        store_exception(st, t);
    }
    ip_buf_free(&t->payload);
    atomic_store_explicit(&t->state, IP_DONE, memory_order_release);
}

/* Next task; NULL when the pool stops with an empty queue (*stop set) or
 * when wake() asks idle workers for upkeep.  Sleeps with this
 * interpreter's GIL released. */
static ip_task *
take_task(ip_pool *p, unsigned *wake_seen, int *stop)
{
    ip_task *t;
    pthread_mutex_lock(&p->mu);
    t = queue_pop_locked(p);
    *stop = p->stopping;
    pthread_mutex_unlock(&p->mu);
    if (t != NULL || *stop) {
        return t;
    }
    Py_BEGIN_ALLOW_THREADS
    (void)ip_spin_while_zero(&p->has_work);
    pthread_mutex_lock(&p->mu);
    while ((t = queue_pop_locked(p)) == NULL && !p->stopping && p->wake_seq == *wake_seen) {
        p->sleepers++;
        pthread_cond_wait(&p->work, &p->mu);
        p->sleepers--;
    }
    *stop = t == NULL && p->stopping;
    *wake_seen = p->wake_seq;
    pthread_mutex_unlock(&p->mu);
    Py_END_ALLOW_THREADS
    return t;
}

static int
worker_set_path(ip_pool *p)
{
    PyObject *path = PyList_New(p->n_path);
    if (path == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < p->n_path; i++) {
        PyObject *s = PyUnicode_DecodeFSDefault(p->sys_path[i]);
        if (s == NULL) {
            Py_DECREF(path);
            return -1;
        }
        PyList_SET_ITEM(path, i, s);
    }
    int r = PySys_SetObject("path", path);
    Py_DECREF(path);
    return r;
}

/* Everything a worker does inside its interpreter. */
static void
worker_body(ip_pool *p)
{
    PyObject *mod = NULL, *cache = NULL;
    if (worker_set_path(p) < 0 || (mod = PyImport_ImportModule("interpool._core")) == NULL) {
        break_with_current_exception(p, "interpool: a worker could not start:\n");
        goto done;
    }
    ip_state *st = ip_get_state(mod);
    cache = PyList_New(0);
    if (cache == NULL) {
        break_with_current_exception(p, "interpool: a worker could not start:\n");
        goto done;
    }
    if (p->has_init) {
        ip_task init = {0};
        init.kind = IP_CALL;
        (void)ip_buf_append(&init.payload, p->init_payload.data, p->init_payload.len);
        for (Py_ssize_t i = 0; i < p->init_payload.pins.n; i++) {
            (void)ip_pins_add(&init.payload.pins, p->init_payload.pins.items[i]);
        }
        PyObject *fn = worker_callable(p, st, cache, p->init_fn);
        PyObject *r = fn ? call_task(st, fn, &init) : NULL;
        ip_buf_free(&init.payload);
        if (r == NULL) {
            break_with_current_exception(p, "the pool's initializer raised an exception:\n");
            goto done;
        }
        Py_DECREF(r);
    }
    pthread_mutex_lock(&p->mu);
    p->nready++;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);

    unsigned wake_seen = 0;
    for (;;) {
        int stop;
        ip_shared_purge(st);   /* drop copies of released shared values */
        ip_task *t = take_task(p, &wake_seen, &stop);
        if (t == NULL) {
            if (stop) {
                break;
            }
            continue;
        }
        run_task(p, st, cache, t);
        ip_sink_push(t->sink, t);   /* gives the pipeline reference away */
    }
done:
    Py_XDECREF(cache);
    Py_XDECREF(mod);
    PyErr_Clear();
}

static void *
worker_main(void *arg)
{
    ip_pool *p = arg;
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
        const char *why = status.err_msg ? status.err_msg : "unknown error";
        ip_buf msg = {0};
        const char *prefix = "interpool: could not create a worker interpreter: ";
        (void)ip_buf_append(&msg, prefix, (Py_ssize_t)strlen(prefix));
        (void)ip_buf_append(&msg, why, (Py_ssize_t)strlen(why));
        pool_break(p, msg.data ? msg.data : prefix, msg.data ? msg.len : 0);
        ip_buf_free(&msg);
    }
    else {
        worker_body(p);
        Py_EndInterpreter(ts);
    }
    pthread_mutex_lock(&p->mu);
    p->nlive--;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    atomic_fetch_sub(&live_workers, 1);
    pool_decref(p);
    return NULL;
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
    pool_decref(self->pool);
    tp->tp_free(op);
    Py_DECREF(tp);
}

PyDoc_STRVAR(handle_cancel_doc,
"cancel($self, /)\n--\n\n"
"Remove the task from the queue if no worker has started it.  Return True\n"
"if it was removed (it will never run and its future is forgotten).");

static PyObject *
handle_cancel(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    TaskHandleObject *self = (TaskHandleObject *)op;
    ip_task *t = self->task;
    ip_pool *p = self->pool;
    int removed = 0;
    pthread_mutex_lock(&p->mu);
    if (atomic_load(&t->state) == IP_QUEUED && (t->prev || p->head == t)) {
        queue_unlink_locked(p, t);
        atomic_store(&t->state, IP_DROPPED);
        removed = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (removed) {
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
    {"cancel", handle_cancel, METH_NOARGS, handle_cancel_doc},
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
    p->nworkers = workers;
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
pool_stop(ip_pool *p, int cancel)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    ip_task *dropped = cancel ? queue_take_all_locked(p) : NULL;
    pthread_cond_broadcast(&p->work);
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
            pool_stop(self->pool, 1);
        }
        else {
            pool_stop(self->pool, 0);   /* workers finish the queue, then exit */
        }
        pool_decref(self->pool);
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
    for (int i = 0; i < p->nworkers; i++) {
        pthread_t th;
        atomic_fetch_add(&p->refcnt, 1);
        pthread_mutex_lock(&p->mu);
        p->nlive++;
        pthread_mutex_unlock(&p->mu);
        atomic_fetch_add(&live_workers, 1);
        if (pthread_create(&th, &attr, worker_main, p) != 0) {
            pthread_mutex_lock(&p->mu);
            p->nlive--;
            pthread_mutex_unlock(&p->mu);
            atomic_fetch_sub(&live_workers, 1);
            atomic_fetch_sub(&p->refcnt, 1);
            failed++;
        }
    }
    pthread_attr_destroy(&attr);
    if (failed == p->nworkers) {
        const char *msg = "interpool: could not start any worker thread";
        pool_break(p, msg, (Py_ssize_t)strlen(msg));
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

PyDoc_STRVAR(wake_doc,
"wake($self, /)\n--\n\n"
"Wake idle workers for upkeep (e.g. dropping released shared values).");

static PyObject *
poolcore_wake(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ip_pool *p = get_pool(op);
    pthread_mutex_lock(&p->mu);
    p->wake_seq++;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    Py_RETURN_NONE;
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
"stop($self, cancel=False, /)\n--\n\n"
"Refuse new tasks and let workers exit once the queue is empty; with\n"
"cancel=True, queued tasks are dropped and delivered as cancelled.");

static PyObject *
poolcore_stop(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    int cancel = 0;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "stop() takes at most 1 argument");
        return NULL;
    }
    if (nargs == 1 && (cancel = PyObject_IsTrue(args[0])) < 0) {
        return NULL;
    }
    pool_stop(get_pool(op), cancel);
    Py_RETURN_NONE;
}

/* Wait (GIL released) until pred(p) holds or timeout (<0: forever) passes. */
static int
wait_until(ip_pool *p, int (*pred)(ip_pool *), double timeout)
{
    struct timespec deadline;
    if (timeout > 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += (time_t)timeout;
        deadline.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    int ok;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&p->mu);
    while (!(ok = pred(p)) && timeout != 0) {
        int rc = timeout < 0 ? pthread_cond_wait(&p->changed, &p->mu)
                             : pthread_cond_timedwait(&p->changed, &p->mu, &deadline);
        if (rc == ETIMEDOUT) {
            ok = pred(p);
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    Py_END_ALLOW_THREADS
    return ok;
}

static int
pred_exited(ip_pool *p)
{
    return p->nlive == 0;
}

static int
pred_ready(ip_pool *p)
{
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
    return PyBool_FromLong(wait_until(get_pool(op), pred_exited, timeout));
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
    (void)wait_until(p, pred_ready, timeout);
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
    {"start", poolcore_start, METH_NOARGS, start_doc},
    {"submit", (PyCFunction)(void (*)(void))poolcore_submit, METH_FASTCALL, submit_doc},
    {"submit_many", (PyCFunction)(void (*)(void))poolcore_submit_many, METH_FASTCALL,
     submit_many_doc},
    {"cancel_queued", poolcore_cancel_queued, METH_O, cancel_queued_doc},
    {"wake", poolcore_wake, METH_NOARGS, wake_doc},
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
                                "workers", atomic_load(&live_workers),
                                "tasks", atomic_load(&ip_live_tasks));
    if (d != NULL && ip_data_counts(d) < 0) {
        Py_CLEAR(d);
    }
    return d;
}

static PyMethodDef pool_functions[] = {
    {"live_counts", live_counts, METH_NOARGS, live_counts_doc},
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
