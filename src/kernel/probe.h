/*
 * Host probes for `luaisolate doctor`: what this kernel and machine can
 * enforce, found by trying each layer rather than by reading configuration
 * (no Lua, no Python here: the python row is made from the facts the
 * caller passes in).
 *
 * Whatever could confine the caller (seccomp, Landlock, no_new_privs, a
 * user namespace) is tried in a short-lived forked child, so the process
 * that probes is never confined by its own probes. BPF programs and cgroup
 * directories made for a probe are removed before it returns; children
 * are always reaped (one that does not finish within two seconds is
 * killed).
 */
#ifndef ISO_PROBE_H
#define ISO_PROBE_H

#include "isolate.h"

/*
 * Run every probe and set *out (initialised; its old contents are freed)
 * to an ISO_MAP from probe name to an ISO_MAP:
 *
 *   {ok = bool, detail = text, advice = text (only when not ok), ...}
 *
 * Probes and their own fields:
 *   python        version, cell_mode, own_gil (from *python, the
 *                 runtime's facts: iso_runtime_info_get)
 *   seccomp       libseccomp (its version)
 *   no_new_privs  -
 *   landlock      abi (0 when none), fs, net (ABI >= 4), scope (ABI >= 6)
 *   bpf           cgroup_sock_addr, lsm, ringbuf; ok = cgroup_sock_addr
 *   cgroup        mount ("" when none), writable, threaded, controllers (a
 *                 list of the v2 root's controller names); ok = writable
 *   userns        -
 *   kvm           api (KVM_GET_API_VERSION, 0 when /dev/kvm is unusable)
 *   vmm           binary, path ("" when none is on PATH)
 *
 * A missing layer is a result, not an error: this returns -1 (err set to
 * ISO_MEMORY, *out NIL) only when memory runs out. Blocks while the
 * children run and the kernel loads the probe programs: tens of
 * milliseconds, two seconds per child at worst. Forks: call it where a
 * fork is safe (the children only make system calls, then _exit).
 */
int iso_probe_host(const iso_runtime_info *python, iso_value *out,
                   iso_error *err);

/* The first VMM a microvm runtime could drive (firecracker,
 * cloud-hypervisor, qemu-system-x86_64) found on PATH, its full path in
 * path; NULL (path "") when there is none. */
const char *iso_find_vmm(char *path, size_t n);

#endif
