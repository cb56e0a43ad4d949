/*
 * Per-cell allocation accounting (py_alloc.c). An account is named by a
 * non-zero id; 0 means none, and every call accepts it.
 */
#ifndef ISO_PY_ALLOC_H
#define ISO_PY_ALLOC_H

#include <stdbool.h>
#include <stdint.h>

/* Wrap CPython's allocators: after pre-initialisation, before start-up. */
void iso_py_alloc_install(void);
/* A new account (0 when all are in use). Any thread. */
uint32_t iso_mem_account_open(void);
void iso_mem_account_close(uint32_t id);
/* From now on this thread allocates on account id. */
void iso_mem_account_enter(uint32_t id);
/* Add this thread's pending charges to their account: a thread charges in
 * batches, so another thread reading `used` may see up to one batch less. */
void iso_mem_account_flush(void);
/* Threads of interpreter `interp` (a PyInterpreterState) that entered no
 * account allocate on account id: the threads a guest starts. */
void iso_mem_account_bind(uint32_t id, void *interp);
/* Allocations past `bytes` in all fail (0: no limit). Any thread. */
void iso_mem_account_limit(uint32_t id, int64_t bytes);
int64_t iso_mem_account_used(uint32_t id);
/* Did an allocation fail for the limit since the last call? Clears it. */
bool iso_mem_account_refused(uint32_t id);
/* Does the guest keep allocating past its limit after MemoryErrors (stop
 * it)? Cleared once its use is back under the limit. */
bool iso_mem_account_overrun(uint32_t id);

#endif
