#!/usr/bin/env bash
# Round time of a two-level federation against a flat one with the same
# agents, data and plan: MNIST 2NN, M agent processes each holding one of M
# IID partitions (agent i: partition i-1), all selected, E=1, B=10, on
# 127.0.0.1 with TLS on every link.
#   tiers=1: one coordinator and the M agents.
#   tiers=2: an upstream coordinator, N edge aggregators
#            (configs/coordinator/edge_aggregator.textproto) and the M agents
#            spread over them (agent i -> edge ((i-1) mod N) + 1).
# Both run R rounds; prints the median round seconds of the steady rounds
# (round 1, with the agents' start-up, is left out) from the (upstream)
# coordinator's history.csv ("none" when no steady round completed), and
# the two final models' SHA-256 (they differ in the last float bits; how
# much is what tests/e2e/hierarchy_e2e_test.cc measures):
#   tiers=1 agents=M round_seconds=S
#   tiers=2 edge_aggregators=N agents=M round_seconds=S
# Not a test (not in ctest); the machine's other load moves the figures.
#
# usage: bench/hierarchy.sh [--edges N] [--agents M] [--rounds R] [--data_dir DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
edges=2
agents=6
rounds=5
data_dir="$root/../shared/data/mnist"
while [ $# -gt 0 ]; do
  case "$1" in
    --edges) edges=$2; shift 2 ;;
    --agents) agents=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --data_dir) data_dir=$2; shift 2 ;;
    *) echo "hierarchy: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [ "$agents" -lt "$edges" ]; then
  echo "hierarchy: --agents ($agents) must be at least --edges ($edges)" >&2
  exit 2
fi
. "$root/scripts/lib.sh"
fedge_work_dir hierarchy
"$root/deploy/make-certs.sh" "$work/certs" >/dev/null
certs=$work/certs
num_partitions=$agents

config=(--config "$root/configs/coordinator/mnist_2nn.textproto" --rounds "$rounds"
  --simulation.enabled=false --eval_data.data_dir "$data_dir"
  --strategy.round_deadline_ms 300000 --agent_timeout_ms 60000)

# Flat.
members=()
fedge_start_coordinator "$work/flat/coordinator" "$work/flat/coordinator.log" "${config[@]}" $(fedge_all_of "$agents")
flat=$pid
for i in $(seq "$agents"); do fedge_start_agent "$i" "$port" "$work/flat"; done
fedge_wait_all "$flat"
flat_seconds=$(fedge_median_round_seconds "$work/flat/coordinator/history.csv" 2>/dev/null || echo none)

# Two tiers.
members=()
fedge_start_coordinator "$work/tree/upstream" "$work/tree/upstream.log" "${config[@]}" $(fedge_all_of "$edges")
upstream=$pid
up_port=$port
for e in $(seq "$edges"); do
  n=0
  for i in $(seq "$agents"); do [ $(((i - 1) % edges + 1)) = "$e" ] && n=$((n + 1)); done
  fedge_start_coordinator "$work/tree/edge-$e" "$work/tree/edge-$e.log" \
    --config "$root/configs/coordinator/edge_aggregator.textproto" $(fedge_all_of "$n") \
    --strategy.round_deadline_ms 300000 --agent_timeout_ms 60000 \
    --upstream.address "127.0.0.1:$up_port" --upstream.agent_id "edge-$e" \
    --upstream.tls.ca_path "$certs/ca.pem"
  members+=("$pid")
  for i in $(seq "$agents"); do
    [ $(((i - 1) % edges + 1)) = "$e" ] && fedge_start_agent "$i" "$port" "$work/tree"
  done
done
fedge_wait_all "$upstream"
tree_seconds=$(fedge_median_round_seconds "$work/tree/upstream/history.csv" 2>/dev/null || echo none)

echo "tiers=1 agents=$agents round_seconds=$flat_seconds"
echo "tiers=2 edge_aggregators=$edges agents=$agents round_seconds=$tree_seconds"
sha() { [ -s "$1" ] && sha256sum "$1" | cut -c1-12 || echo none; }
echo "final models: flat sha256 $(sha "$work/flat/coordinator/final_model.fedge")," \
  "two tiers sha256 $(sha "$work/tree/upstream/final_model.fedge")"
