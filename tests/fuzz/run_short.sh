#!/usr/bin/env bash
# Short fuzzing for CI: builds every libFuzzer target (tests/fuzz/) with
# clang in a build directory of its own, then runs each for FUZZ_SECONDS
# (default 20) on one core, starting from its corpus: the seeds the build
# generates, the committed regression inputs (tests/fuzz/corpus/<target>/)
# and a scratch directory for what it finds. Fails (exit 1) when any target
# crashes, reports a sanitizer error, breaks a property, hangs or runs out
# of memory; the input is kept in <build>/tests/fuzz/artifacts/<target>/ and
# the log in <build>/tests/fuzz/logs/<target>.log.
#
#   tests/fuzz/run_short.sh [BUILD_DIR]      (default: <source>/build-fuzz)
#
# Environment: FUZZ_SECONDS (per target), FUZZ_TARGETS (a space-separated
# subset), FUZZ_CC / FUZZ_CXX (compilers for a new build directory; default
# clang-14 / clang++-14), FUZZ_JOBS (ninja jobs, default 1).
# Also the CTest test `fuzz_short` (label `fuzz`) of a build configured with
# -DFEDGE_BUILD_FUZZERS=ON, which passes that build directory.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(realpath -m "${1:-$root/build-fuzz}")"
seconds="${FUZZ_SECONDS:-20}"
fuzz_dir="$build/tests/fuzz"

log() { printf '[run_short] %s\n' "$*"; }

# --- Build -----------------------------------------------------------------
# Lets ccache share results between clones (as scripts/build.sh does).
export CCACHE_BASEDIR="$root"
export CCACHE_NOHASHDIR=1
start=$SECONDS
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_C_COMPILER="${FUZZ_CC:-clang-14}" \
    -DCMAKE_CXX_COMPILER="${FUZZ_CXX:-clang++-14}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFEDGE_BUILD_FUZZERS=ON >/dev/null ||
    { log "cmake failed"; exit 1; }
else
  cmake -S "$root" -B "$build" -DFEDGE_BUILD_FUZZERS=ON >/dev/null ||
    { log "cmake failed"; exit 1; }
fi
ninja -C "$build" -j "${FUZZ_JOBS:-1}" fedge_fuzzers ||
  { log "build failed"; exit 1; }
log "built in $((SECONDS - start)) s"

# --- Run -------------------------------------------------------------------
if [[ -n "${FUZZ_TARGETS:-}" ]]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets <"$fuzz_dir/fuzzers.txt"
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$fuzz_dir/logs"
failed=()
for target in "${targets[@]}"; do
  [[ -n "$target" ]] || continue
  artifacts="$fuzz_dir/artifacts/$target"
  rm -rf "$artifacts"
  mkdir -p "$artifacts" "$scratch/$target"
  corpora=("$scratch/$target" "$fuzz_dir/seeds/$target")
  if [[ -d "$root/tests/fuzz/corpus/$target" ]]; then
    corpora+=("$root/tests/fuzz/corpus/$target")
  fi
  target_log="$fuzz_dir/logs/$target.log"
  "$fuzz_dir/$target" -max_total_time="$seconds" -timeout=25 \
    -rss_limit_mb=2560 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${corpora[@]}" >"$target_log" 2>&1
  rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$target_log")"
  if [[ $rc -ne 0 || -n "$(ls -A "$artifacts")" ]]; then
    failed+=("$target")
    log "FAIL $target (exit $rc); log: $target_log"
    grep -E 'ERROR|runtime error|property failed|Test unit written' \
      "$target_log" | head -n 5 | sed 's/^/    /'
  else
    log "ok   $target: ${execs:-?} inputs in ${seconds} s"
  fi
done
log "total $((SECONDS - start)) s"
if [[ ${#failed[@]} -gt 0 ]]; then
  log "failed: ${failed[*]}"
  exit 1
fi
