/*
 * Within src/core: a cell's host-side queues and the doorbell
 * (cell_queue.c), shared by the cell object's files.
 */
#ifndef ISO_CELL_QUEUE_H
#define ISO_CELL_QUEUE_H

#include <poll.h>

#include "cell_internal.h"

/* How often a wait-any looks at what it cannot sleep on. */
#define ISO_WAIT_ANY_SLICE_S 0.001

void iso_msg_queue_push(iso_msg_queue *q, iso_msg *m);
iso_msg *iso_msg_queue_pop(iso_msg_queue *q); /* NULL when empty */
void iso_msg_queue_clear(iso_msg_queue *q);
/* Host thread: sort m (consumed) into the host queues, counting what it
 * queues against the queue limits unless it was counted on the way
 * (iso_cell_push). A denial without a source is the cell's claim (source
 * "cell"). -1 (m destroyed) when it would pass a queue limit. (cell.c; a
 * backend reaches it as its deliver hook.) */
int iso_cell_deliver(iso_cell *c, iso_msg *m);
/* Any thread: have a waiting host look again (the wake hook). */
void iso_cell_wake_host(iso_cell *c);
/* The host took m (may be NULL) out of its queue: refund its charge. */
iso_msg *iso_cell_refund(iso_cell *c, iso_msg *m);
/* Ring the doorbell (any thread); what it has rung so far. */
void iso_doorbell_ring(void);
uint32_t iso_doorbell_peek(void);
/* loop.c: every ring from now on also reaches the doorbell's socket; its
 * reading end (-1: none). Take what rang, without waiting. */
int iso_doorbell_watch(void);
void iso_doorbell_clear(void);
/* Sleep until the doorbell moves past seen, one of fds[0..nfds) is
 * readable, or wake (< 0: no limit). threads: cells that ring the doorbell
 * are among those waited for (fds has room for one more slot then).
 * Spurious returns are fine. */
void iso_doorbell_sleep(struct pollfd *fds, nfds_t nfds, bool threads,
                        uint32_t seen, double wake);

#endif
