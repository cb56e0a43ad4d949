/*
 * The process backend's wire protocol: frames between the host and a
 * luaisolate-cell worker over a socketpair. No Lua, no Python here.
 *
 * Frame = 4-byte big-endian body length N, then N bytes of body. The body is
 * two top-level MessagePack objects back to back (so the value gets msgpack-
 * c's whole nesting budget): a header array [type, seq, text, error, time],
 * then exactly one value.
 *
 *   type   uint, an iso_frame_type
 *   seq    uint, the request sequence (0 when not applicable)
 *   text   str or nil (EXEC: the source; CALL: the target)
 *   error  nil or [kind (uint, an iso_kind), message str, python str,
 *          traceback str|nil, refused_import str ("" when none),
 *          suggestion str|nil]  (RESULT and REPLY only)
 *   time   float64 (float32 accepted), CLOCK_REALTIME seconds
 *   value  nil, bool, int (int64), float, str (valid UTF-8), bin, array, map
 *          with str/bin/int keys; nothing else (no ext)
 *
 * Header strings are C strings: they may not contain NUL. Their encoding is
 * not checked (an error message may hold a truncated path); only value STRs
 * must be UTF-8, because they become Python str.
 *
 * Each type also fixes the shape of its frame (checked on encode and on
 * decode, so neither side re-checks it):
 *
 *   type     text  error  value
 *   EXEC     yes   -      nil
 *   CALL     yes   -      list of arguments
 *   REPLY    -     opt.   the broker's answer (nil when error is set)
 *   CONFIG   -     -      map
 *   STOP     -     -      nil
 *   READY    -     -      any (the confinement report)
 *   WAITING  -     -      nil (a pool worker, before its CONFIG)
 *   RESULT   -     opt.   the result (nil when error is set)
 *   POST     -     -      any
 *   LOG      -     -      [level, message, fields]
 *   METRIC   -     -      [name, value, tags]
 *   REQUEST  -     -      [capability, action, payload]
 *   DENIAL   -     -      [capability, action, target, rule, layer]
 *
 * Depth: a value may nest ISO_VALUE_MAX_DEPTH containers. The list that
 * wraps CALL arguments and the LOG/METRIC/REQUEST/DENIAL items is not a level
 * of the values inside it (as in the sub-interpreter backend), so those
 * frames carry ISO_VALUE_MAX_DEPTH + 1 levels, which must fit msgpack-c's
 * unpacker (see isolate.h).
 *
 * Errors: encoding a frame that breaks these rules fails with
 * ISO_INVALID_ARGUMENT (frame shape) or ISO_VALUE (value rules, size, depth);
 * a received frame that breaks them fails with ISO_CRASHED and code
 * ISO_E_PROTOCOL (the message starts "protocol:" for people; code decides).
 * After a protocol error the connection is unusable: kill the worker.
 *
 * Files: wire_rules.c (the rules above), wire_decode.c, wire_encode.c and
 * wire_io.c (framed socket I/O).
 */
#ifndef ISO_WIRE_H
#define ISO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "isolate.h"

/* Largest body: one value's strings plus room for the header and framing. */
#define ISO_FRAME_MAX (ISO_VALUE_MAX_BYTES + (1u << 20))

typedef enum iso_frame_type {
    /* host -> worker */
    ISO_FRAME_EXEC = 1,
    ISO_FRAME_CALL = 2,
    ISO_FRAME_REPLY = 3,
    ISO_FRAME_CONFIG = 4,
    ISO_FRAME_STOP = 5,
    ISO_FRAME_RELOAD = 6, /* {fs=, net=}: the python-guard's new plan */
    /* worker -> host */
    ISO_FRAME_READY = 10,
    ISO_FRAME_RESULT = 11,
    ISO_FRAME_POST = 12,
    ISO_FRAME_LOG = 13,
    ISO_FRAME_METRIC = 14,
    ISO_FRAME_REQUEST = 15,
    ISO_FRAME_DENIAL = 16,
    ISO_FRAME_RELOADED = 17, /* the plan of a RELOAD is in force */
    ISO_FRAME_WAITING = 18,  /* a pool worker is ready for its CONFIG */
} iso_frame_type;

typedef struct iso_frame {
    int type; /* an iso_frame_type */
    uint64_t seq;
    char *text;      /* owned, NULL when absent */
    iso_error error; /* kind ISO_OK when absent; traceback, suggestion owned */
    double time;
    iso_value value; /* owned */
} iso_frame;

/* "exec", "call", ... or NULL for an unknown type. Static string. */
const char *iso_frame_type_name(int type);

/* Free the contents and zero f (a zeroed frame is empty). */
void iso_frame_clear(iso_frame *f);

/* Encode f's body (no length prefix) into *out (malloc'd, caller frees) of
 * *len bytes. f is only read. Never blocks. */
int iso_frame_encode(const iso_frame *f, char **out, size_t *len,
                     iso_error *err);
/* Decode exactly one body of n bytes into f, which is output only
 * (overwritten, not freed; left zeroed on failure). Never blocks. */
int iso_frame_decode(const char *body, size_t n, iso_frame *f, iso_error *err);

/* A peer broke the protocol: ISO_CRASHED, code ISO_E_PROTOCOL, message
 * "protocol: <fmt...>". Returns -1. */
int iso_wire_violation(iso_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Whether err is such an error. */
#define ISO_WIRE_VIOLATED(err) ((err)->code == ISO_E_PROTOCOL)

/* A connection end: the fd (not owned) and the bytes received past the last
 * frame taken, buf[off, len). One thread may send while another receives;
 * two concurrent senders (or receivers) on one iso_wire must be serialised
 * by the caller. */
typedef struct iso_wire {
    int fd;
    char *buf;
    size_t len, cap;
    size_t off; /* so that many small frames per read cost no memmove each */
} iso_wire;

void iso_wire_init(iso_wire *w, int fd);
/* Free the buffer; the fd is left open. */
void iso_wire_free(iso_wire *w);

/* Send one frame (length prefix and body). Blocks until all is written;
 * EINTR and partial writes are handled; never raises SIGPIPE. -1 with
 * ISO_CRASHED "eof" when the peer is gone, or the encoding errors above. */
int iso_wire_send(iso_wire *w, const iso_frame *f, iso_error *err);

/* Receive one frame into f (output only, as for iso_frame_decode). deadline
 * is in iso_now() seconds; < 0 waits forever; a deadline already past still
 * takes a frame that is buffered or readable without blocking. Spins ~50 us
 * before sleeping in poll, since a wake-up costs ~20 us on the target VMs.
 * Returns 0; -1 with ISO_TIMEOUT at the deadline; -1 with ISO_CRASHED and
 * "protocol: ..." for a malformed or oversized frame, or exactly "eof" when
 * the peer closed (even in the middle of a frame). */
int iso_wire_recv(iso_wire *w, iso_frame *f, double deadline, iso_error *err);

#endif
