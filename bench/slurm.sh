#!/usr/bin/env bash
# A sharded map on a one-node Slurm cluster next to the same map run
# locally (README, "Scale out"). Root, slurm-wlm and munge (scripts/setup.sh).
#   bench/slurm.sh [BUILD_DIR] [REPEATS]
# Per backend and run: the local map (all 200 items of spec/scale/map.lua in
# one luaisolate run), then `submit --slurm --shards 4` timed from the
# command to the gather job's results (squeue empty), the submit command
# alone, and `luaisolate gather` alone on the finished folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build} repeats=${2:-3}
host=$PWD/$build/luaisolate map=$PWD/spec/scale/map.lua
tmp=$(mktemp -d)
chmod 711 "$tmp" # munged: its socket's folders must be searchable
trap 'scripts/slurm-local.sh stop "$tmp/cluster"; rm -rf "$tmp"' EXIT
eval "$(scripts/slurm-local.sh start "$tmp/cluster")"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", 200 / (b - a) }'; }

printf '%-15s %-6s %9s %8s %9s %9s %8s %9s\n' backend run local_s local/s \
    submit_s slurm_s slurm/s gather_s
for backend in subinterpreter process; do
    for ((r = 1; r <= repeats; r++)); do
        out=$tmp/local-$backend-$r
        t0=$(now)
        ISOLATE_SHARD_OUT=$out "$host" run "$map" "$backend" >/dev/null
        t1=$(now)
        out=$tmp/slurm-$backend-$r
        t2=$(now)
        ids=$("$host" submit --slurm --shards 4 --out "$out" "$map" "$backend")
        t3=$(now)
        ids=$(awk '{ print $2 }' <<<"$ids" | paste -sd,)
        while [[ -n $(squeue -h -o %i -j "$ids") ]]; do sleep 0.1; done
        t4=$(now)
        [[ $(wc -l <"$out/results.jsonl") == 200 ]] || { echo "bench: no results" >&2; exit 1; }
        t5=$(now)
        "$host" gather --out "$tmp/g.jsonl" "$out" 2>/dev/null
        t6=$(now)
        printf '%-15s %-6s %9s %8s %9s %9s %8s %9s\n' "$backend" "$r" "$(secs "$t0" "$t1")" \
            "$(rate "$t0" "$t1")" "$(secs "$t2" "$t3")" "$(secs "$t2" "$t4")" \
            "$(rate "$t2" "$t4")" "$(secs "$t5" "$t6")"
    done
done
