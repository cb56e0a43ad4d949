/*
 * Messages, confinement rows and cell names: small values every layer
 * makes (msg.c). iso_msg_destroy, iso_confinement_add and
 * iso_cell_name_valid are public (isolate.h); their definitions live here
 * too, so that no layer calls up to the cell object to make one.
 */
#ifndef ISO_MSG_H
#define ISO_MSG_H

#include "isolate.h"

/* A message of type, stamped with the wall clock now; NULL on OOM. */
iso_msg *iso_msg_new(iso_msg_type type);
/* Set a denial's source, the 6th item of its list ("cell", "kernel" or
 * "host"), replacing whatever was there; a 7th, where the guest was (learn
 * mode), stays. -1 on OOM or a list shorter than 5. */
int iso_denial_mark(iso_msg *m, const char *source);
/* Whether the denial's source is set (a learn-mode cell leaves it empty). */
bool iso_denial_marked(const iso_msg *m);

#endif
