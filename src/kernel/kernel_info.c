/*
 * What this kernel offers the host (iso_kernel_info_get: Landlock's ABI,
 * seccomp, the BPF guard, which it loads), and the host's own cgroup for
 * cell threads (iso_thread_cgroups_enable).
 */
#include <stdio.h>
#include <string.h>

#include "cgroup.h"
#include "confine.h"
#include "landlock.h"
#include "netguard.h"

int iso_thread_cgroups_enable(iso_error *err)
{
    return iso_cgroup_host_enter(err);
}

bool iso_thread_cgroups_enabled(void)
{
    return iso_cgroup_host_entered();
}

void iso_kernel_info_get(iso_kernel_info *ki)
{
    memset(ki, 0, sizeof *ki);
    int abi = iso_landlock_abi();
    ki->landlock_abi = abi > 0 ? abi : 0;
    ki->seccomp = iso_seccomp_missing() == NULL;
    iso_error err = {0};
    ki->bpf = iso_netguard_open(&err) == 0;
    snprintf(ki->bpf_why, sizeof ki->bpf_why, "%.255s", err.message);
    iso_error_clear(&err);
}
