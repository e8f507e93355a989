/* The worker side: a thread that owns one interpreter and runs tasks.
 *
 * The C loop pops tasks, calls them and pushes results, with this
 * interpreter's GIL released only while it sleeps.  With concurrency > 1
 * the worker instead runs an asyncio loop (interpool._support.serve) that
 * pulls tasks through WorkerContext.take() and completes them through
 * WorkerTask, so many coroutines run at once in one interpreter.
 */
#include "_pool.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

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
    ip_pool_break(p, msg.data ? msg.data : prefix, msg.data ? msg.len : (Py_ssize_t)strlen(prefix));
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

typedef struct WorkerContextObject WorkerContextObject;

static PyObject *
call_task(ip_state *st, WorkerContextObject *ctx, PyObject *fn, ip_task *t)
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
            if (r != NULL && PyCoro_CheckExact(r)) {
                PyObject *run = ip_support_attr(st, "run_coroutine");
                PyObject *out = run ? PyObject_CallFunctionObjArgs(
                                          run, ctx ? (PyObject *)ctx : Py_None, Py_None, r, NULL)
                                    : NULL;
                Py_XDECREF(run);
                Py_SETREF(r, out);
            }
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

/* The worker's view of its pool, handed to interpool._support (serve,
 * run_coroutine) in this interpreter. */
struct WorkerContextObject {
    PyObject_HEAD
    ip_pool *pool;       /* the worker thread holds the pool reference */
    ip_state *st;
    int index;
    PyObject *cache;     /* callables by fn id */
};

static PyObject *worker_task_wrap(WorkerContextObject *ctx, ip_task *t, int owns);

/* A coroutine (from an async def task) runs to completion on this worker's
 * persistent event loop; its awaiter can still cancel it. */
static PyObject *
await_result(WorkerContextObject *ctx, ip_state *st, ip_task *t, PyObject *res)
{
    if (res == NULL || !PyCoro_CheckExact(res)) {
        return res;
    }
    PyObject *wt = t ? worker_task_wrap(ctx, t, 0) : Py_NewRef(Py_None);
    PyObject *run = wt ? ip_support_attr(st, "run_coroutine") : NULL;
    PyObject *out = run ? PyObject_CallFunctionObjArgs(run, (PyObject *)ctx, wt, res, NULL) : NULL;
    Py_XDECREF(run);
    Py_XDECREF(wt);
    Py_DECREF(res);
    return out;
}

static void
encode_outcome(ip_state *st, ip_task *t, PyObject *res)
{
    if (res != NULL) {
        int saved = ip_tls_share_buffers;
        ip_tls_share_buffers = 0;   /* results are copies */
        t->result.len = 0;
        if (ip_encode(st, &t->result, res) == 0) {
            t->status = IP_OK;
        }
        ip_tls_share_buffers = saved;
    }
    if (PyErr_Occurred()) {
        store_exception(st, t);
    }
}

static void
run_task(ip_pool *p, ip_state *st, WorkerContextObject *ctx, PyObject *cache, ip_task *t)
{
    PyObject *fn = worker_callable(p, st, cache, t->fn_id);
    PyObject *res = fn ? call_task(st, ctx, fn, t) : NULL;
    res = await_result(ctx, st, t, res);
    if (res != NULL) {
        encode_outcome(st, t, res);
        Py_DECREF(res);
    }
    else {
        encode_outcome(st, t, NULL);
    }
    ip_buf_free(&t->payload);
    atomic_store_explicit(&t->state, IP_DONE, memory_order_release);
}

/* Next task; NULL when the pool stops with an empty queue (*stop set) or
 * when idle workers are woken for upkeep (ip_wake_all_pools).  Sleeps with this
 * interpreter's GIL released. */
static ip_task *
take_task(ip_pool *p, unsigned *wake_seen, int *stop)
{
    ip_task *t;
    pthread_mutex_lock(&p->mu);
    t = ip_queue_pop_locked(p);
    *stop = p->stopping;
    pthread_mutex_unlock(&p->mu);
    if (t != NULL || *stop) {
        return t;
    }
    Py_BEGIN_ALLOW_THREADS
    (void)ip_spin_while_zero(&p->has_work);
    pthread_mutex_lock(&p->mu);
    while ((t = ip_queue_pop_locked(p)) == NULL && !p->stopping && p->wake_seq == *wake_seen) {
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

static WorkerContextObject *context_new(ip_state *st, ip_pool *p, int index);

/* Everything a worker does inside its interpreter. */
static void
worker_body(ip_pool *p, int index)
{
    PyObject *mod = NULL, *cache = NULL;
    WorkerContextObject *ctx = NULL;
    if (worker_set_path(p) < 0 || (mod = PyImport_ImportModule("interpool._core")) == NULL) {
        break_with_current_exception(p, "interpool: a worker could not start:\n");
        goto done;
    }
    ip_state *st = ip_get_state(mod);
    st->is_worker = 1;
    ctx = context_new(st, p, index);
    if (ctx == NULL) {
        break_with_current_exception(p, "interpool: a worker could not start:\n");
        goto done;
    }
    cache = Py_NewRef(ctx->cache);
    if (p->setup_payload.len > 0) {
        PyObject *conf = ip_decode_buf(st, &p->setup_payload);
        PyObject *setup = conf ? ip_support_attr(st, "worker_setup") : NULL;
        PyObject *r = setup ? PyObject_CallFunction(setup, "Oi", conf, index) : NULL;
        Py_XDECREF(setup);
        Py_XDECREF(conf);
        if (r == NULL) {
            break_with_current_exception(p, "interpool: a worker could not start:\n");
            goto done;
        }
        Py_DECREF(r);
    }
    if (p->has_init) {
        ip_task init = {0};
        init.kind = IP_CALL;
        (void)ip_buf_append(&init.payload, p->init_payload.data, p->init_payload.len);
        for (Py_ssize_t i = 0; i < p->init_payload.pins.n; i++) {
            (void)ip_pins_add(&init.payload.pins, p->init_payload.pins.items[i]);
        }
        PyObject *fn = worker_callable(p, st, cache, p->init_fn);
        PyObject *r = fn ? call_task(st, ctx, fn, &init) : NULL;
        r = await_result(ctx, st, NULL, r);   /* a coroutine initializer */
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

    if (p->concurrency > 1) {
        /* Many coroutines at once: an asyncio loop pulls the tasks. */
        PyObject *serve = ip_support_attr(st, "serve");
        PyObject *r = serve ? PyObject_CallOneArg(serve, (PyObject *)ctx) : NULL;
        Py_XDECREF(serve);
        if (r == NULL) {
            break_with_current_exception(p, "interpool: a worker's event loop failed:\n");
        }
        Py_XDECREF(r);
        goto done;
    }
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
        run_task(p, st, ctx, cache, t);
        ip_sink_push(t->sink, t);   /* gives the pipeline reference away */
    }
done:
    if (mod != NULL) {
        PyObject *fin = ip_support_attr(ip_get_state(mod), "worker_exit");
        PyObject *r = fin ? PyObject_CallNoArgs(fin) : NULL;
        if (r == NULL) {
            PyErr_WriteUnraisable(fin);
        }
        Py_XDECREF(r);
        Py_XDECREF(fin);
    }
    if (ctx != NULL) {
        pthread_mutex_lock(&p->mu);
        ip_slot *slot = &p->slots[index];
        if (slot->efd >= 0) {
            close(slot->efd);
            slot->efd = -1;
        }
        slot->waiting = 0;
        pthread_mutex_unlock(&p->mu);
    }
    Py_XDECREF((PyObject *)ctx);
    Py_XDECREF(cache);
    Py_XDECREF(mod);
    PyErr_Clear();
}

void *
ip_worker_main(void *arg)
{
    ip_worker_start *start = arg;
    ip_pool *p = start->pool;
    int index = start->index;
    PyMem_RawFree(start);
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
        ip_pool_break(p, msg.data ? msg.data : prefix, msg.data ? msg.len : 0);
        ip_buf_free(&msg);
    }
    else {
        worker_body(p, index);
        Py_EndInterpreter(ts);
    }
    pthread_mutex_lock(&p->mu);
    p->nlive--;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    ip_owner *owner = p->owner;
    ip_pool_decref(p);
    atomic_fetch_sub(&ip_live_workers, 1);
    pthread_mutex_lock(&owner->mu);
    owner->live--;
    pthread_cond_broadcast(&owner->exited);
    pthread_mutex_unlock(&owner->mu);
    ip_owner_decref(owner);   /* the reference this thread took at start */
    return NULL;
}

/* ------------------------------------------------------------ WorkerContext */

static WorkerContextObject *
context_new(ip_state *st, ip_pool *p, int index)
{
    WorkerContextObject *ctx = PyObject_New(WorkerContextObject, st->WorkerContextType);
    if (ctx == NULL) {
        return NULL;
    }
    ctx->pool = p;
    ctx->st = st;
    ctx->index = index;
    ctx->cache = PyList_New(0);
    if (ctx->cache == NULL) {
        Py_DECREF(ctx);
        return NULL;
    }
    return ctx;
}

static void
context_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    Py_XDECREF(((WorkerContextObject *)op)->cache);
    tp->tp_free(op);
    Py_DECREF(tp);
}

PyDoc_STRVAR(take_doc,
"take($self, n, /)\n--\n\n"
"Pop up to n queued tasks without blocking, as WorkerTasks.  If fewer\n"
"came, the next enqueue makes fileno() readable.");

static PyObject *
context_take(PyObject *op, PyObject *arg)
{
    WorkerContextObject *ctx = (WorkerContextObject *)op;
    ip_pool *p = ctx->pool;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    ip_shared_purge(ctx->st);   /* drop copies of released shared values */
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    ip_task *taken = NULL, **tail = &taken;
    Py_ssize_t got = 0;
    ip_slot *slot = &p->slots[ctx->index];
    pthread_mutex_lock(&p->mu);
    while (got < n) {
        ip_task *t = ip_queue_pop_locked(p);
        if (t == NULL) {
            break;
        }
        t->slot = slot;
        *tail = t;
        tail = &t->next;
        got++;
    }
    slot->waiting = got < n && !p->stopping;
    pthread_mutex_unlock(&p->mu);
    while (taken != NULL) {
        ip_task *next = taken->next;
        taken->next = NULL;
        PyObject *wt = worker_task_wrap(ctx, taken, 1);
        if (wt == NULL || PyList_Append(out, wt) < 0) {
            /* cannot hand it over: fail it rather than lose it */
            PyErr_Clear();
            if (wt == NULL) {
                taken->status = IP_ERROR;
                taken->result.len = 0;
                atomic_store(&taken->state, IP_DONE);
                ip_sink_push(taken->sink, taken);
            }
        }
        Py_XDECREF(wt);
        taken = next;
    }
    return out;
}

static PyObject *
context_fileno(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WorkerContextObject *ctx = (WorkerContextObject *)op;
    ip_pool *p = ctx->pool;
    ip_slot *slot = &p->slots[ctx->index];
    pthread_mutex_lock(&p->mu);
    if (slot->efd < 0) {
        slot->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    int fd = slot->efd;
    pthread_mutex_unlock(&p->mu);
    if (fd < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(fd);
}

static PyObject *
context_clear(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WorkerContextObject *ctx = (WorkerContextObject *)op;
    int fd = ctx->pool->slots[ctx->index].efd;
    if (fd >= 0) {
        uint64_t v;
        while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR) {
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
context_get_stopping(PyObject *op, void *Py_UNUSED(closure))
{
    ip_pool *p = ((WorkerContextObject *)op)->pool;
    pthread_mutex_lock(&p->mu);
    int stopping = p->stopping && p->nqueued == 0;
    pthread_mutex_unlock(&p->mu);
    return PyBool_FromLong(stopping);
}

static PyObject *
context_get_cancel_running(PyObject *op, void *Py_UNUSED(closure))
{
    ip_pool *p = ((WorkerContextObject *)op)->pool;
    pthread_mutex_lock(&p->mu);
    int c = p->cancel_running;
    pthread_mutex_unlock(&p->mu);
    return PyBool_FromLong(c);
}

static PyObject *
context_get_concurrency(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(((WorkerContextObject *)op)->pool->concurrency);
}

static PyObject *
context_get_loop_factory(PyObject *op, void *Py_UNUSED(closure))
{
    WorkerContextObject *ctx = (WorkerContextObject *)op;
    if (ctx->pool->loop_factory < 0) {
        Py_RETURN_NONE;
    }
    PyObject *fn = worker_callable(ctx->pool, ctx->st, ctx->cache,
                                   (uint32_t)ctx->pool->loop_factory);
    return Py_XNewRef(fn);
}

static PyMethodDef context_methods[] = {
    {"take", context_take, METH_O, take_doc},
    {"fileno", context_fileno, METH_NOARGS, "fileno($self, /)\n--\n\nThis worker's eventfd."},
    {"clear", context_clear, METH_NOARGS, "clear($self, /)\n--\n\nReset the eventfd."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef context_getset[] = {
    {"stopping", context_get_stopping, NULL, "The pool stops and its queue is empty.", NULL},
    {"cancel_running", context_get_cancel_running, NULL,
     "Running coroutines must be cancelled (shutdown).", NULL},
    {"concurrency", context_get_concurrency, NULL, "Coroutines per worker.", NULL},
    {"loop_factory", context_get_loop_factory, NULL, "The pool's loop factory or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot context_slots[] = {
    {Py_tp_doc, (void *)"A worker's handle on its pool (worker side only)."},
    {Py_tp_dealloc, context_dealloc},
    {Py_tp_methods, context_methods},
    {Py_tp_getset, context_getset},
    {0, NULL},
};

static PyType_Spec context_spec = {
    .name = "interpool._core.WorkerContext",
    .basicsize = sizeof(WorkerContextObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = context_slots,
};

/* ------------------------------------------------------------ WorkerTask */

/* A task being run by this worker's event loop.  It owns the pipeline
 * reference until completed (owns=1), or only watches a task the C loop
 * runs (owns=0: cancel_requested only). */
typedef struct {
    PyObject_HEAD
    ip_task *task;
    WorkerContextObject *ctx;
    int owns;
} WorkerTaskObject;

static PyObject *
worker_task_wrap(WorkerContextObject *ctx, ip_task *t, int owns)
{
    WorkerTaskObject *wt = PyObject_New(WorkerTaskObject, ctx->st->WorkerTaskType);
    if (wt == NULL) {
        return NULL;
    }
    if (!owns) {
        atomic_fetch_add(&t->refcnt, 1);
        pthread_mutex_lock(&ctx->pool->mu);
        t->slot = &ctx->pool->slots[ctx->index];
        pthread_mutex_unlock(&ctx->pool->mu);
    }
    wt->task = t;
    wt->ctx = (WorkerContextObject *)Py_NewRef(ctx);
    wt->owns = owns;
    return (PyObject *)wt;
}

/* Deliver the task (status and result already set) and let it go. */
static void
worker_task_finish(WorkerTaskObject *wt)
{
    ip_task *t = wt->task;
    ip_pool *p = wt->ctx->pool;
    wt->task = NULL;
    pthread_mutex_lock(&p->mu);
    t->slot = NULL;
    pthread_mutex_unlock(&p->mu);
    ip_buf_free(&t->payload);
    atomic_store_explicit(&t->state, IP_DONE, memory_order_release);
    ip_sink_push(t->sink, t);
}

static int
worker_task_check(WorkerTaskObject *wt)
{
    if (wt->task == NULL || !wt->owns) {
        PyErr_SetString(PyExc_RuntimeError, "this task was already completed");
        return -1;
    }
    return 0;
}

static PyObject *
worker_task_set_result(PyObject *op, PyObject *value)
{
    WorkerTaskObject *wt = (WorkerTaskObject *)op;
    if (worker_task_check(wt) < 0) {
        return NULL;
    }
    encode_outcome(wt->ctx->st, wt->task, value);   /* unencodable: fails the task */
    worker_task_finish(wt);
    Py_RETURN_NONE;
}

static PyObject *
worker_task_set_exception(PyObject *op, PyObject *exc)
{
    WorkerTaskObject *wt = (WorkerTaskObject *)op;
    if (worker_task_check(wt) < 0) {
        return NULL;
    }
    if (!PyExceptionInstance_Check(exc)) {
        PyErr_SetString(PyExc_TypeError, "set_exception() needs an exception instance");
        return NULL;
    }
    PyErr_SetRaisedException(Py_NewRef(exc));
    store_exception(wt->ctx->st, wt->task);
    worker_task_finish(wt);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(call_doc,
"call($self, /)\n--\n\n"
"(fn, args, kwargs) of the task; for a chunk, args is a list of argument\n"
"tuples and kwargs is None.");

static PyObject *
worker_task_call(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WorkerTaskObject *wt = (WorkerTaskObject *)op;
    if (worker_task_check(wt) < 0) {
        return NULL;
    }
    WorkerContextObject *ctx = wt->ctx;
    PyObject *fn = worker_callable(ctx->pool, ctx->st, ctx->cache, wt->task->fn_id);
    if (fn == NULL) {
        return NULL;
    }
    PyObject *args, *kwargs;
    if (decode_call(ctx->st, wt->task, &args, &kwargs) < 0) {
        return NULL;
    }
    PyObject *out = PyTuple_Pack(3, fn, args, kwargs ? kwargs : Py_None);
    Py_DECREF(args);
    Py_XDECREF(kwargs);
    return out;
}

static PyObject *
worker_task_get_chunked(PyObject *op, void *Py_UNUSED(closure))
{
    WorkerTaskObject *wt = (WorkerTaskObject *)op;
    return PyBool_FromLong(wt->task != NULL && wt->task->kind == IP_CHUNK);
}

static PyObject *
worker_task_get_cancel_requested(PyObject *op, void *Py_UNUSED(closure))
{
    WorkerTaskObject *wt = (WorkerTaskObject *)op;
    return PyBool_FromLong(wt->task != NULL && atomic_load(&wt->task->cancel_requested));
}

static void
worker_task_dealloc(PyObject *op)
{
    WorkerTaskObject *wt = (WorkerTaskObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (wt->task != NULL) {
        if (wt->owns) {
            /* Never completed (a bug or a torn-down loop): fail, don't hang. */
            PyObject *exc = PyObject_CallFunction(PyExc_RuntimeError, "s",
                                                  "the worker dropped this task");
            if (exc != NULL) {
                PyErr_SetRaisedException(exc);
            }
            store_exception(wt->ctx->st, wt->task);
            worker_task_finish(wt);
        }
        else {
            ip_task_decref(wt->task);
        }
    }
    Py_XDECREF(wt->ctx);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef worker_task_methods[] = {
    {"call", worker_task_call, METH_NOARGS, call_doc},
    {"set_result", worker_task_set_result, METH_O,
     "set_result($self, value, /)\n--\n\nComplete with value (unencodable: fails)."},
    {"set_exception", worker_task_set_exception, METH_O,
     "set_exception($self, exc, /)\n--\n\nComplete with an exception."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef worker_task_getset[] = {
    {"chunked", worker_task_get_chunked, NULL, "A chunk of calls (map).", NULL},
    {"cancel_requested", worker_task_get_cancel_requested, NULL,
     "The awaiter cancelled: stop the coroutine.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot worker_task_slots[] = {
    {Py_tp_doc, (void *)"A task run by a worker's event loop (worker side only)."},
    {Py_tp_dealloc, worker_task_dealloc},
    {Py_tp_methods, worker_task_methods},
    {Py_tp_getset, worker_task_getset},
    {0, NULL},
};

static PyType_Spec worker_task_spec = {
    .name = "interpool._core.WorkerTask",
    .basicsize = sizeof(WorkerTaskObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = worker_task_slots,
};

int
ip_worker_module_init(PyObject *module, ip_state *st)
{
    st->WorkerContextType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &context_spec, NULL);
    if (st->WorkerContextType == NULL) {
        return -1;
    }
    st->WorkerTaskType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &worker_task_spec, NULL);
    if (st->WorkerTaskType == NULL) {
        return -1;
    }
    return 0;
}
