#!/usr/bin/env bash
# Reproduces the FedAvg paper's MNIST experiments with fedge-sim and prints
# rounds-to-target and wall time for each (McMahan et al. 2017: 2NN IID 97%
# in 87 rounds, 2NN shards 97% in 664 rounds, CNN IID 99% in 20 rounds).
#
# usage: bench/fedavg_paper.sh [--data_dir DIR] [2nn_iid] [2nn_shards] [cnn_iid]
# (default: the two 2NN runs; the CNN takes about 10 minutes on 2 cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir="$root/../shared/data/mnist"
runs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data_dir) data_dir=$2; shift 2 ;;
    *) runs+=("$1"); shift ;;
  esac
done
[ ${#runs[@]} -gt 0 ] || runs=(2nn_iid 2nn_shards)
sim="$root/build/server/sim/fedge-sim"
[ -x "$sim" ] || { echo "fedavg_paper: build fedge-sim first (scripts/build.sh fedge-sim)" >&2; exit 2; }
out="$root/runs/fedavg_paper"
mkdir -p "$out"
for run in "${runs[@]}"; do
  config="$root/configs/sim/mnist_${run}.textproto"
  [ -f "$config" ] || { echo "fedavg_paper: no config $config" >&2; exit 2; }
  start=$(date +%s.%N)
  "$sim" --config "$config" --data_dir "$data_dir" \
    --history_out "$out/$run.csv" --data.synthetic_fallback=false > "$out/$run.log"
  end=$(date +%s.%N)
  tail -1 "$out/$run.log"
  awk -F, -v run="$run" -v wall="$(echo "$end - $start" | bc)" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { acc = $col["test_accuracy"]; rounds = $col["round"]; t += $col["round_seconds"]
      if (acc > best) best = acc }
    END { printf "%s: rounds=%d best_accuracy=%.4f wall_seconds=%.1f mean_round_seconds=%.3f\n",
          run, rounds, best, wall, t / rounds }' "$out/$run.csv"
done
