#!/usr/bin/env bash
# make-certs.sh: a private certificate authority and TLS certificates for a
# fedge deployment, made with the openssl command-line tool (OpenSSL 3).
#
#   deploy/make-certs.sh OUT_DIR [--agents N] [--operators N] [--san NAME ...] [--force]
#   deploy/make-certs.sh OUT_DIR --revoke NAME [--revoke NAME ...]
#
# Creates in OUT_DIR:
#   ca.key, ca.pem                    self-signed CA (EC P-256, 10 years)
#   coordinator.key, coordinator.pem  server certificate signed by the CA,
#                                     subjectAltName DNS:localhost,
#                                     IP:127.0.0.1, DNS:fedge-coordinator and
#                                     every --san NAME (DNS or IP, detected)
#   agent-<i>.key, agent-<i>.pem      agent certificates (CN=agent-<i>),
#                                     i = 1..N: extendedKeyUsage clientAuth
#                                     (to the coordinator) and serverAuth
#                                     (the agent's HTTPS --metrics_address),
#                                     subjectAltName DNS:agent-<i>,
#                                     IP:127.0.0.1
#   model-signing.key                 Ed25519 private key the coordinator
#                                     signs global models with (PKCS#8 PEM)
#   model-signing.pub.pem             its public key, for every agent
#   crl.pem                           certificate revocation list signed by
#                                     the CA (empty until --revoke), for the
#                                     coordinator's tls.crl_path
#   crl-index.txt, crl-number         the CA's record of revoked
#                                     certificates (openssl ca's database)
#
# --revoke NAME revokes NAME.pem (e.g. agent-2, operator-1; repeatable),
# rewrites crl.pem and exits without touching anything else. A coordinator
# with tls.crl_path reloads crl.pem within a second and refuses the revoked
# certificate at its next call. A later run without --revoke re-issues a
# revoked certificate (new key and serial) like a missing one.
#
# Idempotent: an existing CA is kept (unless --force), and an existing leaf
# certificate is kept while it is signed by that CA, valid for 30 more days
# and (for the coordinator) covers every requested name; otherwise it is
# re-issued (an agent certificate also while it lacks serverAuth or its
# names, as those made before they were added). The model-signing key pair
# is kept while it is a valid Ed25519 pair (even with --force: replacing it
# makes agents refuse new models until they get the new public key);
# --rotate-model-key moves the old pair to
# model-signing.<UTC time>.key/.pub.pem and writes a new one (see
# docs/model-signing.md). Private keys are mode 600. Exits non-zero with a
# message on any failure.
#
# Coordinator: tls { cert_path: "OUT_DIR/coordinator.pem"
#                    key_path: "OUT_DIR/coordinator.key"
#                    ca_path: "OUT_DIR/ca.pem" require_client_cert: true }
# Agent i:     tls { ca_path: "OUT_DIR/ca.pem"
#                    cert_path: "OUT_DIR/agent-i.pem"
#                    key_path: "OUT_DIR/agent-i.key" }
# Model signing: the coordinator signs with OUT_DIR/model-signing.key, each
# agent verifies with OUT_DIR/model-signing.pub.pem.
# Scraping agent i's HTTPS /metrics: trust OUT_DIR/ca.pem and expect the
# name agent-i (Prometheus: tls_config { ca_file, server_name: agent-i };
# curl --cacert OUT_DIR/ca.pem https://127.0.0.1:PORT/metrics on the device).
set -euo pipefail

PROG="$(basename "$0")"
readonly PROG
readonly CA_DAYS=3650
readonly LEAF_DAYS=825
readonly RENEW_SECONDS=$((30 * 24 * 3600))

usage() {
  cat >&2 <<EOF
usage: $PROG OUT_DIR [--agents N] [--operators N] [--san NAME ...] [--force]
                    [--rotate-model-key]
       $PROG OUT_DIR --revoke NAME [--revoke NAME ...]
  --agents N          agent client certificates agent-1 .. agent-N (default 2)
  --operators N       operator client certificates operator-1 .. operator-N
                      (default 1): under mutual TLS only these may call the
                      coordinator's Operator service (fedge status, pause...)
  --san NAME          extra coordinator name (DNS name or IP address),
                      repeatable
  --force             replace an existing CA and every certificate (not the
                      model-signing key)
  --rotate-model-key  archive the Ed25519 model-signing key pair as
                      model-signing.<UTC time>.key / .pub.pem and create a new
                      one (docs/model-signing.md: rotation)
  --revoke NAME       revoke OUT_DIR/NAME.pem (agent-2, operator-1, ...) and
                      rewrite crl.pem; repeatable; nothing else is done
Also writes model-signing.key (Ed25519, mode 600; the coordinator signs
global models with it) and model-signing.pub.pem (for the agents) unless a
valid pair exists.
EOF
  exit 2
}

die() {
  echo "$PROG: error: $*" >&2
  exit 1
}

# Runs a command, showing its output only when it fails.
run() {
  local out
  if ! out="$("$@" 2>&1)"; then
    echo "$out" >&2
    die "'$1' failed (command: $*)"
  fi
}

out_dir=""
agents=2
operators=1
force=0
rotate_model_key=0
extra_sans=()
revoke_names=()

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --agents)
        [[ $# -ge 2 ]] || usage
        [[ "$2" =~ ^[0-9]+$ ]] || die "--agents wants a number, got '$2'"
        agents=$((10#$2))
        shift 2 ;;
      --agents=*) set -- --agents "${1#--agents=}" "${@:2}" ;;
      --operators)
        [[ $# -ge 2 ]] || die "--operators needs a number"
        [[ "$2" =~ ^[0-9]+$ ]] || die "--operators wants a number, got '$2'"
        operators=$((10#$2))
        shift 2 ;;
      --operators=*) set -- --operators "${1#--operators=}" "${@:2}" ;;
      --san)
        [[ $# -ge 2 ]] || usage
        extra_sans+=("$2")
        shift 2 ;;
      --san=*) set -- --san "${1#--san=}" "${@:2}" ;;
      --force) force=1; shift ;;
      --rotate-model-key) rotate_model_key=1; shift ;;
      --revoke)
        [[ $# -ge 2 ]] || usage
        [[ "$2" =~ ^[A-Za-z0-9._-]+$ ]] || die "--revoke wants a certificate name like agent-2, got '$2'"
        revoke_names+=("$2")
        shift 2 ;;
      --revoke=*) set -- --revoke "${1#--revoke=}" "${@:2}" ;;
      -h|--help) usage ;;
      -*) echo "$PROG: unknown option '$1'" >&2; usage ;;
      *)
        [[ -z "$out_dir" ]] || die "only one OUT_DIR, got '$out_dir' and '$1'"
        out_dir="$1"
        shift ;;
    esac
  done
  [[ -n "$out_dir" ]] || usage
}

# Prints "IP:<name>" or "DNS:<name>"; refuses anything that could break out
# of the openssl extension file (commas, spaces, newlines).
san_entry() {
  local name="$1"
  if [[ "$name" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || \
        "$name" =~ ^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$ ]]; then
    echo "IP:$name"
  elif [[ "$name" =~ ^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
    echo "DNS:$name"
  else
    die "--san '$name' is neither a DNS name nor an IP address"
  fi
}

# Writes a fresh EC P-256 private key to $1 with mode 600.
new_key() {
  (umask 077 && run openssl genpkey -algorithm EC \
      -pkeyopt ec_paramgen_curve:P-256 -out "$1")
  chmod 600 "$1"
}

make_ca() {
  new_key "$out_dir/ca.key"
  run openssl req -x509 -new -key "$out_dir/ca.key" -sha256 \
      -days "$CA_DAYS" -subj "/CN=fedge CA" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$out_dir/ca.pem"
  chmod 644 "$out_dir/ca.pem"
  echo "created $out_dir/ca.pem (new CA, private key $out_dir/ca.key)"
}

# issue NAME CN EXTFILE: key NAME.key and certificate NAME.pem signed by the CA.
issue() {
  local name="$1" cn="$2" ext="$3"
  new_key "$out_dir/$name.key"
  run openssl req -new -key "$out_dir/$name.key" -subj "/CN=$cn" \
      -out "$tmp/$name.csr"
  run openssl x509 -req -in "$tmp/$name.csr" -sha256 -days "$LEAF_DAYS" \
      -CA "$out_dir/ca.pem" -CAkey "$out_dir/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" \
      -extfile "$ext" -out "$out_dir/$name.pem"
  chmod 644 "$out_dir/$name.pem"
  echo "created $out_dir/$name.pem (CN=$cn)"
}

# True when NAME.pem/.key exist, NAME.pem verifies against the CA and is
# valid for RENEW_SECONDS more.
leaf_is_current() {
  local pem="$out_dir/$1.pem"
  [[ -f "$pem" && -f "$out_dir/$1.key" ]] || return 1
  openssl verify -CAfile "$out_dir/ca.pem" "$pem" >/dev/null 2>&1 || return 1
  if [[ -f "$out_dir/crl.pem" ]] && ! openssl verify -crl_check \
      -CAfile "$out_dir/ca.pem" -CRLfile "$out_dir/crl.pem" "$pem" \
      >/dev/null 2>&1; then
    echo "revoked $pem: re-issuing it" >&2
    return 1
  fi
  openssl x509 -in "$pem" -noout -checkend "$RENEW_SECONDS" >/dev/null 2>&1
}

# True when coordinator.pem covers every name in $sans (DNS:x / IP:y ...).
coordinator_covers_names() {
  local pem="$out_dir/coordinator.pem" entry check
  for entry in "${sans[@]}"; do
    case "$entry" in
      IP:*) check=(-checkip "${entry#IP:}") ;;
      *) check=(-checkhost "${entry#DNS:}") ;;
    esac
    openssl x509 -in "$pem" -noout "${check[@]}" 2>/dev/null \
        | grep -q "does match" || return 1
  done
}

write_ext() {  # write_ext FILE EKU [SAN]
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$2"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid"
    [[ -z "${3:-}" ]] || echo "subjectAltName=$3"
  } >"$1"
}

make_coordinator() {
  if [[ $force -eq 0 ]] && leaf_is_current coordinator && \
      coordinator_covers_names; then
    echo "kept    $out_dir/coordinator.pem (current)"
    return
  fi
  local joined
  joined="$(IFS=,; echo "${sans[*]}")"
  write_ext "$tmp/coordinator.ext" serverAuth "$joined"
  issue coordinator fedge-coordinator "$tmp/coordinator.ext"
}

# True when agent certificate NAME.pem may serve HTTPS (the agent's
# /metrics): purpose serverAuth, and names DNS:NAME and IP:127.0.0.1.
agent_serves_https() {
  local pem="$out_dir/$1.pem"
  openssl verify -purpose sslserver -CAfile "$out_dir/ca.pem" "$pem" \
      >/dev/null 2>&1 || return 1
  openssl x509 -in "$pem" -noout -checkhost "$1" 2>/dev/null \
      | grep -q "does match" || return 1
  openssl x509 -in "$pem" -noout -checkip 127.0.0.1 2>/dev/null \
      | grep -q "does match"
}

make_agents() {
  local i
  for ((i = 1; i <= agents; i++)); do
    if [[ $force -eq 0 ]] && leaf_is_current "agent-$i" && \
        agent_serves_https "agent-$i"; then
      echo "kept    $out_dir/agent-$i.pem (current)"
    else
      # serverAuth and names: the agent serves /metrics over HTTPS with it.
      write_ext "$tmp/agent-$i.ext" serverAuth,clientAuth \
          "DNS:agent-$i,IP:127.0.0.1"
      issue "agent-$i" "agent-$i" "$tmp/agent-$i.ext"
    fi
  done
  local pem
  for pem in "$out_dir"/agent-*.pem; do
    [[ -f "$pem" ]] || continue
    openssl verify -CAfile "$out_dir/ca.pem" "$pem" >/dev/null 2>&1 || \
      echo "warning: $pem is not signed by the current CA (stale; remove it)" >&2
  done
}

# Operator certificates: the common name operator-<i> is what the
# coordinator's Operator service accepts under mutual TLS.
make_operators() {
  write_ext "$tmp/operator.ext" clientAuth
  local i
  for ((i = 1; i <= operators; i++)); do
    if [[ $force -eq 0 ]] && leaf_is_current "operator-$i"; then
      echo "kept    $out_dir/operator-$i.pem (current)"
    else
      issue "operator-$i" "operator-$i" "$tmp/operator.ext"
    fi
  done
}

# True when model-signing.key is an Ed25519 private key and
# model-signing.pub.pem is its public key.
model_key_is_valid() {
  local key="$out_dir/model-signing.key" pub="$out_dir/model-signing.pub.pem"
  [[ -f "$key" && -f "$pub" ]] || return 1
  openssl pkey -in "$key" -noout -text 2>/dev/null | grep -q '^ED25519 Private' \
    || return 1
  local derived
  derived="$(openssl pkey -in "$key" -pubout 2>/dev/null)" || return 1
  [[ "$derived" == "$(openssl pkey -pubin -in "$pub" 2>/dev/null)" ]]
}

make_model_signing_key() {
  local key="$out_dir/model-signing.key" pub="$out_dir/model-signing.pub.pem"
  if [[ $rotate_model_key -eq 1 && ( -f "$key" || -f "$pub" ) ]]; then
    local stamp
    stamp="$(date -u +%Y%m%dT%H%M%SZ)"
    [[ ! -f "$key" ]] || mv "$key" "$out_dir/model-signing.$stamp.key"
    [[ ! -f "$pub" ]] || mv "$pub" "$out_dir/model-signing.$stamp.pub.pem"
    echo "moved   the old model-signing key pair to model-signing.$stamp.*"
  elif model_key_is_valid; then
    echo "kept    $pub (existing model-signing key pair)"
    return
  elif [[ -f "$key" || -f "$pub" ]]; then
    die "$key / $pub exist but are not a matching Ed25519 pair;" \
        "move them away or use --rotate-model-key"
  fi
  (umask 077 && run openssl genpkey -algorithm ed25519 -out "$key")
  chmod 600 "$key"
  run openssl pkey -in "$key" -pubout -out "$pub"
  chmod 644 "$pub"
  echo "created $pub (Ed25519 model-signing key, private key $key)"
}

# The openssl ca configuration of the CRL (paths relative to OUT_DIR).
write_ca_config() {
  cat >"$tmp/ca.cnf" <<CNF
[ ca ]
default_ca = fedge_ca
[ fedge_ca ]
database = crl-index.txt
crlnumber = crl-number
default_md = sha256
default_crl_days = $CA_DAYS
unique_subject = no
CNF
}

# Runs openssl ca in OUT_DIR with the CA's key and certificate.
ca_cmd() {
  (cd "$out_dir" && run openssl ca -config "$tmp/ca.cnf" -keyfile ca.key \
      -cert ca.pem "$@")
}

# Writes crl.pem from the CA's record of revoked certificates (renamed into
# place, so that a coordinator never reads half a file).
write_crl() {
  ca_cmd -gencrl -out crl.pem.tmp
  chmod 644 "$out_dir/crl.pem.tmp"
  mv -f "$out_dir/crl.pem.tmp" "$out_dir/crl.pem"
}

# crl.pem: kept while it verifies against the CA; made (empty) for a new CA.
make_crl() {
  write_ca_config
  if [[ -f "$out_dir/crl.pem" && -f "$out_dir/crl-index.txt" ]] && \
      openssl crl -in "$out_dir/crl.pem" -CAfile "$out_dir/ca.pem" -noout \
      >/dev/null 2>&1; then
    echo "kept    $out_dir/crl.pem (signed by the CA)"
    return
  fi
  : >"$out_dir/crl-index.txt"
  echo "unique_subject = no" >"$out_dir/crl-index.txt.attr"
  echo 01 >"$out_dir/crl-number"
  write_crl
  echo "created $out_dir/crl.pem (empty revocation list)"
}

revoke() {
  [[ -f "$out_dir/ca.pem" && -f "$out_dir/ca.key" ]] || \
    die "no CA in '$out_dir' (ca.pem, ca.key): nothing to revoke"
  write_ca_config
  if [[ ! -f "$out_dir/crl-index.txt" ]]; then
    : >"$out_dir/crl-index.txt"
    echo "unique_subject = no" >"$out_dir/crl-index.txt.attr"
    echo 01 >"$out_dir/crl-number"
  fi
  local name pem serial
  for name in "${revoke_names[@]}"; do
    pem="$out_dir/$name.pem"
    [[ -f "$pem" ]] || die "no certificate '$pem' to revoke"
    openssl verify -CAfile "$out_dir/ca.pem" "$pem" >/dev/null 2>&1 || \
      die "'$pem' is not signed by this CA"
    serial="$(openssl x509 -in "$pem" -noout -serial)"
    serial="${serial#serial=}"
    if grep -q "^R.*[[:space:]]${serial}[[:space:]]" "$out_dir/crl-index.txt"; then
      echo "already revoked $pem (serial $serial)"
      continue
    fi
    ca_cmd -revoke "$name.pem"
    echo "revoked $pem (serial $serial)"
  done
  write_crl
  echo "wrote   $out_dir/crl.pem"
}

main() {
  parse_args "$@"
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
  sans=(DNS:localhost IP:127.0.0.1 DNS:fedge-coordinator)
  local name
  for name in "${extra_sans[@]+"${extra_sans[@]}"}"; do
    sans+=("$(san_entry "$name")")
  done
  mkdir -p "$out_dir" || die "cannot create '$out_dir'"
  tmp="$(mktemp -d)" || die "cannot create a temporary directory"
  trap 'rm -rf "$tmp"' EXIT
  if [[ ${#revoke_names[@]} -gt 0 ]]; then
    revoke
    return
  fi
  if [[ $force -eq 0 && -f "$out_dir/ca.pem" && -f "$out_dir/ca.key" ]]; then
    echo "kept    $out_dir/ca.pem (existing CA; --force replaces it)"
  else
    make_ca
  fi
  make_crl
  make_coordinator
  make_agents
  make_operators
  make_model_signing_key
}

main "$@"
