#!/usr/bin/env bash
# Long fuzzing: every libFuzzer target of tests/fuzz/ for FUZZ_RUNS inputs
# (default 10 million) each, one target at a time on one core, starting from
# its seeds and committed regression inputs. Prints one line per target:
#   target=NAME execs=N crashes=K
# where N is the inputs executed (libFuzzer's stat::number_of_executed_units;
# fewer than FUZZ_RUNS when a crash stopped it) and K the crash, leak,
# timeout and out-of-memory inputs it saved to
# <build>/tests/fuzz/bench/<target>/artifacts/ (libFuzzer stops at the
# first, so K is 0 or 1). Logs: <build>/tests/fuzz/bench/<target>/log.
#
#   bench/fuzz.sh [BUILD_DIR]                (default: <source>/build-fuzz)
#
# Environment: FUZZ_RUNS, FUZZ_TARGETS (a space-separated subset),
# FUZZ_CC / FUZZ_CXX (compilers for a new build directory; default clang-14 /
# clang++-14), FUZZ_JOBS (ninja jobs, default 1). Hours in total: a
# target runs a few hundred (wire_fuzz, secagg_fuzz) to tens of thousands
# of inputs per second; tests/fuzz/README.md (Speed) has the figures.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(realpath -m "${1:-$root/build-fuzz}")"
runs="${FUZZ_RUNS:-10000000}"
fuzz_dir="$build/tests/fuzz"

source "$root/tests/fuzz/common.sh"
fuzz_build "$root" "$build" >&2 || exit 1
fuzz_targets "$fuzz_dir"
for target in "${TARGETS[@]}"; do
  [[ -n "$target" ]] || continue
  out="$fuzz_dir/bench/$target"
  rm -rf "$out"
  mkdir -p "$out/corpus" "$out/artifacts"
  fuzz_command "$root" "$fuzz_dir" "$target" "$out/corpus" "$out/artifacts"
  "${COMMAND[@]}" -runs="$runs" >"$out/log" 2>&1
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log")"
  crashes="$(find "$out/artifacts" -type f \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
       -o -name 'oom-*' \) | wc -l)"
  echo "target=$target execs=${execs:-none} crashes=$crashes"
done
