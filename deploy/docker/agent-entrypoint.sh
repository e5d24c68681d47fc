#!/usr/bin/env bash
# Entrypoint of the fedge-agent image (deploy/Dockerfile): one fedge-agent
# with no per-agent settings, so `docker-compose up --scale agent=N` works.
#
# - agent id: the container's hostname (unique per container); under mutual
#   TLS the id is the common name of the client certificate instead, and
#   every container claims its own certificate agent-<i> (see below).
# - data: /data/mnist (the host's FEDGE_MNIST_DIR, read-only) or, when that
#   is empty, the seeded synthetic set; the coordinator (simulation mode)
#   hands out the partition at join time.
# - device profile: FEDGE_COMPUTE_SLOWDOWN, FEDGE_BANDWIDTH_BPS,
#   FEDGE_LATENCY_MS, FEDGE_DROPOUT_PROBABILITY -> --profile.* flags.
# Extra arguments (and FEDGE_AGENT_FLAGS) are appended, so they override
# everything below.
set -euo pipefail

certs=/certs
slots=/var/lib/fedge/slots
host="$(hostname)"

log() { echo "agent-entrypoint[$host]: $*" >&2; }
die() { log "error: $*"; exit 1; }

is_true() {
  case "${1,,}" in 1|true|yes|on) return 0 ;; 0|false|no|off|"") return 1 ;; esac
  die "expected 0/1 (or true/false), got '$1'"
}

# Mutual TLS: the certs service issued agent-1 .. agent-N; each container
# takes the first free one (mkdir is atomic on the shared agent-slots volume)
# and keeps it across restarts (the slot records the hostname). Slots are
# freed by `docker-compose down -v`.
claim_certificate() {
  local i n=0 pem
  for pem in "$certs"/agent-*.pem; do [[ -f "$pem" ]] && n=$((n + 1)); done
  [[ $n -gt 0 ]] || die "FEDGE_MTLS=1 but $certs holds no agent certificates (rerun the certs service)"
  for ((i = 1; i <= n; i++)); do
    if [[ "$(cat "$slots/agent-$i/owner" 2>/dev/null)" == "$host" ]]; then
      echo "agent-$i"; return
    fi
  done
  for ((i = 1; i <= n; i++)); do
    if mkdir "$slots/agent-$i" 2>/dev/null; then
      echo "$host" >"$slots/agent-$i/owner"
      echo "agent-$i"; return
    fi
  done
  die "all $n agent certificates are taken; raise FEDGE_AGENT_CERTS and run 'docker-compose down -v' (or scale down)"
}

flags=(
  --config /etc/fedge/agent.textproto
  --coordinator="${FEDGE_COORDINATOR_ADDRESS:-coordinator:50051}"
  --agent_id="$host"
  --state_dir=/var/lib/fedge/agent
  --data.source=mnist
  --data.data_dir=/data/mnist
  --data.synthetic_fallback=true
  --num_threads="${FEDGE_AGENT_THREADS:-1}"
  --profile.compute_slowdown="${FEDGE_COMPUTE_SLOWDOWN:-1.0}"
  --profile.bandwidth_bytes_per_second="${FEDGE_BANDWIDTH_BPS:-0}"
  --profile.added_latency_ms="${FEDGE_LATENCY_MS:-0}"
  --profile.dropout_probability="${FEDGE_DROPOUT_PROBABILITY:-0.0}"
)
if is_true "${FEDGE_TLS:-1}"; then
  [[ -r "$certs/ca.pem" ]] || die "$certs/ca.pem missing (did the certs service run?)"
  # The coordinator's certificate names fedge-coordinator (and, issued by
  # the certs service, coordinator and localhost).
  flags+=(--tls.ca_path="$certs/ca.pem")
  if is_true "${FEDGE_MTLS:-0}"; then
    cert="$(claim_certificate)"
    log "mutual TLS: client certificate $cert (the agent id is its common name)"
    flags+=(--tls.cert_path="$certs/$cert.pem" --tls.key_path="$certs/$cert.key")
  fi
else
  flags+=(--tls.insecure=true)
fi
# Signed global models (docs/model-signing.md): pin the federation's
# model-signing key when the certs service provided it.
if [[ -r "$certs/model-signing.pub.pem" ]]; then
  flags+=(--model_signing_public_key_paths="$certs/model-signing.pub.pem")
fi
# Word-split on purpose: a list of --field.path=value flags.
# shellcheck disable=SC2206
extra=(${FEDGE_AGENT_FLAGS:-})
flags+=("${extra[@]}" "$@")

log "fedge-agent ${flags[*]}"
exec /usr/local/bin/fedge-agent "${flags[@]}"
