#!/usr/bin/env bash
# The same federation twice: in one process (fedge-sim) and over the network
# (fedge-coordinator + 10 fedge-agent processes on 127.0.0.1, TLS): MNIST 2NN,
# IID, 10 agents holding 10 partitions, all selected each round, E=1, B=10,
# lr 0.1, same seeds and initial model. Prints both accuracies per round and
# the difference after the last round.
#
# usage: bench/sim_vs_network.sh [--rounds R] [--data_dir DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=10
data_dir="$root/../shared/data/mnist"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --data_dir) data_dir=$2; shift 2 ;;
    *) echo "sim_vs_network: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
. "$root/scripts/lib.sh"
fedge_work_dir simnet

"$root/build/server/sim/fedge-sim" --config "$root/configs/sim/mnist_2nn_iid.textproto" \
  --data_dir "$data_dir" --data.synthetic_fallback=false --num_agents 10 \
  --strategy.fraction 1.0 --rounds "$rounds" --stop_at_accuracy 0 \
  --history_out "$work/sim.csv" > "$work/sim.log"

"$root/deploy/make-certs.sh" "$work/certs" >/dev/null
"$root/build/server/fedge-coordinator" \
  --config "$root/configs/coordinator/mnist_2nn.textproto" \
  --listen_address 127.0.0.1:0 --state_dir "$work/coordinator" --rounds "$rounds" \
  --strategy.count 10 --strategy.min_available_agents 10 --strategy.min_fit_agents 10 \
  --simulation.num_partitions 10 --simulation.partition.seed 42 \
  --eval_data.data_dir "$data_dir" --eval_data.synthetic_fallback=false \
  --tls.cert_path "$work/certs/coordinator.pem" --tls.key_path "$work/certs/coordinator.key" \
  2> "$work/coordinator.log" &
coordinator=$!
pids+=("$coordinator")
port=$(fedge_wait_port "$work/coordinator" "$coordinator" "$work/coordinator.log")
for i in $(seq 10); do
  "$root/build/edge_agent/fedge-agent" --config "$root/configs/agent/mnist.textproto" \
    --coordinator "127.0.0.1:$port" --agent_id "agent-$i" --state_dir "$work/agent-$i" \
    --data.data_dir "$data_dir" --data.synthetic_fallback=false \
    --tls.ca_path "$work/certs/ca.pem" 2> "$work/agent-$i.log" &
  pids+=("$!")
done
wait "$coordinator"
join -t, <(cut -d, -f1,8,10 "$work/sim.csv" | tail -n +2) \
  <(cut -d, -f1,8,10 "$work/coordinator/history.csv" | tail -n +2) |
  awk -F, 'BEGIN { print "round  sim_accuracy  network_accuracy  sim_round_s  network_round_s" }
    { printf "%5d  %12.4f  %16.4f  %11.3f  %15.3f\n", $1, $2, $4, $3, $5; s = $2; n = $4 }
    END { printf "sim_accuracy=%.4f network_accuracy=%.4f difference_pp=%.2f\n", s, n, 100 * (n - s) }'
