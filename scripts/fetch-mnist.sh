#!/usr/bin/env bash
# Downloads the four MNIST files (IDX, gzipped) into DEST_DIR and verifies
# their SHA-256 sums. Idempotent: files that already verify are kept.
#
# Usage: scripts/fetch-mnist.sh [DEST_DIR]     (default: data/mnist, relative
#                                               to the current directory)
# Exit codes:
#   0  all four files present and verified
#   1  usage error or local failure (e.g. cannot create DEST_DIR)
#   2  could not get verified files (no network, every mirror failed, or a
#      checksum mismatch); the main job then uses Fashion-MNIST or synthetic data
# Environment:
#   FEDGE_MNIST_MIRRORS  space-separated base URLs (ending in "/") to use
#                        instead of the built-in list; file:// URLs work.
#   FEDGE_FETCH_TIMEOUT  per-file download time limit in seconds (default 300).
set -euo pipefail

if [[ $# -gt 1 || "${1:-}" == -* ]]; then
  echo "usage: $0 [DEST_DIR]" >&2
  exit 1
fi
dest="${1:-data/mnist}"

default_mirrors=(
  "https://ossci-datasets.s3.amazonaws.com/mnist/"
  "https://storage.googleapis.com/cvdf-datasets/mnist/"
  "http://yann.lecun.com/exdb/mnist/"
)
if [[ -n "${FEDGE_MNIST_MIRRORS:-}" ]]; then
  read -r -a mirrors <<<"${FEDGE_MNIST_MIRRORS}"
else
  mirrors=("${default_mirrors[@]}")
fi
timeout_s="${FEDGE_FETCH_TIMEOUT:-300}"

# SHA-256 of the official .gz files (as pinned by public loaders).
declare -A sha256=(
  [train-images-idx3-ubyte.gz]=440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
  [train-labels-idx1-ubyte.gz]=3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
  [t10k-images-idx3-ubyte.gz]=8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
  [t10k-labels-idx1-ubyte.gz]=f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
)
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
       t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

sha256_of() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# True when file $1 exists and has the SHA-256 of MNIST file $2.
verifies() {
  [[ -f "$1" ]] && [[ "$(sha256_of "$1")" == "${sha256[$2]}" ]]
}

# Downloads URL $1 to $2; false on any failure.
download() {
  if command -v curl >/dev/null; then
    curl -fsSL --connect-timeout 5 --max-time "${timeout_s}" -o "$2" "$1"
  elif command -v wget >/dev/null; then
    wget -q --connect-timeout=5 --timeout="${timeout_s}" --tries=1 -O "$2" "$1"
  else
    echo "fetch-mnist: neither curl nor wget is installed" >&2
    return 1
  fi
}

# Mirrors that failed once are not tried again (bounds the wait offline).
declare -A dead=()

# Fetches MNIST file $1 into $dest from the first mirror that serves a copy
# with the right checksum.
fetch() {
  local name="$1" part="${dest}/$1.part"
  for mirror in "${mirrors[@]}"; do
    [[ -n "${dead[${mirror}]:-}" ]] && continue
    if ! download "${mirror}${name}" "${part}" 2>/dev/null; then
      dead[${mirror}]=1
    elif verifies "${part}" "${name}"; then
      mv -f "${part}" "${dest}/${name}"
      echo "fetch-mnist: ${name}: downloaded from ${mirror}"
      return 0
    else
      echo "fetch-mnist: ${name} from ${mirror}: SHA-256 mismatch, ignored" >&2
    fi
    rm -f "${part}"
  done
  return 1
}

mkdir -p "${dest}" || { echo "fetch-mnist: cannot create ${dest}" >&2; exit 1; }

missing=()
for name in "${files[@]}"; do
  if verifies "${dest}/${name}" "${name}"; then
    echo "fetch-mnist: ${name}: present, SHA-256 ok"
  elif ! fetch "${name}"; then
    missing+=("${name}")
    if [[ -f "${dest}/${name}" ]]; then
      echo "fetch-mnist: ${dest}/${name} exists but does not match its" \
           "SHA-256; left in place" >&2
    fi
  fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "fetch-mnist: missing in ${dest}: ${missing[*]}" >&2
  echo "fetch-mnist: could not download MNIST (no network?)" >&2
  exit 2
fi
echo "fetch-mnist: MNIST ready in ${dest}"
