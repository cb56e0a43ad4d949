/*
 * The event-loop fd (iso_loop_fd): one epoll fd an application's loop
 * (luv, cqueues, anything that polls) watches for the whole host. Not an
 * eventfd alone, because what needs the host arrives by three roads:
 *   - cell threads ring the doorbell's socket (cell_queue.c); a confined
 *     cell thread keeps only that fd, so no new fd can reach it; the
 *     watchdog rings it too when a limit fires (the wake hook);
 *   - a process cell's worker writes frames to its own socket;
 *   - a limit (wall_ms, cpu_ms, an interrupt due) is found only when the
 *     host looks at the cell: a timerfd armed for the next one.
 * Plus an eventfd for the host's own threads and for the Lua side
 * (iso_loop_kick). Everything is level-triggered except the process
 * sockets, which are one-shot and re-armed for the cells the loop still
 * waits on: a cell it no longer waits on wakes it at most once.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "cell_internal.h"
#include "cell_queue.h"

static int loop_fd = -1;         /* host thread */
static _Atomic int kick_fd = -1; /* any thread writes it */
static int timer_fd = -1;

static int watch_fd(int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(loop_fd, EPOLL_CTL_MOD, fd, &ev) == 0)
        return 0;
    return errno == ENOENT ? epoll_ctl(loop_fd, EPOLL_CTL_ADD, fd, &ev) : -1;
}

static int loop_make(iso_error *err)
{
    int kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    loop_fd = epoll_create1(EPOLL_CLOEXEC);
    int bell = iso_doorbell_watch();
    if (kick < 0 || timer_fd < 0 || loop_fd < 0 || watch_fd(kick, EPOLLIN) ||
        watch_fd(timer_fd, EPOLLIN) || (bell >= 0 && watch_fd(bell, EPOLLIN))) {
        int e = errno;
        return iso_error_set(err, ISO_CRASHED, "cannot make the loop fd: %s",
                             strerror(e));
    }
    atomic_store(&kick_fd, kick);
    return 0;
}

int iso_loop_fd(iso_error *err)
{
    if (loop_fd < 0 && loop_make(err)) {
        if (loop_fd >= 0)
            close(loop_fd); /* the others stay: a retry reuses nothing */
        loop_fd = -1;
        return -1;
    }
    return loop_fd;
}

void iso_loop_kick(void)
{
    int fd = atomic_load(&kick_fd);
    if (fd >= 0 && eventfd_write(fd, 1) < 0) {
        /* the counter is full: it is readable already */
    }
}

void iso_loop_drain(void)
{
    uint64_t n;
    int fd = atomic_load(&kick_fd);
    if (fd < 0)
        return;
    if (read(fd, &n, sizeof n) < 0) {
        /* EAGAIN: nobody kicked */
    }
    if (read(timer_fd, &n, sizeof n) < 0) {
        /* EAGAIN: not due yet */
    }
    iso_doorbell_clear();
}

static void arm_timer(double wake)
{
    struct itimerspec its = {0}; /* zero: disarmed */
    if (wake >= 0) {
        wake = wake > 1e-6 ? wake : 1e-6; /* zero would disarm it */
        its.it_value.tv_sec = (time_t)wake;
        its.it_value.tv_nsec =
            (long)((wake - (double)its.it_value.tv_sec) * 1e9);
    }
    timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

void iso_loop_arm(iso_cell *const *cells, size_t n, double wake)
{
    if (loop_fd < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        const iso_cell_ops *ops = cells[i]->ops;
        int fd = ops->poll_fd && iso_cell_is_open(cells[i])
                     ? ops->poll_fd(cells[i]->handle)
                     : -1;
        if (fd >= 0)
            watch_fd(fd, EPOLLIN | EPOLLONESHOT);
    }
    arm_timer(wake);
}
