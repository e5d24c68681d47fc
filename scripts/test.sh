#!/usr/bin/env bash
# Installs what is needed, builds fedge and runs every test (CTest).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
cd "${FEDGE_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "${FEDGE_TEST_JOBS:-2}" --timeout 900
