/*
 * The warm pool: sub-interpreter cells created ahead of time (their own
 * thread, a fresh interpreter, the guest runtime installed, no name and no
 * rules yet), so that spawn only hands one its rules. The runtime reads a
 * cell's rules only while it serves a request, and a pool cell has served
 * none: it leaves the pool before any guest code runs in it, never to come
 * back. A background thread keeps the pool full.
 */
#include <pthread.h>
#include <stdlib.h>

#include "handoff.h"
#include "pool.h"
#include "subinterp.h"

#define POOL_MAX ISO_WARM_POOL_MAX
/* Refill only once spawn has left the pool alone this long: creating an
 * interpreter takes milliseconds of CPU (and, with a shared GIL, the GIL),
 * which the cell just handed out should have for its first request. */
#define REFILL_QUIET_S 0.005

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    iso_cell *cells[POOL_MAX]; /* the host's */
    size_t n, target;
    size_t taken;     /* cells handed to spawn, ever */
    double last_take; /* iso_now() */
    bool running;     /* the refill thread */
    iso_cell *(*make)(iso_backend_cell **h, iso_error *err); /* the host's */
} pool = {PTHREAD_MUTEX_INITIALIZER,
          PTHREAD_COND_INITIALIZER,
          {0},
          0,
          0,
          0,
          0,
          false,
          NULL};

/* The pool lock held: has spawn left the pool alone for REFILL_QUIET_S?
 * (If not, waits for the rest: look at the pool again.) */
static bool quiet(void)
{
    return iso_cond_quiet_since(&pool.cv, &pool.mu, pool.last_take,
                                REFILL_QUIET_S);
}

static void *refill(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&pool.mu);
    while (pool.target > 0) {
        if (pool.n >= pool.target) {
            pthread_cond_wait(&pool.cv, &pool.mu);
            continue;
        }
        if (!quiet())
            continue;
        iso_cell *(*make)(iso_backend_cell **, iso_error *) = pool.make;
        pthread_mutex_unlock(&pool.mu);
        iso_error err = {0};
        iso_backend_cell *h = NULL;
        /* milliseconds: unlocked */
        iso_cell *c = make(&h, &err);
        iso_error_clear(&err);
        if (c)
            iso_sub_cgroup_prepare((iso_sub *)h);
        pthread_mutex_lock(&pool.mu);
        if (!c)
            break; /* spawn will say why, on the cold path */
        if (pool.n < pool.target)
            pool.cells[pool.n++] = c;
        else
            iso_cell_release(c);
    }
    pool.running = false;
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

/* Close what is beyond the target (outside the lock: closing waits for
 * the cell thread). */
static void shrink(void)
{
    iso_cell *extra[POOL_MAX];
    size_t k = 0;
    pthread_mutex_lock(&pool.mu);
    while (pool.n > pool.target)
        extra[k++] = pool.cells[--pool.n];
    pthread_mutex_unlock(&pool.mu);
    while (k > 0)
        iso_cell_release(extra[--k]);
}

int iso_sub_pool_configure(size_t target,
                           iso_cell *(*make)(iso_backend_cell **h,
                                             iso_error *err),
                           iso_error *err)
{
    if (target > POOL_MAX)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "warm_pool must be at most %d", POOL_MAX);
    pthread_mutex_lock(&pool.mu);
    pool.target = target;
    pool.make = make;
    if (target > 0 && !pool.running)
        pool.running = iso_thread_detached(refill);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    shrink();
    return 0;
}

iso_cell *iso_pool_take(void)
{
    pthread_mutex_lock(&pool.mu);
    iso_cell *c = pool.n > 0 ? pool.cells[--pool.n] : NULL;
    pool.taken += c != NULL;
    pool.last_take = iso_now();
    pthread_cond_broadcast(&pool.cv); /* refill */
    pthread_mutex_unlock(&pool.mu);
    return c;
}

void iso_pool_stats(size_t *ready, size_t *target, size_t *taken)
{
    pthread_mutex_lock(&pool.mu);
    *ready = pool.n;
    *target = pool.target;
    *taken = pool.taken;
    pthread_mutex_unlock(&pool.mu);
}
