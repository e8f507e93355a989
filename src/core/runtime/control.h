/* Control threads: how running Python code in a worker is stopped.
 *
 * A control thread belongs to one worker interpreter and keeps its own
 * thread state there.  Asked to stop a task (or when the task's deadline
 * passes), it takes that interpreter's GIL -- which the worker hands over
 * at its next eval-breaker check -- and calls `deliver`, which raises an
 * exception in the worker's thread if the task still runs (module layer).
 * A task that keeps running (it swallowed the exception) is asked again
 * every IP_CONTROL_RETRY_NS.
 */
#ifndef IP_RUNTIME_CONTROL_H
#define IP_RUNTIME_CONTROL_H

#include "runtime/task.h"

#define IP_CONTROL_RETRY_NS 500000000LL   /* 500 ms: long enough for a finally: block */

typedef struct ip_control ip_control;

/* What the control thread calls (with the `arg` it was started with). */
typedef struct ip_control_hooks {
    /* Holding the worker interpreter's GIL: interrupt t if it still runs
     * (t NULL: whatever user code runs, the initializer included); 1 if
     * it did. */
    int (*deliver)(void *arg, ip_task *t);
    /* Holding no lock and no GIL: t's deadline passed and gave it its stop
     * reason, just before the thread goes for that GIL (which a call stuck
     * in C never hands over). */
    void (*timed_out)(void *arg, ip_task *t);
} ip_control_hooks;

/* Start a control thread for `interp` (alive until ip_control_stop).
 * NULL if the thread could not start. */
ip_control *ip_control_start(PyInterpreterState *interp, const ip_control_hooks *hooks,
                             void *arg);
/* Stop t now (it must have a stop reason set); t NULL: whatever runs. */
void ip_control_request(ip_control *c, ip_task *t);
/* t's deadline (monotonic ns): past it, t gets stop reason TIMEOUT and is
 * stopped.  t NULL: no deadline. */
void ip_control_set_deadline(ip_control *c, ip_task *t, int64_t deadline_ns);
/* End the thread (it deletes its thread state) and free c.  Call with no
 * thread state of c's interpreter attached. */
void ip_control_stop(ip_control *c);

#endif
