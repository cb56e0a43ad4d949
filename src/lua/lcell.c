/*
 * isolate.Cell userdata. Created closed, then the cell is spawned (as
 * liolib's newprefile does); one idempotent close serves :close(),
 * __close and __gc. While a method waits on its cell it "pumps": broker
 * requests from the guest run their Lua handler here, on the Lua thread.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "binding.h"
#include "lvalue.h"

#define UV_BROKER 1 /* uservalue: the Lua broker function */

typedef struct lcell {
    iso_cell *cell; /* NULL only before spawn succeeded */
    bool exited;    /* its exit event was sent */
} lcell;

#define SINK_KEY "isolate.event_sink" /* registry: fn(cell, event) */
#define TICK_KEY "isolate.tick"       /* registry: fn(), see tick() */
#define HANDLER_ERROR_KEY "isolate.handler_error"
#define PUMP_SLICE_S 0.05 /* events reach handlers at least this often */
#define CELL_C_KIB 9 /* a cell and its backend state in C, for the GC */

static lcell *check_cell(lua_State *L)
{
    return luaL_checkudata(L, 1, ISO_CELL_MT);
}

static void emit_exit(lua_State *L, lcell *u, const char *reason,
                      const char *message);

/* Raise err with err.cell set; err is cleared. */
static int raise_cell(lua_State *L, lcell *u, iso_error *err)
{
    if (u->cell && !iso_cell_is_open(u->cell) && !u->exited)
        emit_exit(L, u, iso_kind_name(err->kind), err->message);
    iso_lua_push_error(L, err);
    if (u->cell) {
        lua_pushstring(L, iso_cell_name(u->cell));
        lua_setfield(L, -2, "cell");
    }
    return lua_error(L);
}

iso_cell *iso_lua_to_cell(lua_State *L, int idx)
{
    return ((lcell *)luaL_checkudata(L, idx, ISO_CELL_MT))->cell;
}

static lcell *cell_in_use(lua_State *L, bool must_be_open)
{
    lcell *u = check_cell(L);
    if (!u->cell || (must_be_open && !iso_cell_is_open(u->cell))) {
        iso_error err = {0};
        iso_error_set(&err, ISO_CLOSED, "attempt to use a closed cell");
        raise_cell(L, u, &err);
    }
    return u;
}

static lcell *open_cell(lua_State *L)
{
    return cell_in_use(L, true);
}

static void push_event(lua_State *L, lcell *u, iso_msg *m);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- events ------------------------------------------------------------ */

/* Hand ev (on top, popped) to the Lua sink with cell at index 1. A failing
 * handler must not leave a request half-served: its error is kept and
 * raised once the operation that was waiting is over. */
static void to_sink(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, SINK_KEY); /* [ev sink] */
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 2);
        return;
    }
    lua_insert(L, -2);
    lua_pushvalue(L, 1);
    lua_insert(L, -2); /* [sink cell ev] */
    if (lua_pcall(L, 2, 0, 0) == LUA_OK)
        return;
    lua_getfield(L, LUA_REGISTRYINDEX, HANDLER_ERROR_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, HANDLER_ERROR_KEY);
    } else {
        lua_pop(L, 2); /* the first error is the one to see */
    }
}

/* The tick (core.set_tick): what must run now and then while the host
 * waits on cells, such as writing --metrics-file. Its errors are its own:
 * it is called protected and they are dropped. */
static void tick(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, TICK_KEY); /* [tick] */
    if (!lua_isfunction(L, -1) || lua_pcall(L, 0, 0, 0) != LUA_OK)
        lua_pop(L, 1);
}

/* Everything the cell logged, measured or was denied, to the sink; then
 * the tick (this runs at least every PUMP_SLICE_S while the host waits). */
static void dispatch_events(lua_State *L, lcell *u)
{
    iso_msg *m;
    while (u->cell && (m = iso_cell_next_event(u->cell))) {
        push_event(L, u, m);
        iso_msg_destroy(m);
        to_sink(L);
    }
    tick(L);
}

/* Raise a handler's error kept by to_sink, if any. */
static void raise_handler_error(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, HANDLER_ERROR_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, HANDLER_ERROR_KEY);
    lua_error(L);
}

/* {type="exit", cell=, reason=, message=}, once per cell. */
static void emit_exit(lua_State *L, lcell *u, const char *reason,
                      const char *message)
{
    if (u->exited || !u->cell)
        return;
    u->exited = true;
    dispatch_events(L, u); /* what it said before it ended comes first */
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "exit");
    lua_setfield(L, -2, "type");
    lua_pushstring(L, iso_cell_name(u->cell));
    lua_setfield(L, -2, "cell");
    lua_pushstring(L, reason);
    lua_setfield(L, -2, "reason");
    lua_pushstring(L, message ? message : "");
    lua_setfield(L, -2, "message");
    lua_pushnumber(L, (lua_Number)time(NULL));
    lua_setfield(L, -2, "time");
    to_sink(L);
}

/* ---- the broker -------------------------------------------------------- */

/* Message of a Lua error object, for the guest's exception. Raw access
 * only: nothing here may raise while the guest waits for its answer. */
static const char *error_text(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_istable(L, idx)) {
        lua_pushliteral(L, "message");
        lua_rawget(L, idx);
        idx = lua_gettop(L);
    }
    if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER)
        return lua_tostring(L, idx);
    return "the broker handler raised a non-string error";
}

/* Run the Lua broker for msg = [capability, action, payload]; answer. */
static void serve_request(lua_State *L, lcell *u, iso_msg *m)
{
    int top = lua_gettop(L);
    iso_value *v = m->value.u.seq.items;
    lua_getiuservalue(L, 1, UV_BROKER); /* [broker] */
    for (int i = 0; i < 3; i++)
        iso_lua_push_value(L, &v[i]);
    lua_pushvalue(L, 1); /* [broker cap action payload cell] */
    iso_msg_destroy(m);
    if (lua_pcall(L, 4, 1, 0) != LUA_OK) {
        iso_cell_reply(u->cell, NULL, error_text(L, -1));
    } else {
        iso_value result = {0};
        iso_error err = {0};
        if (iso_lua_to_value(L, -1, &result, &err) == 0)
            iso_cell_reply(u->cell, &result, NULL);
        else
            iso_cell_reply(u->cell, NULL, err.message);
        iso_value_free(&result);
        iso_error_clear(&err);
    }
    lua_settop(L, top);
}

/* Wait for `what`, serving broker requests and handing events to the sink
 * meanwhile. Returns the message (owned by the caller), or NULL with err
 * set; *waited_out is true exactly when the caller's own timeout passed
 * (err->code stays the error's: an errno, ISO_E_PROTOCOL). */
static iso_msg *pump(lua_State *L, lcell *u, iso_wait what, double timeout,
                     iso_error *err, bool *waited_out)
{
    *waited_out = false;
    double start = now_s(), deadline = timeout < 0 ? -1 : start + timeout;
    for (;;) {
        iso_msg *m;
        double left = deadline < 0 ? PUMP_SLICE_S : deadline - now_s();
        double slice =
            left < PUMP_SLICE_S ? (left > 0 ? left : 0) : PUMP_SLICE_S;
        int rc = iso_cell_wait(u->cell, what, slice, &m, err);
        dispatch_events(L, u);
        if (rc == 1 && (deadline < 0 || now_s() < deadline)) {
            iso_error_clear(err); /* only a slice ended */
            continue;
        }
        if (rc == 1) /* the last slice's own figures are not the caller's */
            iso_error_set(err, ISO_TIMEOUT,
                          "timed out: waited %.3fs of the %gs asked for",
                          now_s() - start, timeout);
        if (rc) {
            *waited_out = rc == 1;
            return NULL;
        }
        if (m->type != ISO_MSG_REQUEST)
            return m;
        serve_request(L, u, m);
    }
}

/* Push the result of the running request, or raise its error. With
 * timeout >= 0, return 0 (nothing pushed) while it is still running. */
static int finish_request(lua_State *L, lcell *u, double timeout)
{
    iso_error err = {0};
    bool waited_out;
    iso_msg *m = pump(L, u, ISO_WAIT_RESULT, timeout, &err, &waited_out);
    if (!m && waited_out) /* still running at the caller's timeout */
        return 0;
    if (m && m->error.kind != ISO_OK)
        iso_error_move(&err, &m->error);
    if (!m || err.kind != ISO_OK) {
        iso_msg_destroy(m);
        return raise_cell(L, u, &err);
    }
    iso_lua_push_value(L, &m->value);
    iso_msg_destroy(m);
    raise_handler_error(L);
    return 1;
}

/* ---- methods ----------------------------------------------------------- */

static void start_exec(lua_State *L, lcell *u)
{
    size_t len;
    const char *src = luaL_checklstring(L, 2, &len);
    iso_error err = {0};
    if (iso_cell_exec(u->cell, src, len, &err))
        raise_cell(L, u, &err);
}

/* Arguments 3.. as one list; submit the call. */
static void start_call(lua_State *L, lcell *u)
{
    const char *target = iso_lua_checkstr(L, 2, "call target");
    iso_value args = {0};
    iso_error err = {0};
    iso_value_set_list(&args);
    for (int i = 3; i <= lua_gettop(L); i++) {
        iso_value *slot = iso_list_append(&args);
        if (!slot || iso_lua_to_value(L, i, slot, &err)) {
            iso_value_free(&args);
            if (!slot)
                iso_error_set(&err, ISO_MEMORY, "out of memory");
            raise_cell(L, u, &err);
        }
    }
    if (iso_value_string_bytes(&args) > ISO_VALUE_MAX_BYTES) {
        iso_value_free(&args);
        iso_error_set(&err, ISO_VALUE, "call arguments exceed %zu MiB",
                      ISO_VALUE_MAX_BYTES >> 20);
        raise_cell(L, u, &err);
    }
    if (iso_cell_call(u->cell, target, &args, &err))
        raise_cell(L, u, &err);
}

static int l_cell_exec(lua_State *L)
{
    lcell *u = open_cell(L);
    start_exec(L, u);
    finish_request(L, u, -1);
    return 0;
}

static int l_cell_call(lua_State *L)
{
    lcell *u = open_cell(L);
    start_call(L, u);
    return finish_request(L, u, -1);
}

/* sb:start_exec(src), sb:start_call(target, ...): submit and return at
 * once; sb:result([timeout_s]) collects (several cells can run at once). */
static int l_cell_start_exec(lua_State *L)
{
    start_exec(L, open_cell(L));
    return 0;
}

static int l_cell_start_call(lua_State *L)
{
    start_call(L, open_cell(L));
    return 0;
}

/* sb:result([timeout_s]) -> true, value | false (still running); raises
 * the request's error. Serves broker requests while it waits. */
static int l_cell_result(lua_State *L)
{
    /* A cell that died under the request still owes its reason. */
    lcell *u = cell_in_use(L, false);
    bool bounded = !lua_isnoneornil(L, 2);
    double timeout = bounded ? luaL_checknumber(L, 2) : -1;
    if (bounded && timeout < 0)
        return iso_lua_raisef(L, ISO_INVALID_ARGUMENT,
                              "result timeout must be >= 0 seconds");
    lua_settop(L, 1);
    if (!finish_request(L, u, timeout)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -2); /* [cell true value] */
    return 2;
}

/* sb:recv([timeout_s]) -> value | nil, isolate.Error (timeout). What a
 * cell posted before it ended still comes, then the error that ended it. */
static int l_cell_recv(lua_State *L)
{
    lcell *u = cell_in_use(L, false);
    bool open = iso_cell_is_open(u->cell); /* else nothing to wait for */
    double timeout = open ? luaL_optnumber(L, 2, -1) : 0;
    if (open && lua_gettop(L) >= 2 && timeout < 0)
        return iso_lua_raisef(L, ISO_INVALID_ARGUMENT,
                              "recv timeout must be >= 0 seconds");
    iso_error err = {0};
    double start = now_s();
    bool waited_out;
    iso_msg *m = pump(L, u, ISO_WAIT_POST, timeout, &err, &waited_out);
    if (!m && waited_out) {
        lua_pushnil(L);
        iso_lua_push_error(L, &err); /* [nil err] err.timeout, err.waited */
        lua_pushnumber(L, timeout);
        lua_setfield(L, -2, "timeout");
        lua_pushnumber(L, now_s() - start);
        lua_setfield(L, -2, "waited");
        return 2;
    }
    if (!m)
        return raise_cell(L, u, &err);
    iso_lua_push_value(L, &m->value);
    iso_msg_destroy(m);
    raise_handler_error(L);
    return 1;
}

static void set_item(lua_State *L, const char *key, const iso_value *items,
                     int i)
{
    iso_lua_push_value(L, &items[i]);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L); /* fields / tags: always a table */
    }
    lua_setfield(L, -2, key);
}

static void set_string(lua_State *L, const char *key, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, key);
}

/* {type="log", level=, message=, fields=}, {type="metric", name=, value=,
 * tags=}, {type="denial", capability=, action=, target=, rule=, layer=,
 * source=}, {type="warning", message=} */
static void push_event(lua_State *L, lcell *u, iso_msg *m)
{
    if (m->type == ISO_MSG_WARNING) {
        lua_createtable(L, 0, 4);
        set_string(L, "type", "warning");
        set_string(L, "message", m->value.u.str.ptr);
        set_string(L, "cell", iso_cell_name(u->cell));
        lua_pushnumber(L, m->time);
        lua_setfield(L, -2, "time");
        return;
    }
    static const char *const log_keys[] = {"level", "message", "fields"};
    static const char *const metric_keys[] = {"name", "value", "tags"};
    static const char *const denial_keys[] = {"capability", "action", "target",
                                              "rule",       "layer",  "source",
                                              "where"};
    const char *type = m->type == ISO_MSG_LOG      ? "log"
                       : m->type == ISO_MSG_METRIC ? "metric"
                                                   : "denial";
    const char *const *keys = m->type == ISO_MSG_LOG      ? log_keys
                              : m->type == ISO_MSG_METRIC ? metric_keys
                                                          : denial_keys;
    size_t n = m->type == ISO_MSG_DENIAL ? 7 : 3;
    lua_createtable(L, 0, 8);
    set_string(L, "type", type);
    for (size_t i = 0; i < n && i < m->value.u.seq.len; i++)
        set_item(L, keys[i], m->value.u.seq.items, (int)i);
    set_string(L, "cell", iso_cell_name(u->cell));
    lua_pushnumber(L, m->time);
    lua_setfield(L, -2, "time");
}

static int l_cell_stats(lua_State *L)
{
    lcell *u = check_cell(L);
    iso_cell_stats st;
    iso_cell_stats_get(u->cell, &st);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, st.cpu_ms);
    lua_setfield(L, -2, "cpu_ms");
    lua_pushinteger(L, st.mem_bytes);
    lua_setfield(L, -2, "mem_bytes");
    lua_pushinteger(L, (lua_Integer)st.calls);
    lua_setfield(L, -2, "calls");
    lua_pushinteger(L, (lua_Integer)st.posts);
    lua_setfield(L, -2, "posts");
    lua_pushinteger(L, (lua_Integer)st.denials);
    lua_setfield(L, -2, "denials");
    lua_pushinteger(L, (lua_Integer)st.uptime_ms);
    lua_setfield(L, -2, "uptime_ms");
    lua_pushstring(L, st.state);
    lua_setfield(L, -2, "state");
    return 1;
}

/* sb:phases() -> {{phase=, ms=}, ...}: when each phase of its spawn ended,
 * in milliseconds after spawn began (a debugging aid: bench/cells.lua) */
static int l_cell_phases(lua_State *L)
{
    lcell *u = check_cell(L);
    iso_phase ph[ISO_PHASES_MAX];
    size_t n = iso_cell_phases(u->cell, ph, ISO_PHASES_MAX);
    n = n < ISO_PHASES_MAX ? n : ISO_PHASES_MAX;
    lua_createtable(L, (int)n, 0); /* [list] */
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 2); /* [list, row] */
        lua_pushstring(L, ph[i].name);
        lua_setfield(L, -2, "phase");
        lua_pushnumber(L, ph[i].at * 1000);
        lua_setfield(L, -2, "ms");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* sb:confinement() -> {{layer=, state=, scope=, detail=}, ...} in order */
static int l_cell_confinement(lua_State *L)
{
    lcell *u = check_cell(L);
    iso_lua_push_value(L, iso_cell_confinement(u->cell));
    return 1;
}

static int stop_cell(lua_State *L, bool kill)
{
    lcell *u = check_cell(L);
    if (!u->cell || !iso_cell_is_open(u->cell))
        return 0;
    if (kill)
        iso_cell_kill(u->cell);
    else
        iso_cell_close(u->cell);
    lua_settop(L, 1);
    emit_exit(L, u, kill ? "kill" : "close", NULL);
    return 0;
}

static int l_cell_close(lua_State *L)
{
    return stop_cell(L, false);
}

static int l_cell_kill(lua_State *L)
{
    return stop_cell(L, true);
}

/* sb:_reload(plan) -> {layer = outcome} (sandbox.policy.reload). */
static int l_cell_reload(lua_State *L)
{
    lcell *u = open_cell(L);
    iso_plan *plan = iso_lua_check_plan(L, 2);
    iso_value report = {0};
    iso_error err = {0};
    if (iso_cell_reload(u->cell, plan, &report, &err))
        return iso_lua_raise(L, &err);
    iso_lua_push_value(L, &report);
    iso_value_free(&report);
    return 1;
}

/* sb:_dispatch(): hand pending events to the sink now (sb:events()). */
static int l_cell_dispatch(lua_State *L)
{
    lcell *u = check_cell(L);
    lua_settop(L, 1);
    dispatch_events(L, u);
    return 0;
}

static int l_cell_gc(lua_State *L)
{
    lcell *u = check_cell(L);
    if (u->cell)
        iso_cell_release(u->cell); /* closes first if still open */
    u->cell = NULL;
    return 0;
}

static int l_cell_is_open(lua_State *L)
{
    lcell *u = check_cell(L);
    lua_pushboolean(L, u->cell && iso_cell_is_open(u->cell));
    return 1;
}

static int l_cell_tostring(lua_State *L)
{
    lcell *u = check_cell(L);
    lua_pushfstring(L, "isolate.Cell: %s (%s%s)", iso_cell_name(u->cell),
                    iso_backend_name(iso_cell_backend(u->cell)),
                    iso_cell_is_open(u->cell) ? "" : ", closed");
    return 1;
}

static const luaL_Reg cell_methods[] = {
    {"exec", l_cell_exec},
    {"call", l_cell_call},
    {"recv", l_cell_recv},
    {"stats", l_cell_stats},
    {"phases", l_cell_phases},
    {"close", l_cell_close},
    {"kill", l_cell_kill},
    {"is_open", l_cell_is_open},
    {"_dispatch", l_cell_dispatch},
    {"_reload", l_cell_reload},
    {"start_exec", l_cell_start_exec},
    {"start_call", l_cell_start_call},
    {"result", l_cell_result},
    {"confinement", l_cell_confinement},
    {NULL, NULL},
};

/* sb.name, sb.backend, then methods. */
static int l_cell_index(lua_State *L)
{
    lcell *u = check_cell(L);
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "name") == 0)
        lua_pushstring(L, iso_cell_name(u->cell));
    else if (strcmp(key, "backend") == 0)
        lua_pushstring(L, iso_backend_name(iso_cell_backend(u->cell)));
    else
        lua_getfield(L, lua_upvalueindex(1), key);
    return 1;
}

void iso_lua_cell_register(lua_State *L)
{
    luaL_newmetatable(L, ISO_CELL_MT); /* [mt] */
    luaL_newlib(L, cell_methods);      /* [mt methods] */
    lua_pushvalue(L, -1); /* the Lua layer adds methods (events) to it */
    lua_setfield(L, LUA_REGISTRYINDEX, "isolate.cell_methods");
    lua_pushcclosure(L, l_cell_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_cell_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_cell_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_cell_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

/* ---- spawn ------------------------------------------------------------- */

/* config.<key> as a list of strings, copied into a Lua-owned array. */
static const char **string_list(lua_State *L, int cfg, const char *key,
                                size_t *n)
{
    lua_getfield(L, cfg, key);
    *n = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
    const char **v = lua_newuserdatauv(L, (*n + 1) * sizeof *v, 0);
    for (size_t i = 0; i < *n; i++) {
        lua_rawgeti(L, -2, (lua_Integer)i + 1);
        v[i] = iso_lua_checkstr(L, -1, key);
        lua_pop(L, 1); /* still anchored by the list table */
    }
    return v; /* [list array] stay on the stack until spawn returns */
}

static int64_t opt_int(lua_State *L, int cfg, const char *key)
{
    lua_getfield(L, cfg, key);
    int64_t v = (int64_t)luaL_optinteger(L, -1, 0);
    lua_pop(L, 1);
    return v;
}

/* core.spawn({name=, backend=, imports=, capabilities=, plan=, wall_ms=,
 * cpu_ms=, mem=, open_files=, output_bytes=, processes=, queue_bytes=,
 * queue_values=, syscalls_deny=},
 * broker): the options are already checked by lua/isolate. */
int iso_lua_cell_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    iso_cell_config cfg = {0};
    lua_getfield(L, 1, "name");
    lua_getfield(L, 1, "backend");
    lua_getfield(L, 1, "plan"); /* [name backend plan]: anchored by cfg */
    cfg.name = iso_lua_checkstr(L, -3, "name");
    int b = iso_backend_from_name(iso_lua_checkstr(L, -2, "backend"));
    cfg.plan = lua_isnil(L, -1) ? NULL : iso_lua_check_plan(L, -1);
    if (b < 0)
        return iso_lua_raisef(L, ISO_INVALID_ARGUMENT, "unknown backend");
    cfg.backend = (iso_backend)b;
    cfg.wall_ms = opt_int(L, 1, "wall_ms");
    cfg.cpu_ms = opt_int(L, 1, "cpu_ms");
    cfg.mem_bytes = opt_int(L, 1, "mem");
    cfg.open_files = opt_int(L, 1, "open_files");
    cfg.output_bytes = opt_int(L, 1, "output_bytes");
    cfg.processes = opt_int(L, 1, "processes");
    cfg.queue_bytes = opt_int(L, 1, "queue_bytes");
    cfg.queue_values = opt_int(L, 1, "queue_values");
    cfg.imports = string_list(L, 1, "imports", &cfg.n_imports);
    cfg.capabilities = string_list(L, 1, "capabilities", &cfg.n_capabilities);
    cfg.deny_syscalls =
        string_list(L, 1, "syscalls_deny", &cfg.n_deny_syscalls);
    lcell *u = lua_newuserdatauv(L, sizeof *u, 1);
    *u = (lcell){0}; /* closed until spawned: __gc is always safe */
    luaL_setmetatable(L, ISO_CELL_MT);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, UV_BROKER);
    iso_error err = {0};
    if (iso_cell_spawn(&cfg, &u->cell, &err))
        return iso_lua_raise(L, &err);
    /* The collector sees only this small userdata, not the cell and its
     * backend's state behind it (~9 KiB, freed by __gc): step it as if
     * they were Lua's, so a script that spawns and drops cells in a loop
     * does not keep hundreds of dead ones and fragment the host's heap. */
    lua_gc(L, LUA_GCSTEP, CELL_C_KIB);
    return 1;
}

/* The cells of the list at index 1, into an array owned by a new userdata
 * on the stack (freed by the GC even if a later check raises). */
iso_cell **iso_lua_check_cells(lua_State *L, size_t *n)
{
    if (!lua_istable(L, 1))
        iso_lua_raisef(L, ISO_INVALID_ARGUMENT,
                       "expected a list of cells, got %s", luaL_typename(L, 1));
    lua_Integer len = luaL_len(L, 1);
    *n = len > 0 ? (size_t)len : 0;
    iso_cell **cells = lua_newuserdatauv(L, *n * sizeof *cells + *n, 0);
    for (size_t i = 0; i < *n; i++) {
        lua_geti(L, 1, (lua_Integer)i + 1);
        lcell *u = luaL_testudata(L, -1, ISO_CELL_MT);
        if (!u || !u->cell)
            iso_lua_raisef(L, ISO_INVALID_ARGUMENT,
                           "cells: item %d is not a spawned cell",
                           (int)i + 1);
        cells[i] = u->cell;
        lua_pop(L, 1);
    }
    return cells;
}

/* core.wait_any(cells, [timeout_s]) -> positions: block until some of the
 * cells (a list) have something for :result() (their result, a broker
 * request, an event, a death, a limit to enforce), or until the timeout;
 * the positions of those, in order (none at the timeout). Takes nothing:
 * :result(0) on them does, serving and dispatching as it always does. */
int iso_lua_cell_wait_any(lua_State *L)
{
    double timeout = luaL_optnumber(L, 2, -1);
    if (!lua_isnoneornil(L, 2) && timeout < 0)
        return iso_lua_raisef(L, ISO_INVALID_ARGUMENT,
                              "wait_any timeout must be >= 0 seconds");
    size_t n;
    iso_cell **cells = iso_lua_check_cells(L, &n);
    bool *ready = (bool *)(cells + n);
    size_t count = iso_cell_wait_any(cells, n, timeout, ready);
    lua_createtable(L, (int)count, 0);
    for (size_t i = 0, k = 0; i < n; i++)
        if (ready[i]) {
            lua_pushinteger(L, (lua_Integer)i + 1);
            lua_rawseti(L, -2, (lua_Integer)++k);
        }
    return 1;
}
