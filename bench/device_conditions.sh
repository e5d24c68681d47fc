#!/usr/bin/env bash
# Device conditions under churn: N agent processes (default 20) that train
# only on external power (eligibility.require_external_power), each reading
# a power_supply folder of its own; half of them (the even ids) lose and
# regain "power" at random moments (this script flips their AC/online
# files on a seeded schedule: powered 1-7 s, then unplugged 0.5-9 s, or
# with probability --long_pct 20-40 s, longer than most rounds have left).
# MNIST 2NN, all agents selected every round, quorum half of them, a
# round deadline.
#
# Checks that rounds still close (at the deadline, with the quorum) while
# agents pause, that an interrupted agent says why (poll paused_reason, the
# coordinator's "holds back" log lines, ReportFailure when it gives up:
# fedge_agent_failures_total{reason="power"}), and that a training resumed
# after an interruption is counted once: every (agent, round) has at most
# one accepted update, and the coordinator aggregated exactly the updates
# the agents saw accepted. Prints one summary line:
#
#   agents=20 flaky=10 flips=F interrupted=N resumed=M resumed_counted=K
#   held_back=H gave_up=G failures_reported=P rounds=R completed=C
#   abandoned=A with_failures=W updates=U double_counted=0 lost=0
#   round_seconds_median=S
#
# (interrupted: trainings stopped mid-way; resumed: continued from the kept
# state; resumed_counted: those whose update was then accepted, once;
# held_back: rounds whose task waited for power before starting; gave_up:
# rounds given up near the deadline (ReportFailure); failures_reported: the
# coordinator's count of them; with_failures: completed rounds some selected
# agent failed (gave up, or was still paused at the deadline), closed
# with the quorum; double_counted: (agent, round) pairs accepted
# more than once, plus aggregated updates beyond those the agents saw
# accepted; lost: the reverse.)
#
# usage: bench/device_conditions.sh [--agents N] [--rounds R] [--epochs E]
#            [--deadline_ms D] [--long_pct P] [--seed S] [--data_dir DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
agents=20
rounds=5
epochs=2
deadline_ms=30000
long_pct=20
seed=1
data_dir="$root/../shared/data/mnist"
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --deadline_ms) deadline_ms=$2; shift 2 ;;
    --long_pct) long_pct=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --data_dir) data_dir=$2; shift 2 ;;
    *) echo "device_conditions: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
. "$root/scripts/lib.sh"
fedge_work_dir conditions
quorum=$(( (agents + 1) / 2 ))

# set_power I 0|1: agent I's mains supply offline/online (written whole,
# then renamed, so a reading never sees half a file).
set_power() {
  local d="$work/power/agent-$1/AC"
  echo "$2" > "$d/online.tmp" && mv "$d/online.tmp" "$d/online"
}

# flip I: unplugs and plugs agent I at random moments until killed; one
# "flip" line per unplugging in $work/flips.log.
flip() {
  RANDOM=$((seed * 1000 + $1))
  while true; do
    sleep "$((1 + RANDOM % 7)).$((RANDOM % 10))"
    set_power "$1" 0
    echo "flip agent-$1" >> "$work/flips.log"
    if [ $((RANDOM % 100)) -lt "$long_pct" ]; then
      sleep "$((20 + RANDOM % 21))"
    else
      sleep "$((RANDOM % 9)).$((5 + RANDOM % 5))"
    fi
    set_power "$1" 1
  done
}

"$root/build/server/fedge-coordinator" \
  --config "$root/configs/coordinator/mnist_2nn.textproto" --insecure \
  --listen_address 127.0.0.1:0 --state_dir "$work/coordinator" \
  --http_address 127.0.0.1:0 --rounds "$rounds" \
  --strategy.count "$agents" --strategy.min_available_agents "$agents" \
  --strategy.min_fit_agents "$quorum" \
  --strategy.round_deadline_ms "$deadline_ms" --train.epochs "$epochs" \
  --simulation.num_partitions "$agents" --heartbeat_interval_ms 1000 \
  --agent_timeout_ms 15000 --exit_when_done=false \
  --eval_data.data_dir "$data_dir" 2> "$work/coordinator.log" &
coordinator=$!
pids+=("$coordinator")
port=$(fedge_wait_port "$work/coordinator" "$coordinator" "$work/coordinator.log")
for _ in $(seq 100); do [ -s "$work/coordinator/http_port" ] && break; sleep 0.1; done
http_port=$(cat "$work/coordinator/http_port")

members=()
for i in $(seq "$agents"); do
  mkdir -p "$work/power/agent-$i/AC"
  echo Mains > "$work/power/agent-$i/AC/type"
  set_power "$i" 1
  "$root/build/edge_agent/fedge-agent" --config "$root/configs/agent/mnist.textproto" \
    --coordinator "127.0.0.1:$port" --agent_id "agent-$i" --state_dir "$work/agent-$i" \
    --data.data_dir "$data_dir" --tls.insecure=true --exit_when_finished=false \
    --eligibility.require_external_power=true \
    --eligibility.power_supply_dir "$work/power/agent-$i" \
    --eligibility.check_interval_ms 200 2> "$work/agent-$i.log" &
  pids+=("$!")
  members+=("$!")
done
: > "$work/flips.log"
for i in $(seq 2 2 "$agents"); do
  flip "$i" &
  pids+=("$!")
done

# Until `rounds` rounds completed (abandoned ones do not count), bounded:
# 2 x rounds x (deadline + 60 s).
completed_rounds() {
  tail -n +2 "$work/coordinator/history.csv" 2>/dev/null |
    awk -F, -v q="$quorum" '$2 >= q { n++ } END { print n + 0 }'
}
limit=$(( 2 * rounds * (deadline_ms / 1000 + 60) ))
for _ in $(seq "$limit"); do
  [ "$(completed_rounds)" -ge "$rounds" ] && break
  kill -0 "$coordinator" 2>/dev/null || break
  sleep 1
done
metrics=$(curl -s --max-time 5 "http://127.0.0.1:$http_port/metrics" || true)
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true

# The agents' accepted updates, one "agent round" line each (a duplicate
# acknowledgement of a retry is not a second update).
for i in $(seq "$agents"); do
  grep -v '(duplicate)' "$work/agent-$i.log" |
    sed -n "s/.*] round \([0-9]*\): model in .* submitted in .*/agent-$i \1/p"
done > "$work/accepted.txt"
# The (agent, round) pairs whose training was resumed.
for i in $(seq "$agents"); do
  sed -n "s/.*] round \([0-9]*\): resuming the training at step.*/agent-$i \1/p" \
    "$work/agent-$i.log"
done | sort -u > "$work/resumed.txt"

count() { cat "$work"/agent-*.log | grep -c "$1" || true; }
rows=$(tail -n +2 "$work/coordinator/history.csv" 2>/dev/null || true)
aggregated=$(echo "$rows" | awk -F, 'NF > 1 { s += $2 } END { print s + 0 }')
completed=$(echo "$rows" | awk -F, -v q="$quorum" 'NF > 1 && $2 >= q { n++ } END { print n + 0 }')
abandoned=$(echo "$rows" | awk -F, -v q="$quorum" 'NF > 1 && $2 < q { n++ } END { print n + 0 }')
with_failures=$(echo "$rows" | awk -F, -v q="$quorum" 'NF > 1 && $2 >= q && $3 > 0 { n++ } END { print n + 0 }')
round_median=$(echo "$rows" | awk -F, 'NF > 1 { v[++n] = $10 }
  END { if (!n) { print "none"; exit }
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        printf "%.1f", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }')
accepted=$(wc -l < "$work/accepted.txt")
repeats=$(sort "$work/accepted.txt" | uniq -d | wc -l)
resumed_counted=$(sort -u "$work/accepted.txt" | comm -12 - "$work/resumed.txt" | wc -l)
failures_reported=$(echo "$metrics" | awk '/^fedge_agent_failures_total\{reason="power"\}/ { print $2 }')
extra=$(( aggregated > accepted ? aggregated - accepted : 0 ))
lost=$(( accepted > aggregated ? accepted - aggregated : 0 ))
echo "agents=$agents flaky=$((agents / 2)) flips=$(wc -l < "$work/flips.log")" \
  "interrupted=$(count 'training stopped at step') resumed=$(wc -l < "$work/resumed.txt")" \
  "resumed_counted=$resumed_counted held_back=$(count 'waiting to train')" \
  "gave_up=$(count 'giving up') failures_reported=${failures_reported:-0}" \
  "rounds=$(echo "$rows" | awk -F, 'NF > 1' | wc -l) completed=$completed abandoned=$abandoned" \
  "with_failures=$with_failures" \
  "updates=$aggregated double_counted=$((repeats + extra)) lost=$lost" \
  "round_seconds_median=$round_median"
echo "paused_reasons_logged=$(grep -c 'holds back: power: on battery' "$work/coordinator.log" || true)" \
  "gave_up_logged=$(grep -c 'gave up round' "$work/coordinator.log" || true)"
