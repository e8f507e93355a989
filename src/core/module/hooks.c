/* The hooks table: the Python functions the core calls, looked up once per
 * interpreter when the module is executed (interpool._hooks imports
 * nothing heavy at top level, so this costs a worker almost nothing). */
#include "module/state.h"

static const char *const ip_hook_names[IP_HOOK_COUNT] = {
    [IP_HOOK_LOAD_CALLABLE] = "load_callable",
    [IP_HOOK_WORKER_SETUP] = "worker_setup",
    [IP_HOOK_WORKER_EXIT] = "worker_exit",
    [IP_HOOK_RUN_COROUTINE] = "run_coroutine",
    [IP_HOOK_SERVE] = "serve",
    [IP_HOOK_PACK_EXCEPTION] = "pack_exception",
    [IP_HOOK_FORMAT_EXCEPTION] = "format_exception",
    [IP_HOOK_UNPACK_EXCEPTION] = "unpack_exception",
    [IP_HOOK_BROKEN_ERROR] = "broken_error",
    [IP_HOOK_STOP_ERROR] = "stop_error",
    [IP_HOOK_QUEUE_ERROR] = "queue_error",
    [IP_HOOK_QUEUE_TYPE] = "queue_type",
    [IP_HOOK_FLUSH_OUTPUT] = "flush_output",
    [IP_HOOK_DRAIN_OUTPUT] = "drain_output",
    [IP_HOOK_PICKLER] = "pickler",
};

int
ip_hooks_load(ip_state *st)
{
    PyObject *mod = PyImport_ImportModule("interpool._hooks");
    if (mod == NULL) {
        return -1;
    }
    for (int i = 0; i < IP_HOOK_COUNT; i++) {
        assert(ip_hook_names[i] != NULL);
        PyObject *fn = PyObject_GetAttrString(mod, ip_hook_names[i]);
        if (fn == NULL) {
            Py_DECREF(mod);
            return -1;
        }
        Py_XSETREF(st->hooks[i], fn);
    }
    Py_DECREF(mod);
    return 0;
}

PyObject *
ip_hook_call(ip_state *st, ip_hook_id id, PyObject *const *args, size_t nargs)
{
    assert(id >= 0 && id < IP_HOOK_COUNT);
    PyObject *fn = st->hooks[id];
    if (fn == NULL) {
        PyErr_Format(PyExc_RuntimeError, "interpool: hook %s is not loaded", ip_hook_names[id]);
        return NULL;
    }
    return PyObject_Vectorcall(fn, args, nargs, NULL);
}

PyObject *
ip_hook_call1(ip_state *st, ip_hook_id id, PyObject *arg)
{
    return ip_hook_call(st, id, &arg, 1);
}

int
ip_hooks_load_pickle(ip_codec *c)
{
    ip_state *st = c->owner;
    PyObject *pair = ip_hook_call(st, IP_HOOK_PICKLER, NULL, 0);
    if (pair == NULL) {
        return -1;
    }
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_Format(PyExc_TypeError, "interpool: hook pickler returned %T, not (dumps, loads)",
                     pair);
        Py_DECREF(pair);
        return -1;
    }
    Py_XSETREF(c->pickle_dumps, Py_NewRef(PyTuple_GET_ITEM(pair, 0)));
    Py_XSETREF(c->pickle_loads, Py_NewRef(PyTuple_GET_ITEM(pair, 1)));
    Py_DECREF(pair);
    return 0;
}

void
ip_hook_notify(ip_state *st, ip_hook_id id)
{
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *r = ip_hook_call(st, id, NULL, 0);
    if (r == NULL) {
        PyErr_WriteUnraisable(st->hooks[id]);
    }
    Py_XDECREF(r);
    PyErr_SetRaisedException(exc);
}
