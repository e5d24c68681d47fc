#!/usr/bin/env bash
# load_bench.sh: load test of fedge-coordinator with many lightweight agents
# (build/bench/load_agents), each with its own connection, spread over
# several load-generator processes.
#
#   bench/load_bench.sh [--agents N] [--rounds R] [--procs P] [--threads T]
#                       [--tls] [--train_ms MS] [--poll_interval_ms MS]
#                       [--keep] [-- COORDINATOR_FLAG...]
#
# Flags after -- go to the coordinator as they are (e.g.
# --grpc_memory_quota_mb=128 or --tls_max_frame_bytes=4096).
# Builds nothing: expects build/server/fedge-coordinator and
# build/bench/load_agents (ninja -C build fedge-coordinator load_agents).
# Starts the coordinator on 127.0.0.1 (port 0, plain text unless --tls, which
# uses certificates from deploy/make-certs.sh; max_connections sized for the
# agents) with every agent selected in every round and a small model
# (logreg), runs the agents in P processes (default max(1, N / 2500)), each
# with N / P of them on T / P of the T threads (default 32: more threads
# only queue calls on a small machine), until the federation finishes,
# merges what the processes measured (load_agents --merge: counts summed,
# latency percentiles over all samples), then reports:
#   lost_updates    sum over rounds of max(0, acked by clients - aggregated)
#   double_counted  sum over rounds of max(0, aggregated - acked by clients)
#   poll latency    p50/p99 of no_wait polls (plain heartbeats), client side
#   overhead        per round: round_seconds - train_ms / 1000 (the slowest
#                   agent's training time is the simulated train_ms); median
#   coordinator CPU time and peak RSS (its "resources:" log line at exit)
# The last line of output is
#   agents=<n> rounds=<n> lost_updates=<n> double_counted=<n> poll_p99_ms=<ms>
#   overhead_ms_median=<ms> coordinator_peak_rss_mb=<MB>
# (on one line). Exits 1 when the run failed or updates were lost or
# double-counted. Work files live in a temporary directory (kept with --keep).
set -euo pipefail

readonly ROOT="$(cd "$(dirname "$0")/.." && pwd)"
readonly COORDINATOR="$ROOT/build/server/fedge-coordinator"
readonly AGENTS_BIN="$ROOT/build/bench/load_agents"

agents=500 rounds=20 procs="" threads=32 train_ms=50 poll_interval_ms=250
tls=0 keep=0 coordinator_flags=()

die() { echo "load_bench.sh: $*" >&2; exit 1; }

while (($#)); do
  case "$1" in
    --agents) agents="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --procs) procs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --train_ms) train_ms="$2"; shift 2 ;;
    --poll_interval_ms) poll_interval_ms="$2"; shift 2 ;;
    --tls) tls=1; shift ;;
    --keep) keep=1; shift ;;
    --) shift; coordinator_flags=("$@"); break ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ -n "$procs" ]] || procs=$((agents / 2500 > 1 ? agents / 2500 : 1))
for v in agents rounds procs threads train_ms poll_interval_ms; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "--$v wants a number, got '${!v}'"
done
((agents >= 1 && procs >= 1 && procs <= agents && threads >= 1)) ||
  die "need --agents >= 1, 1 <= --procs <= --agents and --threads >= 1"
[[ -x "$COORDINATOR" ]] || die "missing $COORDINATOR; build it first:" \
  "ninja -C build fedge-coordinator"
[[ -x "$AGENTS_BIN" ]] || die "missing $AGENTS_BIN; build it first:" \
  "ninja -C build load_agents"

work="$(mktemp -d "${TMPDIR:-/tmp}/fedge-load.XXXXXX")"
readonly work state="$work/state"
coordinator_pid=""
agents_pids=()
cleanup() {
  for pid in "${agents_pids[@]}" "$coordinator_pid"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done
  if ((keep)); then echo "work files kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to $2 seconds for child process $1 to exit; sets exit_status to
# its exit status, or to "timeout".
wait_for_exit() {
  local end=$((SECONDS + $2))
  while kill -0 "$1" 2>/dev/null; do
    ((SECONDS < end)) || { exit_status=timeout; return; }
    sleep 0.2
  done
  exit_status=0
  wait "$1" || exit_status=$?
}

tls_server=(--insecure) tls_client=(--insecure)
if ((tls)); then
  "$ROOT/deploy/make-certs.sh" "$work/certs" --agents 0 >/dev/null
  tls_server=(--tls.cert_path="$work/certs/coordinator.pem"
              --tls.key_path="$work/certs/coordinator.key")
  tls_client=(--ca "$work/certs/ca.pem")
fi

# The agents' no_wait polls are never parked, so poll_wait_ms only sets the
# coordinator's closing grace (2 * poll_wait_ms), within which every agent
# must poll once to see "finished": 2 ms per agent, at least 2 s (10,000
# agents on 2 cores poll about 1,000 times a second).
poll_wait_ms=$((agents > 1000 ? agents : 1000))
"$COORDINATOR" "${tls_server[@]}" --listen_address=127.0.0.1:0 \
  --state_dir="$state" --rounds="$rounds" --model.architecture=logreg \
  --strategy.fraction=1.0 --strategy.min_available_agents="$agents" \
  --strategy.min_fit_agents="$agents" --strategy.round_deadline_ms=60000 \
  --heartbeat_interval_ms=1000 --agent_timeout_ms=30000 \
  --max_connections="$((agents + 100))" --poll_wait_ms="$poll_wait_ms" \
  --join_rate_per_source=0 \
  --simulation.enabled=false "${coordinator_flags[@]}" \
  >"$work/coordinator.log" 2>&1 &
coordinator_pid=$!

end=$((SECONDS + 60))
until [[ -s "$state/port" ]]; do
  kill -0 "$coordinator_pid" 2>/dev/null ||
    die "the coordinator exited at start:$(echo; tail -5 "$work/coordinator.log")"
  ((SECONDS < end)) || die "no $state/port after 60 s"
  sleep 0.1
done
port="$(cat "$state/port")"
echo "coordinator pid $coordinator_pid on 127.0.0.1:$port;" \
  "$agents agents in $procs processes, $threads threads in all," \
  "$rounds rounds, train ${train_ms} ms, poll every ${poll_interval_ms} ms" >&2

# Bounded: 60 s to start plus rounds * (deadline 60 s), at most 1 hour.
max_s=$((60 + rounds * 60)); ((max_s < 3600)) || max_s=3600
first=0 results=()
for ((p = 0; p < procs; p++)); do
  n=$((agents / procs + (p < agents % procs ? 1 : 0)))
  t=$((threads / procs + (p < threads % procs ? 1 : 0)))
  timeout --kill-after=10 "$((max_s + 30))" "$AGENTS_BIN" \
    --target "127.0.0.1:$port" --agents "$n" --first_index "$first" \
    --threads "$((t > 0 ? t : 1))" "${tls_client[@]}" \
    --train_ms "$train_ms" \
    --poll_interval_ms "$poll_interval_ms" --max_runtime_s "$max_s" \
    --results_out "$work/results.$p" \
    >"$work/agents.$p.out" 2>"$work/agents.$p.err" &
  agents_pids+=($!)
  results+=("$work/results.$p")
  first=$((first + n))
done
agents_rc=0
for pid in "${agents_pids[@]}"; do
  rc=0; wait "$pid" || rc=$?
  ((agents_rc != 0)) || agents_rc=$rc
done
agents_pids=()
cat "$work"/agents.[0-9]*.err >"$work/agents.err"
merge=1
for f in "${results[@]}"; do [[ -s "$f" ]] || merge=0; done
if ((merge)); then  # Every process finished and wrote its results.
  rc=0
  "$AGENTS_BIN" --merge "$(IFS=,; echo "${results[*]}")" \
    --out "$work/client_rounds.csv" >"$work/agents.out" \
    2>>"$work/agents.err" || rc=$?
  ((agents_rc != 0)) || agents_rc=$rc
else
  : >"$work/agents.out"
fi
linger_s=$((30 + 2 * poll_wait_ms / 1000))
wait_for_exit "$coordinator_pid" "$linger_s"
if [[ "$exit_status" == timeout ]]; then
  echo "load_bench.sh: the coordinator did not exit within $linger_s s of" \
    "the agents; stopping it" >&2
  kill -TERM "$coordinator_pid" 2>/dev/null || true
  wait_for_exit "$coordinator_pid" 15
fi
coordinator_rc="$exit_status"
coordinator_pid=""

summary="$(grep '^load_agents:' "$work/agents.out" || true)"
[[ -n "$summary" ]] || die "load_agents printed no summary (exit $agents_rc):" \
  "$(tail -5 "$work/agents.err")"
# Value of key $1 in the load_agents summary line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$summary"; }
resources="$(grep 'resources:' "$work/coordinator.log" | tail -1 || true)"
res() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$resources"; }
cpu_user="$(res cpu_user_s)" cpu_sys="$(res cpu_sys_s)" rss="$(res peak_rss_mb)"
[[ -f "$state/history.csv" ]] || die "no $state/history.csv"

# Join client counts and the coordinator's history by round.
read -r done_rounds lost double overhead_median overhead_max round_median \
  spread_median rest_median <<<"$(
  awk -F, -v train_s="$(awk -v t="$train_ms" 'BEGIN{print t/1000}')" '
    FNR == 1 { for (i = 1; i <= NF; i++) col[FILENAME, $i] = i; next }
    FILENAME ~ /client_rounds/ { acked[$1] = $col[FILENAME, "acked"]; seen[$1]
      spread[$1] = $col[FILENAME, "fetch_spread_ms"]; next }
    { r = $col[FILENAME, "round"]; seen[r]; n++
      agg[r] = $col[FILENAME, "num_agents"]
      ov[n] = 1000 * ($col[FILENAME, "round_seconds"] - train_s)
      rs[n] = 1000 * $col[FILENAME, "round_seconds"]
      sp[n] = spread[r] + 0; rest[n] = ov[n] - sp[n] }
    function median(a, k,   i, j, t) {
      for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return k == 0 ? 0 : (k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2)
    }
    END {
      for (r in seen) { d = acked[r] - agg[r]; if (d > 0) lost += d; else double -= d }
      max = 0; for (i = 1; i <= n; i++) if (ov[i] > max) max = ov[i]
      printf "%d %d %d %.1f %.1f %.1f %.1f %.1f\n", n, lost, double, median(ov, n), max,
        median(rs, n), median(sp, n), median(rest, n)
    }' "$work/client_rounds.csv" "$state/history.csv")"

# One line per round: what the clients saw beside what the coordinator did.
per_round_table() {
  awk -F, '
    FNR == 1 { for (i = 1; i <= NF; i++) col[FILENAME, $i] = i; next }
    FILENAME ~ /client_rounds/ {
      c[$1] = sprintf("%s/%s/%s/%s", $col[FILENAME, "acked"],
        $col[FILENAME, "duplicate"], $col[FILENAME, "aborted"],
        $col[FILENAME, "other_errors"] + $col[FILENAME, "fetch_errors"]); next }
    { r = $1; order[++n] = r
      h[r] = sprintf("%s/%s %8.1f", $col[FILENAME, "num_agents"],
        $col[FILENAME, "num_failed"], 1000 * $col[FILENAME, "round_seconds"]) }
    END { for (i = 1; i <= n; i++) printf "  round %3d: %-16s %s\n", order[i],
            (order[i] in c) ? c[order[i]] : "-", h[order[i]] }
  ' "$work/client_rounds.csv" "$state/history.csv"
}

poll_p99="$(field poll_p99_ms)"
cat <<EOF
--- fedge load benchmark ---
agents: $agents (one connection each, $procs processes, $threads threads in all), train ${train_ms} ms, poll every ${poll_interval_ms} ms, $( ((tls)) && echo TLS || echo plain text)
load_agents: exit $agents_rc, finished $(field finished)/$agents, gave_up $(field gave_up), timed_out $(field timed_out), rejoins $(field rejoins), join_errors $(field join_errors), poll_errors $(field poll_errors), wall $(field wall_s) s
coordinator: exit $coordinator_rc, rounds completed $done_rounds/$rounds, cpu user ${cpu_user:-?} s + sys ${cpu_sys:-?} s, peak RSS ${rss:-?} MB
polls: $(field polls) ($(field polls_per_s)/s), latency p50 $(field poll_p50_ms) ms, p99 $poll_p99 ms, max $(field poll_max_ms) ms
fetch p50/p99: $(field fetch_p50_ms)/$(field fetch_p99_ms) ms; submit p50/p99: $(field submit_p50_ms)/$(field submit_p99_ms) ms
round time median $round_median ms; coordination overhead (round - train) median $overhead_median ms, max $overhead_max ms
  of which task discovery (first agent saw the task -> last agent held the model; bounded by the poll interval) median $spread_median ms,
  the rest (round start -> first poll, upload, aggregation, checkpoint, history) median $rest_median ms
updates: lost $lost, double-counted $double
per round: client acked/dup/aborted/errors vs coordinator aggregated/failed, round ms
$(per_round_table)
EOF
status=0
if [[ "$agents_rc" != 0 || "$coordinator_rc" != 0 || "$done_rounds" != "$rounds" ||
      "$lost" != 0 || "$double" != 0 ]]; then
  status=1
fi
echo "agents=$agents rounds=$done_rounds lost_updates=$lost double_counted=$double" \
  "poll_p99_ms=$poll_p99 overhead_ms_median=$overhead_median" \
  "coordinator_peak_rss_mb=${rss:-?}"
exit "$status"
