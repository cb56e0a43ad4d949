/*
 * The backend registry (backend.c): which ops serve each backend kind. The
 * cell object finds a cell's backend here; a test puts a fake backend in
 * an empty slot (spec/c/test_cell.c).
 */
#ifndef ISO_REGISTRY_H
#define ISO_REGISTRY_H

#include "backend.h"

/* The ops of backend b (NULL: none in this build). */
const iso_cell_ops *iso_backend_ops(iso_backend b);
void iso_backend_ops_set(iso_backend b, const iso_cell_ops *ops);

#endif
