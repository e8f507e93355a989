/* The boundary where lower layers' result codes become Python exceptions
 * (the model: handle_queue_error in CPython's _interpqueuesmodule.c). */
#include "module/state.h"

#include <errno.h>

/* queue.Empty or queue.Full (through the hooks: `queue` is imported only
 * by programs that use a Queue). */
static void
raise_queue_error(ip_state *st, const char *name)
{
    PyObject *arg = PyUnicode_FromString(name);
    PyObject *cls = arg ? ip_hook_call1(st, IP_HOOK_QUEUE_ERROR, arg) : NULL;
    Py_XDECREF(arg);
    if (cls != NULL) {
        PyErr_SetNone(cls);
        Py_DECREF(cls);
    }
}

/* Raise the exception `hook` makes from `arg`. */
static void
raise_made(ip_state *st, ip_hook_id hook, const char *arg)
{
    PyObject *a = PyUnicode_FromString(arg);
    PyObject *exc = a ? ip_hook_call1(st, hook, a) : NULL;
    Py_XDECREF(a);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

PyObject *
ip_raise(ip_state *st, int code)
{
    switch (code) {
    case IP_ERR_NOMEM:
        return PyErr_NoMemory();
    case IP_ERR_TIMEOUT:
        PyErr_SetNone(PyExc_TimeoutError);
        break;
    case IP_ERR_INTERRUPTED:
        if (!PyErr_Occurred()) {   /* the check always sets one; be safe */
            PyErr_SetNone(PyExc_KeyboardInterrupt);
        }
        break;
    case IP_ERR_STOPPED:
        raise_made(st, IP_HOOK_STOP_ERROR, "refused");   /* one message, in _errors.py */
        break;
    case IP_ERR_BROKEN:
        PyErr_SetString(PyExc_RuntimeError, "interpool: the pool is broken");
        break;
    case IP_ERR_EMPTY:
        raise_queue_error(st, "Empty");
        break;
    case IP_ERR_FULL:
        raise_queue_error(st, "Full");
        break;
    case IP_ERR_OS:
        return PyErr_SetFromErrno(PyExc_OSError);
    case IP_ERR_STARTED:
        PyErr_SetString(PyExc_RuntimeError, "the pool has already started");
        break;
    case IP_ERR_TAKEN:
        PyErr_SetString(st->task_interrupted,
                        "the call ran past its stop and was taken over (its result is discarded)");
        break;
    default:
        PyErr_Format(PyExc_SystemError, "interpool: unexpected result code %d", code);
        break;
    }
    return NULL;
}

int
ip_raise_int(ip_state *st, int code)
{
    (void)ip_raise(st, code);
    return -1;
}

PyObject *
ip_raise_refused(ip_state *st, ip_pool *p)
{
    ip_buf msg = {0};
    int broken = ip_pool_broken_message(p, &msg);
    if (broken < 0) {
        return ip_raise(st, broken);
    }
    if (!broken) {
        return ip_raise(st, IP_ERR_STOPPED);
    }
    PyObject *text = PyUnicode_DecodeUTF8(msg.data, msg.len, "replace");
    ip_buf_free(&msg);
    PyObject *exc = text ? ip_hook_call1(st, IP_HOOK_BROKEN_ERROR, text) : NULL;
    Py_XDECREF(text);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}
