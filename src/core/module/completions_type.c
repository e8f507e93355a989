/* Completions: the Python side of raw completions, owned by the
 * interpreter that submits to them.  It maps each task's `seq` to its
 * owner (a future) and resolves finished tasks in batches, from C. */
#include "module/state.h"

#include <errno.h>

/* Values decoded per GC pause in resolve() (and held at once). */
#define RESOLVE_CHUNK 256

/* A finished task of the batch resolve() works through, decoded. */
typedef struct {
    ip_task *task;
    PyObject *value;          /* NULL: dropped at shutdown, for on_cancelled */
    int error;                /* value is the exception to set */
} resolve_slot;

typedef struct {
    PyObject_HEAD
    ip_completions *raw;
    PyObject *owners;         /* {seq: future} for tasks sent by submit() */
    int64_t next_seq;
    PyObject *on_cancelled;   /* callable(owner) for tasks dropped at shutdown */
    PyObject *owner_done;     /* callable(owner) -> bool, or NULL: owner.done() */
    PyTypeObject *lean_type;  /* owners of exactly this type are set directly (settle_lean) */
    PyObject *lean_finished;  /* the `_state` such an owner gets */
    /* The batch resolve() works through, kept here rather than on its C
     * stack: a decoding hook (or an owner's code that runs when it is set;
     * interpool's sync futures run their done-callbacks later, on their
     * pool's callback thread) that waits for another future of the same
     * batch resolves it by calling resolve() again, which goes on with
     * this batch where the outer call left it (and finishes it before
     * returning). */
    ip_done *rest;            /* taken, not decoded yet */
    resolve_slot *chunk;      /* RESOLVE_CHUNK slots, made by the first resolve() */
    int chunk_n, chunk_next;  /* decoded: [chunk_next, chunk_n) to resolve */
} CompletionsObject;

ip_completions *
ip_completions_raw(ip_state *st, PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, st->CompletionsType)) {
        PyErr_Format(PyExc_TypeError, "expected a Completions object, got %T", obj);
        return NULL;
    }
    return ((CompletionsObject *)obj)->raw;
}

int
ip_completions_bind(PyObject *completions, PyObject *owner, int64_t *seq)
{
    CompletionsObject *c = (CompletionsObject *)completions;
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
ip_completions_unbind(PyObject *completions, int64_t seq)
{
    CompletionsObject *c = (CompletionsObject *)completions;
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
    static char *kwlist[] = {"eventfd", "on_cancelled", "owner_done", "lean", NULL};
    int want_efd = 0;
    PyObject *on_cancelled = Py_None, *owner_done = Py_None, *lean = Py_None;
    PyTypeObject *lean_type = NULL;
    PyObject *lean_finished = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$pOOO:Completions", kwlist, &want_efd,
                                     &on_cancelled, &owner_done, &lean)) {
        return NULL;
    }
    if (lean != Py_None &&
        (!PyTuple_Check(lean) ||
         !PyArg_ParseTuple(lean, "O!O;lean must be (type, finished state)", &PyType_Type,
                           &lean_type, &lean_finished))) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "lean must be (type, finished state) or None");
        }
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
    self->raw = ip_task_completions_new(want_efd);
    if (self->raw == NULL) {
        Py_DECREF(self);
        return errno == ENOMEM ? PyErr_NoMemory() : PyErr_SetFromErrno(PyExc_OSError);
    }
    if (on_cancelled != Py_None) {
        self->on_cancelled = Py_NewRef(on_cancelled);
    }
    if (owner_done != Py_None) {
        self->owner_done = Py_NewRef(owner_done);
    }
    if (lean_type != NULL) {
        self->lean_type = (PyTypeObject *)Py_NewRef(lean_type);
        self->lean_finished = Py_NewRef(lean_finished);
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
    Py_VISIT(self->owner_done);
    Py_VISIT(self->lean_type);
    Py_VISIT(self->lean_finished);
    return 0;
}

static int
completions_clear(PyObject *op)
{
    CompletionsObject *self = (CompletionsObject *)op;
    Py_CLEAR(self->owners);
    Py_CLEAR(self->on_cancelled);
    Py_CLEAR(self->owner_done);
    Py_CLEAR(self->lean_type);
    Py_CLEAR(self->lean_finished);
    return 0;
}

static void
completions_dealloc(PyObject *op)
{
    CompletionsObject *self = (CompletionsObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    /* resolve() holds a reference while it works: no batch is left */
    assert(self->rest == NULL && self->chunk_next == self->chunk_n);
    PyMem_Free(self->chunk);
    if (self->raw != NULL) {
        ip_completions_orphan(self->raw);
        ip_completions_decref(self->raw);
    }
    (void)completions_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* The exception of work a stop ended (the stop_error hook). */
static PyObject *
stop_error(ip_state *st, const char *why)
{
    PyObject *arg = PyUnicode_FromString(why);
    PyObject *exc = arg ? ip_hook_call1(st, IP_HOOK_STOP_ERROR, arg) : NULL;
    Py_XDECREF(arg);
    return exc;
}

/* The Python value a finished task stands for: its result, or an exception
 * object (with *is_error set).  NULL with an exception set if even that could
 * not be built (then the caller reports that exception instead). */
static PyObject *
task_value(ip_state *st, ip_task *t, int *is_error)
{
    PyObject *v;
    ip_hook_id make;
    int stop = atomic_load(&t->stop_reason);
    if (stop == IP_STOP_TIMEOUT || (stop == IP_STOP_SHUTDOWN && t->status == IP_TASK_ERROR)) {
        /* Stopped while it ran: past its deadline (whatever it returned),
         * or by a shutdown (a result that made it anyway is kept). */
        *is_error = 1;
        return stop_error(st, stop == IP_STOP_TIMEOUT ? "timeout" : "interrupted");
    }
    *is_error = t->status != IP_TASK_OK;
    switch (t->status) {
    case IP_TASK_OK:
        return ip_decode_buf(&st->codec, &t->result);
    case IP_TASK_ERROR:
        v = ip_decode_buf(&st->codec, &t->result);
        make = IP_HOOK_UNPACK_EXCEPTION;
        break;
    case IP_TASK_BROKEN:
        v = PyUnicode_DecodeUTF8(t->result.data, t->result.len, "replace");
        make = IP_HOOK_BROKEN_ERROR;
        break;
    default:
        v = Py_NewRef(Py_None);
        make = IP_HOOK_STOP_ERROR;
        break;
    }
    if (v == NULL) {
        return NULL;
    }
    PyObject *res = ip_hook_call1(st, make, v);
    Py_DECREF(v);
    return res;
}

/* Keep the exception set in *stop if it is the first KeyboardInterrupt
 * (or another exception that is not an Exception, e.g. SystemExit) of
 * this resolve(): it is raised once the batch is resolved, so Ctrl-C
 * landing in a callback or a decoding hook is never lost, and no future
 * is left behind.  Return 1 if kept (the error indicator is then clear). */
static int
keep_stop(PyObject **stop)
{
    if (*stop != NULL || PyErr_ExceptionMatches(PyExc_Exception)) {
        return 0;
    }
    *stop = PyErr_GetRaisedException();
    return 1;
}

/* Is the owner done?  Asked through owner_done if given (the base
 * future's done(): TaskFuture.done() would resolve).  1, 0, or -1 with
 * an exception set. */
static int
owner_is_done(ip_state *st, CompletionsObject *self, PyObject *owner)
{
    PyObject *r = self->owner_done != NULL ? PyObject_CallOneArg(self->owner_done, owner)
                                           : PyObject_CallMethodNoArgs(owner, st->str_done);
    if (r == NULL) {
        return -1;
    }
    int done = PyObject_IsTrue(r);
    Py_DECREF(r);
    return done;
}

/* A lean future (interpool's TaskFuture: a concurrent.futures.Future made
 * without Future.__init__) has no Condition until something needs one:
 * a thread that blocks on it, wait() or as_completed() installing waiters,
 * a done-callback; all of them go through its `_condition` property, which
 * makes the lists and publishes the Condition as `_cond`, last.  While it
 * has none, nobody can be waiting on it or be owed a callback, so it is
 * set here as set_result()/set_exception() would set it, with no Python
 * call: `_result` or `_exception`, then `_state`.  The GIL is held from the
 * check to the stores and no Python code runs in between (the old values
 * are the class's: nothing is freed), so a thread making the Condition
 * either did so before (the owner is set the stdlib's way, under it) or
 * finds the state set.  1 if set, 0 if the owner needs the Python path, -1
 * with an exception set. */
static int
settle_lean(ip_state *st, CompletionsObject *self, PyObject *owner, PyObject *value,
            int is_error)
{
    if (Py_TYPE(owner) != self->lean_type) {
        return 0;
    }
    PyObject *cond;
    if (PyObject_GetOptionalAttr(owner, st->str_cond, &cond) < 0) {
        return -1;
    }
    if (cond != NULL) {
        Py_DECREF(cond);
        return 0;
    }
    if (PyObject_SetAttr(owner, is_error ? st->str_exception : st->str_result, value) < 0 ||
        PyObject_SetAttr(owner, st->str_state, self->lean_finished) < 0) {
        return -1;
    }
    return 1;
}

/* Resolve one owner future with the value decoded for its task (NULL for
 * a task dropped at shutdown that on_cancelled handles); never leaves an
 * exception set (see keep_stop). */
static void
resolve_one(ip_state *st, CompletionsObject *self, ip_task *t, PyObject *owner,
            PyObject *value, int is_error, PyObject **stop)
{
    if (t->status == IP_TASK_CANCELLED && self->on_cancelled != NULL) {
        PyObject *r = PyObject_CallOneArg(self->on_cancelled, owner);
        if (r == NULL && !keep_stop(stop)) {
            PyErr_WriteUnraisable(owner);
        }
        Py_XDECREF(r);
        return;
    }
    int lean = settle_lean(st, self, owner, value, is_error);
    if (lean > 0) {
        return;
    }
    if (lean < 0 && !keep_stop(stop)) {   /* (out of memory): the Python way then */
        PyErr_WriteUnraisable(owner);
    }
    int done = owner_is_done(st, self, owner);
    if (done < 0) {   /* set it anyway: it must not be left pending */
        if (!keep_stop(stop)) {
            PyErr_WriteUnraisable(owner);
        }
        done = 0;
    }
    if (done) {
        return;   /* cancelled by its awaiter: the result is discarded */
    }
    PyObject *set = is_error ? st->str_set_exception : st->str_set_result;
    PyObject *r = PyObject_CallMethodOneArg(owner, set, value);
    if (r == NULL && keep_stop(stop) && owner_is_done(st, self, owner) == 0) {
        /* Interrupted before the future took the value (after, it is a
         * callback that was): once more. */
        r = PyObject_CallMethodOneArg(owner, set, value);
    }
    if (r == NULL) {
        if (PyErr_Occurred()) {
            PyErr_WriteUnraisable(owner);
        }
        return;
    }
    Py_DECREF(r);
}

/* Decode the value of a finished task: its result, or the exception to
 * set (*is_error); a value that cannot be decoded here (e.g. a result
 * that cannot be unpickled) fails this task only.  A Ctrl-C that lands in
 * a decoding hook is kept (keep_stop) and the value decoded again: the
 * task's encoded result is still there.  Never NULL. */
static PyObject *
decode_result(ip_state *st, ip_task *t, int *is_error, PyObject **stop)
{
    *is_error = 0;
    PyObject *value = task_value(st, t, is_error);
    if (value == NULL && keep_stop(stop)) {
        value = task_value(st, t, is_error);
    }
    if (value == NULL) {
        value = PyErr_GetRaisedException();
        *is_error = 1;
    }
    return value;
}

/* decode_result, or NULL for a task dropped at shutdown when on_cancelled
 * handles those (resolve_one then calls it). */
static PyObject *
decode_value_of(ip_state *st, CompletionsObject *self, ip_task *t, int *is_error,
                PyObject **stop)
{
    if (t->status == IP_TASK_CANCELLED && self->on_cancelled != NULL) {
        *is_error = 0;
        return NULL;
    }
    return decode_result(st, t, is_error, stop);
}

/* A batch decodes with the cyclic GC paused: its results are new objects
 * the caller keeps, none of them garbage, and a young collection every
 * 2,000 of them (each counting towards an older one) cost more than the
 * decoding itself (measured with 600-object documents kept: 338 -> 216 us
 * each on CPython 3.14).  Collections resume at the first allocation
 * after the batch, over everything it made.  Returns whether to resume. */
static inline int
gc_pause(ip_done *batch)
{
    return batch != NULL && batch->next != NULL ? PyGC_Disable() : 0;
}

static inline void
gc_resume(int paused)
{
    if (paused) {
        PyGC_Enable();
    }
}

/* Output the finished tasks' workers forwarded reached the channel before
 * their results: write it out before they resolve.  A Ctrl-C while it is
 * written is kept like one from a callback (keep_stop); a failing stream
 * only loses output. */
static inline void
drain_output(ip_state *st, ip_done *batch, PyObject **stop)
{
    /* Nothing to write (the common case): no Python call.  The writer
     * thread says it is writing before it takes an item, so an item it
     * took but has not written yet is waited for. */
    if (batch != NULL && st->drain_output &&
        (st->output_writing || st->output_queue == NULL ||
         ip_queue_size(st->output_queue) > 0)) {
        PyObject *r = ip_hook_call(st, IP_HOOK_DRAIN_OUTPUT, NULL, 0);
        if (r == NULL && !keep_stop(stop)) {
            PyErr_WriteUnraisable(st->hooks[IP_HOOK_DRAIN_OUTPUT]);
        }
        Py_XDECREF(r);
    }
}

PyDoc_STRVAR(resolve_doc,
"resolve($self, /)\n--\n\n"
"Resolve the futures of every finished task (non-blocking); return how many.\n"
"Owners already done (cancelled by their awaiter) are skipped.  A\n"
"KeyboardInterrupt (or SystemExit) out of a decoding hook or an owner's\n"
"code is raised once every future of the batch is resolved.");

static PyObject *
completions_resolve(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    CompletionsObject *self = (CompletionsObject *)op;
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    Py_ssize_t n = 0;
    PyObject *stop = NULL;   /* see keep_stop */
    if (self->chunk == NULL) {
        self->chunk = PyMem_Malloc(RESOLVE_CHUNK * sizeof(resolve_slot));
        if (self->chunk == NULL) {
            return PyErr_NoMemory();
        }
    }
    ip_pins_release_deferred();
    ip_done *more = ip_completions_take_all(self->raw);
    if (self->rest == NULL) {
        self->rest = more;
    }
    else if (more != NULL) {   /* called back within a batch: after it */
        ip_done *tail = self->rest;
        while (tail->next != NULL) {
            tail = tail->next;
        }
        tail->next = more;
    }
    Py_INCREF(self);   /* a callback may drop the last other reference */
    drain_output(st, more, &stop);   /* Python code: the batch is in self already */
    for (;;) {
        if (self->chunk_next < self->chunk_n) {
            /* Resolve one (Python code runs: future methods, callbacks). */
            resolve_slot slot = self->chunk[self->chunk_next++];
            PyObject *owner = pop_owner(self, slot.task->seq);
            if (owner != NULL) {
                resolve_one(st, self, slot.task, owner, slot.value, slot.error, &stop);
                Py_DECREF(owner);
            }
            Py_XDECREF(slot.value);
            ip_task_decref(slot.task);
            n++;
            continue;
        }
        if (self->rest == NULL) {
            break;
        }
        /* Decode the next chunk with the GC paused, publishing each value
         * as it is made: a decoding hook that resolves (a nested call,
         * which finishes everything it finds) sees those before it. */
        self->chunk_next = self->chunk_n = 0;
        int paused = gc_pause(self->rest);
        while (self->rest != NULL && self->chunk_n < RESOLVE_CHUNK) {
            ip_done *item = self->rest;
            self->rest = item->next;
            ip_task *t = ip_task_of(item);
            int error;
            PyObject *value = decode_value_of(st, self, t, &error, &stop);
            if (self->chunk_next == self->chunk_n) {   /* (a nested call emptied it) */
                self->chunk_next = self->chunk_n = 0;
            }
            self->chunk[self->chunk_n++] = (resolve_slot){t, value, error};
        }
        gc_resume(paused);
    }
    ip_completions_consumed(self->raw, n);
    Py_DECREF(self);
    if (stop != NULL) {
        PyErr_SetRaisedException(stop);
        return NULL;
    }
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
    ip_pins_release_deferred();
    ip_done *first = ip_completions_take_all(self->raw);
    PyObject *stop = NULL;   /* see keep_stop */
    drain_output(st, first, &stop);
    int paused = gc_pause(first);   /* no Python code runs in this loop but hooks */
    for (ip_done *item = first, *next; item != NULL; item = next) {
        next = item->next;
        ip_task *t = ip_task_of(item);
        int is_error;
        PyObject *value = decode_result(st, t, &is_error, &stop);
        if (out != NULL) {
            PyObject *entry = Py_BuildValue("(LOO)", (long long)t->seq,
                                            is_error ? Py_False : Py_True, value);
            if (entry == NULL || PyList_Append(out, entry) < 0) {
                Py_CLEAR(out);   /* keep draining: every task is released */
            }
            Py_XDECREF(entry);
        }
        Py_DECREF(value);
        ip_task_decref(t);
        n++;
    }
    gc_resume(paused);
    ip_completions_consumed(self->raw, n);
    if (stop != NULL) {   /* Ctrl-C: the map it serves stops (and cancels the rest) */
        Py_XDECREF(out);
        PyErr_SetRaisedException(stop);
        return NULL;
    }
    return out;
}

PyDoc_STRVAR(detach_doc,
"detach($self, /)\n--\n\n"
"Stop delivering here (the consumer is gone, e.g. a closed event loop):\n"
"later results are freed on arrival.  Return the futures still bound, so\n"
"the caller can fail them.");

static PyObject *
completions_detach(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    CompletionsObject *self = (CompletionsObject *)op;
    ip_completions_orphan(self->raw);
    PyObject *owners = PyDict_Values(self->owners);
    if (owners != NULL) {
        PyDict_Clear(self->owners);
    }
    return owners;
}

PyDoc_STRVAR(wait_doc,
"wait($self, timeout=None, batch=1, index=-1, /)\n--\n\n"
"Sleep until a task has finished (with batch > 1: until that many have,\n"
"or all that are outstanding, or the task of `index` has), the\n"
"completions are closed with nothing outstanding or detached, or timeout\n"
"seconds pass.  Return True when something finished.  Releases the GIL.  A map\n"
"waits for the index it must yield next with a large batch: it wakes as\n"
"soon as that result is there, and not for every other one.");

static PyObject *
completions_wait(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ip_completions *c = ((CompletionsObject *)op)->raw;
    ip_deadline deadline;
    Py_ssize_t batch = 1;
    long long key = -1;
    if (ip_check_nargs("wait", nargs, 0, 3) < 0 ||
        (nargs >= 2 && (batch = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred()) ||
        (nargs == 3 && (key = PyLong_AsLongLong(args[2])) == -1 && PyErr_Occurred()) ||
        ip_arg_deadline(nargs ? args[0] : NULL, &deadline) < 0) {
        return NULL;
    }
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    int rc;
    ip_signal_check chk;
    const ip_interrupt *intr = ip_caller_interrupt(st, &chk);
    Py_BEGIN_ALLOW_THREADS
    rc = ip_completions_wait(c, batch, key, &deadline, intr);
    Py_END_ALLOW_THREADS
    if (rc == IP_ERR_INTERRUPTED) {
        return ip_raise(st, rc);
    }
    return PyBool_FromLong(rc == IP_OK);
}

PyDoc_STRVAR(hold_doc,
"hold($self, /)\n--\n\n"
"An event loop consumer (eventfd=True) that has just resolved asks whether\n"
"workers may hold its wake-ups for a batch: when results come at least\n"
"every 0.5 ms and no core is spare, pushes until the window ends (the time\n"
"~32 results take, 1 to 4 ms) write the eventfd only for a full batch, the\n"
"last result in flight, or a worker with nothing queued.  Return the window\n"
"in seconds (the loop must resolve again by then: a timer), or 0.0: every\n"
"result wakes it.");

static PyObject *
completions_hold(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble((double)ip_completions_hold(((CompletionsObject *)op)->raw) / 1e9);
}

PyDoc_STRVAR(close_doc,
"close($self, /)\n--\n\n"
"Mark the completions closed and wake every thread sleeping in wait().");

static PyObject *
completions_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ip_completions_close(((CompletionsObject *)op)->raw);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(fileno_doc,
"fileno($self, /)\n--\n\n"
"The eventfd that becomes readable when tasks finish (eventfd=True only).");

static PyObject *
completions_fileno(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ip_completions *c = ((CompletionsObject *)op)->raw;
    if (c->efd < 0) {
        PyErr_SetString(PyExc_ValueError, "this Completions has no eventfd");
        return NULL;
    }
    return PyLong_FromLong(c->efd);
}

static PyObject *
completions_get_outstanding(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(atomic_load(&((CompletionsObject *)op)->raw->outstanding));
}

static PyObject *
completions_get_pending(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(PyDict_GET_SIZE(((CompletionsObject *)op)->owners));
}

static PyObject *
completions_get_ready(PyObject *op, void *Py_UNUSED(closure))
{
    ip_completions *c = ((CompletionsObject *)op)->raw;
    return PyBool_FromLong(atomic_load_explicit(&c->ready, memory_order_acquire));
}

static PyObject *
completions_get_closed(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(ip_completions_closed(((CompletionsObject *)op)->raw));
}

static PyMethodDef completions_methods[] = {
    {"resolve", completions_resolve, METH_NOARGS, resolve_doc},
    {"drain", completions_drain, METH_NOARGS, drain_doc},
    {"wait", (PyCFunction)(void (*)(void))completions_wait, METH_FASTCALL, wait_doc},
    {"close", completions_close, METH_NOARGS, close_doc},
    {"hold", completions_hold, METH_NOARGS, hold_doc},
    {"detach", completions_detach, METH_NOARGS, detach_doc},
    {"fileno", completions_fileno, METH_NOARGS, fileno_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef completions_getset[] = {
    {"pending", completions_get_pending, NULL,
     "Futures bound to tasks not yet resolved (for leak checks).", NULL},
    {"outstanding", completions_get_outstanding, NULL,
     "Tasks sent here and not yet resolved or drained.", NULL},
    {"closed", completions_get_closed, NULL, "Whether close() was called.", NULL},
    {"ready", completions_get_ready, NULL, "Whether finished tasks wait to be resolved.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(completions_doc,
"Completions(*, eventfd=False, on_cancelled=None, owner_done=None, lean=None)\n--\n\n"
"Where finished tasks arrive for this interpreter to resolve in batches.\n"
"on_cancelled(owner) handles a task dropped at shutdown; owner_done(owner)\n"
"says whether an owner is done already (default: owner.done()); lean =\n"
"(type, finished_state): owners of exactly that type are set directly\n"
"while they have no `_cond` (see settle_lean).");

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
ip_completions_type_init(PyObject *module, ip_state *st)
{
    st->CompletionsType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &completions_spec, NULL);
    if (st->CompletionsType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->CompletionsType);
}
