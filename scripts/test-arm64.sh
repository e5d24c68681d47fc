#!/usr/bin/env bash
# The arm64 end-to-end test (docs/arm64.md): cross-builds the agent for arm64
# (scripts/build-arm64.sh: host packages, sysroot, build-arm64/), registers
# arm64_e2e_test in the native build (-DFEDGE_ARM64_E2E=ON) and runs it: the
# arm64 agent under qemu-aarch64-static in a federation with the native
# coordinator and agents, its model equal to an x86-64 agent's. CI runs it
# after scripts/test.sh; idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${FEDGE_BUILD_DIR:-$root/build}"
FEDGE_JOBS="${FEDGE_JOBS:-$(nproc)}" "$root/scripts/build-arm64.sh" fedge-agent
cmake -S "$root" -B "$build" -DFEDGE_ARM64_E2E=ON >/dev/null
"$root/scripts/build.sh" arm64_e2e_test
cd "$build"
ctest --output-on-failure -L arm64 --timeout 900
