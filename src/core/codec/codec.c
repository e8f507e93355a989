/* The value codec: Python values <-> raw bytes that cross interpreters.
 *
 * No PyObject* ever crosses: the sending interpreter encodes into an ip_buf
 * (raw memory), the receiving one decodes a fresh object graph from it.
 * Payloads never leave the process, so scalars use native byte order.
 *
 * Wire format: one tag byte, then the tag's body.  Tags are ASCII letters
 * so that a payload reads well in a hex dump.  "varint" is unsigned LEB128
 * (at most 10 bytes, 64 bits).
 *
 *   'N' None          'F' False          'T' True
 *   'i' int64         varint of the zigzag-mapped value
 *   'I' big int       varint n, n bytes little-endian two's complement
 *   'f' float         8 bytes (IEEE 754 binary64, bit for bit)
 *   'c' complex       8 bytes real, 8 bytes imag
 *   's' str, kind 1   varint length, length bytes (Latin-1)
 *   'u' str, kind 2   varint length, 2*length bytes (UCS-2)
 *   'U' str, kind 4   varint length, 4*length bytes (UCS-4)
 *   'b' bytes         varint n, n bytes
 *   'B' bytearray     varint n, n bytes
 *   '(' tuple         varint n, n values
 *   '[' list          varint n, n values
 *   '{' dict          varint n, n (key, value) pairs in insertion order
 *   'S' set           varint n, n values
 *   'Z' frozenset     varint n, n values
 *   'P' pickle        varint n, n bytes of pickle.dumps(value, protocol=5)
 *   'H' pinned        a data-plane object: its kind byte (a kind registered
 *                     with the codec), a 4-byte index into the payload's
 *                     pins (never an address)
 *   '#' scope         a prefix: the value that follows is decoded with a
 *                     memo.  Inside it the decoder numbers, from 0 and in
 *                     the order it makes them, every container ('(' '['
 *                     '{' 'S' 'Z', numbered before its items) and every
 *                     'B', 'P' and 'H' value; an inner scope's numbers end
 *                     with it
 *   '*' reference     varint i: the object numbered i in the innermost
 *                     scope, decoded already or still being decoded (a
 *                     recursive reference); malformed outside a scope
 *   'M'               reserved (see below)
 *
 * Everything whose type is not exactly one of the above (subclasses
 * included, so their type survives) goes through pickle.
 *
 * Shared and recursive references, as pickle's memo keeps them: the
 * encoder numbers what it writes as the decoder will, remembers the
 * numbers of the objects it may meet twice (a container or leaf holding
 * more references than the one being followed: objects with a single
 * reference, most of any freshly built payload, cost no look-up), writes
 * a second meeting as '*', and then wraps its output in '#'.  A payload
 * without references has no '#', and its decoder keeps no memo.  Every
 * ip_encode output is its own scope, so encodings written one after the
 * other (e.g. a tuple's items) decode alike.  Scalars, str and bytes are
 * never referred to (immutable; their identity is not kept).
 *
 * The decoder trusts nothing: every length is checked against the bytes
 * that remain before anything is read or allocated, and malformed input
 * raises CodecError.
 */
#include "codec/codec.h"

#include <string.h>

/* ------------------------------------------------------------------ tags */

enum {
    T_NONE = 'N',
    T_FALSE = 'F',
    T_TRUE = 'T',
    T_INT = 'i',
    T_BIGINT = 'I',
    T_FLOAT = 'f',
    T_COMPLEX = 'c',
    T_STR1 = 's',
    T_STR2 = 'u',
    T_STR4 = 'U',
    T_BYTES = 'b',
    T_BYTEARRAY = 'B',
    T_TUPLE = '(',
    T_LIST = '[',
    T_DICT = '{',
    T_SET = 'S',
    T_FROZENSET = 'Z',
    T_PICKLE = 'P',
    /* A pin of a kind registered with the codec (ip_codec_add_kind). */
    T_PINNED = 'H',
    /* Shared and recursive references. */
    T_SCOPE = '#',
    T_REF = '*',
    /* Reserved: no encoder emits it and the decoder rejects it with
     * CodecError (a buffer described by address, never to be trusted). */
    T_ZEROCOPY_BUFFER = 'M',
};

/* Worst-case size of a tag plus a varint. */
#define HEAD_MAX 11

/* --------------------------------------------------------------- writing */

/* Make room for n more bytes; MemoryError on failure.  The fast path (room
 * already there) stays inline. */
static inline int
buf_need(ip_buf *b, Py_ssize_t n)
{
    if (b->cap - b->len >= n) {
        return 0;
    }
    if (ip_buf_reserve(b, n) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Where the next byte goes; pair with buf_done().  Call buf_need() first. */
static inline unsigned char *
buf_cursor(ip_buf *b)
{
    return (unsigned char *)b->data + b->len;
}

static inline void
buf_done(ip_buf *b, unsigned char *p)
{
    b->len = (Py_ssize_t)(p - (unsigned char *)b->data);
}

static inline unsigned char *
put_varint(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* Tag and varint in one go (reserves the room). */
static inline int
put_head(ip_buf *b, int tag, uint64_t v)
{
    if (buf_need(b, HEAD_MAX) < 0) {
        return -1;
    }
    unsigned char *p = buf_cursor(b);
    *p++ = (unsigned char)tag;
    buf_done(b, put_varint(p, v));
    return 0;
}

/* Tag, varint length, then n raw bytes. */
static inline int
put_blob(ip_buf *b, int tag, uint64_t count, const void *data, Py_ssize_t n)
{
    if (buf_need(b, HEAD_MAX + n) < 0) {
        return -1;
    }
    unsigned char *p = buf_cursor(b);
    *p++ = (unsigned char)tag;
    p = put_varint(p, count);
    const unsigned char *src = data;
    if (n >= 8 && n <= 16) {
        /* short text (keys, tags): two overlapping words, no call */
        uint64_t head, tail;
        memcpy(&head, src, 8);
        memcpy(&tail, src + n - 8, 8);
        memcpy(p, &head, 8);
        memcpy(p + n - 8, &tail, 8);
    }
    else if (n > 0 && n < 8) {
        for (Py_ssize_t i = 0; i < n; i++) {
            p[i] = src[i];
        }
    }
    else if (n > 0) {
        memcpy(p, data, (size_t)n);
    }
    buf_done(b, p + n);
    return 0;
}

/* ---------------------------------------------------------------- encode */

/* The memo: the objects the encoder may meet again and the numbers the
 * decoder gives them, in an open-addressing table keyed by address.  It
 * holds a strong reference to each, so an object freed mid-way (a pickled
 * item's __reduce__ may change the graph) cannot hand its address on. */
typedef struct {
    PyObject *obj;   /* NULL: free slot */
    Py_ssize_t number;
} memo_entry;

#define MEMO_INLINE 8   /* slots before the table moves to the heap */

/* One encode call: the codec, the flags (IP_ENC_*) every level sees, and
 * its memo (set up on first use). */
typedef struct {
    ip_codec *c;
    int flags;
    int wrote_refs;          /* a '*' was written: wrap the output in '#' */
    PyObject *root;          /* the outermost container: number 0 */
    Py_ssize_t count;        /* objects numbered so far (as the decoder will) */
    memo_entry *memo;        /* NULL, memo_inline or a heap table */
    size_t memo_mask;        /* slots - 1 */
    Py_ssize_t memo_used;
    memo_entry memo_inline[MEMO_INLINE];
} encoder;

/* `held` for the outermost value: never looked up (it is reference 0). */
#define HELD_ROOT (-1)

static int encode_value(encoder *e, ip_buf *b, PyObject *obj, int depth, int held);

static inline size_t
memo_slot(const encoder *e, PyObject *obj)
{
    uintptr_t h = (uintptr_t)obj >> 4;   /* objects are 16-byte aligned */
    return (size_t)((h * 0x9E3779B97F4A7C15ull) >> 17) & e->memo_mask;
}

static Py_ssize_t
memo_find(const encoder *e, PyObject *obj)
{
    if (e->memo == NULL) {
        return -1;
    }
    for (size_t i = memo_slot(e, obj);; i = (i + 1) & e->memo_mask) {
        if (e->memo[i].obj == obj) {
            return e->memo[i].number;
        }
        if (e->memo[i].obj == NULL) {
            return -1;
        }
    }
}

static void
memo_insert(encoder *e, PyObject *obj, Py_ssize_t number)
{
    size_t i = memo_slot(e, obj);
    while (e->memo[i].obj != NULL) {
        i = (i + 1) & e->memo_mask;
    }
    e->memo[i].obj = obj;
    e->memo[i].number = number;
}

/* Remember obj (a new reference kept) with its number; -1 with
 * MemoryError. */
static int
memo_put(encoder *e, PyObject *obj, Py_ssize_t number)
{
    if (e->memo == NULL) {
        memset(e->memo_inline, 0, sizeof(e->memo_inline));
        e->memo = e->memo_inline;
        e->memo_mask = MEMO_INLINE - 1;
    }
    if ((size_t)(e->memo_used + 1) * 2 > e->memo_mask + 1) {
        /* keep it at most half full */
        size_t old_size = e->memo_mask + 1;
        memo_entry *old = e->memo;
        memo_entry *table = PyMem_Calloc(old_size * 2, sizeof(memo_entry));
        if (table == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        e->memo = table;
        e->memo_mask = old_size * 2 - 1;
        for (size_t i = 0; i < old_size; i++) {
            if (old[i].obj != NULL) {
                memo_insert(e, old[i].obj, old[i].number);
            }
        }
        if (old != e->memo_inline) {
            PyMem_Free(old);
        }
    }
    e->memo_used++;
    memo_insert(e, Py_NewRef(obj), number);
    return 0;
}

static void
encoder_clear(encoder *e)
{
    if (e->memo == NULL) {
        return;
    }
    for (size_t i = 0; i <= e->memo_mask; i++) {
        Py_XDECREF(e->memo[i].obj);
    }
    if (e->memo != e->memo_inline) {
        PyMem_Free(e->memo);
    }
    e->memo = NULL;
}

/* Can obj be met again in this payload?  Only if it has more references
 * than the one being followed plus the `held` temporary ones the encoder
 * took itself.  References from outside the payload make this say yes
 * needlessly (a memo entry, no harm); it never says no wrongly, since
 * every edge of the graph is a strong reference. */
static inline int
maybe_shared(PyObject *obj, int held)
{
    return held >= 0 && Py_REFCNT(obj) > 1 + (Py_ssize_t)held;
}

static int
too_deep_to_send(void)
{
    PyErr_Format(PyExc_ValueError,
                 "value nested too deeply to send (limit %d levels)",
                 IP_MAX_DEPTH);
    return -1;
}

static int
changed_while_encoding(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "%s changed size during encoding", what);
    return -1;
}

static inline int
encode_int64(ip_buf *b, int64_t v)
{
    /* zigzag: small magnitudes of either sign give short varints */
    uint64_t z = ((uint64_t)v << 1) ^ (0 - ((uint64_t)v >> 63));
    return put_head(b, T_INT, z);
}

static int
encode_bigint(ip_buf *b, PyObject *obj)
{
    const int flags = Py_ASNATIVEBYTES_LITTLE_ENDIAN;
    Py_ssize_t n = PyLong_AsNativeBytes(obj, NULL, 0, flags);
    if (n < 0) {
        return -1;
    }
    if (buf_need(b, HEAD_MAX + n) < 0) {
        return -1;
    }
    unsigned char *p = buf_cursor(b);
    *p++ = T_BIGINT;
    p = put_varint(p, (uint64_t)n);
    Py_ssize_t used = PyLong_AsNativeBytes(obj, p, n, flags);
    if (used < 0) {
        return -1;
    }
    if (used > n) {
        PyErr_SetString(PyExc_SystemError,
                        "interpool: int changed size while encoding");
        return -1;
    }
    buf_done(b, p + n);
    return 0;
}

static inline int
encode_int(ip_buf *b, PyObject *obj)
{
    if (PyUnstable_Long_IsCompact((PyLongObject *)obj)) {
        return encode_int64(b, PyUnstable_Long_CompactValue((PyLongObject *)obj));
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow) {
        return encode_bigint(b, obj);
    }
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    return encode_int64(b, (int64_t)v);
}

static inline int
encode_float(ip_buf *b, PyObject *obj)
{
    double d = PyFloat_AS_DOUBLE(obj);
    if (buf_need(b, 1 + sizeof(d)) < 0) {
        return -1;
    }
    unsigned char *p = buf_cursor(b);
    *p++ = T_FLOAT;
    memcpy(p, &d, sizeof(d));
    buf_done(b, p + sizeof(d));
    return 0;
}

static int
encode_complex(ip_buf *b, PyObject *obj)
{
    double parts[2] = {PyComplex_RealAsDouble(obj), PyComplex_ImagAsDouble(obj)};
    if (buf_need(b, 1 + sizeof(parts)) < 0) {
        return -1;
    }
    unsigned char *p = buf_cursor(b);
    *p++ = T_COMPLEX;
    memcpy(p, parts, sizeof(parts));
    buf_done(b, p + sizeof(parts));
    return 0;
}

static inline int
encode_str(ip_buf *b, PyObject *obj)
{
    int kind = PyUnicode_KIND(obj);
    Py_ssize_t n = PyUnicode_GET_LENGTH(obj);
    int tag = kind == PyUnicode_1BYTE_KIND ? T_STR1
            : kind == PyUnicode_2BYTE_KIND ? T_STR2 : T_STR4;
    return put_blob(b, tag, (uint64_t)n, PyUnicode_DATA(obj), n * kind);
}

/* The values that run no code and keep no identity (str, int, float,
 * None, bool), written without the call and the references of
 * encode_value: 1 if obj was one (*rc: 0 written, -1 error), 0 if not. */
static inline int
encode_atom(ip_buf *b, PyObject *obj, int *rc)
{
    PyTypeObject *tp = Py_TYPE(obj);
    if (tp == &PyUnicode_Type) {
        *rc = encode_str(b, obj);
        return 1;
    }
    if (tp == &PyLong_Type) {
        *rc = encode_int(b, obj);
        return 1;
    }
    if (tp == &PyFloat_Type) {
        *rc = encode_float(b, obj);
        return 1;
    }
    if (obj == Py_None || obj == Py_True || obj == Py_False) {
        if (buf_need(b, 1) < 0) {
            *rc = -1;
            return 1;
        }
        b->data[b->len++] = (char)(obj == Py_None ? T_NONE
                                   : obj == Py_True ? T_TRUE : T_FALSE);
        *rc = 0;
        return 1;
    }
    return 0;
}

static int
encode_tuple(encoder *e, ip_buf *b, PyObject *obj, int depth)
{
    if (depth >= IP_MAX_DEPTH) {
        return too_deep_to_send();
    }
    Py_ssize_t n = PyTuple_GET_SIZE(obj);
    if (put_head(b, T_TUPLE, (uint64_t)n) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        /* a tuple's items cannot go away: no reference of our own */
        PyObject *item = PyTuple_GET_ITEM(obj, i);
        int rc;
        if (!encode_atom(b, item, &rc)) {
            rc = encode_value(e, b, item, depth + 1, 0);
        }
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* The count is written first, so a list that a pickled item's __reduce__
 * (or a finalizer) resizes mid-way is an error, not a corrupt payload. */
static int
encode_list(encoder *e, ip_buf *b, PyObject *obj, int depth)
{
    if (depth >= IP_MAX_DEPTH) {
        return too_deep_to_send();
    }
    Py_ssize_t n = PyList_GET_SIZE(obj);
    if (put_head(b, T_LIST, (uint64_t)n) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_GET_SIZE(obj) != n) {
            return changed_while_encoding("list");
        }
        PyObject *item = PyList_GET_ITEM(obj, i);
        int rc;
        if (!encode_atom(b, item, &rc)) {
            Py_INCREF(item);
            rc = encode_value(e, b, item, depth + 1, 1);
            Py_DECREF(item);
        }
        if (rc < 0) {
            return -1;
        }
    }
    if (PyList_GET_SIZE(obj) != n) {
        return changed_while_encoding("list");
    }
    return 0;
}

static int
encode_dict(encoder *e, ip_buf *b, PyObject *obj, int depth)
{
    if (depth >= IP_MAX_DEPTH) {
        return too_deep_to_send();
    }
    Py_ssize_t n = PyDict_GET_SIZE(obj);
    if (put_head(b, T_DICT, (uint64_t)n) < 0) {
        return -1;
    }
    Py_ssize_t pos = 0, done = 0;
    PyObject *key, *value;
    while (PyDict_Next(obj, &pos, &key, &value)) {
        if (done == n) {
            return changed_while_encoding("dict");
        }
        int rc;
        if (PyUnicode_CheckExact(key)) {
            /* the common key: runs nothing, so the value stays */
            if (encode_str(b, key) < 0) {
                return -1;
            }
            if (!encode_atom(b, value, &rc)) {
                Py_INCREF(value);
                rc = encode_value(e, b, value, depth + 1, 1);
                Py_DECREF(value);
            }
        }
        else {
            /* The value first: encoding the key may run code (pickle)
             * that changes the dict. */
            Py_INCREF(value);
            Py_INCREF(key);
            rc = encode_value(e, b, key, depth + 1, 1);
            Py_DECREF(key);
            if (rc == 0) {
                rc = encode_value(e, b, value, depth + 1, 1);
            }
            Py_DECREF(value);
        }
        if (rc < 0) {
            return -1;
        }
        done++;
    }
    if (done != n || PyDict_GET_SIZE(obj) != n) {
        return changed_while_encoding("dict");
    }
    return 0;
}

static int
encode_set(encoder *e, ip_buf *b, PyObject *obj, int tag, int depth)
{
    if (depth >= IP_MAX_DEPTH) {
        return too_deep_to_send();
    }
    Py_ssize_t n = PySet_GET_SIZE(obj);
    if (put_head(b, tag, (uint64_t)n) < 0) {
        return -1;
    }
    PyObject *it = PyObject_GetIter(obj);
    if (it == NULL) {
        return -1;
    }
    Py_ssize_t done = 0;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        /* the iterator hands out a new reference: one held */
        int rc = done == n ? changed_while_encoding("set")
                           : encode_value(e, b, item, depth + 1, 1);
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(it);
            return -1;
        }
        done++;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        return -1;
    }
    if (done != n) {
        return changed_while_encoding("set");
    }
    return 0;
}

static int
import_pickle(ip_codec *c)
{
    if (c->load_pickle != NULL) {
        return c->load_pickle(c);
    }
    PyObject *mod = PyImport_ImportModule("pickle");
    if (mod == NULL) {
        return -1;
    }
    PyObject *dumps = PyObject_GetAttrString(mod, "dumps");
    PyObject *loads = dumps ? PyObject_GetAttrString(mod, "loads") : NULL;
    Py_DECREF(mod);
    if (loads == NULL) {
        Py_XDECREF(dumps);
        return -1;
    }
    Py_XSETREF(c->pickle_dumps, dumps);
    Py_XSETREF(c->pickle_loads, loads);
    return 0;
}

/* pickle.dumps failed on obj: replace the error with a TypeError that names
 * obj's type and chains the original as __cause__.  Errors that are not
 * about the value (MemoryError, KeyboardInterrupt, ...) pass unchanged. */
static int
pickling_failed(PyObject *obj)
{
    PyObject *cause = PyErr_GetRaisedException();
    if (!PyErr_GivenExceptionMatches(cause, PyExc_Exception)
        || PyErr_GivenExceptionMatches(cause, PyExc_MemoryError))
    {
        PyErr_SetRaisedException(cause);
        return -1;
    }
    PyObject *cause_name = PyType_GetName(Py_TYPE(cause));
    if (cause_name == NULL) {
        Py_DECREF(cause);
        return -1;
    }
    PyObject *msg = PyUnicode_FromFormat(
        "cannot send a value of type '%T' to an interpreter: it is not one "
        "of the codec's types and pickling failed (%U: %S)%s",
        obj, cause_name, cause,
        PyObject_CheckBuffer(obj)
            ? "; it exports a buffer: memoryview(value) sends its memory" : "");
    Py_DECREF(cause_name);
    if (msg == NULL) {
        Py_DECREF(cause);
        return -1;
    }
    PyErr_SetObject(PyExc_TypeError, msg);
    Py_DECREF(msg);
    PyObject *exc = PyErr_GetRaisedException();
    PyException_SetCause(exc, cause);   /* steals cause */
    PyErr_SetRaisedException(exc);
    return -1;
}

static int
encode_pickled(encoder *e, ip_buf *b, PyObject *obj)
{
    if (e->c->pickle_dumps == NULL && import_pickle(e->c) < 0) {
        return -1;
    }
    PyObject *protocol = PyLong_FromLong(5);
    if (protocol == NULL) {
        return -1;
    }
    PyObject *args[2] = {obj, protocol};
    PyObject *data = PyObject_Vectorcall(e->c->pickle_dumps, args, 2, NULL);
    Py_DECREF(protocol);
    if (data == NULL) {
        return pickling_failed(obj);
    }
    if (!PyBytes_CheckExact(data)) {
        PyErr_Format(PyExc_TypeError,
                     "pickle.dumps() returned %T, not bytes", data);
        Py_DECREF(data);
        return -1;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    int rc = put_blob(b, T_PICKLE, (uint64_t)n, PyBytes_AS_STRING(data), n);
    Py_DECREF(data);
    return rc;
}

/* The values the decoder numbers inside a scope, by their tag. */
static inline int
numbered_tag(int tag)
{
    switch (tag) {
    case T_TUPLE: case T_LIST: case T_DICT: case T_SET: case T_FROZENSET:
    case T_BYTEARRAY: case T_PICKLE: case T_PINNED:
        return 1;
    default:
        return 0;
    }
}

/* A leaf that keeps its identity: a bytearray copy, a pin kind's value,
 * or pickle. */
static int
encode_leaf(encoder *e, ip_buf *b, PyObject *obj)
{
    if (Py_TYPE(obj) == &PyByteArray_Type && !(e->flags & IP_ENC_SHARE_BUFFERS)) {
        Py_ssize_t n = PyByteArray_GET_SIZE(obj);
        return put_blob(b, T_BYTEARRAY, (uint64_t)n, PyByteArray_AS_STRING(obj), n);
    }
    /* The pin kinds registered by higher layers (shared values, buffers,
     * queues), in registration order. */
    for (int i = 0; i < e->c->nkinds; i++) {
        int rc = e->c->kinds[i].encode(e->c, b, obj, e->flags);
        if (rc != 0) {
            return rc < 0 ? -1 : 0;
        }
    }
    return encode_pickled(e, b, obj);
}

/* depth: how many containers enclose obj; held: references to obj the
 * encoder itself holds (HELD_ROOT for the outermost value). */
static int
encode_value(encoder *e, ip_buf *b, PyObject *obj, int depth, int held)
{
    PyTypeObject *tp = Py_TYPE(obj);
    if (tp == &PyLong_Type) {
        return encode_int(b, obj);
    }
    if (tp == &PyUnicode_Type) {
        return encode_str(b, obj);
    }
    if (tp == &PyFloat_Type) {
        return encode_float(b, obj);
    }
    if (obj == Py_None || obj == Py_True || obj == Py_False) {
        if (buf_need(b, 1) < 0) {
            return -1;
        }
        b->data[b->len++] = (char)(obj == Py_None ? T_NONE
                                   : obj == Py_True ? T_TRUE : T_FALSE);
        return 0;
    }
    if (tp == &PyBytes_Type) {
        Py_ssize_t n = PyBytes_GET_SIZE(obj);
        return put_blob(b, T_BYTES, (uint64_t)n, PyBytes_AS_STRING(obj), n);
    }
    if (tp == &PyComplex_Type) {
        return encode_complex(b, obj);
    }
    /* Containers and leaves keep their identity: met a second time, they
     * are written as a reference. */
    int shared = maybe_shared(obj, held);
    if (shared) {
        Py_ssize_t number = obj == e->root ? 0 : memo_find(e, obj);
        if (number >= 0) {
            e->wrote_refs = 1;
            return put_head(b, T_REF, (uint64_t)number);
        }
    }
    int tag = tp == &PyList_Type ? T_LIST
            : tp == &PyDict_Type ? T_DICT
            : tp == &PyTuple_Type ? T_TUPLE
            : tp == &PySet_Type ? T_SET
            : tp == &PyFrozenSet_Type ? T_FROZENSET : 0;
    if (tag != 0) {
        /* numbered before its items, which may refer back to it */
        if (shared && memo_put(e, obj, e->count) < 0) {
            return -1;
        }
        e->count++;
        switch (tag) {
        case T_LIST:
            return encode_list(e, b, obj, depth);
        case T_DICT:
            return encode_dict(e, b, obj, depth);
        case T_TUPLE:
            return encode_tuple(e, b, obj, depth);
        default:
            return encode_set(e, b, obj, tag, depth);
        }
    }
    Py_ssize_t at = b->len;
    if (encode_leaf(e, b, obj) < 0) {
        return -1;
    }
    /* Numbered after it is made (a leaf has no items); a kind may have
     * written a value the decoder does not number (a view's bytes). */
    if (b->len > at && numbered_tag((unsigned char)b->data[at])) {
        if (shared && memo_put(e, obj, e->count) < 0) {
            return -1;
        }
        e->count++;
    }
    return 0;
}

/* The room a new payload starts with: what the last one needed, within
 * limits (a huge payload must not make every small one reserve as much). */
#define SIZE_HINT_MAX (256 * 1024)

int
ip_encode(ip_codec *c, ip_buf *buf, PyObject *obj, int flags)
{
    encoder e;
    e.c = c;
    e.flags = flags;
    e.wrote_refs = 0;
    e.count = 0;
    e.memo = NULL;
    e.memo_used = 0;
    e.memo_mask = 0;
    PyTypeObject *tp = Py_TYPE(obj);
    e.root = (tp == &PyList_Type || tp == &PyDict_Type || tp == &PyTuple_Type
              || tp == &PySet_Type || tp == &PyFrozenSet_Type) ? obj : NULL;
    Py_ssize_t start = buf->len;
    if (start == 0 && buf->cap < c->size_hint) {
        (void)ip_buf_reserve(buf, c->size_hint);   /* best effort */
    }
    int rc = encode_value(&e, buf, obj, 0, HELD_ROOT);
    encoder_clear(&e);
    if (rc == 0 && e.wrote_refs) {
        /* References were written: the value becomes a scope ('#'). */
        rc = buf_need(buf, 1);
        if (rc == 0) {
            memmove(buf->data + start + 1, buf->data + start, (size_t)(buf->len - start));
            buf->data[start] = (char)T_SCOPE;
            buf->len++;
        }
    }
    if (rc < 0) {
        buf->len = start;   /* drop the partial encoding */
        return -1;
    }
    if (start == 0) {
        /* a little over, so that a payload of the same shape fits */
        Py_ssize_t n = buf->len + buf->len / 8;
        c->size_hint = n < SIZE_HINT_MAX ? n : SIZE_HINT_MAX;
    }
    return 0;
}

/* ---------------------------------------------------------------- decode */

/* Short Latin-1 strings come from the codec's string cache (kept across
 * payloads, per interpreter): dict keys up to KEY_CACHE_MAX_LEN bytes, so
 * records share their key objects and cached hashes, and other strings up
 * to VALUE_CACHE_MAX_LEN bytes (tags, enum-like values), so repeated ones
 * cost no allocation, as with pickle's memo. */
#define STR_CACHE_SIZE (1 << IP_CODEC_STR_CACHE_BITS)   /* slots */
#define KEY_CACHE_MAX_LEN 32
#define VALUE_CACHE_MAX_LEN 12

typedef struct {
    ip_codec *c;
    const ip_pins *pins;         /* the payload's pins ('H' values index them) */
    const unsigned char *base;   /* start of the payload (for messages) */
    const unsigned char *p;      /* next byte to read */
    const unsigned char *end;
    int scoped;                  /* inside a '#': number what is made */
    Py_ssize_t scope_base;       /* memo[scope_base + i] is number i */
    PyObject **memo;             /* strong references */
    Py_ssize_t memo_n, memo_cap;
    /* Tuples being filled, innermost last, each with the number of mutable
     * containers (list, dict, set) open when it was made.  A reference to
     * one of them is sound only through a mutable container made since:
     * a cycle of tuples alone cannot be built in Python, and hashing one
     * would recurse without end (a crash on CPython 3.13). */
    int mutable_open;
    int open_tuples;
    struct { Py_ssize_t slot; int mutable_open; } open_tuple[IP_MAX_DEPTH + 1];
} reader;

static PyObject *decode_value(reader *r, int depth);

static inline Py_ssize_t
remaining(const reader *r)
{
    return (Py_ssize_t)(r->end - r->p);
}

static inline Py_ssize_t
offset(const reader *r)
{
    return (Py_ssize_t)(r->p - r->base);
}

static void *
truncated(reader *r)
{
    PyErr_Format(r->c->error,
                 "truncated payload: unexpected end at offset %zd",
                 offset(r));
    return NULL;
}

static inline int
get_varint(reader *r, uint64_t *out)
{
    if (r->p < r->end && *r->p < 0x80) {   /* one byte: the common case */
        *out = *r->p++;
        return 0;
    }
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
        if (r->p >= r->end) {
            truncated(r);
            return -1;
        }
        unsigned char c = *r->p++;
        if (shift == 63 && c > 1) {
            PyErr_Format(r->c->error,
                         "malformed payload: varint longer than 64 bits "
                         "at offset %zd", offset(r) - 1);
            return -1;
        }
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
}

/* A count of things each at least `unit` bytes long, checked against the
 * input that remains, so no claim can make us allocate more than the
 * payload could fill. */
static inline int
get_count(reader *r, Py_ssize_t unit, const char *what, Py_ssize_t *out)
{
    uint64_t n;
    if (get_varint(r, &n) < 0) {
        return -1;
    }
    if (n > (uint64_t)(remaining(r) / unit)) {
        PyErr_Format(r->c->error,
                     "malformed payload: %s claims %llu items at offset %zd "
                     "but only %zd bytes remain",
                     what, (unsigned long long)n, offset(r), remaining(r));
        return -1;
    }
    *out = (Py_ssize_t)n;
    return 0;
}

static int
too_deep_to_decode(reader *r)
{
    PyErr_Format(r->c->error,
                 "malformed payload: nested deeper than %d levels at offset %zd",
                 IP_MAX_DEPTH, offset(r));
    return -1;
}

/* ----------------------------------------------- the decoder's memo */

/* Number obj in the current scope.  -1 with MemoryError. */
static int
memo_keep(reader *r, PyObject *obj)
{
    if (r->memo_n == r->memo_cap) {
        Py_ssize_t cap = r->memo_cap ? r->memo_cap * 2 : 16;
        PyObject **memo = PyMem_Realloc(r->memo, (size_t)cap * sizeof(PyObject *));
        if (memo == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        r->memo = memo;
        r->memo_cap = cap;
    }
    r->memo[r->memo_n++] = Py_NewRef(obj);
    return 0;
}

/* A container was just made, before its items are read. */
static inline int
created(reader *r, PyObject *obj)
{
    return r->scoped ? memo_keep(r, obj) : 0;
}

/* '*': an object of this scope decoded before (or still being decoded). */
static PyObject *
decode_ref(reader *r)
{
    uint64_t i;
    if (get_varint(r, &i) < 0) {
        return NULL;
    }
    if (!r->scoped || i >= (uint64_t)(r->memo_n - r->scope_base)) {
        PyErr_Format(r->c->error,
                     "malformed payload: reference %llu at offset %zd names no "
                     "object decoded so far",
                     (unsigned long long)i, offset(r));
        return NULL;
    }
    Py_ssize_t slot = r->scope_base + (Py_ssize_t)i;
    for (int k = r->open_tuples - 1; k >= 0; k--) {
        if (r->open_tuple[k].slot == slot && r->open_tuple[k].mutable_open == r->mutable_open) {
            PyErr_Format(r->c->error,
                         "malformed payload: reference %llu at offset %zd makes a tuple "
                         "contain itself with no mutable container between",
                         (unsigned long long)i, offset(r));
            return NULL;
        }
    }
    return Py_NewRef(r->memo[slot]);
}

/* Drop the numbers from `base` on (a scope ended). */
static void
memo_pop(reader *r, Py_ssize_t base)
{
    while (r->memo_n > base) {
        r->memo_n--;
        Py_DECREF(r->memo[r->memo_n]);
    }
}

static void
reader_clear(reader *r)
{
    memo_pop(r, 0);
    PyMem_Free(r->memo);
    r->memo = NULL;
    r->memo_cap = 0;
}

/* ------------------------------------------------------------ values */

/* May item ever be part of a cycle?  CPython's own rule for untracking
 * tuples: only an exact tuple (or frozenset, as immutable) answers by its
 * current flag; any other GC type may be tracked later (a dict untracked
 * while it holds atomic values, on 3.13).  Atomic values are not GC types:
 * the flag test answers for them without a call. */
static inline int
may_be_tracked(PyObject *item)
{
    PyTypeObject *tp = Py_TYPE(item);
    if (!PyType_IS_GC(tp)) {
        return 0;
    }
    if (tp == &PyTuple_Type || tp == &PyFrozenSet_Type) {
        return PyObject_GC_IsTracked(item);
    }
    return 1;
}

static PyObject *
decode_int64(reader *r)
{
    uint64_t z;
    if (get_varint(r, &z) < 0) {
        return NULL;
    }
    int64_t v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return PyLong_FromLongLong(v);
}

static PyObject *
decode_bigint(reader *r)
{
    Py_ssize_t n;
    if (get_count(r, 1, "int", &n) < 0) {
        return NULL;
    }
    PyObject *v = PyLong_FromNativeBytes(r->p, (size_t)n,
                                         Py_ASNATIVEBYTES_LITTLE_ENDIAN);
    r->p += n;
    return v;
}

static PyObject *
decode_doubles(reader *r, int tag)
{
    double d[2];
    size_t size = tag == T_FLOAT ? sizeof(double) : 2 * sizeof(double);
    if ((size_t)remaining(r) < size) {
        r->p = r->end;
        return truncated(r);
    }
    memcpy(d, r->p, size);
    r->p += size;
    return tag == T_FLOAT ? PyFloat_FromDouble(d[0])
                          : PyComplex_FromDoubles(d[0], d[1]);
}

/* UCS-2/UCS-4 text.  The payload may sit at any address, so code units are
 * read with memcpy, never through a cast pointer; the string is built in
 * its canonical (narrowest) kind whatever kind the payload claims. */
static PyObject *
decode_wide_str(reader *r, int kind, Py_ssize_t n)
{
    const unsigned char *src = r->p;
    Py_UCS4 maxchar = 0;
    if (kind == PyUnicode_2BYTE_KIND) {
        /* OR is enough: every kind boundary is a power of two */
        for (Py_ssize_t i = 0; i < n; i++) {
            uint16_t c;
            memcpy(&c, src + 2 * i, 2);
            maxchar |= c;
        }
    }
    else {
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t c;
            memcpy(&c, src + 4 * i, 4);
            maxchar = c > maxchar ? c : maxchar;
        }
        if (maxchar > 0x10FFFF) {
            PyErr_Format(r->c->error,
                         "malformed payload: code point U+%X out of range "
                         "in the string at offset %zd",
                         (unsigned int)maxchar, offset(r));
            return NULL;
        }
    }
    PyObject *u = PyUnicode_New(n, maxchar);
    if (u == NULL) {
        return NULL;
    }
    int ukind = PyUnicode_KIND(u);
    void *dst = PyUnicode_DATA(u);
    if (ukind == kind) {
        memcpy(dst, src, (size_t)n * (size_t)kind);
    }
    else {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c;
            if (kind == PyUnicode_2BYTE_KIND) {
                uint16_t c16;
                memcpy(&c16, src + 2 * i, 2);
                c = c16;
            }
            else {
                uint32_t c32;
                memcpy(&c32, src + 4 * i, 4);
                c = c32;
            }
            PyUnicode_WRITE(ukind, dst, i, c);
        }
    }
    r->p += n * kind;
    return u;
}

/* Short strings (at most 32 bytes) are hashed and compared a word at a
 * time: loads that overlap cover every byte exactly once or twice, never
 * one past the end. */
static inline uint64_t
load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t
load32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Two words that together hold every byte of s[:n] (n <= 32). */
static inline void
short_words(const unsigned char *s, Py_ssize_t n, uint64_t *a, uint64_t *b)
{
    if (n >= 8) {
        *a = load64(s);
        *b = load64(s + n - 8);
        if (n > 16) {
            *a ^= load64(s + 8) * 0xC2B2AE3D27D4EB4Full;
            *b ^= load64(s + n - 16) * 0x165667B19E3779F9ull;
        }
    }
    else if (n >= 4) {
        *a = load32(s);
        *b = load32(s + n - 4);
    }
    else {
        *a = n > 0 ? (uint64_t)s[0] | (uint64_t)s[n / 2] << 8 : 0;
        *b = n > 0 ? s[n - 1] : 0;
    }
}

static inline int
short_equal(const unsigned char *x, const unsigned char *y, Py_ssize_t n)
{
    if (n >= 8) {
        if (load64(x) != load64(y) || load64(x + n - 8) != load64(y + n - 8)) {
            return 0;
        }
        return n <= 16 || (load64(x + 8) == load64(y + 8)
                           && load64(x + n - 16) == load64(y + n - 16));
    }
    if (n >= 4) {
        return load32(x) == load32(y) && load32(x + n - 4) == load32(y + n - 4);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (x[i] != y[i]) {
            return 0;
        }
    }
    return 1;
}

/* The str of Latin-1 text s[:n] (n <= KEY_CACHE_MAX_LEN) from one of the
 * codec's caches (made and cached on a miss).  New reference, or NULL
 * with MemoryError. */
static PyObject *
cached_str(PyObject **cache, const unsigned char *s, Py_ssize_t n)
{
    uint64_t a, b;
    short_words(s, n, &a, &b);
    uint64_t h = (a * 0x9E3779B97F4A7C15ull) ^ (b * 0xC2B2AE3D27D4EB4Full) ^ (uint64_t)n;
    h ^= h >> 29;
    /* Two-way: a string may sit in its slot or the neighbouring one. */
    uint32_t i = (uint32_t)((h * 0x9E3779B97F4A7C15ull) >> (64 - IP_CODEC_STR_CACHE_BITS));
    PyObject **slot = &cache[i];
    for (uint32_t way = 0; way < 2; way++) {
        PyObject *str = cache[i ^ way];
        if (str == NULL) {
            slot = &cache[i ^ way];
            break;
        }
        if (PyUnicode_GET_LENGTH(str) == n && short_equal(PyUnicode_1BYTE_DATA(str), s, n)) {
            return Py_NewRef(str);
        }
    }
    PyObject *str = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s, n);
    if (str == NULL) {
        return NULL;
    }
    Py_XSETREF(*slot, Py_NewRef(str));
    return str;
}

static PyObject *
decode_str(reader *r, int kind)
{
    Py_ssize_t n;
    if (get_count(r, kind, "str", &n) < 0) {
        return NULL;
    }
    if (kind == PyUnicode_1BYTE_KIND) {
        PyObject *u = n <= VALUE_CACHE_MAX_LEN
            ? cached_str(r->c->str_cache, r->p, n)
            : PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, r->p, n);
        r->p += n;
        return u;
    }
    return decode_wide_str(r, kind, n);
}

static PyObject *
decode_blob(reader *r, int tag)
{
    Py_ssize_t n;
    if (get_count(r, 1, tag == T_BYTES ? "bytes" : "bytearray", &n) < 0) {
        return NULL;
    }
    const char *p = (const char *)r->p;
    r->p += n;
    return tag == T_BYTES ? PyBytes_FromStringAndSize(p, n)
                          : PyByteArray_FromStringAndSize(p, n);
}

static PyObject *
decode_tuple_or_list(reader *r, int tag, int depth)
{
    Py_ssize_t n;
    if (depth >= IP_MAX_DEPTH) {
        too_deep_to_decode(r);
        return NULL;
    }
    if (get_count(r, 1, tag == T_TUPLE ? "tuple" : "list", &n) < 0) {
        return NULL;
    }
    PyObject *seq;
    if (tag == T_LIST) {
        seq = PyList_New(n);
        if (seq == NULL || created(r, seq) < 0) {
            Py_XDECREF(seq);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = decode_value(r, depth + 1);
            if (item == NULL) {
                Py_DECREF(seq);   /* the unfilled slots are NULL: fine */
                return NULL;
            }
            PyList_SET_ITEM(seq, i, item);
        }
        return seq;
    }
    int referable = r->scoped;
    seq = PyTuple_New(n);
    if (seq == NULL || created(r, seq) < 0) {
        Py_XDECREF(seq);
        return NULL;
    }
    if (referable) {
        /* Items may refer back to it before it is complete (through a
         * list: a recursive tuple), and even a crafted payload that hashes
         * it meanwhile must find a valid tuple. */
        for (Py_ssize_t i = 0; i < n; i++) {
            PyTuple_SET_ITEM(seq, i, Py_NewRef(Py_None));
        }
        /* depth < IP_MAX_DEPTH: there is room */
        r->open_tuple[r->open_tuples].slot = r->memo_n - 1;
        r->open_tuple[r->open_tuples].mutable_open = r->mutable_open;
        r->open_tuples++;
    }
    int any_tracked = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = decode_value(r, depth + 1);
        if (item == NULL) {
            r->open_tuples -= referable;
            Py_DECREF(seq);   /* the unfilled slots are NULL or None: fine */
            return NULL;
        }
        any_tracked = any_tracked || may_be_tracked(item);
        if (referable) {
            Py_DECREF(PyTuple_GET_ITEM(seq, i));
        }
        PyTuple_SET_ITEM(seq, i, item);
    }
    r->open_tuples -= referable;
    if (!any_tracked) {
        /* Only untracked items (atomic values, untracked tuples): the tuple
         * can never be part of a cycle, and the GC need not walk it (what
         * CPython does for such tuples itself). */
        PyObject_GC_UnTrack(seq);
    }
    return seq;
}

static PyObject *
decode_key(reader *r, int depth)
{
    if (r->p >= r->end || *r->p != T_STR1) {
        return decode_value(r, depth);
    }
    const unsigned char *tag = r->p++;
    Py_ssize_t n;
    if (get_count(r, 1, "str", &n) < 0) {
        return NULL;
    }
    if (n > KEY_CACHE_MAX_LEN) {
        r->p = tag;
        return decode_value(r, depth);
    }
    PyObject *key = cached_str(r->c->key_cache, r->p, n);
    if (key != NULL) {
        r->p += n;
    }
    return key;
}

/* Dicts of more keys than a new dict holds without growing (5). */
#define SHAPED_DICT_MIN 6

/* The template for a record of these keys: NULL (no error) if the shape
 * is new, or seen once (then it becomes a candidate, or on its second
 * sighting a template); NULL with an exception set on error. */
static PyObject *
dict_template(ip_codec *c, PyObject *const *keys, Py_ssize_t n)
{
    uint64_t h = (uint64_t)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        h = (h ^ ((uintptr_t)keys[i] >> 4)) * 0x9E3779B97F4A7C15ull;
    }
    ip_dict_shape *sh = &c->shapes[(h >> 40) % IP_CODEC_SHAPES];
    int same = sh->n == n && memcmp(sh->keys, keys, (size_t)n * sizeof(PyObject *)) == 0;
    if (same && sh->dict != NULL) {
        return sh->dict;
    }
    if (!same) {
        /* a candidate: addresses only, never dereferenced */
        Py_CLEAR(sh->dict);
        sh->n = n;
        memcpy(sh->keys, keys, (size_t)n * sizeof(PyObject *));
        return NULL;
    }
    /* Seen twice in a row: make the template (it holds the keys). */
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyDict_SetItem(dict, keys[i], Py_None) < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    sh->dict = dict;
    return dict;
}

/* A record-like dict outside a scope (nothing can refer to it before it is
 * complete): the pairs first, then the dict, copied from a template when
 * its keys (the key cache's own str objects) were seen before. */
static PyObject *
decode_dict_shaped(reader *r, int depth, Py_ssize_t n)
{
    PyObject *keys[IP_CODEC_SHAPE_MAX_KEYS], *values[IP_CODEC_SHAPE_MAX_KEYS];
    PyObject *dict = NULL;
    Py_ssize_t got = 0;
    int cached_keys = 1;
    for (; got < n; got++) {
        keys[got] = decode_key(r, depth + 1);
        if (keys[got] == NULL) {
            goto done;
        }
        values[got] = decode_value(r, depth + 1);
        if (values[got] == NULL) {
            Py_DECREF(keys[got]);
            goto done;
        }
        PyObject *k = keys[got];
        cached_keys &= PyUnicode_CheckExact(k) && PyUnicode_KIND(k) == PyUnicode_1BYTE_KIND
                       && PyUnicode_GET_LENGTH(k) <= KEY_CACHE_MAX_LEN;
    }
    PyObject *template = cached_keys ? dict_template(r->c, keys, n) : NULL;
    if (template != NULL) {
        dict = PyDict_Copy(template);   /* sized for them already */
    }
    else if (!PyErr_Occurred()) {
        dict = PyDict_New();
    }
    for (Py_ssize_t i = 0; dict != NULL && i < n; i++) {
        if (PyDict_SetItem(dict, keys[i], values[i]) < 0) {   /* TypeError if unhashable */
            Py_CLEAR(dict);
        }
    }
done:
    for (Py_ssize_t i = 0; i < got; i++) {
        Py_DECREF(keys[i]);
        Py_DECREF(values[i]);
    }
    return dict;
}

static PyObject *
decode_dict(reader *r, int depth)
{
    Py_ssize_t n;
    if (depth >= IP_MAX_DEPTH) {
        too_deep_to_decode(r);
        return NULL;
    }
    if (get_count(r, 2, "dict", &n) < 0) {
        return NULL;
    }
    if (!r->scoped && n >= SHAPED_DICT_MIN && n <= IP_CODEC_SHAPE_MAX_KEYS) {
        return decode_dict_shaped(r, depth, n);
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    if (created(r, dict) < 0) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = decode_key(r, depth + 1);
        if (key == NULL) {
            goto error;
        }
        PyObject *value = decode_value(r, depth + 1);
        if (value == NULL) {
            Py_DECREF(key);
            goto error;
        }
        int rc = PyDict_SetItem(dict, key, value);   /* TypeError if unhashable */
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0) {
            goto error;
        }
    }
    return dict;

error:
    Py_DECREF(dict);
    return NULL;
}

static PyObject *
decode_set(reader *r, int tag, int depth)
{
    Py_ssize_t n;
    if (depth >= IP_MAX_DEPTH) {
        too_deep_to_decode(r);
        return NULL;
    }
    if (get_count(r, 1, tag == T_SET ? "set" : "frozenset", &n) < 0) {
        return NULL;
    }
    /* A brand-new frozenset may be filled with PySet_Add before anyone
     * else sees it. */
    PyObject *set = tag == T_SET ? PySet_New(NULL) : PyFrozenSet_New(NULL);
    if (set == NULL) {
        return NULL;
    }
    /* A frozenset may be filled only while nobody else holds it: its
     * number is kept by a stand-in until it is complete (it cannot
     * contain itself). */
    Py_ssize_t slot = r->memo_n;
    if (created(r, tag == T_SET ? set : Py_None) < 0) {
        goto error;
    }
    int any_tracked = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = decode_value(r, depth + 1);
        if (item == NULL) {
            goto error;
        }
        any_tracked = any_tracked || may_be_tracked(item);
        int rc = PySet_Add(set, item);   /* TypeError if unhashable */
        Py_DECREF(item);
        if (rc < 0) {
            goto error;
        }
    }
    if (tag == T_FROZENSET) {
        if (!any_tracked) {
            PyObject_GC_UnTrack(set);   /* immutable, untracked items: as tuples */
        }
        if (r->scoped) {
            Py_SETREF(r->memo[slot], Py_NewRef(set));
        }
    }
    return set;

error:
    Py_DECREF(set);
    return NULL;
}

static PyObject *
decode_pickled(reader *r)
{
    Py_ssize_t n;
    if (get_count(r, 1, "pickle", &n) < 0) {
        return NULL;
    }
    if (r->c->pickle_loads == NULL && import_pickle(r->c) < 0) {
        return NULL;
    }
    /* A copy: unpickling runs arbitrary code, which must not see (or keep)
     * a view of memory that the caller frees afterwards. */
    PyObject *data = PyBytes_FromStringAndSize((const char *)r->p, n);
    if (data == NULL) {
        return NULL;
    }
    r->p += n;
    PyObject *v = PyObject_CallOneArg(r->c->pickle_loads, data);
    Py_DECREF(data);
    return v;
}

/* 'H': the kind byte, then a 4-byte index into the payload's own pins. */
static PyObject *
decode_pinned(reader *r)
{
    uint32_t index;
    if (remaining(r) < 5) {
        PyErr_SetString(r->c->error, "malformed payload: truncated handle");
        return NULL;
    }
    int wire = *r->p;
    memcpy(&index, r->p + 1, 4);
    if (r->pins == NULL || index >= r->pins->n) {
        PyErr_SetString(r->c->error,
                        "malformed payload: a handle that this payload does not hold");
        return NULL;
    }
    ip_pin *pin = r->pins->items[index];
    for (int i = 0; i < r->c->nkinds; i++) {
        if (r->c->kinds[i].wire == wire) {
            if (pin->kind != wire) {
                break;
            }
            r->p += 5;
            return r->c->kinds[i].decode(r->c, pin);
        }
    }
    PyErr_SetString(r->c->error, "malformed payload: handle of the wrong kind");
    return NULL;
}

/* '#': the value that follows, with numbers of its own. */
static PyObject *
decode_scope(reader *r, int depth)
{
    while (r->p < r->end && *r->p == T_SCOPE) {
        r->p++;   /* a run of '#' is one scope (and no recursion) */
    }
    int outer_scoped = r->scoped;
    Py_ssize_t outer_base = r->scope_base;
    r->scoped = 1;
    r->scope_base = r->memo_n;
    PyObject *v = decode_value(r, depth);   /* not at a '#': no deeper */
    memo_pop(r, r->scope_base);
    r->scoped = outer_scoped;
    r->scope_base = outer_base;
    return v;
}

/* depth: how many containers enclose the value being read. */
static PyObject *
decode_value(reader *r, int depth)
{
    if (r->p >= r->end) {
        return truncated(r);
    }
    int tag = *r->p++;
    PyObject *v;
    switch (tag) {
    case T_NONE:
        return Py_NewRef(Py_None);
    case T_FALSE:
        return Py_NewRef(Py_False);
    case T_TRUE:
        return Py_NewRef(Py_True);
    case T_INT:
        return decode_int64(r);
    case T_BIGINT:
        return decode_bigint(r);
    case T_FLOAT:
    case T_COMPLEX:
        return decode_doubles(r, tag);
    case T_STR1:
        return decode_str(r, PyUnicode_1BYTE_KIND);
    case T_STR2:
        return decode_str(r, PyUnicode_2BYTE_KIND);
    case T_STR4:
        return decode_str(r, PyUnicode_4BYTE_KIND);
    case T_BYTES:
        return decode_blob(r, tag);
    /* Containers number themselves when they are made, before their items. */
    case T_TUPLE:
        return decode_tuple_or_list(r, tag, depth);
    case T_FROZENSET:
        return decode_set(r, tag, depth);
    /* Mutable containers: a tuple may refer to itself through them. */
    case T_LIST:
        r->mutable_open++;
        v = decode_tuple_or_list(r, tag, depth);
        r->mutable_open--;
        return v;
    case T_DICT:
        r->mutable_open++;
        v = decode_dict(r, depth);
        r->mutable_open--;
        return v;
    case T_SET:
        r->mutable_open++;
        v = decode_set(r, tag, depth);
        r->mutable_open--;
        return v;
    case T_REF:
        return decode_ref(r);
    case T_SCOPE:
        r->p--;
        return decode_scope(r, depth);
    /* Numbered leaves. */
    case T_BYTEARRAY:
        v = decode_blob(r, tag);
        break;
    case T_PICKLE:
        v = decode_pickled(r);
        break;
    case T_PINNED:
        v = decode_pinned(r);
        break;
    case T_ZEROCOPY_BUFFER:
        PyErr_Format(r->c->error,
                     "payload holds a zero-copy buffer (tag '%c') at offset %zd, "
                     "which this version of interpool cannot decode",
                     tag, offset(r) - 1);
        return NULL;
    default:
        PyErr_Format(r->c->error,
                     "malformed payload: unknown tag 0x%02x at offset %zd",
                     (unsigned int)tag, offset(r) - 1);
        return NULL;
    }
    if (v != NULL && r->scoped && memo_keep(r, v) < 0) {
        Py_CLEAR(v);
    }
    return v;
}

PyObject *
ip_decode(ip_codec *c, const char *data, Py_ssize_t len, Py_ssize_t *pos, const ip_pins *pins)
{
    if (len < 0 || *pos < 0 || *pos > len) {
        PyErr_Format(c->error, "invalid position %zd in a payload of %zd bytes", *pos, len);
        return NULL;
    }
    reader r;
    r.c = c;
    r.pins = pins;
    r.base = (const unsigned char *)data;
    r.p = r.base + *pos;
    r.end = r.base + len;
    r.scoped = 0;
    r.scope_base = 0;
    r.memo = NULL;
    r.memo_n = r.memo_cap = 0;
    r.mutable_open = r.open_tuples = 0;
    PyObject *v = decode_value(&r, 0);
    reader_clear(&r);
    if (v != NULL) {
        *pos = offset(&r);
    }
    return v;
}

PyObject *
ip_decode_all(ip_codec *c, const char *data, Py_ssize_t len, const ip_pins *pins)
{
    Py_ssize_t pos = 0;
    PyObject *v = ip_decode(c, data, len, &pos, pins);
    if (v != NULL && pos != len) {
        PyErr_Format(c->error,
                     "malformed payload: %zd unexpected bytes after the value "
                     "(offset %zd)", len - pos, pos);
        Py_CLEAR(v);
    }
    return v;
}

PyObject *
ip_decode_buf(ip_codec *c, const ip_buf *buf)
{
    return ip_decode_all(c, buf->data, buf->len, &buf->pins);
}

/* ------------------------------------------------------------ the codec */

int
ip_codec_init(ip_codec *c, PyObject *error, void *owner)
{
    memset(c, 0, sizeof(*c));
    c->error = Py_NewRef(error);
    c->owner = owner;
    return 0;
}

int
ip_codec_add_kind(ip_codec *c, const ip_pin_kind *kind)
{
    if (c->nkinds == IP_CODEC_MAX_KINDS) {
        PyErr_SetString(PyExc_SystemError, "interpool: too many pin kinds");
        return -1;
    }
    c->kinds[c->nkinds++] = *kind;
    return 0;
}

int
ip_codec_traverse(ip_codec *c, visitproc visit, void *arg)
{
    Py_VISIT(c->error);
    Py_VISIT(c->pickle_dumps);
    Py_VISIT(c->pickle_loads);
    for (int i = 0; i < IP_CODEC_SHAPES; i++) {
        Py_VISIT(c->shapes[i].dict);
    }
    return 0;
}

void
ip_codec_clear(ip_codec *c)
{
    Py_CLEAR(c->error);
    Py_CLEAR(c->pickle_dumps);
    Py_CLEAR(c->pickle_loads);
    for (int i = 0; i < STR_CACHE_SIZE; i++) {
        Py_CLEAR(c->key_cache[i]);
        Py_CLEAR(c->str_cache[i]);
    }
    for (int i = 0; i < IP_CODEC_SHAPES; i++) {
        Py_CLEAR(c->shapes[i].dict);
        c->shapes[i].n = 0;
    }
}

int
ip_codec_write_pin(ip_buf *buf, int wire, ip_pin *pin)
{
    assert(pin->kind == wire);
    Py_ssize_t index = ip_pins_add(&buf->pins, pin);
    if (index < 0 || index > UINT32_MAX) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t ix = (uint32_t)index;
    char head[2] = {T_PINNED, (char)wire};
    if (ip_buf_append(buf, head, 2) < 0 || ip_buf_append(buf, &ix, 4) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 1;
}

int
ip_codec_write_head(ip_buf *buf, int container, Py_ssize_t n)
{
    int tag = container == IP_HEAD_TUPLE ? T_TUPLE : container == IP_HEAD_LIST ? T_LIST : T_DICT;
    assert(container >= IP_HEAD_TUPLE && container <= IP_HEAD_DICT && n >= 0);
    return put_head(buf, tag, (uint64_t)n);
}
