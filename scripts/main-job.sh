#!/usr/bin/env bash
# The main job: installs what is needed, builds fedge, gets MNIST (download
# with checksums when the network allows; otherwise the run says so and uses
# the synthetic set) and runs a federation that learns, one line per round.
# Extra arguments go to fedge-sim, e.g. --data_dir ../shared/data/mnist.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" fedge-sim
data_dir="$root/data/mnist"
if ! "$root/scripts/fetch-mnist.sh" "$data_dir"; then
  echo "main-job: continuing without a download"
fi
mkdir -p "$root/runs"
exec "$root/build/server/sim/fedge-sim" \
  --config "$root/configs/sim/quickstart.textproto" \
  --data_dir "$data_dir" --history_out "$root/runs/quickstart_history.csv" "$@"
