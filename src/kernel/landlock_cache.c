/* Built Landlock rulesets, by what they were built from (see
 * landlock_cache.h). */
#include "landlock_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAX 32 /* distinct (policy, net rules) pairs a host uses */

typedef struct entry {
    uint64_t hash;
    struct iso_landlock_ruleset_attr attr;
    iso_fs_grant *grants; /* the paths owned */
    iso_landlock_ident *ids;
    size_t n_grants, n_fixed;
    uint16_t *connect, *bind;
    size_t n_connect, n_bind;
    size_t skipped;
    int fd;
} entry;

static struct {
    pthread_mutex_t mu;
    entry e[CACHE_MAX];
    size_t n, oldest;
    uint64_t hits, misses, stale;
} cache = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0, 0, 0, 0, 0};

void iso_landlock_cache_lock(void)
{
    pthread_mutex_lock(&cache.mu);
}
void iso_landlock_cache_unlock(void)
{
    pthread_mutex_unlock(&cache.mu);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* A quick reject before the field-by-field comparison. */
static uint64_t key_hash(const iso_landlock_key *k)
{
    uint64_t h = 14695981039346656037ull;
    uint64_t head[6] = {k->attr.handled_access_fs,
                        k->attr.handled_access_net,
                        k->attr.scoped,
                        k->n_grants,
                        k->n_connect,
                        k->n_bind};
    h = fnv(h, head, sizeof head);
    h = fnv(h, k->connect, k->n_connect * sizeof *k->connect);
    h = fnv(h, k->bind, k->n_bind * sizeof *k->bind);
    for (size_t i = 0; i < k->n_grants; i++) {
        const iso_fs_grant *g = &k->grants[i];
        unsigned char r[5] = {g->read, g->write, g->exec, g->list,
                              i < k->n_fixed};
        h = fnv(fnv(h, g->path, strlen(g->path) + 1), r, sizeof r);
    }
    return h;
}

static bool same_grant(const iso_fs_grant *a, const iso_fs_grant *b)
{
    return a->read == b->read && a->write == b->write && a->exec == b->exec &&
           a->list == b->list && strcmp(a->path, b->path) == 0;
}

/* memcmp, but for none (a key's list may then be NULL). */
static bool same_ports(const uint16_t *a, const uint16_t *b, size_t n)
{
    return n == 0 || memcmp(a, b, n * sizeof *a) == 0;
}

static bool same_key(const entry *e, const iso_landlock_key *k, uint64_t h)
{
    if (e->hash != h || e->n_grants != k->n_grants ||
        e->n_fixed != k->n_fixed || e->n_connect != k->n_connect ||
        e->n_bind != k->n_bind ||
        e->attr.handled_access_fs != k->attr.handled_access_fs ||
        e->attr.handled_access_net != k->attr.handled_access_net ||
        e->attr.scoped != k->attr.scoped ||
        !same_ports(e->connect, k->connect, k->n_connect) ||
        !same_ports(e->bind, k->bind, k->n_bind))
        return false;
    for (size_t i = 0; i < k->n_grants; i++)
        if (!same_grant(&e->grants[i], &k->grants[i]))
            return false;
    return true;
}

/* What path resolves to now (as open(O_PATH) would); false when that
 * cannot be told (the build will say why). */
static bool resolve(const char *path, iso_landlock_ident *id)
{
    struct stat st;
    *id = (iso_landlock_ident){0, 0, false};
    if (stat(path, &st) == 0) {
        id->dev = st.st_dev, id->ino = st.st_ino;
        return true;
    }
    id->absent = errno == ENOENT || errno == ENOTDIR;
    return id->absent;
}

/* The policy's grants still resolve to what the ruleset was built on. */
static bool fresh(const entry *e)
{
    for (size_t i = e->n_fixed; i < e->n_grants; i++) {
        iso_landlock_ident now;
        const iso_landlock_ident *then = &e->ids[i];
        if (!resolve(e->grants[i].path, &now) || now.absent != then->absent ||
            now.dev != then->dev || now.ino != then->ino)
            return false;
    }
    return true;
}

/* Under the lock: the entry for key, fresh or not. */
static entry *lookup(const iso_landlock_key *k, uint64_t h)
{
    for (size_t i = 0; i < cache.n; i++)
        if (same_key(&cache.e[i], k, h))
            return &cache.e[i];
    return NULL;
}

int iso_landlock_cache_find(const iso_landlock_key *key, size_t *skipped)
{
    entry *e = lookup(key, key_hash(key));
    if (e && fresh(e)) {
        cache.hits++;
        *skipped = e->skipped;
        return e->fd;
    }
    cache.misses++;
    if (e)
        cache.stale++;
    return -1;
}

static void entry_free(entry *e)
{
    for (size_t i = 0; e->grants && i < e->n_grants; i++)
        free((char *)e->grants[i].path);
    free(e->grants);
    free(e->ids);
    free(e->connect);
    free(e->bind);
    if (e->fd >= 0)
        close(e->fd);
    memset(e, 0, sizeof *e);
    e->fd = -1;
}

/* A copy of n items of size sz (a non-NULL pointer for none). */
static void *copy_of(const void *p, size_t n, size_t sz)
{
    void *c = malloc(n ? n * sz : 1);
    if (c && n)
        memcpy(c, p, n * sz);
    return c;
}

/* A filled entry for key (fd -1), or false (out of memory: nothing
 * allocated). */
static bool entry_make(entry *e, const iso_landlock_key *k, uint64_t h,
                       const iso_landlock_ident *ids, size_t skipped)
{
    *e = (entry){.hash = h,
                 .attr = k->attr,
                 .n_grants = k->n_grants,
                 .n_fixed = k->n_fixed,
                 .n_connect = k->n_connect,
                 .n_bind = k->n_bind,
                 .skipped = skipped,
                 .fd = -1};
    e->grants = calloc(k->n_grants + 1, sizeof *e->grants);
    e->ids = copy_of(ids, k->n_grants, sizeof *ids);
    e->connect = copy_of(k->connect, k->n_connect, sizeof *k->connect);
    e->bind = copy_of(k->bind, k->n_bind, sizeof *k->bind);
    bool ok = e->grants && e->ids && e->connect && e->bind;
    for (size_t i = 0; ok && i < k->n_grants; i++) {
        e->grants[i] = k->grants[i];
        ok = (e->grants[i].path = strdup(k->grants[i].path)) != NULL;
    }
    if (!ok)
        entry_free(e);
    return ok;
}

bool iso_landlock_cache_add(const iso_landlock_key *key,
                            const iso_landlock_ident *ids, int rfd,
                            size_t skipped)
{
    uint64_t h = key_hash(key);
    entry fresh_entry;
    if (!entry_make(&fresh_entry, key, h, ids, skipped))
        return false;
    fresh_entry.fd = rfd;
    entry *slot = lookup(key, h); /* stale: built again */
    if (!slot && cache.n < CACHE_MAX) {
        slot = &cache.e[cache.n++];
    } else if (!slot) {
        slot = &cache.e[cache.oldest];
        cache.oldest = (cache.oldest + 1) % CACHE_MAX;
    }
    /* no thread uses the old fd: they do only under the lock */
    entry old = *slot;
    *slot = fresh_entry;
    if (old.grants)
        entry_free(&old);
    return true;
}

void iso_landlock_cache_stats_get(iso_landlock_cache_stats *st)
{
    pthread_mutex_lock(&cache.mu);
    st->entries = cache.n;
    st->hits = cache.hits;
    st->misses = cache.misses;
    st->stale = cache.stale;
    pthread_mutex_unlock(&cache.mu);
}

void iso_landlock_cache_clear(void)
{
    pthread_mutex_lock(&cache.mu);
    for (size_t i = 0; i < cache.n; i++)
        entry_free(&cache.e[i]);
    cache.n = cache.oldest = 0;
    cache.hits = cache.misses = cache.stale = 0;
    pthread_mutex_unlock(&cache.mu);
}
