/*
 * The rollout mode, one per host process: "dev" (the default: a layer this
 * host lacks is reported, the cell runs), "hardened" (a cell that would run
 * without one is refused), "compat" (the minimal seccomp list) or "learn"
 * (what the rules would deny is allowed and recorded: isolate.learn writes
 * the policy from it). The names live here only; the binding exports them
 * to Lua as core.modes.
 */
#include <stdatomic.h>
#include <string.h>

#include "cell_internal.h"

static _Atomic int mode = ISO_MODE_DEV;

static const char *const mode_names[] = {
    [ISO_MODE_DEV] = "dev",
    [ISO_MODE_HARDENED] = "hardened",
    [ISO_MODE_COMPAT] = "compat",
    [ISO_MODE_LEARN] = "learn",
};
#define MODE_COUNT ((int)(sizeof mode_names / sizeof *mode_names))

const char *iso_mode_name_at(int i)
{
    return i >= 0 && i < MODE_COUNT ? mode_names[i] : NULL;
}

/* A host that chose hardened never learns: learning turns enforcement
 * into a record, which is what hardened promises never happens. It leaves
 * hardened for dev first, on purpose. */
int iso_mode_set(const char *name, iso_error *err)
{
    for (int i = 0; name && i < MODE_COUNT; i++)
        if (strcmp(name, mode_names[i]) == 0) {
            if (i == ISO_MODE_LEARN && iso_mode_hardened())
                return iso_error_set(err, ISO_INVALID_ARGUMENT,
                                     "learn mode is refused in hardened mode "
                                     "(it allows what the rules deny)");
            atomic_store(&mode, i);
            return 0;
        }
    return iso_error_set(err, ISO_INVALID_ARGUMENT,
                         "mode must be dev, hardened, compat or learn, got "
                         "'%s'",
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

bool iso_mode_learning(void)
{
    return iso_mode_get() == ISO_MODE_LEARN;
}
