/*
 * The reaper of thread cgroups (cgroup.c's iso_cgroup_thread_release
 * hands it the ones still busy).
 */
#include <pthread.h>

#include "cgroup.h"
#include "handoff.h"

/* A thread's cgroup stays busy for a moment after the thread ends, and
 * the last reference to a cell often goes in the middle of something else
 * (Lua's garbage collector): a reaper thread waits that out instead. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    iso_cgroup *queue;
    size_t n, cap;
    bool running;
} reaper = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, false};

static void *reap(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&reaper.mu);
    for (;;) {
        while (reaper.n == 0)
            pthread_cond_wait(&reaper.cv, &reaper.mu);
        iso_cgroup cg = reaper.queue[--reaper.n];
        pthread_mutex_unlock(&reaper.mu);
        iso_error err = {0};
        iso_cgroup_remove(&cg, &err); /* the host's exit removes what is left */
        iso_error_clear(&err);
        pthread_mutex_lock(&reaper.mu);
    }
    return NULL;
}

/* reaper.mu held */
static void reaper_start_locked(void)
{
    if (!reaper.running)
        reaper.running = iso_thread_detached(reap);
}

void iso_cgroup_reaper_start(void)
{
    pthread_mutex_lock(&reaper.mu);
    reaper_start_locked();
    pthread_mutex_unlock(&reaper.mu);
}

/* Hand cg to the reaper; false when it cannot take it (remove it now). */
bool iso_cgroup_reap_later(const iso_cgroup *cg)
{
    pthread_mutex_lock(&reaper.mu);
    reaper_start_locked();
    bool ok =
        reaper.running && iso_room_for_one((void **)&reaper.queue, &reaper.cap,
                                           reaper.n, sizeof *reaper.queue);
    if (ok)
        reaper.queue[reaper.n++] = *cg;
    pthread_cond_signal(&reaper.cv);
    pthread_mutex_unlock(&reaper.mu);
    return ok;
}
