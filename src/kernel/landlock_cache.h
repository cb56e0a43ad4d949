/*
 * Built Landlock rulesets for cell threads, by what they were built from.
 * A cell thread's ruleset grants the CPython runtime file by file (some
 * 300 rules, each an open, fstat, landlock_add_rule and close: ~2 ms);
 * restricting a thread with a ruleset built before costs microseconds, and
 * the cells of a host share a handful of policies.
 *
 * The key is everything the ruleset depends on: the handled accesses
 * (the ABI's fs rights, the net rights, the scopes), the TCP connect and
 * bind ports, and the grants (path and rights, in order). The runtime's
 * grants (the first n_fixed: resolved once per process by grants.c) are
 * taken as they are; every other grant's path must still resolve to what
 * it resolved to when the ruleset was built (device and inode, or
 * nothing there), else the entry is stale and built again: a directory
 * created, removed or replaced since is never served an old ruleset.
 *
 * The cached rulesets are fds of the host's table. The lock is held while
 * a cell thread takes its private copy of the table (unshare), so the fd
 * it finds is the ruleset's in the copy; the oldest entry's fd is closed
 * only under the lock. Thread-safe.
 */
#ifndef ISO_LANDLOCK_CACHE_H
#define ISO_LANDLOCK_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confine.h"
#include "landlock.h"

typedef struct iso_landlock_key {
    struct iso_landlock_ruleset_attr attr;
    const iso_fs_grant *grants;
    size_t n_grants, n_fixed; /* the first n_fixed: the runtime's */
    const uint16_t *connect, *bind;
    size_t n_connect, n_bind;
} iso_landlock_key;

/* What a grant's path resolved to when its rule was made. */
typedef struct iso_landlock_ident {
    uint64_t dev, ino;
    bool absent; /* nothing there: no rule */
} iso_landlock_ident;

/* find and add run between lock and unlock. */
void iso_landlock_cache_lock(void);
void iso_landlock_cache_unlock(void);

/* The cache's fd of the ruleset built for key, still fresh, and how many
 * of its grants were missing; -1 when there is none. The fd stays the
 * cache's: valid until unlock. */
int iso_landlock_cache_find(const iso_landlock_key *key, size_t *skipped);

/* Keep rfd (built for key; ids[i]: what grant i resolved to) in place of
 * a stale entry for key, or of the oldest when full. False when out of
 * memory: rfd is still the caller's. */
bool iso_landlock_cache_add(const iso_landlock_key *key,
                            const iso_landlock_ident *ids, int rfd,
                            size_t skipped);

typedef struct iso_landlock_cache_stats {
    size_t entries;
    uint64_t hits, misses, stale;
} iso_landlock_cache_stats;

void iso_landlock_cache_stats_get(iso_landlock_cache_stats *st);

/* Forget (and close) every ruleset (tests). */
void iso_landlock_cache_clear(void);

#endif
