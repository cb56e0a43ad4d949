/* Unit tests for src/lua/lvalue.c: Lua 5.4 <-> iso_value. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <string.h>

#include "check.h"
#include "isolate.h"
#include "lvalue.h"

static lua_State *LS;

/* Run a chunk that returns one value and leave it on the stack. */
static void eval(const char *code)
{
    if (luaL_loadstring(LS, code) != LUA_OK ||
        lua_pcall(LS, 0, 1, 0) != LUA_OK) {
        CHECK_FAIL_("lua: %s", lua_tostring(LS, -1));
        lua_pop(LS, 1);
        lua_pushnil(LS);
    }
}

/* Convert what code returns; also checks the stack is left balanced. */
static int convert(const char *code, iso_value *out, iso_error *err)
{
    eval(code);
    int top = lua_gettop(LS);
    int rc = iso_lua_to_value(LS, -1, out, err);
    CHECK_EQ_INT(lua_gettop(LS), top);
    lua_pop(LS, 1);
    return rc;
}

/* Expect code's value to be refused with ISO_VALUE and a message holding
 * `where` (the path, or the reason). */
static void refuse(const char *code, const char *where)
{
    iso_value v = {0};
    iso_error err = {0};
    CHECK_EQ_INT(convert(code, &v, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_VALUE);
    CHECK_EQ_INT(v.type, ISO_NIL);
    CHECK_HAS_STR(err.message, where);
    iso_error_clear(&err);
}

/* Push v and run `return function(v) <body> end` on it: must be true. */
static bool pushed_ok(const iso_value *v, const char *body)
{
    char code[1024];
    snprintf(code, sizeof code, "return function(v) %s end", body);
    eval(code);
    iso_lua_push_value(LS, v);
    if (lua_pcall(LS, 1, 1, 0) != LUA_OK) {
        CHECK_FAIL_("lua: %s", lua_tostring(LS, -1));
        lua_pop(LS, 1);
        return false;
    }
    bool ok = lua_toboolean(LS, -1);
    lua_pop(LS, 1);
    return ok;
}

static const iso_value *map_get(const iso_value *map, const char *key)
{
    for (size_t i = 0; i < map->u.seq.len; i++) {
        const iso_value *k = &map->u.seq.items[2 * i];
        if (k->type != ISO_INT && strcmp(k->u.str.ptr, key) == 0)
            return &map->u.seq.items[2 * i + 1];
    }
    return NULL;
}

static void test_scalars(void)
{
    iso_value v = {0};
    iso_error err = {0};
    CHECK_EQ_INT(convert("return nil", &v, &err), 0);
    CHECK_EQ_INT(v.type, ISO_NIL);
    convert("return null", &v, &err);
    CHECK_EQ_INT(v.type, ISO_NIL);
    convert("return true", &v, &err);
    CHECK(v.type == ISO_BOOL && v.u.b);
    convert("return math.mininteger", &v, &err);
    CHECK(v.type == ISO_INT && v.u.i == INT64_MIN);
    convert("return 42.0", &v, &err);
    CHECK(v.type == ISO_FLOAT && v.u.f == 42.0);
    convert("return 'h\\u{e9}llo'", &v, &err);
    CHECK(v.type == ISO_STR && v.u.str.len == 6);
    iso_value_free(&v);
    convert("return 'a\\0b'", &v, &err);
    CHECK(v.type == ISO_STR && v.u.str.len == 3);
    iso_value_free(&v);
    convert("return 'ok\\xff'", &v, &err); /* not UTF-8: bytes */
    CHECK(v.type == ISO_BYTES && v.u.str.len == 3);
    iso_value_free(&v);
    convert("return '\\u{D800}'", &v, &err); /* Lua encodes surrogates */
    CHECK_EQ_INT(v.type, ISO_BYTES);
    iso_value_free(&v);
    CHECK_EQ_INT(err.kind, ISO_OK);
}

static void test_sequence_and_map(void)
{
    iso_value v = {0};
    iso_error err = {0};
    CHECK_EQ_INT(convert("return {1, 'two', 3.5, {x = 1}}", &v, &err), 0);
    CHECK_EQ_INT(v.type, ISO_LIST);
    CHECK_EQ_INT(v.u.seq.len, 4);
    CHECK_EQ_INT(v.u.seq.items[0].u.i, 1);
    CHECK_EQ_STR(v.u.seq.items[1].u.str.ptr, "two");
    CHECK_EQ_INT(v.u.seq.items[3].type, ISO_MAP);
    iso_value_free(&v);
    CHECK_EQ_INT(convert("return {a = 1, [5] = 2, ['\\xff'] = 3}", &v, &err),
                 0);
    CHECK_EQ_INT(v.type, ISO_MAP);
    CHECK_EQ_INT(v.u.seq.len, 3);
    const iso_value *a = map_get(&v, "a");
    CHECK(a && a->type == ISO_INT && a->u.i == 1);
    const iso_value *ff = map_get(&v, "\xff");
    CHECK(ff && ff[-1].type == ISO_BYTES);
    iso_value_free(&v);
}

static void test_table_shapes(void)
{
    iso_value v = {0};
    iso_error err = {0};
    convert("return {}", &v, &err);
    CHECK(v.type == ISO_MAP && v.u.seq.len == 0);
    convert("return {[1] = 'a', [3] = 'c'}", &v, &err); /* hole */
    CHECK(v.type == ISO_MAP && v.u.seq.len == 2);
    iso_value_free(&v);
    convert("return {[0] = 'z'}", &v, &err);
    CHECK(v.type == ISO_MAP && v.u.seq.len == 1);
    iso_value_free(&v);
    convert("return {1, 2, x = 3}", &v, &err);
    CHECK(v.type == ISO_MAP && v.u.seq.len == 3);
    iso_value_free(&v);
    convert("return {[2] = 'b', [1] = 'a'}", &v, &err);
    CHECK(v.type == ISO_LIST && v.u.seq.len == 2);
    CHECK(v.u.seq.len == 2 && strcmp(v.u.seq.items[0].u.str.ptr, "a") == 0);
    iso_value_free(&v);
    convert("return {1, null, 3}", &v, &err);
    CHECK(v.type == ISO_LIST && v.u.seq.len == 3);
    CHECK(v.u.seq.len == 3 && v.u.seq.items[1].type == ISO_NIL);
    iso_value_free(&v);
    /* Shared, acyclic references are fine. */
    convert("local s = {1}; return {s, s, {s}}", &v, &err);
    CHECK(v.type == ISO_LIST && v.u.seq.len == 3);
    iso_value_free(&v);
    CHECK_EQ_INT(err.kind, ISO_OK);
}

static void test_array_marker(void)
{
    iso_value v = {0};
    iso_error err = {0};
    CHECK_EQ_INT(convert("return array({})", &v, &err), 0);
    CHECK(v.type == ISO_LIST && v.u.seq.len == 0);
    convert("return array({'a', null, 'c'})", &v, &err);
    CHECK(v.type == ISO_LIST && v.u.seq.len == 3);
    iso_value_free(&v);
    refuse("return array({1, x = 2})", "sandbox.array");
    refuse("return {k = array({[3] = 1})}", "at k");
    /* Pushing an empty list gives it the marker back. */
    iso_value_set_list(&v);
    CHECK(pushed_ok(&v, "return next(v) == nil and getmetatable(v) == "
                        "debug.getregistry()['isolate.array']"));
    iso_lua_push_value(LS, &v);
    iso_value back = {0};
    CHECK_EQ_INT(iso_lua_to_value(LS, -1, &back, &err), 0);
    CHECK(back.type == ISO_LIST && back.u.seq.len == 0);
    lua_pop(LS, 1);
    /* Raising helpers: argument checks. */
    eval("return pcall(array, 'x') or pcall(bytes, 1) or pcall(bytes, {})");
    CHECK(!lua_toboolean(LS, -1));
    lua_pop(LS, 1);
    eval("local t = {}; return array(t) == t");
    CHECK(lua_toboolean(LS, -1));
    lua_pop(LS, 1);
}

static void test_bytes_marker(void)
{
    iso_value v = {0};
    iso_error err = {0};
    CHECK_EQ_INT(convert("return bytes('abc')", &v, &err), 0);
    CHECK(v.type == ISO_BYTES && v.u.str.len == 3);
    CHECK_EQ_STR(v.u.str.ptr, "abc");
    iso_value_free(&v);
    convert("return {data = bytes('')}", &v, &err);
    CHECK(v.type == ISO_MAP && map_get(&v, "data") &&
          map_get(&v, "data")->type == ISO_BYTES);
    iso_value_free(&v);
    refuse("local b = bytes('x'); b[1] = 5; return {b}", "[1]");
    /* Pushing BYTES gives a plain Lua string. */
    iso_value_set_string(&v, ISO_BYTES, "\x00\xff", 2);
    CHECK(pushed_ok(&v, "return v == '\\0\\xff'"));
    iso_value_free(&v);
}

static void test_refused_types(void)
{
    refuse("return print", "cannot convert a function at the top level");
    refuse("return {1, {f = print}}", "function at [2].f");
    refuse("return {co = coroutine.create(print)}", "coroutine at co");
    refuse("return {io.stdout}", "userdata at [1]");
    refuse("return {['a b'] = {[-3] = print}}", "at [\"a b\"][-3]");
    lua_pushlightuserdata(LS, &LS);
    lua_setglobal(LS, "ptr");
    refuse("return {ptr}", "light userdata at [1]");
}

static void test_refused_keys(void)
{
    refuse("return {[1.5] = 1}", "float key at the top level");
    refuse("return {x = {[true] = 1}}", "boolean key at x");
    refuse("return {[{}] = 1}", "table key");
    refuse("return {[print] = 1}", "function key");
}

static void test_cycles_and_depth(void)
{
    iso_value v = {0};
    iso_error err = {0};
    refuse("local t = {}; t.self = t; return t", "cyclic");
    refuse("local a, b = {}, {}; a[1] = b; b[1] = a; return {a}", "cyclic");
    refuse("local t = array({}); t[1] = t; return t", "cyclic");
    /* ISO_VALUE_MAX_DEPTH nested tables convert, one more does not. */
    char code[128], limit[64];
#define NEST "local t = 'leaf' for i = 1, %d do t = {t} end return t"
    snprintf(code, sizeof code, NEST, ISO_VALUE_MAX_DEPTH);
    CHECK_EQ_INT(convert(code, &v, &err), 0);
    CHECK_EQ_INT(v.type, ISO_LIST);
    iso_value_free(&v);
    snprintf(code, sizeof code, NEST, ISO_VALUE_MAX_DEPTH + 1);
#undef NEST
    snprintf(limit, sizeof limit, "deeper than %d", ISO_VALUE_MAX_DEPTH);
    refuse(code, limit);
}

static void test_payload_limit(void)
{
    iso_value v = {0};
    iso_error err = {0};
    CHECK_EQ_INT(convert("return {string.rep('a', 64 << 20)}", &v, &err), 0);
    iso_value_free(&v);
    refuse("return {string.rep('a', 32 << 20), "
           "{[string.rep('b', (32 << 20) + 1)] = 1}}",
           "MiB");
}

static void test_metamethods_ignored(void)
{
    iso_value v = {0};
    iso_error err = {0};
    CHECK_EQ_INT(convert("local e = function() error('called') end "
                         "return setmetatable({1, 2}, {__index = e, "
                         "__len = e, __pairs = e, __metatable = false})",
                         &v, &err),
                 0);
    CHECK(v.type == ISO_LIST && v.u.seq.len == 2);
    iso_value_free(&v);
}

static void test_roundtrip(void)
{
    iso_value a = {0}, b = {0};
    iso_error err = {0};
    CHECK_EQ_INT(convert("return {name = 'x', n = 3, f = 3.0, ok = false, "
                         "list = {1, {2, {3, null}}, array({})}, "
                         "[7] = {}, raw = '\\xfe', b = bytes('\\xff'), "
                         "deep = {{{{{{k = 'v'}}}}}}}",
                         &a, &err),
                 0);
    iso_lua_push_value(LS, &a);
    CHECK_EQ_INT(iso_lua_to_value(LS, -1, &b, &err), 0);
    lua_pop(LS, 1);
    CHECK(iso_value_equal(&a, &b));
    CHECK(pushed_ok(&a, "return math.type(v.f) == 'float' and v.n == 3 and "
                        "v.list[2][2][2] == null and v.ok == false and "
                        "next(v[7]) == nil and v.deep[1][1][1][1][1].k == "
                        "'v' and v.b == '\\xff'"));
    iso_value_free(&a);
    iso_value_free(&b);
}

static void test_push(void)
{
    iso_value map = {0}, *k, *v;
    iso_value_set_map(&map);
    iso_map_append(&map, &k, &v);
    iso_value_set_string(k, ISO_BYTES, "\xff", 1); /* v stays NIL */
    iso_map_append(&map, &k, &v);
    iso_value_set_int(k, -4);
    iso_value_set_float(v, 0.5);
    iso_map_append(&map, &k, &v);
    iso_value_set_float(k, 1.0); /* not a valid key: skipped */
    iso_value_set_bool(v, true);
    CHECK(pushed_ok(&map, "return v['\\xff'] == null and v[-4] == 0.5 and "
                          "v[1] == nil and v[1.0] == nil"));
    iso_value_free(&map);
    iso_value nil = {0};
    CHECK(pushed_ok(&nil, "return v == nil"));
    int top = lua_gettop(LS);
    iso_lua_push_value(LS, &nil);
    CHECK_EQ_INT(lua_gettop(LS), top + 1);
    CHECK(lua_isnil(LS, -1));
    lua_pop(LS, 1);
}

int main(void)
{
    LS = luaL_newstate();
    luaL_openlibs(LS);
    iso_lua_value_init(LS);
    iso_lua_value_init(LS); /* idempotent */
    lua_register(LS, "array", iso_lua_array);
    lua_register(LS, "bytes", iso_lua_bytes);
    lua_pushlightuserdata(LS, NULL);
    lua_setglobal(LS, "null");

    RUN(test_scalars);
    RUN(test_sequence_and_map);
    RUN(test_table_shapes);
    RUN(test_array_marker);
    RUN(test_bytes_marker);
    RUN(test_refused_types);
    RUN(test_refused_keys);
    RUN(test_cycles_and_depth);
    RUN(test_payload_limit);
    RUN(test_metamethods_ignored);
    RUN(test_roundtrip);
    RUN(test_push);
    CHECK_EQ_INT(lua_gettop(LS), 0);
    lua_close(LS);
    return CHECK_EXIT();
}
