#!/usr/bin/env bash
# The certs service of deploy/docker-compose.yml (one-shot): a private CA
# and TLS certificates made by deploy/make-certs.sh.
#
# The CA and every key live in /var/lib/fedge/ca (the volume `ca`, mounted
# by this service only); what the others need is copied into /certs (the
# volume `certs`): ca.pem, coordinator.pem/.key and, with FEDGE_MTLS=1,
# FEDGE_AGENT_CERTS client certificates agent-1 .. agent-N (one per agent
# container). The operator certificate operator-1 (the Operator service's
# client certificate under mutual TLS: fedge status, pause, ...) goes to
# /operator-certs (the volume operator-certs, mounted by the coordinator
# only, for its healthcheck), never to the agents' volume, and so does the
# model-signing key model-signing.key (its public key model-signing.pub.pem
# goes to /certs for the agents). Idempotent:
# make-certs.sh keeps current certificates.
set -euo pipefail

ca=/var/lib/fedge/ca
certs=/certs

is_true() {
  case "${1,,}" in 1|true|yes|on) return 0 ;; 0|false|no|off|"") return 1 ;; esac
  echo "certs-entrypoint: error: expected 0/1, got '$1'" >&2; exit 1
}

agents=0
if is_true "${FEDGE_MTLS:-0}"; then agents="${FEDGE_AGENT_CERTS:-16}"; fi
# "coordinator" is the service's name on the compose network.
make-certs.sh "$ca" --agents "$agents" --operators 1 --san coordinator "$@"

# install(1) writes to a temporary name and renames: readers never see half
# a file.
install -m 644 "$ca/ca.pem" "$ca/coordinator.pem" "$certs/"
install -m 600 "$ca/coordinator.key" "$certs/"
for ((i = 1; i <= agents; i++)); do
  install -m 644 "$ca/agent-$i.pem" "$certs/"
  install -m 600 "$ca/agent-$i.key" "$certs/"
done
if [[ -d /operator-certs && -w /operator-certs ]]; then
  install -m 644 "$ca/operator-1.pem" /operator-certs/
  install -m 600 "$ca/operator-1.key" /operator-certs/
  # Model signing (docs/model-signing.md): the private key goes only where
  # coordinators (and edge aggregators) look, never to the agents' volume.
  install -m 600 "$ca/model-signing.key" /operator-certs/
fi
# ... and its public key to every agent, which pins it.
install -m 644 "$ca/model-signing.pub.pem" "$certs/"
# Certificates beyond FEDGE_AGENT_CERTS (or all, without mutual TLS) go.
for pem in "$certs"/agent-*.pem; do
  [[ -f "$pem" ]] || continue
  i="${pem##*/agent-}"; i="${i%.pem}"
  if [[ ! "$i" =~ ^[0-9]+$ ]] || (( i > agents )); then
    rm -f "$pem" "${pem%.pem}.key"
  fi
done
echo "certs-entrypoint: $certs ready (mutual TLS: $( ((agents > 0)) && echo "on, $agents agent certificates" || echo off))"
