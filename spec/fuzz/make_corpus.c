/*
 * Writes the seed corpus for fuzz_frame (spec/fuzz/corpus/): valid bodies of
 * every frame type, near-valid bodies (one rule broken each) and a few
 * length-prefixed streams. The files are committed; rerun only to change
 * them, from the source root:
 *
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc/base spec/fuzz/make_corpus.c \
 *      src/base/wire_rules.c src/base/wire_decode.c src/base/wire_encode.c \
 *      src/base/wire_io.c src/base/value.c src/base/error.c src/base/handoff.c \
 *      $(pkg-config --cflags --libs msgpack) -o /tmp/make_corpus &&
 *   /tmp/make_corpus spec/fuzz/corpus
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolate.h"
#include "wire.h"

static const char *dir;
static int failures;

static void save(const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        perror(path);
        failures++;
    }
    if (f)
        fclose(f);
}

/* Encode f (consumed) as a body, and remember it for the stream seeds. */
static char *encode(iso_frame *f, size_t *n)
{
    char *body = NULL;
    iso_error err = {0};
    if (iso_frame_encode(f, &body, n, &err) != 0) {
        fprintf(stderr, "%s: %s\n", iso_frame_type_name(f->type), err.message);
        failures++;
    }
    iso_frame_clear(f);
    return body;
}

static void save_frame(const char *name, iso_frame *f)
{
    size_t n = 0;
    char *body = encode(f, &n);
    if (body)
        save(name, body, n);
    free(body);
}

static void str(iso_value *v, const char *s)
{
    iso_value_set_string(v, ISO_STR, s, strlen(s));
}

static void put(iso_value *map, const char *key, iso_value **val)
{
    iso_value *k;
    iso_map_append(map, &k, val);
    str(k, key);
}

/* A list of n strings. */
static void strings(iso_value *v, const char *const *s, int n)
{
    iso_value_set_list(v);
    for (int i = 0; i < n; i++)
        str(iso_list_append(v), s[i]);
}

/* Every scalar and both containers, small. */
static void mixed(iso_value *v)
{
    iso_value *x, *k;
    iso_value_set_map(v);
    put(v, "nil", &x);
    put(v, "flags", &x);
    iso_value_set_list(x);
    iso_value_set_bool(iso_list_append(x), true);
    iso_value_set_bool(iso_list_append(x), false);
    put(v, "ints", &x);
    iso_value_set_list(x);
    iso_value_set_int(iso_list_append(x), -1);
    iso_value_set_int(iso_list_append(x), 300);
    iso_value_set_int(iso_list_append(x), INT64_MIN);
    iso_value_set_int(iso_list_append(x), INT64_MAX);
    put(v, "f", &x);
    iso_value_set_float(x, 1.5);
    iso_map_append(v, &k, &x);
    iso_value_set_string(k, ISO_BYTES, "\xff\x00", 2);
    str(x, "h\xc3\xa9");
    iso_map_append(v, &k, &x);
    iso_value_set_int(k, 7);
    iso_value_set_map(x);
}

static void nested(iso_value *v, int n)
{
    for (int i = 0; i < n; i++) {
        iso_value_set_list(v);
        v = iso_list_append(v);
    }
    iso_value_set_int(v, 1);
}

static void host_frames(void)
{
    iso_frame f = {.type = ISO_FRAME_EXEC, .seq = 1, .text = strdup("post(1)")};
    save_frame("exec", &f);
    f = (iso_frame){.type = ISO_FRAME_CALL, .seq = 2, .text = strdup("m.f")};
    iso_value_set_list(&f.value);
    iso_value_set_int(iso_list_append(&f.value), 9);
    mixed(iso_list_append(&f.value));
    save_frame("call", &f);
    f = (iso_frame){.type = ISO_FRAME_CALL, .seq = 3, .text = strdup("echo")};
    iso_value_set_list(&f.value);
    nested(iso_list_append(&f.value), ISO_VALUE_MAX_DEPTH);
    save_frame("call-deepest", &f);
    f = (iso_frame){.type = ISO_FRAME_REPLY, .time = 1.5};
    iso_value_set_int(&f.value, 3);
    save_frame("reply", &f);
    f = (iso_frame){.type = ISO_FRAME_REPLY};
    iso_error_set(&f.error, ISO_POLICY, "capability 'kv' is not granted");
    save_frame("reply-error", &f);
    static const char *const imports[] = {"math", "json"};
    iso_value *x;
    f = (iso_frame){.type = ISO_FRAME_CONFIG};
    iso_value_set_map(&f.value);
    put(&f.value, "name", &x);
    str(x, "demo");
    put(&f.value, "imports", &x);
    strings(x, imports, 2);
    put(&f.value, "wall_ms", &x);
    iso_value_set_int(x, 5000);
    save_frame("config", &f);
    f = (iso_frame){.type = ISO_FRAME_STOP};
    save_frame("stop", &f);
}

static void worker_frames(void)
{
    static const char *const log[] = {"info", "hello"};
    static const char *const req[] = {"kv", "get", "key"};
    static const char *const denial[] = {"fs", "open", "/etc/passwd",
                                         "default deny", "python-guard"};
    iso_frame f = {.type = ISO_FRAME_READY, .time = 1.7e9};
    mixed(&f.value);
    save_frame("ready", &f);
    f = (iso_frame){.type = ISO_FRAME_RESULT, .seq = 2};
    mixed(&f.value);
    save_frame("result", &f);
    f = (iso_frame){.type = ISO_FRAME_RESULT, .seq = 2};
    iso_error_set(&f.error, ISO_GUEST, "ZeroDivisionError: division by zero");
    strcpy(f.error.python, "ZeroDivisionError");
    f.error.traceback = strdup("Traceback (most recent call last):\n");
    save_frame("result-error", &f);
    f = (iso_frame){.type = ISO_FRAME_POST};
    nested(&f.value, ISO_VALUE_MAX_DEPTH);
    save_frame("post-deepest", &f);
    f = (iso_frame){.type = ISO_FRAME_LOG};
    strings(&f.value, log, 2);
    mixed(iso_list_append(&f.value));
    save_frame("log", &f);
    f = (iso_frame){.type = ISO_FRAME_METRIC};
    strings(&f.value, log, 1);
    iso_value_set_float(iso_list_append(&f.value), 0.25);
    iso_value_set_map(iso_list_append(&f.value));
    save_frame("metric", &f);
    f = (iso_frame){.type = ISO_FRAME_REQUEST};
    strings(&f.value, req, 3);
    save_frame("request", &f);
    f = (iso_frame){.type = ISO_FRAME_DENIAL};
    strings(&f.value, denial, 5);
    save_frame("denial", &f);
}

#define POST "\x95\x0c\x00\xc0\xc0\xcb\0\0\0\0\0\0\0\0"
#define NEAR(name, bytes) save(name, bytes, sizeof bytes - 1)

/* One rule broken each: the fuzzer starts next to every refusal. */
static void near_valid(void)
{
    NEAR("bad-trailing", POST "\xc0\xc0");
    NEAR("bad-no-value", POST);
    NEAR("bad-ext", POST "\xd4\x01\x00");
    NEAR("bad-utf8", POST "\xa2\xc3\x28");
    NEAR("bad-nil-key", POST "\x81\xc0\x01");
    NEAR("bad-uint64", POST "\xcf\xff\xff\xff\xff\xff\xff\xff\xff");
    NEAR("bad-count", POST "\xdd\xff\xff\xff\xff");
    NEAR("post-float32", POST "\xca\x3f\xc0\x00\x00");
    NEAR("bad-type", "\x95\x07\x00\xc0\xc0\xcb\0\0\0\0\0\0\0\0\xc0");
    NEAR("bad-error", "\x95\x0b\x00\xc0\x96\x00\xa0\xa0\xc0\xa0\xc0"
                      "\xcb\0\0\0\0\0\0\0\0\xc0");
    NEAR("bad-text-nul", "\x95\x01\x00\xa3"
                         "a\0b"
                         "\xc0"
                         "\xcb\0\0\0\0\0\0\0\0\xc0");
    char deep[64] = POST;
    memset(deep + 14, 0x91, 33);
    deep[47] = 0x01;
    save("bad-deep", deep, 48);
}

/* Length-prefixed streams for the reader path. */
static void streams(void)
{
    iso_frame f = {.type = ISO_FRAME_POST};
    size_t n = 0, len = 0;
    char *body = encode(&f, &n), buf[256];
    for (int i = 0; body && i < 2; i++) { /* two frames, one write */
        buf[len++] = 0, buf[len++] = 0, buf[len++] = 0;
        buf[len++] = (char)n;
        memcpy(buf + len, body, n);
        len += n;
    }
    save("stream-two", buf, len);
    save("stream-cut", buf, len - 3);
    free(body);
    NEAR("stream-huge", "\x04\x10\x00\x01\xc0");
    NEAR("stream-empty-body", "\x00\x00\x00\x00");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    host_frames();
    worker_frames();
    near_valid();
    streams();
    return failures ? 1 : 0;
}
