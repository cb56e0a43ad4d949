/*
 * iso_value: the one value type that crosses every boundary.
 *
 * Ownership rule: an iso_value must be initialised (zeroed means NIL) before
 * it is handed to any function here. The setters and iso_value_move release
 * what the destination held, so a value can be re-set without leaking;
 * iso_value_copy treats its destination as pure output.
 *
 * Containers: seq.len and seq.cap count entries (a map entry is a key/value
 * pair, i.e. two items), so a map's buffer holds 2 * cap items.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isolate.h"

#define SEQ_FIRST_CAP 4

static size_t seq_width(const iso_value *v)
{
    return v->type == ISO_MAP ? 2 : 1;
}

static void items_free(iso_value *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        iso_value_free(&items[i]);
    free(items);
}

iso_value *iso_value_new(void)
{
    return calloc(1, sizeof(iso_value));
}

void iso_value_free(iso_value *v)
{
    if (!v)
        return;
    switch (v->type) {
    case ISO_STR:
    case ISO_BYTES:
        free(v->u.str.ptr);
        break;
    case ISO_LIST:
    case ISO_MAP:
        items_free(v->u.seq.items, v->u.seq.len * seq_width(v));
        break;
    default:
        break;
    }
    memset(v, 0, sizeof *v);
}

void iso_value_destroy(iso_value *v)
{
    iso_value_free(v);
    free(v);
}

void iso_value_move(iso_value *dst, iso_value *src)
{
    if (dst == src)
        return;
    iso_value_free(dst);
    *dst = *src;
    memset(src, 0, sizeof *src);
}

void iso_value_set_nil(iso_value *v)
{
    iso_value_free(v);
}

void iso_value_set_bool(iso_value *v, bool b)
{
    iso_value_free(v);
    v->type = ISO_BOOL;
    v->u.b = b;
}

void iso_value_set_int(iso_value *v, int64_t i)
{
    iso_value_free(v);
    v->type = ISO_INT;
    v->u.i = i;
}

void iso_value_set_float(iso_value *v, double f)
{
    iso_value_free(v);
    v->type = ISO_FLOAT;
    v->u.f = f;
}

int iso_value_set_string(iso_value *v, iso_type type, const char *p, size_t len)
{
    if ((type != ISO_STR && type != ISO_BYTES) || len == SIZE_MAX)
        return -1;
    /* Copy before releasing v: p may point into v's own string. */
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    if (len)
        memcpy(copy, p, len);
    copy[len] = '\0';
    iso_value_free(v);
    v->type = type;
    v->u.str.ptr = copy;
    v->u.str.len = len;
    return 0;
}

void iso_value_set_list(iso_value *v)
{
    iso_value_free(v);
    v->type = ISO_LIST;
}

void iso_value_set_map(iso_value *v)
{
    iso_value_free(v);
    v->type = ISO_MAP;
}

/* Make room for one more entry, doubling so n appends cost O(n). */
static int seq_reserve(iso_value *v)
{
    size_t width = seq_width(v), cap = v->u.seq.cap;
    if (v->u.seq.len < cap)
        return 0;
    cap = cap ? cap * 2 : SEQ_FIRST_CAP;
    if (cap > SIZE_MAX / (width * sizeof(iso_value)))
        return -1;
    iso_value *items = realloc(v->u.seq.items, cap * width * sizeof *items);
    if (!items)
        return -1;
    v->u.seq.items = items;
    v->u.seq.cap = cap;
    return 0;
}

iso_value *iso_list_append(iso_value *list)
{
    if (!list || list->type != ISO_LIST || seq_reserve(list) < 0)
        return NULL;
    iso_value *slot = &list->u.seq.items[list->u.seq.len++];
    memset(slot, 0, sizeof *slot);
    return slot;
}

int iso_map_append(iso_value *map, iso_value **key, iso_value **val)
{
    if (!map || map->type != ISO_MAP || seq_reserve(map) < 0)
        return -1;
    iso_value *pair = &map->u.seq.items[2 * map->u.seq.len++];
    memset(pair, 0, 2 * sizeof *pair);
    *key = &pair[0];
    *val = &pair[1];
    return 0;
}

static int copy_into(iso_value *dst, const iso_value *src);

/* dst is NIL on entry; sized exactly, since copies are rarely appended to. */
static int copy_seq(iso_value *dst, const iso_value *src)
{
    size_t n = src->u.seq.len * seq_width(src);
    dst->type = src->type;
    if (n == 0)
        return 0;
    dst->u.seq.items = calloc(n, sizeof(iso_value));
    if (!dst->u.seq.items)
        return -1;
    dst->u.seq.len = src->u.seq.len;
    dst->u.seq.cap = src->u.seq.len;
    for (size_t i = 0; i < n; i++)
        if (copy_into(&dst->u.seq.items[i], &src->u.seq.items[i]) < 0)
            return -1;
    return 0;
}

/* dst is NIL on entry; on failure it holds a partial copy the caller frees. */
static int copy_into(iso_value *dst, const iso_value *src)
{
    switch (src->type) {
    case ISO_STR:
    case ISO_BYTES:
        return iso_value_set_string(dst, src->type, src->u.str.ptr,
                                    src->u.str.len);
    case ISO_LIST:
    case ISO_MAP:
        return copy_seq(dst, src);
    default:
        *dst = *src;
        return 0;
    }
}

int iso_value_copy(iso_value *dst, const iso_value *src)
{
    iso_value tmp = {0};
    /* Build aside so that dst may alias a part of src. */
    if (copy_into(&tmp, src) < 0) {
        iso_value_free(&tmp);
        memset(dst, 0, sizeof *dst);
        return -1;
    }
    *dst = tmp;
    return 0;
}

static bool list_equal(const iso_value *a, const iso_value *b)
{
    for (size_t i = 0; i < a->u.seq.len; i++)
        if (!iso_value_equal(&a->u.seq.items[i], &b->u.seq.items[i]))
            return false;
    return true;
}

/* The value for key in map, or NULL. hint is where it usually is. */
static const iso_value *map_find(const iso_value *map, const iso_value *key,
                                 size_t hint)
{
    const iso_value *it = map->u.seq.items;
    if (hint < map->u.seq.len && iso_value_equal(&it[2 * hint], key))
        return &it[2 * hint + 1];
    for (size_t i = 0; i < map->u.seq.len; i++)
        if (iso_value_equal(&it[2 * i], key))
            return &it[2 * i + 1];
    return NULL;
}

/* Order does not matter: a Lua table or a dict may hand the pairs back in
 * any order. Same order is the common, linear case. */
static bool map_equal(const iso_value *a, const iso_value *b)
{
    for (size_t i = 0; i < a->u.seq.len; i++) {
        const iso_value *bv = map_find(b, &a->u.seq.items[2 * i], i);
        if (!bv || !iso_value_equal(&a->u.seq.items[2 * i + 1], bv))
            return false;
    }
    return true;
}

bool iso_value_equal(const iso_value *a, const iso_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case ISO_NIL:
        return true;
    case ISO_BOOL:
        return a->u.b == b->u.b;
    case ISO_INT:
        return a->u.i == b->u.i;
    case ISO_FLOAT: /* a NaN that crossed a boundary is still "the same" */
        return a->u.f == b->u.f || (isnan(a->u.f) && isnan(b->u.f));
    case ISO_STR:
    case ISO_BYTES:
        return a->u.str.len == b->u.str.len &&
               memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len) == 0;
    case ISO_LIST:
        return a->u.seq.len == b->u.seq.len && list_equal(a, b);
    case ISO_MAP:
        return a->u.seq.len == b->u.seq.len && map_equal(a, b);
    }
    return false;
}

/* Length of the well-formed sequence at s (Unicode Table 3-7), 0 if none.
 * The second byte's range is what excludes overlongs (E0, F0), surrogates
 * (ED) and code points above U+10FFFF (F4). */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : lo;
        hi = c == 0xED ? 0x9F : hi;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : lo;
        hi = c == 0xF4 ? 0x8F : hi;
    } else {
        return 0; /* 80..C1 and F5..FF never lead; ASCII is not seen here */
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if ((s[k] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* Skip the ASCII prefix eight bytes at a time: most payloads are text. */
static size_t ascii_prefix(const unsigned char *s, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, sizeof w);
        if (w & UINT64_C(0x8080808080808080))
            break;
    }
    while (i < len && s[i] < 0x80)
        i++;
    return i;
}

bool iso_utf8_valid(const char *p, size_t len)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    while (i < len) {
        i += ascii_prefix(s + i, len - i);
        if (i == len)
            break;
        size_t n = utf8_seq_len(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

size_t iso_value_string_bytes(const iso_value *v)
{
    switch (v->type) {
    case ISO_STR:
    case ISO_BYTES:
        return v->u.str.len;
    case ISO_LIST:
    case ISO_MAP: {
        size_t total = 0;
        for (size_t i = 0; i < v->u.seq.len * seq_width(v); i++)
            total += iso_value_string_bytes(&v->u.seq.items[i]);
        return total;
    }
    default:
        return 0;
    }
}

size_t iso_value_footprint(const iso_value *v)
{
    size_t total = sizeof *v;
    switch (v->type) {
    case ISO_STR:
    case ISO_BYTES:
        return total + v->u.str.len;
    case ISO_LIST:
    case ISO_MAP:
        for (size_t i = 0; i < v->u.seq.len * seq_width(v); i++)
            total += iso_value_footprint(&v->u.seq.items[i]);
        return total;
    default:
        return total;
    }
}
