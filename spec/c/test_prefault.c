/*
 * iso_prefault (the process pool child's page faults ahead of its CONFIG):
 * after it, every page the child shared with its parent is its own copy,
 * and no page the parent never touched is there.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "setup.h"

#define PAGES 512 /* touched by the parent: every other run of 16 */
#define PM_PRESENT (1ull << 63)
#define PM_EXCLUSIVE (1ull << 56) /* mapped by this process only */

static uint64_t pagemap_entry(int fd, const void *p)
{
    uint64_t e = 0;
    off_t at = (off_t)((uintptr_t)p / (uintptr_t)sysconf(_SC_PAGESIZE)) *
               (off_t)sizeof e;
    return pread(fd, &e, sizeof e, at) == (ssize_t)sizeof e ? e : 0;
}

static bool touched(size_t i)
{
    return (i / 16) % 2 == 0;
}

/* In the child: 0 when every touched page is its own, every other page
 * absent; else 1 + how many were wrong (at most 254). */
static int child_check(const unsigned char *buf, long page)
{
    iso_prefault();
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 255;
    int wrong = 0;
    for (size_t i = 0; i < PAGES; i++) {
        uint64_t e = pagemap_entry(fd, buf + i * (size_t)page);
        bool ok = touched(i) ? (e & PM_PRESENT) && (e & PM_EXCLUSIVE)
                             : !(e & PM_PRESENT);
        wrong += !ok;
    }
    close(fd);
    return wrong ? 1 + (wrong < 253 ? wrong : 253) : 0;
}

static void test_copies_shared_pages_only(void)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *buf =
        mmap(NULL, PAGES * (size_t)page, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(buf != MAP_FAILED);
    if (buf == MAP_FAILED)
        return;
    for (size_t i = 0; i < PAGES; i++)
        if (touched(i))
            buf[i * (size_t)page] = (unsigned char)i;
    pid_t pid = fork();
    if (pid == 0)
        _exit(child_check(buf, page));
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
    for (size_t i = 0; i < PAGES; i++) /* the parent's pages are untouched */
        if (touched(i) && buf[i * (size_t)page] != (unsigned char)i)
            CHECK_FAIL_("page %zu changed in the parent", i);
    munmap(buf, PAGES * (size_t)page);
}

int main(void)
{
    alarm(60);
    RUN(test_copies_shared_pages_only);
    return CHECK_EXIT();
}
