/*
 * Landlock definitions newer than the build's kernel headers.
 *
 * Debian 12 ships linux-libc-dev 6.1 (ABI 1-2: no TRUNCATE, no IOCTL_DEV,
 * no TCP rules, no scoping) and glibc has no wrappers, so the missing
 * constants are defined here (only where the headers lack them) and the
 * three system calls go through syscall(2). The ruleset and net-port
 * attributes get our own names: 6.1's struct landlock_ruleset_attr has
 * only the fs field, and newer headers define the net struct themselves.
 */
#ifndef ISO_LANDLOCK_H
#define ISO_LANDLOCK_H

#include <errno.h>
#include <linux/landlock.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_landlock_create_ruleset /* same number on every architecture */
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif

#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif
#ifndef LANDLOCK_ACCESS_FS_REFER /* ABI 2 */
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE /* ABI 3 */
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV /* ABI 5 */
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP /* ABI 4 */
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET /* ABI 6 */
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

/* enum landlock_rule_type grew LANDLOCK_RULE_NET_PORT = 2 in ABI 4; an
 * enum member cannot be tested with #ifndef, so use our own name. */
#define ISO_LANDLOCK_RULE_PATH_BENEATH 1
#define ISO_LANDLOCK_RULE_NET_PORT 2

/* struct landlock_ruleset_attr as of ABI 6. The kernel accepts a larger
 * struct from us as long as the fields it does not know are zero. */
struct iso_landlock_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net; /* ABI >= 4 */
    uint64_t scoped;             /* ABI >= 6 */
};

/* struct landlock_net_port_attr (ABI 4). */
struct iso_landlock_net_port_attr {
    uint64_t allowed_access;
    uint64_t port; /* host byte order */
};

/* Every fs right the given ABI knows (handling them all = deny by
 * default). */
static inline uint64_t iso_landlock_fs_rights(int abi)
{
    uint64_t r = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1: bits 0-12 */
    if (abi >= 2)
        r |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        r |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5)
        r |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return r;
}

/* The rights that apply to a non-directory; the kernel refuses a rule on a
 * file that names directory rights. */
#define ISO_LANDLOCK_FILE_RIGHTS                                  \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | \
     LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE | \
     LANDLOCK_ACCESS_FS_IOCTL_DEV)

static inline int iso_landlock_create_ruleset(const void *attr, size_t size,
                                              uint32_t flags)
{
    return (int)syscall(__NR_landlock_create_ruleset, attr, size, flags);
}

static inline int iso_landlock_add_rule(int fd, int type, const void *attr)
{
    return (int)syscall(__NR_landlock_add_rule, fd, type, attr, 0U);
}

static inline int iso_landlock_restrict_self(int fd)
{
    return (int)syscall(__NR_landlock_restrict_self, fd, 0U);
}

/* The ABI version, or -errno (ENOSYS: not built in; EOPNOTSUPP: disabled
 * at boot). */
static inline int iso_landlock_abi(void)
{
    int abi =
        iso_landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return abi < 0 ? -errno : abi;
}

#endif
