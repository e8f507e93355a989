/* Queue: a channel (data/channel.c) as a Python object.  The channel is a
 * pin, so a Queue passed to a task reaches the worker as another Queue on
 * the same channel. */
#include "module/state.h"

typedef struct {
    PyObject_HEAD
    ip_channel *q;
} QueueObject;

static ip_channel *
channel_of(PyObject *op)
{
    return ((QueueObject *)op)->q;
}

static PyObject *
queue_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"maxsize", NULL};
    Py_ssize_t maxsize = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:Queue", kwlist, &maxsize)) {
        return NULL;
    }
    ip_channel *q = ip_channel_new(maxsize);
    if (q == NULL) {
        return PyErr_NoMemory();
    }
    QueueObject *self = (QueueObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        ip_pin_decref(ip_channel_pin(q));
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
        ip_pin_decref(ip_channel_pin(self->q));
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* `block` and `timeout` as queue.Queue takes them, as a deadline. */
static int
parse_block_timeout(PyObject *block_obj, PyObject *timeout_obj, ip_deadline *deadline)
{
    int block = block_obj == NULL ? 1 : PyObject_IsTrue(block_obj);
    double timeout;
    if (block < 0 || ip_arg_timeout(timeout_obj, "'timeout'", &timeout) < 0) {
        return -1;
    }
    if (!block) {
        ip_deadline_now(deadline);
    }
    else {
        ip_deadline_in(deadline, timeout);
    }
    return 0;
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
    ip_deadline deadline, now;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OO:put", kwlist, &item, &block_obj,
                                     &timeout_obj) ||
        parse_block_timeout(block_obj, timeout_obj, &deadline) < 0) {
        return NULL;
    }
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    ip_pins_release_deferred();
    /* Zero-copy only from the main interpreter, which outlives every
     * reader: a worker's buffer would dangle once its interpreter ends, so
     * a worker's items are copied (SharedBuffer is always shared). */
    int flags = PyInterpreterState_Get() == PyInterpreterState_Main() ? IP_ENC_SHARE_BUFFERS : 0;
    ip_buf data = {0};
    if (ip_encode(&st->codec, &data, item, flags) < 0) {
        ip_buf_free(&data);
        return NULL;
    }
    ip_deadline_now(&now);
    int rc = ip_channel_put(channel_of(op), &data, &now, NULL);   /* room: no GIL dance */
    if (rc == IP_ERR_FULL && !ip_deadline_passed(&deadline)) {
        ip_signal_check chk;
        const ip_interrupt *intr = ip_caller_interrupt(st, &chk);
        Py_BEGIN_ALLOW_THREADS
        rc = ip_channel_put(channel_of(op), &data, &deadline, intr);
        Py_END_ALLOW_THREADS
    }
    if (rc < 0) {
        ip_buf_free(&data);
        return ip_raise(st, rc);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_doc,
"get($self, block=True, timeout=None)\n--\n\n"
"Remove and return an item; sleeps while empty.  Raises queue.Empty if\n"
"not block or on timeout.  An item that cannot be rebuilt in this\n"
"interpreter goes back to the front of the queue, and the error is raised.");

static PyObject *
queue_get(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"block", "timeout", NULL};
    PyObject *block_obj = NULL, *timeout_obj = NULL;
    ip_deadline deadline, now;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:get", kwlist, &block_obj, &timeout_obj) ||
        parse_block_timeout(block_obj, timeout_obj, &deadline) < 0) {
        return NULL;
    }
    ip_state *st = ip_state_of_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    ip_buf data = {0};
    ip_deadline_now(&now);
    int rc = ip_channel_get(channel_of(op), &data, &now, NULL);   /* fast path */
    if (rc == IP_ERR_EMPTY && !ip_deadline_passed(&deadline)) {
        ip_signal_check chk;
        const ip_interrupt *intr = ip_caller_interrupt(st, &chk);
        Py_BEGIN_ALLOW_THREADS
        rc = ip_channel_get(channel_of(op), &data, &deadline, intr);
        Py_END_ALLOW_THREADS
    }
    if (rc < 0) {
        return ip_raise(st, rc);
    }
    PyObject *v = ip_decode_buf(&st->codec, &data);
    if (v == NULL) {
        /* Not decodable here (e.g. its class's module does not load in this
         * interpreter): back to the front, for a getter that can. */
        PyObject *exc = PyErr_GetRaisedException();
        if (ip_channel_unget(channel_of(op), &data) < 0) {
            PyErr_SetRaisedException(exc);
            return PyErr_NoMemory();
        }
        PyErr_SetRaisedException(exc);
        return NULL;
    }
    ip_buf_free(&data);
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
    return PyLong_FromSsize_t(ip_channel_size(channel_of(op)));
}

Py_ssize_t
ip_queue_size(PyObject *queue)
{
    return ip_channel_size(channel_of(queue));
}

static PyObject *
queue_empty(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(ip_channel_size(channel_of(op)) == 0);
}

static PyObject *
queue_full(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(ip_channel_full(channel_of(op)));
}

PyDoc_STRVAR(add_waiter_doc,
"_add_waiter($self, want_put, /)\n--\n\n"
"For an event loop: an eventfd that becomes readable when an item (or with\n"
"want_put, room) may be available, or -1 if it is available now.");

static PyObject *
queue_add_waiter(PyObject *op, PyObject *arg)
{
    int want_put = PyObject_IsTrue(arg);
    if (want_put < 0) {
        return NULL;
    }
    int fd;
    int rc = ip_channel_add_waiter(channel_of(op), want_put, &fd);
    if (rc < 0) {
        ip_state *st = ip_state_of_type(Py_TYPE(op));
        return st ? ip_raise(st, rc) : NULL;
    }
    return PyLong_FromLong(fd);
}

static PyObject *
queue_remove_waiter(PyObject *op, PyObject *arg)
{
    int fd = PyLong_AsInt(arg);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    ip_channel_remove_waiter(channel_of(op), fd);
    Py_RETURN_NONE;
}

static PyObject *
queue_get_maxsize(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(ip_channel_maxsize(channel_of(op)));
}

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))queue_put, METH_VARARGS | METH_KEYWORDS, put_doc},
    {"get", (PyCFunction)(void (*)(void))queue_get, METH_VARARGS | METH_KEYWORDS, get_doc},
    {"put_nowait", queue_put_nowait, METH_O,
     "put_nowait($self, item, /)\n--\n\nput(item, block=False)."},
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

/* ------------------------------------------------------------ pin kind 'q' */

static int
encode_queue(ip_codec *c, ip_buf *buf, PyObject *obj, int Py_UNUSED(flags))
{
    ip_state *st = c->owner;
    if (!PyObject_TypeCheck(obj, st->QueueType)) {
        return 0;
    }
    return ip_codec_write_pin(buf, IP_KIND_QUEUE, ip_channel_pin(channel_of(obj)));
}

static PyObject *
decode_queue(ip_codec *c, ip_pin *pin)
{
    ip_state *st = c->owner;
    /* The Python subclass (with aget/aput) when it imports, else the base. */
    PyObject *cls = ip_hook_call(st, IP_HOOK_QUEUE_TYPE, NULL, 0);
    if (cls == NULL) {
        PyErr_Clear();
        cls = Py_NewRef(st->QueueType);
    }
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, st->QueueType)) {
        Py_DECREF(cls);
        PyErr_SetString(PyExc_TypeError, "the queue_type hook did not return a Queue type");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)cls;
    QueueObject *self = (QueueObject *)tp->tp_alloc(tp, 0);
    Py_DECREF(cls);
    if (self == NULL) {
        return NULL;
    }
    ip_pin_incref(pin);
    self->q = (ip_channel *)pin;
    return (PyObject *)self;
}

int
ip_queue_type_init(PyObject *module, ip_state *st)
{
    st->QueueType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &queue_spec, NULL);
    if (st->QueueType == NULL || PyModule_AddType(module, st->QueueType) < 0) {
        return -1;
    }
    ip_pin_kind kind = {IP_KIND_QUEUE, encode_queue, decode_queue};
    return ip_codec_add_kind(&st->codec, &kind);
}
