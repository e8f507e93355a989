/* Base layer: what every other layer may use.  Includes only the C library,
 * pthreads and Python.h (for Py_ssize_t and the raw allocator); calls no
 * Python code and needs no thread state.
 *
 * Layers, lowest first (a file includes only headers of its own layer or a
 * lower one; tools/check_layers.py enforces it):
 *   base -> mem -> codec -> runtime -> data -> module
 */
#ifndef IP_BASE_H
#define IP_BASE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Result codes of raw (lower-layer) functions.  They never raise: the
 * module layer turns a code into a Python exception in one place
 * (module/errors.c). */
typedef enum ip_err {
    IP_OK = 0,
    IP_ERR_NOMEM = -1,        /* out of memory */
    IP_ERR_TIMEOUT = -2,      /* a deadline passed */
    IP_ERR_INTERRUPTED = -3,  /* a wait was interrupted; the interrupt check set why */
    IP_ERR_STOPPED = -4,      /* the pool no longer takes tasks */
    IP_ERR_BROKEN = -5,       /* the pool is broken (its message says why) */
    IP_ERR_EMPTY = -6,        /* nothing to take (queue) */
    IP_ERR_FULL = -7,         /* no room (bounded queue) */
    IP_ERR_OS = -8,           /* a system call failed: errno says why */
    IP_ERR_STARTED = -9,      /* configuration after the pool started */
    IP_ERR_TAKEN = -10,       /* a stopped call stuck past its grace was taken over */
} ip_err;

#endif
