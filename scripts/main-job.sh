#!/usr/bin/env bash
# The main job: installs what is needed, builds fedge, gets MNIST (download
# with checksums when the network allows; otherwise it says so and uses the
# synthetic set) and runs a real local federation on 127.0.0.1: one
# fedge-coordinator and 3 fedge-agent processes over TLS, showing progress
# and test accuracy per round. Extra arguments go to
# scripts/local-federation.sh, e.g. --data_dir ../shared/data/mnist,
# --agents 5, --rounds 20.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" fedge-coordinator fedge-agent fedge-sim
data_dir="$root/data/mnist"
for arg in "$@"; do
  case "$arg" in --data_dir=*) data_dir=${arg#--data_dir=} ;; esac
done
prev=""
for arg in "$@"; do
  [ "$prev" = "--data_dir" ] && data_dir=$arg
  prev=$arg
done
if [ "$data_dir" = "$root/data/mnist" ]; then
  "$root/scripts/fetch-mnist.sh" "$data_dir" ||
    echo "main-job: no MNIST download; the federation will say so and use synthetic data"
fi
exec "$root/scripts/local-federation.sh" --fresh --data_dir "$data_dir" "$@"
