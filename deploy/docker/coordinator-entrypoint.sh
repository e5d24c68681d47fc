#!/usr/bin/env bash
# Entrypoint of the fedge-coordinator image (deploy/Dockerfile).
#
# Runs fedge-coordinator (and, through it, fedge-evaluator) as user fedge
# with the settings of deploy/.env, TLS on, gRPC on port 50051, the HTTP(S)
# listener (Prometheus /metrics, the status page at /) on port 8080 of every
# interface (HTTPS with the coordinator's certificate; plain HTTP only with
# FEDGE_TLS=0), state in /var/lib/fedge/coordinator
# (the named volume coordinator-state: checkpoints, history.csv, the final
# model), and copies history.csv and the final model into /results (a bind
# mount of FEDGE_RESULTS_DIR on the host) every few seconds and at exit.
#
# Started as root (the image's default), it only hands the state volume to
# fedge and then runs the coordinator as fedge and the copier as the owner of
# /results, so the files on the host belong to whoever owns that directory.
# Started as any other user (docker run --user ...), it runs both as that
# user. Extra arguments (and FEDGE_COORDINATOR_FLAGS) are appended to the
# coordinator's flags, so they override everything below.
set -euo pipefail

state=/var/lib/fedge/coordinator
results=/results
certs=/certs
mirror_every="${FEDGE_RESULTS_EVERY_SECONDS:-2}"

log() { echo "coordinator-entrypoint: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Copies history.csv and the final model into /results when they changed
# (through a temporary name, so a reader never sees half a file).
mirror() {
  [[ -d "$results" && -w "$results" ]] || return 0
  local f
  for f in history.csv final_model.fedge final_model.spec; do
    [[ -f "$state/$f" ]] || continue
    if ! cmp -s "$state/$f" "$results/$f"; then
      cp "$state/$f" "$results/.$f.tmp" && mv -f "$results/.$f.tmp" "$results/$f"
    fi
  done
}

# Internal modes: the copier process (as the owner of /results).
case "${1:-}" in
  --mirror-loop)
    # /proc, not kill -0: the coordinator may run as another user.
    while [[ -d "/proc/$2" ]]; do
      mirror || true
      sleep "$mirror_every"
    done
    exit 0 ;;
  --mirror-once) mirror; exit ;;
esac

is_true() {
  case "${1,,}" in 1|true|yes|on) return 0 ;; 0|false|no|off|"") return 1 ;; esac
  die "expected 0/1 (or true/false), got '$1'"
}

flags=(
  --config /etc/fedge/coordinator.textproto
  --listen_address=0.0.0.0:50051
  --http_address=0.0.0.0:8080
  --state_dir="$state"
  --rounds="${FEDGE_ROUNDS:-20}"
  --simulation.enabled=true
  --simulation.num_partitions="${FEDGE_NUM_PARTITIONS:-3}"
  --simulation.partition.method="${FEDGE_PARTITION_METHOD:-iid}"
  --strategy.count="${FEDGE_AGENTS_PER_ROUND:-3}"
  --strategy.min_available_agents="${FEDGE_MIN_AVAILABLE_AGENTS:-2}"
  --strategy.min_fit_agents="${FEDGE_MIN_FIT_AGENTS:-2}"
  --strategy.round_deadline_ms="${FEDGE_ROUND_DEADLINE_MS:-30000}"
  --agent_timeout_ms="${FEDGE_AGENT_TIMEOUT_MS:-20000}"
  --heartbeat_interval_ms="${FEDGE_HEARTBEAT_INTERVAL_MS:-1000}"
  # MNIST when the host's FEDGE_MNIST_DIR is mounted here, else the seeded
  # synthetic set (the agents make the same choice).
  --eval_data.source=mnist
  --eval_data.data_dir=/data/mnist
  --eval_data.synthetic_fallback=true
)
if is_true "${FEDGE_TLS:-1}"; then
  for f in coordinator.pem coordinator.key; do
    [[ -r "$certs/$f" ]] || die "$certs/$f missing or unreadable (did the certs service run?)"
  done
  flags+=(--tls.cert_path="$certs/coordinator.pem" --tls.key_path="$certs/coordinator.key")
  if is_true "${FEDGE_MTLS:-0}"; then
    flags+=(--tls.require_client_cert=true --tls.ca_path="$certs/ca.pem")
  fi
else
  log "WARNING: FEDGE_TLS=0: plain-text gRPC (developer mode only)"
  flags+=(--tls.insecure=true)
fi
# Signed global models (docs/model-signing.md) with the key the certs
# service put in the coordinators' volume operator-certs.
if [[ -r /operator-certs/model-signing.key ]]; then
  flags+=(--model_signing_key_path=/operator-certs/model-signing.key)
else
  log "WARNING: /operator-certs/model-signing.key missing: models are published unsigned"
fi
# Word-split on purpose: a list of --field.path=value flags.
# shellcheck disable=SC2206
extra=(${FEDGE_COORDINATOR_FLAGS:-})
flags+=("${extra[@]}" "$@")

as_fedge=()
as_results_owner=()
if [[ "$(id -u)" -eq 0 ]]; then
  # First start on a fresh volume, or a volume made by an older image.
  if [[ "$(stat -c %U "$state")" != fedge ]]; then
    chown -R fedge:fedge "$state"
  fi
  as_fedge=(setpriv --reuid=fedge --regid=fedge --init-groups --inh-caps=-all --)
  if [[ -d "$results" ]]; then
    as_results_owner=(setpriv --reuid="$(stat -c %u "$results")"
                      --regid="$(stat -c %g "$results")" --clear-groups
                      --inh-caps=-all --)
  fi
fi
if [[ -d "$results" ]]; then
  if "${as_results_owner[@]}" test -w "$results"; then
    log "results (history.csv, final_model.fedge) are copied to $results every ${mirror_every}s"
  else
    log "WARNING: $results is not writable by uid $("${as_results_owner[@]}" id -u); results stay in the coordinator-state volume (docker cp)"
  fi
fi

log "fedge-coordinator ${flags[*]}"
"${as_fedge[@]}" /usr/local/bin/fedge-coordinator "${flags[@]}" &
coordinator=$!
# shellcheck disable=SC2317  # invoked by the trap
stop() { kill -TERM "$coordinator" 2>/dev/null || true; }
trap stop TERM INT
copier=""
if [[ -d "$results" ]]; then
  "${as_results_owner[@]}" "$0" --mirror-loop "$coordinator" &
  copier=$!
fi

status=0
while true; do
  wait "$coordinator" && status=0 || status=$?
  # wait returns early (status > 128) when a trapped signal arrives; keep
  # waiting until the coordinator itself has exited.
  kill -0 "$coordinator" 2>/dev/null || break
done
[[ -z "$copier" ]] || kill "$copier" 2>/dev/null || true
if [[ -d "$results" ]]; then "${as_results_owner[@]}" "$0" --mirror-once || true; fi
log "fedge-coordinator exited with status $status"
exit "$status"
