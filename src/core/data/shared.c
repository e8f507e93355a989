#include "data/shared.h"

#include <string.h>

atomic_long ip_shared_epoch;
atomic_long ip_live_shared;

static void
shared_destroy(ip_pin *pin)
{
    ip_shared *sv = (ip_shared *)pin;
    ip_buf_free(&sv->data);
    PyMem_RawFree(sv);
    atomic_fetch_sub(&ip_live_shared, 1);
}

ip_shared *
ip_shared_new(ip_buf *encoded)
{
    static atomic_ullong next_id = 1;
    ip_shared *sv = PyMem_RawCalloc(1, sizeof(ip_shared));
    if (sv == NULL) {
        return NULL;
    }
    ip_pin_init(&sv->base, IP_KIND_SHARED, shared_destroy, NULL);
    sv->id = atomic_fetch_add(&next_id, 1);
    sv->data = *encoded;
    memset(encoded, 0, sizeof(*encoded));
    atomic_fetch_add(&ip_live_shared, 1);
    return sv;
}

int
ip_shared_release(ip_shared *sv)
{
    if (atomic_exchange(&sv->released, 1)) {
        return 0;
    }
    atomic_fetch_add_explicit(&ip_shared_epoch, 1, memory_order_release);
    return 1;
}
