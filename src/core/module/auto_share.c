/* Auto-share: a large, deeply immutable argument passed again and again as
 * the same object (the seed's grid, a tuple of tuples) is encoded once and
 * decoded once per worker, as if the caller had used Pool.share().
 *
 * Per interpreter, a small cache maps the caller's object (held strongly,
 * compared by identity: an immutable object never changes, and the address
 * cannot be reused while we hold it) to a shared value.  An object is
 * promoted the second time it is sent, so a value sent once costs nothing
 * more.  The cache is bounded (entries and bytes, least recently used goes
 * first), and an entry whose object only the cache still holds is released
 * at the next sweep (workers then drop their copies).
 *
 * A first sighting keeps no reference (none of these types can be weakly
 * referenced): it is a fingerprint, the object's address, type and length.
 * Another object born at the same address with the same type and length
 * after the first died looks like a second sighting and is promoted one
 * call early: a cost, never a wrong value (an entry holds its own object).
 *
 * The entries a call substitutes are pinned until that call is encoded:
 * making room for another argument of the same call (or of a call made
 * while encoding it, by pickling code) never evicts them, as their
 * stand-ins are already in its arguments.
 */
#include "module/state.h"

#include <stdlib.h>
#include <string.h>

#define MIN_BYTES_DEFAULT 4096          /* encoded size from which a value is shared */
#define MAX_ENTRIES 32
#define MAX_BYTES (64 * 1024 * 1024)
#define SIGHTINGS 16                     /* large candidates seen once, awaiting a second */
#define SWEEP_EVERY 256                  /* candidate sends between sweeps */

atomic_long ip_live_auto_shared;

typedef struct {
    PyObject *obj;       /* strong */
    ip_shared *sv;       /* one pin reference */
    Py_ssize_t nbytes;
    uint64_t used;
    uint64_t pinned;     /* the call that last substituted it */
} entry;

/* A large candidate seen once, without a reference to it. */
typedef struct {
    uintptr_t addr;      /* 0: empty */
    PyTypeObject *type;
    Py_ssize_t len;
} sighting;

struct auto_share {
    entry entries[MAX_ENTRIES];
    int n;
    Py_ssize_t bytes;
    uint64_t clock;
    uint64_t call;       /* the latest call substituted (numbered from 1) */
    uint64_t pin_from;   /* entries pinned by this call or a later one are in use */
    int encoding;        /* calls being encoded (nested: pickling code may call) */
    sighting seen[SIGHTINGS];
    int seen_next;
};

static Py_ssize_t min_bytes = -1;   /* INTERPOOL_AUTO_SHARE_BYTES (0: off), read once */

static Py_ssize_t
threshold(void)
{
    if (min_bytes < 0) {
        const char *env = getenv("INTERPOOL_AUTO_SHARE_BYTES");
        min_bytes = env != NULL && *env ? atol(env) : MIN_BYTES_DEFAULT;
    }
    return min_bytes;
}

static int
candidate(PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);
    return tp == &PyTuple_Type || tp == &PyFrozenSet_Type || tp == &PyUnicode_Type ||
           tp == &PyBytes_Type;
}

/* Nothing reachable from obj can ever change: exact built-in immutable
 * types all the way down (a tuple holding a list is not). */
static int
deeply_immutable(PyObject *obj, int depth)
{
    PyTypeObject *tp = Py_TYPE(obj);
    if (obj == Py_None || tp == &PyBool_Type || tp == &PyLong_Type || tp == &PyFloat_Type ||
        tp == &PyComplex_Type || tp == &PyUnicode_Type || tp == &PyBytes_Type) {
        return 1;
    }
    if (depth >= IP_MAX_DEPTH) {
        return 0;
    }
    if (tp == &PyTuple_Type) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(obj); i++) {
            if (!deeply_immutable(PyTuple_GET_ITEM(obj, i), depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    if (tp == &PyFrozenSet_Type) {
        PyObject *key;
        PyObject *it = PyObject_GetIter(obj);
        if (it == NULL) {
            PyErr_Clear();
            return 0;
        }
        int ok = 1;
        while (ok && (key = PyIter_Next(it)) != NULL) {
            ok = deeply_immutable(key, depth + 1);
            Py_DECREF(key);
        }
        Py_DECREF(it);
        PyErr_Clear();
        return ok;
    }
    return 0;
}

static struct auto_share *
cache_of(ip_state *st)
{
    if (st->auto_share == NULL) {
        st->auto_share = PyMem_RawCalloc(1, sizeof(struct auto_share));
    }
    return st->auto_share;
}

static int
in_use(struct auto_share *a, entry *e)
{
    return a->encoding > 0 && e->pinned >= a->pin_from;
}

static void
drop(struct auto_share *a, int i)
{
    entry *e = &a->entries[i];
    if (ip_shared_release(e->sv)) {
        ip_wake_all_pools();   /* idle workers drop their copies now */
    }
    ip_pin_decref(&e->sv->base);
    Py_DECREF(e->obj);
    a->bytes -= e->nbytes;
    a->entries[i] = a->entries[--a->n];
    atomic_fetch_sub(&ip_live_auto_shared, 1);
}

void
ip_auto_share_sweep(ip_state *st)
{
    struct auto_share *a = st->auto_share;
    if (a == NULL) {
        return;
    }
    for (int i = a->n - 1; i >= 0; i--) {
        if (Py_REFCNT(a->entries[i].obj) == 1 && !in_use(a, &a->entries[i])) {
            /* the caller let go of it (and no call being encoded uses it) */
            drop(a, i);
        }
    }
}

/* Promote obj, whose encoding is data[0:len], to a shared value. */
static void
promote(struct auto_share *a, PyObject *obj, const char *data, Py_ssize_t len)
{
    if (len > MAX_BYTES) {
        return;
    }
    while (a->n > 0 && (a->n == MAX_ENTRIES || a->bytes + len > MAX_BYTES)) {
        int lru = -1;   /* least recently used of those this call does not use */
        for (int i = 0; i < a->n; i++) {
            if (!in_use(a, &a->entries[i]) &&
                (lru < 0 || a->entries[i].used < a->entries[lru].used)) {
                lru = i;
            }
        }
        if (lru < 0) {
            return;   /* no room without evicting this call's own: it travels inline */
        }
        drop(a, lru);
    }
    ip_buf copy = {0};
    if (ip_buf_append(&copy, data, len) < 0) {
        return;   /* no memory: the value simply keeps travelling inline */
    }
    ip_shared *sv = ip_shared_new(&copy);
    if (sv == NULL) {
        ip_buf_free(&copy);
        return;
    }
    entry *e = &a->entries[a->n++];
    e->obj = Py_NewRef(obj);
    e->sv = sv;
    e->nbytes = len;
    e->used = ++a->clock;
    e->pinned = a->call;
    a->bytes += len;
    atomic_fetch_add(&ip_live_auto_shared, 1);
}

/* The length that goes into a sighting's fingerprint. */
static Py_ssize_t
length_of(PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);
    return tp == &PyUnicode_Type ? PyUnicode_GET_LENGTH(obj)
           : tp == &PyFrozenSet_Type ? PySet_GET_SIZE(obj)
                                      : Py_SIZE(obj);   /* tuple, bytes */
}

/* Seen once before (then forget it), else remember it. */
static int
second_sighting(struct auto_share *a, PyObject *obj)
{
    sighting now = {(uintptr_t)obj, Py_TYPE(obj), length_of(obj)};
    for (int i = 0; i < SIGHTINGS; i++) {
        sighting *s = &a->seen[i];
        if (s->addr == now.addr && s->type == now.type && s->len == now.len) {
            memset(s, 0, sizeof(*s));
            return 1;
        }
    }
    a->seen[a->seen_next] = now;
    a->seen_next = (a->seen_next + 1) % SIGHTINGS;
    return 0;
}

/* At least `need` bytes encoded?  A cheap lower bound (a byte per scalar,
 * a string's or bytes' length), walked only until it gets there: a small
 * argument is not remembered as a sighting, and no big one is walked whole. */
static int
at_least(PyObject *obj, Py_ssize_t *need, int depth)
{
    PyTypeObject *tp = Py_TYPE(obj);
    if (tp == &PyUnicode_Type) {
        *need -= PyUnicode_GET_LENGTH(obj);
    }
    else if (tp == &PyBytes_Type) {
        *need -= PyBytes_GET_SIZE(obj);
    }
    else if (tp == &PyTuple_Type && depth < IP_MAX_DEPTH) {
        *need -= 1;
        for (Py_ssize_t i = 0; *need > 0 && i < PyTuple_GET_SIZE(obj); i++) {
            at_least(PyTuple_GET_ITEM(obj, i), need, depth + 1);
        }
    }
    else if (tp == &PyFrozenSet_Type) {
        *need -= 1 + PySet_GET_SIZE(obj);   /* its items not walked: a rough floor */
    }
    else {
        *need -= 1;
    }
    return *need <= 0;
}

/* The stand-in for obj if it is (or now becomes) auto-shared; NULL with
 * no exception when it travels inline; NULL with an exception on error. */
static entry *
cached(struct auto_share *a, PyObject *obj)
{
    for (int i = 0; i < a->n; i++) {
        if (a->entries[i].obj == obj) {
            return &a->entries[i];
        }
    }
    return NULL;
}

static PyObject *
stand_in_for(ip_state *st, struct auto_share *a, PyObject *obj)
{
    entry *e = cached(a, obj);
    if (e != NULL) {
        e->used = ++a->clock;
        e->pinned = a->call;
        return ip_shared_stand_in(st, e->sv);
    }
    Py_ssize_t need = threshold();
    if (!at_least(obj, &need, 0) || !second_sighting(a, obj) || !deeply_immutable(obj, 0)) {
        return NULL;
    }
    /* The second time: encoded once more, apart, to become a shared value
     * (a copy, never a view; the call's own encoding then refers to it). */
    ip_buf data = {0};
    if (ip_encode(&st->codec, &data, obj, 0) < 0) {
        ip_buf_free(&data);
        return NULL;
    }
    PyObject *out = NULL;
    if (data.len >= threshold() && data.pins.n == 0) {
        ip_auto_share_sweep(st);
        promote(a, obj, data.data, data.len);
        for (int i = 0; i < a->n; i++) {
            if (a->entries[i].obj == obj) {   /* not there if it could not be */
                out = ip_shared_stand_in(st, a->entries[i].sv);
                break;
            }
        }
    }
    ip_buf_free(&data);
    return out;
}

/* The items of `args` (a call's args tuple or kwargs dict at depth 0, a
 * tuple argument at depth 1) with stand-ins for what is auto-shared.  A
 * tuple argument is looked into once: one-argument front doors (amap, a
 * starmap-style wrapper) get (grid, x) with the grid inside.  1 with a new
 * container in *out, 0 when nothing is replaced, -1 with an exception. */
static int
substitute(ip_state *st, struct auto_share *a, PyObject *args, int depth, PyObject **out)
{
    *out = NULL;
    int is_tuple = PyTuple_CheckExact(args);
    /* A snapshot of a dict's items: encoding may run code (pickle) that
     * changes it. */
    PyObject *items = is_tuple ? Py_NewRef(args) : PyDict_Items(args);
    if (items == NULL) {
        return -1;
    }
    Py_ssize_t n = is_tuple ? PyTuple_GET_SIZE(items) : PyList_GET_SIZE(items);
    PyObject *copy = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = is_tuple ? PyTuple_GET_ITEM(items, i)
                                  : PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
        if (!candidate(item)) {
            continue;
        }
        PyObject *rep = NULL;
        if (depth == 0 && PyTuple_CheckExact(item) && cached(a, item) == NULL) {
            if (substitute(st, a, item, 1, &rep) < 0) {
                goto error;
            }
        }
        if (rep == NULL) {
            rep = stand_in_for(st, a, item);
            if (rep == NULL) {
                if (PyErr_Occurred()) {
                    goto error;
                }
                continue;
            }
        }
        if (copy == NULL) {
            copy = is_tuple ? PyTuple_New(n) : PyDict_Copy(args);
            if (copy == NULL) {
                Py_DECREF(rep);
                goto error;
            }
            for (Py_ssize_t j = 0; is_tuple && j < n; j++) {
                PyTuple_SET_ITEM(copy, j, Py_NewRef(PyTuple_GET_ITEM(items, j)));
            }
        }
        if (is_tuple) {
            Py_DECREF(PyTuple_GET_ITEM(copy, i));
            PyTuple_SET_ITEM(copy, i, rep);
        }
        else {
            int rc = PyDict_SetItem(copy, PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0), rep);
            Py_DECREF(rep);
            if (rc < 0) {
                goto error;
            }
        }
    }
    Py_DECREF(items);
    *out = copy;
    return copy != NULL;
error:
    Py_XDECREF(copy);
    Py_DECREF(items);
    return -1;
}

/* Substitute into `args`: 1 with a new container in *out, 0 when nothing
 * is replaced, -1 with an exception. */
static int
auto_share_substitute(ip_state *st, struct auto_share *a, PyObject *args, PyObject **out)
{
    *out = NULL;
    int is_tuple = PyTuple_CheckExact(args);
    if (!is_tuple && !PyDict_CheckExact(args)) {
        return 0;
    }
    /* Fast path: most calls have no argument of a candidate type. */
    Py_ssize_t pos = 0, n = is_tuple ? PyTuple_GET_SIZE(args) : 0;
    PyObject *key, *value;
    int any = 0;
    if (is_tuple) {
        for (Py_ssize_t i = 0; !any && i < n; i++) {
            any = candidate(PyTuple_GET_ITEM(args, i));
        }
    }
    else {
        while (!any && PyDict_Next(args, &pos, &key, &value)) {
            any = candidate(value);
        }
    }
    if (!any) {
        return 0;
    }
    if (++a->call % SWEEP_EVERY == 0) {
        ip_auto_share_sweep(st);
    }
    return substitute(st, a, args, 0, out);
}

int
ip_auto_share_encode(ip_state *st, ip_buf *b, PyObject *args, int flags)
{
    struct auto_share *a = threshold() > 0 ? cache_of(st) : NULL;
    if (a == NULL) {
        return ip_encode(&st->codec, b, args, flags);
    }
    if (a->encoding++ == 0) {
        a->pin_from = a->call + 1;
    }
    PyObject *subst = NULL;
    int rc = auto_share_substitute(st, a, args, &subst);
    if (rc >= 0) {
        rc = ip_encode(&st->codec, b, rc ? subst : args, flags);
    }
    Py_XDECREF(subst);
    a->encoding--;
    return rc;
}

void
ip_auto_share_free(ip_state *st)
{
    struct auto_share *a = st->auto_share;
    if (a == NULL) {
        return;
    }
    while (a->n > 0) {
        drop(a, a->n - 1);
    }
    PyMem_RawFree(a);
    st->auto_share = NULL;
}

int
ip_auto_share_traverse(ip_state *st, visitproc visit, void *arg)
{
    struct auto_share *a = st->auto_share;
    if (a != NULL) {
        for (int i = 0; i < a->n; i++) {
            Py_VISIT(a->entries[i].obj);
        }
    }
    return 0;
}
