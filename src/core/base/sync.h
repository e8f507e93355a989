/* Locks, condition variables and eventfds, set up one way everywhere. */
#ifndef IP_BASE_SYNC_H
#define IP_BASE_SYNC_H

#include "base/base.h"

#include <errno.h>

/* Debug builds: assert that `mu` is held (by some thread: a pthread mutex
 * does not say which).  Used by the functions named *_locked. */
#ifndef NDEBUG
#define IP_ASSERT_LOCKED(mu) assert(pthread_mutex_trylock(mu) == EBUSY)
#else
#define IP_ASSERT_LOCKED(mu) ((void)(mu))
#endif

/* A condvar on CLOCK_MONOTONIC (what ip_deadline measures). */
void ip_cond_init(pthread_cond_t *cond);

/* A non-blocking, close-on-exec eventfd; -1 with errno set on failure. */
int ip_efd_new(void);
/* Make the eventfd readable (retries on EINTR). */
void ip_efd_signal(int efd);
/* Reset the eventfd's counter (retries on EINTR). */
void ip_efd_clear(int efd);
/* Close it (no-op for -1). */
void ip_efd_close(int efd);

#endif
