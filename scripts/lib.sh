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
