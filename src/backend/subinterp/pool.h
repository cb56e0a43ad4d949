/*
 * The sub-interpreter backend's warm pool (pool.c), as the rest of the
 * backend sees it. The cells in it are the host's: the host hands the pool
 * the function that makes one (the warm_pool op), so the pool never
 * reaches into the cell object.
 */
#ifndef ISO_SUB_POOL_H
#define ISO_SUB_POOL_H

#include <stddef.h>

#include "backend.h"

/* The warm_pool op: keep target cells warm, each made by make (a started
 * cell of this backend, unnamed, without rules, and its handle; NULL with
 * err when it could not). 0, or -1 with err. */
int iso_sub_pool_configure(size_t target,
                           iso_cell *(*make)(iso_backend_cell **h,
                                             iso_error *err),
                           iso_error *err);
/* The take_warm op: a warm cell, or NULL when there is none. */
iso_cell *iso_pool_take(void);

#endif
