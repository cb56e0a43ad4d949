/*
 * What the sub-interpreter backend's files share (py_cell.c holds its ops
 * table): the host-side limits of a cell (limits.c).
 */
#ifndef ISO_SUBINTERP_H
#define ISO_SUBINTERP_H

#include "cell.h"

/* limits.mem and the thread's kernel layers, before any guest code (the
 * confine op): 0, or -1 with err. */
int iso_sub_confine(iso_cell *c, iso_error *err);
/* Which of cpu_ms and mem the running request passed (the over op). */
iso_kind iso_sub_over(iso_cell *c);
/* What the cell's memory account holds, in bytes (the mem_bytes op). */
int64_t iso_sub_mem_bytes(const iso_cell *c);

#endif
