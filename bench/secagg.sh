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
# usage: bench/secagg.sh [--data_dir DIR] [--rounds R] [--agents "10 50 100"]
#                        [--threads T] [--neighbors K] [--clip_range C]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir="$root/../shared/data/mnist"
rounds=5
agents_list="10 50 100"
threads=1
neighbors=0
clip_range=10
while [ $# -gt 0 ]; do
  case "$1" in
    --data_dir) data_dir=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --agents) agents_list=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --neighbors) neighbors=$2; shift 2 ;;
    --clip_range) clip_range=$2; shift 2 ;;
    *) echo "secagg: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ "$rounds" -ge 2 ] || { echo "secagg: --rounds must be >= 2" >&2; exit 2; }
sim="$root/build/server/sim/fedge-sim"
[ -x "$sim" ] || { echo "secagg: build fedge-sim first (scripts/build.sh fedge-sim)" >&2; exit 2; }
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

# median_round CSV: the median round_seconds of all rounds but the last.
median_round() {
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

last=
for n in $agents_list; do
  run "$n" false || echo "secagg: plain run with $n agents failed (see $work/$n-false.log)" >&2
  run "$n" true || echo "secagg: secure run with $n agents failed (see $work/$n-true.log)" >&2
  echo "agents=$n plain_s=$(median_round "$work/$n-false.csv") secagg_s=$(median_round "$work/$n-true.csv")"
  last=$n
done
pa=$(final_accuracy "$work/$last-false.csv")
sa=$(final_accuracy "$work/$last-true.csv")
diff=none
if [ "$pa" != none ] && [ "$sa" != none ]; then
  diff=$(awk -v p="$pa" -v s="$sa" 'BEGIN { printf "%.3f", 100 * (s - p) }')
fi
echo "agents=$last plain_accuracy=$pa secagg_accuracy=$sa accuracy_diff_pp=$diff"
