/* Completion sinks: where finished tasks wait for the submitting interpreter.
 *
 * A worker (any interpreter) pushes a finished task onto a sink's done list
 * without touching any Python object, then wakes the consumer: a thread
 * sleeping in Completions.wait(), or an event loop watching the sink's
 * eventfd.  The consumer, in the submitting interpreter, takes the whole list
 * in one batch and resolves the owners (futures) from C.
 */
#include "_core.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct ip_sink {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    atomic_int refcnt;
    atomic_int ready;          /* done list non-empty (spin target) */
    atomic_long outstanding;   /* expected and not yet consumed */
    ip_task *head, *tail;      /* done list, FIFO */
    int waiting;               /* consumers sleeping on cond */
    Py_ssize_t ndone;          /* length of the done list */
    Py_ssize_t want;           /* wake a sleeping consumer at this many */
    int signalled;             /* efd written since the last drain */
    int closed;
    int orphaned;              /* its Completions object is gone */
    int efd;                   /* -1 when no eventfd was asked for */
};

/* ------------------------------------------------------------ tasks */

atomic_long ip_live_tasks;

ip_task *
ip_task_new(void)
{
    ip_task *t = PyMem_RawCalloc(1, sizeof(ip_task));
    if (t != NULL) {
        atomic_init(&t->refcnt, 1);
        atomic_init(&t->state, IP_QUEUED);
        atomic_fetch_add(&ip_live_tasks, 1);
    }
    return t;
}

void
ip_task_decref(ip_task *t)
{
    if (atomic_fetch_sub_explicit(&t->refcnt, 1, memory_order_acq_rel) != 1) {
        return;
    }
    ip_buf_free(&t->payload);
    ip_buf_free(&t->result);
    if (t->sink != NULL) {
        ip_sink_decref(t->sink);
    }
    PyMem_RawFree(t);
    atomic_fetch_sub(&ip_live_tasks, 1);
}

/* ------------------------------------------------------------ raw sink */

static ip_sink *
sink_new(int want_efd)
{
    ip_sink *s = PyMem_RawCalloc(1, sizeof(ip_sink));
    if (s == NULL) {
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->refcnt, 1);
    s->efd = -1;
    if (want_efd) {
        s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->efd < 0) {
            int e = errno;
            ip_sink_decref(s);
            errno = e;
            return NULL;
        }
    }
    return s;
}

void
ip_sink_incref(ip_sink *s)
{
    atomic_fetch_add_explicit(&s->refcnt, 1, memory_order_relaxed);
}

void
ip_sink_decref(ip_sink *s)
{
    if (atomic_fetch_sub_explicit(&s->refcnt, 1, memory_order_acq_rel) != 1) {
        return;
    }
    /* Nobody can push any more: every task holds a reference. */
    if (s->efd >= 0) {
        close(s->efd);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    PyMem_RawFree(s);
}

void
ip_sink_expect(ip_sink *s, Py_ssize_t n)
{
    atomic_fetch_add_explicit(&s->outstanding, n, memory_order_relaxed);
}

void
ip_sink_push(ip_sink *s, ip_task *t)
{
    int wake_cond, wake_fd;
    t->done_next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->orphaned) {
        /* Nobody will drain this sink (an abandoned map): free it now. */
        pthread_mutex_unlock(&s->mu);
        ip_task_decref(t);
        return;
    }
    if (s->tail) {
        s->tail->done_next = t;
    }
    else {
        s->head = t;
    }
    s->tail = t;
    s->ndone++;
    atomic_store_explicit(&s->ready, 1, memory_order_release);
    wake_cond = s->waiting && s->ndone >= s->want;
    wake_fd = s->efd >= 0 && !s->signalled;
    if (wake_fd) {
        s->signalled = 1;
    }
    if (wake_cond) {
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->mu);
    if (wake_fd) {
        /* One write per batch: the consumer drains everything on wake-up. */
        uint64_t one = 1;
        ssize_t r;
        do {
            r = write(s->efd, &one, sizeof(one));
        } while (r < 0 && errno == EINTR);
    }
}

/* Take the whole done list (consumer side). */
static ip_task *
sink_take_all(ip_sink *s)
{
    if (s->efd >= 0) {
        /* Clear the counter BEFORE taking the list, so a push racing with
         * us either lands in this batch or writes the fd again. */
        uint64_t v;
        while (read(s->efd, &v, sizeof(v)) < 0 && errno == EINTR) {
        }
    }
    pthread_mutex_lock(&s->mu);
    ip_task *head = s->head;
    s->head = s->tail = NULL;
    s->ndone = 0;
    s->signalled = 0;
    atomic_store_explicit(&s->ready, 0, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
    return head;
}

/* Nobody will consume this sink any more: close it, free what arrived, and
 * make later pushes free their task at once. */
static void
sink_orphan(ip_sink *s)
{
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    s->orphaned = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    Py_ssize_t n = 0;
    for (ip_task *t = sink_take_all(s), *next; t != NULL; t = next) {
        next = t->done_next;
        ip_task_decref(t);
        n++;
    }
    atomic_fetch_sub_explicit(&s->outstanding, n, memory_order_relaxed);
}

/* ------------------------------------------------------------ Completions */

typedef ip_completions CompletionsObject;

ip_completions *
ip_completions_check(ip_state *st, PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, st->SinkType)) {
        PyErr_Format(PyExc_TypeError, "expected a Completions object, got %T", obj);
        return NULL;
    }
    return (ip_completions *)obj;
}

int
ip_completions_bind(ip_completions *c, PyObject *owner, int64_t *seq)
{
    PyObject *key = PyLong_FromLongLong(c->next_seq);
    if (key == NULL) {
        return -1;
    }
    int r = PyDict_SetItem(c->owners, key, owner);
    Py_DECREF(key);
    if (r == 0) {
        *seq = c->next_seq++;
    }
    return r;
}

void
ip_completions_unbind(ip_completions *c, int64_t seq)
{
    PyObject *key = PyLong_FromLongLong(seq);
    if (key == NULL || PyDict_DelItem(c->owners, key) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(key);
}

/* Pop the owner bound to seq (new reference), or NULL if none. */
static PyObject *
pop_owner(CompletionsObject *self, int64_t seq)
{
    PyObject *owner = NULL;
    PyObject *key = PyLong_FromLongLong(seq);
    if (key == NULL || PyDict_Pop(self->owners, key, &owner) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(key);
    return owner;
}

static PyObject *
completions_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"eventfd", "on_cancelled", NULL};
    int want_efd = 0;
    PyObject *on_cancelled = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$pO:Completions", kwlist,
                                     &want_efd, &on_cancelled)) {
        return NULL;
    }
    CompletionsObject *self = (CompletionsObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->owners = PyDict_New();
    if (self->owners == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->sink = sink_new(want_efd);
    if (self->sink == NULL) {
        Py_DECREF(self);
        return errno ? PyErr_SetFromErrno(PyExc_OSError) : PyErr_NoMemory();
    }
    if (on_cancelled != Py_None) {
        self->on_cancelled = Py_NewRef(on_cancelled);
    }
    return (PyObject *)self;
}

static int
completions_traverse(PyObject *op, visitproc visit, void *arg)
{
    CompletionsObject *self = (CompletionsObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->owners);
    Py_VISIT(self->on_cancelled);
    return 0;
}

static int
completions_clear(PyObject *op)
{
    CompletionsObject *self = (CompletionsObject *)op;
    Py_CLEAR(self->owners);
    Py_CLEAR(self->on_cancelled);
    return 0;
}

static void
completions_dealloc(PyObject *op)
{
    CompletionsObject *self = (CompletionsObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (self->sink != NULL) {
        sink_orphan(self->sink);
        ip_sink_decref(self->sink);
    }
    (void)completions_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* The Python value a finished task stands for: its result, or an exception
 * object (with *is_error set).  NULL with an exception set if even that could
 * not be built (then the caller reports that exception instead). */
static PyObject *
task_value(ip_state *st, ip_task *t, int *is_error)
{
    PyObject *v, *fn, *res;
    *is_error = t->status != IP_OK;
    switch (t->status) {
    case IP_OK:
        return ip_decode_buf(st, &t->result);
    case IP_ERROR:
        v = ip_decode_buf(st, &t->result);
        fn = v ? ip_support_attr(st, "unpack_exception") : NULL;
        break;
    case IP_BROKEN:
        v = PyUnicode_DecodeUTF8(t->result.data, t->result.len, "replace");
        fn = v ? ip_support_attr(st, "broken_error") : NULL;
        break;
    default:
        v = Py_NewRef(Py_None);
        fn = ip_support_attr(st, "shutdown_error");
        break;
    }
    if (v == NULL || fn == NULL) {
        Py_XDECREF(v);
        Py_XDECREF(fn);
        return NULL;
    }
    res = PyObject_CallOneArg(fn, v);
    Py_DECREF(fn);
    Py_DECREF(v);
    return res;
}

/* Resolve one owner future; never leaves an exception set. */
static void
resolve_one(ip_state *st, CompletionsObject *self, ip_task *t, PyObject *owner)
{
    PyObject *value = NULL, *r = NULL;
    int is_error = 0;

    if (t->status == IP_CANCELLED && self->on_cancelled != NULL) {
        r = PyObject_CallOneArg(self->on_cancelled, owner);
        goto done;
    }
    r = PyObject_CallMethodNoArgs(owner, st->str_done);
    if (r == NULL) {
        goto done;
    }
    int already = PyObject_IsTrue(r);
    Py_CLEAR(r);
    if (already) {
        r = Py_NewRef(Py_None);
        goto done;   /* cancelled by its awaiter: the result is discarded */
    }
    value = task_value(st, t, &is_error);
    if (value == NULL) {
        /* e.g. a result that cannot be unpickled here: fail this task only */
        value = PyErr_GetRaisedException();
        is_error = 1;
    }
    r = PyObject_CallMethodOneArg(
        owner, is_error ? st->str_set_exception : st->str_set_result, value);
done:
    if (r == NULL) {
        PyErr_WriteUnraisable(owner);
    }
    Py_XDECREF(r);
    Py_XDECREF(value);
}

PyDoc_STRVAR(resolve_doc,
"resolve($self, /)\n--\n\n"
"Resolve the futures of every finished task (non-blocking); return how many.\n"
"Owners already done (cancelled by their awaiter) are skipped.");

static PyObject *
completions_resolve(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    CompletionsObject *self = (CompletionsObject *)op;
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    Py_ssize_t n = 0;
    ip_release_deferred();
    ip_task *t = sink_take_all(self->sink);
    while (t != NULL) {
        ip_task *next = t->done_next;
        PyObject *owner = pop_owner(self, t->seq);
        if (owner != NULL) {
            resolve_one(st, self, t, owner);
            Py_DECREF(owner);
        }
        ip_task_decref(t);
        n++;
        t = next;
    }
    atomic_fetch_sub_explicit(&self->sink->outstanding, n, memory_order_relaxed);
    return PyLong_FromSsize_t(n);
}

PyDoc_STRVAR(drain_doc,
"drain($self, /)\n--\n\n"
"Take every finished task (non-blocking) as a list of (index, ok, value)\n"
"for tasks sent by submit_many: value is the result when ok, else the\n"
"exception to raise.");

static PyObject *
completions_drain(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    CompletionsObject *self = (CompletionsObject *)op;
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    PyObject *out = PyList_New(0);
    Py_ssize_t n = 0;
    ip_release_deferred();
    ip_task *t = sink_take_all(self->sink);
    while (t != NULL) {
        ip_task *next = t->done_next;
        int is_error = 0;
        PyObject *value = task_value(st, t, &is_error);
        if (value == NULL) {
            value = PyErr_GetRaisedException();
            is_error = 1;
        }
        if (out != NULL) {
            PyObject *item = Py_BuildValue("(LOO)", (long long)t->seq,
                                           is_error ? Py_False : Py_True, value);
            if (item == NULL || PyList_Append(out, item) < 0) {
                Py_CLEAR(out);   /* keep draining: every task is released */
            }
            Py_XDECREF(item);
        }
        Py_DECREF(value);
        ip_task_decref(t);
        n++;
        t = next;
    }
    atomic_fetch_sub_explicit(&self->sink->outstanding, n, memory_order_relaxed);
    return out;
}

PyDoc_STRVAR(detach_doc,
"detach($self, /)\n--\n\n"
"Stop delivering to this sink (its consumer is gone, e.g. a closed event\n"
"loop): later results are freed on arrival.  Return the futures still\n"
"bound, so the caller can fail them.");

static PyObject *
completions_detach(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    CompletionsObject *self = (CompletionsObject *)op;
    sink_orphan(self->sink);
    PyObject *owners = PyDict_Values(self->owners);
    if (owners != NULL) {
        PyDict_Clear(self->owners);
    }
    return owners;
}

PyDoc_STRVAR(wait_doc,
"wait($self, timeout=None, batch=1, /)\n--\n\n"
"Sleep until a task has finished (with batch > 1: until that many have,\n"
"or all that are outstanding), the sink is closed with nothing outstanding,\n"
"or timeout seconds pass.  Return True when something finished.  Releases\n"
"the GIL.  Batching lets a consumer that only needs throughput (map) wake\n"
"once per batch instead of taking a core from the workers per result.");

static PyObject *
completions_wait(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ip_sink *s = ((CompletionsObject *)op)->sink;
    double timeout = -1;
    Py_ssize_t batch = 1;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "wait() takes at most 2 arguments");
        return NULL;
    }
    if (nargs == 2 && ((batch = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred())) {
        return NULL;
    }
    if (nargs >= 1 && args[0] != Py_None) {
        timeout = PyFloat_AsDouble(args[0]);
        if (timeout == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (timeout < 0) {
            timeout = 0;
        }
    }
    if (batch <= 1 && atomic_load_explicit(&s->ready, memory_order_acquire)) {
        Py_RETURN_TRUE;
    }
    Py_ssize_t want = batch;
    Py_ssize_t expected = atomic_load(&s->outstanding);
    if (want > expected) {
        want = expected;
    }
    if (want < 1) {
        want = 1;
    }
    int ready;
    Py_BEGIN_ALLOW_THREADS
    ready = timeout != 0 && want == 1 && ip_spin_while_zero(&s->ready);
    if (!ready) {
        struct timespec deadline;
        (void)ip_deadline(timeout > 0 ? timeout : -1, &deadline);
        pthread_mutex_lock(&s->mu);
        while (s->ndone < want && timeout != 0 &&
               !(s->closed && atomic_load(&s->outstanding) == 0)) {
            /* With several sleepers, any result wakes them. */
            s->want = s->waiting ? 1 : want;
            s->waiting++;
            int rc = timeout < 0 ? pthread_cond_wait(&s->cond, &s->mu)
                                 : pthread_cond_timedwait(&s->cond, &s->mu, &deadline);
            s->waiting--;
            if (rc == ETIMEDOUT) {
                break;
            }
        }
        ready = s->head != NULL;
        pthread_mutex_unlock(&s->mu);
    }
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ready);
}

PyDoc_STRVAR(close_doc,
"close($self, /)\n--\n\n"
"Mark the sink closed and wake every thread sleeping in wait().");

static PyObject *
completions_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ip_sink *s = ((CompletionsObject *)op)->sink;
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(fileno_doc,
"fileno($self, /)\n--\n\n"
"The eventfd that becomes readable when tasks finish (eventfd=True only).");

static PyObject *
completions_fileno(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ip_sink *s = ((CompletionsObject *)op)->sink;
    if (s->efd < 0) {
        PyErr_SetString(PyExc_ValueError, "this Completions has no eventfd");
        return NULL;
    }
    return PyLong_FromLong(s->efd);
}

static PyObject *
completions_get_outstanding(PyObject *op, void *Py_UNUSED(closure))
{
    ip_sink *s = ((CompletionsObject *)op)->sink;
    return PyLong_FromLong(atomic_load(&s->outstanding));
}

static PyObject *
completions_get_pending(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(PyDict_GET_SIZE(((CompletionsObject *)op)->owners));
}

static PyObject *
completions_get_closed(PyObject *op, void *Py_UNUSED(closure))
{
    ip_sink *s = ((CompletionsObject *)op)->sink;
    pthread_mutex_lock(&s->mu);
    int closed = s->closed;
    pthread_mutex_unlock(&s->mu);
    return PyBool_FromLong(closed);
}

static PyMethodDef completions_methods[] = {
    {"resolve", completions_resolve, METH_NOARGS, resolve_doc},
    {"drain", completions_drain, METH_NOARGS, drain_doc},
    {"wait", (PyCFunction)(void (*)(void))completions_wait, METH_FASTCALL, wait_doc},
    {"close", completions_close, METH_NOARGS, close_doc},
    {"detach", completions_detach, METH_NOARGS, detach_doc},
    {"fileno", completions_fileno, METH_NOARGS, fileno_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef completions_getset[] = {
    {"pending", completions_get_pending, NULL,
     "Futures bound to tasks not yet resolved (for leak checks).", NULL},
    {"outstanding", completions_get_outstanding, NULL,
     "Tasks sent to this sink and not yet resolved or drained.", NULL},
    {"closed", completions_get_closed, NULL, "Whether close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(completions_doc,
"Completions(*, eventfd=False, on_cancelled=None)\n--\n\n"
"Where finished tasks arrive for this interpreter to resolve in batches.");

static PyType_Slot completions_slots[] = {
    {Py_tp_doc, (void *)completions_doc},
    {Py_tp_new, completions_new},
    {Py_tp_dealloc, completions_dealloc},
    {Py_tp_traverse, completions_traverse},
    {Py_tp_clear, completions_clear},
    {Py_tp_methods, completions_methods},
    {Py_tp_getset, completions_getset},
    {0, NULL},
};

static PyType_Spec completions_spec = {
    .name = "interpool._core.Completions",
    .basicsize = sizeof(CompletionsObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = completions_slots,
};

int
ip_sink_module_init(PyObject *module, ip_state *st)
{
    st->SinkType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &completions_spec, NULL);
    if (st->SinkType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->SinkType);
}
