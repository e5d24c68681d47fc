#!/usr/bin/env bash
# Configures and builds fedge into build/ (Release, Ninja, ccache when
# present). Extra arguments are passed to ninja (e.g. a target name).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${FEDGE_BUILD_DIR:-$root/build}"
# Lets ccache share results between clones of the repository.
export CCACHE_BASEDIR="$root"
export CCACHE_NOHASHDIR=1
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
jobs="${FEDGE_JOBS:-$(nproc)}"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
echo "build: compiling with $jobs jobs into $build (the first build takes a few minutes)"
ninja -C "$build" -j "$jobs" "$@"
