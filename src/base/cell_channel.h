/*
 * What crosses between the host thread and a cell's own thread (a
 * sub-interpreter cell's): one lock, the two wake-ups, the request slot,
 * the outbox, the broker reply slot, and the flags both threads read. The
 * host's cell object holds one per cell; the backend that runs the cell
 * thread works through it.
 */
#ifndef ISO_CELL_CHANNEL_H
#define ISO_CELL_CHANNEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "backend.h"
#include "handoff.h"
#include "isolate.h"

typedef struct iso_msg_queue {
    iso_msg *head, *tail;
} iso_msg_queue;

typedef struct iso_cell_channel {
    /* Guards the fields below marked mu, and the cell's own fields marked
     * so (start-up, confinement, interrupters, spawn phases, the plan). */
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* slow events only: start-up, interrupters */
    iso_signal to_cell;   /* a request, a broker reply, or stop */
    iso_signal to_host;   /* the outbox grew */
    iso_req *req;         /* mu: the request the cell should run */
    iso_msg_queue outbox; /* mu: cell -> host */
    bool reply_ready;     /* mu: broker answer for the cell */
    iso_value reply;
    char *reply_error;
    _Atomic bool stop;      /* leave the loop and end the interpreter */
    _Atomic bool abandoned; /* the host gave up on this thread */
    _Atomic int state;      /* iso_state */
} iso_cell_channel;

#endif
