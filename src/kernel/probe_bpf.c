/* The bpf probe for `luaisolate doctor`: a cgroup_sock_addr program
 * loaded, attached to a cgroup of its own and detached; an LSM program
 * loaded and linked; a ring buffer created. Everything is undone. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>

#include "cgroup.h"
#include "probe_result.h"

/* r0 = imm; exit */
static void return_imm(struct bpf_insn insns[2], int imm)
{
    insns[0] = (struct bpf_insn){
        .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = imm};
    insns[1] = (struct bpf_insn){.code = BPF_JMP | BPF_EXIT};
}

/* Attach prog to a fresh cgroup of ours as connect4, then undo it all. */
static bool attach_connect4(int prog, char *why, size_t n)
{
    iso_cgroup cg;
    iso_error err = {0};
    if (iso_cgroup_create("doctor", -1, -1, &cg, &err) < 0) {
        iso_probe_fmt(why, n, "no cgroup to attach to: %s", err.message);
        return false;
    }
    int dir = open(cg.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dir < 0 ? -errno
                     : bpf_prog_attach(prog, dir, BPF_CGROUP_INET4_CONNECT,
                                       BPF_F_ALLOW_MULTI);
    if (rc == 0)
        rc = bpf_prog_detach2(prog, dir, BPF_CGROUP_INET4_CONNECT);
    if (rc < 0)
        iso_probe_fmt(why, n, "attaching it to %s: %s", cg.path, strerror(-rc));
    if (dir >= 0)
        close(dir);
    if (iso_cgroup_remove(&cg, &err) < 0 && rc == 0) {
        iso_probe_fmt(why, n, "%s", err.message);
        rc = -1;
    }
    return rc == 0;
}

static bool try_sock_addr(char *why, size_t n)
{
    struct bpf_insn insns[2];
    LIBBPF_OPTS(bpf_prog_load_opts, opts,
                .expected_attach_type = BPF_CGROUP_INET4_CONNECT);
    return_imm(insns, 1); /* allow */
    int prog = bpf_prog_load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "iso_probe", "GPL",
                             insns, 2, &opts);
    if (prog < 0) {
        iso_probe_fmt(why, n, "loading a cgroup/connect4 program: %s",
                      strerror(-prog));
        return false;
    }
    bool ok = attach_connect4(prog, why, n);
    close(prog);
    return ok;
}

/* Load an allow-everything program on the file_open hook and link it for
 * a moment: the kernel refuses either when BPF-LSM is not active. */
static bool try_lsm(char *why, size_t n)
{
    struct bpf_insn insns[2];
    struct btf *btf = btf__load_vmlinux_btf();
    int id =
        btf ? btf__find_by_name_kind(btf, "bpf_lsm_file_open", BTF_KIND_FUNC)
            : -ENOENT;
    btf__free(btf);
    if (id < 0) {
        iso_probe_fmt(why, n, "no kernel BTF for bpf_lsm_file_open");
        return false;
    }
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_LSM_MAC,
                .attach_btf_id = id);
    return_imm(insns, 0); /* allow */
    int prog =
        bpf_prog_load(BPF_PROG_TYPE_LSM, "iso_probe", "GPL", insns, 2, &opts);
    int link = prog < 0 ? prog : bpf_link_create(prog, 0, BPF_LSM_MAC, NULL);
    if (link < 0)
        iso_probe_fmt(why, n, "%s an LSM program: %s",
                      prog < 0 ? "loading" : "linking", strerror(-link));
    else
        close(link);
    if (prog >= 0)
        close(prog);
    return link >= 0;
}

static bool try_ringbuf(char *why, size_t n)
{
    int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "iso_probe", 0, 0,
                            (unsigned)sysconf(_SC_PAGESIZE), NULL);
    if (fd < 0) {
        iso_probe_fmt(why, n, "creating a ring buffer: %s", strerror(-fd));
        return false;
    }
    close(fd);
    return true;
}

void iso_probe_bpf(iso_value *all, bool *oom)
{
    iso_probe p = iso_probe_begin(all, "bpf", oom);
    char sock[256] = "", lsm[160] = "", ring[160] = "", detail[640];
    bool ok = try_sock_addr(sock, sizeof sock);
    bool has_lsm = try_lsm(lsm, sizeof lsm);
    bool has_ring = try_ringbuf(ring, sizeof ring);
    iso_probe_put_bool(&p, "cgroup_sock_addr", ok);
    iso_probe_put_bool(&p, "lsm", has_lsm);
    iso_probe_put_bool(&p, "ringbuf", has_ring);
    iso_probe_fmt(
        detail, sizeof detail, "cgroup_sock_addr: %s; lsm: %s; ringbuf: %s",
        ok ? "loaded, attached, detached" : sock,
        has_lsm ? "loaded, linked" : lsm, has_ring ? "created" : ring);
    iso_probe_verdict(&p, ok, detail,
                      "BPF network rules need BPF_PROG_TYPE_CGROUP_SOCK_ADDR "
                      "(CONFIG_CGROUP_BPF), a writable cgroup v2 and root or "
                      "CAP_BPF + CAP_NET_ADMIN");
}