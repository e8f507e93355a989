#include "data/export.h"

#include <string.h>

atomic_long ip_live_exports;

static void
export_destroy(ip_pin *pin)
{
    ip_export *e = (ip_export *)pin;
    PyBuffer_Release(&e->view);   /* in the owner interpreter (the pin's rule) */
    PyMem_RawFree(e);
    atomic_fetch_sub(&ip_live_exports, 1);
}

ip_export *
ip_export_new(Py_buffer *view)
{
    ip_export *e = PyMem_RawCalloc(1, sizeof(ip_export));
    if (e == NULL) {
        PyBuffer_Release(view);
        return NULL;
    }
    ip_pin_init(&e->base, IP_KIND_EXPORT, export_destroy, PyInterpreterState_Get());
    e->view = *view;
    e->itemsize = 1;
    strcpy(e->format, "B");
    const char *fmt = e->view.format ? e->view.format : "B";
    if (e->view.itemsize > 0 && e->view.len % e->view.itemsize == 0 &&
        strlen(fmt) < sizeof(e->format)) {
        e->itemsize = e->view.itemsize;
        strcpy(e->format, fmt);
    }
    atomic_fetch_add(&ip_live_exports, 1);
    return e;
}
