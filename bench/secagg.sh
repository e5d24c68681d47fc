#!/usr/bin/env bash
# Cost and accuracy of secure aggregation (issue #9), measured with fedge-sim
# (every agent's SecAggClient and the round's SecAggRound in one process, so
# secagg_s includes all agents' key agreement, share encryption and masking
# on this machine's workers; on a real federation the agents' part runs on
# the devices in parallel).
#
# MNIST 2NN, N agents holding 600 examples each (IID), all N selected every
# round, E=1, B=10, lr 0.1, one worker thread (one LibTorch thread), the
# same seeds with and without strategy.secure_aggregation.enabled. For N in
# 10, 50, 100 it prints the median round time of the rounds before the last
# (the last one also evaluates):
#   agents=N plain_s=A secagg_s=B
# and the test accuracy after the last round at the largest N:
#   agents=N plain_accuracy=X secagg_accuracy=Y accuracy_diff_pp=D
# A run that failed prints none for its value.
#
# With --network the same federation runs over the network instead: a
# fedge-coordinator and N fedge-agent processes on 127.0.0.1 with TLS
# (agent i holds MNIST partition i-1 of N x 600 examples), every stage of
# secure aggregation over gRPC; the lines end with transport=network, and
# the median leaves out round 1 (the agents' start-up) instead of the last.
# All N agents share this machine's cores (on a federation each masks on
# its own device), so the default list is "10 20".
#
# usage: bench/secagg.sh [--data_dir DIR] [--rounds R] [--agents "10 50 100"]
#                        [--threads T] [--neighbors K] [--clip_range C]
#                        [--network]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir="$root/../shared/data/mnist"
rounds=5
agents_list="10 50 100"
threads=1
neighbors=0
clip_range=10
network=0
agents_set=0
while [ $# -gt 0 ]; do
  case "$1" in
    --data_dir) data_dir=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --agents) agents_list=$2; agents_set=1; shift 2 ;;
    --network) network=1; shift ;;
    --threads) threads=$2; shift 2 ;;
    --neighbors) neighbors=$2; shift 2 ;;
    --clip_range) clip_range=$2; shift 2 ;;
    *) echo "secagg: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ "$rounds" -ge 2 ] || { echo "secagg: --rounds must be >= 2" >&2; exit 2; }
[ "$network" = 1 ] && [ "$agents_set" = 0 ] && agents_list="10 20"
sim="$root/build/server/sim/fedge-sim"
[ -x "$sim" ] || { echo "secagg: build fedge-sim first (scripts/build.sh fedge-sim)" >&2; exit 2; }
[ "$network" = 0 ] || [ -x "$root/build/edge_agent/fedge-agent" ] ||
  { echo "secagg: build fedge-coordinator and fedge-agent first (scripts/build.sh)" >&2; exit 2; }
[ -f "$data_dir/train-images-idx3-ubyte.gz" ] || [ -f "$data_dir/train-images-idx3-ubyte" ] ||
  { echo "secagg: no MNIST in $data_dir (use --data_dir)" >&2; exit 2; }
. "$root/scripts/lib.sh"
fedge_work_dir secagg
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# run N SECURE: one fedge-sim run; its history in $work/N-SECURE.csv.
run() {
  local n=$1 secure=$2
  "$sim" --config "$root/configs/sim/mnist_2nn_iid.textproto" \
    --data_dir "$data_dir" --data.synthetic_fallback=false \
    --data.max_train_examples=$((n * 600)) \
    --num_agents="$n" --rounds="$rounds" --eval_every_rounds="$rounds" \
    --stop_at_accuracy=0 --num_threads="$threads" \
    --strategy.fraction=1 --strategy.min_available_agents="$n" \
    --strategy.min_fit_agents="$n" \
    --strategy.secure_aggregation.enabled="$secure" \
    --strategy.secure_aggregation.neighbors="$neighbors" \
    --strategy.secure_aggregation.clip_range="$clip_range" \
    --history_out "$work/$n-$secure.csv" > "$work/$n-$secure.log" 2>&1
}

# run_network N SECURE: the same over the network; the coordinator's
# history copied to $work/N-SECURE.csv.
run_network() {
  local n=$1 secure=$2 dir="$work/net-$1-$2"
  members=()
  num_partitions=$n
  fedge_start_coordinator "$dir/coordinator" "$dir/coordinator.log" \
    --config "$root/configs/coordinator/mnist_2nn.textproto" --rounds "$rounds" \
    --simulation.enabled=false --eval_data.data_dir "$data_dir" \
    --eval_data.synthetic_fallback=false $(fedge_all_of "$n") \
    --strategy.round_deadline_ms 300000 --agent_timeout_ms 60000 \
    --strategy.secure_aggregation.enabled="$secure" \
    --strategy.secure_aggregation.neighbors="$neighbors" \
    --strategy.secure_aggregation.clip_range="$clip_range" || return 1
  local coordinator=$pid
  for i in $(seq "$n"); do
    fedge_start_agent "$i" "$port" "$dir" --data.max_train_examples=$((n * 600)) \
      --data.synthetic_fallback=false --num_threads="$threads"
    # Ten at a time: each decodes the N x 600 examples before it keeps its
    # 600, and a hundred doing so at once would not fit in memory.
    if [ $((i % 10)) = 0 ]; then
      fedge_wait_log "$dir/agent-$i.log" "local examples" 120 || true
    fi
  done
  fedge_wait_all "$coordinator"
  cp "$dir/coordinator/history.csv" "$work/$n-$secure.csv"
}

# median_round CSV: the median round_seconds of all rounds but the last
# (fedge-sim) or the first (--network).
median_round() {
  if [ "$network" = 1 ]; then
    [ -s "$1" ] && fedge_median_round_seconds "$1" || echo none
    return
  fi
  [ -s "$1" ] || { echo none; return; }
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
           { print $col["round_seconds"] }' "$1" | head -n -1 | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "none"; exit }
          if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2];
          else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# final_accuracy CSV: the test accuracy after the last round.
final_accuracy() {
  [ -s "$1" ] || { echo none; return; }
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
           { a = $col["test_accuracy"] } END { print (a == "" ? "none" : a) }' "$1"
}

runner=run
tag=
if [ "$network" = 1 ]; then
  "$root/deploy/make-certs.sh" "$work/certs" >/dev/null
  certs=$work/certs
  runner=run_network
  tag=" transport=network"
fi
last=
for n in $agents_list; do
  $runner "$n" false || echo "secagg: plain run with $n agents failed (see $work)" >&2
  $runner "$n" true || echo "secagg: secure run with $n agents failed (see $work)" >&2
  echo "agents=$n plain_s=$(median_round "$work/$n-false.csv") secagg_s=$(median_round "$work/$n-true.csv")$tag"
  last=$n
done
pa=$(final_accuracy "$work/$last-false.csv")
sa=$(final_accuracy "$work/$last-true.csv")
diff=none
if [ "$pa" != none ] && [ "$sa" != none ]; then
  diff=$(awk -v p="$pa" -v s="$sa" 'BEGIN { printf "%.3f", 100 * (s - p) }')
fi
echo "agents=$last plain_accuracy=$pa secagg_accuracy=$sa accuracy_diff_pp=$diff$tag"
