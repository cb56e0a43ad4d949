/*
 * Backend names and availability. Availability is probed, never assumed:
 * a backend this build or host cannot run fails closed with what is
 * missing, and nothing ever falls back to a weaker backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell.h"

static const char *const backend_names[ISO_BACKEND_COUNT] = {
    [ISO_BACKEND_SUBINTERPRETER] = "subinterpreter",
    [ISO_BACKEND_PROCESS] = "process",
    [ISO_BACKEND_MICROVM] = "microvm",
};

/* VMMs a microvm runtime could drive, looked up on PATH. */
static const char *const vmm_binaries[] = {"firecracker", "cloud-hypervisor",
                                           "qemu-system-x86_64", NULL};

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

static bool on_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[4096];
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, prog);
        if (n > 0 && access(buf, X_OK) == 0)
            return true;
        p += n + (p[n] == ':');
    }
    return false;
}

static const char *find_vmm(void)
{
    for (int i = 0; vmm_binaries[i]; i++)
        if (on_path(vmm_binaries[i]))
            return vmm_binaries[i];
    return NULL;
}

static int microvm_missing(iso_error *err)
{
    struct stat st;
    bool kvm =
        stat("/dev/kvm", &st) == 0 && access("/dev/kvm", R_OK | W_OK) == 0;
    const char *vmm = find_vmm();
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

int iso_backend_check(iso_backend b, iso_error *err)
{
    switch (b) {
    case ISO_BACKEND_SUBINTERPRETER:
        return 0;
    case ISO_BACKEND_PROCESS:
        return iso_process_backend_check(err);
    case ISO_BACKEND_MICROVM:
        return microvm_missing(err);
    default:
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "unknown backend; valid backends: "
                             "subinterpreter, process, microvm");
    }
}
