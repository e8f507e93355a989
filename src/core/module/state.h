/* The module layer's state (ip_state) and the functions its files share.
 *
 * The module layer is interpool._core as Python sees it.
 * The only layer that calls interpool's Python code (through the hooks
 * table, filled once when the module is executed in an interpreter) and
 * turns the lower layers' result codes into Python exceptions (errors.c).
 * The module is imported in the main interpreter and inside every worker
 * interpreter (own GIL, own obmalloc), so it keeps all its objects in
 * module state and heap types, and declares per-interpreter-GIL support.
 */
#ifndef IP_MODULE_STATE_H
#define IP_MODULE_STATE_H

#include "codec/codec.h"
#include "data/block.h"
#include "data/channel.h"
#include "data/export.h"
#include "data/shared.h"
#include "runtime/worker.h"

/* The Python functions the core calls: interpool._hooks.<name>.  Same
 * order as ip_hook_names in hooks.c. */
typedef enum ip_hook_id {
    IP_HOOK_LOAD_CALLABLE,    /* worker: (ref) -> the callable */
    IP_HOOK_WORKER_SETUP,     /* worker: (config, index), first thing */
    IP_HOOK_WORKER_EXIT,      /* worker: (), before its interpreter ends */
    IP_HOOK_RUN_COROUTINE,    /* worker: (context, task or None, coro) -> result */
    IP_HOOK_SERVE,            /* worker: (context), the event loop (concurrency > 1) */
    IP_HOOK_PACK_EXCEPTION,   /* worker: (exc) -> a codec value */
    IP_HOOK_FORMAT_EXCEPTION, /* worker: (exc) -> str with its traceback */
    IP_HOOK_UNPACK_EXCEPTION, /* caller: (packed) -> exc */
    IP_HOOK_BROKEN_ERROR,     /* caller: (message) -> BrokenPool */
    IP_HOOK_STOP_ERROR,       /* caller: (why) -> the exception of work a stop ended */
    IP_HOOK_QUEUE_ERROR,      /* either: ("Empty" | "Full") -> queue.Empty | queue.Full */
    IP_HOOK_QUEUE_TYPE,       /* either: () -> interpool.Queue */
    IP_HOOK_FLUSH_OUTPUT,     /* worker: () before a result is delivered, if output_pending */
    IP_HOOK_DRAIN_OUTPUT,     /* caller: () before finished tasks are resolved, if drain_output */
    IP_HOOK_PICKLER,          /* either: () -> (dumps, loads) for the codec */
    IP_HOOK_COUNT
} ip_hook_id;

typedef struct shared_cache shared_cache;
struct auto_share;

typedef struct ip_state {
    ip_codec codec;                 /* CodecError, pickle, the pin kinds */
    PyObject *hooks[IP_HOOK_COUNT];
    PyTypeObject *PoolType;         /* PoolCore: owns a raw pool */
    PyTypeObject *TaskType;         /* TaskHandle: cancel a submitted task */
    PyTypeObject *CompletionsType;  /* Completions: where results arrive */
    PyTypeObject *SharedType;       /* Shared: a value sent once per worker */
    PyTypeObject *SharedBufferType;
    PyTypeObject *BufferViewType;   /* exporter behind a worker's zero-copy memoryview */
    PyTypeObject *QueueType;
    PyTypeObject *WorkerContextType;    /* worker side: the pool, seen from a worker */
    PyTypeObject *WorkerTaskType;
    PyObject *str_done;             /* interned method names used when resolving */
    PyObject *str_set_result;
    PyObject *str_set_exception;
    PyObject *str_cond;             /* a lean future's attributes (completions_type.c) */
    PyObject *str_result;
    PyObject *str_exception;
    PyObject *str_state;
    PyObject *task_interrupted;     /* TaskInterrupted (BaseException) */
    unsigned long main_thread_ident;    /* main interpreter: its main thread; else 0 */
    ip_owner *owner;                /* this interpreter's worker count */
    int is_worker;                  /* this interpreter is a pool worker */
    shared_cache *shared_cache;     /* this interpreter's copies of shared values */
    struct auto_share *auto_share;  /* large immutable arguments sent as shared values */
    long shared_epoch_seen;
    int output_pending;             /* worker: forwarded output waits for the end of a line */
    int drain_output;               /* caller: workers forward output here (drain before resolving) */
    PyObject *output_queue;         /* caller: the Queue they forward it on (or NULL) */
    int output_writing;             /* caller: the writer thread may hold an item it took
                                     * (set and read under this interpreter's GIL) */
} ip_state;

/* ----------------------------------------------------------------- state.c */

void ip_state_set_def(PyModuleDef *def);
ip_state *ip_state_of_module(PyObject *module);
/* The state of the module that defined `tp` (NULL with an exception). */
ip_state *ip_state_of_type(PyTypeObject *tp);

/* ----------------------------------------------------------------- hooks.c */

int ip_hooks_load(ip_state *st);
/* hooks[id](*args): new reference or NULL with an exception set. */
PyObject *ip_hook_call(ip_state *st, ip_hook_id id, PyObject *const *args, size_t nargs);
PyObject *ip_hook_call1(ip_state *st, ip_hook_id id, PyObject *arg);
/* The codec's load_pickle: its pickle functions from hook `pickler`. */
int ip_hooks_load_pickle(ip_codec *c);
/* Call the no-argument hook `id` around whatever exception is set (kept);
 * a failure of the hook itself is reported as unraisable. */
void ip_hook_notify(ip_state *st, ip_hook_id id);

/* ---------------------------------------------------------------- errors.c */

/* Set the exception for a lower layer's result code; always NULL (or -1
 * from ip_raise_int).  IP_ERR_INTERRUPTED keeps the exception the
 * interrupt check set. */
PyObject *ip_raise(ip_state *st, int code);
int ip_raise_int(ip_state *st, int code);
/* The error a stopped or broken pool gives a submitter. */
PyObject *ip_raise_refused(ip_state *st, ip_pool *p);

/* ------------------------------------------------------------------ args.c */

/* TypeError unless min <= nargs <= max. */
int ip_check_nargs(const char *fname, Py_ssize_t nargs, Py_ssize_t min, Py_ssize_t max);
/* A timeout argument (`name` for messages): None (or absent: obj NULL) is
 * -1, no limit; else a number of seconds.  TypeError for a non-number,
 * ValueError for NaN or a negative number, OverflowError past
 * threading.TIMEOUT_MAX (as the stdlib's waits). */
int ip_arg_timeout(PyObject *obj, const char *name, double *seconds);
/* ip_arg_timeout("timeout") as a deadline. */
int ip_arg_deadline(PyObject *obj, ip_deadline *deadline);

/* How often a blocking wait of the main thread runs signal handlers. */
#define IP_SIGNAL_SLICE_NS 20000000LL   /* 20 ms */

typedef struct ip_signal_check {
    ip_interrupt base;
    PyThreadState *ts;
} ip_signal_check;

/* The interrupt check for a blocking wait about to be made by this thread
 * (call with its thread state attached; `chk` must outlive the wait): on
 * the main thread of the main interpreter, the wait runs pending signal
 * handlers and ends with their exception (KeyboardInterrupt); elsewhere
 * NULL (signal handlers run only there). */
const ip_interrupt *ip_caller_interrupt(ip_state *st, ip_signal_check *chk);

/* ---------------------------------------------------- type modules (init) */

int ip_pool_type_init(PyObject *module, ip_state *st);
int ip_completions_type_init(PyObject *module, ip_state *st);
int ip_worker_types_init(PyObject *module, ip_state *st);
int ip_shared_type_init(PyObject *module, ip_state *st);
int ip_buffer_types_init(PyObject *module, ip_state *st);
int ip_queue_type_init(PyObject *module, ip_state *st);
/* Items in a Queue object now. */
Py_ssize_t ip_queue_size(PyObject *queue);

/* ------------------------------------------------------ completions_type.c */

/* The raw completions of a Completions object (TypeError if obj is not one). */
ip_completions *ip_completions_raw(ip_state *st, PyObject *obj);
/* Record `owner` (a future) for a new task; its key goes in *seq. */
int ip_completions_bind(PyObject *completions, PyObject *owner, int64_t *seq);
/* Forget the owner of a task that will never be delivered. */
void ip_completions_unbind(PyObject *completions, int64_t seq);

/* ------------------------------------------------------------ shared_type.c */

/* Worker upkeep: drop cached copies of released shared values. */
void ip_shared_purge(ip_state *st);
void ip_shared_cache_free(ip_state *st);
int ip_shared_cache_traverse(ip_state *st, visitproc visit, void *arg);
/* A Shared handle that stands in for sv in one encoding: it takes a pin
 * reference but never releases the value (auto-share owns it). */
PyObject *ip_shared_stand_in(ip_state *st, ip_shared *sv);
extern atomic_long ip_live_shared_copies;

/* ------------------------------------------------------------ auto_share.c */

/* Encode a call's top-level arguments (a tuple, or a dict's values) as
 * one value, each large (INTERPOOL_AUTO_SHARE_BYTES, default 4 KiB
 * encoded), deeply immutable value sent again as the same object replaced
 * by a stand-in for its shared value (encoded once, decoded once per
 * worker).  0, or -1 with an exception. */
int ip_auto_share_encode(ip_state *st, ip_buf *b, PyObject *args, int flags);
/* Release the entries whose object only the cache still holds. */
void ip_auto_share_sweep(ip_state *st);
void ip_auto_share_free(ip_state *st);
int ip_auto_share_traverse(ip_state *st, visitproc visit, void *arg);
extern atomic_long ip_live_auto_shared;

/* ------------------------------------------------------------ pool_type.c */

/* Encode a call's payload: the args tuple (or, for a chunk, a list of
 * args tuples), then the kwargs dict or None; each through
 * ip_auto_share_encode, and each as one value (one memo scope: an
 * object passed as two arguments arrives as one object). */
int ip_encode_call(ip_state *st, ip_buf *b, PyObject *args, PyObject *kwargs);

/* ------------------------------------------------------------ worker_ops.c */

/* What workers do in their interpreters. */
extern const ip_worker_ops ip_python_worker_ops;

#endif
