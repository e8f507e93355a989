/* The data plane: pins, shared values, zero-copy buffers, SharedBuffer.
 *
 * A pin is a raw, refcounted object that payloads keep alive.  The codec
 * writes a pinned object as 'H', a kind byte and the index of the pin in
 * the payload's own pin list, so a payload can only name pins it holds.
 *
 *  - Shared (pool.share): a value encoded once; each worker decodes it on
 *    first use and keeps its copy until the value is released.
 *  - Exported buffers: a caller's buffer (memoryview, bytearray, array,
 *    mmap) passed to a task; the worker gets a memoryview on the same
 *    memory.  The Py_buffer is released in the exporter's own interpreter,
 *    deferred there when the last view goes elsewhere.
 *  - SharedBuffer: raw memory both sides can use as a buffer.
 */
#include "_core.h"

#include <string.h>

_Thread_local int ip_tls_share_buffers;
_Thread_local ip_pins *ip_tls_decode_pins;
atomic_long ip_shared_epoch;

static atomic_long live_shared, live_exports, live_blocks, live_copies;
extern atomic_long ip_live_queues;

/* Pinned-object kinds on the wire (after the 'H' tag). */
enum { W_SHARED = 'v', W_EXPORT = 'm', W_BLOCK = 'b', W_QUEUE = 'q' };

PyObject *ip_queue_from_pin(ip_state *st, ip_pin *pin);   /* channel.c */
ip_pin *ip_queue_pin(PyObject *queue);                    /* channel.c */

/* ------------------------------------------------------------ pins */

void
ip_pin_incref(ip_pin *pin)
{
    atomic_fetch_add_explicit(&pin->refcnt, 1, memory_order_relaxed);
}

void
ip_pin_decref(ip_pin *pin)
{
    if (atomic_fetch_sub_explicit(&pin->refcnt, 1, memory_order_acq_rel) == 1) {
        pin->destroy(pin);
    }
}

Py_ssize_t
ip_pins_add(ip_pins *pins, ip_pin *pin)
{
    for (Py_ssize_t i = 0; i < pins->n; i++) {
        if (pins->items[i] == pin) {
            return i;
        }
    }
    if (pins->n == pins->cap) {
        Py_ssize_t cap = pins->cap ? pins->cap * 2 : 4;
        ip_pin **items = PyMem_RawRealloc(pins->items, cap * sizeof(ip_pin *));
        if (items == NULL) {
            return -1;
        }
        pins->items = items;
        pins->cap = cap;
    }
    ip_pin_incref(pin);
    pins->items[pins->n] = pin;
    return pins->n++;
}

void
ip_pins_clear(ip_pins *pins)
{
    for (Py_ssize_t i = 0; i < pins->n; i++) {
        ip_pin_decref(pins->items[i]);
    }
    PyMem_RawFree(pins->items);
    pins->items = NULL;
    pins->n = pins->cap = 0;
}

static int
write_pinned(ip_buf *buf, char kind, ip_pin *pin)
{
    Py_ssize_t index = ip_pins_add(&buf->pins, pin);
    if (index < 0 || index > UINT32_MAX) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t ix = (uint32_t)index;
    char head[2] = {'H', kind};
    if (ip_buf_append(buf, head, 2) < 0 || ip_buf_append(buf, &ix, 4) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 1;
}

PyObject *
ip_decode_buf(ip_state *st, ip_buf *buf)
{
    ip_pins *saved = ip_tls_decode_pins;
    ip_tls_decode_pins = &buf->pins;
    PyObject *v = ip_decode_all(st, buf->data, buf->len);
    ip_tls_decode_pins = saved;
    return v;
}

/* ------------------------------------------------------------ shared values */

typedef struct {
    ip_pin base;
    uint64_t id;
    ip_buf data;              /* the value, encoded once */
    atomic_int released;
} ip_shared;

static void
shared_destroy(ip_pin *pin)
{
    ip_shared *sv = (ip_shared *)pin;
    ip_buf_free(&sv->data);
    PyMem_RawFree(sv);
    atomic_fetch_sub(&live_shared, 1);
}

/* A worker's copies: its own objects, decoded once, keyed by the pin. */
typedef struct {
    Py_ssize_t n, cap;
    struct cached {
        ip_shared *sv;         /* pinned while cached */
        PyObject *value;
    } *items;
} shared_cache;

static void
drop_cached(struct cached *c)
{
    Py_CLEAR(c->value);
    ip_pin_decref(&c->sv->base);
    atomic_fetch_sub(&live_copies, 1);
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
ip_data_state_free(ip_state *st)
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
ip_data_traverse(ip_state *st, visitproc visit, void *arg)
{
    shared_cache *cache = st->shared_cache;
    if (cache != NULL) {
        for (Py_ssize_t i = 0; i < cache->n; i++) {
            Py_VISIT(cache->items[i].value);
        }
    }
    return 0;
}

static PyObject *
shared_value_here(ip_state *st, ip_shared *sv)
{
    if (!st->is_worker) {
        /* e.g. a handle that came back through a Queue: no cache here,
         * since only workers purge released values. */
        return ip_decode_buf(st, &sv->data);
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
    PyObject *value = ip_decode_buf(st, &sv->data);
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
    atomic_fetch_add(&live_copies, 1);
    return value;
}

typedef struct {
    PyObject_HEAD
    ip_shared *sv;
} SharedObject;

static void
shared_release(SharedObject *self)
{
    if (atomic_exchange(&self->sv->released, 1)) {
        return;
    }
    atomic_fetch_add_explicit(&ip_shared_epoch, 1, memory_order_release);
    ip_wake_all_pools();   /* idle workers of every pool drop their copies now */
}

static PyObject *
shared_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"value", NULL};
    static atomic_ullong next_id = 1;
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
    ip_shared *sv = PyMem_RawCalloc(1, sizeof(ip_shared));
    if (sv == NULL) {
        return PyErr_NoMemory();
    }
    atomic_init(&sv->base.refcnt, 1);
    sv->base.kind = IP_PIN_SHARED;
    sv->base.destroy = shared_destroy;
    sv->id = atomic_fetch_add(&next_id, 1);
    atomic_fetch_add(&live_shared, 1);
    int saved = ip_tls_share_buffers;
    ip_tls_share_buffers = 0;   /* a shared value is a copy, never a view */
    int rc = ip_encode(st, &sv->data, value);
    ip_tls_share_buffers = saved;
    if (rc < 0) {
        ip_pin_decref(&sv->base);
        return NULL;
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
        shared_release(self);   /* the last reference to the handle went */
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
    shared_release((SharedObject *)op);
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
    shared_release((SharedObject *)op);
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

/* ------------------------------------------------------------ exported buffers */

typedef struct ip_export {
    ip_pin base;
    Py_buffer view;               /* held in the owner interpreter */
    PyInterpreterState *owner;
    struct ip_export *next_deferred;
    Py_ssize_t itemsize;
    char format[16];
} ip_export;

static pthread_mutex_t deferred_mu = PTHREAD_MUTEX_INITIALIZER;
static ip_export *deferred_head;

static void
export_free(ip_export *e)
{
    PyBuffer_Release(&e->view);
    PyMem_RawFree(e);
    atomic_fetch_sub(&live_exports, 1);
}

static int
pending_release(void *Py_UNUSED(arg))
{
    ip_release_deferred();
    return 0;
}

static void
export_destroy(ip_pin *pin)
{
    ip_export *e = (ip_export *)pin;
    PyThreadState *ts = PyThreadState_GetUnchecked();
    if (ts != NULL && PyThreadState_GetInterpreter(ts) == e->owner) {
        export_free(e);
        return;
    }
    /* Another interpreter let go last: the owner releases it later, at its
     * next call into interpool or, for the main interpreter, at once via a
     * pending call.  Read the owner first: once e is on the list, the owner
     * may free it at any moment. */
    int owner_is_main = e->owner == PyInterpreterState_Main();
    pthread_mutex_lock(&deferred_mu);
    int first = deferred_head == NULL;   /* one pending call per batch */
    e->next_deferred = deferred_head;
    deferred_head = e;
    pthread_mutex_unlock(&deferred_mu);
    if (first && owner_is_main) {
        (void)Py_AddPendingCall(pending_release, NULL);
    }
}

void
ip_release_deferred(void)
{
    if (deferred_head == NULL) {   /* racy peek: a miss is caught next time */
        return;
    }
    PyInterpreterState *here = PyInterpreterState_Get();
    ip_export *mine = NULL;
    pthread_mutex_lock(&deferred_mu);
    ip_export **link = &deferred_head;
    while (*link != NULL) {
        ip_export *e = *link;
        if (e->owner == here) {
            *link = e->next_deferred;
            e->next_deferred = mine;
            mine = e;
        }
        else {
            link = &e->next_deferred;
        }
    }
    pthread_mutex_unlock(&deferred_mu);
    while (mine != NULL) {
        ip_export *next = mine->next_deferred;
        export_free(mine);
        mine = next;
    }
}

static int
encode_export(ip_buf *buf, PyObject *obj)
{
    ip_export *e = PyMem_RawCalloc(1, sizeof(ip_export));
    if (e == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (PyObject_GetBuffer(obj, &e->view, PyBUF_CONTIG | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        if (PyObject_GetBuffer(obj, &e->view, PyBUF_CONTIG_RO | PyBUF_FORMAT) < 0) {
            PyMem_RawFree(e);
            if (PyErr_ExceptionMatches(PyExc_BufferError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError,
                             "cannot share a %T with a worker: only C-contiguous "
                             "buffers are shared zero-copy; pass a contiguous copy "
                             "(e.g. bytes(view))", obj);
            }
            return -1;
        }
    }
    atomic_init(&e->base.refcnt, 1);
    e->base.kind = IP_PIN_EXPORT;
    e->base.destroy = export_destroy;
    e->owner = PyInterpreterState_Get();
    e->itemsize = 1;
    strcpy(e->format, "B");
    const char *fmt = e->view.format ? e->view.format : "B";
    if (e->view.itemsize > 0 && e->view.len % e->view.itemsize == 0 && strlen(fmt) < sizeof(e->format)) {
        e->itemsize = e->view.itemsize;
        strcpy(e->format, fmt);
    }
    atomic_fetch_add(&live_exports, 1);
    int rc = write_pinned(buf, W_EXPORT, &e->base);
    ip_pin_decref(&e->base);   /* the payload holds it now */
    return rc;
}

/* The exporter behind a worker's memoryview: holds the pin, not the object. */
typedef struct {
    PyObject_HEAD
    ip_pin *pin;
    char *buf;
    Py_ssize_t len, itemsize, shape;
    int readonly;
    char format[16];
} BufferViewObject;

static int
bufferview_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    BufferViewObject *self = (BufferViewObject *)op;
    if ((flags & PyBUF_WRITABLE) && self->readonly) {
        PyErr_SetString(PyExc_BufferError, "the caller's buffer is read-only");
        return -1;
    }
    view->obj = Py_NewRef(op);
    view->buf = self->buf;
    view->len = self->len;
    view->readonly = self->readonly;
    view->itemsize = self->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? self->format : NULL;
    view->ndim = 1;
    view->shape = (flags & PyBUF_ND) ? &self->shape : NULL;
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? &self->itemsize : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    if (!(flags & PyBUF_FORMAT) && self->itemsize != 1) {
        /* A consumer that wants plain bytes sees plain bytes. */
        view->itemsize = 1;
        view->shape = (flags & PyBUF_ND) ? &self->len : NULL;
        view->strides = NULL;
    }
    return 0;
}

static void
bufferview_dealloc(PyObject *op)
{
    BufferViewObject *self = (BufferViewObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->pin != NULL) {
        ip_pin_decref(self->pin);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyType_Slot bufferview_slots[] = {
    {Py_tp_doc, (void *)"Exports a caller's buffer inside a worker (zero-copy)."},
    {Py_tp_dealloc, bufferview_dealloc},
    {Py_bf_getbuffer, bufferview_getbuffer},
    {0, NULL},
};

static PyType_Spec bufferview_spec = {
    .name = "interpool._core.BufferView",
    .basicsize = sizeof(BufferViewObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = bufferview_slots,
};

static PyObject *
view_from_export(ip_state *st, ip_export *e)
{
    BufferViewObject *bv = PyObject_New(BufferViewObject, st->BufferViewType);
    if (bv == NULL) {
        return NULL;
    }
    ip_pin_incref(&e->base);
    bv->pin = &e->base;
    bv->buf = e->view.buf;
    bv->len = e->view.len;
    bv->readonly = e->view.readonly;
    bv->itemsize = e->itemsize;
    bv->shape = e->view.len / e->itemsize;
    memcpy(bv->format, e->format, sizeof(bv->format));
    PyObject *mv = PyMemoryView_FromObject((PyObject *)bv);
    Py_DECREF(bv);
    return mv;
}

/* ------------------------------------------------------------ SharedBuffer */

typedef struct {
    ip_pin base;
    char *mem;
    Py_ssize_t size;
} ip_block;

static void
block_destroy(ip_pin *pin)
{
    ip_block *b = (ip_block *)pin;
    PyMem_RawFree(b->mem);
    PyMem_RawFree(b);
    atomic_fetch_sub(&live_blocks, 1);
}

typedef struct {
    PyObject_HEAD
    ip_block *block;
} SharedBufferObject;

static PyObject *
sharedbuffer_wrap(PyTypeObject *type, ip_block *block)
{
    SharedBufferObject *self = (SharedBufferObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    ip_pin_incref(&block->base);
    self->block = block;
    return (PyObject *)self;
}

static PyObject *
sharedbuffer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:SharedBuffer", kwlist, &size)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must not be negative");
        return NULL;
    }
    ip_block *b = PyMem_RawCalloc(1, sizeof(ip_block));
    char *mem = b ? PyMem_RawCalloc(size ? size : 1, 1) : NULL;
    if (mem == NULL) {
        PyMem_RawFree(b);
        return PyErr_NoMemory();
    }
    atomic_init(&b->base.refcnt, 1);
    b->base.kind = IP_PIN_BLOCK;
    b->base.destroy = block_destroy;
    b->mem = mem;
    b->size = size;
    atomic_fetch_add(&live_blocks, 1);
    PyObject *self = sharedbuffer_wrap(type, b);
    ip_pin_decref(&b->base);
    return self;
}

static void
sharedbuffer_dealloc(PyObject *op)
{
    SharedBufferObject *self = (SharedBufferObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->block != NULL) {
        ip_pin_decref(&self->block->base);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

static int
sharedbuffer_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    ip_block *b = ((SharedBufferObject *)op)->block;
    return PyBuffer_FillInfo(view, op, b->mem, b->size, 0, flags);
}

static Py_ssize_t
sharedbuffer_len(PyObject *op)
{
    return ((SharedBufferObject *)op)->block->size;
}

/* Indexing and slicing go through a memoryview ("B" format). */
static PyObject *
sharedbuffer_getitem(PyObject *op, PyObject *key)
{
    PyObject *mv = PyMemoryView_FromObject(op);
    if (mv == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_GetItem(mv, key);
    Py_DECREF(mv);
    if (r != NULL && PyMemoryView_Check(r)) {
        /* a slice: hand out bytes, so no view outlives the expression */
        PyObject *b = PyBytes_FromObject(r);
        PyObject *rel = PyObject_CallMethod(r, "release", NULL);
        Py_XDECREF(rel);
        Py_DECREF(r);
        r = b;
    }
    return r;
}

static int
sharedbuffer_setitem(PyObject *op, PyObject *key, PyObject *value)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "cannot delete SharedBuffer items");
        return -1;
    }
    PyObject *mv = PyMemoryView_FromObject(op);
    if (mv == NULL) {
        return -1;
    }
    int r = PyObject_SetItem(mv, key, value);
    PyObject *rel = PyObject_CallMethod(mv, "release", NULL);
    Py_XDECREF(rel);
    Py_DECREF(mv);
    return r;
}

static PyObject *
sharedbuffer_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<interpool.SharedBuffer %zd bytes>",
                                ((SharedBufferObject *)op)->block->size);
}

static PyObject *
sharedbuffer_get_size(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(((SharedBufferObject *)op)->block->size);
}

static PyGetSetDef sharedbuffer_getset[] = {
    {"size", sharedbuffer_get_size, NULL, "Size in bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(sharedbuffer_doc,
"SharedBuffer(size)\n--\n\n"
"Zeroed process memory that the caller and any worker can read and write\n"
"(use memoryview(buf)).  Passed to or returned from a task, the other side\n"
"gets a SharedBuffer on the same memory, freed when the last side lets go.");

static PyType_Slot sharedbuffer_slots[] = {
    {Py_tp_doc, (void *)sharedbuffer_doc},
    {Py_tp_new, sharedbuffer_new},
    {Py_tp_dealloc, sharedbuffer_dealloc},
    {Py_tp_repr, sharedbuffer_repr},
    {Py_tp_getset, sharedbuffer_getset},
    {Py_bf_getbuffer, sharedbuffer_getbuffer},
    {Py_sq_length, sharedbuffer_len},
    {Py_mp_length, sharedbuffer_len},
    {Py_mp_subscript, sharedbuffer_getitem},
    {Py_mp_ass_subscript, sharedbuffer_setitem},
    {0, NULL},
};

static PyType_Spec sharedbuffer_spec = {
    .name = "interpool.SharedBuffer",
    .basicsize = sizeof(SharedBufferObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = sharedbuffer_slots,
};

/* ------------------------------------------------------------ codec hooks */

int
ip_encode_pinned(ip_state *st, ip_buf *buf, PyObject *obj)
{
    if (PyObject_TypeCheck(obj, st->SharedType)) {
        ip_shared *sv = ((SharedObject *)obj)->sv;
        if (atomic_load(&sv->released)) {
            PyErr_SetString(PyExc_ValueError,
                            "this shared value was released; share the value again");
            return -1;
        }
        return write_pinned(buf, W_SHARED, &sv->base);
    }
    if (PyObject_TypeCheck(obj, st->SharedBufferType)) {
        return write_pinned(buf, W_BLOCK, &((SharedBufferObject *)obj)->block->base);
    }
    if (PyObject_TypeCheck(obj, st->QueueType)) {
        return write_pinned(buf, W_QUEUE, ip_queue_pin(obj));
    }
    if (ip_tls_share_buffers && !PyBytes_CheckExact(obj) && PyObject_CheckBuffer(obj)) {
        return encode_export(buf, obj);
    }
    if (PyMemoryView_Check(obj)) {
        /* A view going back (e.g. a worker returning the view it was given):
         * its bytes are copied, since a view cannot be pickled. */
        PyObject *copy = PyBytes_FromObject(obj);
        if (copy == NULL) {
            return -1;
        }
        int rc = ip_encode(st, buf, copy);
        Py_DECREF(copy);
        return rc < 0 ? -1 : 1;
    }
    return 0;
}

PyObject *
ip_decode_pinned(ip_state *st, const char *data, Py_ssize_t len, Py_ssize_t *pos)
{
    uint32_t index;
    if (len - *pos < 5) {
        PyErr_SetString(st->codec_error, "malformed payload: truncated handle");
        return NULL;
    }
    char kind = data[*pos];
    memcpy(&index, data + *pos + 1, 4);
    ip_pins *pins = ip_tls_decode_pins;
    if (pins == NULL || index >= pins->n) {
        PyErr_SetString(st->codec_error,
                        "malformed payload: a handle that this payload does not hold");
        return NULL;
    }
    ip_pin *pin = pins->items[index];
    int want = kind == W_SHARED ? IP_PIN_SHARED : kind == W_EXPORT ? IP_PIN_EXPORT
             : kind == W_BLOCK ? IP_PIN_BLOCK : kind == W_QUEUE ? IP_PIN_QUEUE : -1;
    if (pin->kind != want) {
        PyErr_SetString(st->codec_error, "malformed payload: handle of the wrong kind");
        return NULL;
    }
    *pos += 5;
    switch (pin->kind) {
    case IP_PIN_SHARED:
        return shared_value_here(st, (ip_shared *)pin);
    case IP_PIN_EXPORT:
        return view_from_export(st, (ip_export *)pin);
    case IP_PIN_BLOCK:
        return sharedbuffer_wrap(st->SharedBufferType, (ip_block *)pin);
    default:
        return ip_queue_from_pin(st, pin);
    }
}

/* ------------------------------------------------------------ module */

int
ip_data_counts(PyObject *counts)
{
    struct { const char *name; atomic_long *v; } items[] = {
        {"shared", &live_shared}, {"shared_copies", &live_copies},
        {"exports", &live_exports}, {"blocks", &live_blocks}, {"queues", &ip_live_queues},
    };
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        PyObject *v = PyLong_FromLong(atomic_load(items[i].v));
        if (v == NULL || PyDict_SetItemString(counts, items[i].name, v) < 0) {
            Py_XDECREF(v);
            return -1;
        }
        Py_DECREF(v);
    }
    return 0;
}

int
ip_data_module_init(PyObject *module, ip_state *st)
{
    st->SharedType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &shared_spec, NULL);
    if (st->SharedType == NULL || PyModule_AddType(module, st->SharedType) < 0) {
        return -1;
    }
    st->SharedBufferType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &sharedbuffer_spec, NULL);
    if (st->SharedBufferType == NULL || PyModule_AddType(module, st->SharedBufferType) < 0) {
        return -1;
    }
    st->BufferViewType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &bufferview_spec, NULL);
    if (st->BufferViewType == NULL || PyModule_AddType(module, st->BufferViewType) < 0) {
        return -1;
    }
    return 0;
}
