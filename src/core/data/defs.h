/* By-value definitions (interpool._byvalue): the pickle of a function or
 * class that travels by value, stored once under its uid in raw memory
 * that every interpreter of the process can read.  A message then names a
 * definition by its uid only, whichever interpreter receives it (the
 * caller, a worker, a nested pool's worker); the first one that needs it
 * copies the bytes.  Entries never change and live as long as the process
 * (a program defines a bounded number of them). */
#ifndef IP_DATA_DEFS_H
#define IP_DATA_DEFS_H

#include "base/base.h"

/* The longest uid accepted. */
#define IP_DEF_UID_MAX 32

/* Store a copy of `data` under `uid` (nothing if `uid` is there already):
 * IP_OK, or IP_ERR_NOMEM. */
ip_err ip_defs_put(const char *uid, size_t uid_len, const char *data, size_t len);
/* The bytes stored under `uid` (never freed nor changed), or NULL. */
const char *ip_defs_get(const char *uid, size_t uid_len, size_t *len);
/* How many definitions are stored. */
size_t ip_defs_count(void);

#endif
