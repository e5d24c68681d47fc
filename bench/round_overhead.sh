#!/usr/bin/env bash
# Round time of a small networked federation, to compare with Flower's
# (0.28 s per round, 0.04-0.10 s of it outside training, measured on the same
# machine): MNIST 2NN, 10 agent processes holding 600 examples each (10 of
# 100 IID partitions), all selected, E=1, B=10, on 127.0.0.1. Prints the
# median round time, the median slowest-agent training time and the
# difference (coordination overhead).
#
# usage: bench/round_overhead.sh [--agents N] [--rounds R] [--data_dir DIR] [--tls]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
agents=10
rounds=11
data_dir="$root/../shared/data/mnist"
tls=0
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --data_dir) data_dir=$2; shift 2 ;;
    --tls) tls=1; shift ;;
    *) echo "round_overhead: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
. "$root/scripts/lib.sh"
fedge_work_dir overhead
server_tls=(--insecure)
agent_tls=(--tls.insecure=true)
if [ "$tls" = 1 ]; then
  "$root/deploy/make-certs.sh" "$work/certs" >/dev/null
  server_tls=(--tls.cert_path "$work/certs/coordinator.pem" --tls.key_path "$work/certs/coordinator.key")
  agent_tls=(--tls.ca_path "$work/certs/ca.pem")
fi
"$root/build/server/fedge-coordinator" --config "$root/configs/coordinator/mnist_2nn.textproto" \
  "${server_tls[@]}" --listen_address 127.0.0.1:0 --state_dir "$work/coordinator" \
  --rounds "$rounds" --strategy.count "$agents" --strategy.min_available_agents "$agents" \
  --strategy.min_fit_agents "$agents" --simulation.num_partitions 100 \
  --eval_data.data_dir "$data_dir" 2> "$work/coordinator.log" &
coordinator=$!
pids+=("$coordinator")
port=$(fedge_wait_port "$work/coordinator" "$coordinator" "$work/coordinator.log")
for i in $(seq "$agents"); do
  "$root/build/edge_agent/fedge-agent" --config "$root/configs/agent/mnist.textproto" \
    --coordinator "127.0.0.1:$port" --agent_id "agent-$i" --state_dir "$work/agent-$i" \
    --data.data_dir "$data_dir" "${agent_tls[@]}" 2> "$work/agent-$i.log" &
  pids+=("$!")
done
timeout 600 tail --pid "$coordinator" -f /dev/null
wait "$coordinator"
# Round 1 includes agents' start-up (loading data); the rest are steady.
awk -F, 'NR > 2 { r[NR] = $10; t[NR] = $9; o[NR] = $10 - $9; n++ }
  function median(a,   k, v, i, j, tmp) {
    k = 0; for (i in a) v[++k] = a[i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
    return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 }
  END { printf "rounds=%d round_seconds_median=%.3f train_seconds_median=%.3f overhead_seconds_median=%.3f\n",
        n, median(r), median(t), median(o) }' "$work/coordinator/history.csv"
tail -1 "$work/coordinator/history.csv" | awk -F, '{ printf "final test accuracy %.4f\n", $8 }'
