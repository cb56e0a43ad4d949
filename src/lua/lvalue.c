/*
 * Lua 5.4 values <-> iso_value.
 *
 * Reading a Lua value never raises: only raw access (lua_rawgeti, lua_next,
 * lua_rawlen, lua_getmetatable) and lua_checkstack, which reports instead of
 * raising. That lets the binding convert arguments while it holds C
 * resources, and it means a guest-facing metamethod can never run here.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lvalue.h"

/* Stack slots one table needs: its metatable and a marker, or a key and a
 * value while iterating. A child table reserves its own. */
#define LV_SLOTS 4
#define LV_KEY_SHOWN 32

enum { LV_PLAIN, LV_ARRAY, LV_BYTES };

/* One step of the path to the value being converted, for error messages. */
typedef struct lv_seg {
    bool is_int;
    lua_Integer i;
    const char *s; /* borrowed from a key that stays on the stack */
    size_t len;
} lv_seg;

typedef struct lv_conv {
    lua_State *L;
    iso_error *err;
    size_t bytes;                            /* string payload so far */
    size_t items;                            /* values converted so far */
    int depth;                               /* tables on the current path */
    int npath;                               /* valid entries of path */
    const void *tables[ISO_VALUE_MAX_DEPTH]; /* for cycle detection */
    lv_seg path[ISO_VALUE_MAX_DEPTH];
} lv_conv;

typedef struct lv_buf {
    char *p;
    size_t size, len;
} lv_buf;

static int lv_value(lv_conv *c, int idx, iso_value *out);

/* ---- error messages ---------------------------------------------------- */

static void buf_printf(lv_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buf_printf(lv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len +=
            (size_t)n < b->size - b->len ? (size_t)n : b->size - b->len - 1;
}

static bool is_ident(const char *s, size_t len)
{
    if (len == 0 || len > LV_KEY_SHOWN || isdigit((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return false;
    return true;
}

/* ["key"], with what would garble a one-line message shown as '?'. */
static void seg_quoted(lv_buf *b, const lv_seg *seg)
{
    size_t n = seg->len < LV_KEY_SHOWN ? seg->len : LV_KEY_SHOWN;
    buf_printf(b, "[\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)seg->s[i];
        bool plain = isprint(ch) && ch != '"' && ch != '\\';
        buf_printf(b, "%c", plain ? ch : '?');
    }
    buf_printf(b, "%s\"]", n < seg->len ? "..." : "");
}

static void seg_format(lv_buf *b, const lv_seg *seg, bool first)
{
    if (seg->is_int)
        buf_printf(b, "[%lld]", (long long)seg->i);
    else if (is_ident(seg->s, seg->len))
        buf_printf(b, "%s%.*s", first ? "" : ".", (int)seg->len, seg->s);
    else
        seg_quoted(b, seg);
}

static int lv_fail(lv_conv *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int lv_fail(lv_conv *c, const char *fmt, ...)
{
    char what[200], where[300];
    lv_buf b = {where, sizeof where, 0};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    where[0] = '\0';
    for (int i = 0; i < c->npath; i++)
        seg_format(&b, &c->path[i], i == 0);
    return iso_error_set(c->err, ISO_VALUE, "%s at %s", what,
                         c->npath ? where : "the top level");
}

static int lv_oom(lv_conv *c)
{
    return iso_error_set(c->err, ISO_MEMORY,
                         "out of memory converting a "
                         "Lua value");
}

static const char *lv_what(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TTHREAD:
        return "coroutine";
    case LUA_TLIGHTUSERDATA:
        return "light userdata";
    case LUA_TNUMBER:
        return lua_isinteger(L, idx) ? "integer" : "float";
    default:
        return lua_typename(L, lua_type(L, idx));
    }
}

/* ---- scalars ----------------------------------------------------------- */

static int lv_payload(lv_conv *c, iso_type type, const char *s, size_t len,
                      iso_value *out)
{
    /* c->bytes never exceeds the limit, so the subtraction cannot wrap. */
    if (len > ISO_VALUE_MAX_BYTES - c->bytes)
        return lv_fail(c, "cannot convert more than %zu MiB of strings",
                       ISO_VALUE_MAX_BYTES >> 20);
    c->bytes += len;
    if (iso_value_set_string(out, type, s, len) < 0)
        return lv_oom(c);
    return 0;
}

static int lv_string(lv_conv *c, int idx, iso_value *out)
{
    size_t len;
    const char *s = lua_tolstring(c->L, idx, &len); /* a string: no coercion */
    iso_type type = iso_utf8_valid(s, len) ? ISO_STR : ISO_BYTES;
    return lv_payload(c, type, s, len, out);
}

static void lv_number(lua_State *L, int idx, iso_value *out)
{
    if (lua_isinteger(L, idx))
        iso_value_set_int(out, (int64_t)lua_tointeger(L, idx));
    else
        iso_value_set_float(out, (double)lua_tonumber(L, idx));
}

/* ---- tables ------------------------------------------------------------ */

static int lv_child(lv_conv *c, lv_seg seg, int idx, iso_value *out)
{
    c->path[c->npath++] = seg;
    int rc = lv_value(c, idx, out);
    c->npath--;
    return rc;
}

/* The registry is a plain table, so lua_getfield on it is a raw read. */
static bool lv_has_mt(lua_State *L, const char *name)
{
    lua_getfield(L, LUA_REGISTRYINDEX, name); /* [mt, marker] */
    bool same = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
    return same;
}

static int lv_marker(lua_State *L, int idx)
{
    int kind = LV_PLAIN;
    if (!lua_getmetatable(L, idx))
        return LV_PLAIN;
    if (lv_has_mt(L, ISO_LUA_ARRAY_MT))
        kind = LV_ARRAY;
    else if (lv_has_mt(L, ISO_LUA_BYTES_MT))
        kind = LV_BYTES;
    lua_pop(L, 1);
    return kind;
}

static int lv_bytes_marker(lv_conv *c, int idx, iso_value *out)
{
    lua_State *L = c->L;
    if (lua_rawgeti(L, idx, 1) != LUA_TSTRING)
        return lv_fail(c, "cannot convert a sandbox.bytes table that holds "
                          "no string");
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    int rc = lv_payload(c, ISO_BYTES, s, len, out);
    lua_pop(L, 1);
    return rc;
}

static int lv_list(lv_conv *c, int idx, lua_Integer n, iso_value *out)
{
    lua_State *L = c->L;
    iso_value_set_list(out);
    for (lua_Integer i = 1; i <= n; i++) {
        iso_value *slot = iso_list_append(out);
        if (!slot)
            return lv_oom(c);
        lua_rawgeti(L, idx, i);
        lv_seg seg = {.is_int = true, .i = i};
        if (lv_child(c, seg, lua_gettop(L), slot) < 0)
            return -1;
        lua_pop(L, 1);
    }
    return 0;
}

/* sandbox.array(t) promises a list: any key outside 1..#t is a mistake. */
static int lv_array(lv_conv *c, int idx, iso_value *out)
{
    lua_State *L = c->L;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* [key, value] */
        lua_Integer k = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0;
        if (k < 1 || k > n)
            return lv_fail(c,
                           "cannot convert a sandbox.array table with "
                           "a %s key (keys must be 1..#t)",
                           lv_what(L, -2));
        lua_pop(L, 1);
    }
    return lv_list(c, idx, n, out);
}

/* True, with *n, when the keys are exactly 1..n for some n > 0. */
static bool lv_is_sequence(lua_State *L, int idx, lua_Integer *n)
{
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* [key, value] */
        lua_pop(L, 1);
        lua_Integer k = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
        if (k < 1) {
            lua_pop(L, 1);
            return false;
        }
        count++;
        max = k > max ? k : max;
    }
    *n = count;
    return count > 0 && max == count;
}

/* Map keys: strings (STR or BYTES by the UTF-8 rule) and integers only. */
static int lv_key(lv_conv *c, int idx, iso_value *out, lv_seg *seg)
{
    lua_State *L = c->L;
    memset(seg, 0, sizeof *seg);
    if (lua_type(L, idx) == LUA_TSTRING) {
        seg->s = lua_tolstring(L, idx, &seg->len);
        return lv_string(c, idx, out);
    }
    if (lua_isinteger(L, idx)) {
        seg->is_int = true;
        seg->i = lua_tointeger(L, idx);
        iso_value_set_int(out, (int64_t)seg->i);
        return 0;
    }
    return lv_fail(c, "cannot convert a table with a %s key", lv_what(L, idx));
}

/* One more value (map keys count too, as on the wire). */
static int lv_count(lv_conv *c)
{
    if (++c->items <= ISO_VALUE_MAX_ITEMS)
        return 0;
    return lv_fail(c, "cannot convert more than %zu values at once",
                   ISO_VALUE_MAX_ITEMS);
}

static int lv_map(lv_conv *c, int idx, iso_value *out)
{
    lua_State *L = c->L;
    iso_value_set_map(out);
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* [key, value] */
        iso_value *k, *v;
        lv_seg seg;
        if (iso_map_append(out, &k, &v) < 0)
            return lv_oom(c);
        if (lv_count(c) < 0 || lv_key(c, lua_gettop(L) - 1, k, &seg) < 0 ||
            lv_child(c, seg, lua_gettop(L), v) < 0)
            return -1;
        lua_pop(L, 1);
    }
    return 0;
}

/* Track the tables on the current path: revisiting one is a cycle. */
static int lv_enter(lv_conv *c, int idx)
{
    const void *t = lua_topointer(c->L, idx);
    for (int i = 0; i < c->depth; i++)
        if (c->tables[i] == t)
            return lv_fail(c, "cannot convert a cyclic table (it contains "
                              "itself)");
    if (c->depth >= ISO_VALUE_MAX_DEPTH)
        return lv_fail(c,
                       "cannot convert tables nested deeper than %d "
                       "levels",
                       ISO_VALUE_MAX_DEPTH);
    c->tables[c->depth++] = t;
    return 0;
}

static int lv_table(lv_conv *c, int idx, iso_value *out)
{
    lua_Integer n;
    if (!lua_checkstack(c->L, LV_SLOTS))
        return lv_fail(c, "cannot convert: the Lua stack is exhausted");
    int kind = lv_marker(c->L, idx);
    if (kind == LV_BYTES)
        return lv_bytes_marker(c, idx, out);
    if (lv_enter(c, idx) < 0)
        return -1;
    int rc;
    if (kind == LV_ARRAY)
        rc = lv_array(c, idx, out);
    else if (lv_is_sequence(c->L, idx, &n))
        rc = lv_list(c, idx, n, out);
    else
        rc = lv_map(c, idx, out); /* {} included: nothing says "list" */
    c->depth--;
    return rc;
}

/* out is NIL on entry. */
static int lv_value(lv_conv *c, int idx, iso_value *out)
{
    lua_State *L = c->L;
    if (lv_count(c) < 0)
        return -1;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return 0;
    case LUA_TBOOLEAN:
        iso_value_set_bool(out, lua_toboolean(L, idx));
        return 0;
    case LUA_TNUMBER:
        lv_number(L, idx, out);
        return 0;
    case LUA_TSTRING:
        return lv_string(c, idx, out);
    case LUA_TTABLE:
        return lv_table(c, idx, out);
    case LUA_TLIGHTUSERDATA: /* only the null sentinel is a value */
        if (lua_touserdata(L, idx) == NULL)
            return 0;
        break;
    default:
        break;
    }
    return lv_fail(c, "cannot convert a %s", lv_what(L, idx));
}

int iso_lua_to_value(lua_State *L, int idx, iso_value *out, iso_error *err)
{
    lv_conv c = {.L = L, .err = err};
    int top = lua_gettop(L);
    memset(out, 0, sizeof *out);
    int rc = lv_value(&c, lua_absindex(L, idx), out);
    lua_settop(L, top); /* a failure returns with its iteration state pushed */
    if (rc < 0)
        iso_value_free(out);
    return rc;
}

/* ---- iso_value -> Lua -------------------------------------------------- */

static void push_value(lua_State *L, const iso_value *v, int depth);

static int size_hint(size_t n)
{
    return n > (size_t)INT32_MAX ? 0 : (int)n;
}

static void push_list(lua_State *L, const iso_value *v, int depth)
{
    lua_createtable(L, size_hint(v->u.seq.len), 0);
    if (v->u.seq.len == 0) { /* or it would come back as a map */
        luaL_setmetatable(L, ISO_LUA_ARRAY_MT);
        return;
    }
    for (size_t i = 0; i < v->u.seq.len; i++) {
        push_value(L, &v->u.seq.items[i], depth);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* Producers only make STR, BYTES and INT keys; anything else is skipped
 * rather than raising with the caller's resources held. */
static bool push_key(lua_State *L, const iso_value *k)
{
    if (k->type == ISO_STR || k->type == ISO_BYTES)
        lua_pushlstring(L, k->u.str.ptr, k->u.str.len);
    else if (k->type == ISO_INT)
        lua_pushinteger(L, (lua_Integer)k->u.i);
    else
        return false;
    return true;
}

static void push_map(lua_State *L, const iso_value *v, int depth)
{
    lua_createtable(L, 0, size_hint(v->u.seq.len));
    for (size_t i = 0; i < v->u.seq.len; i++) {
        const iso_value *pair = &v->u.seq.items[2 * i];
        if (!push_key(L, &pair[0]))
            continue;
        push_value(L, &pair[1], depth);
        lua_rawset(L, -3);
    }
}

static void push_container(lua_State *L, const iso_value *v, int depth)
{
    /* Our converters never build deeper values; a decoded one could, and
     * must not exhaust the C stack. */
    if (depth >= ISO_VALUE_MAX_DEPTH)
        luaL_error(L, "value nested deeper than %d levels",
                   ISO_VALUE_MAX_DEPTH);
    luaL_checkstack(L, LV_SLOTS, "value nested too deep");
    if (v->type == ISO_LIST)
        push_list(L, v, depth + 1);
    else
        push_map(L, v, depth + 1);
}

static void push_value(lua_State *L, const iso_value *v, int depth)
{
    switch (v->type) {
    case ISO_NIL: /* nil would leave a hole in a container */
        if (depth > 0)
            lua_pushlightuserdata(L, NULL);
        else
            lua_pushnil(L);
        break;
    case ISO_BOOL:
        lua_pushboolean(L, v->u.b);
        break;
    case ISO_INT:
        lua_pushinteger(L, (lua_Integer)v->u.i);
        break;
    case ISO_FLOAT:
        lua_pushnumber(L, (lua_Number)v->u.f);
        break;
    case ISO_STR:
    case ISO_BYTES: /* Lua strings are bytes; sandbox.bytes is for sending */
        lua_pushlstring(L, v->u.str.ptr, v->u.str.len);
        break;
    case ISO_LIST:
    case ISO_MAP:
        push_container(L, v, depth);
        break;
    default:
        lua_pushnil(L);
        break;
    }
}

void iso_lua_push_value(lua_State *L, const iso_value *v)
{
    push_value(L, v, 0);
}

/* ---- module helpers ---------------------------------------------------- */

void iso_lua_value_init(lua_State *L)
{
    luaL_newmetatable(L, ISO_LUA_ARRAY_MT);
    lua_pop(L, 1);
    luaL_newmetatable(L, ISO_LUA_BYTES_MT);
    lua_pop(L, 1);
}

int iso_lua_array(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_setmetatable(L, ISO_LUA_ARRAY_MT);
    return 1;
}

int iso_lua_bytes(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TSTRING); /* a number is not bytes */
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    luaL_setmetatable(L, ISO_LUA_BYTES_MT);
    return 1;
}
