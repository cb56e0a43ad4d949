/*
 * Confinement of a process cell's worker or a sub-interpreter cell's
 * thread: the step lists and the calls that run them (see confine.h for
 * the steps, confine_steps.h for the file that implements each).
 */
#include "confine.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "confine_steps.h"
#include "handoff.h"

const char *iso_step_state_name(iso_step_state s)
{
    switch (s) {
    case ISO_STEP_ACTIVE:
        return "active";
    case ISO_STEP_MISSING:
        return "missing";
    case ISO_STEP_NOT_NEEDED:
        return "not needed";
    case ISO_STEP_AUDIT:
        return "audit";
    }
    return "unknown";
}

void iso_step_add(iso_confine_report *rep, const char *layer,
                  iso_step_state state, const char *fmt, ...)
{
    if (rep->n >= ISO_CONFINE_MAX_STEPS)
        return;
    iso_step *s = &rep->steps[rep->n++];
    s->layer = layer;
    s->state = state;
    s->n_facts = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->detail, sizeof s->detail, fmt, ap);
    va_end(ap);
}

/* The next fact slot of the row added last, keyed; NULL when none is left. */
static iso_step_fact *next_fact(iso_confine_report *rep, const char *key,
                                iso_fact_type type)
{
    iso_step *s = rep->n ? &rep->steps[rep->n - 1] : NULL;
    if (!s || s->n_facts >= ISO_STEP_FACTS_MAX)
        return NULL;
    iso_step_fact *f = &s->facts[s->n_facts++];
    f->key = key;
    f->type = type;
    return f;
}

void iso_step_fact_int(iso_confine_report *rep, const char *key, int64_t v)
{
    iso_step_fact *f = next_fact(rep, key, ISO_FACT_INT);
    if (f)
        f->i = v;
}

void iso_step_fact_str(iso_confine_report *rep, const char *key,
                       const char *v)
{
    iso_step_fact *f = next_fact(rep, key, ISO_FACT_STR);
    if (f)
        snprintf(f->s, sizeof f->s, "%s", v);
}

void iso_step_fact_ports(iso_confine_report *rep, const char *key,
                         const uint16_t *ports, size_t n)
{
    iso_step_fact *f = next_fact(rep, key, ISO_FACT_PORTS);
    if (!f)
        return;
    f->n_ports = n < ISO_FACT_PORTS_MAX ? n : ISO_FACT_PORTS_MAX;
    if (f->n_ports) /* ports may be NULL when there are none */
        memcpy(f->ports, ports, f->n_ports * sizeof *ports);
}

int iso_confine_fail(iso_error *err, const char *fmt, ...)
{
    int e = errno;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    iso_error_set(err, ISO_CRASHED, "confine: %s: %s", what, strerror(e));
    if (err)
        err->code = e;
    return -1;
}

/* ---- the list ----------------------------------------------------------- */

static const iso_confine_step steps[] = {
    iso_step_close_fds,    iso_step_session,  iso_step_environment,
    iso_step_rlimits,      iso_step_cgroup,   iso_step_capabilities,
    iso_step_no_new_privs, iso_step_landlock, iso_step_seccomp,
};

/* f as a field of row (a map). */
static int add_fact(iso_value *row, const iso_step_fact *f)
{
    iso_value *k, *v;
    if (iso_map_append(row, &k, &v) ||
        iso_value_set_string(k, ISO_STR, f->key, strlen(f->key)))
        return -1;
    if (f->type == ISO_FACT_INT)
        iso_value_set_int(v, f->i);
    else if (f->type == ISO_FACT_STR)
        return iso_value_set_string(v, ISO_STR, f->s, strlen(f->s));
    else
        iso_value_set_list(v);
    for (size_t i = 0; f->type == ISO_FACT_PORTS && i < f->n_ports; i++) {
        iso_value *p = iso_list_append(v);
        if (!p)
            return -1;
        iso_value_set_int(p, f->ports[i]);
    }
    return 0;
}

int iso_confine_rows(const iso_confine_report *rep, const char *scope,
                     iso_value *list)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < rep->n; i++) {
        const iso_step *s = &rep->steps[i];
        rc = iso_confinement_add(list, s->layer, iso_step_state_name(s->state),
                                 scope, s->detail);
        iso_value *row = rc ? NULL : &list->u.seq.items[list->u.seq.len - 1];
        for (size_t j = 0; row && rc == 0 && j < s->n_facts; j++)
            rc = add_fact(row, &s->facts[j]);
    }
    return rc;
}

static const iso_confine_step thread_steps[] = {
    iso_step_thread_cgroup, iso_step_fd_table,        iso_step_noexec,
    iso_step_no_new_privs,  iso_step_thread_landlock, iso_step_seccomp,
};

/* Run list, appending to rep (fresh: emptied first); each row is stamped
 * with the time its step ended. */
static int run_steps(const iso_confine_step *list, size_t n,
                     const iso_confine_config *cfg, iso_confine_report *rep,
                     bool fresh, iso_error *err)
{
    iso_confine_report scratch;
    if (!rep)
        rep = &scratch, fresh = true;
    if (fresh)
        rep->n = 0;
    for (size_t i = 0; i < n; i++) {
        size_t from = rep->n;
        if (list[i](cfg, rep, err) < 0)
            return -1;
        double t = iso_now();
        for (size_t k = from; k < rep->n; k++)
            rep->steps[k].done_at = t;
    }
    return 0;
}

static const iso_confine_step early_steps[] = {
    iso_step_close_fds,    iso_step_session, iso_step_environment,
    iso_step_no_core,      iso_step_cgroup,  iso_step_capabilities,
    iso_step_no_new_privs,
};

static const iso_confine_step late_steps[] = {
    iso_step_rlimits,
    iso_step_landlock,
    iso_step_seccomp,
};

int iso_confine_early(const iso_confine_config *cfg, iso_confine_report *rep,
                      iso_error *err)
{
    return run_steps(early_steps, sizeof early_steps / sizeof *early_steps, cfg,
                     rep, true, err);
}

int iso_confine_late(const iso_confine_config *cfg, iso_confine_report *rep,
                     iso_error *err)
{
    return run_steps(late_steps, sizeof late_steps / sizeof *late_steps, cfg,
                     rep, false, err);
}

int iso_confine_apply(const iso_confine_config *cfg, iso_confine_report *rep,
                      iso_error *err)
{
    return run_steps(steps, sizeof steps / sizeof *steps, cfg, rep, true, err);
}

int iso_confine_thread(const iso_confine_config *cfg, iso_confine_report *rep,
                       iso_error *err)
{
    if (!cfg->in_thread)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "confine: iso_confine_thread needs in_thread");
    iso_thread_ruleset_forget();
    int rc = run_steps(thread_steps, sizeof thread_steps / sizeof *thread_steps,
                       cfg, rep, true, err);
    iso_thread_ruleset_close(); /* held still: a step between failed */
    return rc;
}
