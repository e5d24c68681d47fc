#!/usr/bin/env bash
# A real local federation on 127.0.0.1: one fedge-coordinator and N
# fedge-agent processes, TLS on (certificates from deploy/make-certs.sh).
# Shows the coordinator's per-round progress and accuracy and the address
# of its live status page (HTTPS with the run's own CA); leaves the history,
# the final model and a plot of accuracy and loss in runs/local-federation/.
#
# usage: scripts/local-federation.sh [--agents N] [--rounds R]
#            [--data_dir DIR] [--fresh] [-- extra coordinator flags]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
agents=3
rounds=10
data_dir="$root/data/mnist"
fresh=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --data_dir) data_dir=$2; shift 2 ;;
    --data_dir=*) data_dir=${1#--data_dir=}; shift ;;
    --fresh) fresh=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "local-federation: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
bin="$root/build"
run="$root/runs/local-federation"
[ "$fresh" = 1 ] && rm -rf "$run"
mkdir -p "$run"
"$root/deploy/make-certs.sh" "$run/certs" --agents "$agents" >/dev/null

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

rm -f "$run/coordinator/port"
"$bin/server/fedge-coordinator" \
  --config "$root/configs/coordinator/mnist_2nn.textproto" \
  --listen_address 127.0.0.1:0 --state_dir "$run/coordinator" \
  --rounds "$rounds" --strategy.count "$agents" \
  --strategy.min_available_agents "$agents" \
  --simulation.num_partitions "$agents" \
  --eval_data.data_dir "$data_dir" \
  --tls.cert_path "$run/certs/coordinator.pem" \
  --tls.key_path "$run/certs/coordinator.key" \
  --http_address 127.0.0.1:0 "${extra[@]+"${extra[@]}"}" \
  2> "$run/coordinator.log" &
coordinator=$!
pids+=("$coordinator")
. "$root/scripts/lib.sh"
port=$(fedge_wait_port "$run/coordinator" "$coordinator" "$run/coordinator.log")
http_port=""
for _ in $(seq 100); do
  http_port=$(cat "$run/coordinator/http_port" 2>/dev/null || true)
  [ -n "$http_port" ] && break
  sleep 0.1
done
dashboard="https://127.0.0.1:${http_port:-?}/"
echo "coordinator on 127.0.0.1:$port (TLS); starting $agents agents"
echo "status page: $dashboard (its certificate is signed by $run/certs/ca.pem: trust it, or accept the browser's warning)"

for i in $(seq "$agents"); do
  "$bin/edge_agent/fedge-agent" --config "$root/configs/agent/mnist.textproto" \
    --coordinator "127.0.0.1:$port" --agent_id "agent-$i" \
    --state_dir "$run/agent-$i" --data.data_dir "$data_dir" \
    --tls.ca_path "$run/certs/ca.pem" 2> "$run/agent-$i.log" &
  pids+=("$!")
done

# Progress: the coordinator's round lines as they happen.
tail -n +1 -f "$run/coordinator.log" --pid "$coordinator" |
  grep --line-buffered -E "central evaluation|resumed|round [0-9]+ (completed|abandoned): [0-9]+ agents|final model|^[WE]" |
  sed -u -E 's/^[IWEF][0-9]{4} [0-9:.]+ [a-z_.]+:[0-9]+\] //' &
status=0
wait "$coordinator" || status=$?
sleep 0.2
if [ "$status" -ne 0 ]; then
  echo "local-federation: the coordinator failed (exit $status); see $run/coordinator.log" >&2
  exit "$status"
fi
plot="$run/accuracy.png"
"$bin/server/fedge" plot "$run/coordinator/history.csv" -o "$plot" >/dev/null
echo "done: history in $run/coordinator/history.csv, final model in $run/coordinator/final_model.fedge"
echo "plot of accuracy and loss: $plot"
echo "status page (while a federation runs): $dashboard"
