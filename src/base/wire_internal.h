/*
 * What the wire's files share and nobody else needs: wire_rules.c answers
 * for the frame rules, wire_encode.c packs, wire_decode.c unpacks and
 * wire_io.c moves frames over a socket.
 */
#ifndef ISO_WIRE_INTERNAL_H
#define ISO_WIRE_INTERNAL_H

#include <stdbool.h>

#include "wire.h"

/* True when type is an iso_frame_type. */
bool iso_frame_type_known(uint64_t type);
/* How deep f's value may nest for this (known) type. */
int iso_frame_value_depth(int type);
/* What is wrong with f for its (known) type, or NULL when nothing. */
const char *iso_frame_problem(const iso_frame *f);
/* ISO_MEMORY, -1. */
int iso_wire_oom(iso_error *err);
/* iso_frame_encode with room zero bytes before the body (at most 8, for a
 * prefix the caller fills in): *len counts them. */
int iso_frame_pack(const iso_frame *f, size_t room, char **out, size_t *len,
                   iso_error *err);

#endif
