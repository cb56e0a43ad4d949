/*
 * The zygote's side of starting a worker child quickly: creating it right
 * in its cgroup (no migration, which takes the kernel's threadgroup lock
 * for writing), and, for a pool child, taking ahead of time the page
 * faults it would otherwise take after its CONFIG.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "setup.h"

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define ISO_CLONE_INTO_CGROUP 0x200000000ULL

/* The kernel's struct clone_args (Linux 5.7 layout, with cgroup); our own
 * copy, so as not to mix <linux/sched.h> with glibc's <sched.h>. */
struct iso_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        stack_size, tls, set_tid, set_tid_size, cgroup;
};

/* fork(), but into the cgroup whose directory is cgroup_fd (-1: none).
 * The zygote is single-threaded and holds no lock here, so a bare clone3
 * leaves the child's libc as consistent as fork() would (glibc's fork
 * handlers have nothing to do in a process with one thread). Where the
 * kernel refuses (before 5.7, or a cgroup it will not create into), a
 * plain fork: the child then joins by the fd before its CONFIG. */
pid_t iso_fork_into(int cgroup_fd, bool *born_in)
{
    *born_in = false;
    if (cgroup_fd >= 0) {
        struct iso_clone_args a = {.flags = ISO_CLONE_INTO_CGROUP,
                                   .exit_signal = SIGCHLD,
                                   .cgroup = (uint64_t)cgroup_fd};
        long pid = syscall(SYS_clone3, &a, sizeof a);
        if (pid >= 0) {
            *born_in = true;
            return (pid_t)pid;
        }
    }
    return fork();
}

/* Write to every resident page of each private writable mapping (the
 * same byte back): copy-on-write copies them now, while the pool child
 * waits, not while its first request does. Pages never touched stay
 * untouched (mincore), so the child's memory grows only by what it shares
 * with the zygote. A read-only mapping of a file (the interpreter's code
 * and constants) is read instead: fork gives the child none of its page
 * table entries, and each page it runs would otherwise be a fault. Only
 * pages in the page cache are read, so nothing comes from disk. Returns
 * the number of pages touched. */
/* Not instrumented: a sanitizer build would take the write to a heap
 * redzone (poisoned, but as writable as the rest) for a bug. */
__attribute__((no_sanitize_address)) static size_t
touch_range(uintptr_t lo, uintptr_t hi, long page, bool write)
{
    size_t n = (hi - lo) / (size_t)page, done = 0;
    unsigned char vec[256];
    for (size_t at = 0; at < n; at += sizeof vec) {
        size_t k = n - at < sizeof vec ? n - at : sizeof vec;
        if (mincore((void *)(lo + at * (size_t)page), k * (size_t)page, vec))
            return done;
        for (size_t i = 0; i < k; i++)
            if (vec[i] & 1) {
                volatile unsigned char *p =
                    (unsigned char *)(lo + (at + i) * (size_t)page);
                unsigned char byte = *p;
                if (write)
                    *p = byte;
                done++;
            }
    }
    return done;
}

/* Larger mappings are reservations, not heaps (a sanitizer's shadow
 * memory spans terabytes): walking them would take longer than the
 * faults it saves. */
#define TOUCH_MAX_BYTES (256ul << 20)

/* A line of /proc/self/maps: "lo-hi perms offset dev inode [path]" */
static size_t touch_line(const char *line, long page, uintptr_t stack)
{
    unsigned long lo, hi, inode;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s %*s %*s %lu", &lo, &hi, perms, &inode) != 4 ||
        hi - lo > TOUCH_MAX_BYTES)
        return 0;
    if (stack >= lo && stack < hi) /* ours, in use: faulted already */
        return 0;
    if (strcmp(perms, "rw-p") == 0)
        return touch_range(lo, hi, page, true);
    bool file_code = strcmp(perms, "r-xp") == 0 || strcmp(perms, "r--p") == 0;
    return file_code && inode != 0 ? touch_range(lo, hi, page, false) : 0;
}

size_t iso_prefault(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    int here = 0;
    static char buf[1 << 16]; /* static: the maps do not change under it */
    size_t have = 0, pages = 0;
    ssize_t r;
    while ((r = read(fd, buf + have, sizeof buf - 1 - have)) > 0) {
        have += (size_t)r;
        buf[have] = '\0';
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            pages += touch_line(line, page, (uintptr_t)&here);
            line = nl + 1;
        }
        have = strlen(line);
        memmove(buf, line, have);
    }
    close(fd);
    return pages;
}
