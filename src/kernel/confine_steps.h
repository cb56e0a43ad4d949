/*
 * The confinement steps, shared by the files that implement them (private
 * to src/kernel/confine*.c; everyone else uses confine.h).
 *
 *   confine.c              the step lists and the calls that run them
 *   confine_fds.c          close_fds; a cell thread's fd_table and noexec
 *   confine_process.c      session, environment, rlimits, cgroup,
 *                          capabilities, no_new_privs
 *   confine_landlock.c     landlock_fs, landlock_net, landlock_scope
 *   confine_seccomp.c      seccomp: the deny lists, the SIGSYS handler, the
 *                          filters of processes, workers and threads
 *   confine_seccomp_net.c  seccomp_net's rules (socket families, listen,
 *                          tty injection, SIGIO)
 *
 * Every step has one signature: it appends its rows to rep and returns 0,
 * or -1 with err when it failed (the caller then stops: a half-confined
 * worker never runs guest code).
 */
#ifndef ISO_CONFINE_STEPS_H
#define ISO_CONFINE_STEPS_H

#include <seccomp.h>

#include "confine.h"

typedef int (*iso_confine_step)(const iso_confine_config *cfg,
                                iso_confine_report *rep, iso_error *err);

/* Append a row to rep (rows past ISO_CONFINE_MAX_STEPS are dropped). */
void iso_step_add(iso_confine_report *rep, const char *layer,
                  iso_step_state state, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A fact of the row added last (key: a static string; past
 * ISO_STEP_FACTS_MAX, dropped): an integer, a string, a port list. */
void iso_step_fact_int(iso_confine_report *rep, const char *key, int64_t v);
void iso_step_fact_str(iso_confine_report *rep, const char *key,
                       const char *v);
void iso_step_fact_ports(iso_confine_report *rep, const char *key,
                         const uint16_t *ports, size_t n);

/* A failed system call: ISO_CRASHED with what failed and the errno text
 * (err->code = errno). Returns -1. */
int iso_confine_fail(iso_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* confine_fds.c */
int iso_step_close_fds(const iso_confine_config *cfg, iso_confine_report *rep,
                       iso_error *err);
int iso_step_fd_table(const iso_confine_config *cfg, iso_confine_report *rep,
                      iso_error *err);
int iso_step_noexec(const iso_confine_config *cfg, iso_confine_report *rep,
                    iso_error *err);

/* confine_process.c */
int iso_step_session(const iso_confine_config *cfg, iso_confine_report *rep,
                     iso_error *err);
int iso_step_environment(const iso_confine_config *cfg, iso_confine_report *rep,
                         iso_error *err);
int iso_step_rlimits(const iso_confine_config *cfg, iso_confine_report *rep,
                     iso_error *err);
int iso_step_no_core(const iso_confine_config *cfg, iso_confine_report *rep,
                     iso_error *err);
int iso_step_cgroup(const iso_confine_config *cfg, iso_confine_report *rep,
                    iso_error *err);
int iso_step_thread_cgroup(const iso_confine_config *cfg,
                           iso_confine_report *rep, iso_error *err);
int iso_step_capabilities(const iso_confine_config *cfg,
                          iso_confine_report *rep, iso_error *err);
int iso_step_no_new_privs(const iso_confine_config *cfg,
                          iso_confine_report *rep, iso_error *err);

/* confine_landlock.c */
int iso_step_landlock(const iso_confine_config *cfg, iso_confine_report *rep,
                      iso_error *err);
int iso_step_thread_landlock(const iso_confine_config *cfg,
                             iso_confine_report *rep, iso_error *err);

/* The Landlock ruleset a cell thread carries from its fd_table step to its
 * landlock step (thread-local; the steps share nothing else). hold: under
 * the cache lock, before the thread takes its own fd table, find (or
 * build and cache) the ruleset for cfg; none without Landlock or memory,
 * the landlock step then builds it as for a process. fd: the held fd, -1
 * if none. forget: drop it without closing (the fd is the host's, the
 * thread never got its own table). close: close it in the thread's table
 * (a step between failed). */
int iso_thread_ruleset_hold(const iso_confine_config *cfg, iso_error *err);
int iso_thread_ruleset_fd(void);
void iso_thread_ruleset_forget(void);
void iso_thread_ruleset_close(void);

/* confine_seccomp.c */
int iso_step_seccomp(const iso_confine_config *cfg, iso_confine_report *rep,
                     iso_error *err);

/* confine_seccomp_net.c: seccomp_net's EPERM rules for the socket calls
 * `calls` (ISO_SECCOMP_NET_*) allows, into ctx. 0, or libseccomp's
 * negative errno. */
int iso_seccomp_net_rules(scmp_filter_ctx ctx, unsigned calls);

#endif
