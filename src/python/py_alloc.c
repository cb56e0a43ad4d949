/*
 * Per-cell allocation accounting: what `limits.mem` and `stats().mem_bytes`
 * of a sub-interpreter cell mean.
 *
 * CPython's "mem" and "object" allocator domains are wrapped before the
 * runtime starts, so every block they hand out carries a 16-byte header:
 * its size and the account it was charged to. A block is charged to the
 * allocating thread's account and uncharged from that same account by
 * whichever thread frees it. A cell thread enters its cell's account; a
 * thread the guest starts is found through its interpreter. An allocation
 * that would take an account past its limit fails, which CPython raises as
 * MemoryError in the guest.
 *
 * Own-GIL cells allocate in parallel, so nothing on the allocation path is
 * written by two cells: each account has its own cache lines, and a cell
 * thread charges in batches of up to BATCH bytes kept thread-locally (no
 * atomic read-modify-write per block). Its own limit checks see its
 * pending batch, so a limit is exact for the cell thread; it flushes after
 * every request, so stats() after a request are exact. Other threads
 * charge directly.
 *
 * CPython cannot live under a hard cap: raising and unwinding a MemoryError
 * allocates too, and when that fails again and again it aborts the whole
 * process ("Cannot recover from MemoryErrors"). So each refusal grants
 * SLACK bytes more to unwind with, until use falls back under the limit.
 * A guest that swallows MemoryErrors and keeps allocating is past OVERRUN
 * soon; the host then interrupts it as it does for cpu_ms (kind memory),
 * and allocations are let through (up to hard_extra) so that the interrupt
 * can be raised.
 *
 * The raw domain is left alone: it serves allocations made before start-up
 * (which could not carry headers), and CPython routes objects and buffers,
 * big ones included, through the two wrapped domains. Memory a module maps
 * or mallocs by itself (mmap, an extension's own buffers) is not counted.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "py_alloc.h"
#include "py_runtime.h"

#define SLOTS 16384 /* accounts open at once: one per live cell */
#define SLOT_MASK (SLOTS - 1)
#define GEN_STEP SLOTS /* an id is slot + generation * SLOTS */
#define SLACK ((int64_t)1 << 20)
#define OVERRUN (4 * SLACK)
#define BATCH ((int64_t)64 << 10)
#define LINE 128 /* two cache lines: adjacent-line prefetch pairs them */

typedef struct account {
    _Atomic uint32_t id; /* 0 while the slot is free */
    _Atomic int64_t used;
    _Atomic int64_t limit;     /* bytes, 0: none */
    _Atomic int64_t allowance; /* limit, or more while a refusal unwinds */
    _Atomic bool refused;      /* an allocation failed for the limit */
    _Atomic bool overrun;      /* past limit + OVERRUN: stop the guest */
    PyInterpreterState *_Atomic interp; /* whose threads charge it */
} __attribute__((aligned(LINE))) account;

/* The header keeps blocks 16-byte aligned, as CPython's allocator does. */
typedef struct header {
    size_t size;
    uint32_t id;
    uint32_t unused;
} header;
_Static_assert(sizeof(header) == 16, "blocks must stay 16-byte aligned");

static account accounts[SLOTS];
static uint32_t next_gen[SLOTS];
static size_t slots_seen = 1; /* slot 0 is never used: id 0 is "none" */
static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static PyMemAllocatorEx inner_mem, inner_obj;

/* The account this thread allocates on: a cell thread's own, or a guest
 * thread's, remembered per interpreter. */
static _Thread_local uint32_t entered;
static _Thread_local PyInterpreterState *seen_interp;
static _Thread_local uint32_t seen_id;
/* Bytes charged to batch_id by this thread and not yet in its `used`. */
static _Thread_local uint32_t batch_id;
static _Thread_local int64_t batch;

static account *account_of(uint32_t id)
{
    account *a = &accounts[id & SLOT_MASK];
    return id && atomic_load_explicit(&a->id, memory_order_relaxed) == id
               ? a
               : NULL;
}

static PyThreadState *current_thread_state(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyThreadState_GetUnchecked();
#else
    return _PyThreadState_UncheckedGet();
#endif
}

static uint32_t find_by_interp(PyInterpreterState *interp)
{
    pthread_mutex_lock(&slots_mu);
    uint32_t id = 0;
    for (size_t i = 1; i < slots_seen && !id; i++)
        if (atomic_load(&accounts[i].interp) == interp)
            id = atomic_load(&accounts[i].id);
    pthread_mutex_unlock(&slots_mu);
    return id;
}

static account *current_account(void)
{
    if (entered)
        return account_of(entered);
    PyThreadState *ts = current_thread_state();
    if (!ts)
        return NULL;
    PyInterpreterState *interp = PyThreadState_GetInterpreter(ts);
    if (interp != seen_interp || (seen_id && !account_of(seen_id))) {
        seen_interp = interp;
        seen_id = find_by_interp(interp);
    }
    return account_of(seen_id);
}

/* How far past its limit a guest that is being stopped may go before
 * every allocation fails again (CPython 3.13 was seen to crash when
 * refusals met the interrupt the host sends). */
static int64_t hard_extra(int64_t limit)
{
    return limit > 64 * SLACK ? limit : 64 * SLACK;
}

/* May an account grow by n bytes? */
static bool admit(account *a, size_t n)
{
    int64_t limit = atomic_load_explicit(&a->limit, memory_order_relaxed);
    if (limit <= 0)
        return true;
    int64_t used = atomic_load_explicit(&a->used, memory_order_relaxed);
    if (batch_id == atomic_load_explicit(&a->id, memory_order_relaxed))
        used += batch;
    int64_t want = n > (size_t)INT64_MAX / 2 ? INT64_MAX : used + (int64_t)n;
    if (want <= limit) {
        if (atomic_load_explicit(&a->allowance, memory_order_relaxed) != limit)
            atomic_store_explicit(&a->allowance, limit, memory_order_relaxed);
        if (atomic_load_explicit(&a->overrun, memory_order_relaxed))
            atomic_store_explicit(&a->overrun, false, memory_order_relaxed);
        return true;
    }
    bool capped = want > limit + hard_extra(limit); /* however slow the
                                                       interrupt is */
    if (!capped &&
        want <= atomic_load_explicit(&a->allowance, memory_order_relaxed))
        return true; /* unwinding an earlier refusal */
    if (!capped && atomic_load_explicit(&a->overrun, memory_order_relaxed))
        return true; /* the host is stopping it: let the interrupt raise */
    atomic_store_explicit(&a->allowance, used + SLACK, memory_order_relaxed);
    atomic_store_explicit(&a->refused, true, memory_order_relaxed);
    if (used > limit + OVERRUN)
        atomic_store_explicit(&a->overrun, true, memory_order_relaxed);
    return false;
}

static void flush(void)
{
    account *a = batch ? account_of(batch_id) : NULL;
    if (a)
        atomic_fetch_add_explicit(&a->used, batch, memory_order_relaxed);
    batch = 0;
}

/* Only a cell thread batches: it flushes after each request and when its
 * account closes. Any other thread (one a guest starts, an interrupter)
 * may end at any moment, and its pending batch would be lost. */
static void charge(uint32_t id, int64_t n)
{
    if (!id)
        return;
    if (!entered) {
        account *a = account_of(id);
        if (a)
            atomic_fetch_add_explicit(&a->used, n, memory_order_relaxed);
        return;
    }
    if (id != batch_id) {
        flush();
        batch_id = id;
    }
    batch += n;
    if (batch > BATCH || batch < -BATCH)
        flush();
}

static void *finish(header *h, account *a, size_t n)
{
    if (!h)
        return NULL;
    h->size = n;
    h->id = a ? atomic_load_explicit(&a->id, memory_order_relaxed) : 0;
    charge(h->id, (int64_t)n);
    return h + 1;
}

static void *wrap_malloc(void *ctx, size_t n)
{
    PyMemAllocatorEx *in = ctx;
    account *a = current_account();
    if (n > PY_SSIZE_T_MAX - sizeof(header) || (a && !admit(a, n)))
        return NULL;
    return finish(in->malloc(in->ctx, n + sizeof(header)), a, n);
}

static void *wrap_calloc(void *ctx, size_t nelem, size_t elsize)
{
    PyMemAllocatorEx *in = ctx;
    account *a = current_account();
    if (elsize && nelem > (PY_SSIZE_T_MAX - sizeof(header)) / elsize)
        return NULL;
    size_t n = nelem * elsize;
    if (a && !admit(a, n))
        return NULL;
    return finish(in->calloc(in->ctx, 1, n + sizeof(header)), a, n);
}

static void wrap_free(void *ctx, void *p)
{
    PyMemAllocatorEx *in = ctx;
    if (!p)
        return;
    header *h = (header *)p - 1;
    charge(h->id, -(int64_t)h->size);
    in->free(in->ctx, h);
}

/* A block stays on the account it was charged to, whoever grows it. */
static void *wrap_realloc(void *ctx, void *p, size_t n)
{
    PyMemAllocatorEx *in = ctx;
    if (!p)
        return wrap_malloc(ctx, n);
    header *h = (header *)p - 1;
    size_t old = h->size;
    uint32_t id = h->id;
    account *a = account_of(id);
    if (n > PY_SSIZE_T_MAX - sizeof(header) ||
        (a && n > old && !admit(a, n - old)))
        return NULL;
    h = in->realloc(in->ctx, h, n + sizeof(header));
    if (!h)
        return NULL;
    h->size = n;
    charge(id, (int64_t)n - (int64_t)old);
    return h + 1;
}

static void wrap_domain(PyMemAllocatorDomain domain, PyMemAllocatorEx *inner)
{
    PyMem_GetAllocator(domain, inner);
    PyMemAllocatorEx outer = {inner, wrap_malloc, wrap_calloc, wrap_realloc,
                              wrap_free};
    PyMem_SetAllocator(domain, &outer);
}

void iso_py_alloc_install(void)
{
    wrap_domain(PYMEM_DOMAIN_MEM, &inner_mem);
    wrap_domain(PYMEM_DOMAIN_OBJ, &inner_obj);
}

uint32_t iso_mem_account_open(void)
{
    pthread_mutex_lock(&slots_mu);
    size_t slot = 1;
    while (slot < slots_seen && atomic_load(&accounts[slot].id))
        slot++;
    uint32_t id = 0;
    if (slot < SLOTS) {
        slots_seen += slot == slots_seen;
        next_gen[slot] = next_gen[slot] % (UINT32_MAX / GEN_STEP) + 1;
        id = (uint32_t)slot + next_gen[slot] * GEN_STEP;
        atomic_store(&accounts[slot].used, 0);
        atomic_store(&accounts[slot].limit, 0);
        atomic_store(&accounts[slot].allowance, 0);
        atomic_store(&accounts[slot].refused, false);
        atomic_store(&accounts[slot].overrun, false);
        atomic_store(&accounts[slot].interp, NULL);
        atomic_store(&accounts[slot].id, id);
    }
    pthread_mutex_unlock(&slots_mu);
    return id;
}

/* Blocks still charged to a closed account are uncharged from nothing:
 * their id no longer matches the slot's. */
void iso_mem_account_close(uint32_t id)
{
    account *a = account_of(id);
    if (!a)
        return;
    if (batch_id == id)
        flush();
    pthread_mutex_lock(&slots_mu);
    atomic_store(&a->interp, NULL);
    atomic_store(&a->id, 0);
    pthread_mutex_unlock(&slots_mu);
    if (entered == id)
        entered = 0;
}

void iso_mem_account_enter(uint32_t id)
{
    entered = id;
}

void iso_mem_account_flush(void)
{
    flush();
}

void iso_mem_account_bind(uint32_t id, void *interp)
{
    account *a = account_of(id);
    if (a)
        atomic_store(&a->interp, interp);
}

void iso_mem_account_limit(uint32_t id, int64_t bytes)
{
    account *a = account_of(id);
    if (a) {
        atomic_store(&a->allowance, bytes > 0 ? bytes : 0);
        atomic_store(&a->limit, bytes > 0 ? bytes : 0);
    }
}

int64_t iso_mem_account_used(uint32_t id)
{
    account *a = account_of(id);
    int64_t n = a ? atomic_load_explicit(&a->used, memory_order_relaxed) : 0;
    return n > 0 ? n : 0;
}

bool iso_mem_account_refused(uint32_t id)
{
    account *a = account_of(id);
    return a && atomic_exchange(&a->refused, false);
}

bool iso_mem_account_overrun(uint32_t id)
{
    account *a = account_of(id);
    return a && atomic_load(&a->overrun);
}
