/* The process backend's wire protocol: codec rules and framed socket I/O. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "isolate.h"
#include "handoff.h"
#include "wire.h"

/* ---- helpers ------------------------------------------------------------- */

/* n containers nested inside each other, the innermost holding 7. */
static void nested(iso_value *v, int n, iso_type type)
{
    iso_value *cur = v;
    for (int i = 0; i < n; i++) {
        iso_value *k, *next;
        if (type == ISO_LIST) {
            iso_value_set_list(cur);
            next = iso_list_append(cur);
        } else {
            iso_value_set_map(cur);
            iso_map_append(cur, &k, &next);
            iso_value_set_string(k, ISO_STR, "k", 1);
        }
        cur = next;
    }
    iso_value_set_int(cur, 7);
}

static void set_str(iso_value *v, iso_type type, const char *s, size_t n)
{
    CHECK_EQ_INT(iso_value_set_string(v, type, s, n), 0);
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool frame_equal(const iso_frame *a, const iso_frame *b)
{
    return a->type == b->type && a->seq == b->seq &&
           same_str(a->text, b->text) && a->error.kind == b->error.kind &&
           strcmp(a->error.message, b->error.message) == 0 &&
           strcmp(a->error.python, b->error.python) == 0 &&
           same_str(a->error.traceback, b->error.traceback) &&
           memcmp(&a->time, &b->time, sizeof a->time) == 0 &&
           iso_value_equal(&a->value, &b->value);
}

/* Encode then decode `in`; the copy must equal it. */
static void roundtrip(const iso_frame *in)
{
    char *body = NULL;
    size_t n = 0;
    iso_frame out;
    iso_error err = {0};
    CHECK_EQ_INT(iso_frame_encode(in, &body, &n, &err), 0);
    CHECK_EQ_STR(err.message, "");
    CHECK_EQ_INT(iso_frame_decode(body, n, &out, &err), 0);
    CHECK_EQ_STR(err.message, "");
    CHECK(frame_equal(in, &out));
    iso_frame_clear(&out);
    free(body);
}

static void roundtrip_value(iso_value *v)
{
    iso_frame f = {.type = ISO_FRAME_POST, .time = 1.25};
    iso_value_move(&f.value, v);
    roundtrip(&f);
    iso_frame_clear(&f);
}

/* Parse hex digits (spaces ignored) into out; returns the length. */
static size_t unhex(const char *s, unsigned char *out)
{
    size_t n = 0;
    for (int hi = -1; *s; s++) {
        if (*s == ' ')
            continue;
        int d = *s >= 'a' ? *s - 'a' + 10 : *s - '0';
        if (hi < 0) {
            hi = d;
        } else {
            out[n++] = (unsigned char)(hi << 4 | d);
            hi = -1;
        }
    }
    return n;
}

/* A header [type, 0, nil, nil, 0.0]; type as two hex digits. */
#define HDR(type) "95 " type " 00 c0 c0 cb 0000000000000000 "
#define POST HDR("0c")
#define CALL_F "95 02 00 a1 66 c0 cb 0000000000000000 " /* target "f" */

/* The body must be refused as a protocol error (its code) whose message
 * names the rule broken (needle). */
static void refused(const char *hex, const char *needle)
{
    unsigned char body[512];
    size_t n = unhex(hex, body);
    iso_frame f;
    iso_error err = {0};
    check_total++;
    int rc = iso_frame_decode((const char *)body, n, &f, &err);
    if (rc != -1 || err.kind != ISO_CRASHED || err.code != ISO_E_PROTOCOL ||
        !strstr(err.message, needle))
        CHECK_FAIL_("body %s: rc %d, %s: \"%s\", expected \"%s\"", hex, rc,
                    iso_kind_name(err.kind), err.message, needle);
    iso_frame empty = {0};
    CHECK(memcmp(&f, &empty, sizeof f) == 0); /* left zeroed */
    iso_error_clear(&err);
}

static void accepted(const char *hex, iso_frame *f)
{
    unsigned char body[512];
    size_t n = unhex(hex, body);
    iso_error err = {0};
    check_total++;
    if (iso_frame_decode((const char *)body, n, f, &err) != 0)
        CHECK_FAIL_("body %s refused: %s", hex, err.message);
}

/* How encoding f fails: the kind, with needle in the message. */
static void encode_refused(const iso_frame *f, iso_kind kind,
                           const char *needle)
{
    char *body = NULL;
    size_t n = 0;
    iso_error err = {0};
    CHECK_EQ_INT(iso_frame_encode(f, &body, &n, &err), -1);
    CHECK_EQ_STR(iso_kind_name(err.kind), iso_kind_name(kind));
    CHECK_HAS_STR(err.message, needle);
    CHECK(body == NULL);
}

/* A body of the header (hex) and n containers nested, the innermost holding
 * 1, or when wrap, a list holding that. */
static int decode_nested(const char *hdr, int n, iso_error *err)
{
    unsigned char body[128];
    size_t len = unhex(hdr, body);
    for (int i = 0; i < n; i++)
        body[len++] = 0x91;
    body[len++] = 0x01;
    iso_frame f;
    int rc = iso_frame_decode((const char *)body, len, &f, err);
    iso_frame_clear(&f);
    return rc;
}

static double ms_since(double t0)
{
    return (iso_now() - t0) * 1e3;
}

/* ---- the codec ----------------------------------------------------------- */

static void test_value_types(void)
{
    static const int64_t ints[] = {
        0,   1,     -1,      127,  128,       -32,       -33,       255,
        256, 65535, 1 << 20, -129, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN};
    static const double floats[] = {0.0,    -0.0,     1.5,       -1e300,
                                    5e-324, INFINITY, -INFINITY, NAN};
    iso_value v = {0};
    roundtrip_value(&v); /* nil */
    iso_value_set_bool(&v, true);
    roundtrip_value(&v);
    iso_value_set_bool(&v, false);
    roundtrip_value(&v);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        iso_value_set_int(&v, ints[i]);
        roundtrip_value(&v);
    }
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        iso_value_set_float(&v, floats[i]);
        roundtrip_value(&v);
    }
    set_str(&v, ISO_STR, "", 0);
    roundtrip_value(&v);
    set_str(&v, ISO_STR, "h\xc3\xa9llo\0w\xf0\x9f\x98\x80", 12);
    roundtrip_value(&v);
    set_str(&v, ISO_BYTES, "", 0);
    roundtrip_value(&v);
    set_str(&v, ISO_BYTES, "\xff\x00\xfe", 3); /* kept apart from STR */
    roundtrip_value(&v);
}

static void test_containers(void)
{
    iso_value v = {0}, *k, *x;
    iso_value_set_list(&v);
    roundtrip_value(&v); /* empty list */
    iso_value_set_map(&v);
    roundtrip_value(&v); /* empty map, still a map */
    iso_value_set_map(&v);
    iso_map_append(&v, &k, &x);
    set_str(k, ISO_STR, "name", 4);
    set_str(x, ISO_STR, "job", 3);
    iso_map_append(&v, &k, &x);
    set_str(k, ISO_BYTES, "\xff", 1);
    iso_value_set_float(x, 0.25);
    iso_map_append(&v, &k, &x);
    iso_value_set_int(k, -7);
    iso_value_set_list(x);
    iso_value_set_nil(iso_list_append(x));
    iso_value_set_bool(iso_list_append(x), true);
    nested(iso_list_append(x), 3, ISO_MAP);
    roundtrip_value(&v);
    /* 20 items: past the fixarray/fixmap forms */
    iso_value_set_list(&v);
    for (int i = 0; i < 20; i++)
        iso_value_set_int(iso_list_append(&v), i);
    roundtrip_value(&v);
}

static void test_header_fields(void)
{
    static const int types[] = {
        ISO_FRAME_REPLY,  ISO_FRAME_STOP, ISO_FRAME_READY,
        ISO_FRAME_RESULT, ISO_FRAME_POST,
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        iso_frame f = {.type = types[i], .seq = i, .time = 1.7e9 + 0.123};
        roundtrip(&f);
    }
    iso_frame f = {.type = ISO_FRAME_EXEC, .seq = UINT64_MAX, .time = -1};
    f.text = strdup("print('h\xc3\xa9')\n");
    roundtrip(&f);
    free(f.text);
    f.text = strdup(""); /* present but empty is not absent */
    roundtrip(&f);
    iso_frame_clear(&f);
    f = (iso_frame){.type = ISO_FRAME_CALL, .seq = 42, .text = strdup("m.f")};
    iso_value_set_list(&f.value);
    iso_value_set_int(iso_list_append(&f.value), 9);
    roundtrip(&f);
    iso_frame_clear(&f);
    f = (iso_frame){.type = ISO_FRAME_CONFIG};
    iso_value_set_map(&f.value);
    roundtrip(&f);
    iso_frame_clear(&f);
    CHECK_EQ_STR(iso_frame_type_name(ISO_FRAME_DENIAL), "denial");
    CHECK_EQ_STR(iso_frame_type_name(ISO_FRAME_RELOAD), "reload");
    CHECK_EQ_STR(iso_frame_type_name(ISO_FRAME_RELOADED), "reloaded");
    CHECK_EQ_STR(iso_frame_type_name(ISO_FRAME_WAITING), "waiting");
    CHECK(iso_frame_type_name(7) == NULL);
    CHECK(iso_frame_type_name(-1) == NULL);
}

static void test_list_frames(void)
{
    static const struct {
        int type, items;
    } kinds[] = {{ISO_FRAME_LOG, 3},
                 {ISO_FRAME_METRIC, 3},
                 {ISO_FRAME_REQUEST, 3},
                 {ISO_FRAME_DENIAL, 5},
                 {ISO_FRAME_DENIAL, 7}}; /* learn mode: source, where */
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        iso_frame f = {.type = kinds[i].type, .time = 3};
        iso_value_set_list(&f.value);
        for (int j = 0; j < kinds[i].items; j++)
            set_str(iso_list_append(&f.value), ISO_STR, "x", 1);
        roundtrip(&f);
        iso_value_set_nil(iso_list_append(&f.value));
        encode_refused(&f, ISO_INVALID_ARGUMENT, "wrong length");
        iso_frame_clear(&f);
    }
}

static void test_errors(void)
{
    iso_frame f = {.type = ISO_FRAME_RESULT, .seq = 3};
    iso_error_set(&f.error, ISO_GUEST, "ZeroDivisionError: division by zero");
    strcpy(f.error.python, "ZeroDivisionError");
    f.error.traceback = strdup("Traceback (most recent call last):\n  ...\n");
    roundtrip(&f);
    iso_error_clear(&f.error);
    iso_error_set(&f.error, ISO_TIMEOUT, "wall_ms"); /* no traceback */
    roundtrip(&f);
    f.type = ISO_FRAME_REPLY;
    iso_error_set(&f.error, ISO_POLICY, "capability 'kv' denied");
    roundtrip(&f);
    iso_value_set_int(&f.value, 1);
    encode_refused(&f, ISO_INVALID_ARGUMENT, "carries no value");
    iso_frame_clear(&f);
    /* Every kind crosses. */
    for (int k = ISO_INVALID_ARGUMENT; k <= ISO_VALUE; k++) {
        iso_frame g = {.type = ISO_FRAME_RESULT};
        iso_error_set(&g.error, (iso_kind)k, "kind %d", k);
        roundtrip(&g);
        iso_frame_clear(&g);
    }
}

static void test_error_truncation(void)
{
    /* A 600-byte message of 2-byte characters and a 70-byte python name
     * (a lying worker; ours fit) are cut to the buffers, on a character
     * boundary. */
    size_t n = 0;
    unsigned char body[1024];
    n += unhex("95 0b 00 c0 96 05 da 0258", body);
    for (int i = 0; i < 300; i++)
        n += unhex("c3a9", body + n);
    n += unhex("d9 46", body + n);
    memset(body + n, 'E', 70);
    n += 70;
    n += unhex("c0 d9 c8", body + n); /* a 200-byte refused_import */
    memset(body + n, 'm', 200);
    n += 200;
    n += unhex("c0 cb 0000000000000000 c0", body + n); /* no suggestion */
    iso_frame f;
    iso_error err = {0};
    CHECK_EQ_INT(iso_frame_decode((const char *)body, n, &f, &err), 0);
    CHECK_EQ_INT(f.error.kind, ISO_GUEST);
    CHECK_EQ_INT(strlen(f.error.message), 510);
    CHECK(iso_utf8_valid(f.error.message, strlen(f.error.message)));
    CHECK_EQ_INT(strlen(f.error.python), 63);
    CHECK(f.error.traceback == NULL);
    CHECK_EQ_INT(strlen(f.error.refused_import), 127);
    iso_frame_clear(&f);
}

static void test_float32_accepted(void)
{
    iso_frame f;
    accepted(POST "ca 3fc00000", &f); /* 1.5f */
    CHECK_EQ_INT(f.value.type, ISO_FLOAT);
    CHECK(f.value.u.f == 1.5);
    iso_frame_clear(&f);
    accepted("95 0c 00 c0 c0 ca 40200000 c0", &f); /* time 2.5f */
    CHECK(f.time == 2.5);
    iso_frame_clear(&f);
    /* signed forms of small positives are still ints, also as seq */
    accepted("95 0c d0 05 c0 c0 cb 0000000000000000 d3 0000000000000009", &f);
    CHECK_EQ_INT(f.seq, 5);
    CHECK_EQ_INT(f.value.u.i, 9);
    iso_frame_clear(&f);
}

/* The limit is one number for every backend: ISO_VALUE_MAX_DEPTH levels in
 * a value; frames that wrap values in a list carry one level more. */
/* A POST body whose value is a list of n nils, built by hand. */
static char *nil_list_body(size_t n, size_t *len)
{
    static const unsigned char header[] = {
        0x95, 0x0c, 0x00, 0xc0, 0xc0, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0};
    *len = sizeof header + 5 + n;
    unsigned char *b = malloc(*len);
    memcpy(b, header, sizeof header);
    unsigned char *p = b + sizeof header;
    p[0] = 0xdd; /* array 32 */
    for (int i = 0; i < 4; i++)
        p[1 + i] = (unsigned char)(n >> (24 - 8 * i));
    memset(p + 5, 0xc0, n);
    return (char *)b;
}

/* Item count: a frame of nils small in bytes must not become a huge tree. */
static void test_item_limit(void)
{
    iso_frame f = {0};
    iso_error err = {0};
    size_t len;
    char *body = nil_list_body(1000, &len);
    CHECK_EQ_INT(iso_frame_decode(body, len, &f, &err), 0);
    CHECK_EQ_INT(f.value.u.seq.len, 1000);
    iso_frame_clear(&f);
    free(body);
    body = nil_list_body(ISO_VALUE_MAX_ITEMS + 64, &len); /* header slack */
    CHECK_EQ_INT(iso_frame_decode(body, len, &f, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_CRASHED);
    CHECK_EQ_INT(err.code, ISO_E_PROTOCOL);
    CHECK_HAS_STR(err.message, "the frame holds more than");
    free(body);
    iso_error_clear(&err);
}

static void test_depth(void)
{
    iso_frame f = {.type = ISO_FRAME_POST};
    iso_error err = {0};
    CHECK_EQ_INT(ISO_VALUE_MAX_DEPTH, 31);
    nested(&f.value, ISO_VALUE_MAX_DEPTH, ISO_LIST);
    roundtrip(&f);
    nested(&f.value, ISO_VALUE_MAX_DEPTH, ISO_MAP);
    roundtrip(&f);
    nested(&f.value, ISO_VALUE_MAX_DEPTH + 1, ISO_LIST);
    encode_refused(&f, ISO_VALUE, "deeper than 31");
    nested(&f.value, ISO_VALUE_MAX_DEPTH + 1, ISO_MAP);
    encode_refused(&f, ISO_VALUE, "deeper than 31");
    iso_frame_clear(&f);
    /* call arguments at the full depth: 32 levels on the wire */
    f = (iso_frame){.type = ISO_FRAME_CALL, .text = strdup("echo")};
    iso_value_set_list(&f.value);
    nested(iso_list_append(&f.value), ISO_VALUE_MAX_DEPTH, ISO_LIST);
    roundtrip(&f);
    nested(&f.value.u.seq.items[0], ISO_VALUE_MAX_DEPTH + 1, ISO_LIST);
    encode_refused(&f, ISO_VALUE, "deeper than 31");
    iso_frame_clear(&f);
    /* hand-built: a POST of 31 passes, 32 is refused by our rule, 33 by
     * msgpack-c's stack; a CALL (or a LOG) carries 32 but not 33 */
    CHECK_EQ_INT(decode_nested(POST, 31, &err), 0);
    CHECK_EQ_INT(decode_nested(POST, 32, &err), -1);
    CHECK_EQ_INT(err.code, ISO_E_PROTOCOL);
    CHECK_HAS_STR(err.message, "a value nested deeper than 31");
    CHECK_EQ_INT(decode_nested(POST, 33, &err), -1);
    CHECK_EQ_INT(err.code, ISO_E_PROTOCOL);
    CHECK_HAS_STR(err.message, "nested deeper than 32");
    CHECK_EQ_INT(decode_nested(POST, 100, &err), -1);
    CHECK_EQ_INT(err.code, ISO_E_PROTOCOL);
    CHECK_HAS_STR(err.message, "");
    CHECK_EQ_INT(decode_nested(CALL_F, 32, &err), 0);
    CHECK_EQ_INT(decode_nested(CALL_F, 33, &err), -1);
    CHECK_EQ_INT(err.code, ISO_E_PROTOCOL);
    CHECK_HAS_STR(err.message, "nested deeper than 32");
    CHECK_EQ_INT(decode_nested(HDR("0d") "93 01 01", 31, &err), 0);
    CHECK_EQ_INT(decode_nested(HDR("0d") "93 01 01", 32, &err), -1);
    CHECK_EQ_INT(err.code, ISO_E_PROTOCOL);
    CHECK_HAS_STR(err.message, "nested deeper than 32");
    iso_error_clear(&err);
}

static void test_malformed_header(void)
{
    refused("", "truncated");
    refused("c0 c0", "5-item array");
    refused("94 0c 00 c0 c0 c0", "5-item array");
    refused("96 0c 00 c0 c0 cb 0000000000000000 c0 c0", "5-item array");
    refused("85 0c 00 00 c0 01 c0 02 c0 03 c0 c0", "5-item array");
    refused(HDR("00") "c0", "frame type");
    refused(HDR("07") "c0", "frame type");    /* after RELOAD (6) */
    refused(HDR("13") "c0", "frame type");    /* after WAITING (18) */
    refused(HDR("06") "c0", "map value");     /* RELOAD carries a plan */
    refused(HDR("ff") "c0", "frame type");    /* -1 */
    refused(HDR("a1 78") "c0", "frame type"); /* "x" */
    refused(HDR("cf 800000000000000b") "c0", "frame type");
    refused("95 0c ff c0 c0 cb 0000000000000000 c0", "seq");
    refused("95 0c a0 c0 c0 cb 0000000000000000 c0", "seq");
    refused("95 0c 00 c0 c0 00 c0", "time");
    refused("95 0c 00 c0 c0 c0 c0", "time");
    refused("95 01 00 01 c0 cb 0000000000000000 c0", "text");
    refused("95 01 00 c4 01 61 c0 cb 0000000000000000 c0", "text");
    refused("95 01 00 a3 610062 c0 cb 0000000000000000 c0", "NUL");
}

#define ERRV(e, v) "95 0b 00 c0 " e " cb 0000000000000000 " v
#define ERR(e) ERRV(e, "c0")

static void test_malformed_error(void)
{
    refused(ERR("01"), "error");
    refused(ERR("93 05 a0 a0"), "error");
    refused(ERR("94 05 a0 a0 c0"), "6-item"); /* an older worker's */
    refused(ERR("95 05 a0 a0 c0 a0"), "6-item");
    refused(ERR("96 00 a0 a0 c0 a0 c0"), "kind");
    refused(ERR("96 0c a0 a0 c0 a0 c0"), "kind");
    refused(ERR("96 ff a0 a0 c0 a0 c0"), "kind");
    refused(ERR("96 a1 35 a0 a0 c0 a0 c0"), "kind");
    refused(ERR("96 05 01 a0 c0 a0 c0"), "message");
    refused(ERR("96 05 a2 6100 a0 c0 a0 c0"), "NUL");
    refused(ERR("96 05 a0 c0 c0 a0 c0"), "python");
    refused(ERR("96 05 a0 a0 01 a0 c0"), "traceback");
    refused(ERR("96 05 a0 a0 c0 c0 c0"), "refused_import");
    refused(ERR("96 05 a0 a0 c0 a2 6a00 c0"), "NUL");
    refused(ERR("96 05 a0 a0 c0 a0 01"), "suggestion");
    refused(ERR("96 05 a0 a0 c0 a0 a2 7800"), "NUL");
    iso_frame f;
    accepted(ERR("96 05 a1 6d a1 70 a2 7462 a1 6a a1 73"), &f);
    CHECK_EQ_STR(f.error.message, "m");
    CHECK_EQ_STR(f.error.python, "p");
    CHECK_EQ_STR(f.error.traceback, "tb");
    CHECK_EQ_STR(f.error.refused_import, "j");
    CHECK_EQ_STR(f.error.suggestion, "s");
    iso_frame_clear(&f);
}

static void test_malformed_value(void)
{
    refused(POST, "no value");
    refused(POST "c0 c0", "after the value");
    refused(POST "c0 00 00 00", "3 trailing byte(s)");
    refused(POST "d4 01 00", "not allowed");    /* fixext 1 */
    refused(POST "c7 01 05 00", "not allowed"); /* ext 8 */
    refused(POST "d8 01 00000000 00000000 00000000 00000000", "not allowed");
    refused(POST "c1", "not allowed"); /* never used */
    refused(POST "91 c1", "not allowed");
    refused(POST "81 c0 01", "map key");
    refused(POST "81 c2 01", "map key");
    refused(POST "81 cb 3ff0000000000000 01", "map key");
    refused(POST "81 ca 3f800000 01", "map key");
    refused(POST "81 90 01", "map key");
    refused(POST "81 80 01", "map key");
    refused(POST "cf 8000000000000000", "int64");
    refused(POST "cf ffffffffffffffff", "int64");
    refused(POST "a2 c328", "UTF-8");
    refused(POST "a3 eda080", "UTF-8"); /* a surrogate */
    refused(POST "a2 c0af", "UTF-8");   /* overlong */
    refused(POST "92 01 a1 ff", "UTF-8");
    refused(POST "81 a1 ff 01", "UTF-8"); /* in a key */
    refused(POST "a5 61", "truncated");
    refused(POST "db 0000", "truncated");
    refused(POST "c6 00000010 00", "truncated");
    refused(POST "cb 0000", "truncated");
    refused(POST "92 01", "claims more items");
    /* counts that would make msgpack-c allocate gigabytes */
    refused(POST "dd ffffffff", "claims more items");
    refused(POST "df 7fffffff 01 01", "claims more items");
    refused(POST "92 dd 00ffffff 01", "claims more items");
    refused("dd ffffffff c0", "claims more items");
}

static void test_frame_shapes(void)
{
    refused(HDR("01") "c0", "exec frame needs text");
    refused("95 01 00 a0 c0 cb 0000000000000000 01", "carries no value");
    refused("95 0c 00 a0 c0 cb 0000000000000000 01", "carries no text");
    refused("95 02 00 a1 66 c0 cb 0000000000000000 80", "list value");
    refused(HDR("04") "90", "map value");
    refused(HDR("0d") "92 01 01", "wrong length");
    refused(HDR("10") "93 01 01 01", "wrong length");
    refused("95 0c 00 c0 96 05 a0 a0 c0 a0 c0 cb 0000000000000000 c0",
            "carries no error");
    refused(ERRV("96 05 a0 a0 c0 a0 c0", "01"), "carries no value");
    iso_frame f = {.type = ISO_FRAME_EXEC};
    encode_refused(&f, ISO_INVALID_ARGUMENT, "needs text");
    f.type = 0;
    encode_refused(&f, ISO_INVALID_ARGUMENT, "unknown frame type");
    f.type = -3;
    encode_refused(&f, ISO_INVALID_ARGUMENT, "unknown frame type");
    f.type = ISO_FRAME_POST;
    f.error.kind = ISO_VALUE + 1;
    encode_refused(&f, ISO_INVALID_ARGUMENT, "carries no error");
    f.type = ISO_FRAME_RESULT;
    encode_refused(&f, ISO_INVALID_ARGUMENT, "unknown kind");
    f = (iso_frame){.type = ISO_FRAME_CALL, .text = strdup("f")};
    encode_refused(&f, ISO_INVALID_ARGUMENT, "list value");
    iso_frame_clear(&f);
}

static void test_bad_values_not_encoded(void)
{
    iso_frame f = {.type = ISO_FRAME_POST};
    iso_value *k, *v;
    iso_value_set_map(&f.value);
    iso_map_append(&f.value, &k, &v);
    iso_value_set_float(k, 1.5);
    encode_refused(&f, ISO_VALUE, "map key");
    iso_value_set_list(k);
    encode_refused(&f, ISO_VALUE, "map key");
    iso_frame_clear(&f);
}

/* One value of at most ISO_VALUE_MAX_BYTES of strings crosses; a byte more
 * does not, in either direction. */
static void test_size_limit(void)
{
    size_t half = ISO_VALUE_MAX_BYTES / 2;
    char *blob = calloc(1, half + 1);
    iso_frame f = {.type = ISO_FRAME_POST};
    iso_value_set_list(&f.value);
    set_str(iso_list_append(&f.value), ISO_BYTES, blob, half);
    set_str(iso_list_append(&f.value), ISO_STR, blob, half);
    roundtrip(&f);
    set_str(&f.value.u.seq.items[1], ISO_STR, blob, half + 1);
    encode_refused(&f, ISO_VALUE, "bytes of strings");
    iso_frame_clear(&f);
    /* hand-built: [bin32 half, bin32 half + 1] */
    size_t n = 0, len = 15 + 2 * 5 + 2 * half + 1;
    unsigned char *body = malloc(len);
    n += unhex(POST "92", body);
    for (int i = 0; i < 2; i++) {
        uint32_t m = (uint32_t)(half + (size_t)i);
        body[n++] = 0xc6;
        for (int shift = 24; shift >= 0; shift -= 8)
            body[n++] = (unsigned char)(m >> shift);
        memset(body + n, 'a', m);
        n += m;
    }
    CHECK_EQ_INT(n, len);
    iso_error err = {0};
    CHECK_EQ_INT(iso_frame_decode((const char *)body, n, &f, &err), -1);
    CHECK_EQ_INT(err.code, ISO_E_PROTOCOL);
    CHECK_HAS_STR(err.message, "the value holds more than");
    free(body);
    /* text is not value bytes, but the whole frame has a limit */
    f = (iso_frame){.type = ISO_FRAME_EXEC, .text = malloc(ISO_FRAME_MAX)};
    memset(f.text, 'x', ISO_FRAME_MAX - 1);
    f.text[ISO_FRAME_MAX - 1] = '\0';
    encode_refused(&f, ISO_VALUE, "frame larger than");
    iso_frame_clear(&f);
    free(blob);
}

/* ---- framed socket I/O --------------------------------------------------- */

static void pair(int sv[2])
{
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static iso_frame sample(uint64_t seq, size_t bytes)
{
    iso_frame f = {.type = ISO_FRAME_RESULT, .seq = seq, .time = 0.5};
    char *blob = malloc(bytes + 1);
    for (size_t i = 0; i < bytes; i++)
        blob[i] = (char)(i * 7 + seq);
    set_str(&f.value, ISO_BYTES, blob, bytes);
    free(blob);
    return f;
}

/* Length prefix + body of f, appended to *buf. */
static void append_wire(const iso_frame *f, char **buf, size_t *len)
{
    char *body;
    size_t n;
    iso_error err = {0};
    CHECK_EQ_INT(iso_frame_encode(f, &body, &n, &err), 0);
    *buf = realloc(*buf, *len + 4 + n);
    unsigned char *p = (unsigned char *)*buf + *len;
    p[0] = (unsigned char)(n >> 24), p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8), p[3] = (unsigned char)n;
    memcpy(p + 4, body, n);
    *len += 4 + n;
    free(body);
}

static void expect_frame(iso_wire *w, const iso_frame *want, double deadline)
{
    iso_frame got;
    iso_error err = {0};
    CHECK_EQ_INT(iso_wire_recv(w, &got, deadline, &err), 0);
    CHECK_EQ_STR(err.message, "");
    CHECK(frame_equal(&got, want));
    iso_frame_clear(&got);
}

static void expect_fail(iso_wire *w, double deadline, iso_kind kind,
                        const char *msg)
{
    iso_frame got;
    iso_error err = {0};
    CHECK_EQ_INT(iso_wire_recv(w, &got, deadline, &err), -1);
    CHECK_EQ_STR(iso_kind_name(err.kind), iso_kind_name(kind));
    CHECK(err.code != ISO_E_PROTOCOL);
    CHECK_HAS_STR(err.message, msg);
    iso_frame_clear(&got);
}

/* A protocol error (its code), the rule broken named by needle. */
static void expect_violation(iso_wire *w, double deadline, const char *needle)
{
    iso_frame got;
    iso_error err = {0};
    CHECK_EQ_INT(iso_wire_recv(w, &got, deadline, &err), -1);
    CHECK_EQ_STR(iso_kind_name(err.kind), iso_kind_name(ISO_CRASHED));
    CHECK_EQ_INT(err.code, ISO_E_PROTOCOL);
    CHECK_HAS_STR(err.message, needle);
    iso_frame_clear(&got);
}

typedef struct dribble {
    int fd;
    const char *p;
    size_t n, step;
    unsigned pause_us;
} dribble;

static void *dribble_main(void *arg)
{
    dribble *d = arg;
    for (size_t i = 0; i < d->n; i += d->step) {
        size_t k = d->n - i < d->step ? d->n - i : d->step;
        if (write(d->fd, d->p + i, k) != (ssize_t)k)
            break;
        if (d->pause_us)
            usleep(d->pause_us);
    }
    return NULL;
}

/* Frames written a few bytes at a time, with pauses, come out whole. */
static void test_split_frames(void)
{
    int sv[2];
    pair(sv);
    iso_frame f[3] = {sample(1, 0), sample(2, 300), sample(3, 5)};
    char *buf = NULL;
    size_t len = 0;
    for (int i = 0; i < 3; i++)
        append_wire(&f[i], &buf, &len);
    dribble d = {sv[1], buf, len, 7, 100};
    pthread_t t;
    pthread_create(&t, NULL, dribble_main, &d);
    iso_wire w;
    iso_wire_init(&w, sv[0]);
    for (int i = 0; i < 3; i++)
        expect_frame(&w, &f[i], iso_now() + 10);
    pthread_join(t, NULL);
    iso_wire_free(&w);
    for (int i = 0; i < 3; i++)
        iso_frame_clear(&f[i]);
    free(buf);
    close(sv[0]);
    close(sv[1]);
}

/* Many frames in one write come out one by one, then nothing. */
static void test_coalesced_frames(void)
{
    enum { N = 2000 };
    int sv[2];
    pair(sv);
    char *buf = NULL;
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        iso_frame f = sample((uint64_t)i, (size_t)i % 40);
        append_wire(&f, &buf, &len);
        iso_frame_clear(&f);
    }
    dribble d = {sv[1], buf, len, len, 0};
    pthread_t t;
    pthread_create(&t, NULL, dribble_main, &d);
    iso_wire w;
    iso_wire_init(&w, sv[0]);
    for (int i = 0; i < N; i++) {
        iso_frame want = sample((uint64_t)i, (size_t)i % 40);
        expect_frame(&w, &want, iso_now() + 10);
        iso_frame_clear(&want);
    }
    pthread_join(t, NULL);
    expect_fail(&w, iso_now() + 0.01, ISO_TIMEOUT, "");
    iso_wire_free(&w);
    free(buf);
    close(sv[0]);
    close(sv[1]);
}

typedef struct sender {
    int fd;
    const iso_frame *f;
    unsigned delay_us;
    int rc;
} sender;

static void *sender_main(void *arg)
{
    sender *s = arg;
    iso_wire w;
    iso_error err = {0};
    if (s->delay_us)
        usleep(s->delay_us);
    iso_wire_init(&w, s->fd);
    s->rc = iso_wire_send(&w, s->f, &err);
    iso_wire_free(&w);
    return NULL;
}

static void test_big_frame(void)
{
    int sv[2];
    pair(sv);
    iso_frame f = sample(9, (size_t)10 << 20);
    sender s = {sv[1], &f, 0, -1};
    pthread_t t;
    pthread_create(&t, NULL, sender_main, &s);
    iso_wire w;
    iso_wire_init(&w, sv[0]);
    expect_frame(&w, &f, iso_now() + 30);
    pthread_join(t, NULL);
    CHECK_EQ_INT(s.rc, 0);
    CHECK(w.cap <= ((size_t)1 << 20)); /* the 10 MiB buffer was given back */
    iso_wire_free(&w);
    iso_frame_clear(&f);
    close(sv[0]);
    close(sv[1]);
}

static void test_deadlines(void)
{
    int sv[2];
    pair(sv);
    iso_wire w, out;
    iso_wire_init(&w, sv[0]);
    iso_wire_init(&out, sv[1]);
    iso_error err = {0};
    /* nothing arrives: ISO_TIMEOUT at the deadline, not much later */
    double t0 = iso_now();
    expect_fail(&w, t0 + 0.05, ISO_TIMEOUT, "");
    double ms = ms_since(t0);
    CHECK(ms >= 50 && ms < 55);
    printf("     timeout after %.2f ms (deadline 50 ms)\n", ms);
    /* a past deadline still takes what is readable, then times out */
    iso_frame f = sample(1, 10);
    CHECK_EQ_INT(iso_wire_send(&out, &f, &err), 0);
    CHECK_EQ_INT(iso_wire_send(&out, &f, &err), 0);
    expect_frame(&w, &f, 0);             /* readable */
    expect_frame(&w, &f, iso_now() - 1); /* already buffered */
    t0 = iso_now();
    expect_fail(&w, 0, ISO_TIMEOUT, "");
    CHECK(ms_since(t0) < 1);
    /* < 0 waits as long as it takes */
    sender s = {sv[1], &f, 20000, -1};
    pthread_t t;
    pthread_create(&t, NULL, sender_main, &s);
    t0 = iso_now();
    expect_frame(&w, &f, -1);
    CHECK(ms_since(t0) >= 19);
    pthread_join(t, NULL);
    iso_frame_clear(&f);
    iso_wire_free(&w);
    iso_wire_free(&out);
    close(sv[0]);
    close(sv[1]);
}

static void write_hex(int fd, const char *hex)
{
    unsigned char b[64];
    size_t n = unhex(hex, b);
    CHECK_EQ_INT(write(fd, b, n), (ssize_t)n);
}

static void test_eof(void)
{
    int sv[2];
    iso_wire w;
    iso_error err = {0};
    /* a clean close */
    pair(sv);
    iso_wire_init(&w, sv[0]);
    close(sv[1]);
    expect_fail(&w, -1, ISO_CRASHED, "eof");
    iso_wire_free(&w);
    close(sv[0]);
    /* a close in the middle of a frame */
    pair(sv);
    iso_wire_init(&w, sv[0]);
    write_hex(sv[1], "00 00 00 10 95 0c");
    close(sv[1]);
    iso_frame got;
    CHECK_EQ_INT(iso_wire_recv(&w, &got, -1, &err), -1);
    CHECK_EQ_STR(err.message, "eof");
    iso_wire_free(&w);
    close(sv[0]);
    /* sending to a peer that is gone: "eof", and no SIGPIPE kills us */
    pair(sv);
    close(sv[0]);
    iso_wire_init(&w, sv[1]);
    iso_frame f = sample(1, 100);
    CHECK_EQ_INT(iso_wire_send(&w, &f, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_CRASHED);
    CHECK_EQ_STR(err.message, "eof");
    iso_frame_clear(&f);
    iso_wire_free(&w);
    close(sv[1]);
}

static void test_bad_streams(void)
{
    int sv[2];
    pair(sv);
    iso_wire w;
    iso_wire_init(&w, sv[0]);
    /* a frame claiming exactly the limit waits for its bytes, with no
     * buffer the size of its claim */
    char hex[32];
    snprintf(hex, sizeof hex, "%08zx c0", (size_t)ISO_FRAME_MAX);
    write_hex(sv[1], hex);
    expect_fail(&w, iso_now() + 0.01, ISO_TIMEOUT, "");
    CHECK(w.cap <= ((size_t)1 << 20));
    iso_wire_free(&w);
    close(sv[0]);
    close(sv[1]);
    /* one byte more is refused before it is read */
    pair(sv);
    iso_wire_init(&w, sv[0]);
    snprintf(hex, sizeof hex, "%08zx", (size_t)ISO_FRAME_MAX + 1);
    write_hex(sv[1], hex);
    expect_violation(&w, iso_now() + 1, "a frame of");
    iso_wire_free(&w);
    close(sv[0]);
    close(sv[1]);
    /* a malformed body is a protocol error */
    pair(sv);
    iso_wire_init(&w, sv[0]);
    write_hex(sv[1], "00000002 c0 c0");
    expect_violation(&w, iso_now() + 1, "the header");
    write_hex(sv[1], "00000000");
    expect_violation(&w, iso_now() + 1, "");
    iso_wire_free(&w);
    close(sv[0]);
    close(sv[1]);
}

/* ---- speed (reported, not asserted: timing is the bench's business) ----- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A forked echo peer, as a worker would be. */
static void echo_peer(int fd)
{
    iso_wire w;
    iso_frame f;
    iso_error err = {0};
    iso_wire_init(&w, fd);
    while (iso_wire_recv(&w, &f, -1, &err) == 0) {
        f.type = ISO_FRAME_RESULT; /* sqrt(9), as far as the test cares */
        free(f.text);
        f.text = NULL;
        iso_value_set_float(&f.value, 3.0);
        iso_wire_send(&w, &f, &err);
        iso_frame_clear(&f);
    }
    _exit(0);
}

static void test_round_trip_speed(void)
{
    enum { N = 2000 };
    int sv[2];
    pair(sv);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        echo_peer(sv[1]);
    }
    close(sv[1]);
    iso_wire w;
    iso_wire_init(&w, sv[0]);
    static double us[N];
    iso_frame call = {.type = ISO_FRAME_CALL, .text = strdup("math.sqrt")};
    iso_value_set_list(&call.value);
    iso_value_set_int(iso_list_append(&call.value), 9);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        iso_frame back = {0};
        iso_error err = {0};
        double t0 = iso_now();
        if (iso_wire_send(&w, &call, &err) < 0 ||
            iso_wire_recv(&w, &back, iso_now() + 5, &err) < 0)
            break;
        us[ok++] = (iso_now() - t0) * 1e6;
        iso_frame_clear(&back);
    }
    CHECK_EQ_INT(ok, N);
    qsort(us, (size_t)ok, sizeof us[0], cmp_double);
    if (ok == N)
        printf("     round trip through a forked peer: median %.1f us, p90 "
               "%.1f us\n",
               us[N / 2], us[N * 9 / 10]);
    iso_frame_clear(&call);
    iso_wire_free(&w);
    close(sv[0]);
    waitpid(pid, NULL, 0);
}

int main(void)
{
    RUN(test_value_types);
    RUN(test_containers);
    RUN(test_header_fields);
    RUN(test_list_frames);
    RUN(test_errors);
    RUN(test_error_truncation);
    RUN(test_float32_accepted);
    RUN(test_depth);
    RUN(test_item_limit);
    RUN(test_malformed_header);
    RUN(test_malformed_error);
    RUN(test_malformed_value);
    RUN(test_frame_shapes);
    RUN(test_bad_values_not_encoded);
    RUN(test_size_limit);
    RUN(test_split_frames);
    RUN(test_coalesced_frames);
    RUN(test_big_frame);
    RUN(test_deadlines);
    RUN(test_eof);
    RUN(test_bad_streams);
    RUN(test_round_trip_speed);
    return CHECK_EXIT();
}
