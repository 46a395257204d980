#!/bin/sh
# Builds the model-loader fuzz target (clang, libFuzzer, ASan+UBSan) and runs
# it for SECONDS (default 60) from the seed corpus in tests/fuzz/corpus.
#   tests/fuzz/run_fuzz.sh 300
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_JOBS (parallel
# fuzzing processes, default 1).  New interesting inputs go to a scratch
# directory that is deleted afterwards; crashes are kept in
# $FUZZ_BUILD_DIR/fuzz-artifacts/ and make the script exit non-zero.
set -eu
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=${FUZZ_JOBS:-1}
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Dfuzz=true -Dexamples=false -Dbench=false \
        -Dbuildtype=debugoptimized -Db_lundef=false
fi
ninja -C "$build" tests/fuzz/fuzz_load
mkdir -p "$build/fuzz-artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
export OMP_NUM_THREADS=1
set -- -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/" "$work" "$root/tests/fuzz/corpus"
if [ "$jobs" -gt 1 ]; then
    set -- -jobs="$jobs" -workers="$jobs" "$@"
fi
"$build/tests/fuzz/fuzz_load" "$@"
