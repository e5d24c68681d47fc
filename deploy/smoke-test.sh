#!/usr/bin/env bash
# smoke-test.sh: end-to-end test of the docker-compose federation
# (deploy/docker-compose.yml). Bounded in time; exits non-zero with a message
# on the first failure; always tears everything down (docker-compose down -v).
#
#   deploy/smoke-test.sh [--synthetic] [--keep-results]
#
#  1. docker: installs docker.io and docker-compose when missing and starts
#     dockerd when none answers (both only as root);
#  2. seeds debian:bookworm-slim when missing (deploy/seed-base-image.sh);
#  3. builds the images (layer cache: a re-run after a source edit only
#     recompiles; nothing changed: seconds);
#  4. starts the coordinator, Prometheus and 3 agents (MNIST from
#     ../shared/data/mnist or $FEDGE_SMOKE_MNIST_DIR when present, else the
#     synthetic set), and waits for 3 rounds with a test accuracy in
#     history.csv;
#  4b. checks the status page, /api/status and /metrics on the published
#     port (HTTPS, verified against the compose CA) and that Prometheus has
#     scraped the round count (its HTTP API on the published port);
#  5. kills one agent container and waits for 2 more rounds completed by the
#     other two;
#  6. restarts the coordinator container, checks its log says "resumed from
#     checkpoint", waits for a further round and for the status page;
#  7. prints the history, the wall time and the image sizes.
#
# Environment: FEDGE_SMOKE_TIMEOUT (overall limit in seconds, default 3600,
# the first image build included), FEDGE_SMOKE_MNIST_DIR, FEDGE_MTLS=1 (run
# it with mutual TLS), FEDGE_BUILD_JOBS, FEDGE_SMOKE_COMPUTE_SLOWDOWN (train
# N times slower, as on a slower machine).
set -Eeuo pipefail

PROG="smoke-test"
deploy="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$deploy")"
project="fedge-smoke"
limit="${FEDGE_SMOKE_TIMEOUT:-3600}"
synthetic=0
keep_results=0
for arg in "$@"; do
  case "$arg" in
    --synthetic) synthetic=1 ;;
    --keep-results) keep_results=1 ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$PROG: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

start=$SECONDS
step() { printf '\n[%s +%ds] %s\n' "$PROG" "$((SECONDS - start))" "$*"; }
info() { echo "  $*"; }
fail() {
  echo >&2
  echo "$PROG: FAILED after $((SECONDS - start)) s: $*" >&2
  exit 1
}
# Seconds left of the overall limit, at most $1 (at least 1: a step started
# after the limit times out at once and fails with its own message).
left() {
  local rest=$((limit - (SECONDS - start)))
  ((rest > 1)) || rest=1
  echo $((rest < $1 ? rest : $1))
}

# ---------------------------------------------------------------- 1. docker
step "docker"
if ! command -v docker >/dev/null || ! { command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; }; then
  [[ "$(id -u)" -eq 0 ]] || fail "docker or docker-compose missing; as root: apt-get install docker.io docker-compose"
  info "installing docker.io docker-compose"
  DEBIAN_FRONTEND=noninteractive timeout "$(left 900)" apt-get install -y -qq docker.io docker-compose >/dev/null ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive timeout "$(left 900)" apt-get install -y -qq docker.io docker-compose >/dev/null; } ||
    fail "apt-get install docker.io docker-compose failed"
fi
if ! docker info >/dev/null 2>&1; then
  [[ "$(id -u)" -eq 0 ]] || fail "the docker daemon does not answer (and only root may start it here)"
  info "starting dockerd (log: /tmp/fedge-smoke-dockerd.log)"
  nohup dockerd >/tmp/fedge-smoke-dockerd.log 2>&1 &
  started_dockerd=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -n 20 /tmp/fedge-smoke-dockerd.log >&2; fail "dockerd did not come up in 60 s"; }
fi
if command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  compose=(docker compose)
fi
info "$(docker version -f 'docker engine {{.Server.Version}}' 2>/dev/null), $("${compose[@]}" version 2>/dev/null | sed -n 1p)"

# Every compose call: this project, deploy/.env, and a time limit.
dc() {
  local t="$1"; shift
  (cd "$deploy" && timeout "$(left "$t")" "${compose[@]}" -p "$project" "$@")
}

# ---------------------------------------------------------------- settings
results="$root/runs/docker-smoke"
mnist="${FEDGE_SMOKE_MNIST_DIR:-$root/../shared/data/mnist}"
if [[ $synthetic -eq 0 ]] && compgen -G "$mnist/train-images-idx3-ubyte*" >/dev/null; then
  mnist="$(cd "$mnist" && pwd)"
  export FEDGE_MNIST_DIR="$mnist"
  data="MNIST from $mnist"
else
  export FEDGE_MNIST_DIR=""
  data="the synthetic set (no MNIST)"
fi
# Many rounds (the test stops the federation itself), 3 agents, rounds
# closing with 2 updates, dead agents noticed in 5 s (live agents heartbeat
# every second while they train, however long that takes), and a round
# deadline far above a round's training time on a slow machine: a killed
# agent's round closes when it is dropped, not at the deadline.
# FEDGE_SMOKE_COMPUTE_SLOWDOWN (default 1) makes every agent train that many
# times slower, to check the test on a slower machine.
export FEDGE_ROUNDS=1000 FEDGE_NUM_PARTITIONS=3 FEDGE_AGENTS_PER_ROUND=3 \
  FEDGE_MIN_AVAILABLE_AGENTS=2 FEDGE_MIN_FIT_AGENTS=2 \
  FEDGE_ROUND_DEADLINE_MS=120000 FEDGE_AGENT_TIMEOUT_MS=5000 \
  FEDGE_RESULTS_DIR="$results" FEDGE_HOST_PORT="" \
  FEDGE_COMPUTE_SLOWDOWN="${FEDGE_SMOKE_COMPUTE_SLOWDOWN:-1.0}" \
  FEDGE_BANDWIDTH_BPS=0 FEDGE_LATENCY_MS=0 \
  FEDGE_DROPOUT_PROBABILITY=0.0 FEDGE_COORDINATOR_FLAGS="" \
  FEDGE_AGENT_FLAGS="${FEDGE_SMOKE_AGENT_FLAGS:-}" \
  FEDGE_HTTP_HOST_PORT="" FEDGE_PROMETHEUS_HOST_PORT="" \
  FEDGE_PROMETHEUS_SCRAPE_INTERVAL=2s
export FEDGE_MTLS="${FEDGE_MTLS:-0}"
mkdir -p "$results"
rm -f "$results/history.csv" "$results/final_model.fedge" "$results/final_model.spec"
# The compose CA (copied out of the certs volume), for curl.
ca_pem="$(mktemp /tmp/fedge-smoke-ca.XXXXXX)"

# ---------------------------------------------------------------- teardown
dump_logs() {
  echo "---- docker-compose ps" >&2
  (cd "$deploy" && "${compose[@]}" -p "$project" ps -a >&2) || true
  echo "---- coordinator log (last 40 lines)" >&2
  (cd "$deploy" && "${compose[@]}" -p "$project" logs --no-color --tail=40 coordinator >&2) || true
  echo "---- prometheus log (last 10 lines)" >&2
  (cd "$deploy" && "${compose[@]}" -p "$project" logs --no-color --tail=10 prometheus >&2) || true
  echo "---- agent logs (last 10 lines each)" >&2
  (cd "$deploy" && "${compose[@]}" -p "$project" logs --no-color --tail=10 agent >&2) || true
  echo "---- history.csv" >&2
  cat "$results/history.csv" >&2 2>/dev/null || true
}
teardown() {
  local status=$?
  trap - EXIT INT TERM ERR
  if [[ $status -ne 0 ]]; then dump_logs; fi
  echo "[$PROG] tearing down (docker-compose down -v)"
  (cd "$deploy" && timeout 120 "${compose[@]}" -p "$project" down -v --remove-orphans -t 10 \
     >/dev/null 2>&1) || echo "$PROG: warning: docker-compose down failed" >&2
  [[ $keep_results -eq 1 || $status -ne 0 ]] || rm -rf "$results"
  rm -f "$ca_pem"
  if [[ -n "${started_dockerd:-}" ]]; then  # Stop what this script started.
    kill "$started_dockerd" 2>/dev/null || true
    timeout 30 tail --pid "$started_dockerd" -f /dev/null 2>/dev/null || true
  fi
  exit "$status"
}
trap teardown EXIT
trap 'fail "interrupted"' INT TERM
# Any other failing command (set -e) says where it happened.
trap 'fail "command failed at line $LINENO: $BASH_COMMAND"' ERR

# ---------------------------------------------------------------- 2. base image
step "base image debian:bookworm-slim"
if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  info "present"
else
  timeout "$(left 600)" "$deploy/seed-base-image.sh" || fail "cannot seed debian:bookworm-slim"
fi

# ---------------------------------------------------------------- 3. images
step "building the images (fedge-coordinator, fedge-agent, fedge-prometheus)"
# A first build fills about 3 GB of docker's storage (measured: 3.1 GB in
# /var/lib/docker after a run from nothing), so a full disk is named
# rather than left to the compiler's message in the log.
docker_root="$(docker info -f '{{.DockerRootDir}}' 2>/dev/null || true)"
[[ -d "$docker_root" ]] || docker_root=/var/lib/docker
free_mb() { df -Pm "$docker_root" 2>/dev/null | awk 'NR == 2 { print $4 }'; }
info "$(free_mb) MB free in $docker_root (a first build needs about 3 GB)"
build_start=$SECONDS
if ! dc 3000 build >/tmp/fedge-smoke-build.log 2>&1; then
  tail -n 40 /tmp/fedge-smoke-build.log >&2
  if grep -q 'No space left on device' /tmp/fedge-smoke-build.log; then
    df -h "$docker_root" /tmp >&2 || true
    fail "the image build ran out of disk space in $docker_root ($(free_mb) MB free now; a first build needs about 3 GB): free space there, or 'docker system prune' to drop old images (log: /tmp/fedge-smoke-build.log)"
  fi
  fail "the image build failed (log: /tmp/fedge-smoke-build.log)"
fi
build_seconds=$((SECONDS - build_start))
info "built in ${build_seconds} s (log: /tmp/fedge-smoke-build.log)"

# ---------------------------------------------------------------- helpers
history() { cat "$results/history.csv" 2>/dev/null || true; }
# Rounds with a test accuracy (completed and evaluated).
evaluated_rounds() { history | awk -F, 'NR > 1 && $8 != "" { n++ } END { print n + 0 }'; }
# The newest round in history.csv (0: none yet).
last_round() { history | awk -F, 'NR > 1 { r = $1 } END { print r + 0 }'; }
# The field $2 (1-based) of round $1's line.
round_field() { history | awk -F, -v r="$1" -v f="$2" 'NR > 1 && $1 == r { v = $f } END { print v }'; }
# wait_for SECONDS WHAT COMMAND...: polls COMMAND every second.
wait_for() {
  local t="$1" what="$2"; shift 2
  local until=$((SECONDS + $(left "$t")))
  until "$@"; do
    ((SECONDS - start < limit)) || fail "overall time limit of ${limit}s reached waiting for $what"
    ((SECONDS < until)) || fail "timed out after ${t}s waiting for $what"
    sleep 1
  done
}
# The first log line matching the regular expression $1, without glog's
# prefix. Reads all its input (an early exit would SIGPIPE the writer,
# which pipefail turns into a failure).
first_log_line() {
  awk -v re="$1" '$0 ~ re && !done { sub(/^[IWEF][0-9]+ [0-9:.]+ +([0-9]+ +)?[a-z_.]+:[0-9]+\] /, ""); print; done = 1 }'
}
coordinator_id() { (cd "$deploy" && "${compose[@]}" -p "$project" ps -q coordinator); }
# The host port published for port $2 of service $1.
host_port() { dc 30 port "$1" "$2" | sed -n '$s/.*://p'; }
# GET https://127.0.0.1:$1$2 from the coordinator's HTTP listener, verified
# against the compose CA (its certificate names 127.0.0.1).
coordinator_get() { curl -sS --fail --max-time 10 --cacert "$ca_pem" "https://127.0.0.1:$1$2"; }
# The value of the first series the PromQL query $2 gives now, from the
# Prometheus on host port $1 ("" when none).
prometheus_value() {
  curl -sS --max-time 10 -G "http://127.0.0.1:$1/api/v1/query" --data-urlencode "query=$2" 2>/dev/null |
    sed -nE 's/.*"value":\[[^,]+,"([^"]*)"\].*/\1/p'
}
show_rounds() {  # show_rounds FROM: round lines from FROM on
  history | awk -F, -v from="$1" 'NR > 1 && $1 >= from {
    printf "  round %3d: %d agents reported, %d failed, test accuracy %s, %.1f s\n",
      $1, $2, $3, ($8 == "" ? "-" : sprintf("%.2f%%", 100 * $8)), $10 }'
}

# ---------------------------------------------------------------- 4. federation
step "starting the coordinator, Prometheus and 3 agents on $data (mutual TLS: $FEDGE_MTLS)"
dc 300 up -d --no-build --scale agent=3 coordinator prometheus agent >/tmp/fedge-smoke-up.log 2>&1 ||
  { cat /tmp/fedge-smoke-up.log >&2; fail "docker-compose up failed"; }
run_start=$SECONDS
info "coordinator $(docker inspect -f '{{.State.Health.Status}}' "$(coordinator_id)"), published on 127.0.0.1:$(dc 30 port coordinator 50051 | cut -d: -f2)"

three_rounds() { [[ "$(evaluated_rounds)" -ge 3 ]]; }
wait_for 240 "3 rounds with a test accuracy in $results/history.csv" three_rounds
show_rounds 1
accuracy="$(history | awk -F, 'NR > 1 && $8 != "" { a = $8 } END { print a }')"
awk -v a="$accuracy" 'BEGIN { exit !(a > 0 && a <= 1) }' || fail "implausible test accuracy '$accuracy'"

# ---------------------------------------------------------------- 4b. monitoring
step "status page, /metrics and Prometheus"
command -v curl >/dev/null || fail "curl is missing (apt-get install curl)"
docker cp "$(coordinator_id):/certs/ca.pem" "$ca_pem" >/dev/null || fail "cannot copy ca.pem out of the coordinator"
http_port="$(host_port coordinator 8080)"
[[ "$http_port" =~ ^[0-9]+$ ]] || fail "the coordinator's port 8080 is not published"
page="$(coordinator_get "$http_port" /)" || fail "no status page at https://127.0.0.1:$http_port/"
grep -q "<title>fedge status</title>" <<<"$page" || fail "https://127.0.0.1:$http_port/ is not the status page"
api="$(coordinator_get "$http_port" /api/status)" || fail "no /api/status"
page_rounds="$(sed -nE 's/.*"completed_rounds":([0-9]+).*/\1/p' <<<"$api")"
[[ "${page_rounds:-0}" -ge 3 ]] || fail "/api/status says completed_rounds '$page_rounds', expected >= 3"
metrics="$(coordinator_get "$http_port" /metrics)" || fail "no /metrics"
grep -qE '^fedge_build_info\{version="[^"]+"\} 1$' <<<"$metrics" || fail "/metrics has no fedge_build_info"
info "status page https://127.0.0.1:$http_port/ ($page_rounds rounds completed), /metrics $(grep -c '^fedge_' <<<"$metrics") samples"
prometheus_port="$(host_port prometheus 9090)"
[[ "$prometheus_port" =~ ^[0-9]+$ ]] || fail "Prometheus' port 9090 is not published"
scraped() {
  scraped_rounds="$(prometheus_value "$prometheus_port" fedge_rounds_completed_total)"
  [[ "$scraped_rounds" =~ ^[0-9]+$ && "$scraped_rounds" -ge 3 ]]
}
wait_for 120 "Prometheus to scrape >= 3 completed rounds (http://127.0.0.1:$prometheus_port)" scraped
scraped_accuracy="$(prometheus_value "$prometheus_port" fedge_central_accuracy)"
[[ "$(prometheus_value "$prometheus_port" 'up{job="fedge-coordinator"}')" == 1 ]] ||
  fail "Prometheus' scrape target fedge-coordinator is not up"
info "Prometheus http://127.0.0.1:$prometheus_port: fedge_rounds_completed_total $scraped_rounds, fedge_central_accuracy $scraped_accuracy (target up, over HTTPS)"

# ---------------------------------------------------------------- 5. agent dies
agents="$(dc 30 ps -q agent)"
victim="${agents%%$'\n'*}"
[[ -n "$victim" ]] || fail "no agent container found"
victim_name="$(docker inspect -f '{{.Name}}' "$victim")"
killed_after="$(last_round)"
step "killing agent ${victim_name#/} (after round $killed_after)"
docker kill "$victim" >/dev/null || fail "docker kill $victim failed"
# history.csv lags the coordinator (evaluation, the copy to the results
# folder), by several rounds when rounds take under a second: the round to
# check comes from the coordinator's log, read once the container is dead.
# Two rounds after the newest one started by then surely started after the
# kill (its log may lag a line).
started_round() {
  docker logs "$(coordinator_id)" 2>&1 |
    sed -nE 's/.*round ([0-9]+) started.*/\1/p' | tail -n 1
}
now_round="$(started_round)"
[[ "$now_round" =~ ^[0-9]+$ ]] || fail "no 'round N started' in the coordinator's log"
check_round=$((now_round + 2))
more_rounds() { [[ -n "$(round_field "$check_round" 8)" ]]; }
wait_for 150 "round $check_round (completed after the kill)" more_rounds
show_rounds "$((killed_after + 1))"
[[ "$(docker inspect -f '{{.State.Running}}' "$victim")" == false ]] ||
  fail "the killed agent ${victim_name#/} runs again"
reported="$(round_field "$check_round" 2)"
[[ "$reported" == 2 ]] ||
  fail "round $check_round had $reported reporting agents, expected the 2 survivors"
info "$(docker logs "$(coordinator_id)" 2>&1 | first_log_line "agent [^ ]+ timed out")"
info "the federation went on with the 2 remaining agents"

# ---------------------------------------------------------------- 6. coordinator restart
before="$(last_round)"
since="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
step "restarting the coordinator container (after round $before)"
dc 90 restart -t 30 coordinator >/dev/null 2>&1 || fail "docker-compose restart coordinator failed"
resumed() { [[ -n "$(docker logs --since "$since" "$(coordinator_id)" 2>&1 | first_log_line "resumed from checkpoint")" ]]; }
wait_for 90 "'resumed from checkpoint' in the coordinator's log" resumed
resumed_line="$(docker logs --since "$since" "$(coordinator_id)" 2>&1 |
  first_log_line "resumed from checkpoint")"
info "$resumed_line"
# The first round run by the restarted coordinator ("next round N").
next_round="$(sed -nE 's/.*next round ([0-9]+).*/\1/p' <<<"$resumed_line")"
[[ "$next_round" =~ ^[0-9]+$ ]] || fail "no 'next round N' in the resume message"
further_round() {
  history | awk -F, -v n="$next_round" 'NR > 1 && $1 >= n && $8 != "" { ok = 1 } END { exit !ok }'
}
wait_for 150 "a completed round >= $next_round (after the restart)" further_round
show_rounds "$((before + 1))"
healthy() { [[ "$(docker inspect -f '{{.State.Health.Status}}' "$(coordinator_id)")" == healthy ]]; }
wait_for 60 "the coordinator's healthcheck to pass again" healthy
http_port="$(host_port coordinator 8080)"
coordinator_get "$http_port" /api/status >/dev/null ||
  fail "no status page after the restart (https://127.0.0.1:$http_port/)"
info "status page back at https://127.0.0.1:$http_port/"

# ---------------------------------------------------------------- 7. summary
run_seconds=$((SECONDS - run_start))
step "PASSED"
info "history.csv ($results):"
history | sed 's/^/    /'
info "federation run: ${run_seconds} s; image build: ${build_seconds} s; wall time: $((SECONDS - start)) s"
info "images:"
docker images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' |
  grep -E '^(fedge-(coordinator|agent|prometheus)|debian):' | sed 's/^/    /'
