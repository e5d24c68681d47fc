#!/usr/bin/env bash
# Long fuzzing: every libFuzzer target of tests/fuzz/ for FUZZ_RUNS inputs
# (default 10 million) each, one target at a time, starting from its seeds
# and committed regression inputs. Prints one line per target:
#   target=NAME execs=N crashes=K
# where N is the inputs executed (fewer than FUZZ_RUNS when a crash stopped
# it; a little more in fork mode, whose last jobs finish their slice) and K
# the crash, leak, timeout and out-of-memory inputs it saved to
# <build>/tests/fuzz/bench/<target>/artifacts/ (libFuzzer stops at the
# first, so K is 0 or 1). Logs: <build>/tests/fuzz/bench/<target>/log.
#
#   bench/fuzz.sh [BUILD_DIR]                (default: <source>/build-fuzz)
#
# Environment: FUZZ_RUNS, FUZZ_TARGETS (a space-separated subset),
# FUZZ_FORK (worker processes per target, default 1; 0 fuzzes in one
# process), FUZZ_CC / FUZZ_CXX (compilers for a new build directory;
# default clang-14 / clang++-14), FUZZ_JOBS (ninja jobs, default 1).
#
# By default a target runs in libFuzzer's fork mode: a parent process keeps
# the corpus and starts worker processes that fuzz for a few minutes each.
# A long run in one process slows down (signing_fuzz: from about 1,900 to
# 850 inputs/s after 2 million, in ASan's allocator under OpenSSL 3's
# decoder set-up); fresh workers keep the first rate, and FUZZ_FORK=2 uses
# both cores of a 2-core machine for one target. Timeouts, out-of-memory
# inputs and crashes still stop the run, as in one process.
#
# Hours in total: a target runs a few hundred (wire_fuzz, secagg_fuzz) to
# tens of thousands of inputs per second; tests/fuzz/README.md (Speed) has
# the figures.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(realpath -m "${1:-$root/build-fuzz}")"
runs="${FUZZ_RUNS:-10000000}"
fork="${FUZZ_FORK:-1}"
fuzz_dir="$build/tests/fuzz"
if ! [[ "$fork" =~ ^[0-9]+$ ]]; then
  echo "bench/fuzz.sh: FUZZ_FORK must be a whole number of worker" \
    "processes (0 fuzzes in one process), not '$fork'" >&2
  exit 2
fi

source "$root/tests/fuzz/common.sh"
fuzz_build "$root" "$build" >&2 || exit 1
fuzz_targets "$fuzz_dir"
for target in "${TARGETS[@]}"; do
  [[ -n "$target" ]] || continue
  out="$fuzz_dir/bench/$target"
  rm -rf "$out"
  mkdir -p "$out/corpus" "$out/artifacts"
  fuzz_command "$root" "$fuzz_dir" "$target" "$out/corpus" "$out/artifacts"
  if ((fork > 0)); then
    # Fork mode ignores timeouts and out-of-memory inputs unless told.
    "${COMMAND[@]}" -runs="$runs" -fork="$fork" -ignore_crashes=0 \
      -ignore_timeouts=0 -ignore_ooms=0 >"$out/log" 2>&1
    # The parent's status lines: "#N: cov: ... job: J ...", N the inputs
    # every worker ran so far.
    execs="$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$out/log" | tail -n 1)"
  else
    "${COMMAND[@]}" -runs="$runs" >"$out/log" 2>&1
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log")"
  fi
  crashes="$(find "$out/artifacts" -type f \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
       -o -name 'oom-*' \) | wc -l)"
  echo "target=$target execs=${execs:-none} crashes=$crashes"
done
