/* What a worker does inside its interpreter: the operations the raw worker
 * thread (runtime/worker.c) calls, and the two types the worker's event
 * loop (interpool._worker_loop) uses: WorkerContext (its pool, seen from
 * the worker) and WorkerTask (a task it runs). */
#include "module/state.h"

#include <string.h>

typedef struct WorkerContextObject WorkerContextObject;

struct WorkerContextObject {
    PyObject_HEAD
    ip_pool *pool;       /* alive while the worker thread runs */
    int index;
    ip_worker *worker;   /* this interpreter's worker (its thread's) */
    ip_state *st;
    PyObject *module;    /* keeps st alive */
    PyObject *cache;     /* callables by fn id */
    int interrupted;     /* the control thread raised TaskInterrupted (under the GIL) */
};

static PyObject *worker_task_wrap(WorkerContextObject *ctx, ip_task *t, int owns);

/* ------------------------------------------------------------ failures */

/* The current exception as text (with its traceback where the hooks can
 * format it); clears it.  New reference, never NULL unless out of memory. */
static PyObject *
exception_text(ip_state *st)
{
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *text = NULL;
    if (exc != NULL && st != NULL) {
        text = ip_hook_call1(st, IP_HOOK_FORMAT_EXCEPTION, exc);
        if (text != NULL && !PyUnicode_Check(text)) {
            Py_CLEAR(text);
        }
    }
    if (text == NULL && exc != NULL) {
        PyErr_Clear();
        text = PyObject_Str(exc);
    }
    PyErr_Clear();
    Py_XDECREF(exc);
    return text;
}

/* Break the pool with prefix + the current exception (cleared). */
static void
break_with_current_exception(ip_pool *p, ip_state *st, const char *prefix)
{
    PyObject *text = exception_text(st);
    Py_ssize_t len = 0;
    const char *utf8 = text ? PyUnicode_AsUTF8AndSize(text, &len) : NULL;
    if (utf8 == NULL) {
        PyErr_Clear();
        utf8 = "unknown error";
        len = (Py_ssize_t)strlen(utf8);
    }
    ip_buf msg = {0};
    (void)ip_buf_append(&msg, prefix, (Py_ssize_t)strlen(prefix));
    (void)ip_buf_append(&msg, utf8, len);
    ip_pool_break(p, msg.data ? msg.data : prefix,
                  msg.data ? msg.len : (Py_ssize_t)strlen(prefix));
    ip_buf_free(&msg);
    Py_XDECREF(text);
}

/* Pack the current exception into t->result (status ERROR); clears it.
 * A task the watch took over gets nothing (it was delivered already). */
static void
store_exception(ip_state *st, ip_task *t)
{
    if (t->taken_over) {
        PyErr_Clear();
        return;
    }
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *packed = exc ? ip_hook_call1(st, IP_HOOK_PACK_EXCEPTION, exc) : NULL;
    t->result.len = 0;
    t->status = IP_TASK_ERROR;
    if (packed != NULL && ip_encode(&st->codec, &t->result, packed, 0) == 0) {
        Py_DECREF(packed);
        Py_XDECREF(exc);
        return;
    }
    Py_XDECREF(packed);
    PyErr_Clear();
    /* Last resort: a RemoteError with the type name only. */
    PyObject *fallback = Py_BuildValue(
        "(OssNs)", Py_None, "builtins", exc ? Py_TYPE(exc)->tp_name : "Exception",
        PyUnicode_FromString("the worker could not report this exception"), "");
    t->result.len = 0;
    if (fallback == NULL || ip_encode(&st->codec, &t->result, fallback, 0) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(fallback);
    Py_XDECREF(exc);
}

/* Forwarded output the task left without a newline goes out before its
 * result: the caller writes output before it resolves results. */
static inline void
flush_output(ip_state *st)
{
    if (st->output_pending) {
        ip_hook_notify(st, IP_HOOK_FLUSH_OUTPUT);
    }
}

/* Encode a result (copies, never views) into t, or the current exception. */
static void
encode_outcome(ip_state *st, ip_task *t, PyObject *res)
{
    flush_output(st);
    if (res != NULL && !t->taken_over) {
        t->result.len = 0;
        if (ip_encode(&st->codec, &t->result, res, 0) == 0) {
            t->status = IP_TASK_OK;
        }
    }
    if (PyErr_Occurred()) {
        store_exception(st, t);
    }
}

/* ------------------------------------------------------------ calls */

/* The callable for fn_id in this worker (borrowed from the cache list),
 * loading it on first use.  NULL with an exception set. */
static PyObject *
worker_callable(WorkerContextObject *ctx, uint32_t fn_id)
{
    PyObject *cache = ctx->cache;
    if ((Py_ssize_t)fn_id < PyList_GET_SIZE(cache)) {
        PyObject *fn = PyList_GET_ITEM(cache, fn_id);
        if (fn != Py_None) {
            return fn;
        }
    }
    ip_buf ref = {0};
    if (ip_pool_copy_fn(ctx->pool, fn_id, &ref) < 0) {
        ip_buf_free(&ref);
        PyErr_Format(PyExc_RuntimeError, "interpool: unknown function id %u", fn_id);
        return NULL;
    }
    PyObject *desc = ip_decode_buf(&ctx->st->codec, &ref);
    ip_buf_free(&ref);
    if (desc == NULL) {
        return NULL;
    }
    PyObject *fn = ip_hook_call1(ctx->st, IP_HOOK_LOAD_CALLABLE, desc);
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
    ip_buf *b = &t->payload;
    *args = ip_decode(&st->codec, b->data, b->len, &pos, &b->pins);
    PyObject *kw = *args ? ip_decode(&st->codec, b->data, b->len, &pos, &b->pins) : NULL;
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

/* fn(*args, **kwargs) as the user code of task t: its control thread may
 * stop it (TaskInterrupted at a bytecode boundary), and it does not start
 * at all if t was asked to stop first.  t NULL: a plain call. */
static PyObject *
guarded_call(WorkerContextObject *ctx, ip_task *t, PyObject *fn, PyObject *args,
             PyObject *kwargs)
{
    if (t == NULL) {
        return PyObject_Call(fn, args, kwargs);
    }
    int rc = ip_worker_begin_call(ctx->worker, t);
    if (rc == IP_ERR_TAKEN) {
        return ip_raise(ctx->st, rc);
    }
    if (rc < 0) {
        PyErr_SetString(ctx->st->task_interrupted, "the task was stopped before it started");
        return NULL;
    }
    PyObject *res = PyObject_Call(fn, args, kwargs);
    rc = ip_worker_end_call(ctx->worker, res != NULL);
    if (ctx->interrupted) {
        /* A stop raised late (the call had already returned) must not hit
         * the next task: drop it. */
        ctx->interrupted = 0;
        (void)PyThreadState_SetAsyncExc(ctx->worker->thread_id, NULL);
    }
    if (rc == IP_ERR_TAKEN) {
        /* Stuck past its stop, its task was delivered without it: what it
         * made goes nowhere, and the callers unwind. */
        Py_XDECREF(res);
        PyErr_Clear();
        return ip_raise(ctx->st, rc);
    }
    return res;
}

/* Run a coroutine returned by a task (t: that task, or NULL for a chunk's
 * call or the initializer) on this worker's persistent event loop; its
 * awaiter can still cancel it.  Steals res; other values pass through. */
static PyObject *
await_result(WorkerContextObject *ctx, ip_task *t, PyObject *res)
{
    if (res == NULL || !PyCoro_CheckExact(res)) {
        return res;
    }
    PyObject *wt = t ? worker_task_wrap(ctx, t, 0) : Py_NewRef(Py_None);
    PyObject *out = NULL;
    if (wt != NULL) {
        PyObject *args[3] = {(PyObject *)ctx, wt, res};
        out = ip_hook_call(ctx->st, IP_HOOK_RUN_COROUTINE, args, 3);
        Py_DECREF(wt);
    }
    Py_DECREF(res);
    return out;
}

static PyObject *
call_task(WorkerContextObject *ctx, PyObject *fn, ip_task *t)
{
    ip_state *st = ctx->st;
    PyObject *args, *kwargs, *res = NULL;
    if (decode_call(st, t, &args, &kwargs) < 0) {
        return NULL;
    }
    ip_buf_free(&t->payload);
    ip_task *user = t;   /* (the initializer's is a stand-in, stopped only by a shutdown) */
    if (t->kind == IP_CALL && PyTuple_CheckExact(args) &&
        (kwargs == NULL || PyDict_CheckExact(kwargs))) {
        res = guarded_call(ctx, user, fn, args, kwargs);
    }
    else if (t->kind == IP_CHUNK && PyList_CheckExact(args) && kwargs == NULL) {
        Py_ssize_t n = PyList_GET_SIZE(args);
        res = PyList_New(n);
        for (Py_ssize_t i = 0; res != NULL && i < n; i++) {
            PyObject *a = PyList_GET_ITEM(args, i);
            PyObject *r = PyTuple_CheckExact(a) ? guarded_call(ctx, user, fn, a, NULL) : NULL;
            r = await_result(ctx, NULL, r);
            if (r == NULL) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(st->codec.error, "malformed chunk");
                }
                Py_CLEAR(res);
                break;
            }
            PyList_SET_ITEM(res, i, r);
        }
    }
    else {
        PyErr_SetString(st->codec.error, "malformed task payload");
    }
    Py_DECREF(args);
    Py_XDECREF(kwargs);
    return res;
}

/* ------------------------------------------------------------ the operations */

static WorkerContextObject *
context_of(ip_worker *w)
{
    return (WorkerContextObject *)w->data;
}

static int
set_sys_path(ip_pool *p)
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

static WorkerContextObject *
context_new(ip_state *st, PyObject *module, ip_worker *w)
{
    WorkerContextObject *ctx = PyObject_New(WorkerContextObject, st->WorkerContextType);
    if (ctx == NULL) {
        return NULL;
    }
    ctx->pool = w->pool;
    ctx->index = w->index;
    ctx->worker = w;
    ctx->interrupted = 0;
    ctx->st = st;
    ctx->module = Py_NewRef(module);
    ctx->cache = PyList_New(0);
    if (ctx->cache == NULL) {
        Py_DECREF(ctx);
        return NULL;
    }
    return ctx;
}

/* The worker's setup hook, then the pool's initializer (may be async). */
static int
prepare(WorkerContextObject *ctx)
{
    ip_pool *p = ctx->pool;
    ip_state *st = ctx->st;
    if (p->setup_payload.len > 0) {
        PyObject *conf = ip_decode_buf(&st->codec, &p->setup_payload);
        PyObject *index = conf ? PyLong_FromLong(ctx->index) : NULL;
        PyObject *r = NULL;
        if (index != NULL) {
            PyObject *args[2] = {conf, index};
            r = ip_hook_call(st, IP_HOOK_WORKER_SETUP, args, 2);
        }
        Py_XDECREF(index);
        Py_XDECREF(conf);
        if (r == NULL) {
            break_with_current_exception(p, st, "interpool: a worker could not start:\n");
            return -1;
        }
        Py_DECREF(r);
    }
    if (p->has_init) {
        ip_task init = {0};
        init.kind = IP_CALL;
        init.fn_id = p->init_fn;
        PyObject *fn = NULL, *r = NULL;
        if (ip_buf_copy(&init.payload, &p->init_payload) < 0) {
            PyErr_NoMemory();
        }
        else if ((fn = worker_callable(ctx, p->init_fn)) != NULL) {
            r = await_result(ctx, NULL, call_task(ctx, fn, &init));
        }
        ip_buf_free(&init.payload);
        if (r == NULL && init.taken_over) {
            PyErr_Clear();   /* stuck in C past an interrupting stop: set aside */
            return -1;
        }
        if (r == NULL) {
            break_with_current_exception(p, st,
                                         "the pool's initializer raised an exception:\n");
            return -1;
        }
        Py_DECREF(r);
    }
    return 0;
}

static int
op_start(ip_worker *w)
{
    PyObject *mod = NULL;
    if (set_sys_path(w->pool) < 0 || (mod = PyImport_ImportModule("interpool._core")) == NULL) {
        break_with_current_exception(w->pool, NULL, "interpool: a worker could not start:\n");
        return IP_ERR_BROKEN;
    }
    ip_state *st = ip_state_of_module(mod);
    st->is_worker = 1;
    WorkerContextObject *ctx = context_new(st, mod, w);
    Py_DECREF(mod);
    if (ctx == NULL) {
        break_with_current_exception(w->pool, st, "interpool: a worker could not start:\n");
        return IP_ERR_BROKEN;
    }
    w->data = ctx;
    return prepare(ctx) < 0 ? IP_ERR_BROKEN : IP_OK;
}

static void
op_upkeep(ip_worker *w)
{
    ip_shared_purge(context_of(w)->st);   /* drop copies of released shared values */
}

static void
op_run(ip_worker *w, ip_task *t)
{
    WorkerContextObject *ctx = context_of(w);
    PyObject *fn = worker_callable(ctx, t->fn_id);
    PyObject *res = fn ? await_result(ctx, t, call_task(ctx, fn, t)) : NULL;
    encode_outcome(ctx->st, t, res);
    Py_XDECREF(res);
}

static int
op_serve(ip_worker *w, char **why)
{
    WorkerContextObject *ctx = context_of(w);
    PyObject *r = ip_hook_call1(ctx->st, IP_HOOK_SERVE, (PyObject *)ctx);
    if (r != NULL) {
        Py_DECREF(r);
        return IP_OK;
    }
    /* The caller decides: a fresh interpreter, or a broken pool. */
    PyObject *text = exception_text(ctx->st);
    Py_ssize_t len = 0;
    const char *utf8 = text ? PyUnicode_AsUTF8AndSize(text, &len) : NULL;
    if (utf8 != NULL && (*why = PyMem_RawMalloc(len + 1)) != NULL) {
        memcpy(*why, utf8, len + 1);
    }
    PyErr_Clear();
    Py_XDECREF(text);
    return IP_ERR_BROKEN;
}

static void
op_interrupt(ip_worker *w)
{
    WorkerContextObject *ctx = context_of(w);
    if (ctx != NULL && PyThreadState_SetAsyncExc(w->thread_id, ctx->st->task_interrupted) > 0) {
        ctx->interrupted = 1;
    }
}

static void
op_finish(ip_worker *w)
{
    WorkerContextObject *ctx = context_of(w);
    if (ctx != NULL) {
        PyObject *r = ip_hook_call(ctx->st, IP_HOOK_WORKER_EXIT, NULL, 0);
        if (r == NULL) {
            PyErr_WriteUnraisable(ctx->st->hooks[IP_HOOK_WORKER_EXIT]);
        }
        Py_XDECREF(r);
        w->data = NULL;
        Py_DECREF(ctx);
    }
    PyErr_Clear();
}

const ip_worker_ops ip_python_worker_ops = {
    .start = op_start,
    .upkeep = op_upkeep,
    .run = op_run,
    .serve = op_serve,
    .finish = op_finish,
    .interrupt = op_interrupt,
};

/* ------------------------------------------------------------ WorkerContext */

static void
context_dealloc(PyObject *op)
{
    WorkerContextObject *ctx = (WorkerContextObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    Py_XDECREF(ctx->cache);
    Py_XDECREF(ctx->module);
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
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    ip_shared_purge(ctx->st);   /* drop copies of released shared values */
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t got;
    ip_task *taken = ip_pool_take(ctx->pool, ctx->worker->slot, n, &got);
    while (taken != NULL) {
        ip_task *next = taken->next;
        taken->next = NULL;
        PyObject *wt = worker_task_wrap(ctx, taken, 1);
        if (wt == NULL || PyList_Append(out, wt) < 0) {
            /* cannot hand it over: fail it rather than lose it */
            PyErr_Clear();
            if (wt == NULL) {
                taken->status = IP_TASK_ERROR;
                taken->result.len = 0;
                ip_worker_complete(ctx->worker, taken);
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
    int fd = ip_pool_slot_fd(ctx->pool, ctx->worker->slot);
    if (fd < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(fd);
}

static PyObject *
context_clear(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WorkerContextObject *ctx = (WorkerContextObject *)op;
    ip_pool_slot_clear(ctx->pool, ctx->worker->slot);
    Py_RETURN_NONE;
}

static PyObject *
context_get_stopping(PyObject *op, void *Py_UNUSED(closure))
{
    WorkerContextObject *ctx = (WorkerContextObject *)op;
    return PyBool_FromLong(ip_pool_slot_done(ctx->pool, ctx->worker->slot));
}

static PyObject *
context_get_cancel_running(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(ip_pool_cancelling(((WorkerContextObject *)op)->pool));
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
    return Py_XNewRef(worker_callable(ctx, (uint32_t)ctx->pool->loop_factory));
}

static PyMethodDef context_methods[] = {
    {"take", context_take, METH_O, take_doc},
    {"fileno", context_fileno, METH_NOARGS, "fileno($self, /)\n--\n\nThis worker's eventfd."},
    {"clear", context_clear, METH_NOARGS, "clear($self, /)\n--\n\nReset the eventfd."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef context_getset[] = {
    {"stopping", context_get_stopping, NULL,
     "Take no more tasks: the pool stops with an empty queue, or this interpreter ran its "
     "max_tasks_per_worker.", NULL},
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
        ip_task_incref(t);
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
    wt->task = NULL;
    ip_worker_complete(wt->ctx->worker, t);
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
    flush_output(wt->ctx->st);
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
    PyObject *fn = worker_callable(ctx, wt->task->fn_id);
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

PyDoc_STRVAR(call_guarded_doc,
"call_guarded($self, fn, args, kwargs, /)\n--\n\n"
"fn(*args, **kwargs) as this task's user code: stop requests (cancel with\n"
"interrupt, timeouts, shutdown) raise TaskInterrupted in it, and it does\n"
"not start if the task was asked to stop first.");

static PyObject *
worker_task_call_guarded(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    WorkerTaskObject *wt = (WorkerTaskObject *)op;
    if (ip_check_nargs("call_guarded", nargs, 3, 3) < 0 || worker_task_check(wt) < 0) {
        return NULL;
    }
    if (!PyTuple_Check(args[1]) || (args[2] != Py_None && !PyDict_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "call_guarded() needs an args tuple and a dict or None");
        return NULL;
    }
    return guarded_call(wt->ctx, wt->task, args[0], args[1], args[2] == Py_None ? NULL : args[2]);
}

static PyObject *
worker_task_get_timeout(PyObject *op, void *Py_UNUSED(closure))
{
    WorkerTaskObject *wt = (WorkerTaskObject *)op;
    if (wt->task == NULL || wt->task->timeout_ns <= 0) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble((double)wt->task->timeout_ns / 1e9);
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
            /* Never completed (a bug or a torn-down loop): fail, don't hang.
             * An exception may be propagating (a frame that held us is
             * unwinding): it must survive the Python calls made here. */
            PyObject *pending = PyErr_GetRaisedException();
            PyObject *exc =
                PyObject_CallFunction(PyExc_RuntimeError, "s", "the worker dropped this task");
            if (exc != NULL) {
                PyErr_SetRaisedException(exc);
            }
            store_exception(wt->ctx->st, wt->task);
            worker_task_finish(wt);
            PyErr_SetRaisedException(pending);
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
    {"call_guarded", (PyCFunction)(void (*)(void))worker_task_call_guarded, METH_FASTCALL,
     call_guarded_doc},
    {"set_result", worker_task_set_result, METH_O,
     "set_result($self, value, /)\n--\n\nComplete with value (unencodable: fails)."},
    {"set_exception", worker_task_set_exception, METH_O,
     "set_exception($self, exc, /)\n--\n\nComplete with an exception."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef worker_task_getset[] = {
    {"chunked", worker_task_get_chunked, NULL, "A chunk of calls (map).", NULL},
    {"timeout", worker_task_get_timeout, NULL,
     "Seconds each call may run (a coroutine: until it returns), or None.", NULL},
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
ip_worker_types_init(PyObject *module, ip_state *st)
{
    st->WorkerContextType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &context_spec, NULL);
    if (st->WorkerContextType == NULL) {
        return -1;
    }
    st->WorkerTaskType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &worker_task_spec, NULL);
    if (st->WorkerTaskType == NULL) {
        return -1;
    }
    return 0;
}
