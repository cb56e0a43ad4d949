/*
 * Python-level guards of the cell's fs and net rules, and the refusal of
 * process creation. A guardrail, not a boundary (see README): a guest that
 * escapes Python can bypass all of it.
 *
 * Two mechanisms, both deciding with the cell's plan (plan.c):
 *  - an audit hook (PEP 578), process-wide, that finds the cell of the
 *    current interpreter and vets every audited open, directory listing,
 *    file-system change, connect/sendto and process creation;
 *  - replacements for open/io.open/os.open/os.stat/os.lstat: paths are
 *    resolved through symlinks before deciding, and opens then go through
 *    openat2(RESOLVE_NO_SYMLINKS) on the resolved path, so swapping a path
 *    component for a symlink between the check and the open fails.
 *
 * Longer than 600 lines because the fs, net and process guards share the audit hook,
 * the capsule the wrappers find their guest through, and one installation.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "guest.h"
#include "msg.h"

#define CELL_KEY "isolate.cell"

/* ---- which cell is running --------------------------------------------- */

static iso_guest *current_guest(void)
{
    PyObject *d = PyInterpreterState_GetDict(PyInterpreterState_Get());
    PyObject *cap = d ? PyDict_GetItemString(d, CELL_KEY) : NULL;
    return cap ? PyCapsule_GetPointer(cap, CELL_KEY) : NULL;
}

/* ---- denials ----------------------------------------------------------- */

/* Where the guest was: the innermost frame of guest code ("<name>" files,
 * not the frozen stdlib's), else the innermost frame, as "file:line".
 * Guest-chosen text (compile() names its file): the host treats it so. An
 * exception already pending is kept. */
static void guest_where(char *out, size_t n)
{
    snprintf(out, n, "?");
    PyObject *pending = iso_py_take_exception();
    PyFrameObject *f = PyEval_GetFrame(); /* borrowed */
    bool first = true;
    for (PyFrameObject *it = f; it;) {
        PyCodeObject *code = PyFrame_GetCode(it);
        const char *file = PyUnicode_AsUTF8(code->co_filename);
        bool guest = file && file[0] == '<' && strncmp(file, "<frozen ", 8);
        if (file && (guest || first))
            snprintf(out, n, "%s:%d", file, PyFrame_GetLineNumber(it));
        Py_DECREF(code);
        PyFrameObject *back = PyFrame_GetBack(it); /* new reference */
        if (it != f)
            Py_DECREF(it);
        it = guest ? (Py_XDECREF(back), NULL) : back;
        first = false;
    }
    PyErr_Clear(); /* a file name that is not UTF-8 */
    if (pending)
        iso_py_restore_exception(pending);
}

/* In learn mode a denial carries two more items: an empty source (the host
 * fills it: iso_denial_mark) and where the guest was. */
void iso_py_emit_denial(iso_guest *g, const char *capability,
                        const char *action, const char *target,
                        const char *rule)
{
    iso_msg *m = g->quiet ? NULL : iso_msg_new(ISO_MSG_DENIAL);
    if (!m)
        return;
    char where[256];
    if (g->learn)
        guest_where(where, sizeof where);
    const char *items[] = {capability, action,        target, rule,
                           "python-guard", "", where};
    size_t count = g->learn ? 7 : 5;
    iso_value_set_list(&m->value);
    for (size_t i = 0; i < count; i++) {
        iso_value *slot = iso_list_append(&m->value);
        if (!slot ||
            iso_value_set_string(slot, ISO_STR, items[i], strlen(items[i]))) {
            iso_msg_destroy(m);
            return;
        }
    }
    g->sink.send(g->sink.ctx, m); /* -1: the host holds too many already */
}

/* Raise PermissionError naming what would allow it, with the errno the
 * kernel layer gives for the same refusal: EACCES for files (Landlock),
 * EPERM for sockets and processes (the BPF guard, seccomp). Returns -1.
 * Learn mode: the denial is recorded and the action allowed (0). */
static int deny(iso_guest *g, const char *capability, const char *action,
                const char *target, const char *rule, const char *advice)
{
    iso_py_emit_denial(g, capability, action, target, rule);
    if (g->learn)
        return 0;
    return iso_py_permission_error(strcmp(capability, "fs") == 0 ? EACCES
                                                                 : EPERM,
                                   "%s %s of '%s' denied by %s: %s", capability,
                                   action, target, rule, advice);
}

/* deny, when a rule would allow it: fix is that rule (policy language),
 * named in the message ("add <fix><note>") and kept on the exception as
 * isolate_fix, which the host reports as err.suggestion. */
static int deny_fix(iso_guest *g, const char *capability, const char *action,
                    const char *target, const char *rule, const char *fix,
                    const char *note)
{
    char advice[ISO_PATH_MAX + 320];
    snprintf(advice, sizeof advice, "add %s%s", fix, note);
    if (deny(g, capability, action, target, rule, advice) == 0)
        return 0; /* learn mode: recorded and allowed */
    PyObject *exc = iso_py_take_exception();
    PyObject *s = exc ? PyUnicode_FromString(fix) : NULL;
    if (!s || PyObject_SetAttrString(exc, "isolate_fix", s) < 0)
        PyErr_Clear(); /* the message still names it */
    Py_XDECREF(s);
    if (exc)
        iso_py_restore_exception(exc);
    return -1;
}

/* ---- paths ------------------------------------------------------------- */

/* A path argument as the guard decides on it. */
typedef struct resolved {
    char path[ISO_PATH_MAX]; /* absolute, normalised, symlinks resolved */
    bool dir_only; /* ends in "/", "/." or "/..": the kernel walks into it
                      as a directory (ENOTDIR for a file, EISDIR to create) */
    int doomed;    /* following it, the walk fails whatever the operation
                      (ENOENT, ENOTDIR: a component missing or not a
                      directory before the last); 0 when it does not */
} resolved;

/* in made absolute against dir_fd (AT_FDCWD: the cwd), failing with the
 * errno the *at() call would give. The fd is looked up in this thread's
 * own table: a sub-interpreter cell's thread has its own, and
 * /proc/self/fd would show the host's. */
static int absolute(const char *in, int dir_fd, char *out, size_t size)
{
    char base[PATH_MAX], link[64];
    ssize_t n = 0;
    if (in[0] != '/' && dir_fd == AT_FDCWD) {
        n = getcwd(base, sizeof base) ? (ssize_t)strlen(base) : -1;
    } else if (in[0] != '/') {
        snprintf(link, sizeof link, "/proc/thread-self/fd/%d", dir_fd);
        n = dir_fd >= 0 ? readlink(link, base, sizeof base - 1) : -1;
        errno = EBADF; /* not an open fd */
        if (n > 0 && base[0] != '/')
            errno = ENOTDIR, n = -1; /* a socket, a pipe, ... */
    }
    if (n < 0)
        return -1;
    base[n] = '\0';
    if (snprintf(out, size, "%s%s%s", base, n ? "/" : "", in) < (int)size)
        return 0;
    errno = ENAMETOOLONG;
    return -1;
}

/* What becomes of the walk past the longest existing prefix (err: how it
 * failed one component further): nothing but slashes after a non-directory
 * is for the kernel to judge (ENOTDIR, or EISDIR for a create), and so is
 * one plain name that does not exist yet; anything else fails. */
static int tail_fate(const char *tail, int err)
{
    int names = 0;
    bool plain = true;
    for (const char *p = tail; *p;) {
        size_t n = strcspn(p, "/");
        bool dots =
            (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
        names += n > 0;
        plain = plain && !dots;
        p += n + (p[n] == '/');
    }
    return names == 0 || (err == ENOENT && names == 1 && plain) ? 0 : err;
}

/* realpath() of the longest existing prefix of abs, then the rest (which
 * does not exist yet, so holds no symlink) appended lexically. */
static int resolve_existing(const char *abs, resolved *r)
{
    char head[ISO_PATH_MAX], real[PATH_MAX], joined[2 * ISO_PATH_MAX];
    int failed = 0;
    for (size_t cut = strlen(abs);;) {
        snprintf(head, sizeof head, "%.*s", (int)cut, abs);
        if (realpath(cut ? head : "/", real)) {
            r->doomed = tail_fate(abs + cut, failed);
            snprintf(joined, sizeof joined, "%s/%s", real, abs + cut);
            if (iso_path_normalize(joined, r->path, sizeof r->path, NULL) == 0)
                return 0;
            errno = ENAMETOOLONG;
            return -1;
        }
        failed = errno;
        if (cut == 0 || (errno != ENOENT && errno != ENOTDIR))
            return -1;
        while (cut > 0 && abs[--cut] != '/')
            ;
    }
}

/* Resolve what `in` names (relative to dir_fd or the cwd) through symlinks,
 * as the kernel would. With follow = false a final symlink is not
 * followed (unlink, rename, lstat act on the link itself; r->doomed is
 * then left to the kernel's own answer). */
static int resolve(const char *in, int dir_fd, bool follow, resolved *r)
{
    char abs[ISO_PATH_MAX];
    if (absolute(in, dir_fd, abs, sizeof abs))
        return -1;
    const char *name = strrchr(abs, '/') + 1;
    bool plain = *name && strcmp(name, ".") && strcmp(name, "..");
    r->dir_only = !plain;
    r->doomed = 0;
    if (follow || !plain || name == abs + 1)
        return resolve_existing(abs, r);
    char parent[ISO_PATH_MAX];
    snprintf(parent, sizeof parent, "%.*s", (int)(name - 1 - abs), abs);
    if (resolve_existing(parent, r))
        return -1;
    size_t n = strlen(r->path), room = sizeof r->path - n;
    if (snprintf(r->path + n, room, "%s%s", n > 1 ? "/" : "", name) < (int)room)
        return 0;
    errno = ENAMETOOLONG;
    return -1;
}

/* Path argument -> resolved path. 1 when it is an fd (nothing to check). */
static int path_arg(PyObject *arg, int dir_fd, bool follow, resolved *r)
{
    if (arg == Py_None)
        arg = NULL;
    if (arg && PyLong_Check(arg))
        return 1;
    PyObject *bytes = NULL;
    if (arg && !PyUnicode_FSConverter(arg, &bytes))
        return -1;
    const char *p = bytes ? PyBytes_AS_STRING(bytes) : ".";
    int rc = resolve(p, dir_fd, follow, r);
    Py_XDECREF(bytes);
    if (rc)
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, arg);
    return rc;
}

static bool runtime_readable(iso_py_state *p, const char *path)
{
    for (size_t i = 0; i < p->n_roots; i++) {
        size_t n = strlen(p->roots[i]);
        if (strncmp(path, p->roots[i], n) == 0 &&
            (path[n] == '\0' || path[n] == '/'))
            return true;
    }
    return false;
}

/* A directory on the way to the runtime's own files (/usr, /usr/lib). */
static bool runtime_on_the_way(iso_py_state *p, const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < p->n_roots; i++)
        if (n == 1 ||
            (strncmp(p->roots[i], path, n) == 0 && p->roots[i][n] == '/'))
            return true;
    return false;
}

static int check_fs(iso_guest *g, iso_fs_access op, const char *action,
                    const char *path)
{
    int rule;
    const iso_plan *plan = iso_guest_plan(g); /* one plan per decision */
    if (op == ISO_FS_READ && runtime_readable(g->py, path))
        return 0;
    if (iso_plan_check_fs(plan, op, path, &rule))
        return 0;
    const char *verb = op == ISO_FS_READ ? "read" : "write";
    bool meta = strstr(action, "stat") != NULL;
    char what[32];
    snprintf(what, sizeof what, "%s (%s)", verb, action);
    if (rule >= 0)
        return deny(g, "fs", what, path, iso_plan_fs_text(plan, rule),
                    "that deny rule must change first");
    char fix[ISO_PATH_MAX + 32];
    snprintf(fix, sizeof fix, "fs {%s=\"%s\"}", verb, path);
    return deny_fix(g, "fs", what, path, iso_plan_fs_text(plan, rule), fix,
                    meta ? " (for a directory that grants all beneath it; "
                           "stat of a directory on the way to a granted path "
                           "needs no rule)"
                         : "");
}

/* Check op on the path argument; fds pass (they were opened already). */
static int check_path(iso_guest *g, iso_fs_access op, const char *action,
                      PyObject *arg, int dir_fd, bool follow)
{
    resolved r;
    int rc = path_arg(arg, dir_fd, follow, &r);
    if (rc)
        return rc > 0 ? 0 : -1;
    return check_fs(g, op, action, r.path);
}

/* stat/lstat read metadata, not content: the directories on the way to a
 * grant or to the runtime's files may be stat'ed (realpath() walks through
 * them), their listings and files stay as the rules say. */
static int check_stat(iso_guest *g, const char *action, PyObject *arg,
                      int dir_fd, bool follow)
{
    resolved r;
    int rc = path_arg(arg, dir_fd, follow, &r);
    if (rc)
        return rc > 0 ? 0 : -1;
    if (runtime_on_the_way(g->py, r.path) ||
        iso_plan_fs_on_the_way(iso_guest_plan(g), r.path))
        return 0;
    return check_fs(g, ISO_FS_READ, action, r.path);
}

static iso_fs_access flags_access(int flags)
{
    int acc = flags & O_ACCMODE;
    int write = acc != O_RDONLY || (flags & (O_CREAT | O_TRUNC | O_APPEND));
    return acc == O_RDWR ? ISO_FS_ALLOW : write ? ISO_FS_WRITE : ISO_FS_READ;
}

static int check_open(iso_guest *g, const char *path, int flags)
{
    iso_fs_access op = flags_access(flags);
    if ((op & ISO_FS_READ) && check_fs(g, ISO_FS_READ, "open", path))
        return -1;
    if ((op & ISO_FS_WRITE) && check_fs(g, ISO_FS_WRITE, "open", path))
        return -1;
    return 0;
}

/* dir_fd as the os functions take it: None (the cwd) or an integer. */
static int dir_fd_arg(PyObject *o, int *fd)
{
    *fd = AT_FDCWD;
    if (o == Py_None)
        return 0;
    if (PyFloat_Check(o) || !PyIndex_Check(o)) {
        PyErr_Format(PyExc_TypeError,
                     "argument should be integer or None, not %.200s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    PyObject *n = PyNumber_Index(o);
    int overflow = 0;
    long v = n ? PyLong_AsLongAndOverflow(n, &overflow) : -1;
    Py_XDECREF(n);
    if (!n)
        return -1;
    if (overflow || v > INT_MAX || v < INT_MIN) {
        PyErr_SetString(PyExc_OverflowError, "fd is out of range");
        return -1;
    }
    *fd = (int)v;
    return 0;
}

/* ---- the race-free open ------------------------------------------------ */

/* Open the checked, fully resolved path; a symlink anywhere in it (one
 * swapped in since the check) makes this fail instead of following it.
 * Mode bits beyond 07777 are dropped, as open(2) drops them (openat2
 * would refuse them: fileinput passes a whole st_mode). */
static PyObject *open_checked(iso_guest *g, PyObject *path_obj, int flags,
                              int mode, int dir_fd)
{
    resolved r;
    if (PyLong_Check(path_obj))
        return PyErr_Format(PyExc_TypeError,
                            "open: path should be string, bytes or "
                            "os.PathLike, not int");
    if (path_arg(path_obj, dir_fd, true, &r) < 0 ||
        check_open(g, r.path, flags))
        return NULL;
    errno = r.doomed;
    if (errno)
        return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_obj);
    char target[ISO_PATH_MAX + 1]; /* a trailing slash keeps its meaning */
    snprintf(target, sizeof target, "%s%s", r.path,
             r.dir_only && strcmp(r.path, "/") ? "/" : "");
    bool creates = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = creates ? (uint64_t)(mode & 07777) : 0,
        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    PyThreadState *ts = PyEval_SaveThread();
    long fd = syscall(SYS_openat2, AT_FDCWD, target, &how, sizeof how);
    int saved = errno; /* taking the GIL back may change errno */
    iso_py_take_gil(ts);
    if (fd >= 0)
        return PyLong_FromLong(fd);
    errno = saved;
    if (errno == ELOOP &&
        deny(g, "fs", "open", r.path, "a symlink swapped in after the check",
             "the path changed while it was being opened"))
        return NULL;
    return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_obj);
}

/* opener(path, flags) for io.open */
static PyObject *guard_opener(PyObject *self, PyObject *args)
{
    PyObject *path;
    int flags;
    if (!PyArg_ParseTuple(args, "Oi:opener", &path, &flags))
        return NULL;
    return open_checked(PyCapsule_GetPointer(self, CELL_KEY), path, flags, 0666,
                        AT_FDCWD);
}

/* os.open(path, flags, mode=0o777, *, dir_fd=None) */
static PyObject *guard_os_open(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "flags", "mode", "dir_fd", NULL};
    PyObject *path, *dir_fd_obj = Py_None;
    int flags, mode = 0777, dir_fd;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oi|i$O:open", kwlist, &path,
                                     &flags, &mode, &dir_fd_obj) ||
        dir_fd_arg(dir_fd_obj, &dir_fd) < 0)
        return NULL;
    return open_checked(PyCapsule_GetPointer(self, CELL_KEY), path, flags, mode,
                        dir_fd);
}

/* Argument 0 of a call, given positionally or by keyword (borrowed). */
static PyObject *first_arg(PyObject *args, PyObject *kw, const char *name)
{
    if (PyTuple_GET_SIZE(args) > 0)
        return PyTuple_GET_ITEM(args, 0);
    return kw ? PyDict_GetItemString(kw, name) : NULL;
}

/* open()/io.open(): the real io.open with our opener, unless the caller
 * brought one (then the audit hook still vets the path). */
static PyObject *guard_io_open(PyObject *self, PyObject *args, PyObject *kw)
{
    iso_guest *g = PyCapsule_GetPointer(self, CELL_KEY);
    iso_py_state *p = g->py;
    PyObject *file = first_arg(args, kw, "file");
    PyObject *opener = kw ? PyDict_GetItemString(kw, "opener") : NULL;
    if ((file && PyLong_Check(file)) || PyTuple_GET_SIZE(args) >= 8 ||
        (opener && opener != Py_None))
        return PyObject_Call(p->real_open, args, kw);
    PyObject *kw2 = kw ? PyDict_Copy(kw) : PyDict_New();
    if (!kw2 || PyDict_SetItemString(kw2, "opener", p->opener) < 0) {
        Py_XDECREF(kw2);
        return NULL;
    }
    PyObject *r = PyObject_Call(p->real_open, args, kw2);
    Py_DECREF(kw2);
    return r;
}

/* os.stat / os.lstat: no audit event exists for them. They take what the
 * real ones take (a path or an fd, dir_fd, follow_symlinks), and the real
 * one is called with the very path, dir_fd and flag that were checked: a
 * path-like object's __fspath__ or an __index__ is asked once. */
static PyObject *guarded_stat(PyObject *self, PyObject *args, PyObject *kw,
                              bool lstat)
{
    static char *kwlist[] = {"path", "dir_fd", "follow_symlinks", NULL};
    static char *lkwlist[] = {"path", "dir_fd", NULL};
    iso_guest *g = PyCapsule_GetPointer(self, CELL_KEY);
    iso_py_state *p = g->py;
    PyObject *path, *dir_fd_obj = Py_None;
    int follow = 1, dir_fd;
    if (!PyArg_ParseTupleAndKeywords(
            args, kw, lstat ? "O|$O:lstat" : "O|$Op:stat",
            lstat ? lkwlist : kwlist, &path, &dir_fd_obj, &follow) ||
        dir_fd_arg(dir_fd_obj, &dir_fd) < 0)
        return NULL;
    follow = follow && !lstat;
    PyObject *fspath = PyLong_Check(path) ? Py_NewRef(path) : PyOS_FSPath(path);
    PyObject *fd =
        dir_fd == AT_FDCWD ? Py_NewRef(Py_None) : PyLong_FromLong(dir_fd);
    PyObject *call = fspath && fd ? PyTuple_Pack(1, fspath) : NULL;
    PyObject *kw2 = call ? Py_BuildValue("{s:O}", "dir_fd", fd) : NULL;
    PyObject *r = NULL;
    if (kw2 && !lstat &&
        PyDict_SetItemString(kw2, "follow_symlinks",
                             follow ? Py_True : Py_False) < 0)
        Py_CLEAR(kw2);
    if (kw2 &&
        check_stat(g, lstat ? "lstat" : "stat", fspath, dir_fd, follow) == 0)
        r = PyObject_Call(lstat ? p->real_lstat : p->real_stat, call, kw2);
    Py_XDECREF(fspath), Py_XDECREF(fd), Py_XDECREF(call), Py_XDECREF(kw2);
    return r;
}

static PyObject *guard_stat(PyObject *self, PyObject *args, PyObject *kw)
{
    return guarded_stat(self, args, kw, false);
}

static PyObject *guard_lstat(PyObject *self, PyObject *args, PyObject *kw)
{
    return guarded_stat(self, args, kw, true);
}
/* ---- network ----------------------------------------------------------- */

/* action "bind" (and "listen") is judged by bind rules, the rest by
 * connect rules; deny rules refuse both. */
static bool is_bind(const char *action)
{
    return strcmp(action, "bind") == 0 || strcmp(action, "listen") == 0;
}

static int check_endpoint(iso_guest *g, const char *action, const iso_addr *a,
                          uint16_t port)
{
    int rule;
    const iso_plan *plan = iso_guest_plan(g); /* one plan per decision */
    if (is_bind(action) ? iso_plan_check_bind(plan, a, port, &rule)
                        : iso_plan_check_net(plan, a, port, &rule))
        return 0;
    char host[INET6_ADDRSTRLEN], target[INET6_ADDRSTRLEN + 16];
    inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->bytes, host, sizeof host);
    snprintf(target, sizeof target, a->family == 4 ? "%s:%u" : "[%s]:%u", host,
             port);
    if (rule >= 0)
        return deny(g, "net", action, target, iso_plan_net_text(plan, rule),
                    "that deny rule must change first");
    char fix[sizeof target + 32];
    snprintf(fix, sizeof fix, "net {%s=\"%s\"}",
             is_bind(action) ? "bind" : "connect", target);
    return deny_fix(g, "net", action, target, iso_plan_net_text(plan, rule),
                    fix, "");
}

static void addr_from_sockaddr(const struct sockaddr *sa, iso_addr *a)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET) {
        a->family = 4;
        memcpy(a->bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else {
        a->family = 6;
        memcpy(a->bytes, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

/* Every address host resolves to must be allowed (a name is resolved here
 * and again by connect: DNS can change in between; BPF sees the truth). */
static int check_host(iso_guest *g, const char *action, int family,
                      const char *host, uint16_t port)
{
    struct addrinfo hints = {.ai_family = family}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = is_bind(action) ? AI_PASSIVE : 0; /* "": every address */
    int e;
    PyThreadState *ts = PyEval_SaveThread();
    e = getaddrinfo(*host ? host : NULL, "0", &hints, &res);
    iso_py_take_gil(ts);
    if (e) {
        PyErr_Format(PyExc_OSError, "cannot resolve '%s': %s", host,
                     gai_strerror(e));
        return -1;
    }
    int rc = 0;
    for (struct addrinfo *ai = res; ai && rc == 0; ai = ai->ai_next) {
        iso_addr a;
        addr_from_sockaddr(ai->ai_addr, &a);
        a = iso_addr_unmap(&a); /* judged and reported as IPv4 */
        rc = check_endpoint(g, action, &a, port);
    }
    freeaddrinfo(res);
    return rc;
}

/* A pathname unix socket: its path resolved as fs rules resolve paths,
 * then the unix: rules decide. Abstract and unnamed addresses are refused
 * (Landlock scopes abstract sockets to the cell anyway). */
static int check_unix(iso_guest *g, const char *action, PyObject *address)
{
    char target[ISO_PATH_MAX + 8];
    resolved r;
    int rule = -1;
    const iso_plan *plan = iso_guest_plan(g);
    PyObject *b = NULL;
    bool named = (PyUnicode_Check(address) || PyBytes_Check(address)) &&
                 PyUnicode_FSConverter(address, &b) &&
                 PyBytes_GET_SIZE(b) > 0 && PyBytes_AS_STRING(b)[0] != '\0';
    Py_XDECREF(b);
    PyErr_Clear();
    if (!named || is_bind(action))
        return deny(g, "net", action, "a unix socket address", "default deny",
                    is_bind(action)
                        ? "cells cannot bind or listen on unix sockets"
                        : "cells reach only pathname unix sockets a net "
                          "{connect=\"unix:/path\"} rule names");
    if (path_arg(address, AT_FDCWD, true, &r) < 0)
        return -1;
    if (iso_plan_check_unix(plan, r.path, &rule))
        return 0;
    snprintf(target, sizeof target, "unix:%s", r.path);
    char text[sizeof target + 40];
    snprintf(text, sizeof text,
             rule < 0 ? "net {connect=\"%s\"}"
                      : "that deny rule must change first (%s)",
             target);
    return rule < 0 ? deny_fix(g, "net", action, target,
                               iso_plan_net_text(plan, rule), text, "")
                    : deny(g, "net", action, target,
                           iso_plan_net_text(plan, rule), text);
}

static long family_of(PyObject *sock)
{
    PyObject *fam = PyObject_GetAttrString(sock, "family");
    long family = fam ? PyLong_AsLong(fam) : -1;
    Py_XDECREF(fam);
    PyErr_Clear();
    return family;
}

/* socket.connect / sendto / sendmsg / bind: (sock, address) */
static int guard_socket(iso_guest *g, const char *event, PyObject *args)
{
    const char *action = strchr(event, '.') + 1;
    PyObject *sock = PyTuple_GetItem(args, 0);
    PyObject *address = PyTuple_GetItem(args, 1);
    if (!sock || !address)
        return -1;
    if (address == Py_None) /* sendmsg on a connected socket */
        return 0;
    long family = family_of(sock);
    if (family == AF_UNIX)
        return check_unix(g, action, address);
    /* the runtime's own name resolution binds NETLINK_ROUTE sockets */
    if (family == AF_NETLINK && is_bind(action))
        return 0;
    const char *host;
    int port;
    if ((family != AF_INET && family != AF_INET6) ||
        !PyArg_ParseTuple(address, "si|II", &host, &port, &(unsigned){0},
                          &(unsigned){0})) {
        PyErr_Clear();
        return deny(g, "net", action, "a non-IP socket address", "default deny",
                    "cells may only use IPv4, IPv6 and allowed unix sockets");
    }
    return check_host(g, action, family == AF_INET ? AF_INET : AF_INET6, host,
                      (uint16_t)port);
}

/* listen() has no audit event, and on an unbound socket it binds every
 * address on an ephemeral port without passing bind(): the wrapper refuses
 * that, and re-judges a bound socket's address by the bind rules (the
 * kernel's answer, for a guest that calls _socket directly: seccomp
 * refuses listen() unless the policy has a bind rule). */
static int check_listen(iso_guest *g, PyObject *sock)
{
    long family = family_of(sock);
    if (family != AF_INET && family != AF_INET6)
        return deny(g, "net", "listen", "a non-IP socket", "default deny",
                    "cells listen only on IP sockets a net {bind=...} rule "
                    "allows");
    PyObject *name = PyObject_CallMethod(sock, "getsockname", NULL);
    const char *host = NULL;
    int port = 0;
    if (!name || !PyArg_ParseTuple(name, "si|II", &host, &port, &(unsigned){0},
                                   &(unsigned){0})) {
        Py_XDECREF(name);
        return -1;
    }
    int rc = 0;
    if (port == 0)
        rc = deny(g, "net", "listen", "an unbound socket",
                  iso_plan_net_text(iso_guest_plan(g), -1),
                  "bind it first to an address a net {bind=\"host:port\"} "
                  "rule allows: listen() on an unbound socket binds every "
                  "address");
    else
        rc = check_host(g, "listen", family == AF_INET ? AF_INET : AF_INET6,
                        host, (uint16_t)port);
    Py_DECREF(name);
    return rc;
}

static PyObject *guard_listen(PyObject *self, PyObject *args)
{
    iso_guest *g = PyCapsule_GetPointer(self, CELL_KEY);
    PyObject *sock = PyTuple_Size(args) > 0 ? PyTuple_GetItem(args, 0) : NULL;
    if (!sock || check_listen(g, sock) < 0)
        return NULL;
    return PyObject_Call(((iso_py_state *)g->py)->real_listen, args, NULL);
}

/* ---- the audit hook ---------------------------------------------------- */

/* What the guest tried to run: the first argument, when it has one. Learn
 * mode records it and refuses it still: no rule grants a process. */
static int refuse_exec(iso_guest *g, const char *event, PyObject *args)
{
    PyObject *first = PyTuple_Size(args) > 0 ? PyTuple_GetItem(args, 0) : NULL;
    PyObject *text =
        !first ? NULL
        : PyBytes_Check(first)
            ? PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(first),
                                               PyBytes_GET_SIZE(first))
            : PyObject_Str(first);
    const char *target = text ? PyUnicode_AsUTF8(text) : NULL;
    PyErr_Clear();
    iso_py_emit_denial(g, "exec", event, target ? target : event,
                       "default deny");
    iso_py_permission_error(EPERM, "exec %s of '%s' denied by default deny: "
                                   "cells cannot run programs or create "
                                   "processes",
                            event, target ? target : event);
    Py_XDECREF(text);
    return -1;
}

/* Events with path arguments: which argument, which access, whether the
 * last component is followed, and where the dir_fd argument is (-1: none). */
typedef struct fs_event {
    const char *name;
    int arg;
    iso_fs_access op;
    bool follow;
    int dir_fd_arg;
} fs_event;

static const fs_event fs_events[] = {
    {"os.listdir", 0, ISO_FS_READ, true, -1},
    {"os.scandir", 0, ISO_FS_READ, true, -1},
    {"os.chdir", 0, ISO_FS_READ, true, -1},
    {"os.mkdir", 0, ISO_FS_WRITE, false, 2},
    {"os.rmdir", 0, ISO_FS_WRITE, false, 1},
    {"os.remove", 0, ISO_FS_WRITE, false, 1},
    {"os.truncate", 0, ISO_FS_WRITE, true, -1},
    {"os.chmod", 0, ISO_FS_WRITE, true, 2},
    {"os.chown", 0, ISO_FS_WRITE, true, 3},
    {"os.utime", 0, ISO_FS_WRITE, true, 3},
    {"os.rename", 0, ISO_FS_WRITE, false, 2},
    {"os.rename", 1, ISO_FS_WRITE, false, 3},
    {"os.link", 0, ISO_FS_READ, true, 2},
    {"os.link", 1, ISO_FS_WRITE, false, 3},
    {"os.symlink", 1, ISO_FS_WRITE, false, 2},
};

static const char *const exec_events[] = {"os.system",
                                          "os.exec",
                                          "os.fork",
                                          "os.forkpty",
                                          "os.spawn",
                                          "os.posix_spawn",
                                          "subprocess.Popen",
                                          "os.startfile",
                                          "os.kill",
                                          "os.killpg",
                                          NULL};

/* The events' dir_fd: -1 stands for none (the cwd). */
static int dir_fd_of(PyObject *args, int idx)
{
    PyObject *v = idx >= 0 ? PyTuple_GetItem(args, idx) : NULL;
    long fd = v && PyLong_Check(v) ? PyLong_AsLong(v) : -1;
    PyErr_Clear();
    return fd == -1 ? AT_FDCWD : (int)fd;
}

static int audit_fs(iso_guest *g, const char *event, PyObject *args)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof fs_events / sizeof *fs_events;
         i++) {
        const fs_event *e = &fs_events[i];
        if (strcmp(event, e->name) != 0)
            continue;
        PyObject *arg = PyTuple_GetItem(args, e->arg);
        if (!arg)
            return -1;
        rc = check_path(g, e->op, event + 3, arg,
                        dir_fd_of(args, e->dir_fd_arg), e->follow);
    }
    return rc;
}

/* "open": (path, mode, flags) from io.open, os.open and io.open_code. */
static int audit_open(iso_guest *g, PyObject *args)
{
    PyObject *path = PyTuple_GetItem(args, 0);
    PyObject *flags = PyTuple_GetItem(args, 2);
    if (!path || !flags)
        return -1;
    resolved r;
    int rc = path_arg(path, AT_FDCWD, true, &r);
    if (rc)
        return rc > 0 ? 0 : -1;
    return check_open(g, r.path, (int)PyLong_AsLong(flags));
}

static int audit_hook(const char *event, PyObject *args, void *unused)
{
    (void)unused;
    if (event[0] != 'o' && event[0] != 's' && event[0] != 'c' &&
        event[0] != 'm')
        return 0; /* the fast way out for exec, import, ... */
    iso_guest *g = current_guest();
    if (!g)
        return 0;
    if (event[0] == 'c' || event[0] == 'm') /* code creation: py_guest.c */
        return iso_py_guest_audit(g, event, args);
    if (strcmp(event, "open") == 0)
        return audit_open(g, args);
    if (strncmp(event, "socket.", 7) == 0)
        return strcmp(event, "socket.connect") == 0 ||
                       strcmp(event, "socket.sendto") == 0 ||
                       strcmp(event, "socket.sendmsg") == 0 ||
                       strcmp(event, "socket.bind") == 0
                   ? guard_socket(g, event, args)
                   : 0;
    for (int i = 0; exec_events[i]; i++)
        if (strcmp(event, exec_events[i]) == 0)
            return refuse_exec(g, event, args);
    return audit_fs(g, event, args);
}

int iso_py_guard_hook_install(void)
{
    return PySys_AddAuditHook(audit_hook, NULL);
}

/* os.fork, os.forkpty, os.execv, os.execve: own-GIL interpreters refuse
 * them with RuntimeError before any audit event; refuse them the same way
 * in every mode, with the denial the guest and the host expect. */
static PyObject *guard_process(PyObject *self, PyObject *args)
{
    iso_guest *g = PyCapsule_GetPointer(self, CELL_KEY);
    refuse_exec(g, "os.fork/os.exec", args);
    return NULL;
}

/* ---- installation into a cell ------------------------------------------ */

static PyMethodDef guard_methods[] = {
    {"open", (PyCFunction)(void (*)(void))guard_io_open,
     METH_VARARGS | METH_KEYWORDS, "open() vetted by the cell's fs rules"},
    {"os_open", (PyCFunction)(void (*)(void))guard_os_open,
     METH_VARARGS | METH_KEYWORDS, "os.open() vetted by the cell's fs rules"},
    {"stat", (PyCFunction)(void (*)(void))guard_stat,
     METH_VARARGS | METH_KEYWORDS, "os.stat() vetted by the cell's fs rules"},
    {"lstat", (PyCFunction)(void (*)(void))guard_lstat,
     METH_VARARGS | METH_KEYWORDS, "os.lstat() vetted by the cell's fs rules"},
    {"opener", guard_opener, METH_VARARGS, "the cell's race-free opener"},
    {"process", guard_process, METH_VARARGS, "refused in cells"},
    {"listen", guard_listen, METH_VARARGS, "listen() vetted by bind rules"},
    {NULL, NULL, 0, NULL},
};

static PyObject *guard_fn(PyObject *self, const char *name)
{
    for (PyMethodDef *d = guard_methods; d->ml_name; d++)
        if (strcmp(d->ml_name, name) == 0)
            return PyCFunction_New(d, self);
    return NULL;
}

/* module.attr = fn, remembering the original in *real. */
static int replace(PyObject *module, const char *attr, PyObject *fn,
                   PyObject **real)
{
    if (real && !(*real = PyObject_GetAttrString(module, attr)))
        return -1;
    return fn ? PyObject_SetAttrString(module, attr, fn) : -1;
}

static int replace_process_functions(PyObject *os, PyObject *self)
{
    static const char *const names[] = {"fork", "forkpty", "execv", "execve",
                                        NULL};
    PyObject *fn = guard_fn(self, "process");
    int rc = fn ? 0 : -1;
    for (int i = 0; rc == 0 && names[i]; i++)
        if (PyObject_HasAttrString(os, names[i]))
            rc = PyObject_SetAttrString(os, names[i], fn);
    Py_XDECREF(fn);
    return rc;
}

static int install_wrappers(iso_py_state *p, PyObject *self)
{
    PyObject *io = iso_py_import("io");        /* imported at start-up anyway */
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    PyObject *open = guard_fn(self, "open");
    p->opener = guard_fn(self, "opener");
    int rc = io && p->opener ? 0 : -1;
    if (rc == 0)
        rc = replace(io, "open", open, &p->real_open) ||
             PyDict_SetItemString(builtins, "open", open);
    Py_XDECREF(io), Py_XDECREF(open);
    return rc ? -1 : 0;
}

/* Importing os costs a millisecond per interpreter, so its functions are
 * wrapped when something first imports it (every import statement passes
 * the import guard, which calls this), not at start-up. */
/* Still running its own body (its imports come through the guard too). */
static bool initializing(PyObject *module)
{
    PyObject *spec = PyObject_GetAttrString(module, "__spec__");
    PyObject *flag =
        spec ? PyObject_GetAttrString(spec, "_initializing") : NULL;
    bool busy = flag && PyObject_IsTrue(flag) == 1;
    Py_XDECREF(spec), Py_XDECREF(flag);
    PyErr_Clear();
    return busy;
}

/* socket.socket (a Python class) gets a listen method that binds like a
 * function (an instance method around the C function). */
static int patch_socket(iso_guest *g)
{
    iso_py_state *p = g->py;
    PyObject *mods = PyImport_GetModuleDict();
    PyObject *sm =
        p->socket_patched ? NULL : PyDict_GetItemString(mods, "socket");
    PyObject *raw = sm ? PyDict_GetItemString(mods, "_socket") : NULL;
    if (!sm || !raw || initializing(sm))
        return 0;
    PyObject *cls = PyObject_GetAttrString(sm, "socket");
    PyObject *rawcls = PyObject_GetAttrString(raw, "socket");
    PyObject *self = PyCapsule_New(g, CELL_KEY, NULL);
    PyObject *fn = self ? guard_fn(self, "listen") : NULL;
    PyObject *meth = fn ? PyInstanceMethod_New(fn) : NULL;
    if (cls && rawcls && meth && !p->real_listen)
        p->real_listen = PyObject_GetAttrString(rawcls, "listen");
    int rc = p->real_listen && meth
                 ? PyObject_SetAttrString(cls, "listen", meth)
                 : -1;
    Py_XDECREF(cls), Py_XDECREF(rawcls), Py_XDECREF(self), Py_XDECREF(fn);
    Py_XDECREF(meth);
    p->socket_patched = rc == 0;
    return rc ? -1 : 0;
}

/* os.supports_dir_fd, supports_fd, supports_follow_symlinks and
 * supports_effective_ids hold functions: the wrapper takes the real one's
 * place wherever it had one, since it takes the same forms (shutil and
 * os.fwalk decide by these sets). */
static int swap_in_sets(PyObject *os, PyObject *real, PyObject *wrapper)
{
    static const char *const sets[] = {"supports_dir_fd", "supports_fd",
                                       "supports_follow_symlinks",
                                       "supports_effective_ids", NULL};
    int rc = 0;
    for (int i = 0; rc == 0 && sets[i]; i++) {
        PyObject *set = PyObject_GetAttrString(os, sets[i]);
        int in = set && PySet_Check(set) ? PySet_Contains(set, real) : 0;
        PyErr_Clear(); /* a set this platform lacks */
        if (in == 1)
            rc = PySet_Discard(set, real) < 0 || PySet_Add(set, wrapper) < 0
                     ? -1
                     : 0;
        Py_XDECREF(set);
    }
    return rc;
}

int iso_py_guard_patch_os(iso_guest *g)
{
    if (patch_socket(g) < 0)
        return -1;
    iso_py_state *p = g->py;
    PyObject *os = p->os_patched
                       ? NULL
                       : PyDict_GetItemString(PyImport_GetModuleDict(),
                                              "os"); /* borrowed */
    if (!os || initializing(os))
        return 0;
    PyObject *self = PyCapsule_New(g, CELL_KEY, NULL);
    PyObject *os_open = self ? guard_fn(self, "os_open") : NULL;
    PyObject *stat = self ? guard_fn(self, "stat") : NULL;
    PyObject *lstat = self ? guard_fn(self, "lstat") : NULL;
    PyObject *real_open = NULL;
    int rc = os_open && stat && lstat ? 0 : -1;
    if (rc == 0)
        rc = replace(os, "open", os_open, &real_open) ||
             replace(os, "stat", stat, &p->real_stat) ||
             replace(os, "lstat", lstat, &p->real_lstat) ||
             swap_in_sets(os, real_open, os_open) ||
             swap_in_sets(os, p->real_stat, stat) ||
             swap_in_sets(os, p->real_lstat, lstat) ||
             replace_process_functions(os, self);
    Py_XDECREF(self), Py_XDECREF(os_open), Py_XDECREF(stat);
    Py_XDECREF(lstat), Py_XDECREF(real_open);
    p->os_patched = rc == 0;
    return rc ? -1 : 0;
}

/* What the interpreter itself must read: every sys.path entry. */
static int collect_roots(iso_py_state *p)
{
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    Py_ssize_t n = path && PyList_Check(path) ? PyList_GET_SIZE(path) : 0;
    p->roots = calloc((size_t)n + 1, sizeof *p->roots);
    if (!p->roots)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *s = PyUnicode_Check(PyList_GET_ITEM(path, i))
                            ? PyUnicode_AsUTF8(PyList_GET_ITEM(path, i))
                            : NULL;
        resolved r;
        if (s && *s == '/' && resolve(s, AT_FDCWD, true, &r) == 0)
            p->roots[p->n_roots++] = strdup(r.path);
    }
    PyErr_Clear();
    return 0;
}

int iso_py_guard_install(iso_guest *g, iso_error *err)
{
    iso_py_state *p = g->py;
    PyObject *d = PyInterpreterState_GetDict(p->interp);
    PyObject *self = PyCapsule_New(g, CELL_KEY, NULL);
    int rc = d && self ? PyDict_SetItemString(d, CELL_KEY, self) : -1;
    if (rc == 0)
        rc = collect_roots(p) || install_wrappers(p, self) ||
             iso_py_guard_patch_os(g);
    Py_XDECREF(self);
    if (rc) {
        PyErr_Clear();
        return iso_error_set(err, ISO_CRASHED,
                             "cannot install the fs and net "
                             "guards");
    }
    return 0;
}

void iso_py_guard_clear(iso_py_state *p)
{
    Py_CLEAR(p->real_open);
    Py_CLEAR(p->real_stat);
    Py_CLEAR(p->real_lstat);
    Py_CLEAR(p->real_listen);
    Py_CLEAR(p->opener);
    for (size_t i = 0; i < p->n_roots; i++)
        free(p->roots[i]);
    free(p->roots);
    p->roots = NULL;
    p->n_roots = 0;
}
