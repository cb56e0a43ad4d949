/* Compiled seccomp programs, by what they were compiled from (see
 * seccomp_cache.h). */
#include "seccomp_cache.h"

#include <pthread.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_MAX 32 /* distinct (mode, deny list) pairs a host uses */
#define DENY_MAX 128 /* longer lists are compiled every time */

typedef struct entry {
    bool compat, in_thread, processes, audit;
    unsigned net; /* ISO_SECCOMP_NET_* */
    uint32_t arch;
    char **deny; /* sorted, owned */
    size_t n_deny;
    struct sock_filter *code; /* owned */
    unsigned short len;
    size_t denied;
    void *extra; /* owned; the caller's, e.g. a worker's trap names */
    size_t extra_len;
} entry;

static struct {
    pthread_mutex_t mu;
    entry e[CACHE_MAX];
    size_t n, oldest;
    uint64_t hits, misses;
} cache = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0, 0, 0, 0};

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The key's deny list in a canonical order, into names[DENY_MAX]. */
static bool sorted_deny(const iso_seccomp_key *k, const char **names)
{
    if (k->n_deny > DENY_MAX)
        return false;
    for (size_t i = 0; i < k->n_deny; i++) {
        if (!k->deny[i])
            return false;
        names[i] = k->deny[i];
    }
    qsort(names, k->n_deny, sizeof *names, by_name);
    return true;
}

static bool matches(const entry *e, const iso_seccomp_key *k,
                    const char **names)
{
    if (e->compat != k->compat || e->in_thread != k->in_thread ||
        e->audit != k->audit ||
        e->processes != k->processes || e->net != k->net ||
        e->arch != seccomp_arch_native() || e->n_deny != k->n_deny)
        return false;
    for (size_t i = 0; i < k->n_deny; i++)
        if (strcmp(e->deny[i], names[i]) != 0)
            return false;
    return true;
}

/* Under the lock. */
static entry *lookup(const iso_seccomp_key *k, const char **names)
{
    for (size_t i = 0; i < cache.n; i++)
        if (matches(&cache.e[i], k, names))
            return &cache.e[i];
    return NULL;
}

bool iso_seccomp_cache_find(const iso_seccomp_key *key, struct sock_fprog *prog,
                            size_t *denied, iso_seccomp_extra *extra)
{
    const char *names[DENY_MAX];
    if (!sorted_deny(key, names))
        return false;
    pthread_mutex_lock(&cache.mu);
    entry *e = lookup(key, names);
    size_t bytes = e ? e->len * sizeof *e->code : 0;
    struct sock_filter *copy = e ? malloc(bytes) : NULL;
    void *more = copy && extra && e->extra_len ? malloc(e->extra_len) : NULL;
    if (copy && extra && e->extra_len && !more) {
        free(copy);
        copy = NULL;
    }
    if (copy) {
        memcpy(copy, e->code, bytes);
        prog->filter = copy;
        prog->len = e->len;
        *denied = e->denied;
    }
    if (copy && extra) {
        if (more)
            memcpy(more, e->extra, e->extra_len);
        extra->data = more;
        extra->len = more ? e->extra_len : 0;
    }
    if (copy)
        cache.hits++;
    else
        cache.misses++;
    pthread_mutex_unlock(&cache.mu);
    return copy != NULL;
}

static void entry_free(entry *e)
{
    for (size_t i = 0; e->deny && i < e->n_deny; i++)
        free(e->deny[i]);
    free(e->deny);
    free(e->code);
    free(e->extra);
    memset(e, 0, sizeof *e);
}

/* A filled entry for key, or false (out of memory: nothing allocated). */
static bool entry_make(entry *e, const iso_seccomp_key *k, const char **names,
                       const struct sock_fprog *prog, size_t denied,
                       const iso_seccomp_extra *extra)
{
    *e = (entry){.compat = k->compat,
                 .audit = k->audit,
                 .in_thread = k->in_thread,
                 .processes = k->processes,
                 .net = k->net,
                 .arch = seccomp_arch_native(),
                 .n_deny = k->n_deny,
                 .len = prog->len,
                 .denied = denied};
    e->deny = calloc(k->n_deny + 1, sizeof *e->deny);
    e->code = malloc(prog->len * sizeof *prog->filter);
    bool ok = e->deny && e->code;
    if (ok && extra && extra->len) {
        ok = (e->extra = malloc(extra->len)) != NULL;
        if (ok)
            memcpy(e->extra, extra->data, extra->len);
        e->extra_len = ok ? extra->len : 0;
    }
    for (size_t i = 0; ok && i < k->n_deny; i++)
        ok = (e->deny[i] = strdup(names[i])) != NULL;
    if (!ok) {
        entry_free(e);
        return false;
    }
    memcpy(e->code, prog->filter, prog->len * sizeof *prog->filter);
    return true;
}

void iso_seccomp_cache_add(const iso_seccomp_key *key,
                           const struct sock_fprog *prog, size_t denied,
                           const iso_seccomp_extra *extra)
{
    const char *names[DENY_MAX];
    entry fresh;
    if (!sorted_deny(key, names) ||
        !entry_make(&fresh, key, names, prog, denied, extra))
        return;
    pthread_mutex_lock(&cache.mu);
    if (lookup(key, names)) { /* another cell thread compiled it too */
        pthread_mutex_unlock(&cache.mu);
        entry_free(&fresh);
        return;
    }
    size_t slot = cache.n;
    if (cache.n < CACHE_MAX) {
        cache.n++;
    } else {
        slot = cache.oldest;
        cache.oldest = (cache.oldest + 1) % CACHE_MAX;
    }
    entry old = cache.e[slot];
    cache.e[slot] = fresh;
    pthread_mutex_unlock(&cache.mu);
    entry_free(&old);
}

void iso_seccomp_cache_stats_get(iso_seccomp_cache_stats *st)
{
    pthread_mutex_lock(&cache.mu);
    st->entries = cache.n;
    st->hits = cache.hits;
    st->misses = cache.misses;
    pthread_mutex_unlock(&cache.mu);
}

void iso_seccomp_cache_clear(void)
{
    pthread_mutex_lock(&cache.mu);
    for (size_t i = 0; i < cache.n; i++)
        entry_free(&cache.e[i]);
    cache.n = cache.oldest = 0;
    cache.hits = cache.misses = 0;
    pthread_mutex_unlock(&cache.mu);
}
