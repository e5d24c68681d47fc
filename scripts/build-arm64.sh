#!/usr/bin/env bash
# build-arm64.sh: cross-builds fedge for 64-bit ARM Linux (aarch64) on an
# x86-64 Debian 12 host: fedge-agent, fedge-coordinator, fedge-evaluator and
# fedge into build-arm64/ (Release, tests and benchmarks off), then prints
# `file` for each and runs the agent once under qemu-aarch64-static.
#
#   scripts/build-arm64.sh [ninja targets...]
#
# Environment: FEDGE_ARM64_BUILD_DIR (default <repo>/build-arm64),
# FEDGE_ARM64_SYSROOT (default <repo>/build-arm64-sysroot), FEDGE_JOBS
# (default nproc), FEDGE_DEBIAN_MIRROR (default http://deb.debian.org/debian;
# security updates from FEDGE_DEBIAN_SECURITY_MIRROR).
#
# Idempotent: host packages already present are left alone, the sysroot is
# made once (again only when its package list changes), cmake configures
# once and ninja rebuilds what changed. Uses sudo when not root.
#
# Why an arm64 sysroot rather than Debian multiarch (`dpkg
# --add-architecture arm64` and the :arm64 -dev packages on the host):
# libtorch-dev is not Multi-Arch: same and depends on python3-dev, so
# libtorch-dev:arm64 cannot be installed beside the host's libtorch-dev
# (which the native build needs); LibTorch also pulls ~400 arm64 packages
# (OpenCV, FFmpeg, Python, ...) that have no business in the host's dpkg
# database, which other builds on this machine share. So the arm64 packages
# go into a folder instead: `mmdebstrap --variant=extract` resolves their
# dependencies with apt and unpacks the arm64 .debs into
# build-arm64-sysroot/ without running any maintainer script, so it needs
# neither qemu nor binfmt_misc (a `debootstrap --foreign` second stage would
# need binfmt_misc, which containers often lack). Two fix-ups follow:
# absolute symlinks become relative, so they resolve inside the sysroot, and
# libblas.so.3, liblapack.so.3 and libopenblas.so.0 point at OpenBLAS, as
# libopenblas0-openmp's update-alternatives would do. The toolchain file
# cmake/toolchain-arm64.cmake points CMAKE_SYSROOT at the folder, uses the
# cross compilers from crossbuild-essential-arm64 and the host's protoc and
# grpc_cpp_plugin (the same versions as the sysroot's libraries: both are
# bookworm's). The same folder is the -L prefix of qemu-aarch64-static, which
# runs the arm64 binaries here without binfmt_misc.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="${FEDGE_ARM64_BUILD_DIR:-$root/build-arm64}"
sysroot="${FEDGE_ARM64_SYSROOT:-$root/build-arm64-sysroot}"
jobs="${FEDGE_JOBS:-$(nproc)}"
mirror="${FEDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${FEDGE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
suite=bookworm
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(fedge-agent fedge-coordinator fedge-evaluator fedge)
fi

# Host tools: the cross toolchain, qemu, the sysroot maker, the code
# generators and the build tools.
HOST_PACKAGES=(
  crossbuild-essential-arm64 qemu-user-static mmdebstrap
  cmake ninja-build pkg-config ccache file
  protobuf-compiler protobuf-compiler-grpc
)
# The arm64 packages fedge links against (their dependencies come along).
# protobuf-compiler-grpc:arm64 is only there because gRPC's CMake package
# checks that its plugin files exist; the host's plugin is the one that runs.
SYSROOT_PACKAGES=(
  libc6-dev libstdc++-12-dev
  libtorch-dev libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev libabsl-dev
  libssl-dev zlib1g-dev libcpp-httplib-dev libxxhash-dev
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { echo "build-arm64: $*"; }

install_host_packages() {
  local missing=() p
  for p in "${HOST_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
        grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "host packages already installed"
    return
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${missing[@]}"
}

# Rewrites every absolute symlink under the sysroot as a relative one, so
# that /lib/aarch64-linux-gnu/libz.so.1 means <sysroot>/lib/... on the host.
relativize_symlinks() {
  local link target
  while IFS= read -r -d '' link; do
    target=$(readlink "$link")
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" \
      "$sysroot$target")" "$link"
  done < <(find "$sysroot" -type l -lname '/*' -print0)
}

# What libopenblas0-openmp's update-alternatives would have done: BLAS and
# LAPACK are OpenBLAS (OpenMP variant).
link_blas() {
  local lib=$sysroot/usr/lib/aarch64-linux-gnu name
  for name in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
    ln -sfn "openblas-openmp/$name" "$lib/$name"
  done
}

make_sysroot() {
  local stamp=$sysroot/.fedge-sysroot wanted
  wanted="$suite ${SYSROOT_PACKAGES[*]}"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    log "sysroot $sysroot is up to date"
    return
  fi
  log "making the arm64 sysroot $sysroot (~400 packages, ~1.1 GB unpacked)"
  $SUDO rm -rf "$sysroot"
  local include
  include=$(IFS=,; echo "${SYSROOT_PACKAGES[*]}")
  $SUDO mmdebstrap --variant=extract --architectures=arm64 \
    --format=directory --include="$include" "$suite" "$sysroot" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" \
    "deb $security $suite-security main"
  if [ -n "$SUDO" ]; then $SUDO chown -R "$(id -u):$(id -g)" "$sysroot"; fi
  relativize_symlinks
  link_blas
  echo "$wanted" > "$stamp"
}

# The host's protoc generates code for the sysroot's protobuf headers: their
# versions must match (both bookworm's 3.21.12 on a Debian 12 host).
check_protoc() {
  local host sysroot_version
  host=$(protoc --version | awk '{print $2}')
  sysroot_version=$(awk '/define PROTOBUF_VERSION / {v = $3} END {
      printf "%d.%d.%d", v / 1000000, v / 1000 % 1000, v % 1000}' \
    "$sysroot/usr/include/google/protobuf/port_def.inc")
  if [ "$host" != "$sysroot_version" ]; then
    log "host protoc $host does not match the sysroot's protobuf" \
      "$sysroot_version: build on Debian 12 (bookworm)"
    return 1
  fi
}

configure_and_build() {
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
  export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
  if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchain-arm64.cmake" \
      -DFEDGE_ARM64_SYSROOT="$sysroot" \
      -DFEDGE_BUILD_TESTS=OFF -DFEDGE_BUILD_BENCH=OFF >/dev/null
  fi
  log "compiling ${targets[*]} with $jobs jobs into $build"
  ninja -C "$build" -j "$jobs" "${targets[@]}"
}

report() {
  local t path
  for t in "${targets[@]}"; do
    path=$(find "$build" -name "$t" -type f -perm -u+x | head -n 1)
    [ -n "$path" ] && file "$path"
  done
  # The agent's libraries all resolve and it starts (LibTorch included).
  [ -x "$build/edge_agent/fedge-agent" ] || return 0
  if qemu-aarch64-static -L "$sysroot" "$build/edge_agent/fedge-agent" \
      --help >/dev/null 2>&1; then
    log "fedge-agent runs under qemu-aarch64-static -L $sysroot"
  else
    log "fedge-agent does not start under qemu-aarch64-static -L $sysroot"
    return 1
  fi
}

install_host_packages
make_sysroot
check_protoc
configure_and_build
report
