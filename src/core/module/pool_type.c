/* PoolCore (the C side of interpool.Pool) and TaskHandle (a submitted
 * task, for cancelling it). */
#include "module/state.h"

#include <string.h>

/* ------------------------------------------------------------ TaskHandle */

typedef struct {
    PyObject_HEAD
    ip_task *task;
    ip_pool *pool;
    PyObject *completions;   /* strong: the Completions its owner is bound in */
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
"Remove the task from the queue if no worker has started it (it will\n"
"never run and its future is forgotten).  If it runs and interrupt is\n"
"true, stop it: a coroutine gets CancelledError at its await, sync code\n"
"TaskInterrupted at its next bytecode.  Return True if either happened.");

static PyObject *
handle_cancel(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    TaskHandleObject *self = (TaskHandleObject *)op;
    int interrupt = 0;
    if (ip_check_nargs("cancel", nargs, 0, 1) < 0 ||
        (nargs == 1 && (interrupt = PyObject_IsTrue(args[0])) < 0)) {
        return NULL;
    }
    ip_task *t = self->task;
    int outcome = ip_pool_cancel(self->pool, t, interrupt);
    if (outcome == IP_CANCEL_REMOVED) {
        ip_completions_forget(t->completions, t->seq);   /* a thread may wait for it */
        ip_completions_unbind(self->completions, t->seq);
        ip_completions_expect(t->completions, -1);
        ip_task_decref(t);   /* the pipeline reference */
    }
    return PyBool_FromLong(outcome != IP_CANCEL_NONE);
}

/* Delivered to its completions (so whoever resolves them will find it), or
 * dropped from the queue: not merely DONE, which comes a moment earlier. */
static int
task_finished(void *arg)
{
    ip_task *t = arg;
    return atomic_load_explicit(&t->done.delivered, memory_order_acquire) ||
           atomic_load_explicit(&t->state, memory_order_acquire) == IP_DROPPED;
}

PyDoc_STRVAR(handle_wait_doc,
"wait($self, timeout=None, /)\n--\n\n"
"Sleep (GIL released) until the task is finished and delivered to its\n"
"completions (or was dropped), or timeout seconds pass.  Return True if it\n"
"was.  Its consumer then resolves it: a caller that waits for its own\n"
"result takes it from the worker directly, with no thread in between.");

static PyObject *
handle_wait(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    TaskHandleObject *self = (TaskHandleObject *)op;
    ip_task *t = self->task;
    ip_deadline deadline;
    if (ip_check_nargs("wait", nargs, 0, 1) < 0 ||
        ip_arg_deadline(nargs ? args[0] : NULL, &deadline) < 0) {
        return NULL;
    }
    if (task_finished(t)) {
        Py_RETURN_TRUE;
    }
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    int rc;
    ip_signal_check chk;
    const ip_interrupt *intr = ip_caller_interrupt(st, &chk);
    Py_BEGIN_ALLOW_THREADS
    rc = ip_completions_wait_until(t->completions, task_finished, t, t->seq, &deadline, intr);
    Py_END_ALLOW_THREADS
    if (rc == IP_ERR_INTERRUPTED) {
        return ip_raise(st, rc);
    }
    return PyBool_FromLong(rc == IP_OK);
}

static PyObject *
handle_get_finished(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(task_finished(((TaskHandleObject *)op)->task));
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
    {"wait", (PyCFunction)(void (*)(void))handle_wait, METH_FASTCALL, handle_wait_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef handle_getset[] = {
    {"running", handle_get_running, NULL, "Whether a worker is running the task now.", NULL},
    {"finished", handle_get_finished, NULL,
     "Whether the task was delivered to its completions (or dropped).", NULL},
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

static ip_pool *
get_pool(PyObject *op)
{
    return ((PoolCoreObject *)op)->pool;
}

static PyObject *
poolcore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"workers", "sys_path", NULL};
    int workers;
    PyObject *path;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO!:PoolCore", kwlist, &workers,
                                     &PyList_Type, &path)) {
        return NULL;
    }
    if (workers < 1) {
        PyErr_SetString(PyExc_ValueError, "workers must be at least 1");
        return NULL;
    }
    ip_state *st = ip_state_of_type(type);
    if (st == NULL) {
        return NULL;
    }
    PoolCoreObject *self = (PoolCoreObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->pool = ip_pool_new(workers, &ip_python_worker_ops, st->owner);
    if (self->pool == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(path); i++) {
        PyObject *item = PyList_GET_ITEM(path, i), *enc;
        if (!PyUnicode_Check(item) || (enc = PyUnicode_EncodeFSDefault(item)) == NULL) {
            PyErr_Clear();
            continue;   /* sys.path may hold odd entries; workers skip them */
        }
        int rc = ip_pool_add_path(self->pool, PyBytes_AS_STRING(enc), PyBytes_GET_SIZE(enc));
        Py_DECREF(enc);
        if (rc < 0) {
            Py_DECREF(self);
            return ip_raise(st, rc);
        }
    }
    return (PyObject *)self;
}

static void
poolcore_dealloc(PyObject *op)
{
    PoolCoreObject *self = (PoolCoreObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->pool != NULL) {
        int started = self->pool->started;
        /* Never started: nobody else will drain the queue.  Started: the
         * workers finish the queue, then exit. */
        ip_pool_stop(self->pool, !started, !started, 0);
        ip_pool_decref(self->pool);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

int
ip_encode_call(ip_state *st, ip_buf *b, PyObject *args, PyObject *kwargs)
{
    int rc = 0;
    if (PyList_CheckExact(args)) {   /* a chunk: the list is the caller's own */
        Py_ssize_t n = PyList_GET_SIZE(args);
        rc = ip_codec_write_head(b, IP_HEAD_LIST, n);
        for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
            rc = ip_auto_share_encode(st, b, PyList_GET_ITEM(args, i), IP_ENC_SHARE_BUFFERS);
        }
    }
    else {
        rc = ip_auto_share_encode(st, b, args, IP_ENC_SHARE_BUFFERS);
    }
    if (rc < 0) {
        return -1;
    }
    if (kwargs == NULL || kwargs == Py_None || PyDict_GET_SIZE(kwargs) == 0) {
        return ip_encode(&st->codec, b, Py_None, 0);
    }
    return ip_auto_share_encode(st, b, kwargs, IP_ENC_SHARE_BUFFERS);
}

PyDoc_STRVAR(register_doc,
"register($self, ref, /)\n--\n\n"
"Record how workers load a callable (any codec value, handed to the\n"
"load_callable hook in the worker); return its id.");

static PyObject *
poolcore_register(PyObject *op, PyObject *ref)
{
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    ip_buf b = {0};
    uint32_t id;
    if (ip_encode(&st->codec, &b, ref, 0) < 0) {
        ip_buf_free(&b);
        return NULL;
    }
    int rc = ip_pool_add_fn(get_pool(op), &b, &id);
    ip_buf_free(&b);
    if (rc < 0) {
        return ip_raise(st, rc);
    }
    return PyLong_FromUnsignedLong(id);
}

/* A timeout in seconds (-1: none) as the tasks hold it (0: none, so a
 * timeout of 0 is the shortest one, 1 ns). */
static int64_t
seconds_to_ns(double seconds)
{
    if (seconds < 0) {
        return 0;
    }
    int64_t ns = (int64_t)(seconds * 1e9);
    return ns > 0 ? ns : 1;
}

/* Configuration may only change before start(). */
static int
check_not_started(ip_state *st, ip_pool *p)
{
    return p->started ? ip_raise_int(st, IP_ERR_STARTED) : 0;
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
    if (st == NULL ||
        !PyArg_ParseTuple(args, "IO!:set_initializer", &fn_id, &PyTuple_Type, &initargs) ||
        check_not_started(st, p) < 0) {
        return NULL;
    }
    ip_buf_free(&p->init_payload);
    if (ip_encode_call(st, &p->init_payload, initargs, NULL) < 0) {
        return NULL;
    }
    p->init_fn = fn_id;
    p->has_init = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(configure_doc,
"configure($self, concurrency, loop_factory_id, task_timeout=None,\n"
"          max_tasks=0, /)\n--\n\n"
"Coroutines per worker (1: the C loop), the fn id of the workers' event\n"
"loop factory (-1: asyncio's default), the default deadline of each call\n"
"in seconds (None: none) and the tasks an interpreter runs before a fresh\n"
"one replaces it (0: no limit).  Call before start().");

static PyObject *
poolcore_configure(PyObject *op, PyObject *args)
{
    ip_pool *p = get_pool(op);
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    int concurrency;
    long loop_factory, max_tasks = 0;
    PyObject *task_timeout = Py_None;
    double timeout;
    if (st == NULL ||
        !PyArg_ParseTuple(args, "il|Ol:configure", &concurrency, &loop_factory, &task_timeout,
                          &max_tasks) ||
        check_not_started(st, p) < 0 || ip_arg_timeout(task_timeout, "task_timeout", &timeout) < 0) {
        return NULL;
    }
    if (concurrency < 1) {
        PyErr_SetString(PyExc_ValueError, "concurrency must be at least 1");
        return NULL;
    }
    if (max_tasks < 0) {
        PyErr_SetString(PyExc_ValueError, "max_tasks must not be negative");
        return NULL;
    }
    p->concurrency = concurrency;
    p->loop_factory = loop_factory;
    p->task_timeout_ns = seconds_to_ns(timeout);
    p->max_tasks = max_tasks;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_setup_doc,
"set_setup($self, config, /)\n--\n\n"
"A codec value each worker passes to the worker_setup hook before\n"
"anything else (call before start()).");

static PyObject *
poolcore_set_setup(PyObject *op, PyObject *config)
{
    ip_pool *p = get_pool(op);
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL || check_not_started(st, p) < 0) {
        return NULL;
    }
    ip_buf_free(&p->setup_payload);
    if (ip_encode(&st->codec, &p->setup_payload, config, 0) < 0) {
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
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    int rc = ip_workers_start(get_pool(op));
    if (rc < 0) {
        return ip_raise(st, rc);
    }
    Py_RETURN_NONE;
}

/* A new task for fn(*args, **kwargs) bound for `c` (one reference to c);
 * each call must end `timeout_ns` after it starts (0: no limit). */
static ip_task *
make_task(ip_state *st, ip_completions *c, uint32_t fn_id, int kind, PyObject *args,
          PyObject *kwargs, int64_t timeout_ns)
{
    ip_task *t = ip_task_new();
    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    t->fn_id = fn_id;
    t->kind = kind;
    t->timeout_ns = timeout_ns;
    if (ip_encode_call(st, &t->payload, args, kwargs) < 0) {
        ip_task_decref(t);
        return NULL;
    }
    ip_completions_incref(c);
    t->completions = c;
    return t;
}

/* Free tasks that will never run, forgetting their owners (if bound). */
static void
discard_tasks(PyObject *completions, ip_task *t)
{
    while (t != NULL) {
        ip_task *next = t->next;
        if (completions != NULL) {
            ip_completions_unbind(completions, t->seq);
        }
        ip_buf_free(&t->payload);
        ip_task_decref(t);
        t = next;
    }
}

/* Queue a chain of n tasks; -1 (chain freed, exception set) if refused. */
static int
enqueue(ip_state *st, ip_pool *p, PyObject *completions, ip_task *first, ip_task *last,
        Py_ssize_t n)
{
    if (ip_pool_enqueue(p, first, last, n) < 0) {
        discard_tasks(completions, first);
        (void)ip_raise_refused(st, p);
        return -1;
    }
    return 0;
}

/* What submit() and submit_many() start with: the function id and the raw
 * completions from their arguments; a stopped or broken pool refuses. */
static int
submit_prologue(ip_state *st, ip_pool *p, PyObject *fn_arg, PyObject *completions,
                uint32_t *fn_id, ip_completions **c)
{
    long id = PyLong_AsLong(fn_arg);
    if (id == -1 && PyErr_Occurred()) {
        return -1;
    }
    *fn_id = (uint32_t)id;
    if ((*c = ip_completions_raw(st, completions)) == NULL) {
        return -1;
    }
    if (p->stopping || p->broken) {
        (void)ip_raise_refused(st, p);
        return -1;
    }
    ip_pins_release_deferred();   /* a moment when the GIL is held anyway */
    return 0;
}

PyDoc_STRVAR(submit_doc,
"submit($self, fn_id, args, kwargs, completions, owner, timeout=None, /)\n--\n\n"
"Queue fn(*args, **kwargs); its result resolves the future `owner` when\n"
"`completions` resolves.  A call still running `timeout` seconds after it\n"
"starts is stopped (None: the pool's task_timeout).  Return a TaskHandle.");

static PyObject *
poolcore_submit(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ip_pool *p = get_pool(op);
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    uint32_t fn_id;
    ip_completions *c;
    double timeout = -1;
    if (st == NULL || ip_check_nargs("submit", nargs, 5, 6) < 0 ||
        (nargs == 6 && ip_arg_timeout(args[5], "timeout", &timeout) < 0)) {
        return NULL;
    }
    if (!PyTuple_Check(args[1]) || (args[2] != Py_None && !PyDict_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "submit() needs an args tuple and a kwargs dict or None");
        return NULL;
    }
    if (submit_prologue(st, p, args[0], args[3], &fn_id, &c) < 0) {
        return NULL;
    }
    TaskHandleObject *h = PyObject_New(TaskHandleObject, st->TaskType);
    if (h == NULL) {
        return NULL;
    }
    h->task = NULL;
    h->pool = p;
    h->completions = Py_NewRef(args[3]);
    ip_pool_incref(p);
    ip_task *t = make_task(st, c, fn_id, IP_CALL, args[1], args[2],
                           timeout >= 0 ? seconds_to_ns(timeout) : p->task_timeout_ns);
    if (t == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    if (ip_completions_bind(args[3], args[4], &t->seq) < 0) {
        ip_task_decref(t);
        Py_DECREF(h);
        return NULL;
    }
    ip_task_incref(t);   /* the handle's */
    h->task = t;
    ip_completions_expect(c, 1);
    if (enqueue(st, p, args[3], t, t, 1) < 0) {
        ip_completions_expect(c, -1);
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

PyDoc_STRVAR(submit_many_doc,
"submit_many($self, fn_id, items, completions, first_index, chunked=False, /)\n--\n\n"
"Queue one task per item of the list `items` (each an args tuple, or with\n"
"chunked=True a list of args tuples run in one go); completions.drain()\n"
"reports task i as first_index + i.  All or nothing: on error nothing is\n"
"queued.  Return the bytes of the payloads it queued.");

static PyObject *
poolcore_submit_many(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ip_pool *p = get_pool(op);
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    uint32_t fn_id;
    ip_completions *c;
    if (st == NULL || ip_check_nargs("submit_many", nargs, 4, 5) < 0) {
        return NULL;
    }
    Py_ssize_t first = PyLong_AsSsize_t(args[3]);
    if (first == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "submit_many() needs a list of items");
        return NULL;
    }
    int chunked = nargs == 5 ? PyObject_IsTrue(args[4]) : 0;
    if (chunked < 0 || submit_prologue(st, p, args[0], args[2], &fn_id, &c) < 0) {
        return NULL;
    }
    PyObject *items = args[1];
    Py_ssize_t n = PyList_GET_SIZE(items), nbytes = 0;
    if (n == 0) {
        return PyLong_FromLong(0);
    }
    ip_task *head = NULL, *tail = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (chunked ? !PyList_Check(item) : !PyTuple_Check(item)) {
            PyErr_Format(PyExc_TypeError, "submit_many() item %zd has the wrong type", i);
            goto error;
        }
        ip_task *t = make_task(st, c, fn_id, chunked ? IP_CHUNK : IP_CALL, item, NULL,
                               p->task_timeout_ns);
        if (t == NULL) {
            goto error;
        }
        t->seq = first + i;
        nbytes += t->payload.len;
        t->prev = tail;
        if (tail) {
            tail->next = t;
        }
        else {
            head = t;
        }
        tail = t;
    }
    ip_completions_expect(c, n);
    if (enqueue(st, p, NULL, head, tail, n) < 0) {
        ip_completions_expect(c, -n);
        return NULL;
    }
    return PyLong_FromSsize_t(nbytes);
error:
    discard_tasks(NULL, head);
    return NULL;
}

PyDoc_STRVAR(cancel_queued_doc,
"cancel_queued($self, completions, interrupt=False, /)\n--\n\n"
"Drop every queued task bound for `completions` (they never run); with\n"
"interrupt, stop the running ones too.  Return how many were dropped.");

static PyObject *
poolcore_cancel_queued(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    int interrupt = 0;
    if (st == NULL || ip_check_nargs("cancel_queued", nargs, 1, 2) < 0 ||
        (nargs == 2 && (interrupt = PyObject_IsTrue(args[1])) < 0)) {
        return NULL;
    }
    ip_completions *c = ip_completions_raw(st, args[0]);
    if (c == NULL) {
        return NULL;
    }
    Py_ssize_t n;
    ip_task *dropped = ip_pool_cancel_for(get_pool(op), c, &n);
    discard_tasks(args[0], dropped);
    ip_completions_expect(c, -n);
    if (interrupt) {
        (void)ip_pool_interrupt(get_pool(op), c, IP_STOP_CANCEL);
    }
    return PyLong_FromSsize_t(n);
}

/* Up to three boolean flags of stop() and stop_all_pools(). */
static int
stop_flags(const char *fname, PyObject *const *args, Py_ssize_t nargs, int flags[3])
{
    if (ip_check_nargs(fname, nargs, 0, 3) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < 3; i++) {
        flags[i] = i < nargs ? PyObject_IsTrue(args[i]) : 0;
        if (flags[i] < 0) {
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(stop_doc,
"stop($self, cancel=False, cancel_running=False, interrupt=False, /)\n--\n\n"
"Refuse new tasks and let workers exit once the queue is empty; with\n"
"cancel=True, queued tasks are dropped and delivered as cancelled; with\n"
"cancel_running=True, running coroutines are cancelled too; with\n"
"interrupt=True, running sync code is stopped (TaskInterrupted).");

static PyObject *
poolcore_stop(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    int f[3];
    if (stop_flags("stop", args, nargs, f) < 0) {
        return NULL;
    }
    ip_pool_stop(get_pool(op), f[0], f[1], f[2]);
    Py_RETURN_NONE;
}

/* Wait for `what` (ip_pool_wait_ready/_exited) with the GIL released;
 * 1 done, 0 timed out, -1 with an exception. */
static int
wait_pool(ip_state *st, ip_pool *p, PyObject *const *args, Py_ssize_t nargs, const char *fname,
          int (*what)(ip_pool *, const ip_deadline *, const ip_interrupt *))
{
    ip_deadline deadline;
    if (ip_check_nargs(fname, nargs, 0, 1) < 0 ||
        ip_arg_deadline(nargs ? args[0] : NULL, &deadline) < 0) {
        return -1;
    }
    int rc;
    ip_signal_check chk;
    const ip_interrupt *intr = ip_caller_interrupt(st, &chk);
    Py_BEGIN_ALLOW_THREADS
    rc = what(p, &deadline, intr);
    Py_END_ALLOW_THREADS
    if (rc == IP_ERR_INTERRUPTED) {
        return ip_raise_int(st, rc);
    }
    return rc == IP_OK;
}

PyDoc_STRVAR(join_doc,
"join($self, timeout=None, set_aside=False, /)\n--\n\n"
"Wait until every worker has exited (after stop()); with set_aside, also\n"
"those set aside (their stopped calls stuck in C).  Return True if so.");

static PyObject *
poolcore_join(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    int aside = 0;
    if (st == NULL || ip_check_nargs("join", nargs, 0, 2) < 0 ||
        (nargs == 2 && (aside = PyObject_IsTrue(args[1])) < 0)) {
        return NULL;
    }
    int exited = wait_pool(st, get_pool(op), args, nargs > 1 ? 1 : nargs, "join",
                           aside ? ip_pool_wait_gone : ip_pool_wait_exited);
    if (exited < 0) {
        return NULL;
    }
    ip_pins_release_deferred();
    return PyBool_FromLong(exited);
}

PyDoc_STRVAR(wait_ready_doc,
"wait_ready($self, timeout=None, /)\n--\n\n"
"Wait until every worker has its interpreter and ran the initializer\n"
"(or the pool broke).  Return True if all workers are ready.");

static PyObject *
poolcore_wait_ready(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL ||
        wait_pool(st, get_pool(op), args, nargs, "wait_ready", ip_pool_wait_ready) < 0) {
        return NULL;
    }
    return PyBool_FromLong(ip_pool_all_ready(get_pool(op)));
}

static PyObject *
poolcore_get_broken(PyObject *op, void *Py_UNUSED(closure))
{
    ip_buf msg = {0};
    int broken = ip_pool_broken_message(get_pool(op), &msg);
    if (broken <= 0) {
        ip_buf_free(&msg);
        if (broken < 0) {
            return PyErr_NoMemory();
        }
        Py_RETURN_NONE;
    }
    PyObject *res = PyUnicode_DecodeUTF8(msg.data, msg.len, "replace");
    ip_buf_free(&msg);
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
    return PyLong_FromSsize_t(ip_pool_queued(get_pool(op)));
}

static PyObject *
poolcore_get_live(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(ip_pool_live(get_pool(op)));
}

static PyObject *
poolcore_get_idle_counts(PyObject *op, void *Py_UNUSED(closure))
{
    ip_pool *p = get_pool(op);
    pthread_mutex_lock(&p->mu);
    long spins = p->idle_spins, sleeps = p->idle_sleeps;
    pthread_mutex_unlock(&p->mu);
    return Py_BuildValue("{slsl}", "spins", spins, "sleeps", sleeps);
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
    {"cancel_queued", (PyCFunction)(void (*)(void))poolcore_cancel_queued, METH_FASTCALL,
     cancel_queued_doc},
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
    {"idle_counts", poolcore_get_idle_counts, NULL,
     "How often its workers found the queue empty and spun first, or slept.", NULL},
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

/* ------------------------------------------------------------ functions */

PyDoc_STRVAR(live_counts_doc,
"live_counts($module, /)\n--\n\n"
"Process-wide counts of live C objects (pools, workers, tasks, data\n"
"plane), for leak tests.");

static PyObject *
live_counts(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    ip_auto_share_sweep(ip_state_of_module(module));   /* what the caller dropped goes now */
    ip_pins_release_deferred();
    return Py_BuildValue(
        "{slslslslslslslslsl}", "auto_shared", atomic_load(&ip_live_auto_shared),
        "pools", atomic_load(&ip_live_pools), "workers",
        atomic_load(&ip_live_workers), "tasks", atomic_load(&ip_live_tasks), "shared",
        atomic_load(&ip_live_shared), "shared_copies", atomic_load(&ip_live_shared_copies),
        "exports", atomic_load(&ip_live_exports), "blocks", atomic_load(&ip_live_blocks),
        "queues", atomic_load(&ip_live_queues));
}

PyDoc_STRVAR(wait_counts_doc,
"wait_counts($module, /)\n--\n\n"
"What this thread's waits did so far: spins begun, spins that ended with\n"
"what they waited for, sleeps (each return from one is a wake-up); and\n"
"the process's busy workers and usable CPUs (spinning needs a spare one).");

static PyObject *
wait_counts(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    ip_wait_counts *c = ip_wait_counts_here();
    return Py_BuildValue("{slslslsisi}", "spins", c->spins, "spun", c->spun, "sleeps",
                         c->sleeps, "busy_workers", atomic_load(&ip_busy_workers), "cpus",
                         ip_ncpus);
}

PyDoc_STRVAR(lock_stats_doc,
"_lock_stats($module, on, /)\n--\n\n"
"Benchmarks: time the task queue's mutex from now on (True: the totals\n"
"start at zero) or no longer (False); return the totals so far: ns held\n"
"by enqueues and takes, how many of each, ns waited for it and how many\n"
"acquisitions found it held.");

static PyObject *
lock_stats(PyObject *Py_UNUSED(module), PyObject *on)
{
    int value = PyObject_IsTrue(on);
    if (value < 0) {
        return NULL;
    }
    ip_lock_stats s;
    ip_pool_lock_timing(value, &s);
    return Py_BuildValue("{sLsLsLsLsLsL}", "enqueue_ns", s.enqueue_ns, "enqueues", s.enqueues,
                         "take_ns", s.take_ns, "takes", s.takes, "wait_ns", s.wait_ns,
                         "contended", s.contended);
}

PyDoc_STRVAR(wake_cost_doc,
"_wake_cost($module, n, busy, period, /)\n--\n\n"
"Benchmarks: the CPU seconds one sleep and wake-up costs the thread that\n"
"sleeps on this machine (the core's own wait, no Python), averaged over n\n"
"wake-ups while `busy` threads spin `period` seconds at a time and the\n"
"first signals after each: the floor of a waiter woken once per task.");

static PyObject *
wake_cost(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (ip_check_nargs("_wake_cost", nargs, 3, 3) < 0) {
        return NULL;
    }
    int n = PyLong_AsInt(args[0]);
    int busy = n == -1 && PyErr_Occurred() ? -1 : PyLong_AsInt(args[1]);
    double period = busy == -1 && PyErr_Occurred() ? -1.0 : PyFloat_AsDouble(args[2]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    /* (it runs with the GIL released and cannot be interrupted: a minute at most) */
    if (n < 1 || n > 1000000 || busy < 1 || busy > 64 || !(period > 0 && period < 1) ||
        n * period > 60) {
        PyErr_SetString(PyExc_ValueError, "_wake_cost needs 1 <= n <= 1e6, 1 <= busy <= 64, "
                                          "0 < period < 1 and n * period <= 60 s");
        return NULL;
    }
    int64_t ns;
    Py_BEGIN_ALLOW_THREADS
    ns = ip_wake_cost_ns(n, busy, (int64_t)(period * 1e9));
    Py_END_ALLOW_THREADS
    if (ns < 0) {
        PyErr_SetString(PyExc_RuntimeError, "_wake_cost could not start its threads");
        return NULL;
    }
    return PyFloat_FromDouble((double)ns / 1e9);
}

PyDoc_STRVAR(join_all_doc,
"join_all_workers($module, timeout=None, set_aside=False, /)\n--\n\n"
"Wait until every worker thread of every pool this interpreter created has\n"
"left its interpreter (used at exit, after the pools were stopped); with\n"
"set_aside, also the threads set aside (whose stopped calls are stuck in\n"
"C).  Return True if so.");

static PyObject *
join_all_workers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    ip_state *st = ip_state_of_module(module);
    ip_deadline deadline;
    int aside = 0;
    if (ip_check_nargs("join_all_workers", nargs, 0, 2) < 0 ||
        ip_arg_deadline(nargs ? args[0] : NULL, &deadline) < 0 ||
        (nargs == 2 && (aside = PyObject_IsTrue(args[1])) < 0)) {
        return NULL;
    }
    int rc;
    ip_signal_check chk;
    const ip_interrupt *intr = ip_caller_interrupt(st, &chk);
    Py_BEGIN_ALLOW_THREADS
    rc = ip_owner_wait_idle(st->owner, aside, &deadline, intr);
    Py_END_ALLOW_THREADS
    if (rc == IP_ERR_INTERRUPTED) {
        return ip_raise(st, rc);
    }
    ip_pins_release_deferred();   /* the workers' views are gone now */
    return PyBool_FromLong(rc == IP_OK);
}

PyDoc_STRVAR(stop_all_doc,
"stop_all_pools($module, cancel=False, cancel_running=False, interrupt=False, /)\n--\n\n"
"PoolCore.stop() on every live pool this interpreter made, including\n"
"those no Python object refers to any more (used at exit).");

static PyObject *
stop_all_pools(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int f[3];
    if (stop_flags("stop_all_pools", args, nargs, f) < 0) {
        return NULL;
    }
    ip_pools_stop_owned(ip_state_of_module(module)->owner, f[0], f[1], f[2]);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(hold_dropped_doc,
"_hold_dropped($module, hold, /)\n--\n\n"
"Tests only: while held, tasks a breaking or cancelling stop dropped wait\n"
"before they are delivered (the thread that stops waits with them).");

static PyObject *
hold_dropped(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int hold = PyObject_IsTrue(arg);
    if (hold < 0) {
        return NULL;
    }
    ip_pool_hold_dropped(hold);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_stop_grace_doc,
"_set_stop_grace($module, seconds, /)\n--\n\n"
"Tests only: how long a stopped call may keep running before it is taken\n"
"over and its worker set aside (default 0.1); return the previous value.");

static PyObject *
set_stop_grace(PyObject *Py_UNUSED(module), PyObject *arg)
{
    double seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(seconds >= 0 && seconds < 1e6)) {
        PyErr_SetString(PyExc_ValueError, "the grace must be between 0 and 1e6 seconds");
        return NULL;
    }
    int64_t old = atomic_exchange(&ip_stop_grace_ns, (int64_t)(seconds * 1e9));
    return PyFloat_FromDouble((double)old / 1e9);
}

static PyMethodDef pool_functions[] = {
    {"_hold_dropped", hold_dropped, METH_O, hold_dropped_doc},
    {"_set_stop_grace", set_stop_grace, METH_O, set_stop_grace_doc},
    {"stop_all_pools", (PyCFunction)(void (*)(void))stop_all_pools, METH_FASTCALL, stop_all_doc},
    {"live_counts", live_counts, METH_NOARGS, live_counts_doc},
    {"wait_counts", wait_counts, METH_NOARGS, wait_counts_doc},
    {"_lock_stats", lock_stats, METH_O, lock_stats_doc},
    {"_wake_cost", (PyCFunction)(void (*)(void))wake_cost, METH_FASTCALL, wake_cost_doc},
    {"join_all_workers", (PyCFunction)(void (*)(void))join_all_workers, METH_FASTCALL,
     join_all_doc},
    {NULL, NULL, 0, NULL},
};

int
ip_pool_type_init(PyObject *module, ip_state *st)
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
