/*
 * iso_signal: a one-way wake-up between two threads, tuned for this VM.
 *
 * A condvar or futex round trip costs 15-20 us here (a halted vCPU must be
 * woken), a spin 0.4 us. So the waiter spins briefly, then sleeps on a
 * futex; the notifier only pays for FUTEX_WAKE when someone sleeps.
 */
#ifndef ISO_HANDOFF_H
#define ISO_HANDOFF_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct iso_signal {
    _Atomic uint32_t seq;
    _Atomic uint32_t sleepers;
} iso_signal;

#define ISO_SPIN_NS 50000 /* how long a waiter spins before it sleeps */

static inline uint32_t iso_signal_peek(iso_signal *s)
{
    return atomic_load_explicit(&s->seq, memory_order_acquire);
}

/* A polite busy-wait step. */
static inline void iso_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

void iso_signal_notify(iso_signal *s);
/* Wait until the sequence moves past seen or the CLOCK_MONOTONIC deadline
 * (seconds; < 0 waits forever) passes. Returns 0, or -1 on deadline. */
int iso_signal_wait(iso_signal *s, uint32_t seen, double deadline);
/* The same without the spin: for a waiter that expects nothing soon and
 * would only take a CPU from the threads it waits for. */
int iso_signal_sleep(iso_signal *s, uint32_t seen, double deadline);
/* CLOCK_MONOTONIC and CLOCK_REALTIME in seconds. */
double iso_now(void);
double iso_wallclock(void);

/* Every thread the host starts (cell threads, interrupters, background
 * threads): pthread_create with SIGPIPE blocked in the new thread, so that
 * a write to a broken pipe there fails with EPIPE rather than killing the
 * process. Returns pthread_create's result. */
int iso_thread_start(pthread_t *t, const pthread_attr_t *attr,
                     void *(*fn)(void *), void *arg);
/* Background threads (the pool's refill, the watchdog, the cgroup reaper,
 * the GIL nudger): start fn detached; false when it could not be. */
bool iso_thread_detached(void *(*fn)(void *));
/* The same with an argument (a GIL door, py_runtime.c). */
bool iso_thread_detached_with(void *(*fn)(void *), void *arg);
/* Room for one more in the array *items of n items of `size` bytes (its
 * capacity *cap doubles); false when memory ran out. */
bool iso_room_for_one(void **items, size_t *cap, size_t n, size_t size);
/* pthread_cond_timedwait for `seconds` (cv on CLOCK_REALTIME, the default),
 * mu held. */
void iso_cond_wait_for(pthread_cond_t *cv, pthread_mutex_t *mu, double seconds);
/* mu held: true once quiet_s have passed since `since` (an iso_now());
 * otherwise wait on cv for the rest and return false (look again). The
 * warm pools refill only once spawns have paused this long. */
bool iso_cond_quiet_since(pthread_cond_t *cv, pthread_mutex_t *mu,
                          double since, double quiet_s);

#endif
