/* Exported buffers: a caller's buffer (memoryview, bytearray, array, mmap)
 * passed to a task zero-copy.  The Py_buffer is held for the worker's view
 * and released in the exporter's own interpreter (a pin owned by it). */
#ifndef IP_DATA_EXPORT_H
#define IP_DATA_EXPORT_H

#include "mem/pin.h"

#define IP_KIND_EXPORT 'm'

typedef struct ip_export {
    ip_pin base;
    Py_buffer view;           /* held in the owner interpreter */
    Py_ssize_t itemsize;      /* of the format, or 1 */
    char format[16];
} ip_export;

/* Takes over `view` (taken by the caller in the current interpreter, which
 * becomes the owner).  NULL on out of memory (the view is then released). */
ip_export *ip_export_new(Py_buffer *view);

extern atomic_long ip_live_exports;

#endif
