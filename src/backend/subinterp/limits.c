/*
 * A sub-interpreter cell's limits as its host sees them: the thread's CPU
 * clock, the memory account (py_alloc.c) and limits.mem at spawn. The
 * watchdog (watchdog.c) reads the same figures while nobody waits.
 */
#include <time.h>

#include "py_alloc.h"
#include "subinterp.h"

int64_t iso_cell_thread_cpu_ms(const iso_cell *c)
{
    struct timespec ts;
    if (!iso_sub_of(c)->has_cpu_clock ||
        clock_gettime(iso_sub_of(c)->cpu_clock, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* limits.mem: the account's budget. A budget that an empty cell already
 * fills could only ever fail. */
static int limit_memory(iso_cell *c, iso_error *err)
{
    int64_t used = iso_mem_account_used(c->guest.mem_account);
    if (c->guest.mem_limit > 0 && used >= c->guest.mem_limit)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "limits.mem of %lld bytes is below the %lld "
                             "bytes an empty cell already holds: raise it",
                             (long long)c->guest.mem_limit, (long long)used);
    iso_mem_account_limit(c->guest.mem_account, c->guest.mem_limit);
    return 0;
}

int iso_sub_confine(iso_cell *c, iso_error *err)
{
    if (limit_memory(c, err))
        return -1;
    return iso_cell_confine(c, err);
}

iso_kind iso_sub_over(iso_cell *c)
{
    if (c->cpu_ms > 0 && iso_cell_thread_cpu_ms(c) >= c->cpu_ms)
        return ISO_CPU;
    if (iso_mem_account_overrun(c->guest.mem_account))
        return ISO_MEMORY;
    return ISO_OK;
}

int64_t iso_sub_mem_bytes(const iso_cell *c)
{
    return iso_mem_account_used(c->guest.mem_account);
}
