/*
 * The process backend's frame codec and framed socket I/O (see wire.h).
 *
 * Everything a worker sends is untrusted: the decoder never aborts, never
 * allocates in proportion to what a frame merely claims, and checks every
 * rule before the host acts on a frame.
 */
#include "wire.h"

#include <errno.h>
#include <msgpack.h>
#include <msgpack/unpack_define.h> /* MSGPACK_EMBED_STACK_SIZE */
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "handoff.h"

/* The wrapping list of CALL/LOG/... frames plus a full-depth value inside
 * must fit the unpacker's fixed stack of open containers (the header's value
 * of the size libmsgpackc was built with; Debian's keeps the default 32). */
_Static_assert(ISO_VALUE_MAX_DEPTH + 1 <= MSGPACK_EMBED_STACK_SIZE,
               "ISO_VALUE_MAX_DEPTH exceeds what msgpack-c can unpack");
_Static_assert(ISO_FRAME_MAX <= UINT32_MAX, "a length prefix is 32 bits");

#define WIRE_PREFIX 4
#define WIRE_BUF_MIN ((size_t)64 << 10) /* a first read takes most frames */
#define WIRE_BUF_KEEP ((size_t)1 << 20) /* idle and bigger: give it back */
#define WIRE_SPIN_S 50e-6  /* poll's wake-up costs ~20 us: spin this long */
#define WIRE_YIELD_S 10e-6 /* then yield, the peer may need this very CPU */

/* ---- the frame types ---------------------------------------------------- */

typedef enum shape { SHAPE_NIL, SHAPE_ANY, SHAPE_MAP, SHAPE_LIST } shape;

typedef struct frame_rule {
    const char *name; /* NULL: not a frame type */
    bool text, error;
    shape value;
    int items; /* SHAPE_LIST: exact length, or -1 for any */
} frame_rule;

static const frame_rule rules[] = {
    [ISO_FRAME_EXEC] = {"exec", true, false, SHAPE_NIL, 0},
    [ISO_FRAME_CALL] = {"call", true, false, SHAPE_LIST, -1},
    [ISO_FRAME_REPLY] = {"reply", false, true, SHAPE_ANY, 0},
    [ISO_FRAME_CONFIG] = {"config", false, false, SHAPE_MAP, 0},
    [ISO_FRAME_STOP] = {"stop", false, false, SHAPE_NIL, 0},
    [ISO_FRAME_RELOAD] = {"reload", false, false, SHAPE_MAP, 0},
    [ISO_FRAME_READY] = {"ready", false, false, SHAPE_ANY, 0},
    [ISO_FRAME_RESULT] = {"result", false, true, SHAPE_ANY, 0},
    [ISO_FRAME_POST] = {"post", false, false, SHAPE_ANY, 0},
    [ISO_FRAME_LOG] = {"log", false, false, SHAPE_LIST, 3},
    [ISO_FRAME_METRIC] = {"metric", false, false, SHAPE_LIST, 3},
    [ISO_FRAME_REQUEST] = {"request", false, false, SHAPE_LIST, 3},
    [ISO_FRAME_DENIAL] = {"denial", false, false, SHAPE_LIST, 5},
    [ISO_FRAME_RELOADED] = {"reloaded", false, false, SHAPE_NIL, 0},
    [ISO_FRAME_WAITING] = {"waiting", false, false, SHAPE_NIL, 0},
};

static const frame_rule *rule_of(uint64_t type)
{
    if (type >= sizeof rules / sizeof rules[0] || !rules[type].name)
        return NULL;
    return &rules[type];
}

const char *iso_frame_type_name(int type)
{
    const frame_rule *r = type < 0 ? NULL : rule_of((uint64_t)type);
    return r ? r->name : NULL;
}

/* How deep the frame's value may nest: a wrapping list is not a level of
 * the values it carries (wire.h). */
static int value_depth(const frame_rule *r)
{
    return ISO_VALUE_MAX_DEPTH + (r->value == SHAPE_LIST ? 1 : 0);
}

static const char *value_shape_problem(const frame_rule *r, const iso_value *v)
{
    switch (r->value) {
    case SHAPE_NIL:
        return v->type == ISO_NIL ? NULL : "carries no value";
    case SHAPE_MAP:
        return v->type == ISO_MAP ? NULL : "needs a map value";
    case SHAPE_LIST:
        if (v->type != ISO_LIST)
            return "needs a list value";
        if (r->items >= 0 && v->u.seq.len != (size_t)r->items)
            return "has a list value of the wrong length";
        return NULL;
    case SHAPE_ANY:
        break;
    }
    return NULL;
}

/* What is wrong with f for its type (NULL when nothing); f->type is known.
 * Shared by both directions so that a sender cannot emit what its peer
 * would refuse. */
static const char *frame_problem(const frame_rule *r, const iso_frame *f)
{
    if (r->text && !f->text)
        return "needs text";
    if (!r->text && f->text)
        return "carries no text";
    if (f->error.kind == ISO_OK)
        return value_shape_problem(r, &f->value);
    if (!r->error)
        return "carries no error";
    if ((unsigned)f->error.kind > ISO_VALUE)
        return "has an error of unknown kind";
    if (f->value.type != ISO_NIL)
        return "with an error carries no value";
    return NULL;
}

void iso_frame_clear(iso_frame *f)
{
    if (!f)
        return;
    free(f->text);
    iso_error_clear(&f->error);
    iso_value_free(&f->value);
    memset(f, 0, sizeof *f);
}

/* ---- decoding: checks first, then msgpack-c, then iso_value ------------- */

static int proto(iso_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int proto(iso_error *err, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return iso_error_set(err, ISO_CRASHED, "protocol: %s", why);
}

static int oom(iso_error *err)
{
    return iso_error_set(err, ISO_MEMORY, "out of memory");
}

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
            return proto(err, owed == 1 ? "the frame has no value"
                                        : "the frame is truncated");
        int rc = token_at(p + pos, n - pos, &t);
        if (rc == -1)
            return proto(err, "byte 0x%02x at offset %zu is not allowed",
                         p[pos], pos);
        if (rc == -2 || t.body > n - pos - t.head)
            return proto(err, "the frame is truncated");
        pos += t.head + (size_t)t.body;
        owed = owed - 1 + t.slots;
        if (++items > ISO_VALUE_MAX_ITEMS + FRAME_HEADER_ITEMS)
            return proto(err, "the frame holds more than %zu values",
                         ISO_VALUE_MAX_ITEMS);
        if (t.slots && owed > n - pos)
            return proto(err, "a container claims more items than the "
                              "frame holds");
    }
    if (pos != n)
        return proto(err, "%zu trailing byte(s) after the value", n - pos);
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
        return proto(d->err, "the value holds more than %zu bytes of strings",
                     ISO_VALUE_MAX_BYTES);
    if (str && !iso_utf8_valid(p, n))
        return proto(d->err, "a str that is not valid UTF-8");
    d->bytes += n;
    if (iso_value_set_string(out, str ? ISO_STR : ISO_BYTES, p, n) < 0)
        return oom(d->err);
    return 0;
}

static int dec_list(decoder *d, const msgpack_object_array *a, int depth,
                    iso_value *out)
{
    iso_value_set_list(out);
    for (uint32_t i = 0; i < a->size; i++) {
        iso_value *slot = iso_list_append(out);
        if (!slot)
            return oom(d->err);
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
            return proto(d->err, "a map key that is not a str, bin or int");
        if (iso_map_append(out, &k, &v) < 0)
            return oom(d->err);
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
            return proto(d->err, "an integer above the int64 range");
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
            return proto(d->err, "a value nested deeper than %d levels",
                         ISO_VALUE_MAX_DEPTH);
        if (o->type == MSGPACK_OBJECT_ARRAY)
            return dec_list(d, &o->via.array, depth - 1, out);
        return dec_map(d, &o->via.map, depth - 1, out);
    default: /* ext; scan_body already refused it */
        return proto(d->err, "a value of msgpack type %d", (int)o->type);
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
        return proto(err, "the header's %s is not a str or nil", what);
    size_t n = o->via.str.size;
    if (has_nul(o->via.str.ptr, n))
        return proto(err, "the header's %s contains a NUL byte", what);
    *out = malloc(n + 1);
    if (!*out)
        return oom(err);
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
        return proto(err, "the error's %s is not a str", what);
    const char *p = o->via.str.ptr;
    size_t n = o->via.str.size;
    if (has_nul(p, n))
        return proto(err, "the error's %s contains a NUL byte", what);
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

/* [kind, message, python, traceback|nil] or nil. */
static int dec_error(const msgpack_object *o, iso_error *e, iso_error *err)
{
    if (o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4)
        return proto(err, "the header's error is not a 4-item array or nil");
    const msgpack_object *it = o->via.array.ptr;
    if (it[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || it[0].via.u64 == 0 ||
        it[0].via.u64 > ISO_VALUE)
        return proto(err, "the error's kind is not a known error kind");
    e->kind = (iso_kind)it[0].via.u64;
    if (dec_fixed(&it[1], "message", e->message, sizeof e->message, err) ||
        dec_fixed(&it[2], "python", e->python, sizeof e->python, err))
        return -1;
    return dec_cstr(&it[3], "traceback", &e->traceback, err);
}

/* [type, seq, text, error, time] */
static int dec_header(const msgpack_object *h, iso_frame *f, iso_error *err)
{
    if (h->type != MSGPACK_OBJECT_ARRAY || h->via.array.size != 5)
        return proto(err, "the header is not a 5-item array");
    const msgpack_object *it = h->via.array.ptr;
    if (it[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        !rule_of(it[0].via.u64))
        return proto(err, "not a known frame type");
    f->type = (int)it[0].via.u64;
    if (it[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return proto(err, "the header's seq is not an unsigned int");
    f->seq = it[1].via.u64;
    if (it[4].type != MSGPACK_OBJECT_FLOAT64 &&
        it[4].type != MSGPACK_OBJECT_FLOAT32)
        return proto(err, "the header's time is not a float");
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
        return proto(err, "nested deeper than %d levels (or out of memory)",
                     MSGPACK_EMBED_STACK_SIZE);
    return proto(err, "msgpack-c cannot unpack the frame (%d)", (int)rc);
}

static int decode_parts(msgpack_unpacked *u, const char *body, size_t n,
                        iso_frame *f, iso_error *err)
{
    size_t off = 0;
    if (unpack_next(u, body, n, &off, err) < 0 ||
        dec_header(&u->data, f, err) < 0 ||
        unpack_next(u, body, n, &off, err) < 0)
        return -1;
    const frame_rule *r = rule_of((uint64_t)f->type);
    decoder d = {.err = err};
    if (dec_value(&d, &u->data, value_depth(r), &f->value) < 0)
        return -1;
    if (off != n)
        return proto(err, "%zu trailing byte(s) after the value", n - off);
    const char *why = frame_problem(r, f);
    if (why)
        return proto(err, "%s frame %s", r->name, why);
    return 0;
}

int iso_frame_decode(const char *body, size_t n, iso_frame *f, iso_error *err)
{
    memset(f, 0, sizeof *f);
    if (n > ISO_FRAME_MAX)
        return proto(err, "a frame of %zu bytes (the limit is %zu)", n,
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

/* ---- encoding ------------------------------------------------------------ */

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
        msgpack_pack_array(&e->pk, 4);
        msgpack_pack_unsigned_int(&e->pk, (unsigned)x->kind);
        enc_cstr(e, x->message, sizeof x->message - 1);
        enc_cstr(e, x->python, sizeof x->python - 1);
        enc_cstr(e, x->traceback, SIZE_MAX);
    }
    msgpack_pack_double(&e->pk, f->time);
}

/* Append f's body to e. -1 with e->err set. */
static int enc_frame(encoder *e, const iso_frame *f)
{
    const frame_rule *r = f->type < 0 ? NULL : rule_of((uint64_t)f->type);
    if (!r)
        return iso_error_set(e->err, ISO_INVALID_ARGUMENT,
                             "wire: unknown frame type %d", f->type);
    const char *why = frame_problem(r, f);
    if (why)
        return iso_error_set(e->err, ISO_INVALID_ARGUMENT, "wire: %s frame %s",
                             r->name, why);
    enc_header(e, f);
    if (enc_value(e, &f->value, value_depth(r)) < 0 && !e->failed)
        return -1; /* a value rule, with its message */
    if (e->failed == ENC_OOM)
        return oom(e->err);
    if (e->failed == ENC_TOO_BIG)
        return iso_error_set(e->err, ISO_VALUE, "frame larger than %zu bytes",
                             (size_t)ISO_FRAME_MAX);
    return 0;
}

int iso_frame_encode(const iso_frame *f, char **out, size_t *len,
                     iso_error *err)
{
    encoder e;
    enc_init(&e, 0, err);
    if (enc_frame(&e, f) < 0) {
        msgpack_sbuffer_destroy(&e.sb);
        return -1;
    }
    *len = e.sb.size;
    *out = msgpack_sbuffer_release(&e.sb);
    return 0;
}

/* ---- framed socket I/O --------------------------------------------------- */

void iso_wire_init(iso_wire *w, int fd)
{
    memset(w, 0, sizeof *w);
    w->fd = fd;
}

void iso_wire_free(iso_wire *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

static int sys_fail(iso_error *err, const char *call, int code)
{
    if (code == EPIPE || code == ECONNRESET) /* the worker is gone */
        return iso_error_set(err, ISO_CRASHED, "eof");
    iso_error_set(err, ISO_CRASHED, "%s: %s", call, strerror(code));
    if (err)
        err->code = code;
    return -1;
}

static int send_all(int fd, const char *p, size_t n, iso_error *err)
{
    while (n > 0) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r >= 0) {
            p += r;
            n -= (size_t)r;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* a non-blocking fd: wait for room, as promised */
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, -1);
        } else if (errno != EINTR) {
            return sys_fail(err, "send", errno);
        }
    }
    return 0;
}

int iso_wire_send(iso_wire *w, const iso_frame *f, iso_error *err)
{
    static const char room[WIRE_PREFIX];
    encoder e;
    enc_init(&e, WIRE_PREFIX, err);
    /* Pack after a placeholder prefix: one buffer, one send(). */
    enc_write(&e, room, sizeof room);
    int rc = enc_frame(&e, f);
    if (rc == 0) {
        uint32_t n = (uint32_t)(e.sb.size - WIRE_PREFIX);
        unsigned char *p = (unsigned char *)e.sb.data;
        p[0] = (unsigned char)(n >> 24);
        p[1] = (unsigned char)(n >> 16);
        p[2] = (unsigned char)(n >> 8);
        p[3] = (unsigned char)n;
        rc = send_all(w->fd, e.sb.data, e.sb.size, err);
    }
    msgpack_sbuffer_destroy(&e.sb);
    return rc;
}

/* Unread bytes live in buf[off, len). */
static void wire_consume(iso_wire *w, size_t n)
{
    w->off += n;
    if (w->off < w->len)
        return;
    w->off = w->len = 0;
    if (w->cap > WIRE_BUF_KEEP) { /* a big frame passed: give it back */
        free(w->buf);
        w->buf = NULL;
        w->cap = 0;
    }
}

/* Length of the frame at the read position (the prefix is buffered). */
static size_t frame_len(const iso_wire *w)
{
    const unsigned char *p = (const unsigned char *)w->buf + w->off;
    return (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
}

/* 1 with f filled when a whole frame is buffered, 0 when more is needed. */
static int take_frame(iso_wire *w, iso_frame *f, iso_error *err)
{
    if (w->len - w->off < WIRE_PREFIX)
        return 0;
    size_t n = frame_len(w);
    if (n > ISO_FRAME_MAX)
        return proto(err, "a frame of %zu bytes (the limit is %zu)", n,
                     (size_t)ISO_FRAME_MAX);
    if (w->len - w->off - WIRE_PREFIX < n)
        return 0;
    int rc = iso_frame_decode(w->buf + w->off + WIRE_PREFIX, n, f, err);
    wire_consume(w, WIRE_PREFIX + n);
    return rc < 0 ? -1 : 1;
}

/* Room for at least one more byte: move the unread bytes to the front, or
 * grow by doubling, never past the frame being received (a peer that only
 * claims 64 MiB gets no 64 MiB buffer). */
static int wire_room(iso_wire *w, iso_error *err)
{
    if (w->off > 0) {
        memmove(w->buf, w->buf + w->off, w->len - w->off);
        w->len -= w->off;
        w->off = 0;
        return 0;
    }
    size_t cap = w->cap ? 2 * w->cap : WIRE_BUF_MIN;
    if (w->len >= WIRE_PREFIX && cap > WIRE_PREFIX + frame_len(w))
        cap = WIRE_PREFIX + frame_len(w);
    char *buf = realloc(w->buf, cap);
    if (!buf)
        return oom(err);
    w->buf = buf;
    w->cap = cap;
    return 0;
}

/* Read what is there without blocking: 1 read some, 0 nothing yet. */
static int wire_fill(iso_wire *w, iso_error *err)
{
    if (w->len == w->cap && wire_room(w, err) < 0)
        return -1;
    for (;;) {
        ssize_t r = recv(w->fd, w->buf + w->len, w->cap - w->len, MSG_DONTWAIT);
        if (r > 0) {
            w->len += (size_t)r;
            return 1;
        }
        if (r == 0)
            return iso_error_set(err, ISO_CRASHED, "eof");
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno != EINTR)
            return sys_fail(err, "recv", errno);
    }
}

/* Let time pass until the fd may be readable: spin for the first ~50 us
 * since `start` (the caller retries recv in between), then sleep in ppoll
 * until data, hang-up or the deadline. */
static void wire_wait(iso_wire *w, double start, double now, double deadline)
{
    if (now - start < WIRE_SPIN_S) {
        for (int i = 0; i < 32; i++)
            iso_cpu_relax();
        if (now - start > WIRE_YIELD_S)
            sched_yield();
        return;
    }
    struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
    struct timespec ts, *tp = NULL;
    if (deadline >= 0) {
        double left = deadline - now;
        ts.tv_sec = (time_t)left;
        ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
        tp = &ts;
    }
    ppoll(&pfd, 1, tp, NULL); /* EINTR, data or timeout: the caller looks */
}

int iso_wire_recv(iso_wire *w, iso_frame *f, double deadline, iso_error *err)
{
    double start = -1;
    memset(f, 0, sizeof *f);
    for (;;) {
        int rc = take_frame(w, f, err);
        if (rc != 0)
            return rc > 0 ? 0 : -1;
        rc = wire_fill(w, err);
        if (rc < 0)
            return -1;
        if (rc > 0)
            continue;
        double now = iso_now();
        if (deadline >= 0 && now >= deadline)
            return iso_error_set(err, ISO_TIMEOUT,
                                 "no frame from the peer in time");
        if (start < 0)
            start = now;
        wire_wait(w, start, now, deadline);
    }
}
