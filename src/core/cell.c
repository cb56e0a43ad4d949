/*
 * Cells, as the host sees them: spawn, requests, waiting ("pumping"),
 * broker replies, close and kill. What differs between backends is behind
 * their ops (backend.h), and they report through the hooks cell.c hands
 * them at start (host_hooks.h); the queues and the doorbell are cell_queue.c's,
 * the BPF guard and hot reload cell_guard.c's.
 *
 * Longer than 600 lines because spawn, requests and the wait loops with their
 * limits share the cell's host-side state and its statics (live names);
 * splitting the waits out would spread one state machine over two files.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell_internal.h"
#include "cell_queue.h"

/* ---- live names -------------------------------------------------------- */

static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;
static iso_cell **live_cells;
static size_t n_live, cap_live;

static bool name_taken(const char *name)
{
    for (size_t i = 0; i < n_live; i++)
        if (strcmp(live_cells[i]->name, name) == 0)
            return true;
    return false;
}

static int name_claim(iso_cell *c, iso_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&names_mu);
    if (name_taken(c->name)) {
        rc = iso_error_set(err, ISO_INVALID_ARGUMENT,
                           "a live cell is already named '%s'; close it or "
                           "choose another name",
                           c->name);
    } else if (n_live == cap_live) {
        size_t cap = cap_live ? 2 * cap_live : 16;
        iso_cell **p = realloc(live_cells, cap * sizeof *p);
        if (!p)
            rc = iso_error_set(err, ISO_MEMORY, "out of memory");
        else
            live_cells = p, cap_live = cap;
    }
    if (rc == 0)
        live_cells[n_live++] = c;
    pthread_mutex_unlock(&names_mu);
    return rc;
}

static void name_release(iso_cell *c)
{
    pthread_mutex_lock(&names_mu);
    for (size_t i = 0; i < n_live; i++)
        if (live_cells[i] == c) {
            live_cells[i] = live_cells[--n_live];
            break;
        }
    pthread_mutex_unlock(&names_mu);
}

/* ---- lifetime ---------------------------------------------------------- */

static char **copy_strings(const char *const *src, size_t n)
{
    char **dst = calloc(n + 1, sizeof *dst);
    for (size_t i = 0; dst && i < n; i++)
        if (!(dst[i] = strdup(src[i]))) {
            while (i > 0)
                free(dst[--i]);
            free(dst);
            return NULL;
        }
    return dst;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void cell_free(iso_cell *c)
{
    if (c->ops && c->ops->destroy)
        c->ops->destroy(c->handle);
    iso_value_free(&c->confinement);
    iso_msg_queue_clear(&c->ch.outbox);
    iso_msg_queue_clear(&c->posts);
    iso_msg_queue_clear(&c->events);
    iso_msg_destroy(c->pending_result);
    iso_msg_destroy(c->pending_request);
    iso_req_destroy(c->ch.req);
    iso_value_free(&c->ch.reply);
    free(c->ch.reply_error);
    iso_error_clear(&c->lost);
    iso_error_clear(&c->failed);
    free_strings(c->guest.imports, c->guest.n_imports);
    free_strings(c->guest.capabilities, c->guest.n_capabilities);
    iso_plan_unref(c->guest.plan);
    for (size_t i = 0; i < c->n_retired; i++)
        iso_plan_unref(c->retired[i]);
    free(c->retired);
    pthread_mutex_destroy(&c->ch.mu);
    pthread_cond_destroy(&c->ch.cv);
    free(c);
}

void iso_cell_unref(iso_cell *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        cell_free(c);
}

void iso_cell_release(iso_cell *c)
{
    if (c && iso_cell_is_open(c))
        iso_cell_close(c);
    iso_cell_unref(c);
}

/* Give c its name, rules and limits (a new cell, or a warm one that has
 * not run anything: the runtime reads these only while serving). */
static int configure(iso_cell *c, const iso_cell_config *cfg)
{
    char **imports = copy_strings(cfg->imports, cfg->n_imports);
    char **caps = copy_strings(cfg->capabilities, cfg->n_capabilities);
    if (!imports || !caps) {
        free_strings(imports, cfg->n_imports);
        free_strings(caps, cfg->n_capabilities);
        return -1;
    }
    free_strings(c->guest.imports, c->guest.n_imports);
    free_strings(c->guest.capabilities, c->guest.n_capabilities);
    c->guest.imports = imports, c->guest.n_imports = cfg->n_imports;
    c->guest.capabilities = caps, c->guest.n_capabilities = cfg->n_capabilities;
    snprintf(c->name, sizeof c->name, "%s", cfg->name);
    snprintf(c->guest.name, sizeof c->guest.name, "%s", cfg->name);
    c->wall_ms = cfg->wall_ms;
    c->cpu_ms = cfg->cpu_ms;
    c->guest.output_bytes = cfg->output_bytes;
    c->guest.mem_limit = cfg->mem_bytes;
    c->guest.learn = iso_mode_learning();
    int64_t qb, qv;
    iso_queue_defaults_get(&qb, &qv);
    c->queue_bytes = cfg->queue_bytes > 0 ? cfg->queue_bytes : qb;
    c->queue_values = cfg->queue_values > 0 ? cfg->queue_values : qv;
    iso_plan_unref(c->guest.plan);
    c->guest.plan = iso_plan_ref(cfg->plan);
    return 0;
}

static iso_cell *cell_new(const iso_cell_config *cfg)
{
    iso_cell *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->ch.mu, NULL);
    pthread_cond_init(&c->ch.cv, NULL);
    c->backend = c->guest.backend = cfg->backend;
    c->ops = iso_backend_ops(cfg->backend);
    if (configure(c, cfg)) {
        cell_free(c);
        return NULL;
    }
    return c;
}

static int check_config(const iso_cell_config *cfg, iso_error *err)
{
    if (!iso_cell_name_valid(cfg->name))
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "cell name must match ^[A-Za-z0-9_-]{1,64}$");
    if (cfg->wall_ms < 0)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "limits.wall_ms must be a positive integer");
    if (cfg->queue_bytes < 0 || cfg->queue_values < 0)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "limits.queue_bytes and limits.queue_values "
                             "must be positive integers");
    return iso_backend_check(cfg->backend, err);
}

/* ---- what backends tell the host (their iso_host_hooks) ---------------- */

/* Record that phase name of c's spawn ended at `at`. Past ISO_PHASES_MAX:
 * dropped. */
static void cell_phase(iso_cell *c, const char *name, double at)
{
    pthread_mutex_lock(&c->ch.mu);
    if (c->n_phases < ISO_PHASES_MAX) {
        iso_phase *ph = &c->phases[c->n_phases++];
        snprintf(ph->name, sizeof ph->name, "%s", name);
        ph->at = at;
    }
    pthread_mutex_unlock(&c->ch.mu);
}

static void unwatch(iso_cell *c);

/* The cell is over: state CLOSED or DEAD, name free, nothing running. */
static void cell_retire(iso_cell *c, iso_state state)
{
    c->ended_at = iso_now();
    atomic_store(&c->ch.state, state);
    name_release(c);
    c->busy = false;
    unwatch(c);
}

static int hook_deliver(void *ctx, iso_msg *m, iso_error *err)
{
    iso_cell *c = ctx;
    if (iso_cell_deliver(c, m) == 0)
        return 0;
    char why[96];
    iso_cell_queue_why(c, why, sizeof why);
    return iso_error_set(err, ISO_OUTPUT,
                         "cell '%s' left more than %s of posts and events "
                         "waiting in its host: recv sooner, or raise the "
                         "limit (spawn limits or sandbox.configure)",
                         c->name, why);
}
static void hook_retire(void *ctx, iso_state state)
{
    cell_retire(ctx, state);
}
static void hook_wake(void *ctx)
{
    iso_cell_wake_host(ctx);
}
static void hook_phase(void *ctx, const char *name, double at)
{
    cell_phase(ctx, name, at);
}
static void hook_hold(void *ctx)
{
    atomic_fetch_add(&((iso_cell *)ctx)->refs, 1);
}
static void hook_release(void *ctx)
{
    iso_cell_unref(ctx);
}
static int hook_push(void *ctx, iso_msg *m)
{
    return iso_cell_push(ctx, m);
}
static void hook_queue_why(void *ctx, char *buf, size_t n)
{
    iso_cell_queue_why(ctx, buf, n);
}
static bool hook_drain(void *ctx)
{
    return iso_cell_drain_outbox(ctx);
}
static int hook_doorbell_fd(void *ctx)
{
    (void)ctx; /* one doorbell per host */
    return iso_cell_doorbell_fd();
}
static iso_mode hook_mode_now(void *ctx)
{
    (void)ctx; /* one mode per host */
    return iso_mode_get();
}
static bool hook_request_waiting(void *ctx)
{
    return ((iso_cell *)ctx)->pending_request != NULL;
}
static void hook_confined(void *ctx, iso_value *rows)
{
    iso_value_move(&((iso_cell *)ctx)->confinement, rows);
}
static bool hook_guard(void *ctx, const char *dir, uint64_t id, char *why,
                       size_t n)
{
    return iso_cell_guard(ctx, dir, id, why, n);
}
static void hook_unguard(void *ctx)
{
    iso_cell_unguard(ctx);
}
static int hook_guard_row(void *ctx, iso_value *list, const char *scope,
                          const char *why)
{
    return iso_cell_guard_row(ctx, list, scope, why);
}

/* The hooks c's backend gets when it starts c. */
static iso_host_hooks hooks_for(iso_cell *c)
{
    return (iso_host_hooks){.mode = iso_mode_get(),
                            .ctx = c,
                            .ch = &c->ch,
                            .guest = &c->guest,
                            .deliver = hook_deliver,
                            .retire = hook_retire,
                            .wake = hook_wake,
                            .phase = hook_phase,
                            .hold = hook_hold,
                            .release = hook_release,
                            .push = hook_push,
                            .queue_why = hook_queue_why,
                            .drain = hook_drain,
                            .doorbell_fd = hook_doorbell_fd,
                            .mode_now = hook_mode_now,
                            .request_waiting = hook_request_waiting,
                            .confined = hook_confined,
                            .guard = hook_guard,
                            .unguard = hook_unguard,
                            .guard_row = hook_guard_row};
}

/* A cell with no name and no rules, for a backend's warm pool. */
iso_cell *iso_cell_new_blank(iso_backend b, iso_backend_cell **handle,
                             iso_error *err)
{
    iso_cell_config cfg = {.name = "", .backend = b};
    iso_cell *c = cell_new(&cfg);
    if (!c) {
        iso_error_set(err, ISO_MEMORY, "out of memory");
        return NULL;
    }
    iso_host_hooks host = hooks_for(c);
    if (c->ops->start(c, &cfg, &host, &c->handle, err)) {
        iso_cell_unref(c);
        return NULL;
    }
    atomic_store(&c->ch.state, ISO_STATE_IDLE);
    *handle = c->handle;
    return c;
}

/* Make a warm cell (the take_warm op) the cell cfg asks for. */
static int adopt(iso_cell *c, const iso_cell_config *cfg, iso_error *err)
{
    if (configure(c, cfg)) {
        iso_error_set(err, ISO_MEMORY, "out of memory");
    } else if (name_claim(c, err) == 0) {
        c->spawned_at = iso_now();
        return 0;
    }
    iso_cell_release(c);
    return -1;
}

static void warn_missing(iso_cell *c);

/* Limits and kernel layers before any guest code (the confine op). A
 * sub-interpreter cell's thread serves its confinement before any request,
 * so spawn need not wait for it: the first use of the cell does
 * (iso_cell_settle), and a cell that could not be confined is stopped
 * there, never used. Hardened mode waits here, so spawn itself fails. */
static int confine(iso_cell *c, const iso_cell_config *cfg, iso_error *err)
{
    if (!c->ops->confine)
        warn_missing(c); /* it confined itself before it was ready */
    if (!c->ops->confine)
        return 0;
    if (c->ops->confine(c->handle, cfg, err) == 0) {
        c->confining = c->ops->confined != NULL;
        if (iso_mode_get() != ISO_MODE_HARDENED || iso_cell_settle(c, err) == 0)
            return 0;
    }
    iso_cell_release(c);
    return -1;
}

int iso_cell_spawn(const iso_cell_config *cfg, iso_cell **out, iso_error *err)
{
    double began = iso_now();
    *out = NULL;
    if (check_config(cfg, err))
        return -1;
    const iso_cell_ops *ops = iso_backend_ops(cfg->backend);
    iso_cell *warm = ops->take_warm ? ops->take_warm() : NULL;
    if (warm) {
        warm->spawn_began = began;
        if (adopt(warm, cfg, err) || confine(warm, cfg, err))
            return -1;
        *out = warm;
        return 0;
    }
    iso_cell *c = cell_new(cfg);
    if (!c)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    c->spawn_began = began;
    if (name_claim(c, err)) {
        cell_free(c);
        return -1;
    }
    iso_host_hooks host = hooks_for(c);
    if (c->ops->start(c, cfg, &host, &c->handle, err)) {
        name_release(c);
        iso_cell_unref(c);
        return -1;
    }
    atomic_store(&c->ch.state, ISO_STATE_IDLE);
    cell_phase(c, "started", iso_now());
    if (confine(c, cfg, err))
        return -1;
    c->spawned_at = iso_now();
    *out = c;
    return 0;
}

const char *iso_cell_name(const iso_cell *c)
{
    return c->name;
}
iso_backend iso_cell_backend(const iso_cell *c)
{
    return c->backend;
}

static int64_t uptime_ms(const iso_cell *c)
{
    double end = iso_cell_is_open(c) ? iso_now() : c->ended_at;
    return (int64_t)((end - c->spawned_at) * 1000);
}

bool iso_cell_is_open(const iso_cell *c)
{
    int s = atomic_load(&c->ch.state);
    return s == ISO_STATE_IDLE;
}

/* ---- requests ---------------------------------------------------------- */

static const char *row_field(const iso_value *row, const char *key)
{
    for (size_t i = 0; row->type == ISO_MAP && i < row->u.seq.len; i++) {
        const iso_value *k = &row->u.seq.items[2 * i];
        const iso_value *v = k + 1;
        if (k->type == ISO_STR && strcmp(k->u.str.ptr, key) == 0)
            return v->type == ISO_STR ? v->u.str.ptr : "";
    }
    return "";
}

/* Outside hardened mode a cell may run without a layer this host lacks:
 * say so once, as a warning event. */
static void warn_missing(iso_cell *c)
{
    char text[512] = "confinement layers missing: ";
    size_t base = strlen(text), n = base;
    const iso_value *rows = &c->confinement;
    for (size_t i = 0; rows->type == ISO_LIST && i < rows->u.seq.len; i++) {
        const iso_value *row = &rows->u.seq.items[i];
        if (strcmp(row_field(row, "state"), "missing") == 0 && n < sizeof text)
            n +=
                (size_t)snprintf(text + n, sizeof text - n, "%s%s",
                                 n > base ? ", " : "", row_field(row, "layer"));
    }
    iso_msg *m = n > base && iso_mode_get() != ISO_MODE_HARDENED
                     ? iso_msg_new(ISO_MSG_WARNING)
                     : NULL;
    if (m && iso_value_set_string(&m->value, ISO_STR, text, strlen(text)) == 0)
        iso_msg_queue_push(&c->events, m);
    else
        iso_msg_destroy(m);
}

int iso_cell_settle(iso_cell *c, iso_error *err)
{
    if (!c->confining)
        return 0;
    c->confining = false;
    iso_error why = {0};
    if (!c->ops->confined || c->ops->confined(c->handle, &why) == 0) {
        warn_missing(c);
        return 0;
    }
    c->ops->stop(c->handle, true, c->busy); /* never used unconfined */
    iso_error_set(err, why.kind, "%s", why.message);
    iso_error_move(&c->failed, &why);
    return -1;
}

/* Awaited, the reason dropped: the caller learns it from the next call. */
static void settle_quietly(iso_cell *c)
{
    iso_error err = {0};
    iso_cell_settle(c, &err);
    iso_error_clear(&err);
}

static int closed_error(iso_cell *c, iso_error *err)
{
    if (c->failed.kind != ISO_OK)
        return iso_error_set(err, c->failed.kind, "cell '%s' was stopped: %s",
                             c->name, c->failed.message);
    return iso_error_set(err, ISO_CLOSED, "cell '%s' is %s", c->name,
                         atomic_load(&c->ch.state) == ISO_STATE_DEAD
                             ? "dead (it was killed or abandoned)"
                             : "closed");
}

static int submit(iso_cell *c, iso_req *r, iso_error *err)
{
    if (iso_cell_settle(c, err)) {
        iso_req_destroy(r);
        return -1;
    }
    if (!iso_cell_is_open(c)) {
        iso_req_destroy(r);
        return closed_error(c, err);
    }
    if (c->busy) {
        iso_req_destroy(r);
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "cell '%s' is already running a request", c->name);
    }
    r->seq = ++c->next_seq;
    c->busy = true;
    c->overrun = ISO_OK;
    c->started = iso_now();
    if (c->ops->watch &&
        (c->wall_ms > 0 || c->cpu_ms > 0 || c->guest.mem_limit > 0))
        c->watched = c->ops->watch(c->handle, r->seq, c->started) == 0;
    c->overrun_again = 0;
    c->calls++;
    if (c->ops->submit(c->handle, r, err) == 0)
        return 0;
    c->busy = false; /* nothing runs: not submitted, or the cell died */
    return -1;
}

static iso_req *req_new(iso_req_type type, const char *text, size_t len)
{
    iso_req *r = calloc(1, sizeof *r);
    if (r && !(r->text = malloc(len + 1))) {
        free(r);
        return NULL;
    }
    if (r) {
        memcpy(r->text, text, len);
        r->text[len] = '\0';
        r->len = len;
        r->type = type;
    }
    return r;
}

int iso_cell_exec(iso_cell *c, const char *src, size_t len, iso_error *err)
{
    iso_req *r = req_new(ISO_REQ_EXEC, src, len);
    if (!r)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    return submit(c, r, err);
}

int iso_cell_call(iso_cell *c, const char *target, iso_value *args,
                  iso_error *err)
{
    iso_req *r = req_new(ISO_REQ_CALL, target, strlen(target));
    if (!r) {
        iso_value_free(args);
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    }
    iso_value_move(&r->args, args);
    return submit(c, r, err);
}

/* ---- waiting ----------------------------------------------------------- */

int iso_cell_deliver(iso_cell *c, iso_msg *m)
{
    if (m->type == ISO_MSG_RESULT) {
        iso_msg_destroy(c->pending_result);
        c->pending_result = m;
        return 0;
    }
    if (m->type == ISO_MSG_REQUEST) {
        iso_msg_destroy(c->pending_request);
        c->pending_request = m;
        return 0;
    }
    if (m->type == ISO_MSG_DENIAL)
        c->denials++; /* counted even when the queue has no room for it */
    if (m->type == ISO_MSG_DENIAL && !iso_denial_marked(m) &&
        iso_denial_mark(m, "cell")) {
        iso_msg_destroy(m);
        return 0; /* out of memory: the count above keeps it */
    }
    if (!m->charged && iso_cell_queue_charge(c, m)) {
        iso_msg_destroy(m);
        return -1;
    }
    if (m->type == ISO_MSG_POST)
        c->posts_count++;
    iso_msg_queue_push(m->type == ISO_MSG_POST ? &c->posts : &c->events, m);
    return 0;
}

bool iso_cell_drain_outbox(iso_cell *c)
{
    pthread_mutex_lock(&c->ch.mu);
    iso_msg_queue q = c->ch.outbox;
    c->ch.outbox.head = c->ch.outbox.tail = NULL;
    pthread_mutex_unlock(&c->ch.mu);
    bool any = q.head != NULL;
    iso_msg *m;
    while ((m = iso_msg_queue_pop(&q)))
        iso_cell_deliver(c, m);
    return any;
}

/* What the watchdog found while nobody waited, if anything. */
static void adopt_watchdog(iso_cell *c)
{
    double since;
    iso_kind kind = c->watched && !c->overrun
                        ? c->ops->found(c->handle, c->next_seq, &since)
                        : ISO_OK;
    if (kind != ISO_OK)
        c->overrun = kind, c->overrun_since = since;
}

static void unwatch(iso_cell *c)
{
    if (c->watched)
        c->ops->forget(c->handle);
    c->watched = false;
}

static iso_msg *take_ready(iso_cell *c, iso_wait what)
{
    iso_msg *m = NULL;
    if (c->pending_request) {
        m = c->pending_request;
        c->pending_request = NULL;
    } else if (what == ISO_WAIT_RESULT && c->pending_result) {
        m = c->pending_result;
        c->pending_result = NULL;
        c->busy = false;
        adopt_watchdog(c); /* an interrupted request's kind */
        unwatch(c);
    } else if (what == ISO_WAIT_POST) {
        m = iso_cell_refund(c, iso_msg_queue_pop(&c->posts));
    }
    return m;
}

/* Which limit the running request passed, and since when. */
static bool over_limit(iso_cell *c, double now)
{
    adopt_watchdog(c);
    if (c->overrun)
        return true;
    double wall_end = c->started + (double)c->wall_ms / 1000.0;
    iso_kind over;
    if (c->wall_ms > 0 && now >= wall_end)
        c->overrun = ISO_TIMEOUT, c->overrun_since = wall_end;
    else if (c->ops->over && (over = c->ops->over(c->handle)) != ISO_OK)
        c->overrun = over, c->overrun_since = now;
    return c->overrun != ISO_OK;
}

/* Take in what c sent, without waiting. A death found here is the running
 * request's outcome, kept for whoever collects its result. */
static void take_in(iso_cell *c)
{
    iso_error err = {0};
    bool busy = c->busy;
    if (iso_cell_is_open(c) && c->ops->receive(c->handle, 0, &err) && busy)
        iso_error_move(&c->lost, &err);
    iso_error_clear(&err);
}

/* Past a limit the backend interrupts or kills: -1 once it is retired. */
static int enforce_limits(iso_cell *c, double now)
{
    if (!over_limit(c, now))
        return 0;
    take_in(c); /* it may have stopped while nobody waited (the watchdog) */
    if (c->pending_result || c->lost.kind != ISO_OK)
        return 0; /* its answer comes first */
    return c->ops->overrun(c->handle, now - c->overrun_since,
                           &c->overrun_again)
               ? 0
               : -1;
}

/* cpu_ms and mem of a cell (the over op) the watchdog does not watch */
#define CPU_CHECK_EVERY_S 0.01

static double next_deadline(iso_cell *c, iso_wait what, double deadline)
{
    if (what != ISO_WAIT_RESULT)
        return deadline;
    double wake = -1;
    if (c->overrun)
        wake = c->overrun_again;
    else if ((c->cpu_ms > 0 || c->guest.mem_limit > 0) && !c->watched &&
             c->ops->over)
        wake = iso_now() + CPU_CHECK_EVERY_S;
    else if (c->wall_ms > 0)
        wake = c->started + (double)c->wall_ms / 1000.0;
    if (wake < 0)
        return deadline;
    return deadline < 0 || wake < deadline ? wake : deadline;
}

static int overrun_error(iso_cell *c, iso_error *err, bool closed)
{
    if (c->overrun == ISO_CANCELLED)
        return iso_error_set(err, ISO_CANCELLED,
                             "cell '%s': its request was cancelled%s",
                             c->name, closed ? " and the cell stopped" : "");
    const char *limit = c->overrun == ISO_CPU      ? "cpu_ms"
                        : c->overrun == ISO_MEMORY ? "mem"
                                                   : "wall_ms";
    int64_t value = c->overrun == ISO_CPU      ? c->cpu_ms
                    : c->overrun == ISO_MEMORY ? c->guest.mem_limit
                                               : c->wall_ms;
    return iso_error_set(err, c->overrun,
                         "cell '%s' exceeded limits.%s=%lld "
                         "and was %s",
                         c->name, limit, (long long)value,
                         closed ? "stopped: cell closed" : "interrupted");
}

int iso_cell_wait(iso_cell *c, iso_wait what, double timeout_s, iso_msg **out,
                  iso_error *err)
{
    *out = NULL;
    if (iso_cell_settle(c, err))
        return -1;
    if (what == ISO_WAIT_RESULT && c->lost.kind != ISO_OK) {
        iso_error_move(err, &c->lost);
        return -1;
    }
    if (!iso_cell_is_open(c) && what == ISO_WAIT_POST) {
        iso_cell_drain_outbox(c); /* posted before it ended: not lost */
        if ((*out = iso_cell_refund(c, iso_msg_queue_pop(&c->posts))))
            return 0;
    }
    if (!iso_cell_is_open(c))
        return closed_error(c, err);
    if (what == ISO_WAIT_RESULT && !c->busy)
        return iso_error_set(err, ISO_INVALID_ARGUMENT, "no request running");
    double deadline = timeout_s < 0 ? -1 : iso_now() + timeout_s;
    for (;;) {
        iso_msg *m = take_ready(c, what);
        if (m && m->type == ISO_MSG_RESULT && c->overrun) {
            iso_msg_destroy(m);
            return overrun_error(c, err, false);
        }
        if (m) {
            *out = m;
            return 0;
        }
        double now = iso_now();
        if (what == ISO_WAIT_RESULT && enforce_limits(c, now))
            return overrun_error(c, err, true);
        if (deadline >= 0 && now >= deadline) {
            iso_error_set(err, ISO_TIMEOUT, "timed out: waited %.3fs of %gs",
                          now - (deadline - timeout_s), timeout_s);
            return 1; /* the caller's own deadline, not a limit */
        }
        if (c->ops->receive(c->handle, next_deadline(c, what, deadline), err))
            return -1;
    }
}

/* ---- waiting for any of several cells ---------------------------------- */

/* Process cells in one wait-any that get a socket of their own in ppoll.
 * Any beyond, and the doorbell when no socket can be made, are looked at
 * every ISO_WAIT_ANY_SLICE_S instead. */
#define WAIT_ANY_FDS 64

static void lower(double *wake, double t)
{
    if (t >= 0 && (*wake < 0 || t < *wake))
        *wake = t;
}

/* Would waiting for c's result do more than time out: hand over the
 * result, a broker request, an event or a death, or enforce a limit? If
 * not, *wake is lowered to when a limit must be looked at again. */
static bool needs_host(iso_cell *c, double now, double *wake)
{
    if (!c->busy || !iso_cell_is_open(c) || c->lost.kind != ISO_OK ||
        c->pending_result || c->pending_request || c->events.head)
        return true;
    if (c->overrun == ISO_OK && over_limit(c, now))
        return true; /* it just passed one */
    double due = next_deadline(c, ISO_WAIT_RESULT, -1);
    if (due >= 0 && due <= now)
        return true; /* the next interrupt (or kill) is due */
    lower(wake, due);
    return false;
}

/* Sleep until the doorbell moves past seen, a process cell's socket has
 * something, or wake (< 0: no limit). Spurious returns are fine. */
static void sleep_any(iso_cell *const *cells, size_t n, uint32_t seen,
                      double wake)
{
    struct pollfd fds[WAIT_ANY_FDS + 1];
    nfds_t nfds = 0;
    bool threads = false;
    for (size_t i = 0; i < n; i++) {
        const iso_cell_ops *ops = cells[i]->ops;
        int fd = ops->poll_fd ? ops->poll_fd(cells[i]->handle) : -1;
        if (!ops->poll_fd)
            threads = true; /* it rings the doorbell */
        else if (nfds == WAIT_ANY_FDS)
            lower(&wake, iso_now() + ISO_WAIT_ANY_SLICE_S);
        else if (fd >= 0)
            fds[nfds++] = (struct pollfd){.fd = fd, .events = POLLIN};
    }
    iso_doorbell_sleep(fds, nfds, threads, seen, wake);
}

size_t iso_cell_poll_any(iso_cell *const *cells, size_t n, bool *ready,
                         double *wake)
{
    double now = iso_now();
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        take_in(cells[i]);
        ready[i] = needs_host(cells[i], now, wake);
        count += ready[i];
    }
    return count;
}

size_t iso_cell_wait_any(iso_cell *const *cells, size_t n, double timeout_s,
                         bool *ready)
{
    double deadline = timeout_s < 0 ? -1 : iso_now() + timeout_s;
    for (;;) {
        uint32_t seen = iso_doorbell_peek();
        double wake = deadline;
        size_t count = iso_cell_poll_any(cells, n, ready, &wake);
        if (count || n == 0 || (deadline >= 0 && iso_now() >= deadline))
            return count;
        sleep_any(cells, n, seen, wake);
    }
}

bool iso_cell_busy(const iso_cell *c)
{
    return c->busy;
}

bool iso_cell_cancel(iso_cell *c)
{
    if (!c->busy || !iso_cell_is_open(c) || c->overrun != ISO_OK)
        return false;
    c->overrun = ISO_CANCELLED, c->overrun_since = iso_now();
    c->overrun_again = 0; /* interrupt at the next look */
    iso_loop_kick();       /* a loop looks now; a blocking wait already does */
    return true;
}

int iso_cell_reply(iso_cell *c, iso_value *value, const char *error)
{
    if (iso_cell_is_open(c))
        c->ops->reply(c->handle, value, error);
    return 0;
}

iso_msg *iso_cell_next_event(iso_cell *c)
{
    settle_quietly(c); /* its warning, if any, is an event */
    iso_error err = {0};
    bool busy = c->busy;
    iso_cell_guard_drain();
    /* Without waiting; a death found here is the running request's
     * outcome, kept for whoever waits for its result. */
    if (iso_cell_is_open(c) && c->ops->receive(c->handle, 0, &err) && busy)
        iso_error_move(&c->lost, &err);
    iso_error_clear(&err);
    return iso_cell_refund(c, iso_msg_queue_pop(&c->events));
}

size_t iso_cell_phases(iso_cell *c, iso_phase *out, size_t max)
{
    pthread_mutex_lock(&c->ch.mu);
    size_t n = c->n_phases;
    for (size_t i = 0; i < n && i < max; i++) {
        out[i] = c->phases[i];
        out[i].at -= c->spawn_began;
    }
    pthread_mutex_unlock(&c->ch.mu);
    for (size_t i = 1; i < n && i < max; i++) /* a handful: insertion sort */
        for (size_t j = i; j > 0 && out[j].at < out[j - 1].at; j--) {
            iso_phase t = out[j];
            out[j] = out[j - 1], out[j - 1] = t;
        }
    return n;
}

void iso_cell_stats_get(iso_cell *c, iso_cell_stats *st)
{
    static const char *const names[] = {"starting", "idle", "closed", "dead"};
    memset(st, 0, sizeof *st);
    if (iso_cell_is_open(c) && c->ops->cpu_ms)
        st->cpu_ms = c->ops->cpu_ms(c->handle);
    if (iso_cell_is_open(c) && c->ops->mem_bytes)
        st->mem_bytes = c->ops->mem_bytes(c->handle);
    st->calls = c->calls;
    st->posts = c->posts_count;
    st->denials = c->denials;
    st->uptime_ms = uptime_ms(c);
    int s = atomic_load(&c->ch.state);
    st->state = (s == ISO_STATE_IDLE && c->busy) ? "running" : names[s];
}

/* ---- close and kill ---------------------------------------------------- */

void iso_cell_close(iso_cell *c)
{
    settle_quietly(c);
    if (iso_cell_is_open(c))
        c->ops->stop(c->handle, false, c->busy);
    iso_loop_kick(); /* a loop waiting on it has a request to fail */
}

void iso_cell_kill(iso_cell *c)
{
    settle_quietly(c);
    if (iso_cell_is_open(c))
        c->ops->stop(c->handle, true, c->busy);
    if (atomic_load(&c->ch.state) == ISO_STATE_CLOSED)
        atomic_store(&c->ch.state, ISO_STATE_DEAD);
    iso_loop_kick();
}

const iso_value *iso_cell_confinement(iso_cell *c)
{
    settle_quietly(c); /* a failure shows as the cell being closed */
    return &c->confinement;
}
