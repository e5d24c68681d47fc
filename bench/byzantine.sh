#!/usr/bin/env bash
# Robust aggregation against model poisoning, with fedge-sim: MNIST 2NN IID,
# 100 agents, C=0.1 (10 per round), E=1, B=10, 100 rounds, 20 agents send
# their update times -10 (configs/sim/mnist_2nn_iid_poisoned.textproto).
# Each strategy runs poisoned and clean (poisoned_agents=0, same seeds and
# rounds); the result is the last round's test accuracy. fedge-sim's peak
# RSS (/usr/bin/time -v) of the poisoned run is the memory cost.
#
# Hyper-parameters (docs/strategies.md says why):
#   trimmed_mean  trim_beta 0.4: trims 4 of 10 per side; a round has >= 5
#                 poisoned agents with probability 2.5% (hypergeometric)
#   krum          krum_f 3: the most 2f + 3 <= 10 allows
#   norm_bounded  max_update_norm 1.0: about the median L2 norm of an honest
#                 update (measured: 0.24 to 2.35 over 30 rounds, median 1.04)
#
# usage: bench/byzantine.sh [--data_dir DIR] [--rounds N] [--num_threads N]
#            [--trim_beta B] [--krum_f F] [--max_update_norm C] [STRATEGY ...]
#
# Prints, per strategy:
#   strategy=NAME poisoned=20 final_accuracy=X clean_accuracy=Y
#   strategy=NAME peak_rss_mb=M
# (none where a run produced no result).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir="$root/../shared/data/mnist"
rounds=100
threads=2
trim_beta=0.4
krum_f=3
max_update_norm=1.0
strategies=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data_dir) data_dir=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --num_threads) threads=$2; shift 2 ;;
    --trim_beta) trim_beta=$2; shift 2 ;;
    --krum_f) krum_f=$2; shift 2 ;;
    --max_update_norm) max_update_norm=$2; shift 2 ;;
    -*) echo "byzantine: unknown flag $1" >&2; exit 2 ;;
    *) strategies+=("$1"); shift ;;
  esac
done
[ ${#strategies[@]} -gt 0 ] ||
  strategies=(fedavg median trimmed_mean krum norm_bounded)
sim="$root/build/server/sim/fedge-sim"
[ -x "$sim" ] || { echo "byzantine: build fedge-sim first (scripts/build.sh fedge-sim)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "byzantine: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
config="$root/configs/sim/mnist_2nn_iid_poisoned.textproto"
out="$root/runs/byzantine"
mkdir -p "$out"
poisoned=$(awk -F': *' '$1 == "poisoned_agents" { print $2 }' "$config")

# The last round's test accuracy in a history CSV, or none.
final_accuracy() {
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
           { acc = $col["test_accuracy"] }
           END { print (acc == "" ? "none" : sprintf("%.4f", acc)) }' \
    "$1" 2>/dev/null || echo none
}

# run STRATEGY POISONED TAG: one fedge-sim run under /usr/bin/time -v.
run() {
  local name=$1 bad=$2 tag=$3
  /usr/bin/time -v -o "$out/$tag.time" \
    "$sim" --config "$config" --data_dir "$data_dir" \
    --data.synthetic_fallback=false --num_threads="$threads" \
    --rounds="$rounds" --poisoned_agents="$bad" --strategy.name="$name" \
    --strategy.trim_beta="$trim_beta" --strategy.krum_f="$krum_f" \
    --strategy.max_update_norm="$max_update_norm" \
    --history_out "$out/$tag.csv" > "$out/$tag.log" 2>&1 ||
    { echo "byzantine: fedge-sim failed, see $out/$tag.log" >&2; tail -3 "$out/$tag.log" >&2; }
}

for name in "${strategies[@]}"; do
  rm -f "$out/$name-poisoned.csv" "$out/$name-clean.csv" "$out/$name-poisoned.time"
  run "$name" "$poisoned" "$name-poisoned"
  run "$name" 0 "$name-clean"
  echo "strategy=$name poisoned=$poisoned" \
    "final_accuracy=$(final_accuracy "$out/$name-poisoned.csv")" \
    "clean_accuracy=$(final_accuracy "$out/$name-clean.csv")"
  rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' \
    "$out/$name-poisoned.time" 2>/dev/null)
  echo "strategy=$name peak_rss_mb=${rss:-none}"
done
