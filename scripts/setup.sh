#!/usr/bin/env bash
# Install what the build needs (only what is missing) and build build/.
# Idempotent; run as root on a fresh Debian 12 (sudo is used if not root and
# something must be installed). Usage: scripts/setup.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Everything the build and the tests need from Debian, in one place.
PACKAGES=(
    build-essential cmake pkg-config git
    lua5.4 liblua5.4-dev lua-busted luarocks
    lua-argparse lua-cjson lua-ldoc groff-base
    lua-luaossl                 # SHA-256 of shard manifests (isolate.shard)
    lua-filesystem              # policy names in the search path, for "did you mean"
    lua-luv lua-cqueues         # the event-loop adapters (isolate.luv, isolate.cqueues) and their specs
    slurm-wlm munge             # the real Slurm cluster of spec/slurm_spec.lua
    python3 python3-dev
    python3-numpy python3-yaml  # third-party extensions: spec/extensions_spec.lua
    python3-prometheus-client   # reads sandbox.metrics() back: spec/metrics_spec.lua
    libpython3.11-testsuite     # CPython's own tests: spec/compat
    libseccomp-dev libmsgpack-dev libbpf-dev bpftool
    clang libclang-rt-14-dev
    clang-format
)
# Debian's CPython: the machine may have a pyenv `python3` earlier on PATH,
# which must never be the one the default build embeds.
PYTHON=/usr/bin/python3

say() { printf 'setup: %s\n' "$*"; }

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    { "${sudo[@]}" apt-get update -qq &&
        "${sudo[@]}" apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}"; } \
        >"$log" 2>&1 || { cat "$log"; say "apt-get failed"; exit 1; }
else
    say "all ${#PACKAGES[@]} packages present"
fi

say "configuring build/ (RelWithDebInfo, -Werror, $PYTHON)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DISOLATE_WERROR=ON \
    -DISOLATE_SANITIZE=OFF -DISOLATE_TESTS=ON -DISOLATE_PYTHON="$PYTHON"
say "building build/ with $(nproc) jobs"
cmake --build build -j "$(nproc)"
say "ok: build/luaisolate, build/isolate/core.so"
