/* Buffers across interpreters: SharedBuffer (raw memory both sides use)
 * and zero-copy exports (a caller's buffer seen by a worker through a
 * BufferView).
 *
 * Which buffers travel zero-copy (task arguments, the main interpreter's
 * queue items): memoryview, bytearray, array.array and mmap.mmap (exactly
 * these types), and instances of a class that opts in with a true class
 * attribute `__interpool_zero_copy__`.  The worker gets a memoryview with
 * the exporter's format and shape (n-D when C-contiguous).  Any other
 * object, buffer or not (a bytes subclass, a ctypes array, an array
 * subclass with attributes), goes through the codec or pickle and arrives
 * as its own type. */
#include "module/state.h"

#include <string.h>

/* ------------------------------------------------------------ BufferView */

/* The exporter behind a worker's memoryview: holds the pin, not the object. */
typedef struct {
    PyObject_HEAD
    ip_pin *pin;
    char *buf;
    Py_ssize_t len, itemsize, shape;
    int readonly;
    int ndim;
    Py_ssize_t *dims;   /* ndim >= 2: shape, then C-contiguous strides (PyMem) */
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
    if (self->ndim > 1 && (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS) {
        PyErr_SetString(PyExc_BufferError,
                        "the caller's buffer is C-contiguous, not Fortran-contiguous");
        return -1;
    }
    view->obj = Py_NewRef(op);
    view->buf = self->buf;
    view->len = self->len;
    view->readonly = self->readonly;
    view->itemsize = self->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? self->format : NULL;
    view->ndim = self->ndim;
    if (self->ndim > 1) {
        view->shape = (flags & PyBUF_ND) ? self->dims : NULL;
        view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? self->dims + self->ndim
                                                                  : NULL;
    }
    else {
        view->shape = (flags & PyBUF_ND) ? &self->shape : NULL;
        view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? &self->itemsize : NULL;
    }
    view->suboffsets = NULL;
    view->internal = NULL;
    if (!(flags & PyBUF_FORMAT) && self->itemsize != 1) {
        /* A consumer that wants plain bytes sees plain bytes. */
        view->itemsize = 1;
        view->ndim = 1;
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
    PyMem_Free(self->dims);
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

/* ------------------------------------------------------------ pin kind 'm' */

static int
export_buffer(ip_buf *buf, PyObject *obj)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_CONTIG | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        if (PyObject_GetBuffer(obj, &view, PyBUF_CONTIG_RO | PyBUF_FORMAT) < 0) {
            if (PyErr_ExceptionMatches(PyExc_BufferError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError,
                             "cannot share a %T with a worker: only C-contiguous "
                             "buffers are shared zero-copy; pass a contiguous copy "
                             "(e.g. bytes(view))",
                             obj);
            }
            return -1;
        }
    }
    ip_export *e = ip_export_new(&view);
    if (e == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = ip_codec_write_pin(buf, IP_KIND_EXPORT, &e->base);
    ip_pin_decref(&e->base);   /* the payload holds it now */
    return rc;
}

/* obj's type is exactly module.name (a type of this interpreter's
 * already-imported module: array.array is a per-interpreter type). */
static int
is_exactly(PyObject *obj, const char *tp_name, const char *module, const char *name)
{
    if (strcmp(Py_TYPE(obj)->tp_name, tp_name) != 0) {
        return 0;   /* the cheap test first */
    }
    PyObject *modname = PyUnicode_FromString(module);
    if (modname == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *mod = PyImport_GetModule(modname);
    Py_DECREF(modname);
    PyObject *tp = NULL;
    if (mod != NULL) {
        (void)PyObject_GetOptionalAttrString(mod, name, &tp);
        Py_DECREF(mod);
    }
    PyErr_Clear();
    int same = tp == (PyObject *)Py_TYPE(obj);
    Py_XDECREF(tp);
    return same;
}

/* Does obj travel zero-copy?  1 yes, 0 no, -1 error. */
static int
shares_buffer(PyObject *obj)
{
    if (PyMemoryView_Check(obj) || PyByteArray_CheckExact(obj)) {
        return 1;
    }
    if (!PyObject_CheckBuffer(obj)) {
        return 0;
    }
    if (is_exactly(obj, "array.array", "array", "array")
        || is_exactly(obj, "mmap.mmap", "mmap", "mmap"))
    {
        return 1;
    }
    /* The opt-in: a true class attribute (inherited by subclasses). */
    PyObject *flag;
    if (PyObject_GetOptionalAttrString((PyObject *)Py_TYPE(obj), "__interpool_zero_copy__",
                                       &flag) < 0) {
        return -1;
    }
    if (flag == NULL) {
        return 0;
    }
    int yes = PyObject_IsTrue(flag);
    Py_DECREF(flag);
    return yes;
}

static int
encode_export(ip_codec *c, ip_buf *buf, PyObject *obj, int flags)
{
    if (flags & IP_ENC_SHARE_BUFFERS) {
        int share = shares_buffer(obj);
        if (share != 0) {
            return share < 0 ? -1 : export_buffer(buf, obj);
        }
    }
    if (PyMemoryView_Check(obj)) {
        /* A view going back (e.g. a worker returning the view it was given):
         * its bytes are copied, since a view cannot be pickled. */
        PyObject *copy = PyBytes_FromObject(obj);
        if (copy == NULL) {
            return -1;
        }
        int rc = ip_encode(c, buf, copy, flags);
        Py_DECREF(copy);
        return rc < 0 ? -1 : 1;
    }
    return 0;
}

static PyObject *
decode_export(ip_codec *c, ip_pin *pin)
{
    ip_state *st = c->owner;
    ip_export *e = (ip_export *)pin;
    BufferViewObject *bv = PyObject_New(BufferViewObject, st->BufferViewType);
    if (bv == NULL) {
        return NULL;
    }
    ip_pin_incref(pin);
    bv->pin = pin;
    bv->buf = e->view.buf;
    bv->len = e->view.len;
    bv->readonly = e->view.readonly;
    bv->itemsize = e->itemsize;
    bv->shape = e->view.len / e->itemsize;
    bv->ndim = 1;
    bv->dims = NULL;
    memcpy(bv->format, e->format, sizeof(bv->format));
    /* An n-D (C-contiguous) exporter keeps its shape.  The exporter's
     * Py_buffer is held, so its shape array stays valid and unchanged; it
     * is checked against the length before it is trusted. */
    const Py_buffer *v = &e->view;
    if (v->ndim > 1 && v->ndim <= PyBUF_MAX_NDIM && v->shape != NULL
        && e->itemsize == v->itemsize)
    {
        Py_ssize_t items = 1;
        int ok = 1;
        for (int i = 0; i < v->ndim && ok; i++) {
            Py_ssize_t d = v->shape[i];
            ok = d >= 0 && (d == 0 || items <= PY_SSIZE_T_MAX / d);
            items = ok ? items * d : 0;
        }
        if (ok && items == bv->shape) {
            bv->dims = PyMem_Malloc(2 * (size_t)v->ndim * sizeof(Py_ssize_t));
            if (bv->dims == NULL) {
                Py_DECREF(bv);
                return PyErr_NoMemory();
            }
            Py_ssize_t stride = e->itemsize;
            for (int i = v->ndim - 1; i >= 0; i--) {
                bv->dims[i] = v->shape[i];
                bv->dims[v->ndim + i] = stride;
                stride *= v->shape[i];
            }
            bv->ndim = v->ndim;
        }
    }
    PyObject *mv = PyMemoryView_FromObject((PyObject *)bv);
    Py_DECREF(bv);
    return mv;
}

/* ------------------------------------------------------------ SharedBuffer */

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
    ip_block *b = ip_block_new(size);
    if (b == NULL) {
        return PyErr_NoMemory();
    }
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

/* ------------------------------------------------------------ pin kind 'b' */

static int
encode_block(ip_codec *c, ip_buf *buf, PyObject *obj, int Py_UNUSED(flags))
{
    ip_state *st = c->owner;
    if (!PyObject_TypeCheck(obj, st->SharedBufferType)) {
        return 0;
    }
    return ip_codec_write_pin(buf, IP_KIND_BLOCK, &((SharedBufferObject *)obj)->block->base);
}

static PyObject *
decode_block(ip_codec *c, ip_pin *pin)
{
    ip_state *st = c->owner;
    return sharedbuffer_wrap(st->SharedBufferType, (ip_block *)pin);
}

int
ip_buffer_types_init(PyObject *module, ip_state *st)
{
    st->SharedBufferType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &sharedbuffer_spec, NULL);
    if (st->SharedBufferType == NULL || PyModule_AddType(module, st->SharedBufferType) < 0) {
        return -1;
    }
    st->BufferViewType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &bufferview_spec, NULL);
    if (st->BufferViewType == NULL || PyModule_AddType(module, st->BufferViewType) < 0) {
        return -1;
    }
    /* A SharedBuffer exports a buffer too: its kind must be tried first. */
    ip_pin_kind block = {IP_KIND_BLOCK, encode_block, decode_block};
    ip_pin_kind export = {IP_KIND_EXPORT, encode_export, decode_export};
    if (ip_codec_add_kind(&st->codec, &block) < 0 || ip_codec_add_kind(&st->codec, &export) < 0) {
        return -1;
    }
    return 0;
}
