#!/usr/bin/env bash
# The main job: installs what is needed, builds fedge, picks real data and
# runs a real local federation on 127.0.0.1: one fedge-coordinator and 3
# fedge-agent processes over TLS, showing progress and test accuracy per
# round and the live status page's address; it ends by drawing the run's
# accuracy and loss (PNG) and printing where it is.
#
# Data, in this order: MNIST (--data_dir DIR, or downloaded into data/mnist
# with checksums when the network allows), else Fashion-MNIST from Debian's
# dataset-fashion-mnist package (installed by scripts/install-deps.sh; no
# network needed), else a seeded synthetic set. It says which.
#
# Extra arguments go to scripts/local-federation.sh, e.g.
# --data_dir ../shared/data/mnist, --agents 5, --rounds 20.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" fedge-coordinator fedge-evaluator fedge-agent fedge \
  fedge-sim
data_dir=""
args=()
prev=""
for arg in "$@"; do
  case "$arg" in
    --data_dir=*) data_dir=${arg#--data_dir=} ;;
    --data_dir) ;;
    *) [ "$prev" = "--data_dir" ] && data_dir=$arg || args+=("$arg") ;;
  esac
  prev=$arg
done
fashion=/usr/share/datasets/fashion-mnist
if [ -n "$data_dir" ]; then
  echo "main-job: data: $data_dir (given with --data_dir)"
elif "$root/scripts/fetch-mnist.sh" "$root/data/mnist"; then
  data_dir="$root/data/mnist"
  echo "main-job: data: MNIST in $data_dir"
elif compgen -G "$fashion/train-images-idx3-ubyte*" >/dev/null; then
  data_dir="$fashion"
  echo "main-job: data: Fashion-MNIST from Debian's dataset-fashion-mnist ($fashion): no MNIST download here"
else
  data_dir="$root/data/mnist"
  echo "main-job: data: no MNIST and no Fashion-MNIST; the federation uses the seeded synthetic set"
fi
exec "$root/scripts/local-federation.sh" --fresh --data_dir "$data_dir" \
  "${args[@]+"${args[@]}"}"
