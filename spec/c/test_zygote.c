/*
 * The zygote's control channel (zygote.h): the zygote serves only the
 * process that started it, and only a SPAWN that carries the token of the
 * host's HELLO. Something that got hold of the control socket without the
 * token (a guest that found it among the host's fds, issue 17 finding 7)
 * starts no worker. Runs this build's real luaisolate-cell.
 */
#include <errno.h>
#include <poll.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "zygote.h"

#define WORKER ISO_TEST_WORKER /* this build's, from CMake */

typedef struct zygote {
    pid_t pid;
    int ctl;
} zygote;

static int start(zygote *z)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], ISO_ZYGOTE_FD);
    char *argv[] = {"luaisolate-cell", "--zygote", NULL};
    char *envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", NULL};
    int e = posix_spawn(&z->pid, WORKER, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    z->ctl = sv[0];
    return e ? -1 : 0;
}

/* The next control record within ms, or type 0 when none came. */
static iso_zygote_msg next(zygote *z, int ms)
{
    iso_zygote_msg m = {0};
    int fds[ISO_ZYGOTE_MAX_FDS];
    struct pollfd p = {.fd = z->ctl, .events = POLLIN};
    if (poll(&p, 1, ms) == 1 && iso_zygote_recv(z->ctl, &m, fds) <= 0)
        m.type = -1; /* EOF: the zygote is gone */
    return m;
}

/* Ask for a worker with token; its two fds are a throwaway socket pair's
 * end (the child sees EOF at once and ends). */
static int spawn_with(zygote *z, const unsigned char *token)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return -1;
    iso_zygote_msg m = {.type = ISO_ZYGOTE_SPAWN};
    memcpy(m.token, token, ISO_ZYGOTE_TOKEN);
    int fds[2] = {sv[1], sv[1]};
    int rc = iso_zygote_send(z->ctl, &m, fds, 2);
    close(sv[0]), close(sv[1]);
    return rc;
}

static int stop(zygote *z)
{
    int status = -1;
    close(z->ctl);
    waitpid(z->pid, &status, 0);
    return status;
}

static void test_spawn_needs_the_token(void)
{
    zygote z;
    unsigned char token[ISO_ZYGOTE_TOKEN], wrong[ISO_ZYGOTE_TOKEN];
    CHECK(start(&z) == 0);
    CHECK(iso_zygote_hello(z.ctl, token) == 0);
    memcpy(wrong, token, sizeof wrong);
    wrong[ISO_ZYGOTE_TOKEN - 1] ^= 1; /* one bit off */
    CHECK(spawn_with(&z, wrong) == 0);
    memset(wrong, 0, sizeof wrong);
    CHECK(spawn_with(&z, wrong) == 0);
    CHECK_EQ_INT(next(&z, 1000).type, 0); /* no answer, no worker */
    CHECK(spawn_with(&z, token) == 0);
    iso_zygote_msg m = next(&z, 10000);
    CHECK_EQ_INT(m.type, ISO_ZYGOTE_SPAWNED);
    CHECK(m.pid > 0);
    m = next(&z, 10000); /* the child saw EOF for its config */
    CHECK_EQ_INT(m.type, ISO_ZYGOTE_EXIT);
    int status = stop(&z);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_no_hello_no_zygote(void)
{
    zygote z;
    unsigned char token[ISO_ZYGOTE_TOKEN] = {0};
    CHECK(start(&z) == 0);
    CHECK(spawn_with(&z, token) == 0); /* SPAWN before any HELLO */
    CHECK_EQ_INT(next(&z, 10000).type, -1);
    int status = stop(&z);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
}

int main(void)
{
    alarm(60);
    CHECK(access(WORKER, X_OK) == 0); /* built with the tests */
    RUN(test_spawn_needs_the_token);
    RUN(test_no_hello_no_zygote);
    return CHECK_EXIT();
}
