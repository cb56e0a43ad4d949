/* The host <-> zygote control records, with fds passed as SCM_RIGHTS. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zygote.h"

int iso_zygote_send(int sock, const iso_zygote_msg *m, const int *fds, int nfds)
{
    char control[CMSG_SPACE(ISO_ZYGOTE_MAX_FDS * sizeof(int))] = {0};
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof *m};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > ISO_ZYGOTE_MAX_FDS) {
        errno = EINVAL;
        return -1;
    }
    if (nfds > 0) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t n;
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof *m ? 0 : -1;
}

ssize_t iso_zygote_recv(int sock, iso_zygote_msg *m,
                        int fds[ISO_ZYGOTE_MAX_FDS])
{
    char control[CMSG_SPACE((ISO_ZYGOTE_MAX_FDS + 1) * sizeof(int))];
    struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control,
                         .msg_controllen = sizeof control};
    for (int i = 0; i < ISO_ZYGOTE_MAX_FDS; i++)
        fds[i] = -1;
    ssize_t n;
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int got[ISO_ZYGOTE_MAX_FDS + 1];
        k = k > ISO_ZYGOTE_MAX_FDS + 1 ? ISO_ZYGOTE_MAX_FDS + 1 : k;
        memcpy(got, CMSG_DATA(cm), k * sizeof(int));
        for (size_t i = 0; i < k; i++) {
            if (i < ISO_ZYGOTE_MAX_FDS)
                fds[i] = got[i];
            else
                close(got[i]); /* more than a record carries: not kept */
        }
    }
    if (n > 0 && n != (ssize_t)sizeof *m) {
        errno = EPROTO;
        return -1;
    }
    return n;
}

int iso_zygote_hello(int sock, unsigned char token[ISO_ZYGOTE_TOKEN])
{
    iso_zygote_msg m = {.type = ISO_ZYGOTE_HELLO};
    if (getrandom(token, ISO_ZYGOTE_TOKEN, 0) != ISO_ZYGOTE_TOKEN)
        return -1;
    memcpy(m.token, token, ISO_ZYGOTE_TOKEN);
    return iso_zygote_send(sock, &m, NULL, 0);
}

int iso_zygote_token_ok(const iso_zygote_msg *m,
                        const unsigned char token[ISO_ZYGOTE_TOKEN])
{
    unsigned char diff = 0;
    for (int i = 0; i < ISO_ZYGOTE_TOKEN; i++)
        diff |= (unsigned char)(m->token[i] ^ token[i]);
    return diff == 0;
}
