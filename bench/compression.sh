#!/usr/bin/env bash
# Compressed updates, with fedge-sim: the FedAvg paper's MNIST 2NN IID
# setting (100 agents, C=0.1, E=1, B=10; configs/sim/mnist_2nn_iid.textproto)
# for 100 rounds (no early stop) with each update encoding: fp32, fp16,
# int8 (a scale per tensor, unbiased stochastic rounding), and top-k with
# error feedback sending 10% and 1% of each tensor's entries. fedge-sim
# runs the agents' encoder and the coordinator's decoder, so the model
# learns from exactly what would cross the wire, and its history counts
# the encoded bytes.
#
# usage: bench/compression.sh [--data_dir DIR] [--rounds N] [--num_threads N]
#            [ENCODING ...]        (fp32 fp16 int8 int8pc topk0.1 topk0.01 ...;
#                                   int8pc: a scale per output channel)
#
# Prints, per encoding:
#   encoding=NAME upload_bytes_per_round=B rounds_to_97=N final_accuracy=X
# (upload bytes: the mean over rounds of the updates' encoded size, summed
# over the round's agents; rounds_to_97=none when 97% was not reached).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir="$root/../shared/data/mnist"
rounds=100
threads=2
encodings=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data_dir) data_dir=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --num_threads) threads=$2; shift 2 ;;
    -*) echo "compression: unknown flag $1" >&2; exit 2 ;;
    *) encodings+=("$1"); shift ;;
  esac
done
[ ${#encodings[@]} -gt 0 ] || encodings=(fp32 fp16 int8 topk0.1 topk0.01)
sim="$root/build/server/sim/fedge-sim"
[ -x "$sim" ] || { echo "compression: build fedge-sim first (scripts/build.sh fedge-sim)" >&2; exit 2; }
config="$root/configs/sim/mnist_2nn_iid.textproto"
. "$root/scripts/lib.sh"
out="$root/runs/compression"
mkdir -p "$out"

for encoding in "${encodings[@]}"; do
  fedge_encoding_flags "$encoding" || exit 2
  csv="$out/$encoding.csv"
  rm -f "$csv"
  "$sim" --config "$config" --data_dir "$data_dir" \
    --data.synthetic_fallback=false --num_threads="$threads" \
    --rounds="$rounds" --stop_at_accuracy=0 "${encoding_flags[@]}" \
    --history_out "$csv" > "$out/$encoding.log" 2>&1 ||
    { echo "compression: fedge-sim failed, see $out/$encoding.log" >&2; tail -3 "$out/$encoding.log" >&2; }
  awk -F, -v name="$encoding" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { bytes += $col["bytes_received"]; n++; acc = $col["test_accuracy"]
      if (first == "" && acc != "" && acc + 0 >= 0.97) first = $col["round"] }
    END {
      printf "encoding=%s upload_bytes_per_round=%s rounds_to_97=%s final_accuracy=%s\n",
        name, (n ? sprintf("%d", bytes / n) : "none"),
        (first == "" ? "none" : first),
        (acc == "" ? "none" : sprintf("%.4f", acc)) }' "$csv" 2>/dev/null ||
    echo "encoding=$encoding upload_bytes_per_round=none rounds_to_97=none final_accuracy=none"
done
