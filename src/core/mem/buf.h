/* Byte buffers in raw (process-global) memory: the payloads that cross
 * interpreters, with the pins their bytes refer to. */
#ifndef IP_MEM_BUF_H
#define IP_MEM_BUF_H

#include "mem/pin.h"

typedef struct ip_buf {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    ip_pins pins;
} ip_buf;

/* Room for `extra` more bytes: IP_OK or IP_ERR_NOMEM (buf unchanged). */
int ip_buf_reserve(ip_buf *b, Py_ssize_t extra);
int ip_buf_append(ip_buf *b, const void *p, Py_ssize_t n);
/* Copy src (bytes and pins) into dst, which must be empty: the pin
 * indexes in the bytes refer to positions in the pin list. */
int ip_buf_copy(ip_buf *dst, const ip_buf *src);
/* Free the bytes and drop the pins; the buffer is empty and reusable. */
void ip_buf_free(ip_buf *b);

#endif
