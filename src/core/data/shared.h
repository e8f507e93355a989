/* Shared values (Pool.share): a value encoded once, decoded by each worker
 * on first use and kept until the value is released. */
#ifndef IP_DATA_SHARED_H
#define IP_DATA_SHARED_H

#include "mem/buf.h"

#define IP_KIND_SHARED 'v'

typedef struct ip_shared {
    ip_pin base;
    uint64_t id;              /* process-unique */
    ip_buf data;              /* the value, encoded once */
    atomic_int released;
} ip_shared;

/* Takes over `encoded` (left empty).  NULL on out of memory. */
ip_shared *ip_shared_new(ip_buf *encoded);
/* Mark it released (once): returns 1 the first time.  Bumps ip_shared_epoch
 * so every interpreter's cached copy is dropped at its next upkeep; the
 * caller then wakes idle workers (ip_wake_all_pools). */
int ip_shared_release(ip_shared *sv);

/* Bumped at every release. */
extern atomic_long ip_shared_epoch;
extern atomic_long ip_live_shared;

#endif
