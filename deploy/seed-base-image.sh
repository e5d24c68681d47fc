#!/usr/bin/env bash
# seed-base-image.sh: makes the base image debian:bookworm-slim available to
# `docker build` on a machine that can reach a Debian apt mirror but no
# container registry. Builds a minimal Debian 12 root file system with
# debootstrap (variant minbase) from the mirror this host's apt uses and
# `docker import`s it under that name, with the tweaks of the official slim
# image (no docs, man pages or locales; apt lists and caches cleaned).
#
#   deploy/seed-base-image.sh [--force] [--image NAME] [--mirror URL]
#
# Idempotent: does nothing when the image already exists (e.g. pulled from
# Docker Hub) unless --force is given. Needs root (sudo is used when not
# root) and debootstrap (installed with apt-get when missing). About 30 s.
set -euo pipefail

PROG="$(basename "$0")"
image="debian:bookworm-slim"
suite="bookworm"
mirror=""
force=0

die() { echo "$PROG: error: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) force=1; shift ;;
    --image) [[ $# -ge 2 ]] || die "--image wants a name"; image="$2"; shift 2 ;;
    --mirror) [[ $# -ge 2 ]] || die "--mirror wants a URL"; mirror="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
  command -v sudo >/dev/null || die "run as root (debootstrap needs it)"
  SUDO="sudo"
fi

command -v docker >/dev/null || die "docker not found (apt-get install docker.io)"
$SUDO docker info >/dev/null 2>&1 || die "the docker daemon does not answer (start dockerd)"

if [[ $force -eq 0 ]] && $SUDO docker image inspect "$image" >/dev/null 2>&1; then
  echo "$PROG: $image already present; nothing to do (--force rebuilds it)"
  exit 0
fi

# The URIs of the host's Debian archive and security archive, from the
# deb822 sources (/etc/apt/sources.list.d/*.sources) or the one-line format
# (/etc/apt/sources.list, *.list). Prints "URI SUITE" pairs.
host_sources() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    awk '
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { if (uris != "" && types ~ /(^|[[:space:]])deb([[:space:]]|$)/) emit(); uris = ""; suites = ""; types = ""; next }
      tolower($1) == "types:" { $1 = ""; types = $0 }
      tolower($1) == "uris:" { $1 = ""; uris = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      function emit(   u, s, nu, ns, i, j) {
        nu = split(uris, u, " "); ns = split(suites, s, " ")
        for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
      }
      END { if (uris != "" && types ~ /(^|[[:space:]])deb([[:space:]]|$)/) emit() }
    ' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    # deb [options] URI SUITE COMPONENTS...
    sed -E 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" { print $2, $3 }'
  done
}

sources="$(host_sources || true)"
if [[ -z "$mirror" ]]; then
  mirror="$(awk -v s="$suite" '$2 == s { print $1; exit }' <<<"$sources")"
  mirror="${mirror:-http://deb.debian.org/debian}"
fi
security="$(awk -v s="$suite-security" '$2 == s { print $1; exit }' <<<"$sources")"
security="${security:-http://deb.debian.org/debian-security}"
mirror="${mirror%/}"
security="${security%/}"

if ! command -v debootstrap >/dev/null; then
  echo "$PROG: installing debootstrap"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
    die "cannot install debootstrap (apt-get install debootstrap)"
fi

keyring=()
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] &&
  keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)

work="$(mktemp -d /tmp/fedge-seed.XXXXXX)"
trap '$SUDO rm -rf "$work"' EXIT
rootfs="$work/rootfs"
start=$SECONDS
echo "$PROG: debootstrap --variant=minbase $suite from $mirror"
if ! $SUDO debootstrap --variant=minbase "${keyring[@]}" "$suite" "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  die "debootstrap failed (log above)"
fi

# What the official debian:*-slim images do (see debuerreotype): keep
# documentation, man pages and translations out, keep apt's caches empty.
$SUDO tee "$rootfs/etc/dpkg/dpkg.cfg.d/docker" >/dev/null <<'EOF'
# Slim image: no documentation, man pages or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
$SUDO tee "$rootfs/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
$SUDO tee "$rootfs/etc/apt/apt.conf.d/docker-no-languages" >/dev/null <<'EOF'
Acquire::Languages "none";
EOF
$SUDO tee "$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes" >/dev/null <<'EOF'
Acquire::GzipIndexes "true";
EOF
$SUDO tee "$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests" >/dev/null <<'EOF'
Apt::AutoRemove::SuggestsImportant "false";
EOF
# The same archives as the host (and as the official image): the release,
# its updates and its security updates.
$SUDO rm -f "$rootfs/etc/apt/sources.list"
$SUDO tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
$SUDO sh -c "cd '$rootfs' && find usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete &&
  find usr/share/doc -mindepth 1 -type d -empty -delete &&
  rm -rf usr/share/man/* usr/share/info/* usr/share/groff/* usr/share/lintian/* &&
  find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + &&
  rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb \
    var/log/*.log var/log/apt/* tmp/* root/.bash_history dev/*"
echo 'debian' | $SUDO tee "$rootfs/etc/hostname" >/dev/null

echo "$PROG: importing the root file system as $image"
$SUDO tar --numeric-owner --xattrs -C "$rootfs" -c . |
  $SUDO docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "debootstrap --variant=minbase $suite $mirror (fedge seed-base-image.sh)" \
    - "$image" >/dev/null || die "docker import failed"
$SUDO docker run --rm "$image" true ||
  die "the imported image does not run"
echo "$PROG: $image ready in $((SECONDS - start)) s ($($SUDO docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'))"
