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
# Environment: FUZZ_SECONDS (per target), and FUZZ_TARGETS, FUZZ_CC,
# FUZZ_CXX, FUZZ_JOBS as tests/fuzz/common.sh says.
# Also the CTest test `fuzz_short` (label `fuzz`) of a build configured with
# -DFEDGE_BUILD_FUZZERS=ON, which passes that build directory.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(realpath -m "${1:-$root/build-fuzz}")"
seconds="${FUZZ_SECONDS:-20}"
fuzz_dir="$build/tests/fuzz"

log() { printf '[run_short] %s\n' "$*"; }

# --- Build -----------------------------------------------------------------
source "$root/tests/fuzz/common.sh"
start=$SECONDS
fuzz_build "$root" "$build" || { log "build failed"; exit 1; }
log "built in $((SECONDS - start)) s"

# --- Run -------------------------------------------------------------------
fuzz_targets "$fuzz_dir"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$fuzz_dir/logs"
failed=()
for target in "${TARGETS[@]}"; do
  [[ -n "$target" ]] || continue
  artifacts="$fuzz_dir/artifacts/$target"
  rm -rf "$artifacts"
  mkdir -p "$artifacts" "$scratch/$target"
  target_log="$fuzz_dir/logs/$target.log"
  fuzz_command "$root" "$fuzz_dir" "$target" "$scratch/$target" "$artifacts"
  "${COMMAND[@]}" -max_total_time="$seconds" >"$target_log" 2>&1
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
