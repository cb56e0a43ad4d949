/* Spin-then-futex wake-ups between the Lua thread and cell threads. */
#include <errno.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "handoff.h"

double iso_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double iso_wallclock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void iso_signal_notify(iso_signal *s)
{
    atomic_fetch_add_explicit(&s->seq, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&s->sleepers, memory_order_seq_cst))
        syscall(SYS_futex, &s->seq, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL,
                0);
}

/* Spin until `until`; past `yield_after`, also yield the CPU, in case the
 * thread we wait for is runnable on this very CPU (a busy 2-vCPU VM). */
static int spin(iso_signal *s, uint32_t seen, double yield_after, double until)
{
    for (unsigned i = 0;; i++) {
        if (iso_signal_peek(s) != seen)
            return 0;
        iso_cpu_relax();
        if ((i & 63) != 63)
            continue;
        double t = iso_now();
        if (t >= until)
            return -1;
        if (t >= yield_after)
            sched_yield();
    }
}

static void to_timespec(double seconds, struct timespec *ts)
{
    if (seconds < 0)
        seconds = 0;
    ts->tv_sec = (time_t)seconds;
    ts->tv_nsec = (long)((seconds - (double)ts->tv_sec) * 1e9);
}

int iso_signal_sleep(iso_signal *s, uint32_t seen, double deadline)
{
    atomic_fetch_add_explicit(&s->sleepers, 1, memory_order_seq_cst);
    int rc = 0;
    while (iso_signal_peek(s) == seen) {
        struct timespec rel, *timeout = NULL;
        if (deadline >= 0) {
            double left = deadline - iso_now();
            if (left <= 0) {
                rc = -1;
                break;
            }
            to_timespec(left, &rel);
            timeout = &rel;
        }
        syscall(SYS_futex, &s->seq, FUTEX_WAIT_PRIVATE, seen, timeout, NULL, 0);
    }
    atomic_fetch_sub_explicit(&s->sleepers, 1, memory_order_seq_cst);
    return rc;
}

int iso_signal_wait(iso_signal *s, uint32_t seen, double deadline)
{
    double start = iso_now();
    double spin_until = start + ISO_SPIN_NS * 1e-9;
    if (deadline >= 0 && deadline < spin_until)
        spin_until = deadline;
    if (spin(s, seen, start + ISO_SPIN_NS * 0.2e-9, spin_until) == 0)
        return 0;
    return iso_signal_sleep(s, seen, deadline);
}

/* SIGPIPE is sent to the thread that wrote to a broken pipe or socket and,
 * by default, ends the whole process: a guest's send() on a closed socket
 * would kill the host. Blocked, the write fails with EPIPE instead
 * (BrokenPipeError in Python). A new thread inherits its creator's mask,
 * and threads a guest starts inherit the cell thread's. */
int iso_thread_start(pthread_t *t, const pthread_attr_t *attr,
                     void *(*fn)(void *), void *arg)
{
    sigset_t pipe, old;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    int e = pthread_create(t, attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return e;
}

bool iso_thread_detached_with(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    if (iso_thread_start(&t, NULL, fn, arg) != 0)
        return false;
    pthread_detach(t);
    return true;
}

bool iso_thread_detached(void *(*fn)(void *))
{
    return iso_thread_detached_with(fn, NULL);
}

void iso_cond_wait_for(pthread_cond_t *cv, pthread_mutex_t *mu, double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ns = ts.tv_nsec + (long)(seconds * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(cv, mu, &ts);
}

bool iso_cond_quiet_since(pthread_cond_t *cv, pthread_mutex_t *mu,
                          double since, double quiet_s)
{
    double left = since + quiet_s - iso_now();
    if (left <= 0)
        return true;
    iso_cond_wait_for(cv, mu, left);
    return false;
}

bool iso_room_for_one(void **items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return true;
    size_t more = *cap ? 2 * *cap : 16;
    void *p = realloc(*items, more * size);
    if (!p)
        return false;
    *items = p, *cap = more;
    return true;
}
