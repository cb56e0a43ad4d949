/*
 * libFuzzer target for the process backend's wire protocol: every byte a
 * worker sends is untrusted. Each input is fed
 *   1. to iso_frame_decode as one body; what decodes must encode again and
 *      decode to the same frame (a decoder that accepts what the encoder
 *      would refuse lets a worker say what the host cannot repeat);
 *   2. to iso_wire_recv as a raw stream (length prefixes and all) through a
 *      socketpair whose writer is closed, so the reader ends at "eof".
 * Built by cmake/fuzz.cmake (-DISOLATE_FUZZ=ON, clang); seeds in corpus/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "isolate.h"
#include "wire.h"

#define STREAM_MAX 65536 /* below the socket buffer: the write never blocks */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int frame_equal(const iso_frame *a, const iso_frame *b)
{
    return a->type == b->type && a->seq == b->seq &&
           same_text(a->text, b->text) && a->error.kind == b->error.kind &&
           strcmp(a->error.message, b->error.message) == 0 &&
           strcmp(a->error.python, b->error.python) == 0 &&
           same_text(a->error.traceback, b->error.traceback) &&
           memcmp(&a->time, &b->time, sizeof a->time) == 0 &&
           iso_value_equal(&a->value, &b->value);
}

/* A decoded frame survives encode + decode unchanged; abort() otherwise,
 * which libFuzzer reports as a crash with the input. */
static void check_reencode(const iso_frame *f)
{
    char *body = NULL;
    size_t n = 0;
    iso_frame again;
    iso_error err = {0};
    if (iso_frame_encode(f, &body, &n, &err) != 0) {
        fprintf(stderr, "decoded frame does not encode: %s\n", err.message);
        abort();
    }
    if (iso_frame_decode(body, n, &again, &err) != 0 ||
        !frame_equal(f, &again)) {
        fprintf(stderr, "re-encoded frame differs: %s\n", err.message);
        abort();
    }
    iso_frame_clear(&again);
    iso_error_clear(&err);
    free(body);
}

static void fuzz_decode(const uint8_t *data, size_t size)
{
    iso_frame f;
    iso_error err = {0};
    if (iso_frame_decode((const char *)data, size, &f, &err) == 0)
        check_reencode(&f);
    else if (err.kind != ISO_CRASHED && err.kind != ISO_MEMORY)
        abort(); /* bad input is a protocol error, nothing else */
    iso_frame_clear(&f);
    iso_error_clear(&err);
}

static void fuzz_stream(const uint8_t *data, size_t size)
{
    int sv[2];
    if (size > STREAM_MAX ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    ssize_t put = write(sv[1], data, size);
    close(sv[1]);
    iso_wire w;
    iso_frame f;
    iso_error err = {0};
    iso_wire_init(&w, sv[0]);
    /* A deadline in the past: only what is there; "eof" ends it. */
    while (put >= 0 && iso_wire_recv(&w, &f, 0, &err) == 0)
        iso_frame_clear(&f);
    if (put >= 0 && err.kind != ISO_CRASHED && err.kind != ISO_MEMORY)
        abort(); /* the writer is closed: never a timeout */
    iso_error_clear(&err);
    iso_wire_free(&w);
    close(sv[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_decode(data, size);
    fuzz_stream(data, size);
    return 0;
}
