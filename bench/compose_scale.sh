#!/usr/bin/env bash
# The docker-compose federation (deploy/docker-compose.yml) at scale on this
# machine: one coordinator and N agent containers (MNIST 2NN, FedAvg, N IID
# partitions, every agent selected each round, E=1, B=10), R rounds. Prints
# the median round time (round 1, with the agents' start-up, left out), the
# time to R rounds, and memory: the coordinator container's peak (docker
# stats, sampled; it includes the fedge-evaluator child) and the
# fedge-coordinator process's own peak RSS (its "peak_rss_mb" log line at
# exit), plus the agent containers' peak total. Always tears down
# (docker-compose down -v).
#
#   bench/compose_scale.sh [--agents N] [--rounds R] [--synthetic]
#
# Defaults: 20 agents, 10 rounds. MNIST from ../shared/data/mnist (or
# $FEDGE_MNIST_DIR) unless --synthetic. Needs docker and docker-compose;
# starts dockerd when none answers (as root) and stops it again. Builds the
# images when they are missing or stale (cached layers: seconds; the first
# build: minutes, FEDGE_BUILD_JOBS jobs).
set -Eeuo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deploy="$root/deploy"
project=fedge-scale
agents=20
rounds=10
synthetic=0
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --synthetic) synthetic=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compose_scale: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
log() { echo "[compose_scale +$((SECONDS))s] $*"; }
fail() { echo "compose_scale: $*" >&2; exit 1; }

if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || fail "the docker daemon does not answer (and only root may start it here)"
  log "starting dockerd (log: /tmp/fedge-scale-dockerd.log)"
  nohup dockerd >/tmp/fedge-scale-dockerd.log 2>&1 &
  started_dockerd=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || fail "dockerd did not come up in 60 s"
fi
compose=(docker-compose)
command -v docker-compose >/dev/null || compose=(docker compose)
dc() { (cd "$deploy" && "${compose[@]}" -p "$project" "$@"); }

work=$(mktemp -d /tmp/fedge-scale.XXXXXX)
sampler=""
teardown() {
  local status=$?
  trap - EXIT INT TERM
  [ -z "$sampler" ] || kill "$sampler" 2>/dev/null || true
  log "tearing down (docker-compose down -v)"
  (cd "$deploy" && timeout 180 "${compose[@]}" -p "$project" down -v --remove-orphans -t 10 \
    >/dev/null 2>&1) || echo "compose_scale: docker-compose down failed" >&2
  if [ -n "${started_dockerd:-}" ]; then
    kill "$started_dockerd" 2>/dev/null || true
    timeout 30 tail --pid "$started_dockerd" -f /dev/null 2>/dev/null || true
  fi
  [ -n "${FEDGE_KEEP_WORK:-}" ] || rm -rf "$work"
  exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

mnist="${FEDGE_MNIST_DIR:-$root/../shared/data/mnist}"
if [ "$synthetic" = 0 ] && compgen -G "$mnist/train-images-idx3-ubyte*" >/dev/null; then
  FEDGE_MNIST_DIR="$(cd "$mnist" && pwd)"
  export FEDGE_MNIST_DIR
  data="MNIST"
else
  export FEDGE_MNIST_DIR=""
  data="synthetic data"
fi
mkdir -p "$work/results"
export FEDGE_ROUNDS="$rounds" FEDGE_NUM_PARTITIONS="$agents" \
  FEDGE_AGENTS_PER_ROUND="$agents" FEDGE_MIN_AVAILABLE_AGENTS="$agents" \
  FEDGE_MIN_FIT_AGENTS="$agents" FEDGE_ROUND_DEADLINE_MS=600000 \
  FEDGE_AGENT_TIMEOUT_MS=60000 FEDGE_RESULTS_DIR="$work/results" \
  FEDGE_HOST_PORT="" FEDGE_HTTP_HOST_PORT="" FEDGE_MTLS=0 FEDGE_TLS=1 \
  FEDGE_COMPUTE_SLOWDOWN=1.0 FEDGE_BANDWIDTH_BPS=0 FEDGE_LATENCY_MS=0 \
  FEDGE_DROPOUT_PROBABILITY=0.0 FEDGE_COORDINATOR_FLAGS="" FEDGE_AGENT_FLAGS=""

log "building the images (log: $work/build.log)"
dc build coordinator agent >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; fail "image build failed"; }
log "up: a coordinator and $agents agents, $rounds rounds, $data"
start=$SECONDS
dc up -d --no-build --scale agent="$agents" coordinator agent >"$work/up.log" 2>&1 ||
  { cat "$work/up.log" >&2; fail "docker-compose up failed"; }
coordinator=$(dc ps -q coordinator)

# Memory of every container of the project, every ~2 s (one docker stats
# sample takes about that long): "<sample> <name> <bytes>" lines.
to_bytes() {
  awk '{ v = $1; u = $1; sub(/[A-Za-z]+$/, "", v); sub(/^[0-9.]+/, "", u)
         m = (u == "KiB") ? 1024 : (u == "MiB") ? 1048576 : (u == "GiB") ? 1073741824 : (u == "kB") ? 1000 : (u == "MB") ? 1e6 : (u == "GB") ? 1e9 : 1
         printf "%.0f\n", v * m }'
}
(
  sample=0
  while true; do
    sample=$((sample + 1))
    # shellcheck disable=SC2046  # One argument per container id.
    { docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' $(dc ps -q 2>/dev/null) 2>/dev/null || true; } |
      while read -r name usage _; do echo "$sample $name $(to_bytes <<<"$usage")"; done
  done
) >"$work/mem.log" &
sampler=$!

# Until the coordinator exits (exit 0 after the last round).
until [ "$(docker inspect -f '{{.State.Status}}' "$coordinator")" = exited ]; do
  [ $((SECONDS - start)) -lt 3600 ] || fail "no end after an hour"
  sleep 2
done
elapsed=$((SECONDS - start))
kill "$sampler" 2>/dev/null || true
sampler=""
code=$(docker inspect -f '{{.State.ExitCode}}' "$coordinator")
[ "$code" = 0 ] || { docker logs --tail 30 "$coordinator" >&2; fail "the coordinator exited with $code"; }
history="$work/results/history.csv"
[ -s "$history" ] || fail "no history.csv"
docker logs "$coordinator" 2>&1 | grep -E "round [0-9]+ completed: [0-9]+ agents" | tail -n 3 | sed 's/^/  /'

awk -F, 'NR > 2 { r[++n] = $10; t[n] = $9 }
  function median(a,   k, v, i, j, tmp) {
    k = 0; for (i in a) v[++k] = a[i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
    return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 }
  END { printf "steady_rounds=%d round_seconds_median=%.2f train_seconds_median=%.2f\n", n, median(r), median(t) }' "$history"
tail -n 1 "$history" | awk -F, '{ printf "rounds=%d agents_last_round=%d test_accuracy=%.4f\n", $1, $2, $8 }'
echo "seconds_to_last_round=$elapsed (from docker-compose up, the agents' start-up included)"
peak_rss=$(docker logs "$coordinator" 2>&1 | sed -nE 's/.*peak_rss_mb=([0-9.]+).*/\1/p' | tail -n 1)
echo "coordinator_process_peak_rss_mb=${peak_rss:-?}"
awk -v c="$(docker inspect -f '{{.Name}}' "$coordinator" | tr -d /)" '
  $2 == c { if ($3 > cmax) cmax = $3; next }
  $2 ~ /agent/ { sum[$1] += $3 }
  END { for (t in sum) if (sum[t] > amax) amax = sum[t]
        printf "coordinator_container_peak_mb=%.1f agents_containers_peak_total_mb=%.1f\n", cmax / 1048576, amax / 1048576 }' "$work/mem.log"
