# What tests/fuzz/run_short.sh and bench/fuzz.sh share: the build, the list
# of targets, and how a target is started. Sourced, not run.
#
#   fuzz_build ROOT BUILD        configure (clang, sanitizers) and build
#                                every target; 1 on failure
#   fuzz_targets FUZZ_DIR        sets TARGETS: FUZZ_TARGETS, or every target
#   fuzz_command ROOT FUZZ_DIR TARGET CORPUS ARTIFACTS
#                                sets COMMAND: the target, the flags every
#                                run of it takes, and its corpora (CORPUS,
#                                where it writes what it finds, then the
#                                generated seeds and the committed
#                                regression inputs); the caller adds
#                                -runs or -max_total_time
#
# Environment: FUZZ_CC / FUZZ_CXX (compilers for a new build directory;
# default clang-14 / clang++-14), FUZZ_JOBS (ninja jobs, default 1),
# FUZZ_TARGETS (a space-separated subset).

fuzz_build() {
  local root="$1" build="$2"
  # Lets ccache share results between clones (as scripts/build.sh does).
  export CCACHE_BASEDIR="$root"
  export CCACHE_NOHASHDIR=1
  if [[ ! -f "$build/CMakeCache.txt" ]]; then
    cmake -S "$root" -B "$build" -G Ninja \
      -DCMAKE_C_COMPILER="${FUZZ_CC:-clang-14}" \
      -DCMAKE_CXX_COMPILER="${FUZZ_CXX:-clang++-14}" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFEDGE_BUILD_FUZZERS=ON >/dev/null ||
      return 1
  else
    cmake -S "$root" -B "$build" -DFEDGE_BUILD_FUZZERS=ON >/dev/null ||
      return 1
  fi
  ninja -C "$build" -j "${FUZZ_JOBS:-1}" fedge_fuzzers
}

fuzz_targets() {
  if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
  else
    mapfile -t TARGETS <"$1/fuzzers.txt"
  fi
}

# Flags one target takes on every run, and why.
fuzz_target_flags() {
  case "$1" in
    wire_fuzz)
      # Each input starts and stops a Coordinator, about 10k edges;
      # libFuzzer's entropic schedule updates a per-feature frequency for
      # each of them (a cache miss in a 4 MB table), which was 37% of the
      # time against 13% in the target. The classic schedule runs 1.3-2.5x
      # the inputs per second for about the same edges, which makes the
      # 10-million-input run hours shorter (tests/fuzz/README.md, Speed).
      echo "-entropic=0"
      ;;
  esac
}

fuzz_command() {
  local root="$1" fuzz_dir="$2" target="$3" corpus="$4" artifacts="$5"
  local -a flags
  read -r -a flags <<<"$(fuzz_target_flags "$target")"
  COMMAND=("$fuzz_dir/$target" -timeout=25 -rss_limit_mb=2560
           -print_final_stats=1 -artifact_prefix="$artifacts/"
           "${flags[@]}" "$corpus" "$fuzz_dir/seeds/$target")
  if [[ -d "$root/tests/fuzz/corpus/$target" ]]; then
    COMMAND+=("$root/tests/fuzz/corpus/$target")
  fi
}
