#include "data/block.h"

atomic_long ip_live_blocks;

static void
block_destroy(ip_pin *pin)
{
    ip_block *b = (ip_block *)pin;
    PyMem_RawFree(b->mem);
    PyMem_RawFree(b);
    atomic_fetch_sub(&ip_live_blocks, 1);
}

ip_block *
ip_block_new(Py_ssize_t size)
{
    assert(size >= 0);
    ip_block *b = PyMem_RawCalloc(1, sizeof(ip_block));
    char *mem = b ? PyMem_RawCalloc(size ? size : 1, 1) : NULL;
    if (mem == NULL) {
        PyMem_RawFree(b);
        return NULL;
    }
    ip_pin_init(&b->base, IP_KIND_BLOCK, block_destroy, NULL);
    b->mem = mem;
    b->size = size;
    atomic_fetch_add(&ip_live_blocks, 1);
    return b;
}
