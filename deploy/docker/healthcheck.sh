#!/usr/bin/env bash
# HEALTHCHECK of the fedge-coordinator image: healthy when the coordinator
# has bound its port (<state_dir>/port), accepts a TCP connection there and,
# with TLS, completes a TLS handshake whose certificate verifies against
# /certs/ca.pem for the name fedge-coordinator (with h2, the protocol gRPC
# speaks). Under mutual TLS it presents an agent certificate when one is
# readable.
#
# A stronger probe would call the Operator service's GetStatus RPC (and could
# report the round and the state); there is no command-line client for it in
# the image yet.
set -uo pipefail

state=/var/lib/fedge/coordinator
port="$(cat "$state/port" 2>/dev/null)" || { echo "no $state/port yet"; exit 1; }
[[ "$port" =~ ^[0-9]+$ ]] || { echo "bad port file: '$port'"; exit 1; }
# The port file survives restarts: make sure a process listens on it now.
if ! timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
  echo "nothing accepts connections on port $port"
  exit 1
fi
case "${FEDGE_TLS:-1}" in 0|false|no|off) echo "port $port open (plain text)"; exit 0 ;; esac
client=()
if [[ -r /certs/agent-1.pem && -r /certs/agent-1.key ]]; then
  client=(-cert /certs/agent-1.pem -key /certs/agent-1.key)
fi
out="$(timeout 5 openssl s_client -connect "127.0.0.1:$port" \
  -servername fedge-coordinator -verify_hostname fedge-coordinator \
  -CAfile /certs/ca.pem -verify_return_error -alpn h2 "${client[@]}" \
  </dev/null 2>&1)"
if grep -q "Verify return code: 0 (ok)" <<<"$out" &&
   grep -q "^ALPN protocol: h2" <<<"$out"; then
  echo "TLS (h2) on port $port, certificate verified"
  exit 0
fi
echo "TLS handshake on port $port failed:"
grep -iE "error|alert|refused|ALPN|Verify return" <<<"$out" | head -n 5
exit 1
