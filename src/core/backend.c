/*
 * Backend names and availability. Availability is probed, never assumed:
 * a backend this build or host cannot run fails closed with what is
 * missing, and nothing ever falls back to a weaker backend. The registry of
 * their ops, and the warm pool's maker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell_internal.h"
#include "probe.h"

static const char *const backend_names[ISO_BACKEND_COUNT] = {
    [ISO_BACKEND_SUBINTERPRETER] = "subinterpreter",
    [ISO_BACKEND_PROCESS] = "process",
    [ISO_BACKEND_MICROVM] = "microvm",
};

const char *iso_backend_name(iso_backend b)
{
    return (unsigned)b < ISO_BACKEND_COUNT ? backend_names[b] : "unknown";
}

int iso_backend_from_name(const char *name)
{
    for (int b = 0; name && b < ISO_BACKEND_COUNT; b++)
        if (strcmp(name, backend_names[b]) == 0)
            return b;
    return -1;
}

static int microvm_missing(iso_error *err)
{
    struct stat st;
    bool kvm =
        stat("/dev/kvm", &st) == 0 && access("/dev/kvm", R_OK | W_OK) == 0;
    char path[ISO_PATH_MAX];
    const char *vmm = iso_find_vmm(path, sizeof path);
    return iso_error_set(
        err, ISO_NOT_IMPLEMENTED,
        "backend 'microvm' is not available: this build has no microvm "
        "runtime; this host has %s and %s%s; use backend='process' for an "
        "OS boundary",
        kvm ? "/dev/kvm" : "no usable /dev/kvm",
        vmm ? "a VMM binary: "
            : "no VMM binary (firecracker, "
              "cloud-hypervisor, qemu-system-x86_64)",
        vmm ? vmm : "");
}

/* The backends this build has, by kind (NULL: none). Only a test changes
 * a slot (iso_backend_ops_set), before any cell of that kind exists. */
static const iso_cell_ops *registry[ISO_BACKEND_COUNT] = {
    [ISO_BACKEND_SUBINTERPRETER] = &iso_subinterpreter_ops,
    [ISO_BACKEND_PROCESS] = &iso_process_ops,
};

const iso_cell_ops *iso_backend_ops(iso_backend b)
{
    return (unsigned)b < ISO_BACKEND_COUNT ? registry[b] : NULL;
}

void iso_backend_ops_set(iso_backend b, const iso_cell_ops *ops)
{
    if ((unsigned)b < ISO_BACKEND_COUNT)
        registry[b] = ops;
}

int iso_backend_check(iso_backend b, iso_error *err)
{
    const iso_cell_ops *ops = iso_backend_ops(b);
    if (ops)
        return ops->check ? ops->check(err) : 0;
    if (b == ISO_BACKEND_MICROVM)
        return microvm_missing(err);
    return iso_error_set(err, ISO_INVALID_ARGUMENT, "unknown backend %d",
                         (int)b);
}

/* The sub-interpreter backend's warm pool (iso_pool_configure is that
 * pool's, public): its cells are the host's, made here. */
static iso_cell *make_warm(iso_backend_cell **handle, iso_error *err)
{
    return iso_cell_new_blank(ISO_BACKEND_SUBINTERPRETER, handle, err);
}

int iso_pool_configure(size_t target, iso_error *err)
{
    const iso_cell_ops *ops = iso_backend_ops(ISO_BACKEND_SUBINTERPRETER);
    return ops->warm_pool(target, make_warm, err);
}
