#include "data/defs.h"

#include <string.h>

typedef struct def_node {
    struct def_node *next;
    uint64_t hash;
    size_t uid_len;
    size_t len;
    char uid[IP_DEF_UID_MAX];
    char data[];   /* len bytes */
} def_node;

/* A chained hash table behind one lock; nodes are immutable once linked,
 * so their bytes are read without it. */
static pthread_mutex_t defs_mu = PTHREAD_MUTEX_INITIALIZER;
static def_node **buckets;
static size_t nbuckets;
static size_t count;

static uint64_t
hash_uid(const char *uid, size_t n)
{
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)uid[i]) * 1099511628211ULL;
    }
    return h;
}

static def_node *
find_locked(const char *uid, size_t n, uint64_t h)
{
    if (nbuckets == 0) {
        return NULL;
    }
    for (def_node *d = buckets[h & (nbuckets - 1)]; d != NULL; d = d->next) {
        if (d->hash == h && d->uid_len == n && memcmp(d->uid, uid, n) == 0) {
            return d;
        }
    }
    return NULL;
}

/* Double the buckets (64 at first); -1 on out of memory (table unchanged). */
static int
grow_locked(void)
{
    size_t n = nbuckets ? 2 * nbuckets : 64;
    def_node **fresh = PyMem_RawCalloc(n, sizeof(def_node *));
    if (fresh == NULL) {
        return -1;
    }
    for (size_t i = 0; i < nbuckets; i++) {
        def_node *d = buckets[i];
        while (d != NULL) {
            def_node *next = d->next;
            d->next = fresh[d->hash & (n - 1)];
            fresh[d->hash & (n - 1)] = d;
            d = next;
        }
    }
    PyMem_RawFree(buckets);
    buckets = fresh;
    nbuckets = n;
    return 0;
}

ip_err
ip_defs_put(const char *uid, size_t uid_len, const char *data, size_t len)
{
    assert(uid_len <= IP_DEF_UID_MAX);
    uint64_t h = hash_uid(uid, uid_len);
    /* Copy outside the lock; drop the copy if another thread won. */
    def_node *node = PyMem_RawMalloc(sizeof(def_node) + len);
    if (node == NULL) {
        return IP_ERR_NOMEM;
    }
    node->hash = h;
    node->uid_len = uid_len;
    node->len = len;
    memcpy(node->uid, uid, uid_len);
    memcpy(node->data, data, len);
    pthread_mutex_lock(&defs_mu);
    if (find_locked(uid, uid_len, h) != NULL) {
        pthread_mutex_unlock(&defs_mu);
        PyMem_RawFree(node);
        return IP_OK;
    }
    if (count >= nbuckets && grow_locked() < 0) {
        pthread_mutex_unlock(&defs_mu);
        PyMem_RawFree(node);
        return IP_ERR_NOMEM;
    }
    node->next = buckets[h & (nbuckets - 1)];
    buckets[h & (nbuckets - 1)] = node;
    count++;
    pthread_mutex_unlock(&defs_mu);
    return IP_OK;
}

const char *
ip_defs_get(const char *uid, size_t uid_len, size_t *len)
{
    pthread_mutex_lock(&defs_mu);
    def_node *d = uid_len <= IP_DEF_UID_MAX ? find_locked(uid, uid_len, hash_uid(uid, uid_len))
                                             : NULL;
    pthread_mutex_unlock(&defs_mu);
    if (d == NULL) {
        return NULL;
    }
    *len = d->len;
    return d->data;
}

size_t
ip_defs_count(void)
{
    pthread_mutex_lock(&defs_mu);
    size_t n = count;
    pthread_mutex_unlock(&defs_mu);
    return n;
}
