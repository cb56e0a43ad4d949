/*
 * Interrupting a sub-interpreter cell's request (a limit passed, kill,
 * abandonment): each interrupt on a short-lived thread of its own, which
 * takes the cell's GIL and raises TimeoutError in the running request, or
 * parks an abandoned guest for good (abandoned.c).
 */
#include <stdlib.h>

#include "subinterp.h"

typedef struct interrupt_job {
    iso_sub *s;
    uint64_t seq;
} interrupt_job;

static void interrupter_done(iso_sub *s)
{
    pthread_mutex_lock(&s->ch->mu);
    s->interrupters--;
    pthread_cond_broadcast(&s->ch->cv);
    pthread_mutex_unlock(&s->ch->mu);
    iso_host_release(&s->host);
}

/* Runs on its own short-lived thread: taking the cell's GIL may wait for
 * as long as one C call of the guest runs, and nobody else should. */
static void *interrupter(void *arg)
{
    interrupt_job *job = arg;
    iso_sub *s = job->s;
    iso_py_state *p = s->guest->py;
    PyThreadState *ts = PyThreadState_New(p->interp);
    PyEval_RestoreThread(ts);
    if (atomic_load(&s->ch->abandoned))
        iso_abandoned_park(s, p);
    else if (atomic_load(&s->running_seq) == job->seq)
        PyThreadState_SetAsyncExc(p->thread_id, PyExc_TimeoutError);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    interrupter_done(s);
    free(job);
    return NULL;
}

void iso_sub_interrupt(iso_sub *s, uint64_t seq)
{
    interrupt_job *job = malloc(sizeof *job);
    if (!job)
        return;
    *job = (interrupt_job){s, seq};
    pthread_mutex_lock(&s->ch->mu);
    /* One at a time; but the park must not be lost to one in flight that
     * looked at s->ch->abandoned too early. */
    bool ok = s->interp_alive &&
              (s->interrupters == 0 || atomic_load(&s->ch->abandoned));
    if (ok) {
        s->interrupters++;
        iso_host_hold(&s->host);
    }
    pthread_mutex_unlock(&s->ch->mu);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (ok && iso_thread_start(&t, &attr, interrupter, job) == 0)
        job = NULL;
    else if (ok)
        interrupter_done(s);
    pthread_attr_destroy(&attr);
    free(job);
}
