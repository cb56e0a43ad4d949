/*
 * What the kernel layers can do on this host, looked at without side
 * effects: for `Policy:explain()` and `luaisolate check`, which must never
 * load BPF programs or make cgroups (iso_kernel_info_get loads the network
 * guard to know). Landlock and seccomp are asked directly (neither call
 * confines anyone); the BPF guard is the cached outcome when this process
 * has opened it already, and otherwise what it needs, looked at: a build
 * with it, cgroup v2, the kernel's cgroup socket-address hooks, and the
 * privilege to load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "confine.h"
#include "landlock.h"
#include "netguard.h"
#include "probe.h"

#define CAP_SYS_ADMIN_BIT 21
#define CAP_BPF_BIT 39

/* The hook cgroup connect/sendmsg/bind programs run from (kernel/bpf/
 * cgroup.c); a kernel without CONFIG_CGROUP_BPF has no such symbol. */
static bool kernel_has_sock_addr_hook(void)
{
    FILE *f = fopen("/proc/kallsyms", "re");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, " __cgroup_bpf_run_filter_sock_addr") != NULL;
    fclose(f);
    return found;
}

static bool may_load_bpf(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return false;
    char line[256];
    unsigned long long eff = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "CapEff: %llx", &eff) == 1)
            break;
    fclose(f);
    return (eff >> CAP_BPF_BIT & 1) || (eff >> CAP_SYS_ADMIN_BIT & 1);
}

/* Why the guard could not load here, or NULL when nothing says so. */
static const char *bpf_lacks(void)
{
    char mount[ISO_PATH_MAX];
    iso_error err = {0};
    if (iso_cgroup_mount(mount, sizeof mount, &err) < 0)
        return "no cgroup v2 filesystem is mounted";
    if (!kernel_has_sock_addr_hook())
        return "the kernel has no cgroup BPF socket hooks (CONFIG_CGROUP_BPF)";
    if (!may_load_bpf())
        return "this process may not load BPF programs (CAP_BPF or "
               "CAP_SYS_ADMIN)";
    return NULL;
}

void iso_kernel_info_look(iso_kernel_info *ki)
{
    memset(ki, 0, sizeof *ki);
    int abi = iso_landlock_abi();
    ki->landlock_abi = abi > 0 ? abi : 0;
    ki->seccomp = iso_seccomp_missing() == NULL;
    ki->bpf_looked = true;
    const char *why = iso_netguard_why(); /* a failed open, or not built */
    if (iso_netguard_available()) {
        ki->bpf = true;
        ki->bpf_looked = false;
    } else if (why) {
        ki->bpf_looked = false;
    } else {
        why = bpf_lacks();
        ki->bpf = why == NULL;
    }
    if (!ki->bpf)
        snprintf(ki->bpf_why, sizeof ki->bpf_why, "%.255s", why);
}

size_t iso_microvm_lacks(const char **out, size_t max)
{
    struct stat st;
    char path[ISO_PATH_MAX];
    const char *lacks[3];
    size_t n = 0;
    lacks[n++] = "runtime"; /* no build has one yet */
    if (stat("/dev/kvm", &st) != 0 || access("/dev/kvm", R_OK | W_OK) != 0)
        lacks[n++] = "/dev/kvm";
    if (!iso_find_vmm(path, sizeof path))
        lacks[n++] = "vmm";
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = lacks[i];
    return n;
}
