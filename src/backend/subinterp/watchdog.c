/*
 * The watchdog: one thread that interrupts sub-interpreter requests past
 * wall_ms, cpu_ms or (a guest that swallows MemoryError) mem, also while
 * the host is not waiting for them (start_exec, then other work). It only
 * interrupts, which is safe from any thread. The host turns what it found
 * into the request's error kind, and abandons a guest that ignores the
 * interrupts, the next time it looks at the cell (cell.c).
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "py_alloc.h"
#include "subinterp.h"

#define CHECK_EVERY_S 0.01

typedef struct watch {
    iso_sub *s; /* a hold of its own on the host's cell */
    uint64_t seq;
    double started;
    iso_kind found; /* ISO_OK until a limit is passed */
    double since, last_interrupt;
} watch;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    watch *w;
    size_t n, cap;
    bool running;
} dog = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, false};

/* Which limit w's request has passed (ISO_OK: none). */
static iso_kind passed(const watch *w, double now)
{
    const iso_sub *s = w->s;
    if (s->wall_ms > 0 && now >= w->started + (double)s->wall_ms / 1000.0)
        return ISO_TIMEOUT;
    if (s->cpu_ms > 0 && iso_sub_cpu_ms(s) >= s->cpu_ms)
        return ISO_CPU;
    if (iso_mem_account_overrun(s->guest->mem_account))
        return ISO_MEMORY;
    return ISO_OK;
}

static void look(watch *w, double now)
{
    if (atomic_load(&w->s->running_seq) != w->seq)
        return; /* not started yet, or over */
    if (!w->found && (w->found = passed(w, now)) != ISO_OK) {
        w->since = now;
        iso_host_wake(&w->s->host); /* it takes over: kind, and abandonment */
    }
    if (w->found && now - w->last_interrupt >= ISO_INTERRUPT_EVERY_S) {
        w->last_interrupt = now;
        iso_sub_interrupt(w->s, w->seq);
    }
}

static void *run(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&dog.mu);
    for (;;) {
        while (dog.n == 0)
            pthread_cond_wait(&dog.cv, &dog.mu);
        double now = iso_now();
        for (size_t i = 0; i < dog.n; i++)
            look(&dog.w[i], now);
        iso_cond_wait_for(&dog.cv, &dog.mu, CHECK_EVERY_S);
    }
    return NULL;
}

/* dog.mu held: drop s's watch, if any. The reference goes after the
 * unlock: it may be the last. */
static iso_sub *take_out(iso_sub *s)
{
    for (size_t i = 0; i < dog.n; i++)
        if (dog.w[i].s == s) {
            dog.w[i] = dog.w[--dog.n];
            return s;
        }
    return NULL;
}

int iso_watchdog_watch(iso_sub *s, uint64_t seq, double started)
{
    pthread_mutex_lock(&dog.mu);
    iso_sub *old = take_out(s);
    if (!dog.running)
        dog.running = iso_thread_detached(run);
    bool ok = dog.running &&
              iso_room_for_one((void **)&dog.w, &dog.cap, dog.n, sizeof *dog.w);
    if (ok) {
        iso_host_hold(&s->host);
        dog.w[dog.n++] = (watch){.s = s, .seq = seq, .started = started};
        pthread_cond_signal(&dog.cv);
    }
    pthread_mutex_unlock(&dog.mu);
    if (old)
        iso_host_release(&old->host);
    return ok ? 0 : -1;
}

void iso_watchdog_forget(iso_sub *s)
{
    pthread_mutex_lock(&dog.mu);
    iso_sub *old = take_out(s);
    pthread_mutex_unlock(&dog.mu);
    if (old)
        iso_host_release(&old->host);
}

iso_kind iso_watchdog_found(iso_sub *s, uint64_t seq, double *since)
{
    iso_kind kind = ISO_OK;
    pthread_mutex_lock(&dog.mu);
    for (size_t i = 0; i < dog.n; i++)
        if (dog.w[i].s == s && dog.w[i].seq == seq && dog.w[i].found) {
            kind = dog.w[i].found;
            *since = dog.w[i].since;
        }
    pthread_mutex_unlock(&dog.mu);
    return kind;
}
