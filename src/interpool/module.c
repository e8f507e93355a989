/* The _core extension module: state, exec, and the Python-visible entry points.
 *
 * The module is imported in the main interpreter and inside every worker
 * interpreter (own GIL, own obmalloc), so it keeps all its objects in module
 * state and heap types, and declares per-interpreter-GIL support.
 */
#include "_core.h"

#include <stdlib.h>
#include <time.h>

ip_state *
ip_get_state(PyObject *module)
{
    return (ip_state *)PyModule_GetState(module);
}

static struct PyModuleDef ip_module_def;

ip_state *
ip_state_of_type(PyTypeObject *tp)
{
    PyObject *mod = PyType_GetModuleByDef(tp, &ip_module_def);
    if (mod == NULL) {
        return NULL;
    }
    return ip_get_state(mod);
}

PyObject *
ip_support_attr(ip_state *st, const char *name)
{
    if (st->support == NULL) {
        st->support = PyImport_ImportModule("interpool._support");
        if (st->support == NULL) {
            return NULL;
        }
    }
    return PyObject_GetAttrString(st->support, name);
}

long ip_spin_ns = 50000;   /* INTERPOOL_SPIN_US overrides */

int64_t
ip_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int
ip_deadline(double timeout, struct timespec *ts)
{
    if (timeout < 0) {
        return 0;
    }
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)timeout;
    ts->tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
    return 1;
}

int
ip_spin_while_zero(atomic_int *flag)
{
    if (atomic_load_explicit(flag, memory_order_acquire)) {
        return 1;
    }
    if (ip_spin_ns <= 0) {
        return 0;
    }
    int64_t deadline = ip_now_ns() + ip_spin_ns;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(flag, memory_order_acquire)) {
                return 1;
            }
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ __volatile__("yield");
#endif
        }
        if (ip_now_ns() >= deadline) {
            return 0;
        }
    }
}

PyDoc_STRVAR(encode_doc,
"encode($module, value, /)\n--\n\n"
"Encode value with interpool's codec (for tests and tools).");

PyDoc_STRVAR(decode_doc,
"decode($module, data, /)\n--\n\n"
"Decode bytes made by encode() (for tests and tools).");

static PyMethodDef ip_methods[] = {
    {"encode", (PyCFunction)ip_codec_py_encode, METH_O, encode_doc},
    {"decode", (PyCFunction)ip_codec_py_decode, METH_O, decode_doc},
    {NULL, NULL, 0, NULL},
};

static int
ip_exec(PyObject *module)
{
    ip_state *st = ip_get_state(module);
    st->owner = ip_owner_new();
    if (st->owner == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    const char *spin = getenv("INTERPOOL_SPIN_US");
    if (spin != NULL && *spin) {
        ip_spin_ns = atol(spin) * 1000;
    }
    st->codec_error = PyErr_NewExceptionWithDoc(
        "interpool._core.CodecError",
        "A payload could not be decoded (corrupt or truncated bytes).",
        PyExc_ValueError, NULL);
    if (st->codec_error == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "CodecError", st->codec_error) < 0) {
        return -1;
    }
    st->str_done = PyUnicode_InternFromString("done");
    st->str_set_result = PyUnicode_InternFromString("set_result");
    st->str_set_exception = PyUnicode_InternFromString("set_exception");
    if (!st->str_done || !st->str_set_result || !st->str_set_exception) {
        return -1;
    }
    if (PyModule_AddIntConstant(module, "MAX_DEPTH", IP_MAX_DEPTH) < 0) {
        return -1;
    }
    if (ip_sink_module_init(module, st) < 0) {
        return -1;
    }
    if (ip_pool_module_init(module, st) < 0) {
        return -1;
    }
    if (ip_data_module_init(module, st) < 0) {
        return -1;
    }
    if (ip_channel_module_init(module, st) < 0) {
        return -1;
    }
    if (ip_worker_module_init(module, st) < 0) {
        return -1;
    }
    return 0;
}

static int
ip_traverse(PyObject *module, visitproc visit, void *arg)
{
    ip_state *st = ip_get_state(module);
    Py_VISIT(st->PoolType);
    Py_VISIT(st->TaskType);
    Py_VISIT(st->SinkType);
    Py_VISIT(st->pickle_dumps);
    Py_VISIT(st->pickle_loads);
    Py_VISIT(st->support);
    Py_VISIT(st->codec_error);
    Py_VISIT(st->str_done);
    Py_VISIT(st->str_set_result);
    Py_VISIT(st->str_set_exception);
    Py_VISIT(st->SharedType);
    Py_VISIT(st->SharedBufferType);
    Py_VISIT(st->BufferViewType);
    Py_VISIT(st->QueueType);
    Py_VISIT(st->WorkerContextType);
    Py_VISIT(st->WorkerTaskType);
    return ip_data_traverse(st, visit, arg);
}

static int
ip_clear(PyObject *module)
{
    ip_state *st = ip_get_state(module);
    Py_CLEAR(st->PoolType);
    Py_CLEAR(st->TaskType);
    Py_CLEAR(st->SinkType);
    Py_CLEAR(st->pickle_dumps);
    Py_CLEAR(st->pickle_loads);
    Py_CLEAR(st->support);
    Py_CLEAR(st->codec_error);
    Py_CLEAR(st->str_done);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_set_exception);
    ip_data_state_free(st);
    Py_CLEAR(st->SharedType);
    Py_CLEAR(st->SharedBufferType);
    Py_CLEAR(st->BufferViewType);
    Py_CLEAR(st->QueueType);
    Py_CLEAR(st->WorkerContextType);
    Py_CLEAR(st->WorkerTaskType);
    return 0;
}

static void
ip_free(void *module)
{
    ip_state *st = ip_get_state((PyObject *)module);
    ip_release_deferred();   /* this interpreter's buffers, while it can */
    (void)ip_clear((PyObject *)module);
    if (st->owner != NULL) {
        ip_owner_decref(st->owner);
        st->owner = NULL;
    }
}

static PyModuleDef_Slot ip_slots[] = {
    {Py_mod_exec, ip_exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {0, NULL},
};

PyDoc_STRVAR(module_doc,
"interpool's C core: worker interpreters, raw-memory queues, the value codec.");

static struct PyModuleDef ip_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "interpool._core",
    .m_doc = module_doc,
    .m_size = sizeof(ip_state),
    .m_methods = ip_methods,
    .m_slots = ip_slots,
    .m_traverse = ip_traverse,
    .m_clear = ip_clear,
    .m_free = ip_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&ip_module_def);
}
