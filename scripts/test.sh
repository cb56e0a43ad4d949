#!/usr/bin/env bash
# Build and run every test suite (README's second line; CI runs this):
#   build/        scripts/setup.sh, warnings as errors, Debian's CPython;
#   build-asan/   ASan + UBSan: C unit tests and specs in the instrumented host;
#   build-py313/  a shared CPython >= 3.13 (own-GIL cells), when one is found;
#   build-fuzz/   clang + libFuzzer: the wire frame decoder fuzzed for ~30 s.
# The first three run every ctest test, labels included: the specs again
# under garbage-collector stress (label gc, spec/gc_helper.lua; under ASan
# in build-asan/) and the include-layer and file-length check (label check,
# scripts/check_layers.lua).
# Every suite runs even if an earlier one failed. Each ctest prints its own
# summary; the LAST line is that summary totalled over all suites, in ctest's
# own words, so a reader of the closing line sees a failure in any suite, not
# only in the one that happened to run last. A failed build, or a suite that
# produced no ctest summary, counts as one failed test. Exit status: 0 only if
# everything built and passed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0 report=()

say() { printf 'test: %s\n' "$*"; }

# build DIR CMAKE_ARGS...: configure and build DIR.
build() {
    local dir=$1
    shift
    say "building $dir/"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DISOLATE_TESTS=ON "$@" &&
        cmake --build "$dir" -j "$(nproc)"
}

# suite DIR BUILD_STATUS [CTEST_ARGS...]: run DIR's ctest, add to the totals.
suite() {
    local dir=$1 built=$2 rc line
    shift 2
    if ((built != 0)); then
        failed=$((failed + 1)) report+=("$dir: build FAILED")
    fi
    say "ctest in $dir/"
    ctest --test-dir "$dir" --output-on-failure "$@" 2>&1 | tee "$tmp/ctest.log" &&
        rc=0 || rc=$?
    line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+$' \
        "$tmp/ctest.log" | tail -n 1) || true
    if [[ $line =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]]; then
        local f=${BASH_REMATCH[1]} n=${BASH_REMATCH[2]}
        ((rc == 0 || f > 0)) || f=1 n=$((n + 1)) # ctest failed, yet no test did
        failed=$((failed + f)) passed=$((passed + n - f))
        report+=("$dir: $line")
    else
        failed=$((failed + 1)) report+=("$dir: ctest ran no test (exit $rc)")
    fi
}

# find_py313: print a CPython >= 3.13 built with a shared libpython, or print
# why none qualifies and return 1.
find_py313() {
    local root=${PYENV_ROOT:-~/.pyenv} c exe why=() cands=()
    c=$(command -v python3.13) && cands+=("$c")
    for c in "$root"/versions/3.13*/bin/python3.13; do
        [[ -x $c ]] && cands+=("$c")
    done
    local check='import os, sys, sysconfig as s
v = s.get_config_var
if sys.version_info < (3, 13):
    sys.exit("is %d.%d" % sys.version_info[:2])
if not v("Py_ENABLE_SHARED") or not os.path.isfile(
        os.path.join(v("LIBDIR") or "", v("INSTSONAME") or "")):
    sys.exit("has no shared libpython (not built with --enable-shared)")
print(sys.executable)'
    for c in "${cands[@]}"; do
        if exe=$("$c" -c "$check" 2>"$tmp/why"); then
            echo "$exe"
            return 0
        fi
        why+=("$c: $(head -n 1 "$tmp/why")")
    done
    ((${#why[@]})) || why=("no python3.13 on PATH or in $root/versions/3.13*")
    local IFS=';'
    echo "${why[*]}"
    return 1
}

if scripts/setup.sh; then built=0; else built=1; fi
suite build "$built"

# No -Werror here: GCC 12 gives false -Wmaybe-uninitialized/-Wstringop-*
# under -fsanitize; build/ already holds the line on warnings.
if build build-asan -DISOLATE_SANITIZE=ON -DISOLATE_PYTHON=/usr/bin/python3; then
    built=0
else built=1; fi
suite build-asan "$built"

if py=$(find_py313); then
    if build build-py313 -DISOLATE_WERROR=ON -DISOLATE_PYTHON="$py"; then
        built=0
    else built=1; fi
    # -LE rock: the rock always builds with Debian's CPython; build/ ran it.
    suite build-py313 "$built" -LE rock
else
    say "own-GIL run (build-py313/) skipped: no shared CPython >= 3.13: $py"
    report+=("build-py313: skipped")
fi

# Only fuzz_frame is built here (clang, -fsanitize=fuzzer); the suites above
# already build and test everything else. A crash, leak or UB report found
# while fuzzing fails the suite; the input is kept in build-fuzz/fuzz/artifacts.
say "building build-fuzz/"
if CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DISOLATE_FUZZ=ON && cmake --build build-fuzz --target fuzz_frame -j "$(nproc)"; then
    built=0
else built=1; fi
suite build-fuzz "$built" -L fuzz

total=$((passed + failed))
pct=$(((passed * 200 + total) / (2 * total))) # rounded, as ctest does
((failed == 0 || pct < 99)) || pct=99
echo
printf 'test: %s\n' "${report[@]}"
echo "$pct% tests passed, $failed tests failed out of $total"
((failed == 0))
