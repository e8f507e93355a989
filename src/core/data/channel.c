#include "data/channel.h"

#include <errno.h>
#include <string.h>

#include "base/sync.h"

atomic_long ip_live_queues;

typedef struct qitem {
    struct qitem *next;
    ip_buf data;
} qitem;

typedef struct waiter {
    struct waiter *next;
    int efd;
    int want_put;             /* 0: waits for an item, 1: for room */
} waiter;

struct ip_channel {
    ip_pin base;              /* first: the channel is a pin */
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    qitem *head, *tail;
    Py_ssize_t n, maxsize;
    waiter *waiters;
};

static void
channel_destroy(ip_pin *pin)
{
    ip_channel *q = (ip_channel *)pin;
    for (qitem *it = q->head, *next; it != NULL; it = next) {
        next = it->next;
        ip_buf_free(&it->data);
        PyMem_RawFree(it);
    }
    for (waiter *w = q->waiters, *next; w != NULL; w = next) {
        next = w->next;
        ip_efd_close(w->efd);
        PyMem_RawFree(w);
    }
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    PyMem_RawFree(q);
    atomic_fetch_sub(&ip_live_queues, 1);
}

ip_channel *
ip_channel_new(Py_ssize_t maxsize)
{
    ip_channel *q = PyMem_RawCalloc(1, sizeof(ip_channel));
    if (q == NULL) {
        return NULL;
    }
    ip_pin_init(&q->base, IP_KIND_QUEUE, channel_destroy, NULL);
    q->maxsize = maxsize > 0 ? maxsize : 0;
    pthread_mutex_init(&q->mu, NULL);
    ip_cond_init(&q->not_empty);
    ip_cond_init(&q->not_full);
    atomic_fetch_add(&ip_live_queues, 1);
    return q;
}

/* Wake every async waiter of one kind; mu held. */
static void
notify_waiters(ip_channel *q, int want_put)
{
    IP_ASSERT_LOCKED(&q->mu);
    for (waiter *w = q->waiters; w != NULL; w = w->next) {
        if (w->want_put == want_put) {
            ip_efd_signal(w->efd);
        }
    }
}

static int
is_full(ip_channel *q)
{
    return q->maxsize > 0 && q->n >= q->maxsize;
}

static int
has_room(void *arg)
{
    return !is_full(arg);
}

static int
has_item(void *arg)
{
    return ((ip_channel *)arg)->head != NULL;
}

int
ip_channel_put(ip_channel *q, ip_buf *item, const ip_deadline *deadline,
               const ip_interrupt *intr)
{
    qitem *it = PyMem_RawCalloc(1, sizeof(qitem));
    if (it == NULL) {
        return IP_ERR_NOMEM;
    }
    pthread_mutex_lock(&q->mu);
    int rc = ip_wait(&q->mu, &q->not_full, has_room, q, deadline, intr);
    if (rc == IP_OK) {
        it->data = *item;
        memset(item, 0, sizeof(*item));
        if (q->tail) {
            q->tail->next = it;
        }
        else {
            q->head = it;
        }
        q->tail = it;
        q->n++;
        pthread_cond_signal(&q->not_empty);
        notify_waiters(q, 0);
    }
    pthread_mutex_unlock(&q->mu);
    if (rc != IP_OK) {
        PyMem_RawFree(it);
        return rc == IP_ERR_TIMEOUT ? IP_ERR_FULL : rc;
    }
    return IP_OK;
}

int
ip_channel_get(ip_channel *q, ip_buf *item, const ip_deadline *deadline,
               const ip_interrupt *intr)
{
    pthread_mutex_lock(&q->mu);
    int rc = ip_wait(&q->mu, &q->not_empty, has_item, q, deadline, intr);
    qitem *it = NULL;
    if (rc == IP_OK) {
        it = q->head;
        q->head = it->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        q->n--;
        pthread_cond_signal(&q->not_full);
        notify_waiters(q, 1);
    }
    pthread_mutex_unlock(&q->mu);
    if (it == NULL) {
        return rc == IP_ERR_TIMEOUT ? IP_ERR_EMPTY : rc;
    }
    *item = it->data;
    PyMem_RawFree(it);
    return IP_OK;
}

int
ip_channel_unget(ip_channel *q, ip_buf *item)
{
    qitem *it = PyMem_RawCalloc(1, sizeof(qitem));
    if (it == NULL) {
        ip_buf_free(item);
        return IP_ERR_NOMEM;
    }
    it->data = *item;
    memset(item, 0, sizeof(*item));
    pthread_mutex_lock(&q->mu);
    it->next = q->head;
    q->head = it;
    if (q->tail == NULL) {
        q->tail = it;
    }
    q->n++;
    pthread_cond_signal(&q->not_empty);
    notify_waiters(q, 0);
    pthread_mutex_unlock(&q->mu);
    return IP_OK;
}

Py_ssize_t
ip_channel_size(ip_channel *q)
{
    pthread_mutex_lock(&q->mu);
    Py_ssize_t n = q->n;
    pthread_mutex_unlock(&q->mu);
    return n;
}

Py_ssize_t
ip_channel_maxsize(ip_channel *q)
{
    return q->maxsize;
}

int
ip_channel_full(ip_channel *q)
{
    pthread_mutex_lock(&q->mu);
    int full = is_full(q);
    pthread_mutex_unlock(&q->mu);
    return full;
}

int
ip_channel_add_waiter(ip_channel *q, int want_put, int *fd)
{
    waiter *w = PyMem_RawCalloc(1, sizeof(waiter));
    if (w == NULL) {
        return IP_ERR_NOMEM;
    }
    w->want_put = want_put;
    w->efd = ip_efd_new();
    if (w->efd < 0) {
        PyMem_RawFree(w);
        return IP_ERR_OS;
    }
    pthread_mutex_lock(&q->mu);
    int ready = want_put ? !is_full(q) : q->n > 0;
    if (!ready) {
        w->next = q->waiters;
        q->waiters = w;
    }
    pthread_mutex_unlock(&q->mu);
    if (ready) {
        ip_efd_close(w->efd);
        PyMem_RawFree(w);
        *fd = -1;
    }
    else {
        *fd = w->efd;
    }
    return IP_OK;
}

void
ip_channel_remove_waiter(ip_channel *q, int fd)
{
    waiter *found = NULL;
    pthread_mutex_lock(&q->mu);
    for (waiter **link = &q->waiters; *link != NULL; link = &(*link)->next) {
        if ((*link)->efd == fd) {
            found = *link;
            *link = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (found != NULL) {
        ip_efd_close(found->efd);
        PyMem_RawFree(found);
    }
}
