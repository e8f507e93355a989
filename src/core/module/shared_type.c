/* Shared (Pool.share): the handle on a value sent once per worker, and each
 * interpreter's cache of decoded copies. */
#include "module/state.h"

atomic_long ip_live_shared_copies;

/* A worker's copies: its own objects, decoded once, keyed by the pin. */
struct shared_cache {
    Py_ssize_t n, cap;
    struct cached {
        ip_shared *sv;         /* pinned while cached */
        PyObject *value;
    } *items;
};

static void
drop_cached(struct cached *c)
{
    Py_CLEAR(c->value);
    ip_pin_decref(&c->sv->base);
    atomic_fetch_sub(&ip_live_shared_copies, 1);
}

void
ip_shared_purge(ip_state *st)
{
    long epoch = atomic_load_explicit(&ip_shared_epoch, memory_order_acquire);
    if (epoch == st->shared_epoch_seen) {
        return;
    }
    st->shared_epoch_seen = epoch;
    shared_cache *cache = st->shared_cache;
    if (cache == NULL) {
        return;
    }
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < cache->n; i++) {
        if (atomic_load(&cache->items[i].sv->released)) {
            drop_cached(&cache->items[i]);
        }
        else {
            cache->items[kept++] = cache->items[i];
        }
    }
    cache->n = kept;
}

void
ip_shared_cache_free(ip_state *st)
{
    shared_cache *cache = st->shared_cache;
    if (cache == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < cache->n; i++) {
        drop_cached(&cache->items[i]);
    }
    PyMem_RawFree(cache->items);
    PyMem_RawFree(cache);
    st->shared_cache = NULL;
}

int
ip_shared_cache_traverse(ip_state *st, visitproc visit, void *arg)
{
    shared_cache *cache = st->shared_cache;
    if (cache != NULL) {
        for (Py_ssize_t i = 0; i < cache->n; i++) {
            Py_VISIT(cache->items[i].value);
        }
    }
    return 0;
}

/* The value of sv in this interpreter: a worker's cached copy. */
static PyObject *
shared_value_here(ip_state *st, ip_shared *sv)
{
    if (!st->is_worker) {
        /* e.g. a handle that came back through a Queue: no cache here,
         * since only workers purge released values. */
        return ip_decode_buf(&st->codec, &sv->data);
    }
    shared_cache *cache = st->shared_cache;
    if (cache == NULL) {
        cache = st->shared_cache = PyMem_RawCalloc(1, sizeof(shared_cache));
        if (cache == NULL) {
            return PyErr_NoMemory();
        }
    }
    for (Py_ssize_t i = 0; i < cache->n; i++) {
        if (cache->items[i].sv == sv) {
            return Py_NewRef(cache->items[i].value);
        }
    }
    PyObject *value = ip_decode_buf(&st->codec, &sv->data);
    if (value == NULL || atomic_load(&sv->released)) {
        return value;   /* released meanwhile: use it once, keep no copy */
    }
    if (cache->n == cache->cap) {
        Py_ssize_t cap = cache->cap ? cache->cap * 2 : 8;
        struct cached *items = PyMem_RawRealloc(cache->items, cap * sizeof(struct cached));
        if (items == NULL) {
            return value;
        }
        cache->items = items;
        cache->cap = cap;
    }
    ip_pin_incref(&sv->base);
    cache->items[cache->n].sv = sv;
    cache->items[cache->n].value = Py_NewRef(value);
    cache->n++;
    atomic_fetch_add(&ip_live_shared_copies, 1);
    return value;
}

/* ------------------------------------------------------------ Shared */

typedef struct {
    PyObject_HEAD
    ip_shared *sv;
    int stand_in;   /* auto-share's: never releases the value */
} SharedObject;

static void
release(SharedObject *self)
{
    if (ip_shared_release(self->sv)) {
        ip_wake_all_pools();   /* idle workers of every pool drop their copies now */
    }
}

static PyObject *
shared_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"value", NULL};
    PyObject *value;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Shared", kwlist, &value)) {
        return NULL;
    }
    ip_state *st = ip_state_of_type(type);
    if (st == NULL) {
        return NULL;
    }
    if (PyObject_TypeCheck(value, st->SharedType)) {
        PyErr_SetString(PyExc_TypeError, "cannot share a Shared handle; share the value itself");
        return NULL;
    }
    ip_buf data = {0};
    /* A shared value is a copy, never a view. */
    if (ip_encode(&st->codec, &data, value, 0) < 0) {
        ip_buf_free(&data);
        return NULL;
    }
    ip_shared *sv = ip_shared_new(&data);
    if (sv == NULL) {
        ip_buf_free(&data);
        return PyErr_NoMemory();
    }
    SharedObject *self = (SharedObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        ip_pin_decref(&sv->base);
        return NULL;
    }
    self->sv = sv;
    return (PyObject *)self;
}

static void
shared_dealloc(PyObject *op)
{
    SharedObject *self = (SharedObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->sv != NULL) {
        if (!self->stand_in) {
            release(self);   /* the last reference to the handle went */
        }
        ip_pin_decref(&self->sv->base);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

PyDoc_STRVAR(shared_release_doc,
"release($self, /)\n--\n\n"
"Free the value in every worker (idempotent).  Tasks already submitted\n"
"still get it; passing the handle again raises ValueError.");

static PyObject *
shared_release_method(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    release((SharedObject *)op);
    Py_RETURN_NONE;
}

static PyObject *
shared_get_released(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(atomic_load(&((SharedObject *)op)->sv->released));
}

static PyObject *
shared_get_id(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(((SharedObject *)op)->sv->id);
}

static PyObject *
shared_get_nbytes(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(((SharedObject *)op)->sv->data.len);
}

static PyObject *
shared_repr(PyObject *op)
{
    SharedObject *self = (SharedObject *)op;
    return PyUnicode_FromFormat("<interpool.Shared id=%llu %zd bytes%s>",
                                (unsigned long long)self->sv->id, self->sv->data.len,
                                atomic_load(&self->sv->released) ? " released" : "");
}

static PyObject *
shared_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(op);
}

static PyObject *
shared_exit(PyObject *op, PyObject *Py_UNUSED(args))
{
    release((SharedObject *)op);
    Py_RETURN_NONE;
}

static PyMethodDef shared_methods[] = {
    {"release", shared_release_method, METH_NOARGS, shared_release_doc},
    {"__enter__", shared_enter, METH_NOARGS, NULL},
    {"__exit__", shared_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef shared_getset[] = {
    {"released", shared_get_released, NULL, "Whether release() was called.", NULL},
    {"id", shared_get_id, NULL, "Process-unique id of the shared value.", NULL},
    {"nbytes", shared_get_nbytes, NULL, "Size of the encoded value.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(shared_doc,
"Shared(value)\n--\n\n"
"A value sent to each worker at most once (use Pool.share).  Passing the\n"
"handle as a task argument, at top level or inside containers, gives the\n"
"worker its own cached copy.");

static PyType_Slot shared_slots[] = {
    {Py_tp_doc, (void *)shared_doc},
    {Py_tp_new, shared_new},
    {Py_tp_dealloc, shared_dealloc},
    {Py_tp_repr, shared_repr},
    {Py_tp_methods, shared_methods},
    {Py_tp_getset, shared_getset},
    {0, NULL},
};

static PyType_Spec shared_spec = {
    .name = "interpool.Shared",
    .basicsize = sizeof(SharedObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = shared_slots,
};

/* ------------------------------------------------------------ pin kind 'v' */

static int
encode_shared(ip_codec *c, ip_buf *buf, PyObject *obj, int Py_UNUSED(flags))
{
    ip_state *st = c->owner;
    if (!PyObject_TypeCheck(obj, st->SharedType)) {
        return 0;
    }
    ip_shared *sv = ((SharedObject *)obj)->sv;
    if (atomic_load(&sv->released)) {
        PyErr_SetString(PyExc_ValueError,
                        "this shared value was released; share the value again");
        return -1;
    }
    return ip_codec_write_pin(buf, IP_KIND_SHARED, &sv->base);
}

PyObject *
ip_shared_stand_in(ip_state *st, ip_shared *sv)
{
    SharedObject *self = (SharedObject *)st->SharedType->tp_alloc(st->SharedType, 0);
    if (self == NULL) {
        return NULL;
    }
    ip_pin_incref(&sv->base);
    self->sv = sv;
    self->stand_in = 1;
    return (PyObject *)self;
}

static PyObject *
decode_shared(ip_codec *c, ip_pin *pin)
{
    return shared_value_here(c->owner, (ip_shared *)pin);
}

int
ip_shared_type_init(PyObject *module, ip_state *st)
{
    st->SharedType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &shared_spec, NULL);
    if (st->SharedType == NULL || PyModule_AddType(module, st->SharedType) < 0) {
        return -1;
    }
    ip_pin_kind kind = {IP_KIND_SHARED, encode_shared, decode_shared};
    return ip_codec_add_kind(&st->codec, &kind);
}
