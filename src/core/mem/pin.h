/* Pins: raw, refcounted objects that payloads keep alive.
 *
 * A shared value, an exported buffer, a SharedBuffer block and a Queue are
 * pins (data layer).  A payload refers to its pins by index into its own
 * pin list, never by address, so no byte string can forge one.
 *
 * A pin may be owned by one interpreter (an exported buffer must be
 * released where it was taken).  If its last reference goes in another
 * interpreter, it waits on a process-wide list until its owner calls
 * ip_pins_release_deferred() (the main interpreter is also sent a pending
 * call, so it does not wait for its next call into interpool).
 */
#ifndef IP_MEM_PIN_H
#define IP_MEM_PIN_H

#include "base/base.h"

typedef struct ip_pin ip_pin;
struct ip_pin {
    atomic_long refcnt;
    int kind;                    /* the wire byte of its kind (codec table) */
    void (*destroy)(ip_pin *);   /* runs in `owner`, or wherever the last ref goes */
    PyInterpreterState *owner;   /* NULL: no owner */
    ip_pin *next_deferred;       /* on the deferred list (its mutex) */
};

/* refcnt 1. */
void ip_pin_init(ip_pin *pin, int kind, void (*destroy)(ip_pin *), PyInterpreterState *owner);
void ip_pin_incref(ip_pin *pin);
void ip_pin_decref(ip_pin *pin);

/* The pins one payload holds (one reference each). */
typedef struct ip_pins {
    ip_pin **items;
    Py_ssize_t n, cap;
} ip_pins;

/* Add pin (incref) unless present; its index, or -1 on out of memory. */
Py_ssize_t ip_pins_add(ip_pins *pins, ip_pin *pin);
/* Add every pin of src; IP_OK or IP_ERR_NOMEM. */
int ip_pins_extend(ip_pins *pins, const ip_pins *src);
void ip_pins_clear(ip_pins *pins);

/* Destroy the pins owned by the current interpreter whose last reference
 * went elsewhere.  Needs an attached thread state. */
void ip_pins_release_deferred(void);

#endif
