#!/usr/bin/env bash
# Transfer benchmark: an MLP of ~10M parameters (784-2800-2800-10, 40 MB in
# fp32), N agent processes (default 8), one local SGD step each, 5 rounds,
# all on 127.0.0.1. Reports the steady-state round wall time (median of
# rounds 2..R) and the coordinator's peak RSS; with --compare also runs 16
# agents to show the peak does not grow with the number of agents.
# --encoding NAME: the agents' update encoding (fp32, fp16, int8, int8pc
# for a scale per channel, topkF for top-k sending the fraction F, e.g.
# topk0.1); --strategy NAME: the strategy (default fedavg); --download NAME:
# how the model is downloaded (fp32, the default, or fp16).
#
# usage: bench/transfer_bench.sh [--agents N] [--rounds R] [--compare] [--tls]
#            [--encoding NAME] [--strategy NAME] [--download fp32|fp16]
# Needs build/ (scripts/build.sh fedge-coordinator fedge-agent).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
agents=8
rounds=5
compare=0
tls=0
encoding=fp32
strategy=fedavg
download=fp32
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --compare) compare=1; shift ;;
    --tls) tls=1; shift ;;
    --encoding) encoding=$2; shift 2 ;;
    --strategy) strategy=$2; shift 2 ;;
    --download) download=$2; shift 2 ;;
    *) echo "transfer_bench: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
coordinator_bin="$root/build/server/fedge-coordinator"
agent_bin="$root/build/edge_agent/fedge-agent"
for b in "$coordinator_bin" "$agent_bin"; do
  [ -x "$b" ] || { echo "transfer_bench: $b missing: run scripts/build.sh fedge-coordinator fedge-agent" >&2; exit 2; }
done
. "$root/scripts/lib.sh"
fedge_encoding_flags "$encoding" || exit 2
fedge_work_dir transfer

# run_once N: prints "<median round seconds> <peak rss MB>".
run_once() {
  local n=$1 dir="$work/run-$1"
  mkdir -p "$dir"
  local tls_server=(--insecure) tls_agent=(--tls.insecure=true)
  if [ "$tls" = 1 ]; then
    "$root/deploy/make-certs.sh" "$work/certs" >/dev/null
    tls_server=(--tls.cert_path "$work/certs/coordinator.pem" --tls.key_path "$work/certs/coordinator.key")
    tls_agent=(--tls.ca_path "$work/certs/ca.pem")
  fi
  "$coordinator_bin" --config "$root/configs/coordinator/transfer_bench.textproto" \
    "${tls_server[@]}" --state_dir "$dir/coordinator" --rounds "$rounds" \
    --strategy.count "$n" --strategy.min_available_agents "$n" \
    --strategy.min_fit_agents "$n" --simulation.num_partitions "$n" \
    --strategy.name "$strategy" --strategy.download_encoding "$download" \
    "${encoding_flags[@]}" \
    2> "$dir/coordinator.log" &
  local coordinator=$!
  pids+=("$coordinator")
  local port
  port=$(fedge_wait_port "$dir/coordinator" "$coordinator" "$dir/coordinator.log")
  for i in $(seq "$n"); do
    "$agent_bin" --coordinator "127.0.0.1:$port" --agent_id "agent-$i" \
      --state_dir "$dir/agent-$i" "${tls_agent[@]}" --data.source synthetic \
      --data.synthetic_train_examples $((10 * n)) --data.synthetic_test_examples 10 \
      --num_threads 1 2> "$dir/agent-$i.log" &
    pids+=("$!")
  done
  if ! timeout 600 tail --pid "$coordinator" -f /dev/null; then
    echo "transfer_bench: the coordinator did not finish in 600 s" >&2; exit 1
  fi
  wait "$coordinator" || { echo "transfer_bench: coordinator failed" >&2; tail "$dir/coordinator.log" >&2; exit 1; }
  local median rss
  median=$(awk -F, 'NR > 2 { print $10 }' "$dir/coordinator/history.csv" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
  rss=$(grep -o 'peak_rss_mb=[0-9.]*' "$dir/coordinator.log" | tail -1 | cut -d= -f2)
  echo "agents=$n rounds:" >&2
  cut -d, -f1,2,9,10,11,12 "$dir/coordinator/history.csv" | column -t -s, >&2
  grep -o 'resources: .*' "$dir/coordinator.log" >&2
  echo "$median $rss"
}

# Not in a subshell: the processes it starts join `pids`, which the exit
# trap stops.
run_once "$agents" > "$work/result-$agents"
read -r median rss < <(tail -n 1 "$work/result-$agents")
echo "transfer: $agents agents, 784-2800-2800-10 MLP, $strategy, $encoding updates, $download downloads, round median $median s, coordinator peak RSS $rss MB"
if [ "$compare" = 1 ]; then
  run_once 16 > "$work/result-16"
  read -r median16 rss16 < <(tail -n 1 "$work/result-16")
  echo "transfer: 16 agents, round median $median16 s, coordinator peak RSS $rss16 MB"
  awk -v a="$rss" -v b="$rss16" 'BEGIN { printf "peak RSS 16 vs %s agents: %+.1f%%\n", "'"$agents"'", 100 * (b - a) / a }'
fi
echo "round_seconds_median=$median coordinator_peak_rss_mb=$rss"
