/*
 * The process pool: workers forked ahead by the zygote (see proc_pool.h),
 * kept by the host with their sockets and cgroups, so that spawning a
 * process cell only hands one its policy. A worker is taken once, before
 * any guest code runs in it, and never comes back. A background thread
 * refills the pool once spawn has left it alone for a moment; it never
 * starts a zygote (the first process spawn does, cold), and after the
 * host's cells end (sandbox.shutdown) the pool sleeps until the next
 * process spawn.
 */
#include <pthread.h>
#include <stdlib.h>

#include "handoff.h"
#include "proc_pool.h"

#define PROC_POOL_MAX ISO_PROC_POOL_MAX
#define PROC_POOL_DEFAULT ISO_PROC_POOL_DEFAULT
/* Refill only once spawn has left the pool alone this long: a fork and a
 * worker's prefault take CPU the cell just handed out should have. */
#define REFILL_QUIET_S 0.005

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    iso_proc_warm items[PROC_POOL_MAX];
    size_t n, target;
    size_t taken;     /* workers handed to spawn, ever */
    double last_take; /* iso_now() */
    bool awake;       /* a process cell was spawned since the last end */
    bool running;     /* the refill thread */
    unsigned epoch;   /* one per end: a refill in flight is dropped */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER,
          .cv = PTHREAD_COND_INITIALIZER,
          .target = PROC_POOL_DEFAULT};

static bool wanted(void)
{
    return pool.awake && pool.n < pool.target;
}

/* The pool lock held: has spawn left the pool alone for REFILL_QUIET_S?
 * (If not, waits for the rest: look at the pool again.) */
static bool quiet(void)
{
    return iso_cond_quiet_since(&pool.cv, &pool.mu, pool.last_take,
                                REFILL_QUIET_S);
}

/* One worker made outside the lock; kept if the pool still wants it. */
static bool refill_one(void)
{
    unsigned epoch = pool.epoch;
    pthread_mutex_unlock(&pool.mu);
    iso_proc_warm w;
    iso_error err = {0};
    int rc = iso_proc_warm_make("pool", true, &w, &err);
    iso_error_clear(&err);
    pthread_mutex_lock(&pool.mu);
    if (rc)
        return false; /* no zygote (ended), or the kernel said no */
    if (epoch == pool.epoch && wanted()) {
        pool.items[pool.n++] = w;
        return true;
    }
    pthread_mutex_unlock(&pool.mu);
    iso_proc_warm_discard(&w);
    pthread_mutex_lock(&pool.mu);
    return true;
}

static void *refill(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        if (!wanted()) {
            pthread_cond_wait(&pool.cv, &pool.mu);
            continue;
        }
        if (quiet() && !refill_one())
            pool.awake = false; /* the next process spawn wakes it */
    }
    return NULL;
}

/* Workers beyond the target (or all: drop), out of the pool; discarded
 * outside the lock. */
static void shed(bool all)
{
    iso_proc_warm extra[PROC_POOL_MAX];
    size_t k = 0;
    pthread_mutex_lock(&pool.mu);
    while (pool.n > (all ? 0 : pool.target))
        extra[k++] = pool.items[--pool.n];
    pthread_mutex_unlock(&pool.mu);
    while (k > 0)
        iso_proc_warm_discard(&extra[--k]);
}

int iso_proc_pool_configure(size_t target, iso_error *err)
{
    if (target > PROC_POOL_MAX)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "process_pool must be at most %d", PROC_POOL_MAX);
    pthread_mutex_lock(&pool.mu);
    pool.target = target;
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    shed(false);
    return 0;
}

void iso_proc_pool_wake(void)
{
    pthread_mutex_lock(&pool.mu);
    pool.awake = true;
    pool.last_take = iso_now(); /* the cell just made runs first */
    if (!pool.running)
        pool.running = iso_thread_detached(refill);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
}

bool iso_proc_pool_take(iso_proc_warm *out)
{
    pthread_mutex_lock(&pool.mu);
    bool got = pool.n > 0;
    if (got)
        *out = pool.items[--pool.n]; /* the newest: its pages are warmest */
    pool.taken += got;
    pool.last_take = iso_now();
    pthread_cond_broadcast(&pool.cv); /* refill */
    pthread_mutex_unlock(&pool.mu);
    return got;
}

void iso_proc_pool_end(void)
{
    pthread_mutex_lock(&pool.mu);
    pool.awake = false;
    pool.epoch++;
    pthread_mutex_unlock(&pool.mu);
    shed(true);
}

void iso_proc_pool_stats(size_t *ready, size_t *target, size_t *taken)
{
    pthread_mutex_lock(&pool.mu);
    *ready = pool.n;
    *target = pool.target;
    *taken = pool.taken;
    pthread_mutex_unlock(&pool.mu);
}
