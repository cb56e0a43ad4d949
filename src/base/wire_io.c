/*
 * Framed socket I/O (see wire.h): a 4-byte big-endian length, then a body
 * the codec reads or writes. A peer that only claims a big frame gets no
 * big buffer.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "handoff.h"
#include "wire_internal.h"

_Static_assert(ISO_FRAME_MAX <= UINT32_MAX, "a length prefix is 32 bits");

#define WIRE_PREFIX 4
#define WIRE_BUF_MIN ((size_t)64 << 10) /* a first read takes most frames */
#define WIRE_BUF_KEEP ((size_t)1 << 20) /* idle and bigger: give it back */
#define WIRE_SPIN_S 50e-6  /* poll's wake-up costs ~20 us: spin this long */
#define WIRE_YIELD_S 10e-6 /* then yield, the peer may need this very CPU */

void iso_wire_init(iso_wire *w, int fd)
{
    memset(w, 0, sizeof *w);
    w->fd = fd;
}

void iso_wire_free(iso_wire *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

static int sys_fail(iso_error *err, const char *call, int code)
{
    if (code == EPIPE || code == ECONNRESET) /* the worker is gone */
        return iso_error_set(err, ISO_CRASHED, "eof");
    iso_error_set(err, ISO_CRASHED, "%s: %s", call, strerror(code));
    if (err)
        err->code = code;
    return -1;
}

static int send_all(int fd, const char *p, size_t n, iso_error *err)
{
    while (n > 0) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r >= 0) {
            p += r;
            n -= (size_t)r;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* a non-blocking fd: wait for room, as promised */
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, -1);
        } else if (errno != EINTR) {
            return sys_fail(err, "send", errno);
        }
    }
    return 0;
}

int iso_wire_send(iso_wire *w, const iso_frame *f, iso_error *err)
{
    char *buf;
    size_t len;
    /* Pack after room for the prefix: one buffer, one send(). */
    if (iso_frame_pack(f, WIRE_PREFIX, &buf, &len, err) < 0)
        return -1;
    uint32_t n = (uint32_t)(len - WIRE_PREFIX);
    unsigned char *p = (unsigned char *)buf;
    p[0] = (unsigned char)(n >> 24);
    p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8);
    p[3] = (unsigned char)n;
    int rc = send_all(w->fd, buf, len, err);
    free(buf);
    return rc;
}

/* Unread bytes live in buf[off, len). */
static void wire_consume(iso_wire *w, size_t n)
{
    w->off += n;
    if (w->off < w->len)
        return;
    w->off = w->len = 0;
    if (w->cap > WIRE_BUF_KEEP) { /* a big frame passed: give it back */
        free(w->buf);
        w->buf = NULL;
        w->cap = 0;
    }
}

/* Length of the frame at the read position (the prefix is buffered). */
static size_t frame_len(const iso_wire *w)
{
    const unsigned char *p = (const unsigned char *)w->buf + w->off;
    return (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
}

/* 1 with f filled when a whole frame is buffered, 0 when more is needed. */
static int take_frame(iso_wire *w, iso_frame *f, iso_error *err)
{
    if (w->len - w->off < WIRE_PREFIX)
        return 0;
    size_t n = frame_len(w);
    if (n > ISO_FRAME_MAX)
        return iso_wire_violation(err, "a frame of %zu bytes (the limit is %zu)", n,
                     (size_t)ISO_FRAME_MAX);
    if (w->len - w->off - WIRE_PREFIX < n)
        return 0;
    int rc = iso_frame_decode(w->buf + w->off + WIRE_PREFIX, n, f, err);
    wire_consume(w, WIRE_PREFIX + n);
    return rc < 0 ? -1 : 1;
}

/* Room for at least one more byte: move the unread bytes to the front, or
 * grow by doubling, never past the frame being received (a peer that only
 * claims 64 MiB gets no 64 MiB buffer). */
static int wire_room(iso_wire *w, iso_error *err)
{
    if (w->off > 0) {
        memmove(w->buf, w->buf + w->off, w->len - w->off);
        w->len -= w->off;
        w->off = 0;
        return 0;
    }
    size_t cap = w->cap ? 2 * w->cap : WIRE_BUF_MIN;
    if (w->len >= WIRE_PREFIX && cap > WIRE_PREFIX + frame_len(w))
        cap = WIRE_PREFIX + frame_len(w);
    char *buf = realloc(w->buf, cap);
    if (!buf)
        return iso_wire_oom(err);
    w->buf = buf;
    w->cap = cap;
    return 0;
}

/* Read what is there without blocking: 1 read some, 0 nothing yet. */
static int wire_fill(iso_wire *w, iso_error *err)
{
    if (w->len == w->cap && wire_room(w, err) < 0)
        return -1;
    for (;;) {
        ssize_t r = recv(w->fd, w->buf + w->len, w->cap - w->len, MSG_DONTWAIT);
        if (r > 0) {
            w->len += (size_t)r;
            return 1;
        }
        if (r == 0)
            return iso_error_set(err, ISO_CRASHED, "eof");
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno != EINTR)
            return sys_fail(err, "recv", errno);
    }
}

/* Let time pass until the fd may be readable: spin for the first ~50 us
 * since `start` (the caller retries recv in between), then sleep in ppoll
 * until data, hang-up or the deadline. */
static void wire_wait(iso_wire *w, double start, double now, double deadline)
{
    if (now - start < WIRE_SPIN_S) {
        for (int i = 0; i < 32; i++)
            iso_cpu_relax();
        if (now - start > WIRE_YIELD_S)
            sched_yield();
        return;
    }
    struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
    struct timespec ts, *tp = NULL;
    if (deadline >= 0) {
        double left = deadline - now;
        ts.tv_sec = (time_t)left;
        ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
        tp = &ts;
    }
    ppoll(&pfd, 1, tp, NULL); /* EINTR, data or timeout: the caller looks */
}

int iso_wire_recv(iso_wire *w, iso_frame *f, double deadline, iso_error *err)
{
    double start = -1;
    memset(f, 0, sizeof *f);
    for (;;) {
        int rc = take_frame(w, f, err);
        if (rc != 0)
            return rc > 0 ? 0 : -1;
        rc = wire_fill(w, err);
        if (rc < 0)
            return -1;
        if (rc > 0)
            continue;
        double now = iso_now();
        if (deadline >= 0 && now >= deadline)
            return iso_error_set(err, ISO_TIMEOUT,
                                 "no frame from the peer in time");
        if (start < 0)
            start = now;
        wire_wait(w, start, now, deadline);
    }
}
