/*
 * A sub-interpreter cell's limits as its host sees them: the thread's CPU
 * clock against the cpu_ms its confine op took, the memory account
 * (py_alloc.c) and limits.mem when the cell is confined. The watchdog
 * (watchdog.c) reads the same figures while nobody waits.
 */
#include <time.h>

#include "py_alloc.h"
#include "subinterp.h"

int64_t iso_sub_cpu_ms(const iso_sub *s)
{
    struct timespec ts;
    if (!s->has_cpu_clock || clock_gettime(s->cpu_clock, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* limits.mem: the account's budget. A budget that an empty cell already
 * fills could only ever fail. */
static int limit_memory(iso_sub *s, iso_error *err)
{
    int64_t used = iso_mem_account_used(s->guest->mem_account);
    if (s->guest->mem_limit > 0 && used >= s->guest->mem_limit)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "limits.mem of %lld bytes is below the %lld "
                             "bytes an empty cell already holds: raise it",
                             (long long)s->guest->mem_limit, (long long)used);
    iso_mem_account_limit(s->guest->mem_account, s->guest->mem_limit);
    return 0;
}

int iso_sub_confine(iso_sub *s, iso_error *err)
{
    if (limit_memory(s, err))
        return -1;
    return iso_sub_kernel_confine(s, err);
}

iso_kind iso_sub_over(iso_sub *s)
{
    if (s->cpu_ms > 0 && iso_sub_cpu_ms(s) >= s->cpu_ms)
        return ISO_CPU;
    if (iso_mem_account_overrun(s->guest->mem_account))
        return ISO_MEMORY;
    return ISO_OK;
}

int64_t iso_sub_mem_bytes(const iso_sub *s)
{
    return iso_mem_account_used(s->guest->mem_account);
}
