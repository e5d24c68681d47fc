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

# Processes of a benchmark federation on 127.0.0.1 with TLS (bench/
# hierarchy.sh, bench/secagg.sh --network). They read $root, $work, $certs
# (deploy/make-certs.sh's folder), $data_dir and $num_partitions, and append
# to $pids (killed at exit) and $members (waited for by fedge_wait_all).
#
# fedge_start_coordinator DIR LOG ARGS...: a coordinator with state in DIR;
# sets $pid and $port.
fedge_start_coordinator() {
  local dir=$1 log=$2
  shift 2
  mkdir -p "$dir"
  "$root/build/server/fedge-coordinator" "$@" \
    --tls.cert_path "$certs/coordinator.pem" --tls.key_path "$certs/coordinator.key" \
    --listen_address 127.0.0.1:0 --state_dir "$dir" --http_address= 2> "$log" &
  pid=$!
  pids+=("$pid")
  port=$(fedge_wait_port "$dir" "$pid" "$log")
}

# fedge_start_agent I PORT DIR [FLAGS...]: agent I (1-based) holding MNIST
# partition I-1 of $num_partitions, against PORT, state and log in DIR.
fedge_start_agent() {
  local i=$1 port=$2 dir=$3
  shift 3
  "$root/build/edge_agent/fedge-agent" --config "$root/configs/agent/mnist.textproto" \
    --coordinator "127.0.0.1:$port" --agent_id "agent-$i" --state_dir "$dir/agent-$i" \
    --data.data_dir "$data_dir" --partition_index $((i - 1)) \
    --num_partitions "$num_partitions" --tls.ca_path "$certs/ca.pem" "$@" \
    2> "$dir/agent-$i.log" &
  pids+=("$!")
  members+=("$!")
}

# fedge_wait_log FILE PATTERN SECONDS: waits until FILE has a line matching
# PATTERN (grep -E); fails after SECONDS.
fedge_wait_log() {
  local i
  for i in $(seq $(($3 * 10))); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# fedge_all_of N: the strategy flags that select all N agents every round.
fedge_all_of() {
  echo --strategy.count "$1" --strategy.min_available_agents "$1" --strategy.min_fit_agents "$1"
}

# fedge_wait_all PID: waits for the coordinator PID (at most 15 minutes),
# then for the $members (a minute each, then killed).
fedge_wait_all() {
  timeout 900 tail --pid "$1" -f /dev/null || true
  wait "$1" || echo "the coordinator failed; see $work" >&2
  for m in "${members[@]}"; do
    timeout 60 tail --pid "$m" -f /dev/null || kill -9 "$m" 2>/dev/null || true
  done
}

# fedge_median_round_seconds HISTORY_CSV: the median round_seconds of the
# rounds after the first (whose time includes the agents' start-up), or
# "none".
fedge_median_round_seconds() {
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "round_seconds") c = i; next }
    NR > 2 { v[++n] = $c }
    END {
      if (n == 0) { print "none"; exit }
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      printf "%.3f\n", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }' "$1"
}
