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
 *   'H' pinned        a data-plane object (data.c): kind byte, varint index
 *                     into the payload's pins (never an address)
 *   'M'               reserved (see below)
 *
 * Everything whose type is not exactly one of the above (subclasses
 * included, so their type survives) goes through pickle.
 *
 * The decoder trusts nothing: every length is checked against the bytes
 * that remain before anything is read or allocated, and malformed input
 * raises CodecError.
 */
#include "_core.h"

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
    /* Reserved for two planned extension kinds; no encoder emits them yet
     * and the decoder rejects them with CodecError:
     * - T_SHARED_HANDLE: a reference to an object living in process-wide
     *   raw memory (a shared queue, counter, ...), passed by handle.
     * - T_ZEROCOPY_BUFFER: a buffer whose bytes stay where they are (the
     *   payload carries a pointer, a length and a release hook). */
    T_SHARED_HANDLE = 'H',
    T_ZEROCOPY_BUFFER = 'M',
};

/* Worst-case size of a tag plus a varint. */
#define HEAD_MAX 11

/* --------------------------------------------------------------- buffers */

int
ip_buf_reserve(ip_buf *b, Py_ssize_t extra)
{
    if (extra < 0 || extra > PY_SSIZE_T_MAX - b->len) {
        return -1;
    }
    Py_ssize_t need = b->len + extra;
    if (need <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need) {
        cap = cap > PY_SSIZE_T_MAX / 2 ? need : cap * 2;
    }
    char *data = PyMem_RawRealloc(b->data, (size_t)cap);
    if (data == NULL) {
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

int
ip_buf_append(ip_buf *b, const void *p, Py_ssize_t n)
{
    if (ip_buf_reserve(b, n) < 0) {
        return -1;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, (size_t)n);
        b->len += n;
    }
    return 0;
}

void
ip_buf_free(ip_buf *b)
{
    PyMem_RawFree(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    ip_pins_clear(&b->pins);
}

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
    if (n > 0) {
        memcpy(p, data, (size_t)n);
    }
    buf_done(b, p + n);
    return 0;
}

/* ---------------------------------------------------------------- encode */

static int encode_value(ip_state *st, ip_buf *b, PyObject *obj, int depth);

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

static int
encode_tuple(ip_state *st, ip_buf *b, PyObject *obj, int depth)
{
    if (depth >= IP_MAX_DEPTH) {
        return too_deep_to_send();
    }
    Py_ssize_t n = PyTuple_GET_SIZE(obj);
    if (put_head(b, T_TUPLE, (uint64_t)n) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (encode_value(st, b, PyTuple_GET_ITEM(obj, i), depth + 1) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The count is written first, so a list that a pickled item's __reduce__
 * (or a finalizer) resizes mid-way is an error, not a corrupt payload. */
static int
encode_list(ip_state *st, ip_buf *b, PyObject *obj, int depth)
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
        PyObject *item = Py_NewRef(PyList_GET_ITEM(obj, i));
        int rc = encode_value(st, b, item, depth + 1);
        Py_DECREF(item);
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
encode_dict(ip_state *st, ip_buf *b, PyObject *obj, int depth)
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
        Py_INCREF(key);
        Py_INCREF(value);
        int rc = encode_value(st, b, key, depth + 1);
        if (rc == 0) {
            rc = encode_value(st, b, value, depth + 1);
        }
        Py_DECREF(key);
        Py_DECREF(value);
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
encode_set(ip_state *st, ip_buf *b, PyObject *obj, int tag, int depth)
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
        int rc = done == n ? changed_while_encoding("set")
                           : encode_value(st, b, item, depth + 1);
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
import_pickle(ip_state *st)
{
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
    Py_XSETREF(st->pickle_dumps, dumps);
    Py_XSETREF(st->pickle_loads, loads);
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
        "of the codec's types and pickling failed (%U: %S)",
        obj, cause_name, cause);
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
encode_pickled(ip_state *st, ip_buf *b, PyObject *obj)
{
    if (st->pickle_dumps == NULL && import_pickle(st) < 0) {
        return -1;
    }
    PyObject *protocol = PyLong_FromLong(5);
    if (protocol == NULL) {
        return -1;
    }
    PyObject *args[2] = {obj, protocol};
    PyObject *data = PyObject_Vectorcall(st->pickle_dumps, args, 2, NULL);
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

/* depth: how many containers enclose obj. */
static int
encode_value(ip_state *st, ip_buf *b, PyObject *obj, int depth)
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
    if (tp == &PyTuple_Type) {
        return encode_tuple(st, b, obj, depth);
    }
    if (tp == &PyList_Type) {
        return encode_list(st, b, obj, depth);
    }
    if (tp == &PyDict_Type) {
        return encode_dict(st, b, obj, depth);
    }
    if (tp == &PyBytes_Type) {
        Py_ssize_t n = PyBytes_GET_SIZE(obj);
        return put_blob(b, T_BYTES, (uint64_t)n, PyBytes_AS_STRING(obj), n);
    }
    if (tp == &PyByteArray_Type && !ip_tls_share_buffers) {
        Py_ssize_t n = PyByteArray_GET_SIZE(obj);
        return put_blob(b, T_BYTEARRAY, (uint64_t)n,
                        PyByteArray_AS_STRING(obj), n);
    }
    if (tp == &PySet_Type) {
        return encode_set(st, b, obj, T_SET, depth);
    }
    if (tp == &PyFrozenSet_Type) {
        return encode_set(st, b, obj, T_FROZENSET, depth);
    }
    if (tp == &PyComplex_Type) {
        return encode_complex(b, obj);
    }
    int pinned = ip_encode_pinned(st, b, obj);   /* data.c: handles, buffers */
    if (pinned != 0) {
        return pinned < 0 ? -1 : 0;
    }
    return encode_pickled(st, b, obj);
}

int
ip_encode(ip_state *st, ip_buf *buf, PyObject *obj)
{
    Py_ssize_t start = buf->len;
    if (encode_value(st, buf, obj, 0) < 0) {
        buf->len = start;   /* drop the partial encoding */
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- decode */

/* Dict keys that are short Latin-1 strings are looked up in a small cache
 * (per decode call), so records with the same keys share key objects and
 * their cached hashes, as with pickle's memo.  The cache switches on at the
 * second dict, so a single dict (keyword arguments) pays nothing. */
#define KEY_CACHE_BITS 6
#define KEY_CACHE_SIZE (1 << KEY_CACHE_BITS)   /* slots */
#define KEY_CACHE_MAX_LEN 32    /* longer keys are not cached */

typedef struct {
    ip_state *st;
    const unsigned char *base;   /* start of the payload (for messages) */
    const unsigned char *p;      /* next byte to read */
    const unsigned char *end;
    int dicts_seen;
    PyObject **keys;             /* NULL, or key_slots once in use */
    PyObject *key_slots[KEY_CACHE_SIZE];   /* strong refs; set up lazily */
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
    PyErr_Format(r->st->codec_error,
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
            PyErr_Format(r->st->codec_error,
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
        PyErr_Format(r->st->codec_error,
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
    PyErr_Format(r->st->codec_error,
                 "malformed payload: nested deeper than %d levels at offset %zd",
                 IP_MAX_DEPTH, offset(r));
    return -1;
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
            PyErr_Format(r->st->codec_error,
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

static PyObject *
decode_str(reader *r, int kind)
{
    Py_ssize_t n;
    if (get_count(r, kind, "str", &n) < 0) {
        return NULL;
    }
    if (kind == PyUnicode_1BYTE_KIND) {
        PyObject *u = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, r->p, n);
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
    PyObject *seq = tag == T_TUPLE ? PyTuple_New(n) : PyList_New(n);
    if (seq == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = decode_value(r, depth + 1);
        if (item == NULL) {
            Py_DECREF(seq);   /* the unfilled slots are NULL: fine */
            return NULL;
        }
        if (tag == T_TUPLE) {
            PyTuple_SET_ITEM(seq, i, item);
        }
        else {
            PyList_SET_ITEM(seq, i, item);
        }
    }
    return seq;
}

static PyObject *
decode_key(reader *r, int depth)
{
    if (r->keys == NULL || r->p >= r->end || *r->p != T_STR1) {
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
    const unsigned char *s = r->p;
    uint32_t h = 2166136261u;   /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++) {
        h = (h ^ s[i]) * 16777619u;
    }
    /* FNV's low bits are weak: take the top bits of a multiplicative mix.
     * Two-way: a key may sit in its slot or the neighbouring one. */
    uint32_t i = ((h ^ (uint32_t)n) * 2654435769u) >> (32 - KEY_CACHE_BITS);
    PyObject **slot = &r->keys[i];
    for (int way = 0; way < 2; way++) {
        PyObject *key = r->keys[i ^ (uint32_t)way];
        if (key == NULL) {
            slot = &r->keys[i ^ (uint32_t)way];
            break;
        }
        if (PyUnicode_GET_LENGTH(key) == n
            && memcmp(PyUnicode_1BYTE_DATA(key), s, (size_t)n) == 0)
        {
            r->p += n;
            return Py_NewRef(key);
        }
    }
    PyObject *key = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s, n);
    if (key == NULL) {
        return NULL;
    }
    r->p += n;
    Py_XSETREF(*slot, Py_NewRef(key));
    return key;
}

static void
reader_clear(reader *r)
{
    if (r->keys != NULL) {
        for (int i = 0; i < KEY_CACHE_SIZE; i++) {
            Py_CLEAR(r->keys[i]);
        }
        r->keys = NULL;
    }
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
    if (r->keys == NULL && ++r->dicts_seen >= 2) {
        memset(r->key_slots, 0, sizeof(r->key_slots));
        r->keys = r->key_slots;
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
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
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = decode_value(r, depth + 1);
        if (item == NULL) {
            goto error;
        }
        int rc = PySet_Add(set, item);   /* TypeError if unhashable */
        Py_DECREF(item);
        if (rc < 0) {
            goto error;
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
    if (r->st->pickle_loads == NULL && import_pickle(r->st) < 0) {
        return NULL;
    }
    /* A copy: unpickling runs arbitrary code, which must not see (or keep)
     * a view of memory that the caller frees afterwards. */
    PyObject *data = PyBytes_FromStringAndSize((const char *)r->p, n);
    if (data == NULL) {
        return NULL;
    }
    r->p += n;
    PyObject *v = PyObject_CallOneArg(r->st->pickle_loads, data);
    Py_DECREF(data);
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
    case T_BYTEARRAY:
        return decode_blob(r, tag);
    case T_TUPLE:
    case T_LIST:
        return decode_tuple_or_list(r, tag, depth);
    case T_DICT:
        return decode_dict(r, depth);
    case T_SET:
    case T_FROZENSET:
        return decode_set(r, tag, depth);
    case T_PICKLE:
        return decode_pickled(r);
    case T_SHARED_HANDLE: {
        /* data.c decodes the body: a pin kind and an index into the pins of
         * the payload being decoded. */
        Py_ssize_t pos = offset(r);
        PyObject *v = ip_decode_pinned(r->st, (const char *)r->base,
                                       (Py_ssize_t)(r->end - r->base), &pos);
        if (v != NULL) {
            r->p = r->base + pos;
        }
        return v;
    }
    case T_ZEROCOPY_BUFFER:
        PyErr_Format(r->st->codec_error,
                     "payload holds a %s (tag '%c') at offset %zd, which "
                     "this version of interpool cannot decode",
                     tag == T_SHARED_HANDLE ? "shared handle"
                                            : "zero-copy buffer",
                     tag, offset(r) - 1);
        return NULL;
    default:
        PyErr_Format(r->st->codec_error,
                     "malformed payload: unknown tag 0x%02x at offset %zd",
                     (unsigned int)tag, offset(r) - 1);
        return NULL;
    }
}

PyObject *
ip_decode(ip_state *st, const char *data, Py_ssize_t len, Py_ssize_t *pos)
{
    if (len < 0 || *pos < 0 || *pos > len) {
        PyErr_Format(st->codec_error,
                     "invalid position %zd in a payload of %zd bytes",
                     *pos, len);
        return NULL;
    }
    /* Field by field: an initializer would zero the whole key cache. */
    reader r;
    r.st = st;
    r.base = (const unsigned char *)data;
    r.p = r.base + *pos;
    r.end = r.base + len;
    r.dicts_seen = 0;
    r.keys = NULL;
    PyObject *v = decode_value(&r, 0);
    reader_clear(&r);
    if (v != NULL) {
        *pos = offset(&r);
    }
    return v;
}

PyObject *
ip_decode_all(ip_state *st, const char *data, Py_ssize_t len)
{
    Py_ssize_t pos = 0;
    PyObject *v = ip_decode(st, data, len, &pos);
    if (v != NULL && pos != len) {
        PyErr_Format(st->codec_error,
                     "malformed payload: %zd unexpected bytes after the value "
                     "(offset %zd)", len - pos, pos);
        Py_CLEAR(v);
    }
    return v;
}

/* ------------------------------------------------- Python entry points */

PyObject *
ip_codec_py_encode(PyObject *module, PyObject *obj)
{
    ip_state *st = ip_get_state(module);
    ip_buf b = {0};
    PyObject *res = NULL;
    if (ip_encode(st, &b, obj) == 0) {
        res = PyBytes_FromStringAndSize(b.data, b.len);
    }
    ip_buf_free(&b);
    return res;
}

PyObject *
ip_codec_py_decode(PyObject *module, PyObject *data)
{
    ip_state *st = ip_get_state(module);
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *res = ip_decode_all(st, view.buf, view.len);
    PyBuffer_Release(&view);
    return res;
}
