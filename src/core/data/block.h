/* SharedBuffer blocks: zeroed raw memory that the caller and any worker
 * can use as a buffer, freed when the last side lets go. */
#ifndef IP_DATA_BLOCK_H
#define IP_DATA_BLOCK_H

#include "mem/pin.h"

#define IP_KIND_BLOCK 'b'

typedef struct ip_block {
    ip_pin base;
    char *mem;
    Py_ssize_t size;
} ip_block;

/* refcnt 1; NULL on out of memory. */
ip_block *ip_block_new(Py_ssize_t size);

extern atomic_long ip_live_blocks;

#endif
