/*
 * A cell's host-side queues and the doorbell (cell_queue.h): the outbox a
 * cell thread pushes to, the limits on what the host holds, and the one
 * signal iso_cell_wait_any sleeps on for many cells.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cell_internal.h"
#include "cell_queue.h"

/* ---- messages and queues ---------------------------------------------- */

/* Rung by every sub-interpreter cell's push besides its own to_host, so
 * that iso_cell_wait_any sleeps on one address for many cells. A ring from
 * a cell outside the waited-for set costs the waiter one more look. A
 * waiter that must also watch process cells' sockets sleeps in ppoll
 * instead, and asks (pollers) for the ring to reach a socket too.
 *
 * That socket pair is made once, before the first cell thread confines
 * itself: a confined cell thread has a private fd table (confine.c) that
 * keeps only the writing end, so a guest can ring (a spurious wake-up) but
 * never read the host's wake-ups. A socket, not a pipe or an eventfd: a
 * pipe's other end can be reopened through /proc/self/fd/N (Landlock does
 * not mediate pipes), a socket cannot (ENXIO), and an eventfd is one fd
 * for both directions. */
static iso_signal doorbell;
static _Atomic uint32_t doorbell_pollers;
static int doorbell_fds[2] = {-1, -1}; /* [0] the host reads, [1] rings */
static pthread_once_t doorbell_once = PTHREAD_ONCE_INIT;

static void doorbell_make(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) <
        0)
        return; /* the waiter then looks at the doorbell every ms */
    shutdown(sv[0], SHUT_WR); /* nothing ever flows to the ringing end */
    shutdown(sv[1], SHUT_RD);
    doorbell_fds[0] = sv[0], doorbell_fds[1] = sv[1];
}

int iso_cell_doorbell_fd(void)
{
    pthread_once(&doorbell_once, doorbell_make);
    return doorbell_fds[1];
}

void iso_doorbell_ring(void)
{
    iso_signal_notify(&doorbell);
    if (atomic_load(&doorbell_pollers)) {
        char one = 1;
        if (send(doorbell_fds[1], &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
            /* full: the waiter is woken already */
        }
    }
}

void iso_msg_queue_push(iso_msg_queue *q, iso_msg *m)
{
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
}

iso_msg *iso_msg_queue_pop(iso_msg_queue *q)
{
    iso_msg *m = q->head;
    if (m) {
        q->head = m->next;
        if (!q->head)
            q->tail = NULL;
        m->next = NULL;
    }
    return m;
}

void iso_msg_queue_clear(iso_msg_queue *q)
{
    iso_msg *m;
    while ((m = iso_msg_queue_pop(q)))
        iso_msg_destroy(m);
}

void iso_cell_wake_host(iso_cell *c)
{
    iso_signal_notify(&c->ch.to_host);
    iso_doorbell_ring();
}

/* ---- the host's queues, bounded ---------------------------------------- */

static _Atomic int64_t queue_bytes_default = ISO_QUEUE_BYTES_DEFAULT;
static _Atomic int64_t queue_values_default = ISO_QUEUE_VALUES_DEFAULT;

int iso_queue_defaults_set(int64_t bytes, int64_t values, iso_error *err)
{
    if (bytes <= 0 || values <= 0)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "queue_bytes and queue_values must be positive "
                             "integers");
    atomic_store(&queue_bytes_default, bytes);
    atomic_store(&queue_values_default, values);
    return 0;
}

void iso_queue_defaults_get(int64_t *bytes, int64_t *values)
{
    *bytes = atomic_load(&queue_bytes_default);
    *values = atomic_load(&queue_values_default);
}

/* Messages that wait in a queue until the host takes them; a result and a
 * broker request have one slot each instead. */
static bool queued_type(iso_msg_type type)
{
    return type != ISO_MSG_RESULT && type != ISO_MSG_REQUEST;
}

int iso_cell_queue_charge(iso_cell *c, iso_msg *m)
{
    int64_t size = (int64_t)(iso_value_footprint(&m->value) + sizeof *m);
    int64_t bytes = atomic_fetch_add(&c->queued_bytes, size) + size;
    int64_t values = atomic_fetch_add(&c->queued_values, 1) + 1;
    if ((c->queue_bytes > 0 && bytes > c->queue_bytes) ||
        (c->queue_values > 0 && values > c->queue_values)) {
        atomic_fetch_sub(&c->queued_bytes, size);
        atomic_fetch_sub(&c->queued_values, 1);
        return -1;
    }
    m->charged = size;
    return 0;
}

void iso_cell_queue_why(iso_cell *c, char *buf, size_t n)
{
    if (c->queue_values > 0 &&
        atomic_load(&c->queued_values) >= c->queue_values)
        snprintf(buf, n, "limits.queue_values=%lld messages",
                 (long long)c->queue_values);
    else
        snprintf(buf, n, "limits.queue_bytes=%lld bytes",
                 (long long)c->queue_bytes);
}

iso_msg *iso_cell_refund(iso_cell *c, iso_msg *m)
{
    if (m && m->charged) {
        atomic_fetch_sub(&c->queued_bytes, m->charged);
        atomic_fetch_sub(&c->queued_values, 1);
        m->charged = 0;
    }
    return m;
}

int iso_cell_push(iso_cell *c, iso_msg *m)
{
    /* An abandoned thread's guest runs on after kill: nothing it sends
     * from then on is "posted before it was killed". */
    if (atomic_load(&c->ch.abandoned) ||
        (queued_type(m->type) && iso_cell_queue_charge(c, m))) {
        iso_msg_destroy(m);
        return -1;
    }
    pthread_mutex_lock(&c->ch.mu);
    iso_msg_queue_push(&c->ch.outbox, m);
    pthread_mutex_unlock(&c->ch.mu);
    iso_signal_notify(&c->ch.to_host);
    iso_doorbell_ring();
    return 0;
}

static void to_timespec(double seconds, struct timespec *ts)
{
    if (seconds < 0)
        seconds = 0;
    ts->tv_sec = (time_t)seconds;
    ts->tv_nsec = (long)((seconds - (double)ts->tv_sec) * 1e9);
}

/* The doorbell's reading end for ppoll (-1 when there is none). */
static int doorbell_pollfd(void)
{
    pthread_once(&doorbell_once, doorbell_make);
    return doorbell_fds[0];
}

/* ppoll the sockets in fds[0..nfds) and, with cell threads in the set,
 * the doorbell (its socket in the last slot, left free by the caller). */
static void poll_any(struct pollfd *fds, nfds_t nfds, bool threads,
                     uint32_t seen, double wake)
{
    int bell = threads ? doorbell_pollfd() : -1;
    double often = iso_now() + ISO_WAIT_ANY_SLICE_S;
    if (threads && bell < 0 && (wake < 0 || often < wake))
        wake = often; /* no socket: look at the doorbell often */
    if (bell >= 0)
        fds[nfds++] = (struct pollfd){.fd = bell, .events = POLLIN};
    atomic_fetch_add(&doorbell_pollers, 1);
    if (bell < 0 || iso_signal_peek(&doorbell) == seen) {
        struct timespec ts;
        to_timespec(wake - iso_now(), &ts);
        ppoll(fds, nfds, wake < 0 ? NULL : &ts, NULL);
    }
    atomic_fetch_sub(&doorbell_pollers, 1);
    /* one read, not a loop: a guest that rings without pause must not
     * keep the host here (what is left makes the next ppoll return) */
    char rings[4096];
    if (bell >= 0 && recv(bell, rings, sizeof rings, MSG_DONTWAIT) > 0)
        iso_loop_kick(); /* a ring a loop waits for, maybe: pass it on */
}

int iso_doorbell_watch(void)
{
    pthread_once(&doorbell_once, doorbell_make);
    if (doorbell_fds[0] >= 0)
        atomic_fetch_add(&doorbell_pollers, 1); /* for good: loop.c */
    return doorbell_fds[0];
}

void iso_doorbell_clear(void)
{
    /* one read, as in poll_any: what is left keeps the loop fd readable */
    char rings[4096];
    if (doorbell_fds[0] >= 0 &&
        recv(doorbell_fds[0], rings, sizeof rings, MSG_DONTWAIT) < 0) {
        /* EAGAIN: nothing rang */
    }
}

uint32_t iso_doorbell_peek(void)
{
    return iso_signal_peek(&doorbell);
}

void iso_doorbell_sleep(struct pollfd *fds, nfds_t nfds, bool threads,
                        uint32_t seen, double wake)
{
    if (nfds == 0)
        iso_signal_sleep(&doorbell, seen, wake);
    else
        poll_any(fds, nfds, threads, seen, wake);
}
