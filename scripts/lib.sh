# Shell helpers shared by scripts/local-federation.sh and the benchmark
# scripts in bench/. Source it; it defines functions only.

# fedge_work_dir NAME: a temporary folder in $work, removed at exit (kept
# when FEDGE_KEEP_WORK is set); every PID appended to the array $pids is
# killed at exit.
fedge_work_dir() {
  work=$(mktemp -d "/tmp/fedge-$1.XXXXXX")
  pids=()
  trap fedge_cleanup EXIT INT TERM
}

fedge_cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${FEDGE_KEEP_WORK:-}" ] || rm -rf "$work"
}

# fedge_wait_port STATE_DIR PID LOG: prints the port the coordinator PID
# wrote to STATE_DIR/port, waiting up to 60 s; fails with the end of LOG when
# the coordinator exits or does not come up.
fedge_wait_port() {
  for _ in $(seq 600); do
    if [ -s "$1/port" ]; then
      cat "$1/port"
      return 0
    fi
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "the coordinator did not come up; the end of $3:" >&2
  tail -n 20 "$3" >&2
  return 1
}

# fedge_encoding_flags NAME: sets the array encoding_flags to the strategy
# flags of an update encoding named as the benchmarks name them: fp32,
# fp16, int8, int8pc (a scale per channel), topkF (top-k sending the
# fraction F, e.g. topk0.1). Returns 2 for another name.
fedge_encoding_flags() {
  case "$1" in
    fp32|fp16|int8) encoding_flags=(--strategy.update_encoding="$1") ;;
    int8pc) encoding_flags=(--strategy.update_encoding=int8 --strategy.int8_per_channel=true) ;;
    topk?*) encoding_flags=(--strategy.update_encoding=topk --strategy.topk_fraction="${1#topk}") ;;
    *) echo "unknown encoding '$1' (fp32, fp16, int8, int8pc, topkF)" >&2; return 2 ;;
  esac
}
