/*
 * The host's end. Three mechanisms, so that no guest process outlives a
 * host however it ends:
 *   - a host that ends normally, errors, calls os.exit or gets a
 *     termination signal runs iso_shutdown (atexit, armed by the process
 *     backend once it starts a zygote (proc.c), module collection,
 *     sandbox.shutdown(), the luaisolate host's signal thread);
 *   - a host killed outright (SIGKILL, a crash) runs nothing: its zygote
 *     gets PR_SET_PDEATHSIG and sees its control socket hang up, kills the
 *     host's cells cgroup and exits; each cell has PDEATHSIG on the zygote;
 *   - what is left after that (the host's own cgroup directories) is
 *     removed by the next host start (cgroup_stale.c).
 */

#include "cell_internal.h"
#include "cgroup.h"
#include "isolate.h"

void iso_shutdown(bool leave_host)
{
    iso_cgroup_cells_end(); /* every process cell and its descendants */
    iso_process_end();      /* the zygote (its cells are gone already) */
    if (leave_host)
        iso_cgroup_host_leave();
}

int iso_clean_stale(void (*fn)(const char *path, void *ud), void *ud,
                    iso_error *err)
{
    return iso_cgroup_clean_stale(fn, ud, err);
}
