/*
 * Encoding a frame body (see wire.h). The rules are checked here too, so
 * the host never sends what a worker would refuse, and a worker never
 * sends what its host would call a protocol error.
 */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "wire_internal.h"

typedef enum enc_fail { ENC_OK, ENC_OOM, ENC_TOO_BIG } enc_fail;

/* The packer writes through enc_write, which refuses everything after the
 * first failure, so a failed frame is never half-written and the return
 * values need only be checked once, at the end. */
typedef struct encoder {
    msgpack_packer pk;
    msgpack_sbuffer sb;
    size_t limit; /* sb may hold at most this much */
    size_t bytes; /* value string bytes so far */
    enc_fail failed;
    iso_error *err;
} encoder;

static int enc_write(void *data, const char *buf, size_t len)
{
    encoder *e = data;
    if (e->failed)
        return -1;
    if (len > e->limit - e->sb.size)
        e->failed = ENC_TOO_BIG;
    else if (msgpack_sbuffer_write(&e->sb, buf, len) < 0)
        e->failed = ENC_OOM;
    return e->failed ? -1 : 0;
}

static void enc_init(encoder *e, size_t prefix, iso_error *err)
{
    memset(e, 0, sizeof *e);
    msgpack_sbuffer_init(&e->sb);
    msgpack_packer_init(&e->pk, e, enc_write);
    e->limit = prefix + ISO_FRAME_MAX;
    e->err = err;
}

static int enc_value(encoder *e, const iso_value *v, int depth);

static int enc_string(encoder *e, const iso_value *v)
{
    size_t n = v->u.str.len;
    if (n > ISO_VALUE_MAX_BYTES - e->bytes)
        return iso_error_set(e->err, ISO_VALUE,
                             "value holds more than %zu bytes of strings",
                             ISO_VALUE_MAX_BYTES);
    e->bytes += n;
    if (v->type == ISO_STR) {
        msgpack_pack_str(&e->pk, n);
        return msgpack_pack_str_body(&e->pk, v->u.str.ptr, n);
    }
    msgpack_pack_bin(&e->pk, n);
    return msgpack_pack_bin_body(&e->pk, v->u.str.ptr, n);
}

static int enc_container(encoder *e, const iso_value *v, int depth)
{
    bool map = v->type == ISO_MAP;
    size_t n = v->u.seq.len;
    if (depth <= 0)
        return iso_error_set(e->err, ISO_VALUE,
                             "value nested deeper than %d levels",
                             ISO_VALUE_MAX_DEPTH);
    if (n > UINT32_MAX)
        return iso_error_set(e->err, ISO_VALUE, "container too long");
    if (map)
        msgpack_pack_map(&e->pk, n);
    else
        msgpack_pack_array(&e->pk, n);
    for (size_t i = 0; i < n && !e->failed; i++) {
        const iso_value *item = &v->u.seq.items[map ? 2 * i : i];
        if (map && item->type != ISO_STR && item->type != ISO_BYTES &&
            item->type != ISO_INT)
            return iso_error_set(e->err, ISO_VALUE,
                                 "map key is not a string or an integer");
        if (enc_value(e, item, depth - 1) < 0 ||
            (map && enc_value(e, item + 1, depth - 1) < 0))
            return -1;
    }
    return e->failed ? -1 : 0;
}

static int enc_value(encoder *e, const iso_value *v, int depth)
{
    switch (v->type) {
    case ISO_NIL:
        return msgpack_pack_nil(&e->pk);
    case ISO_BOOL:
        return v->u.b ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk);
    case ISO_INT:
        return msgpack_pack_int64(&e->pk, v->u.i);
    case ISO_FLOAT:
        return msgpack_pack_double(&e->pk, v->u.f);
    case ISO_STR:
    case ISO_BYTES:
        return enc_string(e, v);
    case ISO_LIST:
    case ISO_MAP:
        return enc_container(e, v, depth);
    }
    return iso_error_set(e->err, ISO_VALUE, "value of unknown type %d",
                         (int)v->type);
}

static void enc_cstr(encoder *e, const char *s, size_t max)
{
    if (!s) {
        msgpack_pack_nil(&e->pk);
        return;
    }
    size_t n = strnlen(s, max);
    msgpack_pack_str(&e->pk, n);
    msgpack_pack_str_body(&e->pk, s, n);
}

static void enc_header(encoder *e, const iso_frame *f)
{
    const iso_error *x = &f->error;
    msgpack_pack_array(&e->pk, 5);
    msgpack_pack_unsigned_int(&e->pk, (unsigned)f->type);
    msgpack_pack_uint64(&e->pk, f->seq);
    enc_cstr(e, f->text, SIZE_MAX);
    if (x->kind == ISO_OK) {
        msgpack_pack_nil(&e->pk);
    } else {
        msgpack_pack_array(&e->pk, 6);
        msgpack_pack_unsigned_int(&e->pk, (unsigned)x->kind);
        enc_cstr(e, x->message, sizeof x->message - 1);
        enc_cstr(e, x->python, sizeof x->python - 1);
        enc_cstr(e, x->traceback, SIZE_MAX);
        enc_cstr(e, x->refused_import, sizeof x->refused_import - 1);
        enc_cstr(e, x->suggestion, SIZE_MAX);
    }
    msgpack_pack_double(&e->pk, f->time);
}

/* Append f's body to e. -1 with e->err set. */
static int enc_frame(encoder *e, const iso_frame *f)
{
    if (f->type < 0 || !iso_frame_type_known((uint64_t)f->type))
        return iso_error_set(e->err, ISO_INVALID_ARGUMENT,
                             "wire: unknown frame type %d", f->type);
    const char *why = iso_frame_problem(f);
    if (why)
        return iso_error_set(e->err, ISO_INVALID_ARGUMENT, "wire: %s frame %s",
                             iso_frame_type_name(f->type), why);
    enc_header(e, f);
    if (enc_value(e, &f->value, iso_frame_value_depth(f->type)) < 0 &&
        !e->failed)
        return -1; /* a value rule, with its message */
    if (e->failed == ENC_OOM)
        return iso_wire_oom(e->err);
    if (e->failed == ENC_TOO_BIG)
        return iso_error_set(e->err, ISO_VALUE, "frame larger than %zu bytes",
                             (size_t)ISO_FRAME_MAX);
    return 0;
}

int iso_frame_pack(const iso_frame *f, size_t room, char **out, size_t *len,
                   iso_error *err)
{
    static const char zeros[8];
    encoder e;
    if (room > sizeof zeros)
        return iso_error_set(err, ISO_INVALID_ARGUMENT, "wire: room %zu", room);
    enc_init(&e, room, err);
    if (room > 0)
        enc_write(&e, zeros, room); /* the caller's prefix goes here */
    if (enc_frame(&e, f) < 0) {
        msgpack_sbuffer_destroy(&e.sb);
        return -1;
    }
    *len = e.sb.size;
    *out = msgpack_sbuffer_release(&e.sb);
    return 0;
}

int iso_frame_encode(const iso_frame *f, char **out, size_t *len,
                     iso_error *err)
{
    return iso_frame_pack(f, 0, out, len, err);
}
