/* The value codec: Python values <-> raw bytes that cross interpreters.
 *
 * The codec knows the built-in value types and pickle.  Data-plane objects
 * (shared values, buffers, queues) are "pins": higher layers register a pin
 * kind per type (ip_codec_add_kind) and the codec calls its hooks; it knows
 * nothing else about them.
 */
#ifndef IP_CODEC_H
#define IP_CODEC_H

#include "mem/buf.h"

/* Deepest container nesting the codec accepts (a clear error beyond). */
#define IP_MAX_DEPTH 200

/* Encoding flags. */
enum {
    /* Buffer objects (memoryview, bytearray, ...) travel as pins on the
     * caller's memory (task arguments, the main interpreter's queue items)
     * instead of being copied (results, a worker's queue items). */
    IP_ENC_SHARE_BUFFERS = 1,
};

typedef struct ip_codec ip_codec;

/* A data-plane type the codec writes as 'H', kind byte, pin index. */
typedef struct ip_pin_kind {
    int wire;   /* the kind byte; also ip_pin.kind of its pins */
    /* 1: obj is handled (written, e.g. with ip_codec_write_pin);
     * 0: not this kind; -1: error with an exception set. */
    int (*encode)(ip_codec *c, ip_buf *buf, PyObject *obj, int flags);
    /* The value for one of its pins here: new reference, or NULL with an
     * exception set. */
    PyObject *(*decode)(ip_codec *c, ip_pin *pin);
} ip_pin_kind;

#define IP_CODEC_MAX_KINDS 8

/* Slots of the decoder's string cache (a power of two). */
#define IP_CODEC_STR_CACHE_BITS 9

/* The decoder's dict shapes: a record's keys, in order, seen before.  A
 * dict of that shape is made as a copy of a template (the keys with None
 * values), already sized, instead of growing key by key. */
#define IP_CODEC_SHAPES 32
#define IP_CODEC_SHAPE_MAX_KEYS 16
typedef struct ip_dict_shape {
    PyObject *dict;     /* the template, or NULL: shape seen once (a candidate) */
    Py_ssize_t n;
    PyObject *keys[IP_CODEC_SHAPE_MAX_KEYS];   /* compared by address only;
                                                * the template holds them */
} ip_dict_shape;

/* One per interpreter (in the module state). */
struct ip_codec {
    PyObject *error;          /* CodecError (ValueError) */
    PyObject *pickle_dumps;   /* imported on first use */
    PyObject *pickle_loads;
    /* Sets pickle_dumps and pickle_loads on first use (0, or -1 with an
     * exception set); NULL: the pickle module's.  The module layer points
     * it at interpool's pickler, which sends by value what a worker cannot
     * import (functions and classes of __main__, lambdas, local classes). */
    int (*load_pickle)(ip_codec *c);
    void *owner;              /* for the kind hooks: whoever registered them */
    ip_pin_kind kinds[IP_CODEC_MAX_KINDS];
    int nkinds;
    /* What the encoder last wrote at top level (bytes): a new payload
     * starts with this much room, so it is not grown step by step. */
    Py_ssize_t size_hint;
    /* Short Latin-1 strings the decoder made, kept across payloads
     * (strong references): dict keys, so records share their key objects
     * and cached hashes (msgspec's key cache is the model), and apart, so
     * that they do not evict keys, short values (tags, enum-like text). */
    PyObject *key_cache[1 << IP_CODEC_STR_CACHE_BITS];
    PyObject *str_cache[1 << IP_CODEC_STR_CACHE_BITS];
    ip_dict_shape shapes[IP_CODEC_SHAPES];
};

int ip_codec_init(ip_codec *c, PyObject *error, void *owner);
/* Kinds are tried in registration order by the encoder. */
int ip_codec_add_kind(ip_codec *c, const ip_pin_kind *kind);
int ip_codec_traverse(ip_codec *c, visitproc visit, void *arg);
void ip_codec_clear(ip_codec *c);

/* Append obj's encoding to buf.  0 on success; -1 with an exception set:
 * TypeError naming the type for a value neither the codec nor pickle can
 * send, ValueError for nesting deeper than IP_MAX_DEPTH, MemoryError.  On
 * error buf's bytes are as before (pins added meanwhile may remain).
 * Objects reached twice within one call (shared or recursive references)
 * are written once and referred back to, so they decode as one object. */
int ip_encode(ip_codec *c, ip_buf *buf, PyObject *obj, int flags);
/* For kind hooks: write `pin` (one more reference in buf's pins).
 * Returns 1, or -1 with MemoryError. */
int ip_codec_write_pin(ip_buf *buf, int wire, ip_pin *pin);

/* Containers written item by item by their caller (who then writes the n
 * items, or 2n for a dict: key, value, ...).  0, or -1 with MemoryError. */
enum { IP_HEAD_TUPLE = 1, IP_HEAD_LIST = 2, IP_HEAD_DICT = 3 };
int ip_codec_write_head(ip_buf *buf, int container, Py_ssize_t n);

/* Decode one value at data[*pos], advancing *pos; `pins` are the
 * payload's pins (may be NULL).  New reference, or NULL with an exception
 * set (CodecError for malformed input: never a crash, whatever the bytes). */
PyObject *ip_decode(ip_codec *c, const char *data, Py_ssize_t len, Py_ssize_t *pos,
                    const ip_pins *pins);
/* A whole payload that must hold exactly one value. */
PyObject *ip_decode_all(ip_codec *c, const char *data, Py_ssize_t len, const ip_pins *pins);
PyObject *ip_decode_buf(ip_codec *c, const ip_buf *buf);

#endif
