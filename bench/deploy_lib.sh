# Shell helpers of bench/export.sh and bench/deploy_compression.sh. Source
# it after setting $root (the repository); it defines functions only.

# fedge_federate ARCH ROUNDS DEST DATA_DIR [FLAG...]: trains ARCH on MNIST
# in a real local federation (scripts/local-federation.sh: one coordinator,
# 3 agents on 127.0.0.1, IID thirds of MNIST, 1 local epoch per round) for
# ROUNDS rounds and copies the coordinator's final model and spec to
# DEST.fedge / DEST.spec. FLAGs go to the coordinator. Progress goes to
# stderr.
fedge_federate() {
  local arch=$1 rounds=$2 dest=$3 data_dir=$4
  shift 4
  echo "training $arch: $rounds rounds of a local federation (3 agents)" >&2
  "$root/scripts/local-federation.sh" --agents 3 --rounds "$rounds" \
    --data_dir "$data_dir" --fresh -- --model.architecture="$arch" \
    --strategy.round_deadline_ms=1800000 --agent_timeout_ms=120000 "$@" >&2
  cp "$root/runs/local-federation/coordinator/final_model.fedge" "$dest.fedge"
  cp "$root/runs/local-federation/coordinator/final_model.spec" "$dest.spec"
}

# fedge_figure KEY TEXT: the value of the first "KEY=value" in TEXT, or
# "none".
fedge_figure() {
  local v
  v=$(grep -o -m1 -E "(^| )$1=[^ ]+" <<< "$2" | head -1 | sed -E "s/^ ?$1=//")
  echo "${v:-none}"
}

# fedge_pp A B: (A - B) * 100 with two decimals (accuracies to percentage
# points), or "none" when either is missing.
fedge_pp() {
  if [ "$1" = none ] || [ "$2" = none ]; then echo none; return; fi
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a - b) * 100 }'
}
