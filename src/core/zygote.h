/*
 * The control channel between the host and the zygote (a SOCK_SEQPACKET
 * socketpair; the zygote's end is fd 3). Fixed-size records, no parsing:
 * only the host and the zygote speak here, never a guest (a cell child
 * closes its copy before it reads its config).
 *
 *   host -> zygote  SPAWN   with two fds: the cell's frame socket and the
 *                           write end of its death-note pipe
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
} iso_zygote_type;

typedef struct iso_zygote_msg {
    int type;
    pid_t pid;
    int status;
} iso_zygote_msg;

/* Send m with fds[0..nfds) attached. 0 or -1 (errno). */
int iso_zygote_send(int sock, const iso_zygote_msg *m, const int *fds,
                    int nfds);
/* Receive one record; attached fds (at most 2) land in fds, -1 where
 * absent. Returns the record size, 0 at EOF, -1 on error. */
ssize_t iso_zygote_recv(int sock, iso_zygote_msg *m, int fds[2]);

#endif
