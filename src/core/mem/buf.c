#include "mem/buf.h"

#include <string.h>

int
ip_buf_reserve(ip_buf *b, Py_ssize_t extra)
{
    if (extra < 0 || extra > PY_SSIZE_T_MAX - b->len) {
        return IP_ERR_NOMEM;
    }
    Py_ssize_t need = b->len + extra;
    if (need <= b->cap) {
        return IP_OK;
    }
    Py_ssize_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need) {
        cap = cap > PY_SSIZE_T_MAX / 2 ? need : cap * 2;
    }
    char *data = PyMem_RawRealloc(b->data, (size_t)cap);
    if (data == NULL) {
        return IP_ERR_NOMEM;
    }
    b->data = data;
    b->cap = cap;
    return IP_OK;
}

int
ip_buf_append(ip_buf *b, const void *p, Py_ssize_t n)
{
    if (ip_buf_reserve(b, n) < 0) {
        return IP_ERR_NOMEM;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, (size_t)n);
        b->len += n;
    }
    return IP_OK;
}

int
ip_buf_copy(ip_buf *dst, const ip_buf *src)
{
    assert(dst->len == 0 && dst->pins.n == 0);
    if (ip_buf_append(dst, src->data, src->len) < 0) {
        return IP_ERR_NOMEM;
    }
    return ip_pins_extend(&dst->pins, &src->pins);
}

void
ip_buf_free(ip_buf *b)
{
    PyMem_RawFree(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    ip_pins_clear(&b->pins);
}
