/* Arguments shared by the methods (counts, timeouts), and the interrupt
 * check of the caller's blocking waits. */
#include "module/state.h"

#include <math.h>

int
ip_check_nargs(const char *fname, Py_ssize_t nargs, Py_ssize_t min, Py_ssize_t max)
{
    if (nargs >= min && nargs <= max) {
        return 0;
    }
    if (min == max) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd argument%s (%zd given)", fname,
                     min, min == 1 ? "" : "s", nargs);
    }
    else if (nargs < min) {
        PyErr_Format(PyExc_TypeError, "%s() takes at least %zd argument%s (%zd given)", fname,
                     min, min == 1 ? "" : "s", nargs);
    }
    else {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd argument%s (%zd given)", fname,
                     max, max == 1 ? "" : "s", nargs);
    }
    return -1;
}

int
ip_arg_timeout(PyObject *obj, const char *name, double *seconds)
{
    if (obj == NULL || obj == Py_None) {
        *seconds = -1;   /* no limit */
        return 0;
    }
    if (PyBool_Check(obj) || !(PyFloat_Check(obj) || PyLong_Check(obj) || PyIndex_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "%s must be a number of seconds or None, not %T", name, obj);
        return -1;
    }
    double t = PyFloat_AsDouble(obj);
    if (t == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(t)) {
        PyErr_Format(PyExc_ValueError, "%s must not be NaN", name);
        return -1;
    }
    if (t < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a non-negative number", name);
        return -1;
    }
    /* The limit of threading's waits (threading.TIMEOUT_MAX). */
    if (t > (double)PY_TIMEOUT_MAX / 1e6) {
        PyErr_Format(PyExc_OverflowError, "%s value is too large", name);
        return -1;
    }
    *seconds = t;
    return 0;
}

int
ip_arg_deadline(PyObject *obj, ip_deadline *deadline)
{
    double seconds;
    if (ip_arg_timeout(obj, "timeout", &seconds) < 0) {
        return -1;
    }
    ip_deadline_in(deadline, seconds);
    return 0;
}

/* ------------------------------------------------------------ interrupts */

/* While a wait of the main thread sleeps (no thread state attached), run
 * pending signal handlers every slice; the exception one raises
 * (KeyboardInterrupt) ends the wait. */
static int
check_signals(void *arg)
{
    ip_signal_check *chk = arg;
    PyEval_RestoreThread(chk->ts);
    int rc = PyErr_CheckSignals();
    chk->ts = PyEval_SaveThread();
    return rc;
}

const ip_interrupt *
ip_caller_interrupt(ip_state *st, ip_signal_check *chk)
{
    /* Only the main thread of the main interpreter runs signal handlers;
     * other threads' waits need not wake. */
    if (st->main_thread_ident == 0 || PyThread_get_thread_ident() != st->main_thread_ident) {
        return NULL;
    }
    chk->ts = PyThreadState_Get();
    chk->base.check = check_signals;
    chk->base.arg = chk;
    chk->base.slice_ns = IP_SIGNAL_SLICE_NS;
    return &chk->base;
}
