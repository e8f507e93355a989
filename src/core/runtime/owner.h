/* An owner: counts the worker threads of the pools one interpreter
 * created, so that interpreter can wait for them at exit.  Raw and
 * refcounted: workers may outlive the module object that made it. */
#ifndef IP_RUNTIME_OWNER_H
#define IP_RUNTIME_OWNER_H

#include "base/wait.h"

typedef struct ip_owner {
    atomic_long refcnt;
    long live;               /* worker threads not yet exited (mu) */
    long aside;              /* of which set aside: their calls were taken over,
                              * they end once those return (mu) */
    pthread_mutex_t mu;
    pthread_cond_t exited;
} ip_owner;

ip_owner *ip_owner_new(void);   /* NULL on out of memory */
void ip_owner_incref(ip_owner *o);
void ip_owner_decref(ip_owner *o);
/* A worker thread starts / is set aside / ends. */
void ip_owner_add_worker(ip_owner *o);
void ip_owner_set_aside(ip_owner *o);
void ip_owner_worker_exited(ip_owner *o, int aside);
/* Wait until no worker thread of this owner is alive (with `aside`: also
 * none set aside) (no thread state attached).  IP_OK, IP_ERR_TIMEOUT or
 * IP_ERR_INTERRUPTED. */
int ip_owner_wait_idle(ip_owner *o, int aside, const ip_deadline *deadline,
                       const ip_interrupt *intr);

#endif
