/* The raw pool shared by pool.c (the caller's side) and worker.c. */
#ifndef INTERPOOL_POOL_H
#define INTERPOOL_POOL_H

#include "_core.h"

/* What the pool knows of one worker (pool mutex). */
typedef struct ip_slot {
    int efd;                    /* eventfd of its event loop, or -1 */
    int waiting;                /* its loop waits for tasks: write efd on enqueue */
} ip_slot;

typedef struct ip_pool_s {
    pthread_mutex_t mu;
    pthread_cond_t work;        /* a task was queued, or stopping */
    pthread_cond_t changed;     /* a worker became ready or exited */
    atomic_int refcnt;          /* PoolCore + each live worker thread */
    atomic_int has_work;        /* queue non-empty (spin target) */
    ip_task *head, *tail;
    Py_ssize_t nqueued;
    int sleepers;
    unsigned wake_seq;          /* bumped by wake(): idle workers do upkeep */
    int stopping;               /* no new tasks; workers exit when queue empties */
    int cancel_running;         /* stopping also cancels running coroutines */
    int broken;
    ip_buf broken_msg;          /* UTF-8 */
    int nworkers, nready, nlive, started;
    int concurrency;            /* coroutines per worker; 1: the C loop */
    long loop_factory;          /* fn id of the workers' loop factory, or -1 */
    ip_slot *slots;             /* nworkers */
    ip_owner *owner;            /* the creating interpreter's worker count */
    struct ip_pool_s *next_live, *prev_live;   /* all live pools (live_mu) */
    /* configuration, immutable once started */
    char **sys_path;
    Py_ssize_t n_path;
    int has_init;
    uint32_t init_fn;
    ip_buf init_payload;
    ip_buf setup_payload;       /* given to _support.worker_setup at start */
    /* callable references, append-only (mu) */
    ip_buf *fns;
    uint32_t nfns, capfns;
} ip_pool;

extern atomic_long ip_live_workers;


void ip_pool_decref(ip_pool *p);
/* Mark the pool broken (first reason wins) and fail every queued task. */
void ip_pool_break(ip_pool *p, const char *msg, Py_ssize_t len);
ip_task *ip_queue_pop_locked(ip_pool *p);
void ip_write_efd(int efd);
/* What a new worker thread is given (freed by it). */
typedef struct {
    ip_pool *pool;    /* one reference, given to the thread */
    int index;
} ip_worker_start;

/* A worker thread's body: arg is an ip_worker_start. */
void *ip_worker_main(void *arg);

#endif
