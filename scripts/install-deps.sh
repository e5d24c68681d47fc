#!/usr/bin/env bash
# Installs everything fedge needs to build, test and run on Debian 12 / Ubuntu.
# Idempotent: packages already present are left alone. Uses sudo when not root.
#
# usage: scripts/install-deps.sh [--bench]
#   --bench  also installs what bench/vs_flower.sh needs to run Flower 1.6's
#            harness (../shared/peers/flower): its Python side and GNU time.
#            The build, the tests and the main job do not need these.
set -euo pipefail

with_bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) with_bench=1 ;;
    -h | --help)
      sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "install-deps: unknown argument '$arg' (the only option is --bench; see --help)" >&2
      exit 2
      ;;
  esac
done

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates curl
  libtorch-dev libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libssl-dev zlib1g-dev libgtest-dev libgmock-dev libbenchmark-dev
  openssl
  # XXH3-128, the uploads' checksum (common/checksum.h; header only).
  libxxhash-dev
  # The coordinator's HTTP listener; the status page's browser test and
  # Prometheus scraping /metrics (tests/e2e/observability_e2e_test.cc).
  libcpp-httplib-dev chromium prometheus
  # Tests: wall-clock steps under libfaketime.
  faketime
  # Real data without network (Fashion-MNIST, IDX): the main job's fallback.
  dataset-fashion-mnist
  # fedge-export: ONNX export and int8 quantization through PyTorch, checks
  # of the exported files (ONNX checker, OpenCV's DNN module).
  python3-torch python3-onnx python3-numpy libopencv-dnn-dev
  # Fuzzing (tests/fuzz, run briefly by CI): clang with libFuzzer and the
  # sanitizers' runtimes.
  clang-14 libfuzzer-14-dev libclang-rt-14-dev
)
# bench/vs_flower.sh: Flower 1.6's harness (Python, gRPC, NumPy, PyTorch,
# TLS through cryptography) and GNU time for its peak-RSS figure.
BENCH_PACKAGES=(
  python3-grpcio python3-protobuf python3-numpy python3-torch
  python3-cryptography python3-pycryptodome time openssl
)
if [ "$with_bench" -eq 1 ]; then PACKAGES+=("${BENCH_PACKAGES[@]}"); fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
