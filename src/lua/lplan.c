/*
 * isolate.Plan: the C side of a compiled policy (fs and net rules), and
 * the validators the Lua policy compiler uses, so that globs and net specs
 * have exactly one parser.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "binding.h"

#define ISO_PLAN_MT "isolate.Plan"

typedef struct lplan {
    iso_plan *plan;
} lplan;

iso_plan *iso_lua_check_plan(lua_State *L, int idx)
{
    lplan *u = luaL_checkudata(L, idx, ISO_PLAN_MT);
    return u->plan;
}

/* Push true, or nil and the error's message: the validators' convention. */
static int push_result(lua_State *L, int rc, iso_error *err)
{
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, err->message);
    iso_error_clear(err);
    return 2;
}

/* The validators' string: NULL (after pushing nil and why) when it holds
 * a NUL byte, which C would not see. */
static const char *whole_string(lua_State *L, int idx)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    if (strlen(s) == len)
        return s;
    lua_pushnil(L);
    lua_pushliteral(L, "contains a NUL byte");
    return NULL;
}

static int l_check_glob(lua_State *L)
{
    iso_error err = {0};
    const char *glob = whole_string(L, 1);
    return glob ? push_result(L, iso_glob_check(glob, &err), &err) : 2;
}

static const char *const net_names[] = {"connect", "deny", "bind", NULL};

/* core.check_net(spec [, action]): action as a policy names it */
static int l_check_net(lua_State *L)
{
    iso_error err = {0};
    const char *spec = whole_string(L, 1);
    int action = luaL_checkoption(L, 2, "connect", net_names);
    return spec ? push_result(
                      L, iso_net_check_for((iso_net_action)action, spec, &err),
                      &err)
                : 2;
}

static int l_normalize_path(lua_State *L)
{
    char out[ISO_PATH_MAX];
    iso_error err = {0};
    if (iso_path_normalize(iso_lua_checkstr(L, 1, "path"), out, sizeof out,
                           &err))
        return push_result(L, -1, &err);
    lua_pushstring(L, out);
    return 1;
}

static int l_syscall_known(lua_State *L)
{
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, strlen(name) == len && iso_syscall_known(name));
    return 1;
}

/* ---- building ---------------------------------------------------------- */

static const char *const fs_names[] = {"read", "write", "allow", "deny", NULL};
static const iso_fs_access fs_values[] = {ISO_FS_READ, ISO_FS_WRITE,
                                          ISO_FS_ALLOW, ISO_FS_DENY};

/* Add rule tbl[key][i] = {access|action=, pattern|spec=, text=}. */
static int add_rule(lua_State *L, iso_plan *p, bool fs, iso_error *err)
{
    lua_getfield(L, -1, fs ? "access" : "action");
    lua_getfield(L, -2, fs ? "pattern" : "spec");
    lua_getfield(L, -3, "text"); /* [rule kind target text] */
    int kind = luaL_checkoption(L, -3, NULL, fs ? fs_names : net_names);
    const char *target =
        iso_lua_checkstr(L, -2, fs ? "fs pattern" : "net rule");
    const char *text =
        lua_isnil(L, -1) ? NULL : iso_lua_checkstr(L, -1, "rule text");
    int rc = fs ? iso_plan_add_fs(p, fs_values[kind], target, text, err)
                : iso_plan_add_net(p, (iso_net_action)kind, target, text, err);
    lua_pop(L, 3);
    return rc;
}

static int add_rules(lua_State *L, iso_plan *p, const char *key, iso_error *err)
{
    lua_getfield(L, 1, key); /* [list] */
    lua_Integer n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
    int rc = 0;
    for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
        lua_rawgeti(L, -1, i);
        luaL_checktype(L, -1, LUA_TTABLE);
        rc = add_rule(L, p, key[0] == 'f', err);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

/* core.plan{ fs = {{access=, pattern=, text=}}, net = {{action=, spec=}} } */
static int l_plan(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lplan *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->plan = NULL;
    luaL_setmetatable(L, ISO_PLAN_MT);
    if (!(u->plan = iso_plan_new()))
        return iso_lua_raisef(L, ISO_MEMORY, "out of memory");
    iso_error err = {0};
    if (add_rules(L, u->plan, "fs", &err) || add_rules(L, u->plan, "net", &err))
        return iso_lua_raise(L, &err);
    return 1;
}

/* ---- deciding ---------------------------------------------------------- */

static int push_decision(lua_State *L, bool allowed, int rule)
{
    lua_pushboolean(L, allowed);
    if (rule < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, rule + 1);
    return 2;
}

/* plan:check_fs("read"|"write", path) -> allowed, rule index | nil */
static int l_plan_check_fs(lua_State *L)
{
    static const char *const ops[] = {"read", "write", NULL};
    iso_plan *p = iso_lua_check_plan(L, 1);
    int op = luaL_checkoption(L, 2, NULL, ops);
    char path[ISO_PATH_MAX];
    iso_error err = {0};
    if (iso_path_normalize(iso_lua_checkstr(L, 3, "path"), path, sizeof path,
                           &err)) {
        err.kind = ISO_INVALID_ARGUMENT;
        return iso_lua_raise(L, &err);
    }
    int rule;
    bool ok =
        iso_plan_check_fs(p, op ? ISO_FS_WRITE : ISO_FS_READ, path, &rule);
    return push_decision(L, ok, rule);
}

/* A pathname unix socket target ("unix:/path"), normalised into path. */
static int unix_target(lua_State *L, const char *s, char *path, size_t n)
{
    iso_error err = {0};
    if (iso_path_normalize(s + 5, path, n, &err)) {
        err.kind = ISO_INVALID_ARGUMENT;
        return iso_lua_raise(L, &err);
    }
    return 0;
}

/* plan:check_net("host:port" | "unix:/path" [, "bind"]) -> allowed, rule
 * index | nil */
static int l_plan_check_net(lua_State *L)
{
    static const char *const ops[] = {"connect", "bind", NULL};
    iso_plan *p = iso_lua_check_plan(L, 1);
    const char *target = iso_lua_checkstr(L, 2, "endpoint");
    int op = luaL_checkoption(L, 3, "connect", ops), rule;
    iso_addr addr;
    uint16_t port;
    iso_error err = {0};
    if (op == 0 && strncmp(target, "unix:", 5) == 0) {
        char path[ISO_PATH_MAX];
        unix_target(L, target, path, sizeof path);
        bool ok = iso_plan_check_unix(p, path, &rule);
        return push_decision(L, ok, rule);
    }
    if (iso_endpoint_parse(target, &addr, &port, &err)) {
        err.kind = ISO_INVALID_ARGUMENT;
        return iso_lua_raise(L, &err);
    }
    bool ok = op ? iso_plan_check_bind(p, &addr, port, &rule)
                 : iso_plan_check_net(p, &addr, port, &rule);
    return push_decision(L, ok, rule);
}

static int l_plan_gc(lua_State *L)
{
    lplan *u = luaL_checkudata(L, 1, ISO_PLAN_MT);
    iso_plan_unref(u->plan);
    u->plan = NULL;
    return 0;
}

static const luaL_Reg plan_methods[] = {
    {"check_fs", l_plan_check_fs},
    {"check_net", l_plan_check_net},
    {NULL, NULL},
};

static const luaL_Reg plan_functions[] = {
    {"plan", l_plan},
    {"check_glob", l_check_glob},
    {"check_net", l_check_net},
    {"normalize_path", l_normalize_path},
    {"syscall_known", l_syscall_known},
    {NULL, NULL},
};

/* Where the templates are: next to an installed host
 * (<prefix>/bin/luaisolate -> <prefix>/share/lua/5.4/isolate/policies),
 * else the source tree this was built from. */
static void push_policy_dir(lua_State *L)
{
#ifdef ISOLATE_HOST
    char exe[PATH_MAX], dir[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? memrchr(exe, '/', (size_t)n) : NULL;
    if (slash) {
        snprintf(dir, sizeof dir, "%.*s/../share/lua/5.4/isolate/policies",
                 (int)(slash - exe), exe);
        if (access(dir, R_OK | X_OK) == 0) {
            lua_pushstring(L, dir);
            return;
        }
    }
#endif
    lua_pushliteral(L, ISO_POLICY_DIR);
}

/* Add the plan functions to the module table at the top of the stack. */
void iso_lua_plan_register(lua_State *L)
{
    luaL_newmetatable(L, ISO_PLAN_MT);
    luaL_newlib(L, plan_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_plan_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_setfuncs(L, plan_functions, 0);
    push_policy_dir(L);
    lua_setfield(L, -2, "policy_dir");
}
