/*
 * What a backend tells the host about one of its cells, without knowing
 * the host's cell object: the host hands a backend these hooks when it
 * starts a cell (the start op), with its own context for that cell, and
 * the backend calls them instead of reaching up into the host. A backend
 * whose own thread runs the cell also gets the two things that thread
 * shares with the host: the cell's channel and its guest.
 */
#ifndef ISO_HOST_HOOKS_H
#define ISO_HOST_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate.h"

/* Where a cell is in its life, as the host sees it. */
typedef enum iso_state {
    ISO_STATE_STARTING,
    ISO_STATE_IDLE,
    ISO_STATE_CLOSED,
    ISO_STATE_DEAD,
} iso_state;

/* The rollout mode (the host's modes.c decides it). */
typedef enum iso_mode {
    ISO_MODE_DEV,
    ISO_MODE_HARDENED,
    ISO_MODE_COMPAT,
    ISO_MODE_LEARN /* what the rules would deny runs, recorded (learn.lua) */
} iso_mode;

typedef struct iso_host_hooks {
    /* The mode the host ran in when it started the cell. A warm cell
     * (started ahead, adopted by a later spawn) may see a newer mode by
     * then: what it decides at adoption it asks the host's mode then. */
    iso_mode mode;
    void *ctx; /* the host's own state for the cell: passed to each hook */
    /* What a backend whose own thread runs the cell (the sub-interpreter
     * backend) shares with the host: the cell's channel (cell_channel.h)
     * and its guest (src/python/guest.h: the backend's, which this layer
     * does not know). Both live as long as the host's cell (hold). */
    struct iso_cell_channel *ch;
    struct iso_guest *guest;
    /* Host thread: sort m (consumed) into the host's queues; -1 (m
     * destroyed), with err saying which limit (ISO_OUTPUT), when it would
     * pass a queue limit. */
    int (*deliver)(void *ctx, iso_msg *m, iso_error *err);
    /* Host thread: the cell is over (state CLOSED or DEAD): its name is
     * free and nothing runs in it any more. */
    void (*retire)(void *ctx, iso_state state);
    /* Any thread: have a host that waits on the cell look again. */
    void (*wake)(void *ctx);
    /* Any thread: phase name of the cell's spawn ended at `at` (iso_now()
     * seconds; a worker's clock is the host's). */
    void (*phase)(void *ctx, const char *name, double at);
    /* Any thread: keep the host's cell (and so what the backend keeps for
     * it) alive while a thread of the backend uses it; let it go (the last
     * one frees it, the backend's state through its destroy op). */
    void (*hold)(void *ctx);
    void (*release)(void *ctx);
    /* A cell thread's way to its host (the sub-interpreter backend): any
     * thread, hand m (consumed) over through the cell's outbox, counted
     * against the queue limits first when it is a post, log, metric or
     * denial: -1 (m destroyed) when it would pass one; which limit that
     * was, as "limits.<name>=N <unit>"; host thread, move the outbox into
     * the host's queues (true when anything moved); the fd a confined cell
     * thread keeps to ring the host with (-1 if there is none). */
    int (*push)(void *ctx, iso_msg *m);
    void (*queue_why)(void *ctx, char *buf, size_t n);
    bool (*drain)(void *ctx);
    int (*doorbell_fd)(void *ctx);
    /* Host thread: the mode now (a warm cell adopted by a later spawn
     * decides by it, not by mode). */
    iso_mode (*mode_now)(void *ctx);
    /* Host thread: does a broker request the cell sent wait for the host
     * to take it? (A cell asks one at a time.) */
    bool (*request_waiting)(void *ctx);
    /* Host thread, while the cell starts or as its confinement is
     * awaited: rows (moved) become what confines the cell (one map per
     * layer). */
    void (*confined)(void *ctx, iso_value *rows);
    /* The BPF guard of the cell's cgroup, which the host keeps (a reload
     * updates it): install the cell's plan for the cgroup at dir (id 0:
     * look it up) and route its denials to the cell; false, with why, when
     * it cannot. Remove it (before the cgroup goes). Its confinement row,
     * appended to list (why: the reason it is missing). */
    bool (*guard)(void *ctx, const char *dir, uint64_t id, char *why, size_t n);
    void (*unguard)(void *ctx);
    int (*guard_row)(void *ctx, iso_value *list, const char *scope,
                     const char *why);
} iso_host_hooks;

static inline int iso_host_deliver(const iso_host_hooks *h, iso_msg *m,
                                   iso_error *err)
{
    return h->deliver(h->ctx, m, err);
}
static inline void iso_host_retire(const iso_host_hooks *h, iso_state state)
{
    h->retire(h->ctx, state);
}
static inline void iso_host_wake(const iso_host_hooks *h)
{
    h->wake(h->ctx);
}
static inline void iso_host_phase(const iso_host_hooks *h, const char *name,
                                  double at)
{
    h->phase(h->ctx, name, at);
}

static inline void iso_host_hold(const iso_host_hooks *h)
{
    h->hold(h->ctx);
}
/* h may live in what this frees: it is not read after the call. */
static inline void iso_host_release(const iso_host_hooks *h)
{
    h->release(h->ctx);
}
static inline int iso_host_push(const iso_host_hooks *h, iso_msg *m)
{
    return h->push(h->ctx, m);
}
static inline void iso_host_queue_why(const iso_host_hooks *h, char *buf,
                                      size_t n)
{
    h->queue_why(h->ctx, buf, n);
}
static inline bool iso_host_drain(const iso_host_hooks *h)
{
    return h->drain(h->ctx);
}
static inline int iso_host_doorbell_fd(const iso_host_hooks *h)
{
    return h->doorbell_fd(h->ctx);
}
static inline iso_mode iso_host_mode_now(const iso_host_hooks *h)
{
    return h->mode_now(h->ctx);
}
static inline bool iso_host_request_waiting(const iso_host_hooks *h)
{
    return h->request_waiting(h->ctx);
}
static inline void iso_host_confined(const iso_host_hooks *h, iso_value *rows)
{
    h->confined(h->ctx, rows);
}
static inline bool iso_host_guard(const iso_host_hooks *h, const char *dir,
                                  uint64_t id, char *why, size_t n)
{
    return h->guard(h->ctx, dir, id, why, n);
}
static inline void iso_host_unguard(const iso_host_hooks *h)
{
    h->unguard(h->ctx);
}
static inline int iso_host_guard_row(const iso_host_hooks *h, iso_value *list,
                                     const char *scope, const char *why)
{
    return h->guard_row(h->ctx, list, scope, why);
}

#endif
