/* Channels: the raw FIFO behind interpool.Queue, shared by the caller and
 * every worker it is passed to.  Items are encoded payloads (ip_buf).
 * Blocking calls sleep on condvars (ip_wait); an event loop waits on an
 * eventfd registered as a waiter.  Nothing polls. */
#ifndef IP_DATA_CHANNEL_H
#define IP_DATA_CHANNEL_H

#include "base/wait.h"
#include "mem/buf.h"

#define IP_KIND_QUEUE 'q'

typedef struct ip_channel ip_channel;

/* maxsize <= 0: unbounded.  refcnt 1 (a pin); NULL on out of memory. */
ip_channel *ip_channel_new(Py_ssize_t maxsize);
static inline ip_pin *
ip_channel_pin(ip_channel *q)
{
    return (ip_pin *)q;   /* the pin is its first member */
}

/* Put `item` (taken over on IP_OK, left to the caller otherwise).  A full
 * bounded channel waits until the deadline (pass a passed deadline to
 * poll).  IP_OK, IP_ERR_FULL or IP_ERR_INTERRUPTED.  Call without a thread
 * state attached when it may wait. */
int ip_channel_put(ip_channel *q, ip_buf *item, const ip_deadline *deadline,
                   const ip_interrupt *intr);
/* Take the first item into *item (an empty ip_buf), waiting until the
 * deadline.  IP_OK, IP_ERR_EMPTY or IP_ERR_INTERRUPTED. */
int ip_channel_get(ip_channel *q, ip_buf *item, const ip_deadline *deadline,
                   const ip_interrupt *intr);

/* Put back an item ip_channel_get took (taken over), at the front: a getter
 * that could not decode it leaves it for another.  Never waits (a bounded
 * channel may hold one more item than its bound for a moment); IP_OK or
 * IP_ERR_NOMEM (the item is then freed). */
int ip_channel_unget(ip_channel *q, ip_buf *item);

Py_ssize_t ip_channel_size(ip_channel *q);
Py_ssize_t ip_channel_maxsize(ip_channel *q);
int ip_channel_full(ip_channel *q);

/* For an event loop: *fd becomes an eventfd that turns readable when an
 * item (or with want_put, room) may be available, or -1 if it is available
 * now.  IP_OK, IP_ERR_NOMEM or IP_ERR_OS. */
int ip_channel_add_waiter(ip_channel *q, int want_put, int *fd);
void ip_channel_remove_waiter(ip_channel *q, int fd);

extern atomic_long ip_live_queues;

#endif
