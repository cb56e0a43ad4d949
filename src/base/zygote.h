/*
 * The control channel between the host and the zygote (a SOCK_SEQPACKET
 * socketpair; the zygote's end is fd 3). Fixed-size records, no parsing:
 * only the host and the zygote speak here, never a guest (a cell child
 * closes its copy before it reads its config; a confined cell thread has
 * its own fd table without it).
 *
 * A SPAWN must carry the token of the HELLO the host sent first, 16 random
 * bytes that live only in the host's and the zygote's memory: something
 * that got hold of the socket anyway cannot start a worker with a config
 * of its own. The zygote also checks that its peer is its parent.
 *
 *   host -> zygote  HELLO   the token, once, before anything else
 *                   SPAWN   the token, with two or three fds: the cell's
 *                           frame socket, the write end of its death note
 *                           and (when the cell has one) its cgroup
 *                           directory, which the child is created in
 *                           (clone3 CLONE_INTO_CGROUP; where the kernel
 *                           refuses that, it joins it before its CONFIG);
 *                           flags ISO_ZYGOTE_WARM: a pool child (it
 *                           prefaults its pages while it waits)
 *   zygote -> host  SPAWNED pid (or -1 and errno in status)
 *                   EXIT    pid and its wait status, for every child reaped
 */
#ifndef ISO_ZYGOTE_H
#define ISO_ZYGOTE_H

#include <sys/types.h>

#define ISO_ZYGOTE_FD 3

typedef enum iso_zygote_type {
    ISO_ZYGOTE_SPAWN = 1,
    ISO_ZYGOTE_SPAWNED = 2,
    ISO_ZYGOTE_EXIT = 3,
    ISO_ZYGOTE_HELLO = 4,
} iso_zygote_type;

#define ISO_ZYGOTE_TOKEN 16
#define ISO_ZYGOTE_MAX_FDS 3
#define ISO_ZYGOTE_WARM 1 /* SPAWN flags */

typedef struct iso_zygote_msg {
    int type;
    pid_t pid;
    int status;
    int flags; /* SPAWN: ISO_ZYGOTE_WARM */
    unsigned char token[ISO_ZYGOTE_TOKEN]; /* HELLO and SPAWN */
} iso_zygote_msg;

/* Fill token with fresh random bytes and send it as HELLO. 0 or -1. */
int iso_zygote_hello(int sock, unsigned char token[ISO_ZYGOTE_TOKEN]);
/* Does m carry token? Constant time. */
int iso_zygote_token_ok(const iso_zygote_msg *m,
                        const unsigned char token[ISO_ZYGOTE_TOKEN]);

/* Send m with fds[0..nfds) attached. 0 or -1 (errno). */
int iso_zygote_send(int sock, const iso_zygote_msg *m, const int *fds,
                    int nfds);
/* Receive one record; attached fds (at most ISO_ZYGOTE_MAX_FDS) land in
 * fds, -1 where absent (more are closed). Returns the record size, 0 at
 * EOF, -1 on error. */
ssize_t iso_zygote_recv(int sock, iso_zygote_msg *m,
                        int fds[ISO_ZYGOTE_MAX_FDS]);

#endif
