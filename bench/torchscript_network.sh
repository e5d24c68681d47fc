#!/usr/bin/env bash
# The TorchScript CNN with BatchNorm (examples/torchscript_cnn) federated over
# the network on MNIST: fedge-coordinator (which never loads LibTorch) and 3
# fedge-agent processes on 127.0.0.1 with TLS, each holding a third of the
# training set (IID), all selected every round, E=1, B=10, lr 0.05; central
# evaluation on the 10,000 test images after every round. The agents fetch
# the archive from the coordinator (SHA-256 checked) and train it with
# LibTorch. Prints the accuracy per round, then
#   model=torchscript_cnn target=0.985 rounds_to_target=N final_accuracy=X
# (rounds_to_target=none when the target is not reached within --rounds).
#
# usage: bench/torchscript_network.sh [--rounds R] [--target A] [--data_dir DIR]
# Needs build/ (scripts/build.sh) and python3-torch for the archive.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=15
target=0.985
data_dir="$root/../shared/data/mnist"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --data_dir) data_dir=$2; shift 2 ;;
    *) echo "torchscript_network: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
for b in server/fedge-coordinator edge_agent/fedge-agent server/fedge-evaluator; do
  [ -x "$root/build/$b" ] || { echo "torchscript_network: build/$b missing: run scripts/build.sh" >&2; exit 2; }
done
[ -f "$data_dir/train-images-idx3-ubyte" ] || [ -f "$data_dir/train-images-idx3-ubyte.gz" ] ||
  { echo "torchscript_network: no MNIST in $data_dir (--data_dir DIR)" >&2; exit 2; }
. "$root/scripts/lib.sh"
fedge_work_dir tsnet

# Debian's python3-torch (not a python3 earlier in PATH).
/usr/bin/python3 "$root/examples/torchscript_cnn/make_model.py" --out "$work/model.pt" >&2
"$root/deploy/make-certs.sh" "$work/certs" >/dev/null
"$root/build/server/fedge-coordinator" \
  --config "$root/examples/torchscript_cnn/coordinator.textproto" \
  --listen_address 127.0.0.1:0 --state_dir "$work/coordinator" --rounds "$rounds" \
  --model.torchscript_path "$work/model.pt" \
  --strategy.count 3 --strategy.min_available_agents 3 --strategy.min_fit_agents 3 \
  --strategy.round_deadline_ms 600000 \
  --eval_data.data_dir "$data_dir" --eval_data.synthetic_fallback=false \
  --tls.cert_path "$work/certs/coordinator.pem" --tls.key_path "$work/certs/coordinator.key" \
  2> "$work/coordinator.log" &
coordinator=$!
pids+=("$coordinator")
port=$(fedge_wait_port "$work/coordinator" "$coordinator" "$work/coordinator.log")
for i in 1 2 3; do
  "$root/build/edge_agent/fedge-agent" --coordinator "127.0.0.1:$port" \
    --agent_id "agent-$i" --state_dir "$work/agent-$i" \
    --data.source mnist --data.data_dir "$data_dir" --data.synthetic_fallback=false \
    --num_threads 1 --tls.ca_path "$work/certs/ca.pem" 2> "$work/agent-$i.log" &
  pids+=("$!")
done
# Each round trains 20,000 examples per agent: bounded generously, not tuned.
if ! timeout $((rounds * 600)) tail --pid "$coordinator" -f /dev/null; then
  echo "torchscript_network: the coordinator did not finish in time" >&2; exit 1
fi
wait "$coordinator" || { echo "torchscript_network: coordinator failed" >&2; tail "$work/coordinator.log" >&2; exit 1; }
history="$work/coordinator/history.csv"
cut -d, -f1,2,8,10 "$history" | column -t -s, >&2
awk -F, -v target="$target" 'NR > 1 && $8 != "" {
    if (reached == "" && $8 + 0 >= target) reached = $1
    last = $8
  }
  END {
    printf "model=torchscript_cnn target=%s rounds_to_target=%s final_accuracy=%s\n",
      target, (reached == "" ? "none" : reached), (last == "" ? "none" : last)
  }' "$history"
