/* The _core extension module: state, exec, and its own functions. */
#include "module/state.h"

#include "data/defs.h"

PyDoc_STRVAR(encode_doc,
"encode($module, value, /)\n--\n\n"
"Encode value with interpool's codec (for tests and tools).");

static PyObject *
codec_encode(PyObject *module, PyObject *obj)
{
    ip_state *st = ip_state_of_module(module);
    ip_buf b = {0};
    PyObject *res = NULL;
    if (ip_encode(&st->codec, &b, obj, 0) == 0) {
        res = PyBytes_FromStringAndSize(b.data, b.len);
    }
    ip_buf_free(&b);
    return res;
}

PyDoc_STRVAR(decode_doc,
"decode($module, data, /)\n--\n\n"
"Decode bytes made by encode() (for tests and tools).");

static PyObject *
codec_decode(PyObject *module, PyObject *data)
{
    ip_state *st = ip_state_of_module(module);
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *res = ip_decode_all(&st->codec, view.buf, view.len, NULL);
    PyBuffer_Release(&view);
    return res;
}

PyDoc_STRVAR(set_output_pending_doc,
"_set_output_pending($module, on, /)\n--\n\n"
"Worker side: forwarded output waits for the end of a line, so call the\n"
"flush_output hook before delivering the next result.");

/* Set one of the module state's output flags from a truth value. */
static PyObject *
set_flag(int *flag, PyObject *on)
{
    int value = PyObject_IsTrue(on);
    if (value < 0) {
        return NULL;
    }
    *flag = value;
    Py_RETURN_NONE;
}

static PyObject *
set_output_pending(PyObject *module, PyObject *on)
{
    return set_flag(&ip_state_of_module(module)->output_pending, on);
}

PyDoc_STRVAR(set_output_drain_doc,
"_set_output_drain($module, queue, /)\n--\n\n"
"Caller side: workers forward output to this interpreter on `queue` (a\n"
"Queue; None: they do not), so call the drain_output hook before\n"
"resolving finished tasks, unless nothing is on it or being written.");

static PyObject *
set_output_drain(PyObject *module, PyObject *queue)
{
    ip_state *st = ip_state_of_module(module);
    if (queue != Py_None && !PyObject_TypeCheck(queue, st->QueueType)) {
        PyErr_Format(PyExc_TypeError, "expected a Queue or None, got %T", queue);
        return NULL;
    }
    Py_XSETREF(st->output_queue, queue == Py_None ? NULL : Py_NewRef(queue));
    st->drain_output = queue != Py_None;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(output_writing_doc,
"_output_writing($module, on, /)\n--\n\n"
"Caller side: the output writer thread is (True) or is no longer (False)\n"
"taking items off the forwarding queue: while it is, results wait for it\n"
"(the drain_output hook) even when the queue looks empty.");

static PyObject *
output_writing(PyObject *module, PyObject *on)
{
    return set_flag(&ip_state_of_module(module)->output_writing, on);
}

PyDoc_STRVAR(put_definition_doc,
"put_definition($module, uid, data, /)\n--\n\n"
"Store the by-value definition `data` (bytes) under `uid` (bytes) for every\n"
"interpreter of the process (kept as it is first stored; for the process's life).");

static PyObject *
put_definition(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (ip_check_nargs("put_definition", nargs, 2, 2) < 0) {
        return NULL;
    }
    if (!PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "put_definition() takes two bytes objects");
        return NULL;
    }
    if (PyBytes_GET_SIZE(args[0]) > IP_DEF_UID_MAX) {
        PyErr_Format(PyExc_ValueError, "a definition's uid has at most %d bytes", IP_DEF_UID_MAX);
        return NULL;
    }
    ip_err rc = ip_defs_put(PyBytes_AS_STRING(args[0]), (size_t)PyBytes_GET_SIZE(args[0]),
                            PyBytes_AS_STRING(args[1]), (size_t)PyBytes_GET_SIZE(args[1]));
    if (rc != IP_OK) {
        return ip_raise(ip_state_of_module(module), rc);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_definition_doc,
"get_definition($module, uid, /)\n--\n\n"
"The definition stored under `uid` (bytes), or None.");

static PyObject *
get_definition(PyObject *Py_UNUSED(module), PyObject *uid)
{
    if (!PyBytes_Check(uid)) {
        PyErr_SetString(PyExc_TypeError, "get_definition() takes a bytes uid");
        return NULL;
    }
    size_t len;
    const char *data = ip_defs_get(PyBytes_AS_STRING(uid), (size_t)PyBytes_GET_SIZE(uid), &len);
    if (data == NULL) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
}

static PyMethodDef ip_methods[] = {
    {"put_definition", (PyCFunction)(void (*)(void))put_definition, METH_FASTCALL,
     put_definition_doc},
    {"get_definition", get_definition, METH_O, get_definition_doc},
    {"encode", codec_encode, METH_O, encode_doc},
    {"decode", codec_decode, METH_O, decode_doc},
    {"_set_output_pending", set_output_pending, METH_O, set_output_pending_doc},
    {"_set_output_drain", set_output_drain, METH_O, set_output_drain_doc},
    {"_output_writing", output_writing, METH_O, output_writing_doc},
    {NULL, NULL, 0, NULL},
};

/* The main interpreter's main thread: the only one whose waits run
 * signal handlers. */
static int
set_main_thread(ip_state *st)
{
    PyObject *threading = PyImport_ImportModule("threading");
    PyObject *main = threading ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
    PyObject *ident = main ? PyObject_GetAttrString(main, "ident") : NULL;
    Py_XDECREF(threading);
    Py_XDECREF(main);
    if (ident == NULL) {
        return -1;
    }
    st->main_thread_ident = PyLong_AsUnsignedLong(ident);
    Py_DECREF(ident);
    return PyErr_Occurred() ? -1 : 0;
}

static int
ip_exec(PyObject *module)
{
    ip_state *st = ip_state_of_module(module);
    ip_clock_init();
    st->owner = ip_owner_new();
    if (st->owner == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *codec_error = PyErr_NewExceptionWithDoc(
        "interpool._core.CodecError",
        "A payload could not be decoded (corrupt or truncated bytes).", PyExc_ValueError, NULL);
    if (codec_error == NULL) {
        return -1;
    }
    ip_codec_init(&st->codec, codec_error, st);
    st->codec.load_pickle = ip_hooks_load_pickle;
    Py_DECREF(codec_error);
    if (PyModule_AddObjectRef(module, "CodecError", st->codec.error) < 0 ||
        PyModule_AddIntConstant(module, "MAX_DEPTH", IP_MAX_DEPTH) < 0) {
        return -1;
    }
    /* A BaseException: `except Exception:` in a task does not swallow it,
     * while finally blocks and context managers still run. */
    st->task_interrupted = PyErr_NewExceptionWithDoc(
        "interpool.TaskInterrupted",
        "Raised inside a running task that is being stopped (a timeout,\n"
        "cancel(interrupt=True), an interrupting shutdown or Ctrl-C).",
        PyExc_BaseException, NULL);
    if (st->task_interrupted == NULL ||
        PyModule_AddObjectRef(module, "TaskInterrupted", st->task_interrupted) < 0) {
        return -1;
    }
    if (PyInterpreterState_Get() == PyInterpreterState_Main() && set_main_thread(st) < 0) {
        return -1;
    }
    st->str_done = PyUnicode_InternFromString("done");
    st->str_set_result = PyUnicode_InternFromString("set_result");
    st->str_set_exception = PyUnicode_InternFromString("set_exception");
    st->str_cond = PyUnicode_InternFromString("_cond");
    st->str_result = PyUnicode_InternFromString("_result");
    st->str_exception = PyUnicode_InternFromString("_exception");
    st->str_state = PyUnicode_InternFromString("_state");
    if (!st->str_done || !st->str_set_result || !st->str_set_exception || !st->str_cond ||
        !st->str_result || !st->str_exception || !st->str_state) {
        return -1;
    }
    /* The pin kinds register with the codec in this order: the encoder
     * tries them in turn (a SharedBuffer before any buffer). */
    if (ip_completions_type_init(module, st) < 0 || ip_pool_type_init(module, st) < 0 ||
        ip_shared_type_init(module, st) < 0 || ip_buffer_types_init(module, st) < 0 ||
        ip_queue_type_init(module, st) < 0 || ip_worker_types_init(module, st) < 0) {
        return -1;
    }
    return ip_hooks_load(st);
}

/* traverse and clear list the state's fields in the same order. */
static int
ip_traverse(PyObject *module, visitproc visit, void *arg)
{
    ip_state *st = ip_state_of_module(module);
    if (ip_codec_traverse(&st->codec, visit, arg) < 0) {
        return -1;
    }
    for (int i = 0; i < IP_HOOK_COUNT; i++) {
        Py_VISIT(st->hooks[i]);
    }
    Py_VISIT(st->PoolType);
    Py_VISIT(st->TaskType);
    Py_VISIT(st->CompletionsType);
    Py_VISIT(st->SharedType);
    Py_VISIT(st->SharedBufferType);
    Py_VISIT(st->BufferViewType);
    Py_VISIT(st->QueueType);
    Py_VISIT(st->WorkerContextType);
    Py_VISIT(st->WorkerTaskType);
    Py_VISIT(st->str_done);
    Py_VISIT(st->str_set_result);
    Py_VISIT(st->str_set_exception);
    Py_VISIT(st->str_cond);
    Py_VISIT(st->str_result);
    Py_VISIT(st->str_exception);
    Py_VISIT(st->str_state);
    Py_VISIT(st->task_interrupted);
    Py_VISIT(st->output_queue);
    if (ip_auto_share_traverse(st, visit, arg) < 0) {
        return -1;
    }
    return ip_shared_cache_traverse(st, visit, arg);
}

static int
ip_clear(PyObject *module)
{
    ip_state *st = ip_state_of_module(module);
    ip_codec_clear(&st->codec);
    for (int i = 0; i < IP_HOOK_COUNT; i++) {
        Py_CLEAR(st->hooks[i]);
    }
    Py_CLEAR(st->PoolType);
    Py_CLEAR(st->TaskType);
    Py_CLEAR(st->CompletionsType);
    Py_CLEAR(st->SharedType);
    Py_CLEAR(st->SharedBufferType);
    Py_CLEAR(st->BufferViewType);
    Py_CLEAR(st->QueueType);
    Py_CLEAR(st->WorkerContextType);
    Py_CLEAR(st->WorkerTaskType);
    Py_CLEAR(st->str_done);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_set_exception);
    Py_CLEAR(st->str_cond);
    Py_CLEAR(st->str_result);
    Py_CLEAR(st->str_exception);
    Py_CLEAR(st->str_state);
    Py_CLEAR(st->task_interrupted);
    Py_CLEAR(st->output_queue);
    ip_auto_share_free(st);
    ip_shared_cache_free(st);
    return 0;
}

static void
ip_free(void *module)
{
    ip_state *st = ip_state_of_module((PyObject *)module);
    ip_pins_release_deferred();   /* this interpreter's buffers, while it can */
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
    ip_state_set_def(&ip_module_def);
    return PyModuleDef_Init(&ip_module_def);
}
