/*
 * Decoding a frame body (see wire.h): checks first, then msgpack-c, then
 * iso_value.
 *
 * Everything a worker sends is untrusted: the decoder never aborts, never
 * allocates in proportion to what a frame merely claims, and checks every
 * rule before the host acts on a frame.
 */
#include <msgpack.h>
#include <msgpack/unpack_define.h> /* MSGPACK_EMBED_STACK_SIZE */
#include <stdlib.h>
#include <string.h>

#include "wire_internal.h"

/* The wrapping list of CALL/LOG/... frames plus a full-depth value inside
 * must fit the unpacker's fixed stack of open containers (the header's value
 * of the size libmsgpackc was built with; Debian's keeps the default 32). */
_Static_assert(ISO_VALUE_MAX_DEPTH + 1 <= MSGPACK_EMBED_STACK_SIZE,
               "ISO_VALUE_MAX_DEPTH exceeds what msgpack-c can unpack");

/* One msgpack token: its head (type byte and length field), the payload
 * after the head, and the value slots it opens (container items). */
typedef struct token {
    size_t head;
    uint64_t body, slots;
} token;

/* The formats 0xc0..0xdf: a fixed payload size (-1: refused, since no frame
 * holds 0xc1 or an ext), the size of a length field, and what that field
 * counts: 0 payload bytes, 1 array items, 2 map items (two slots each). */
static const struct {
    signed char fixed, field, per;
} formats[32] = {
    {0, 0, 0},  {-1, 0, 0}, {0, 0, 0},  {0, 0, 0},  /* nil, c1, false, true */
    {0, 1, 0},  {0, 2, 0},  {0, 4, 0},              /* bin 8/16/32 */
    {-1, 0, 0}, {-1, 0, 0}, {-1, 0, 0},             /* ext 8/16/32 */
    {4, 0, 0},  {8, 0, 0},                          /* float 32/64 */
    {1, 0, 0},  {2, 0, 0},  {4, 0, 0},  {8, 0, 0},  /* uint 8..64 */
    {1, 0, 0},  {2, 0, 0},  {4, 0, 0},  {8, 0, 0},  /* int 8..64 */
    {-1, 0, 0}, {-1, 0, 0}, {-1, 0, 0}, {-1, 0, 0}, /* fixext 1..8 */
    {-1, 0, 0},                                     /* fixext 16 */
    {0, 1, 0},  {0, 2, 0},  {0, 4, 0},              /* str 8/16/32 */
    {0, 2, 1},  {0, 4, 1},  {0, 2, 2},  {0, 4, 2},  /* array, map 16/32 */
};

/* 0, -1 for a refused byte, -2 when the head runs past avail (>= 1). */
static int token_at(const unsigned char *p, size_t avail, token *t)
{
    unsigned c = p[0];
    *t = (token){.head = 1};
    if (c < 0x80 || c >= 0xe0) /* fixint */
        return 0;
    if (c < 0xa0) { /* fixmap, fixarray */
        t->slots = (c & 0x0f) * (c < 0x90 ? 2u : 1u);
        return 0;
    }
    if (c < 0xc0) { /* fixstr */
        t->body = c & 0x1f;
        return 0;
    }
    int fixed = formats[c - 0xc0].fixed, field = formats[c - 0xc0].field;
    if (fixed < 0)
        return -1;
    t->head += (size_t)field;
    if (avail < t->head)
        return -2;
    uint64_t n = 0;
    for (int i = 1; i <= field; i++)
        n = n << 8 | p[i];
    if (formats[c - 0xc0].per == 0)
        t->body = (uint64_t)fixed + n;
    else
        t->slots = n * (uint64_t)formats[c - 0xc0].per;
    return 0;
}

/* The header's own items ([type, seq, text, [error...], time]) and the list
 * wrapping call arguments or log/metric/request/denial items. */
#define FRAME_HEADER_ITEMS 16

/* Walk the body's tokens before msgpack-c sees it: the unpacker allocates a
 * container's slots as soon as it reads the count, so five bytes could make
 * it allocate 100 GB. Every slot still owed by an open container needs at
 * least one byte of what follows, so `owed` may never exceed the bytes left;
 * that bounds the unpacker's allocations by the body's size. */
static int scan_body(const unsigned char *p, size_t n, iso_error *err)
{
    size_t pos = 0;
    uint64_t owed = 2, items = 0; /* the header and the value */
    while (owed > 0) {
        token t;
        if (pos == n)
            return iso_wire_violation(err, owed == 1 ? "the frame has no value"
                                        : "the frame is truncated");
        int rc = token_at(p + pos, n - pos, &t);
        if (rc == -1)
            return iso_wire_violation(err, "byte 0x%02x at offset %zu is not allowed",
                         p[pos], pos);
        if (rc == -2 || t.body > n - pos - t.head)
            return iso_wire_violation(err, "the frame is truncated");
        pos += t.head + (size_t)t.body;
        owed = owed - 1 + t.slots;
        if (++items > ISO_VALUE_MAX_ITEMS + FRAME_HEADER_ITEMS)
            return iso_wire_violation(err, "the frame holds more than %zu values",
                         ISO_VALUE_MAX_ITEMS);
        if (t.slots && owed > n - pos)
            return iso_wire_violation(err, "a container claims more items than the "
                              "frame holds");
    }
    if (pos != n)
        return iso_wire_violation(err, "%zu trailing byte(s) after the value", n - pos);
    return 0;
}

typedef struct decoder {
    size_t bytes; /* value string bytes so far */
    iso_error *err;
} decoder;

static int dec_value(decoder *d, const msgpack_object *o, int depth,
                     iso_value *out);

static int dec_string(decoder *d, const msgpack_object *o, iso_value *out)
{
    bool str = o->type == MSGPACK_OBJECT_STR;
    const char *p = str ? o->via.str.ptr : o->via.bin.ptr;
    size_t n = str ? o->via.str.size : o->via.bin.size;
    if (n > ISO_VALUE_MAX_BYTES - d->bytes)
        return iso_wire_violation(d->err, "the value holds more than %zu bytes of strings",
                     ISO_VALUE_MAX_BYTES);
    if (str && !iso_utf8_valid(p, n))
        return iso_wire_violation(d->err, "a str that is not valid UTF-8");
    d->bytes += n;
    if (iso_value_set_string(out, str ? ISO_STR : ISO_BYTES, p, n) < 0)
        return iso_wire_oom(d->err);
    return 0;
}

static int dec_list(decoder *d, const msgpack_object_array *a, int depth,
                    iso_value *out)
{
    iso_value_set_list(out);
    for (uint32_t i = 0; i < a->size; i++) {
        iso_value *slot = iso_list_append(out);
        if (!slot)
            return iso_wire_oom(d->err);
        if (dec_value(d, &a->ptr[i], depth, slot) < 0)
            return -1;
    }
    return 0;
}

static int dec_map(decoder *d, const msgpack_object_map *m, int depth,
                   iso_value *out)
{
    iso_value_set_map(out);
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *key = &m->ptr[i].key;
        iso_value *k, *v;
        if (key->type != MSGPACK_OBJECT_STR &&
            key->type != MSGPACK_OBJECT_BIN &&
            key->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
            key->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return iso_wire_violation(d->err, "a map key that is not a str, bin or int");
        if (iso_map_append(out, &k, &v) < 0)
            return iso_wire_oom(d->err);
        if (dec_value(d, key, depth, k) < 0 ||
            dec_value(d, &m->ptr[i].val, depth, v) < 0)
            return -1;
    }
    return 0;
}

/* out is NIL on entry; on failure it may hold a partial value. depth is how
 * many more containers may open. */
static int dec_value(decoder *d, const msgpack_object *o, int depth,
                     iso_value *out)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return 0;
    case MSGPACK_OBJECT_BOOLEAN:
        iso_value_set_bool(out, o->via.boolean);
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX)
            return iso_wire_violation(d->err, "an integer above the int64 range");
        iso_value_set_int(out, (int64_t)o->via.u64);
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        iso_value_set_int(out, o->via.i64);
        return 0;
    case MSGPACK_OBJECT_FLOAT32: /* msgpack-c widens both to f64 */
    case MSGPACK_OBJECT_FLOAT64:
        iso_value_set_float(out, o->via.f64);
        return 0;
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
        return dec_string(d, o, out);
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
        if (depth <= 0)
            return iso_wire_violation(d->err, "a value nested deeper than %d levels",
                         ISO_VALUE_MAX_DEPTH);
        if (o->type == MSGPACK_OBJECT_ARRAY)
            return dec_list(d, &o->via.array, depth - 1, out);
        return dec_map(d, &o->via.map, depth - 1, out);
    default: /* ext; scan_body already refused it */
        return iso_wire_violation(d->err, "a value of msgpack type %d", (int)o->type);
    }
}

/* msgpack-c gives an empty str a NULL pointer: keep it from mem*(). */
static bool has_nul(const char *p, size_t n)
{
    return n > 0 && memchr(p, '\0', n) != NULL;
}

/* A header string: a C string, so no NUL inside. */
static int dec_cstr(const msgpack_object *o, const char *what, char **out,
                    iso_error *err)
{
    if (o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_STR)
        return iso_wire_violation(err, "the header's %s is not a str or nil", what);
    size_t n = o->via.str.size;
    if (has_nul(o->via.str.ptr, n))
        return iso_wire_violation(err, "the header's %s contains a NUL byte", what);
    *out = malloc(n + 1);
    if (!*out)
        return iso_wire_oom(err);
    if (n > 0)
        memcpy(*out, o->via.str.ptr, n);
    (*out)[n] = '\0';
    return 0;
}

/* Copy a str into a fixed buffer, cutting at a UTF-8 character boundary. */
static int dec_fixed(const msgpack_object *o, const char *what, char *dst,
                     size_t size, iso_error *err)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return iso_wire_violation(err, "the error's %s is not a str", what);
    const char *p = o->via.str.ptr;
    size_t n = o->via.str.size;
    if (has_nul(p, n))
        return iso_wire_violation(err, "the error's %s contains a NUL byte", what);
    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char)p[n] & 0xC0) == 0x80)
            n--;
    }
    if (n > 0)
        memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

/* [kind, message, python, traceback|nil, refused_import, suggestion|nil]
 * or nil. */
static int dec_error(const msgpack_object *o, iso_error *e, iso_error *err)
{
    if (o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 6)
        return iso_wire_violation(err, "the header's error is not a 6-item array or nil");
    const msgpack_object *it = o->via.array.ptr;
    if (it[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || it[0].via.u64 == 0 ||
        it[0].via.u64 > ISO_VALUE)
        return iso_wire_violation(err, "the error's kind is not a known error kind");
    e->kind = (iso_kind)it[0].via.u64;
    if (dec_fixed(&it[1], "message", e->message, sizeof e->message, err) ||
        dec_fixed(&it[2], "python", e->python, sizeof e->python, err) ||
        dec_fixed(&it[4], "refused_import", e->refused_import,
                  sizeof e->refused_import, err) ||
        dec_cstr(&it[5], "suggestion", &e->suggestion, err))
        return -1;
    return dec_cstr(&it[3], "traceback", &e->traceback, err);
}

/* [type, seq, text, error, time] */
static int dec_header(const msgpack_object *h, iso_frame *f, iso_error *err)
{
    if (h->type != MSGPACK_OBJECT_ARRAY || h->via.array.size != 5)
        return iso_wire_violation(err, "the header is not a 5-item array");
    const msgpack_object *it = h->via.array.ptr;
    if (it[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        !iso_frame_type_known(it[0].via.u64))
        return iso_wire_violation(err, "not a known frame type");
    f->type = (int)it[0].via.u64;
    if (it[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return iso_wire_violation(err, "the header's seq is not an unsigned int");
    f->seq = it[1].via.u64;
    if (it[4].type != MSGPACK_OBJECT_FLOAT64 &&
        it[4].type != MSGPACK_OBJECT_FLOAT32)
        return iso_wire_violation(err, "the header's time is not a float");
    f->time = it[4].via.f64;
    if (dec_cstr(&it[2], "text", &f->text, err) < 0)
        return -1;
    return dec_error(&it[3], &f->error, err);
}

/* The next top-level object. The scan proved the bytes well formed, so a
 * failure here is nesting past msgpack-c's stack (or no memory). */
static int unpack_next(msgpack_unpacked *u, const char *body, size_t n,
                       size_t *off, iso_error *err)
{
    msgpack_unpacked_destroy(u);
    msgpack_unpack_return rc = msgpack_unpack_next(u, body, n, off);
    if (rc == MSGPACK_UNPACK_SUCCESS || rc == MSGPACK_UNPACK_EXTRA_BYTES)
        return 0;
    if (rc == MSGPACK_UNPACK_NOMEM_ERROR)
        return iso_wire_violation(err, "nested deeper than %d levels (or out of memory)",
                     MSGPACK_EMBED_STACK_SIZE);
    return iso_wire_violation(err, "msgpack-c cannot unpack the frame (%d)", (int)rc);
}

static int decode_parts(msgpack_unpacked *u, const char *body, size_t n,
                        iso_frame *f, iso_error *err)
{
    size_t off = 0;
    if (unpack_next(u, body, n, &off, err) < 0 ||
        dec_header(&u->data, f, err) < 0 ||
        unpack_next(u, body, n, &off, err) < 0)
        return -1;
    decoder d = {.err = err};
    if (dec_value(&d, &u->data, iso_frame_value_depth(f->type), &f->value) < 0)
        return -1;
    if (off != n)
        return iso_wire_violation(err, "%zu trailing byte(s) after the value", n - off);
    const char *why = iso_frame_problem(f);
    if (why)
        return iso_wire_violation(err, "%s frame %s",
                                  iso_frame_type_name(f->type), why);
    return 0;
}

int iso_frame_decode(const char *body, size_t n, iso_frame *f, iso_error *err)
{
    memset(f, 0, sizeof *f);
    if (n > ISO_FRAME_MAX)
        return iso_wire_violation(err, "a frame of %zu bytes (the limit is %zu)", n,
                     (size_t)ISO_FRAME_MAX);
    if (scan_body((const unsigned char *)body, n, err) < 0)
        return -1;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = decode_parts(&u, body, n, f, err);
    msgpack_unpacked_destroy(&u);
    if (rc < 0)
        iso_frame_clear(f);
    return rc;
}
