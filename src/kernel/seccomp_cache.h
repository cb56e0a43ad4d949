/*
 * Compiled seccomp programs for cell threads, by what they were compiled
 * from. libseccomp stays the compiler; building and generating a filter
 * costs ~0.2 ms, installing a compiled one a few microseconds, and most
 * cells of a host share one of a handful of deny lists.
 *
 * The key is everything the program depends on: the mode's list (compat
 * or full), the deny action (a cell thread's EPERM or a worker's trap),
 * whether processes may be created, which socket calls the policy's net
 * rules allow, the policy's deny list (as a set:
 * order does not matter) and the native architecture. Thread-safe.
 */
#ifndef ISO_SECCOMP_CACHE_H
#define ISO_SECCOMP_CACHE_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Socket calls the net rules allow (iso_seccomp_key.net bits). */
#define ISO_SECCOMP_NET_LISTEN 1u  /* listen(): a bind rule */
#define ISO_SECCOMP_NET_UNIX 2u    /* socket(AF_UNIX): a unix: rule */
#define ISO_SECCOMP_NET_NETLINK 4u /* NETLINK_ROUTE sockets: IP rules */

typedef struct iso_seccomp_key {
    bool compat, in_thread, processes;
    bool audit; /* learn mode: the deny list logs (SECCOMP_RET_LOG) */
    unsigned net;            /* ISO_SECCOMP_NET_* */
    const char *const *deny; /* the policy's syscalls.deny */
    size_t n_deny;
} iso_seccomp_key;

/* Bytes kept with a program (a worker's trap names); data malloc'd. */
typedef struct iso_seccomp_extra {
    void *data;
    size_t len;
} iso_seccomp_extra;

/* A private copy of the program compiled for key into prog (the caller
 * frees prog->filter) and how many calls it denies, and (extra not NULL)
 * a copy of the bytes kept with it (the caller frees extra->data; NULL
 * when none); false when none is cached (or no memory for the copy: then
 * compile again). */
bool iso_seccomp_cache_find(const iso_seccomp_key *key, struct sock_fprog *prog,
                            size_t *denied, iso_seccomp_extra *extra);

/* Remember a copy of prog (and of extra, may be NULL) for key. Best
 * effort: out of memory, or a key already cached, leaves the cache as it
 * was. The oldest entry makes room when the cache is full. */
void iso_seccomp_cache_add(const iso_seccomp_key *key,
                           const struct sock_fprog *prog, size_t denied,
                           const iso_seccomp_extra *extra);

typedef struct iso_seccomp_cache_stats {
    size_t entries;
    uint64_t hits, misses;
} iso_seccomp_cache_stats;

void iso_seccomp_cache_stats_get(iso_seccomp_cache_stats *st);

/* Forget every program (tests). */
void iso_seccomp_cache_clear(void);

#endif
