#!/usr/bin/env bash
# HEALTHCHECK of the fedge-coordinator image: healthy when the coordinator
# has bound its port (<state_dir>/port), accepts a TCP connection there and
# answers the Operator service's GetStatus RPC (`fedge status`), over TLS
# verified against /certs/ca.pem unless FEDGE_TLS=0. Under mutual TLS the
# Operator service takes operator certificates only: it presents operator-1
# from /operator-certs (the volume operator-certs, see certs-entrypoint.sh);
# otherwise the operator token in the state dir.
set -uo pipefail

state=/var/lib/fedge/coordinator
port="$(cat "$state/port" 2>/dev/null)" || { echo "no $state/port yet"; exit 1; }
[[ "$port" =~ ^[0-9]+$ ]] || { echo "bad port file: '$port'"; exit 1; }
# The port file survives restarts: make sure a process listens on it now.
if ! timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
  echo "nothing accepts connections on port $port"
  exit 1
fi
# The coordinator answers its Operator.GetStatus RPC (fedge status), over
# TLS verified against /certs/ca.pem for the name fedge-coordinator.
tls=(--tls.ca_path=/certs/ca.pem --tls.server_name=fedge-coordinator)
case "${FEDGE_TLS:-1}" in 0|false|no|off) tls=(--insecure) ;; esac
operator=/operator-certs/operator-1
if [[ "${tls[0]}" != --insecure && -r "$operator.pem" && -r "$operator.key" ]]; then
  tls+=(--tls.cert_path="$operator.pem" --tls.key_path="$operator.key")
fi
# Without mutual TLS the Operator service takes the coordinator's operator
# token (made in its state dir at its first start).
if [[ -r "$state/operator_token" ]]; then
  tls+=(--operator_token_path="$state/operator_token")
fi
if out="$(fedge status --coordinator="127.0.0.1:$port" --timeout_seconds=5 "${tls[@]}" 2>&1)"; then
  grep -E "^(state|current_round|completed_rounds):" <<<"$out" | tr '\n' ' '
  echo
  exit 0
fi
echo "the coordinator on port $port does not answer GetStatus: $out"
exit 1
