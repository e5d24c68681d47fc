#!/usr/bin/env bash
# Round time of a small networked federation, to compare with Flower's
# (0.28 s per round, 0.04-0.10 s of it outside training, measured on the same
# machine): MNIST 2NN, 10 agent processes holding 600 examples each (10 of
# 100 IID partitions), all selected, E=1, B=10, on 127.0.0.1. Prints the
# median round time, the median slowest-agent training time and the
# difference (coordination overhead).
#
# --metrics: what the operators' HTTP listener costs. Runs the same
# federation with the listener off (--http_address=, "metrics=0") and on
# with a scraper fetching /metrics and /api/status (the status page's data)
# every second each ("metrics=1"), alternating A B B A A B ... (--reps runs
# of each, default 3; the order flips every pair, so a drift in the
# machine's load favours neither), and prints the median steady round time
# of each (all steady rounds of its runs), overhead_pct = 100 * (metrics=1 /
# metrics=0 - 1), and the coordinator process's CPU time per run (user +
# system, from its "resources:" line at exit), which other load on the
# machine does not inflate as much.
#
# usage: bench/round_overhead.sh [--agents N] [--rounds R] [--data_dir DIR] [--tls]
#                                [--metrics [--reps K]]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
agents=10
rounds=11
data_dir="$root/../shared/data/mnist"
tls=0
ab=0
reps=3
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --data_dir) data_dir=$2; shift 2 ;;
    --tls) tls=1; shift ;;
    --metrics) ab=1; shift ;;
    --reps) reps=$2; shift 2 ;;
    *) echo "round_overhead: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
. "$root/scripts/lib.sh"
fedge_work_dir overhead
server_tls=(--insecure)
agent_tls=(--tls.insecure=true)
scheme=http
curl_tls=()
if [ "$tls" = 1 ]; then
  "$root/deploy/make-certs.sh" "$work/certs" >/dev/null
  server_tls=(--tls.cert_path "$work/certs/coordinator.pem" --tls.key_path "$work/certs/coordinator.key")
  agent_tls=(--tls.ca_path "$work/certs/ca.pem")
  scheme=https
  curl_tls=(--cacert "$work/certs/ca.pem")
fi

# scrape PORT: GET /metrics and /api/status every second, as Prometheus and
# an open status page do, until killed; one HTTP status code per line.
scrape() {
  local path
  while true; do
    for path in /metrics /api/status; do
      curl -s -o /dev/null -w '%{http_code}\n' --max-time 5 "${curl_tls[@]}" \
        "$scheme://127.0.0.1:$1$path" || true
    done
    sleep 1
  done
}

# run DIR METRICS: one federation in DIR, the HTTP listener on (with the
# scraper) when METRICS is 1, off otherwise; leaves DIR/coordinator/history.csv.
run() {
  local dir=$1 metrics=$2 http=(--http_address=) scraper="" i a members=()
  [ "$metrics" = 1 ] && http=(--http_address=127.0.0.1:0)
  mkdir -p "$dir"
  "$root/build/server/fedge-coordinator" --config "$root/configs/coordinator/mnist_2nn.textproto" \
    "${server_tls[@]}" --listen_address 127.0.0.1:0 --state_dir "$dir/coordinator" "${http[@]}" \
    --rounds "$rounds" --strategy.count "$agents" --strategy.min_available_agents "$agents" \
    --strategy.min_fit_agents "$agents" --simulation.num_partitions 100 \
    --eval_data.data_dir "$data_dir" 2> "$dir/coordinator.log" &
  local coordinator=$!
  pids+=("$coordinator")
  local port
  port=$(fedge_wait_port "$dir/coordinator" "$coordinator" "$dir/coordinator.log")
  if [ "$metrics" = 1 ]; then
    for _ in $(seq 100); do [ -s "$dir/coordinator/http_port" ] && break; sleep 0.1; done
    scrape "$(cat "$dir/coordinator/http_port")" >"$dir/scrapes.log" 2>&1 &
    scraper=$!
    pids+=("$scraper")
  fi
  for i in $(seq "$agents"); do
    "$root/build/edge_agent/fedge-agent" --config "$root/configs/agent/mnist.textproto" \
      --coordinator "127.0.0.1:$port" --agent_id "agent-$i" --state_dir "$dir/agent-$i" \
      --data.data_dir "$data_dir" "${agent_tls[@]}" 2> "$dir/agent-$i.log" &
    pids+=("$!")
    members+=("$!")
  done
  timeout 600 tail --pid "$coordinator" -f /dev/null
  wait "$coordinator"
  if [ -n "$scraper" ]; then kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; fi
  # The agents exit once the coordinator says the federation finished.
  for a in "${members[@]}"; do
    timeout 60 tail --pid "$a" -f /dev/null || kill -9 "$a" 2>/dev/null || true
  done
}

# Medians over the steady rounds (round 1 includes agents' start-up, loading
# data) of the history files given.
summarize() {
  awk -F, -v label="$1" 'FNR > 2 { r[++n] = $10; t[n] = $9; o[n] = $10 - $9 }
    function median(a,   k, v, i, j, tmp) {
      k = 0; for (i in a) v[++k] = a[i]
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
      return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 }
    END { printf "%srounds=%d round_seconds_median=%.3f train_seconds_median=%.3f overhead_seconds_median=%.3f\n",
          label, n, median(r), median(t), median(o) }' "${@:2}"
}

if [ "$ab" = 0 ]; then
  run "$work/run" 1
  summarize "" "$work/run/coordinator/history.csv"
  tail -1 "$work/run/coordinator/history.csv" | awk -F, '{ printf "final test accuracy %.4f\n", $8 }'
  exit 0
fi

# The coordinator's CPU seconds (user + system) of run DIR.
cpu_seconds() {
  sed -nE 's/.*resources: cpu_user_s=([0-9.]+) cpu_sys_s=([0-9.]+).*/\1 \2/p' "$1/coordinator.log" |
    awk '{ printf "%.2f", $1 + $2 }'
}

echo "A/B: $reps x (metrics=0, metrics=1), $agents agents, $rounds rounds each"
for rep in $(seq "$reps"); do
  order="0 1"
  [ $((rep % 2)) = 0 ] && order="1 0"
  for metrics in $order; do
    run "$work/run-$rep-$metrics" "$metrics"
    scrapes=""
    if [ "$metrics" = 1 ]; then
      scrapes="scrapes_ok=$(grep -c '^200$' "$work/run-$rep-$metrics/scrapes.log" || true) "
    fi
    summarize "  run $rep metrics=$metrics $scrapes" "$work/run-$rep-$metrics/coordinator/history.csv" |
      sed "s/\$/ coordinator_cpu_seconds=$(cpu_seconds "$work/run-$rep-$metrics")/"
  done
done
median_of() { summarize "" "$work"/run-*-"$1"/coordinator/history.csv | sed -nE 's/.*round_seconds_median=([0-9.]+).*/\1/p'; }
m0=$(median_of 0)
m1=$(median_of 1)
cpu_median_of() {
  for d in "$work"/run-*-"$1"; do cpu_seconds "$d"; echo; done | sort -n |
    awk '{ v[++n] = $1 } END { printf "%.2f", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'
}
echo "metrics=0 round_seconds_median=$m0 coordinator_cpu_seconds_median=$(cpu_median_of 0)"
echo "metrics=1 round_seconds_median=$m1 coordinator_cpu_seconds_median=$(cpu_median_of 1)"
awk -v a="$m0" -v b="$m1" 'BEGIN { printf "overhead_pct=%.1f\n", 100 * (b / a - 1) }'
