/* interpool's C core: declarations shared by the .c files.
 *
 * Ownership rule of the whole core: memory that crosses interpreters is raw
 * (PyMem_Raw*) and never holds a PyObject* that another interpreter touches.
 * A task carries an opaque "owner" pointer that only the submitting
 * interpreter dereferences.
 */
#ifndef INTERPOOL_CORE_H
#define INTERPOOL_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* ---------------------------------------------------------------- buffers */

/* A raw, refcounted object that a payload keeps alive (a shared value, an
 * exported buffer, a SharedBuffer block, a queue).  A payload refers to
 * its pins by index, never by address, so no byte string can forge one. */
typedef struct ip_pin ip_pin;
struct ip_pin {
    atomic_long refcnt;
    int kind;                       /* enum ip_pin_kind */
    void (*destroy)(ip_pin *);      /* runs where the last reference goes */
};
enum ip_pin_kind { IP_PIN_SHARED = 1, IP_PIN_EXPORT, IP_PIN_BLOCK, IP_PIN_QUEUE };

typedef struct {
    ip_pin **items;
    Py_ssize_t n, cap;
} ip_pins;

void ip_pin_incref(ip_pin *pin);
void ip_pin_decref(ip_pin *pin);
Py_ssize_t ip_pins_add(ip_pins *pins, ip_pin *pin);   /* increfs; index or -1 */
void ip_pins_clear(ip_pins *pins);

/* A growable byte buffer in raw (process-global) memory, with the pins its
 * bytes refer to. */
typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    ip_pins pins;
} ip_buf;

int ip_buf_reserve(ip_buf *b, Py_ssize_t extra);   /* -1: out of memory (no exception) */
int ip_buf_append(ip_buf *b, const void *p, Py_ssize_t n);
void ip_buf_free(ip_buf *b);

/* ----------------------------------------------------------- module state */

/* Counts the worker threads of the pools one interpreter created, so that
 * interpreter can wait for them at exit (raw and refcounted: workers may
 * outlive the module object that made it). */
typedef struct ip_owner {
    atomic_long refcnt;
    long live;               /* worker threads not yet exited (mu) */
    pthread_mutex_t mu;
    pthread_cond_t exited;
} ip_owner;

ip_owner *ip_owner_new(void);
void ip_owner_decref(ip_owner *o);

typedef struct {
    PyTypeObject *PoolType;        /* _core.PoolCore: owns the C pool */
    PyTypeObject *TaskType;        /* _core.TaskHandle: cancel a submitted task */
    PyTypeObject *SinkType;        /* _core.Completions: where results arrive */
    PyObject *pickle_dumps;        /* imported lazily */
    PyObject *pickle_loads;
    PyObject *support;             /* interpool._support, imported lazily */
    PyObject *codec_error;         /* interpool._core.CodecError (ValueError) */
    PyObject *str_done;            /* interned method names used when resolving */
    PyObject *str_set_result;
    PyObject *str_set_exception;
    /* data plane (data.c, channel.c) */
    PyTypeObject *SharedType;      /* _core.Shared: a value sent once per worker */
    PyTypeObject *SharedBufferType;
    PyTypeObject *BufferViewType;  /* exporter behind a worker's zero-copy memoryview */
    PyTypeObject *QueueType;
    PyTypeObject *WorkerContextType;   /* worker side: the pool, seen from a worker */
    PyTypeObject *WorkerTaskType;
    ip_owner *owner;               /* this interpreter's worker count */
    int is_worker;                 /* this interpreter is a pool worker */
    void *shared_cache;            /* this interpreter's copies of shared values */
    long shared_epoch_seen;
} ip_state;

/* How long a thread about to sleep first spins on an atomic (nanoseconds).
 * Short: on a small machine a spinning thread steals the core it waits for. */
extern long ip_spin_ns;
/* Monotonic clock in nanoseconds. */
int64_t ip_now_ns(void);
/* The CLOCK_MONOTONIC time `timeout` seconds from now, for timed condvar
 * waits (condvars here use CLOCK_MONOTONIC).  Returns 0 when timeout < 0
 * (wait forever), else 1. */
int ip_deadline(double timeout, struct timespec *ts);
/* Spin (no lock, no GIL needed) until *flag != 0 or ip_spin_ns pass. */
int ip_spin_while_zero(atomic_int *flag);

ip_state *ip_get_state(PyObject *module);
ip_state *ip_state_of_type(PyTypeObject *tp);
/* interpool._support.<name>, imported on first use; new reference. */
PyObject *ip_support_attr(ip_state *st, const char *name);

/* ------------------------------------------------------------------ codec */

/* Deepest container nesting the codec accepts (a clear error beyond). */
#define IP_MAX_DEPTH 200

/* Append obj's encoding to buf.  0 on success; -1 with an exception set:
 * TypeError naming the type for a value neither the codec nor pickle can
 * send, ValueError for nesting deeper than IP_MAX_DEPTH, MemoryError. */
int ip_encode(ip_state *st, ip_buf *buf, PyObject *obj);

/* Decode one value starting at data[*pos], advancing *pos.  New reference,
 * or NULL with an exception set (CodecError for malformed input: never a
 * crash, whatever the bytes). */
PyObject *ip_decode(ip_state *st, const char *data, Py_ssize_t len, Py_ssize_t *pos);

/* Decode a whole payload that must hold exactly one value. */
PyObject *ip_decode_all(ip_state *st, const char *data, Py_ssize_t len);

/* Encoding context of the current thread (thread-local): whether buffer
 * objects are shared zero-copy (task arguments, queue items) or copied. */
extern _Thread_local int ip_tls_share_buffers;
/* Pins of the payload being decoded by the current thread, or NULL. */
extern _Thread_local ip_pins *ip_tls_decode_pins;

/* Codec hooks for the data plane (data.c).  encode: 1 if obj was written
 * as a pinned handle, 0 if it is not one of those types, -1 on error. */
int ip_encode_pinned(ip_state *st, ip_buf *buf, PyObject *obj);
/* Decode the body of a 'H' value (after the tag). */
PyObject *ip_decode_pinned(ip_state *st, const char *data, Py_ssize_t len, Py_ssize_t *pos);
/* Decode all of buf with its pins in scope. */
PyObject *ip_decode_buf(ip_state *st, ip_buf *buf);

/* Python-visible helpers for tests: _core.encode(obj) -> bytes, _core.decode(bytes). */
PyObject *ip_codec_py_encode(PyObject *module, PyObject *obj);
PyObject *ip_codec_py_decode(PyObject *module, PyObject *data);

/* ------------------------------------------------------------ tasks */

typedef struct ip_sink ip_sink;
typedef struct ip_task ip_task;

/* IP_CANCELLED: dropped from the queue at shutdown. */
enum ip_status { IP_OK = 0, IP_ERROR = 1, IP_CANCELLED = 2, IP_BROKEN = 3 };
enum ip_task_state { IP_QUEUED = 0, IP_RUNNING = 1, IP_DONE = 2, IP_DROPPED = 3 };
enum ip_task_kind { IP_CALL = 0, IP_CHUNK = 1 };

/* One call in flight.  Created by the submitter; its "pipeline" reference
 * travels queue -> worker -> sink -> consumer, and a TaskHandle may hold
 * another.  It holds no PyObject: the sink's Completions object maps `seq`
 * to the future it resolves. */
struct ip_task {
    ip_task *prev, *next;     /* pool queue (pool mutex) */
    ip_task *done_next;       /* sink's done list (sink mutex) */
    atomic_int refcnt;
    atomic_int state;         /* enum ip_task_state */
    int kind;                 /* enum ip_task_kind */
    int status;               /* enum ip_status, set before delivery */
    uint32_t fn_id;
    ip_buf payload;           /* encoded args tuple, then kwargs dict or None */
    ip_buf result;            /* encoded result, or packed exception */
    ip_sink *sink;            /* strong */
    int64_t seq;              /* key of the owner in the Completions object */
    atomic_int cancel_requested;   /* the awaiter gave up while it ran */
    void *slot;               /* the worker running it (pool mutex) */
};

ip_task *ip_task_new(void);             /* refcnt 1; NULL on out of memory */
void ip_task_decref(ip_task *t);

/* ------------------------------------------------------------ sinks */

/* The Python side of a sink (type Completions), owned by the interpreter
 * that submits to it. */
typedef struct {
    PyObject_HEAD
    ip_sink *sink;
    PyObject *owners;         /* {seq: future} for tasks sent by submit() */
    int64_t next_seq;
    PyObject *on_cancelled;   /* callable(owner) for tasks dropped at shutdown */
} ip_completions;

/* The Completions object `obj` (borrowed), or NULL with a TypeError. */
ip_completions *ip_completions_check(ip_state *st, PyObject *obj);
/* Record `owner` as the future of a new task; its key goes in *seq. */
int ip_completions_bind(ip_completions *c, PyObject *owner, int64_t *seq);
/* Forget the owner of a task that will never be delivered. */
void ip_completions_unbind(ip_completions *c, int64_t seq);
void ip_sink_incref(ip_sink *s);
void ip_sink_decref(ip_sink *s);
/* Called by the submitter for every task it sends to this sink. */
void ip_sink_expect(ip_sink *s, Py_ssize_t n);
/* Hand a finished task (pipeline reference) to its sink.  Any thread, any
 * interpreter; makes no Python call. */
void ip_sink_push(ip_sink *s, ip_task *t);

/* --------------------------------------------------------- types (init) */

int ip_pool_module_init(PyObject *module, ip_state *st);
int ip_data_module_init(PyObject *module, ip_state *st);
int ip_channel_module_init(PyObject *module, ip_state *st);
int ip_worker_module_init(PyObject *module, ip_state *st);
void ip_data_state_free(ip_state *st);     /* drop this interpreter's cached copies */
int ip_data_traverse(ip_state *st, visitproc visit, void *arg);
/* Worker side: drop cached copies of released shared values, if any. */
void ip_shared_purge(ip_state *st);
/* Owner side: release exported buffers whose last view went elsewhere. */
void ip_release_deferred(void);
/* Process-wide counts of live data-plane objects, added to `counts`. */
int ip_data_counts(PyObject *counts);
/* Wake the idle workers of every pool in the process for upkeep. */
void ip_wake_all_pools(void);
/* Bumped whenever a shared value is released (workers then purge). */
extern atomic_long ip_shared_epoch;
int ip_sink_module_init(PyObject *module, ip_state *st);

#endif
