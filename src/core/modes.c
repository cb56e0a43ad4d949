/*
 * The rollout mode, one per host process: "dev" (the default: a layer this
 * host lacks is reported, the cell runs), "hardened" (a cell that would run
 * without one is refused) or "compat" (the minimal seccomp list). The names
 * live here only; the binding exports them to Lua as core.modes.
 */
#include <stdatomic.h>
#include <string.h>

#include "cell_internal.h"

static _Atomic int mode = ISO_MODE_DEV;

static const char *const mode_names[] = {
    [ISO_MODE_DEV] = "dev",
    [ISO_MODE_HARDENED] = "hardened",
    [ISO_MODE_COMPAT] = "compat",
};
#define MODE_COUNT ((int)(sizeof mode_names / sizeof *mode_names))

const char *iso_mode_name_at(int i)
{
    return i >= 0 && i < MODE_COUNT ? mode_names[i] : NULL;
}

int iso_mode_set(const char *name, iso_error *err)
{
    for (int i = 0; name && i < MODE_COUNT; i++)
        if (strcmp(name, mode_names[i]) == 0) {
            atomic_store(&mode, i);
            return 0;
        }
    return iso_error_set(err, ISO_INVALID_ARGUMENT,
                         "mode must be dev, hardened or compat, got '%s'",
                         name ? name : "(null)");
}

iso_mode iso_mode_get(void)
{
    return (iso_mode)atomic_load(&mode);
}

const char *iso_mode_name(void)
{
    return mode_names[iso_mode_get()];
}

bool iso_mode_hardened(void)
{
    return iso_mode_get() == ISO_MODE_HARDENED;
}
