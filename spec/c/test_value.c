/* Unit tests for src/base/value.c and src/base/error.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "isolate.h"

#define U8(s) (s), sizeof(s) - 1

static void test_setters(void)
{
    iso_value v = {0};
    CHECK_EQ_INT(v.type, ISO_NIL);
    iso_value_set_bool(&v, true);
    CHECK_EQ_INT(v.type, ISO_BOOL);
    CHECK(v.u.b);
    iso_value_set_int(&v, INT64_MIN);
    CHECK_EQ_INT(v.type, ISO_INT);
    CHECK(v.u.i == INT64_MIN);
    iso_value_set_float(&v, -2.5);
    CHECK_EQ_INT(v.type, ISO_FLOAT);
    CHECK(v.u.f == -2.5);
    CHECK_EQ_INT(iso_value_set_string(&v, ISO_STR, "hello", 5), 0);
    CHECK_EQ_INT(v.type, ISO_STR);
    CHECK_EQ_INT(v.u.str.len, 5);
    CHECK_EQ_STR(v.u.str.ptr, "hello");
    /* Re-setting releases the old string (ASan reports a leak otherwise). */
    CHECK_EQ_INT(iso_value_set_string(&v, ISO_BYTES, "a\0b", 3), 0);
    CHECK_EQ_INT(v.type, ISO_BYTES);
    CHECK_EQ_INT(v.u.str.len, 3);
    CHECK(memcmp(v.u.str.ptr, "a\0b\0", 4) == 0);
    iso_value_set_nil(&v);
    CHECK_EQ_INT(v.type, ISO_NIL);
    CHECK(v.u.str.ptr == NULL);
}

static void test_set_string_edges(void)
{
    iso_value v = {0};
    CHECK_EQ_INT(iso_value_set_string(&v, ISO_STR, NULL, 0), 0);
    CHECK_EQ_INT(v.u.str.len, 0);
    CHECK(v.u.str.ptr != NULL && v.u.str.ptr[0] == '\0');
    /* Only STR and BYTES are strings; v is left untouched. */
    CHECK_EQ_INT(iso_value_set_string(&v, ISO_INT, "x", 1), -1);
    CHECK_EQ_INT(v.type, ISO_STR);
    /* The source may be the value's own string. */
    CHECK_EQ_INT(iso_value_set_string(&v, ISO_STR, "abcdef", 6), 0);
    CHECK_EQ_INT(iso_value_set_string(&v, ISO_STR, v.u.str.ptr + 2, 3), 0);
    CHECK_EQ_STR(v.u.str.ptr, "cde");
    iso_value_free(&v);
    iso_value_free(NULL);
}

static void test_new_destroy(void)
{
    iso_value *v = iso_value_new();
    CHECK(v != NULL);
    CHECK_EQ_INT(v->type, ISO_NIL);
    iso_value_set_list(v);
    CHECK_EQ_INT(iso_value_set_string(iso_list_append(v), ISO_STR, U8("x")), 0);
    iso_value_destroy(v);
    iso_value_destroy(NULL);
}

static void test_list_growth(void)
{
    iso_value list = {0};
    size_t cap = 0, regrowths = 0;
    iso_value_set_list(&list);
    CHECK_EQ_INT(list.u.seq.len, 0);
    for (int i = 0; i < 5000; i++) {
        iso_value *slot = iso_list_append(&list);
        regrowths += list.u.seq.cap != cap;
        cap = list.u.seq.cap;
        CHECK(slot != NULL && slot->type == ISO_NIL);
        if (!slot)
            break;
        iso_value_set_int(slot, i * 3);
    }
    CHECK_EQ_INT(list.u.seq.len, 5000);
    CHECK(list.u.seq.cap >= 5000 && list.u.seq.cap < 10000 * 2);
    CHECK(regrowths <= 16); /* geometric: O(log n) reallocations */
    int bad = 0;
    for (int i = 0; i < 5000; i++)
        bad += list.u.seq.items[i].type != ISO_INT ||
               list.u.seq.items[i].u.i != i * 3;
    CHECK_EQ_INT(bad, 0);
    iso_value_free(&list);
    CHECK_EQ_INT(list.type, ISO_NIL);
}

static void test_map_growth(void)
{
    iso_value map = {0}, *k = NULL, *v = NULL;
    char key[32];
    iso_value_set_map(&map);
    for (int i = 0; i < 3000; i++) {
        CHECK_EQ_INT(iso_map_append(&map, &k, &v), 0);
        CHECK(k->type == ISO_NIL && v->type == ISO_NIL);
        int n = snprintf(key, sizeof key, "key%d", i);
        CHECK_EQ_INT(iso_value_set_string(k, ISO_STR, key, (size_t)n), 0);
        iso_value_set_float(v, i + 0.5);
    }
    CHECK_EQ_INT(map.u.seq.len, 3000);
    CHECK_EQ_STR(map.u.seq.items[2 * 2999].u.str.ptr, "key2999");
    CHECK(map.u.seq.items[2 * 2999 + 1].u.f == 2999.5);
    CHECK_EQ_STR(map.u.seq.items[0].u.str.ptr, "key0");
    iso_value_free(&map);
}

static void test_append_wrong_type(void)
{
    iso_value v = {0}, *k, *val;
    CHECK(iso_list_append(&v) == NULL);
    CHECK_EQ_INT(iso_map_append(&v, &k, &val), -1);
    iso_value_set_map(&v);
    CHECK(iso_list_append(&v) == NULL);
    iso_value_set_list(&v);
    CHECK_EQ_INT(iso_map_append(&v, &k, &val), -1);
    CHECK(iso_list_append(NULL) == NULL);
    iso_value_free(&v);
}

/* {"name": "cell", "\xff": [1, 2.5, nil, true, b"\0\1", {}, [], {7: NaN}]} */
static void build_sample(iso_value *root)
{
    iso_value *k, *v, *inner;
    iso_value_set_map(root);
    iso_map_append(root, &k, &v);
    iso_value_set_string(k, ISO_STR, U8("name"));
    iso_value_set_string(v, ISO_STR, U8("cell"));
    iso_map_append(root, &k, &v);
    iso_value_set_string(k, ISO_BYTES, U8("\xff"));
    iso_value_set_list(v);
    iso_value_set_int(iso_list_append(v), 1);
    iso_value_set_float(iso_list_append(v), 2.5);
    iso_list_append(v);
    iso_value_set_bool(iso_list_append(v), true);
    iso_value_set_string(iso_list_append(v), ISO_BYTES, "\0\1", 2);
    iso_value_set_map(iso_list_append(v));
    iso_value_set_list(iso_list_append(v));
    inner = iso_list_append(v);
    iso_value_set_map(inner);
    iso_map_append(inner, &k, &v);
    iso_value_set_int(k, 7);
    iso_value_set_float(v, NAN);
}

static void test_copy_equal(void)
{
    iso_value a = {0}, b = {0};
    build_sample(&a);
    CHECK_EQ_INT(iso_value_copy(&b, &a), 0);
    CHECK(iso_value_equal(&a, &b));
    CHECK(iso_value_equal(&b, &a));
    /* Deep: the copy owns its own strings and containers. */
    iso_value *list_a = &a.u.seq.items[3], *list_b = &b.u.seq.items[3];
    CHECK(list_a->u.seq.items != list_b->u.seq.items);
    CHECK(a.u.seq.items[1].u.str.ptr != b.u.seq.items[1].u.str.ptr);
    CHECK_EQ_INT(list_b->u.seq.len, 8);
    CHECK_EQ_INT(list_b->u.seq.items[4].u.str.len, 2);
    iso_value_set_int(&list_b->u.seq.items[2], 0); /* nil -> 0 */
    CHECK(!iso_value_equal(&a, &b));
    iso_value_set_nil(&list_b->u.seq.items[2]);
    CHECK(iso_value_equal(&a, &b));
    iso_value_set_float(&list_b->u.seq.items[7].u.seq.items[1], 1.0);
    CHECK(!iso_value_equal(&a, &b));
    iso_value_free(&b);
    /* A copy of a scalar, and of an empty container. */
    iso_value_copy(&b, &list_a->u.seq.items[1]);
    CHECK(b.type == ISO_FLOAT && b.u.f == 2.5);
    iso_value_copy(&b, &list_a->u.seq.items[6]);
    CHECK(b.type == ISO_LIST && b.u.seq.len == 0);
    iso_value_free(&b);
    iso_value_free(&a);
}

static void test_equal_rules(void)
{
    iso_value a = {0}, b = {0};
    iso_value_set_int(&a, 1);
    iso_value_set_float(&b, 1.0);
    CHECK(!iso_value_equal(&a, &b)); /* no numeric coercion */
    iso_value_set_string(&a, ISO_STR, U8("ab"));
    iso_value_set_string(&b, ISO_BYTES, U8("ab"));
    CHECK(!iso_value_equal(&a, &b));
    iso_value_set_string(&b, ISO_STR, U8("abc"));
    CHECK(!iso_value_equal(&a, &b));
    iso_value_set_string(&b, ISO_STR, U8("ab"));
    CHECK(iso_value_equal(&a, &b));
    iso_value_set_bool(&a, false);
    iso_value_set_nil(&b);
    CHECK(!iso_value_equal(&a, &b));
    iso_value_set_nil(&a);
    CHECK(iso_value_equal(&a, &b));
    iso_value_set_float(&a, NAN);
    iso_value_set_float(&b, NAN);
    CHECK(iso_value_equal(&a, &b));
    iso_value_set_float(&b, 0.0);
    CHECK(!iso_value_equal(&a, &b));
}

static void map_put_int(iso_value *map, int64_t key, int64_t val)
{
    iso_value *k, *v;
    iso_map_append(map, &k, &v);
    iso_value_set_int(k, key);
    iso_value_set_int(v, val);
}

static void test_equal_containers(void)
{
    iso_value a = {0}, b = {0};
    iso_value_set_map(&a);
    iso_value_set_map(&b);
    map_put_int(&a, 1, 10);
    map_put_int(&a, 2, 20);
    map_put_int(&b, 2, 20);
    CHECK(!iso_value_equal(&a, &b)); /* different sizes */
    map_put_int(&b, 1, 10);
    CHECK(iso_value_equal(&a, &b)); /* maps ignore order */
    iso_value_set_int(&b.u.seq.items[1], 21);
    CHECK(!iso_value_equal(&a, &b));
    iso_value_set_list(&a);
    iso_value_set_list(&b);
    iso_value_set_int(iso_list_append(&a), 1);
    iso_value_set_int(iso_list_append(&a), 2);
    iso_value_set_int(iso_list_append(&b), 2);
    iso_value_set_int(iso_list_append(&b), 1);
    CHECK(!iso_value_equal(&a, &b)); /* lists do not */
    iso_value_set_map(&b);
    iso_value_set_list(&a);
    CHECK(!iso_value_equal(&a, &b)); /* [] is not {} */
    iso_value_free(&a);
    iso_value_free(&b);
}

static void test_move(void)
{
    iso_value src = {0}, dst = {0};
    build_sample(&src);
    iso_value_set_string(&dst, ISO_STR, U8("old")); /* released by move */
    iso_value *items = src.u.seq.items;
    iso_value_move(&dst, &src);
    CHECK_EQ_INT(src.type, ISO_NIL);
    CHECK(src.u.seq.items == NULL);
    CHECK_EQ_INT(dst.type, ISO_MAP);
    CHECK(dst.u.seq.items == items);
    iso_value_move(&dst, &dst);
    CHECK(dst.type == ISO_MAP && dst.u.seq.items == items);
    /* The usual pattern: move a built value into a container slot. */
    iso_value list = {0};
    iso_value_set_list(&list);
    iso_value_move(iso_list_append(&list), &dst);
    CHECK_EQ_INT(list.u.seq.items[0].type, ISO_MAP);
    CHECK_EQ_INT(dst.type, ISO_NIL);
    iso_value_free(&list);
}

static bool utf8(const char *s, size_t len)
{
    return iso_utf8_valid(s, len);
}

static void test_utf8_valid(void)
{
    CHECK(utf8("", 0));
    CHECK(utf8(NULL, 0));
    CHECK(utf8(U8("plain ascii text, longer than eight bytes")));
    CHECK(utf8("a\0b", 3)); /* NUL is a valid code point */
    CHECK(utf8(U8("\x7f")));
    CHECK(utf8(U8("\xc2\x80")));         /* U+0080 */
    CHECK(utf8(U8("\xdf\xbf")));         /* U+07FF */
    CHECK(utf8(U8("\xe0\xa0\x80")));     /* U+0800 */
    CHECK(utf8(U8("\xe2\x82\xac")));     /* U+20AC */
    CHECK(utf8(U8("\xed\x9f\xbf")));     /* U+D7FF */
    CHECK(utf8(U8("\xee\x80\x80")));     /* U+E000 */
    CHECK(utf8(U8("\xef\xbf\xbf")));     /* U+FFFF */
    CHECK(utf8(U8("\xf0\x90\x80\x80"))); /* U+10000 */
    CHECK(utf8(U8("\xf0\x9f\x98\x80"))); /* U+1F600 */
    CHECK(utf8(U8("\xf4\x8f\xbf\xbf"))); /* U+10FFFF */
    CHECK(utf8(U8("caf\xc3\xa9 na\xc3\xafve \xe2\x9c\x93 ok ok ok")));
}

static void test_utf8_invalid(void)
{
    CHECK(!utf8(U8("\xc0\x80")));                 /* overlong NUL */
    CHECK(!utf8(U8("\xc1\xbf")));                 /* overlong 2-byte */
    CHECK(!utf8(U8("\xe0\x80\x80")));             /* overlong 3-byte */
    CHECK(!utf8(U8("\xe0\x9f\xbf")));             /* overlong U+07FF */
    CHECK(!utf8(U8("\xf0\x80\x80\x80")));         /* overlong 4-byte */
    CHECK(!utf8(U8("\xf0\x8f\xbf\xbf")));         /* overlong U+FFFF */
    CHECK(!utf8(U8("\xed\xa0\x80")));             /* U+D800 */
    CHECK(!utf8(U8("\xed\xbf\xbf")));             /* U+DFFF */
    CHECK(!utf8(U8("\xed\xa0\xbd\xed\xb8\x80"))); /* CESU pair */
    CHECK(!utf8(U8("\xf4\x90\x80\x80")));         /* U+110000 */
    CHECK(!utf8(U8("\xf5\x80\x80\x80")));
    CHECK(!utf8(U8("\xff")));
    CHECK(!utf8(U8("\xfe")));
    CHECK(!utf8(U8("\x80"))); /* lone continuation */
    CHECK(!utf8(U8("abc\xbf")));
    CHECK(!utf8(U8("\xc3"))); /* truncated */
    CHECK(!utf8(U8("\xe2\x82")));
    CHECK(!utf8(U8("\xf0\x9f\x98")));
    CHECK(!utf8(U8("\xc3"
                   "a"))); /* bad continuation */
    CHECK(!utf8(U8("\xe2\x28\xa1")));
    CHECK(!utf8(U8("\xf0\x9f\x98"
                   "a")));
    /* A bad byte after a long ASCII run (past the 8-byte fast path). */
    CHECK(!utf8(U8("0123456789abcdefghij\x80")));
    CHECK(!utf8(U8("0123456789abcdef\xe2\x82")));
    /* The length bounds the read: the valid tail past len is ignored. */
    CHECK(!utf8("\xe2\x82\xac", 2));
    CHECK(utf8("ab\xff", 2));
}

static void test_error(void)
{
    iso_error err = {0}, dst = {0};
    CHECK_EQ_INT(iso_error_set(&err, ISO_VALUE, "bad %s at %d", "thing", 3),
                 -1);
    CHECK_EQ_INT(err.kind, ISO_VALUE);
    CHECK_EQ_STR(err.message, "bad thing at 3");
    CHECK_EQ_INT(iso_error_set(NULL, ISO_VALUE, "ignored"), -1);
    err.traceback = strdup("Traceback ...");
    err.code = 5;
    iso_error_set(&err, ISO_GUEST, "again"); /* frees the old traceback */
    CHECK(err.traceback == NULL && err.code == 0);
    err.traceback = strdup("tb");
    snprintf(err.python, sizeof err.python, "KeyError");
    iso_error_move(&dst, &err);
    CHECK_EQ_INT(dst.kind, ISO_GUEST);
    CHECK_EQ_STR(dst.traceback, "tb");
    CHECK_EQ_STR(dst.python, "KeyError");
    CHECK_EQ_INT(err.kind, ISO_OK);
    CHECK(err.traceback == NULL && err.message[0] == '\0');
    iso_error_move(NULL, &dst); /* drops it */
    CHECK(dst.traceback == NULL && dst.kind == ISO_OK);
    iso_error_clear(&dst);
    iso_error_clear(NULL);
    CHECK_EQ_STR(iso_kind_name(ISO_VALUE), "value");
    CHECK_EQ_STR(iso_kind_name(ISO_INVALID_ARGUMENT), "invalid_argument");
}

/* The payload limit counts every string and bytes value, keys included. */
static void test_string_bytes(void)
{
    iso_value v = {0}, *k, *val;
    iso_value_set_list(&v);
    CHECK_EQ_INT(iso_value_string_bytes(&v), 0);
    iso_value_set_string(iso_list_append(&v), ISO_STR, "abc", 3);
    iso_value_set_int(iso_list_append(&v), 7);
    iso_value *map = iso_list_append(&v);
    iso_value_set_map(map);
    iso_map_append(map, &k, &val);
    iso_value_set_string(k, ISO_STR, "key", 3);
    iso_value_set_string(val, ISO_BYTES, "\xff\x00", 2);
    CHECK_EQ_INT(iso_value_string_bytes(&v), 8);
    iso_value_free(&v);
}

int main(void)
{
    RUN(test_setters);
    RUN(test_set_string_edges);
    RUN(test_new_destroy);
    RUN(test_list_growth);
    RUN(test_map_growth);
    RUN(test_append_wrong_type);
    RUN(test_copy_equal);
    RUN(test_equal_rules);
    RUN(test_equal_containers);
    RUN(test_move);
    RUN(test_utf8_valid);
    RUN(test_utf8_invalid);
    RUN(test_error);
    RUN(test_string_bytes);
    return CHECK_EXIT();
}
