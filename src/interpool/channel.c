/* Queue: a channel that the caller and every worker can put to and get from.
 *
 * The queue itself is raw memory (a pin), so it can be passed to workers as
 * a task argument; each interpreter wraps it in its own Queue object.  Items
 * are codec payloads.  Blocking calls sleep on condition variables with the
 * GIL released; an event loop waits on an eventfd registered as a waiter.
 * Nothing polls.
 */
#include "_core.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

atomic_long ip_live_queues;

typedef struct qitem {
    struct qitem *next;
    ip_buf data;
} qitem;

typedef struct waiter {
    struct waiter *next;
    int efd;
    int want_put;             /* 0: waits for an item, 1: for room */
} waiter;

typedef struct {
    ip_pin base;
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    qitem *head, *tail;
    Py_ssize_t n, maxsize;
    waiter *waiters;
} ip_queue;

typedef struct {
    PyObject_HEAD
    ip_queue *q;
} QueueObject;

static void
queue_destroy(ip_pin *pin)
{
    ip_queue *q = (ip_queue *)pin;
    for (qitem *it = q->head, *next; it != NULL; it = next) {
        next = it->next;
        ip_buf_free(&it->data);
        PyMem_RawFree(it);
    }
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    PyMem_RawFree(q);
    atomic_fetch_sub(&ip_live_queues, 1);
}

ip_pin *
ip_queue_pin(PyObject *queue)
{
    return &((QueueObject *)queue)->q->base;
}

PyObject *
ip_queue_from_pin(ip_state *st, ip_pin *pin)
{
    /* The Python subclass (with aget/aput) when it imports, else the base. */
    PyObject *cls = ip_support_attr(st, "queue_type");
    if (cls == NULL) {
        PyErr_Clear();
        cls = Py_NewRef(st->QueueType);
    }
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, st->QueueType)) {
        Py_DECREF(cls);
        PyErr_SetString(PyExc_TypeError, "interpool._support.queue_type is not a Queue type");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)cls;
    QueueObject *self = (QueueObject *)tp->tp_alloc(tp, 0);
    Py_DECREF(cls);
    if (self == NULL) {
        return NULL;
    }
    ip_pin_incref(pin);
    self->q = (ip_queue *)pin;
    return (PyObject *)self;
}

/* Wake every async waiter of one kind; mu held. */
static void
notify_waiters(ip_queue *q, int want_put)
{
    for (waiter *w = q->waiters; w != NULL; w = w->next) {
        if (w->want_put == want_put) {
            uint64_t one = 1;
            while (write(w->efd, &one, sizeof(one)) < 0 && errno == EINTR) {
            }
        }
    }
}

/* The first item, or NULL; wakes a producer waiting for room.  mu held. */
static qitem *
pop_locked(ip_queue *q)
{
    qitem *it = q->head;
    if (it != NULL) {
        q->head = it->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        q->n--;
        pthread_cond_signal(&q->not_full);
        notify_waiters(q, 1);
    }
    return it;
}

static int
parse_block_timeout(PyObject *block_obj, PyObject *timeout_obj, int *block, double *timeout)
{
    *block = block_obj == NULL ? 1 : PyObject_IsTrue(block_obj);
    if (*block < 0) {
        return -1;
    }
    *timeout = -1;
    if (timeout_obj != NULL && timeout_obj != Py_None) {
        *timeout = PyFloat_AsDouble(timeout_obj);
        if (*timeout == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (*timeout < 0) {
            PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
            return -1;
        }
    }
    return 0;
}

static PyObject *
raise_queue_exc(const char *name)
{
    PyObject *mod = PyImport_ImportModule("queue");
    PyObject *exc = mod ? PyObject_GetAttrString(mod, name) : NULL;
    Py_XDECREF(mod);
    if (exc != NULL) {
        PyErr_SetNone(exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* ------------------------------------------------------------ methods */

static PyObject *
queue_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"maxsize", NULL};
    Py_ssize_t maxsize = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:Queue", kwlist, &maxsize)) {
        return NULL;
    }
    ip_queue *q = PyMem_RawCalloc(1, sizeof(ip_queue));
    if (q == NULL) {
        return PyErr_NoMemory();
    }
    atomic_init(&q->base.refcnt, 1);
    q->base.kind = IP_PIN_QUEUE;
    q->base.destroy = queue_destroy;
    q->maxsize = maxsize > 0 ? maxsize : 0;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->not_empty, &attr);
    pthread_cond_init(&q->not_full, &attr);
    pthread_condattr_destroy(&attr);
    atomic_fetch_add(&ip_live_queues, 1);
    QueueObject *self = (QueueObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        ip_pin_decref(&q->base);
        return NULL;
    }
    self->q = q;
    return (PyObject *)self;
}

static void
queue_dealloc(PyObject *op)
{
    QueueObject *self = (QueueObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->q != NULL) {
        ip_pin_decref(&self->q->base);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

PyDoc_STRVAR(put_doc,
"put($self, item, block=True, timeout=None)\n--\n\n"
"Put item (any codec value; buffers are shared zero-copy).  A bounded\n"
"queue blocks while full; raises queue.Full if not block or on timeout.");

static PyObject *
queue_put(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"item", "block", "timeout", NULL};
    PyObject *item, *block_obj = NULL, *timeout_obj = NULL;
    int block;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OO:put", kwlist, &item, &block_obj,
                                     &timeout_obj) ||
        parse_block_timeout(block_obj, timeout_obj, &block, &timeout) < 0) {
        return NULL;
    }
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    ip_queue *q = ((QueueObject *)op)->q;
    if (st == NULL) {
        return NULL;
    }
    ip_release_deferred();
    qitem *it = PyMem_RawCalloc(1, sizeof(qitem));
    if (it == NULL) {
        return PyErr_NoMemory();
    }
    /* Zero-copy only from the main interpreter, which outlives every
     * reader: a worker's buffer would dangle once its interpreter ends, so
     * a worker's items are copied (SharedBuffer is always shared). */
    int saved = ip_tls_share_buffers;
    ip_tls_share_buffers = PyInterpreterState_Get() == PyInterpreterState_Main();
    int rc = ip_encode(st, &it->data, item);
    ip_tls_share_buffers = saved;
    if (rc < 0) {
        ip_buf_free(&it->data);
        PyMem_RawFree(it);
        return NULL;
    }
    int full = 0;
    Py_BEGIN_ALLOW_THREADS
    struct timespec deadline;
    int timed = ip_deadline(timeout, &deadline);
    pthread_mutex_lock(&q->mu);
    while (q->maxsize > 0 && q->n >= q->maxsize) {
        if (!block || (timed && timeout == 0)) {
            full = 1;
            break;
        }
        int r = timed ? pthread_cond_timedwait(&q->not_full, &q->mu, &deadline)
                      : pthread_cond_wait(&q->not_full, &q->mu);
        if (r == ETIMEDOUT && q->maxsize > 0 && q->n >= q->maxsize) {
            full = 1;
            break;
        }
    }
    if (!full) {
        if (q->tail) {
            q->tail->next = it;
        }
        else {
            q->head = it;
        }
        q->tail = it;
        q->n++;
        pthread_cond_signal(&q->not_empty);
        notify_waiters(q, 0);
    }
    pthread_mutex_unlock(&q->mu);
    Py_END_ALLOW_THREADS
    if (full) {
        ip_buf_free(&it->data);
        PyMem_RawFree(it);
        return raise_queue_exc("Full");
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_doc,
"get($self, block=True, timeout=None)\n--\n\n"
"Remove and return an item; sleeps while empty.  Raises queue.Empty if\n"
"not block or on timeout.");

static PyObject *
queue_get(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"block", "timeout", NULL};
    PyObject *block_obj = NULL, *timeout_obj = NULL;
    int block;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:get", kwlist, &block_obj, &timeout_obj) ||
        parse_block_timeout(block_obj, timeout_obj, &block, &timeout) < 0) {
        return NULL;
    }
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    ip_queue *q = ((QueueObject *)op)->q;
    if (st == NULL) {
        return NULL;
    }
    qitem *it = NULL;
    pthread_mutex_lock(&q->mu);   /* fast path: never waits for a GIL */
    it = pop_locked(q);
    pthread_mutex_unlock(&q->mu);
    if (it == NULL && block && timeout != 0) {
        Py_BEGIN_ALLOW_THREADS
        struct timespec deadline;
        int timed = ip_deadline(timeout, &deadline);
        pthread_mutex_lock(&q->mu);
        while (q->head == NULL) {
            int r = timed ? pthread_cond_timedwait(&q->not_empty, &q->mu, &deadline)
                          : pthread_cond_wait(&q->not_empty, &q->mu);
            if (r == ETIMEDOUT) {
                break;
            }
        }
        it = pop_locked(q);
        pthread_mutex_unlock(&q->mu);
        Py_END_ALLOW_THREADS
    }
    if (it == NULL) {
        return raise_queue_exc("Empty");
    }
    PyObject *v = ip_decode_buf(st, &it->data);
    ip_buf_free(&it->data);
    PyMem_RawFree(it);
    return v;
}

static PyObject *
queue_put_nowait(PyObject *op, PyObject *item)
{
    PyObject *args = PyTuple_Pack(2, item, Py_False);
    if (args == NULL) {
        return NULL;
    }
    PyObject *r = queue_put(op, args, NULL);
    Py_DECREF(args);
    return r;
}

static PyObject *
queue_get_nowait(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    PyObject *args = PyTuple_Pack(1, Py_False);
    if (args == NULL) {
        return NULL;
    }
    PyObject *r = queue_get(op, args, NULL);
    Py_DECREF(args);
    return r;
}

static PyObject *
queue_qsize(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ip_queue *q = ((QueueObject *)op)->q;
    pthread_mutex_lock(&q->mu);
    Py_ssize_t n = q->n;
    pthread_mutex_unlock(&q->mu);
    return PyLong_FromSsize_t(n);
}

static PyObject *
queue_empty(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ip_queue *q = ((QueueObject *)op)->q;
    pthread_mutex_lock(&q->mu);
    int empty = q->n == 0;
    pthread_mutex_unlock(&q->mu);
    return PyBool_FromLong(empty);
}

static PyObject *
queue_full(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ip_queue *q = ((QueueObject *)op)->q;
    pthread_mutex_lock(&q->mu);
    int full = q->maxsize > 0 && q->n >= q->maxsize;
    pthread_mutex_unlock(&q->mu);
    return PyBool_FromLong(full);
}

PyDoc_STRVAR(add_waiter_doc,
"_add_waiter($self, want_put, /)\n--\n\n"
"For an event loop: an eventfd that becomes readable when an item (or with\n"
"want_put, room) may be available, or -1 if it is available now.");

static PyObject *
queue_add_waiter(PyObject *op, PyObject *arg)
{
    ip_queue *q = ((QueueObject *)op)->q;
    int want_put = PyObject_IsTrue(arg);
    if (want_put < 0) {
        return NULL;
    }
    waiter *w = PyMem_RawCalloc(1, sizeof(waiter));
    if (w == NULL) {
        return PyErr_NoMemory();
    }
    w->want_put = want_put;
    w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->efd < 0) {
        PyMem_RawFree(w);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    pthread_mutex_lock(&q->mu);
    int ready = want_put ? !(q->maxsize > 0 && q->n >= q->maxsize) : q->n > 0;
    if (!ready) {
        w->next = q->waiters;
        q->waiters = w;
    }
    pthread_mutex_unlock(&q->mu);
    if (ready) {
        close(w->efd);
        PyMem_RawFree(w);
        return PyLong_FromLong(-1);
    }
    return PyLong_FromLong(w->efd);
}

static PyObject *
queue_remove_waiter(PyObject *op, PyObject *arg)
{
    ip_queue *q = ((QueueObject *)op)->q;
    int fd = PyLong_AsInt(arg);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    waiter *found = NULL;
    pthread_mutex_lock(&q->mu);
    for (waiter **link = &q->waiters; *link != NULL; link = &(*link)->next) {
        if ((*link)->efd == fd) {
            found = *link;
            *link = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (found != NULL) {
        close(found->efd);
        PyMem_RawFree(found);
    }
    Py_RETURN_NONE;
}

static PyObject *
queue_get_maxsize(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(((QueueObject *)op)->q->maxsize);
}

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))queue_put, METH_VARARGS | METH_KEYWORDS, put_doc},
    {"get", (PyCFunction)(void (*)(void))queue_get, METH_VARARGS | METH_KEYWORDS, get_doc},
    {"put_nowait", queue_put_nowait, METH_O, "put_nowait($self, item, /)\n--\n\nput(item, block=False)."},
    {"get_nowait", queue_get_nowait, METH_NOARGS, "get_nowait($self, /)\n--\n\nget(block=False)."},
    {"qsize", queue_qsize, METH_NOARGS, "qsize($self, /)\n--\n\nItems in the queue now."},
    {"empty", queue_empty, METH_NOARGS, "empty($self, /)\n--\n\nWhether the queue is empty now."},
    {"full", queue_full, METH_NOARGS, "full($self, /)\n--\n\nWhether a bounded queue is full now."},
    {"_add_waiter", queue_add_waiter, METH_O, add_waiter_doc},
    {"_remove_waiter", queue_remove_waiter, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef queue_getset[] = {
    {"maxsize", queue_get_maxsize, NULL, "The bound (0: unbounded).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(queue_doc,
"Queue(maxsize=0)\n--\n\n"
"A FIFO channel shared by the caller and every worker it is passed to.");

static PyType_Slot queue_slots[] = {
    {Py_tp_doc, (void *)queue_doc},
    {Py_tp_new, queue_new},
    {Py_tp_dealloc, queue_dealloc},
    {Py_tp_methods, queue_methods},
    {Py_tp_getset, queue_getset},
    {0, NULL},
};

static PyType_Spec queue_spec = {
    .name = "interpool._core.Queue",
    .basicsize = sizeof(QueueObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = queue_slots,
};

int
ip_channel_module_init(PyObject *module, ip_state *st)
{
    st->QueueType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &queue_spec, NULL);
    if (st->QueueType == NULL || PyModule_AddType(module, st->QueueType) < 0) {
        return -1;
    }
    return 0;
}
