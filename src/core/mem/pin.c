#include "mem/pin.h"

static pthread_mutex_t deferred_mu = PTHREAD_MUTEX_INITIALIZER;
static ip_pin *deferred_head;

void
ip_pin_init(ip_pin *pin, int kind, void (*destroy)(ip_pin *), PyInterpreterState *owner)
{
    atomic_init(&pin->refcnt, 1);
    pin->kind = kind;
    pin->destroy = destroy;
    pin->owner = owner;
    pin->next_deferred = NULL;
}

void
ip_pin_incref(ip_pin *pin)
{
    long old = atomic_fetch_add_explicit(&pin->refcnt, 1, memory_order_relaxed);
    assert(old > 0);
    (void)old;
}

static int
pending_release(void *Py_UNUSED(arg))
{
    ip_pins_release_deferred();
    return 0;
}

/* The last reference went in an interpreter that does not own the pin. */
static void
defer(ip_pin *pin)
{
    /* Read the owner first: once pin is on the list, the owner may free it
     * at any moment. */
    int owner_is_main = pin->owner == PyInterpreterState_Main();
    pthread_mutex_lock(&deferred_mu);
    int first = deferred_head == NULL;   /* one pending call per batch */
    pin->next_deferred = deferred_head;
    deferred_head = pin;
    pthread_mutex_unlock(&deferred_mu);
    if (first && owner_is_main) {
        (void)Py_AddPendingCall(pending_release, NULL);
    }
}

void
ip_pin_decref(ip_pin *pin)
{
    long old = atomic_fetch_sub_explicit(&pin->refcnt, 1, memory_order_acq_rel);
    assert(old > 0);   /* refcounts never go negative */
    if (old != 1) {
        return;
    }
    if (pin->owner != NULL) {
        PyThreadState *ts = PyThreadState_GetUnchecked();
        if (ts == NULL || PyThreadState_GetInterpreter(ts) != pin->owner) {
            defer(pin);
            return;
        }
    }
    pin->destroy(pin);
}

void
ip_pins_release_deferred(void)
{
    if (deferred_head == NULL) {   /* racy peek: a miss is caught next time */
        return;
    }
    PyInterpreterState *here = PyInterpreterState_Get();
    ip_pin *mine = NULL;
    pthread_mutex_lock(&deferred_mu);
    ip_pin **link = &deferred_head;
    while (*link != NULL) {
        ip_pin *pin = *link;
        if (pin->owner == here) {
            *link = pin->next_deferred;
            pin->next_deferred = mine;
            mine = pin;
        }
        else {
            link = &pin->next_deferred;
        }
    }
    pthread_mutex_unlock(&deferred_mu);
    while (mine != NULL) {
        ip_pin *next = mine->next_deferred;
        mine->destroy(mine);
        mine = next;
    }
}

Py_ssize_t
ip_pins_add(ip_pins *pins, ip_pin *pin)
{
    for (Py_ssize_t i = 0; i < pins->n; i++) {
        if (pins->items[i] == pin) {
            return i;
        }
    }
    if (pins->n == pins->cap) {
        Py_ssize_t cap = pins->cap ? pins->cap * 2 : 4;
        ip_pin **items = PyMem_RawRealloc(pins->items, cap * sizeof(ip_pin *));
        if (items == NULL) {
            return -1;
        }
        pins->items = items;
        pins->cap = cap;
    }
    ip_pin_incref(pin);
    pins->items[pins->n] = pin;
    return pins->n++;
}

int
ip_pins_extend(ip_pins *pins, const ip_pins *src)
{
    for (Py_ssize_t i = 0; i < src->n; i++) {
        if (ip_pins_add(pins, src->items[i]) < 0) {
            return IP_ERR_NOMEM;
        }
    }
    return IP_OK;
}

void
ip_pins_clear(ip_pins *pins)
{
    for (Py_ssize_t i = 0; i < pins->n; i++) {
        ip_pin_decref(pins->items[i]);
    }
    PyMem_RawFree(pins->items);
    pins->items = NULL;
    pins->n = pins->cap = 0;
}
