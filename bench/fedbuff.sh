#!/usr/bin/env bash
# Synchronous rounds vs. FedBuff (asynchronous buffered aggregation, Nguyen
# et al. 2022) under stragglers, with fedge-sim on a simulated clock: MNIST
# 2NN IID, 100 agents, C=0.1, E=1, B=10, devices training 20000 examples/s
# of which 10% are 10 times slower
# (configs/sim/mnist_2nn_iid_slow_tail.textproto). Both modes stop at 97%
# test accuracy; the result is the simulated time it took (the history's
# simulated_seconds at the first round, or model version, at 97%).
# FedBuff runs with its defaults: buffer of 10 updates per version, 10
# agents training at a time (the sync selection size), staleness at most 20.
#
# usage: bench/fedbuff.sh [--data_dir DIR] [--rounds N] [--num_threads N]
#            [--buffer_size K] [--concurrency N] [sync] [fedbuff]
#
# Prints, per mode:
#   mode=NAME simulated_seconds_to_97=S
#   mode=NAME rounds_to_97=N wall_s=W       (rounds: model versions)
# (none when 97% was not reached within --rounds).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir="$root/../shared/data/mnist"
rounds=400
threads=2
buffer_size=10
concurrency=0
modes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data_dir) data_dir=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --num_threads) threads=$2; shift 2 ;;
    --buffer_size) buffer_size=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    -*) echo "fedbuff: unknown flag $1" >&2; exit 2 ;;
    *) modes+=("$1"); shift ;;
  esac
done
[ ${#modes[@]} -gt 0 ] || modes=(sync fedbuff)
sim="$root/build/server/sim/fedge-sim"
[ -x "$sim" ] || { echo "fedbuff: build fedge-sim first (scripts/build.sh fedge-sim)" >&2; exit 2; }
config="$root/configs/sim/mnist_2nn_iid_slow_tail.textproto"
out="$root/runs/fedbuff"
mkdir -p "$out"

for mode in "${modes[@]}"; do
  csv="$out/$mode.csv"
  rm -f "$csv"
  start=$(date +%s.%N)
  "$sim" --config "$config" --data_dir "$data_dir" \
    --data.synthetic_fallback=false --num_threads="$threads" \
    --rounds="$rounds" --strategy.mode="$mode" \
    --strategy.fedbuff_buffer_size="$buffer_size" \
    --strategy.fedbuff_concurrency="$concurrency" \
    --history_out "$csv" > "$out/$mode.log" 2>&1 ||
    { echo "fedbuff: fedge-sim failed, see $out/$mode.log" >&2; tail -3 "$out/$mode.log" >&2; }
  end=$(date +%s.%N)
  awk -F, -v mode="$mode" -v wall="$(echo "$end - $start" | bc)" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    first == "" && $col["test_accuracy"] != "" && $col["test_accuracy"] + 0 >= 0.97 {
      first = $col["round"]; seconds = $col["simulated_seconds"] }
    END {
      printf "mode=%s simulated_seconds_to_97=%s\n", mode,
        (first == "" ? "none" : sprintf("%.2f", seconds))
      printf "mode=%s rounds_to_97=%s wall_s=%.1f\n", mode,
        (first == "" ? "none" : first), wall }' "$csv" 2>/dev/null ||
    { echo "mode=$mode simulated_seconds_to_97=none"; echo "mode=$mode rounds_to_97=none wall_s=none"; }
done
