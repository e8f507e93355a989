#include "base/sync.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

void
ip_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

int
ip_efd_new(void)
{
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

void
ip_efd_signal(int efd)
{
    uint64_t one = 1;
    while (write(efd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

void
ip_efd_clear(int efd)
{
    uint64_t v;
    while (read(efd, &v, sizeof(v)) < 0 && errno == EINTR) {
    }
}

void
ip_efd_close(int efd)
{
    if (efd >= 0) {
        close(efd);
    }
}
