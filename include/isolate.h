/*
 * libisolate -- the C core of luaisolate.
 *
 * No Lua here and no Python in this header: the binding (src/lua) and the
 * host see only these types. Every function returns 0 on success or a
 * negative code and fills the optional iso_error. Nothing here calls exit()
 * or abort() on bad input.
 */
#ifndef ISOLATE_H
#define ISOLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISO_VERSION "0.1.0"

/* ---- errors ------------------------------------------------------------ */

typedef enum iso_kind {
    ISO_OK = 0,
    ISO_INVALID_ARGUMENT,
    ISO_NOT_IMPLEMENTED,
    ISO_POLICY,
    ISO_UNENFORCEABLE,
    ISO_GUEST,
    ISO_TIMEOUT,
    ISO_CPU,
    ISO_MEMORY,
    ISO_CLOSED,
    ISO_CRASHED,
    ISO_VALUE,
    ISO_OUTPUT,    /* past output_bytes or the host's queue limits */
    ISO_CANCELLED, /* the host cancelled the running request */
} iso_kind;

/* iso_error.code for a peer (a process cell's worker, or its host) that
 * broke the wire protocol; kind ISO_CRASHED. Negative: errno values are
 * positive. */
#define ISO_E_PROTOCOL (-1000)

typedef struct iso_error {
    iso_kind kind;
    int code; /* errno when a system call failed, ISO_E_PROTOCOL, else 0 */
    char message[512];
    char python[64]; /* ISO_GUEST: the exception type name */
    char *traceback; /* ISO_GUEST: heap text, owned; iso_error_clear frees */
    /* ISO_GUEST: the module whose import the cell's guard refused, when
     * that ImportError ended the request ("" otherwise): the host names
     * the option to change (imports of a spawn, of a pipeline stage). */
    char refused_import[128];
    /* ISO_CRASHED, a process cell: the signal that killed its worker (0:
     * none), and the system call its seccomp filter refused, as the
     * worker's death note claims it ("": none). */
    int signal;
    char syscall[32];
    /* ISO_GUEST: the rule a guard's refusal names, the one that would
     * allow what was refused (policy language: fs {read="/x"}), as the
     * guest's exception claims it (heap text, owned, like traceback; NULL:
     * none). */
    char *suggestion;
} iso_error;

/* The contract name of a kind ("invalid_argument", ...). Static string. */
const char *iso_kind_name(iso_kind kind);
/* Fill err (may be NULL) and return -1. Never blocks. */
int iso_error_set(iso_error *err, iso_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Free the traceback and reset to ISO_OK. */
void iso_error_clear(iso_error *err);
/* Move src into dst (dst cleared first); src is left empty. */
void iso_error_move(iso_error *dst, iso_error *src);

/* ---- values: the one type that crosses every boundary ------------------ */

/*
 * How many containers a value may nest, the same for every backend. The
 * process backend's unpacker, msgpack-c, holds at most 32 open containers
 * (MSGPACK_EMBED_STACK_SIZE, compiled into libmsgpackc: 32 nested arrays
 * unpack, 33 fail). Frames wrap call arguments, log fields, metric values
 * and request payloads in one list that is not a level of the values inside
 * (as for a sub-interpreter call), so a value gets 32 - 1 = 31 levels. The
 * Lua and Python converters could carry more; they use this limit too so
 * that no value crosses one backend and not the other.
 * src/base/wire_decode.c asserts the relation at compile time.
 */
#define ISO_VALUE_MAX_DEPTH 31
#define ISO_VALUE_MAX_BYTES ((size_t)64 << 20) /* one payload, all strings */
/* Values (scalars and containers, map keys included) in one payload: a
 * process cell must not make its host build a 3 GB tree from a 60 MiB
 * frame of nils. */
#define ISO_VALUE_MAX_ITEMS ((size_t)1 << 22)

typedef enum iso_type {
    ISO_NIL = 0,
    ISO_BOOL,
    ISO_INT,
    ISO_FLOAT,
    ISO_STR,   /* valid UTF-8 text */
    ISO_BYTES, /* anything else */
    ISO_LIST,
    ISO_MAP, /* keys are ISO_STR, ISO_BYTES or ISO_INT */
} iso_type;

typedef struct iso_value iso_value;
struct iso_value {
    iso_type type;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            char *ptr; /* owned, NUL-terminated for convenience */
            size_t len;
        } str;
        struct {
            iso_value *items; /* owned; a map holds 2*len items: k0 v0 k1 v1 */
            size_t len, cap;
        } seq;
    } u;
};

/* A zeroed iso_value is ISO_NIL; values live inline or in heap boxes.
 * Setters and iso_value_move free what the destination held, so it must be
 * initialised; iso_value_copy and the converters treat it as output only. */
iso_value *iso_value_new(void);       /* heap NIL box, NULL on OOM */
void iso_value_destroy(iso_value *v); /* free contents and the box */
void iso_value_free(iso_value *v);    /* free contents, leave NIL */
void iso_value_move(iso_value *dst, iso_value *src); /* src left NIL */

void iso_value_set_nil(iso_value *v);
void iso_value_set_bool(iso_value *v, bool b);
void iso_value_set_int(iso_value *v, int64_t i);
void iso_value_set_float(iso_value *v, double f);
/* Copies len bytes; type is ISO_STR or ISO_BYTES. -1 on OOM. */
int iso_value_set_string(iso_value *v, iso_type type, const char *p,
                         size_t len);
void iso_value_set_list(iso_value *v); /* empty list */
void iso_value_set_map(iso_value *v);  /* empty map */
/* Append a NIL slot to a list; NULL on OOM. The pointer is valid until the
 * next append to the same list. */
iso_value *iso_list_append(iso_value *list);
/* Append a NIL key and NIL value to a map; -1 on OOM. Same validity. */
int iso_map_append(iso_value *map, iso_value **key, iso_value **val);
/* Deep copy; -1 on OOM (dst left NIL). */
int iso_value_copy(iso_value *dst, const iso_value *src);
bool iso_value_equal(const iso_value *a, const iso_value *b);
/* Total length of all strings and bytes in v (the payload size limit). */
size_t iso_value_string_bytes(const iso_value *v);
/* What v holds in memory, as the host's queue limits count it: its strings
 * and bytes plus sizeof(iso_value) for every value in it (v included). */
size_t iso_value_footprint(const iso_value *v);
/* True when p[0..len) is well-formed UTF-8 (no surrogates, no overlongs). */
bool iso_utf8_valid(const char *p, size_t len);

/* ---- plans: compiled fs and net rules ---------------------------------- */

/*
 * A plan is what the Lua policy compiler hands to C: ordered fs and net
 * rules with their policy text. Deny beats every allow; anything unmatched
 * is denied. Built once, then immutable and shared (reference counted).
 *
 * fs patterns are absolute and normalised lexically. A pattern without
 * wildcards matches that path and everything beneath it (never a sibling
 * with the same prefix); `*` and `?` match within one segment, `**` any
 * number of whole segments.
 */
typedef enum iso_fs_access {
    ISO_FS_READ = 1,
    ISO_FS_WRITE = 2,
    ISO_FS_ALLOW = 3, /* read and write */
    ISO_FS_DENY = 4,
} iso_fs_access;

/* connect: connect/sendto to the endpoint; bind: bind (and listen on what
 * was bound) to a local endpoint; deny: refuses both. A spec is
 * "host:port", or "unix:/path" (connect and deny only) for a pathname unix
 * socket. */
typedef enum iso_net_action {
    ISO_NET_CONNECT,
    ISO_NET_DENY,
    ISO_NET_BIND,
} iso_net_action;

/* An IP endpoint: family 4 or 6, address in network order. */
typedef struct iso_addr {
    int family;
    uint8_t bytes[16];
} iso_addr;

typedef struct iso_plan iso_plan;

#define ISO_PATH_MAX 4096

iso_plan *iso_plan_new(void); /* NULL on OOM; one reference */
iso_plan *iso_plan_ref(iso_plan *p);
void iso_plan_unref(iso_plan *p);
/* Append a rule; text is its policy syntax (copied), e.g.
 * fs {read="/srv/data"}. -1 with ISO_POLICY for a bad glob or spec. */
int iso_plan_add_fs(iso_plan *p, iso_fs_access access, const char *glob,
                    const char *text, iso_error *err);
int iso_plan_add_net(iso_plan *p, iso_net_action action, const char *spec,
                     const char *text, iso_error *err);

/* Decide. op is ISO_FS_READ or ISO_FS_WRITE; path absolute and normalised.
 * *rule is the deciding rule's index, or -1 for the default deny. */
bool iso_plan_check_fs(const iso_plan *p, iso_fs_access op, const char *path,
                       int *rule);
/* Is path (absolute, normalised) a directory on the way to a grant: a
 * proper ancestor of a path some read, write or allow rule matches, and
 * matched by no deny rule? Its metadata (stat) is then no secret. */
bool iso_plan_fs_on_the_way(const iso_plan *p, const char *path);
bool iso_plan_check_net(const iso_plan *p, const iso_addr *addr, uint16_t port,
                        int *rule);
/* bind(): bind and deny rules decide (a local address). */
bool iso_plan_check_bind(const iso_plan *p, const iso_addr *addr, uint16_t port,
                         int *rule);
/* connect()/sendto() to a pathname unix socket (absolute, normalised):
 * the unix: connect and deny rules decide. */
bool iso_plan_check_unix(const iso_plan *p, const char *path, int *rule);
/* What kinds of net rules allow something (deny rules are not counted):
 * ip = a connect or bind rule on an IP endpoint (name resolution needs
 * NETLINK_ROUTE), bind = a bind rule (listen() is possible), unix_path =
 * a unix: connect rule (socket(AF_UNIX) is needed). */
typedef struct iso_plan_net_kinds {
    bool ip, bind, unix_path;
} iso_plan_net_kinds;
iso_plan_net_kinds iso_plan_net_kinds_of(const iso_plan *p);
/* Text of rule i ("default deny" for -1). */
const char *iso_plan_fs_text(const iso_plan *p, int rule);
const char *iso_plan_net_text(const iso_plan *p, int rule);

/* The rules as two lists of [kind, target, text] (a worker rebuilds the
 * plan from them), and back. */
int iso_plan_to_value(const iso_plan *p, iso_value *fs, iso_value *net);
iso_plan *iso_plan_from_value(const iso_value *fs, const iso_value *net,
                              iso_error *err);
/* The TCP ports the connect rules allow (what Landlock can express):
 * *ports is malloc'd; *any when a rule spans more than ISO_PORTS_MAX. */
#define ISO_PORTS_MAX 1024
int iso_plan_connect_ports(const iso_plan *p, uint16_t **ports, size_t *n,
                           bool *any);
/* The same for the bind rules (Landlock's TCP bind rules). */
int iso_plan_bind_ports(const iso_plan *p, uint16_t **ports, size_t *n,
                        bool *any);
/* The net rules one by one, for guards that compile them into their own
 * form (the eBPF network guard). `localhost` stands for 127.0.0.0/8 and
 * ::1; addr and prefix are then unset. */
typedef struct iso_plan_net {
    iso_net_action action;
    bool unix_path; /* a unix: rule: no address, not for IP guards */
    bool localhost;
    iso_addr addr; /* network order; IPv4 in bytes[0..3] */
    int prefix;    /* bits */
    uint16_t port_lo, port_hi;
} iso_plan_net;
size_t iso_plan_net_count(const iso_plan *p); /* 0 for NULL */
/* Rule i (0 <= i < count) into *out; ISO_INVALID_ARGUMENT past the end. */
int iso_plan_net_rule(const iso_plan *p, size_t i, iso_plan_net *out,
                      iso_error *err);
/* Lexical normalisation of an absolute path: //, . and .. resolved. */
int iso_path_normalize(const char *in, char *out, size_t size, iso_error *err);
/* Validate a glob or a net spec ("host:port", "unix:/path") without a
 * plan; iso_net_check_for also checks the spec suits the action. */
int iso_glob_check(const char *glob, iso_error *err);
int iso_net_check(const char *spec, iso_error *err);
int iso_net_check_for(iso_net_action action, const char *spec, iso_error *err);
/* Parse "host:port" with host an IP, [IPv6] or localhost (127.0.0.1). */
int iso_endpoint_parse(const char *s, iso_addr *addr, uint16_t *port,
                       iso_error *err);
/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it is;
 * anything else unchanged. */
iso_addr iso_addr_unmap(const iso_addr *a);
/* True when name is a system call of this machine (libseccomp's table). */
bool iso_syscall_known(const char *name);

/* ---- backends ---------------------------------------------------------- */

typedef enum iso_backend {
    ISO_BACKEND_SUBINTERPRETER = 0,
    ISO_BACKEND_PROCESS,
    ISO_BACKEND_MICROVM,
    ISO_BACKEND_COUNT,
} iso_backend;

const char *iso_backend_name(iso_backend b);
/* -1 when name is not a backend. */
int iso_backend_from_name(const char *name);
/* 0 when this build and host can run b; else ISO_NOT_IMPLEMENTED with what
 * is missing. Probes the host (cheap, never blocks for long). */
int iso_backend_check(iso_backend b, iso_error *err);
/* What the microvm backend lacks here, as names in out (up to max; returns
 * how many): "runtime" (this build has no microvm runtime), "/dev/kvm"
 * (none usable), "vmm" (no VMM binary on PATH). Looks, changes nothing. */
size_t iso_microvm_lacks(const char **out, size_t max);

/* ---- runtime ----------------------------------------------------------- */

typedef struct iso_runtime_info {
    const char *python_version; /* "3.11.2" */
    bool own_gil;               /* cells have their own GIL */
    const char *cell_mode;      /* "own GIL" or "shared GIL" */
    /* Sub-interpreter cells given up on (killed or past wall_ms) while
     * their thread still ran guest code: those threads live on in this
     * process until their guest ends or the host exits. */
    int abandoned_threads;
    int abandoned_parked;     /* of those, asleep for good: no GIL, no CPU */
    int64_t abandoned_cpu_ms; /* CPU time those threads have used so far */
} iso_runtime_info;

/* Never blocks for long. */
void iso_runtime_info_get(iso_runtime_info *info);

/* ---- cells ------------------------------------------------------------- */

#define ISO_NAME_MAX 64

typedef struct iso_cell_config {
    const char *name; /* ^[A-Za-z0-9_-]{1,64}$, unique among live cells */
    iso_backend backend;
    const char *const *imports; /* allowed modules (and their submodules) */
    size_t n_imports;
    const char *const *capabilities; /* names request() may use */
    size_t n_capabilities;
    int64_t wall_ms; /* per exec/call; 0 = unbounded */
    iso_plan *plan;  /* fs and net rules; NULL denies all (a ref is taken) */
    /* 0 = not set. Both backends enforce cpu_ms (a sub-interpreter
     * cell's thread CPU time, judged by the host; a worker's RLIMIT_CPU),
     * mem_bytes (the cell's Python allocation account; a worker's
     * RLIMIT_AS and cgroup memory.max) and output_bytes (what the guest
     * posts, logs and measures; a worker's files too, RLIMIT_FSIZE).
     * open_files and processes (how many children) are process cells'
     * only: a sub-interpreter cell ignores them (lua/isolate/init.lua
     * refuses them at spawn). */
    int64_t cpu_ms, mem_bytes, open_files, output_bytes, processes;
    const char *const *deny_syscalls; /* the policy's syscalls.deny */
    size_t n_deny_syscalls;
    /* Host-side queues (posts and events not yet taken), both backends:
     * bytes as iso_value_footprint counts them, and messages. 0: the
     * defaults (iso_queue_defaults_set). */
    int64_t queue_bytes, queue_values;
} iso_cell_config;

#define ISO_QUEUE_BYTES_DEFAULT ((int64_t)64 << 20)
#define ISO_QUEUE_VALUES_DEFAULT ((int64_t)65536)
/* The queue limits of cells spawned from now on without their own (both
 * > 0; ISO_INVALID_ARGUMENT otherwise). Host thread; never blocks. */
int iso_queue_defaults_set(int64_t bytes, int64_t values, iso_error *err);
void iso_queue_defaults_get(int64_t *bytes, int64_t *values);

typedef struct iso_cell iso_cell;

/* What a cell sends to its host. */
typedef enum iso_msg_type {
    ISO_MSG_RESULT,  /* value = result, or error set */
    ISO_MSG_POST,    /* value = the posted value */
    ISO_MSG_LOG,     /* value = [level, message, fields] */
    ISO_MSG_METRIC,  /* value = [name, value, tags] */
    ISO_MSG_REQUEST, /* value = [capability, action, payload]; answer it */
    ISO_MSG_DENIAL,  /* value = [capability, action, target, rule, layer,
                        source]; source ("cell", "kernel" or "host": who
                        vouches for it) is set by the host alone */
    ISO_MSG_WARNING, /* value = the message (host-made: a missing layer) */
} iso_msg_type;

typedef struct iso_msg iso_msg;
struct iso_msg {
    iso_msg *next;
    iso_msg_type type;
    double time; /* CLOCK_REALTIME seconds */
    iso_value value;
    iso_error error; /* RESULT only */
    int64_t charged; /* bytes counted against its cell's queue limit */
};

void iso_msg_destroy(iso_msg *m);

typedef struct iso_cell_stats {
    int64_t cpu_ms;
    int64_t mem_bytes; /* sub-interpreter: its Python heap; process: RSS */
    uint64_t calls, posts, denials;
    int64_t uptime_ms;
    const char *state; /* "idle", "running", "closed", "dead" */
} iso_cell_stats;

/* True when name is a valid cell name (not whether it is free). */
bool iso_cell_name_valid(const char *name);
/* Start a cell and wait until it is ready. Blocks for the interpreter's
 * creation (milliseconds). *out is owned by the caller: iso_cell_close,
 * then iso_cell_release. */
int iso_cell_spawn(const iso_cell_config *cfg, iso_cell **out, iso_error *err);
const char *iso_cell_name(const iso_cell *c);
iso_backend iso_cell_backend(const iso_cell *c);

/* Start running source in the cell's __main__. Does not block; the result
 * comes as an ISO_MSG_RESULT from iso_cell_wait. */
int iso_cell_exec(iso_cell *c, const char *src, size_t len, iso_error *err);
/* Start calling target ("module.func" or a global name) with args (an
 * ISO_LIST, moved into the cell). Does not block. */
int iso_cell_call(iso_cell *c, const char *target, iso_value *args,
                  iso_error *err);

typedef enum iso_wait {
    ISO_WAIT_RESULT, /* the running request's result */
    ISO_WAIT_POST,   /* the next posted value */
} iso_wait;

/* Block until the cell sends what `what` asks for, or a broker REQUEST that
 * the caller must answer with iso_cell_reply. Logs and metrics are queued
 * for iso_cell_next_event; posts seen while waiting for a result are queued
 * for ISO_WAIT_POST. timeout_s < 0 waits forever; ISO_WAIT_RESULT also
 * enforces the cell's wall_ms and cpu_ms. *out is owned by the caller.
 * Returns 0, 1 when timeout_s passed with nothing (err says ISO_TIMEOUT),
 * or -1 with err (a limit, a dead cell, ...). ISO_WAIT_POST on a cell that
 * ended (closed, killed, crashed) still hands over, in order, what it
 * posted before, and only then fails. */
int iso_cell_wait(iso_cell *c, iso_wait what, double timeout_s, iso_msg **out,
                  iso_error *err);
/* Block until at least one of the n cells needs its host: waiting for its
 * result would hand over something (the result, a broker request, an
 * event, a death) or enforce wall_ms / cpu_ms; or until timeout_s passes
 * (< 0: forever). A cell not running a request always needs it. Sets
 * ready[i] for each such cell and returns how many (0: the timeout).
 * Collects nothing itself: call iso_cell_wait on the ready cells. */
size_t iso_cell_wait_any(iso_cell *const *cells, size_t n, double timeout_s,
                         bool *ready);
/* Never blocks: takes in what the n cells sent and sets ready[i] as
 * iso_cell_wait_any would; returns how many are ready. *wake is lowered
 * (it may start at -1: none) to when one that is not must be looked at
 * again for its limits. */
size_t iso_cell_poll_any(iso_cell *const *cells, size_t n, bool *ready,
                         double *wake);
/* Is a request submitted whose result was not taken yet? */
bool iso_cell_busy(const iso_cell *c);
/* Cancel the running request, as if a limit had fired now: it is
 * interrupted (a process cell's worker is put down), and waiting for its
 * result then fails with ISO_CANCELLED. False when nothing runs or it was
 * stopped already. Never blocks. */
bool iso_cell_cancel(iso_cell *c);

/* ---- the event-loop fd (loop.c), host thread unless said ---------------- */

/* One fd for the whole host that is readable whenever something may need
 * the host: a cell thread rang the doorbell, a process cell in the watched
 * set sent a frame, the limit timer is due, or iso_loop_kick was called.
 * Made on first use (-1 with err when it cannot be); never closed. */
int iso_loop_fd(iso_error *err);
/* Any thread: make the loop fd readable. No-op before iso_loop_fd. */
void iso_loop_kick(void);
/* Take everything that made the fd readable (call before looking at the
 * cells: what comes after makes it readable again). */
void iso_loop_drain(void);
/* Watch the sockets of these cells (process cells; others ring the
 * doorbell) until they next fire, and arm the timer for wake (iso_now()
 * seconds; < 0: disarm). */
void iso_loop_arm(iso_cell *const *cells, size_t n, double wake);

/* Answer the pending REQUEST: value (moved) on success, or error text. */
int iso_cell_reply(iso_cell *c, iso_value *value, const char *error);
/* Pop the next queued log/metric message, NULL when none. Never blocks. */
iso_msg *iso_cell_next_event(iso_cell *c);

void iso_cell_stats_get(iso_cell *c, iso_cell_stats *st);
bool iso_cell_is_open(const iso_cell *c);
/* Keep `target` sub-interpreter cells warm (created ahead, no guest code
 * run, no rules yet) for spawn to take; 0 drains the pool. A background
 * thread refills it. Blocks only to close what is drained. */
int iso_pool_configure(size_t target, iso_error *err);
#define ISO_WARM_POOL_MAX 256 /* the most warm_pool may keep */
void iso_pool_stats(size_t *ready, size_t *target, size_t *taken);
/* Keep `target` process-cell workers forked ahead (default 2; 0: none),
 * each past every confinement step no policy decides, waiting for its
 * policy. The pool fills once a process cell has been spawned (that first
 * spawn starts the zygote), from a background thread, and empties when
 * the host's cells end (iso_shutdown). ISO_INVALID_ARGUMENT above
 * ISO_PROC_POOL_MAX. Blocks only to put down what it sheds. */
int iso_proc_pool_configure(size_t target, iso_error *err);
#define ISO_PROC_POOL_MAX 64
#define ISO_PROC_POOL_DEFAULT 2
void iso_proc_pool_stats(size_t *ready, size_t *target, size_t *taken);

/* One phase of a cell's spawn: when it ended, in seconds after spawn
 * began (negative: done ahead, by a pool worker). */
#define ISO_PHASES_MAX 40
typedef struct iso_phase {
    char name[32];
    double at;
} iso_phase;
/* Copy up to max of c's spawn phases into out, in the order they ended;
 * returns how many there are. A debugging aid (bench/cells.lua): the
 * names are the backends' own and may change. */
size_t iso_cell_phases(iso_cell *c, iso_phase *out, size_t max);
/* The floor under a sub-interpreter cell's spawn + close (a benchmark
 * aid): n times, create and end a bare interpreter with the cells'
 * configuration, on a thread of its own; seconds[i] is each pair. Blocks
 * for all of it. 0, or -1 with err. */
int iso_bench_interp_floor(size_t n, double *seconds, iso_error *err);

/* Rollout mode: "dev" (default), "hardened", "compat" (the minimal
 * seccomp list) or "learn" (what the rules would deny is allowed and
 * recorded). ISO_INVALID_ARGUMENT for another name, and for "learn" while
 * the host is hardened. */
int iso_mode_set(const char *name, iso_error *err);
const char *iso_mode_name(void);
/* The i-th mode's name (0: "dev"), NULL past the last: the one list. */
const char *iso_mode_name_at(int i);
/* Whether a cell that lacks a layer is refused: the one place that says
 * which mode does that. */
bool iso_mode_hardened(void);
/* Whether cells started now record what their rules would deny, and run
 * it: the Python guard allows, Landlock is not applied, the BPF guard and
 * seccomp's deny list log. */
bool iso_mode_learning(void);
/* Move this process into its own cgroup under the luaisolate cgroup so
 * each sub-interpreter cell thread can get a threaded cgroup of its own
 * (idempotent; undone at exit). ISO_NOT_IMPLEMENTED without a writable
 * cgroup v2. */
int iso_thread_cgroups_enable(iso_error *err);
/* What the kernel layers can do on this host. */
typedef struct iso_kernel_info {
    int landlock_abi; /* 0: no Landlock */
    bool seccomp;
    bool bpf;          /* the BPF network guard is loaded and attached */
    char bpf_why[256]; /* why not, when !bpf */
    bool bpf_looked;   /* bpf says what a load would find, not one done */
} iso_kernel_info;
/* Probed once; loads and attaches the BPF network guard to know. */
void iso_kernel_info_get(iso_kernel_info *ki);
/* The same without side effects (no BPF program loaded, no cgroup made):
 * the guard's cached outcome when this process opened it, else a look at
 * what it needs (bpf_looked). For explaining a policy. */
void iso_kernel_info_look(iso_kernel_info *ki);
bool iso_thread_cgroups_enabled(void);

/* One map per enforcement layer: {layer=, state="active"|"missing"|
 * "not needed", scope="cell thread"|"process", detail=}. Owned by c. */
const iso_value *iso_cell_confinement(iso_cell *c);
/* Hot reload: the cell decides with plan from now on where a layer can
 * change in a running cell (BPF: atomic flip; a sub-interpreter cell's
 * python-guard: swapped). report: {layer = "applied" | "restart needed" |
 * "not guarded" | "unchanged"}. On error nothing changed. */
int iso_cell_reload(iso_cell *c, iso_plan *plan, iso_value *report,
                    iso_error *err);
/* Append such a row to list (an ISO_LIST). -1 on OOM. */
int iso_confinement_add(iso_value *list, const char *layer, const char *state,
                        const char *scope, const char *detail);
/* Graceful stop: ends the interpreter and joins its thread. Idempotent. A
 * cell that does not stop within a grace period is abandoned. Blocks. */
void iso_cell_close(iso_cell *c);
/* Forced stop: interrupts running guest code, abandons what will not stop.
 * Idempotent; returns within a bounded grace period. */
void iso_cell_kill(iso_cell *c);
/* Drop the caller's reference (after close or kill). */
void iso_cell_release(iso_cell *c);

/*
 * The host's end (lifecycle.c). Guest code never outlives its host:
 * iso_shutdown kills every process cell and what its guest started
 * (cgroup.kill on the host's cells cgroup), stops the zygote and removes
 * the host's cgroup directories of process cells; with leave_host (at the
 * very end only: thread cgroups are off afterwards) also moves the host
 * out of its own host-<pid> cgroup and removes it. Process-wide kernel
 * state only, no cell struct: callable from any thread (a host's signal
 * thread), more than once; the next process cell starts afresh. Blocks up
 * to ~200 ms per cgroup still being emptied. The first process cell
 * registers it with atexit. Sub-interpreter cells are threads of the host:
 * they end with it.
 */
void iso_shutdown(bool leave_host);
/* Kill and remove what dead hosts left (cgroup_stale.c); fn is told each
 * directory removed. How many, or -1 with err. */
int iso_clean_stale(void (*fn)(const char *path, void *ud), void *ud,
                    iso_error *err);

#endif
