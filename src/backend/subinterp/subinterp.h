/*
 * What the sub-interpreter backend's files share (py_cell.c holds its ops
 * table): the host-side limits of a cell (limits.c) and the abandoned
 * guests (abandoned.c).
 */
#ifndef ISO_SUBINTERP_H
#define ISO_SUBINTERP_H

#include "cell.h"
#include "guest.h"

/* limits.mem and the thread's kernel layers, before any guest code (the
 * confine op): 0, or -1 with err. */
int iso_sub_confine(iso_cell *c, iso_error *err);
/* Which of cpu_ms and mem the running request passed (the over op). */
iso_kind iso_sub_over(iso_cell *c);
/* What the cell's memory account holds, in bytes (the mem_bytes op). */
int64_t iso_sub_mem_bytes(const iso_cell *c);

/* The host gave up on c's thread: keep c (a reference of the list's own)
 * until its thread ends, unless it has ended already (c->guest.py NULL). */
void iso_abandoned_add(iso_cell *c);
/* c's thread ends (abandoned or not): its entry, if any, goes. */
void iso_abandoned_thread_ends(iso_cell *c);
/* Interrupter, with c's GIL: park the abandoned guest's threads for good
 * at their next trace event. */
void iso_abandoned_park(iso_cell *c, iso_py_state *p);

#endif
