#!/usr/bin/env bash
# What fedge-agent costs a device: for each model, one coordinator and one
# agent for a few rounds, the agent run under /usr/bin/time -v. The agent
# holds N MNIST examples of its own (default 6000: the first N of the
# training set, written as IDX files it loads, and the first 1000 test
# examples), trains them all with 1 LibTorch thread, E=1, B=10. With
# --full_data it loads the whole of MNIST instead and trains partition 0 of
# 60000/N handed out by the coordinator (simulation mode, as in the docker
# compose deployment): the same training, the whole data set in memory.
# Prints one line per model:
#
#   model=cnn rounds=3 examples=6000 peak_rss_mib=... cpu_seconds=...
#   cpu_seconds_per_round=... train_seconds_per_round=... wall_seconds=...
#   download_bytes_per_round=... upload_bytes_per_round=...
#
# (cpu_seconds: the agent's user + system time over the whole run, start-up
# and data loading included; train_seconds_per_round: its training loop
# alone; download/upload: the model streamed to it and the update it sent,
# per round, from the coordinator's history), then the installed size:
#
#   agent_binary_bytes=... agent_binary_stripped_bytes=...
#   runtime_packages=N runtime_installed_kib=...
#   package=<name> installed_kib=...        (the largest five)
#
# (the Debian packages owning the shared libraries the binary loads, ldd's
# transitive closure, with their dpkg-query Installed-Size).
#
# usage: bench/agent_footprint.sh [--models "2nn cnn mobile_cnn ..."]
#            [--rounds R] [--examples N] [--full_data] [--data_dir DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
models="2nn cnn mobile_cnn mobilenet_v2 shufflenet_v2 squeezenet"
rounds=3
examples=6000
full_data=0
data_dir="$root/../shared/data/mnist"
while [ $# -gt 0 ]; do
  case "$1" in
    --models) models=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --examples) examples=$2; shift 2 ;;
    --full_data) full_data=1; shift ;;
    --data_dir) data_dir=$2; shift 2 ;;
    *) echo "agent_footprint: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
. "$root/scripts/lib.sh"
fedge_work_dir footprint
agent_bin="$root/build/edge_agent/fedge-agent"

# subset IN OUT COUNT: the first COUNT items of the IDX file IN (.gz or
# not), as an IDX file OUT.
subset() {
  python3 - "$@" <<'PY'
import gzip, struct, sys
src, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with (gzip.open if src.endswith(".gz") else open)(src, "rb") as f:
    data = f.read()
dims = data[3]
shape = list(struct.unpack(">%dI" % dims, data[4:4 + 4 * dims]))
item = 1
for d in shape[1:]:
    item *= d
shape[0] = min(count, shape[0])
body = data[4 + 4 * dims:4 + 4 * dims + shape[0] * item]
with open(dst, "wb") as f:
    f.write(data[:4] + struct.pack(">%dI" % dims, *shape) + body)
PY
}

if [ "$full_data" = 1 ]; then
  partitions=$(( 60000 / examples ))
  server_data=(--simulation.num_partitions "$partitions")
  agent_data=(--data.data_dir "$data_dir")
else
  for split in train:"$examples" t10k:1000; do
    for kind in images-idx3 labels-idx1; do
      subset "$data_dir/${split%%:*}-$kind-ubyte.gz" "$work/${split%%:*}-$kind" "${split##*:}"
    done
  done
  server_data=(--simulation.enabled=false)
  agent_data=(--data.source idx
    --data.idx_train_images "$work/train-images-idx3" --data.idx_train_labels "$work/train-labels-idx1"
    --data.idx_test_images "$work/t10k-images-idx3" --data.idx_test_labels "$work/t10k-labels-idx1")
fi

# measure MODEL: one federation; prints the model's line.
measure() {
  local m=$1 dir="$work/$1"
  mkdir -p "$dir"
  "$root/build/server/fedge-coordinator" \
    --config "$root/configs/coordinator/mnist_2nn.textproto" --insecure \
    --listen_address 127.0.0.1:0 --state_dir "$dir/coordinator" --http_address= \
    --model.architecture "$m" --rounds "$rounds" --strategy.count 1 \
    --strategy.min_available_agents 1 --strategy.min_fit_agents 1 \
    --strategy.round_deadline_ms 600000 "${server_data[@]}" \
    --eval_data.data_dir "$data_dir" 2> "$dir/coordinator.log" &
  local coordinator=$!
  pids+=("$coordinator")
  local port
  port=$(fedge_wait_port "$dir/coordinator" "$coordinator" "$dir/coordinator.log")
  /usr/bin/time -v -o "$dir/time.txt" "$agent_bin" \
    --config "$root/configs/agent/mnist.textproto" --coordinator "127.0.0.1:$port" \
    --agent_id measured --state_dir "$dir/agent" "${agent_data[@]}" \
    --tls.insecure=true --num_threads 1 2> "$dir/agent.log" &
  local agent=$!
  pids+=("$agent")
  # Bounded: the agent exits once the federation finished.
  timeout 3600 tail --pid "$agent" -f /dev/null || { kill "$agent"; echo "model=$m timeout" >&2; }
  wait "$agent" || { echo "model=$m: the agent failed; the end of its log:" >&2; tail -5 "$dir/agent.log" >&2; }
  wait "$coordinator" || true
  local examples
  examples=$(sed -n 's/.*; \([0-9]*\) local examples.*/\1/p;s/.*training [a-z0-9_]* on \([0-9]*\) local examples.*/\1/p' \
    "$dir/agent.log" | tail -1)
  awk -F': ' -v m="$m" -v r="$rounds" -v n="${examples:-none}" '
    /Maximum resident set size/ { rss = $2 }
    /User time/ { user = $2 } /System time/ { sys = $2 }
    /Elapsed \(wall clock\)/ { k = split($2, t, ":"); wall = 0; for (i = 1; i <= k; i++) wall = wall * 60 + t[i] }
    END { printf "model=%s rounds=%d examples=%s peak_rss_mib=%.1f cpu_seconds=%.2f cpu_seconds_per_round=%.2f wall_seconds=%.1f",
          m, r, n, rss / 1024, user + sys, (user + sys) / r, wall }' "$dir/time.txt"
  tail -n +2 "$dir/coordinator/history.csv" | awk -F, '
    { train += $9; up += $13; down += $14; n++ }
    END { if (n) printf " train_seconds_per_round=%.2f download_bytes_per_round=%d upload_bytes_per_round=%d\n", train / n, down / n, up / n
          else print " train_seconds_per_round=none download_bytes_per_round=none upload_bytes_per_round=none" }'
}

for m in $models; do measure "$m"; done

# Installed size: the binary, and the packages of the libraries it loads.
strip -o "$work/fedge-agent.stripped" "$agent_bin"
echo "agent_binary_bytes=$(stat -c %s "$agent_bin")" \
  "agent_binary_stripped_bytes=$(stat -c %s "$work/fedge-agent.stripped")"
# Each library by the path ldd gives and its real path (merged /usr: dpkg
# may know either), in one dpkg -S call.
ldd "$agent_bin" | awk '/=> \// { print $3 }' > "$work/libs.txt"
mapfile -t libs < <(while read -r lib; do echo "$lib"; readlink -f "$lib"; done < "$work/libs.txt" | sort -u)
dpkg -S "${libs[@]}" 2>/dev/null | cut -d: -f1 | tr -d ' ' | tr ',' '\n' |
  sort -u > "$work/packages.txt" || true
while read -r p; do
  echo "$p $(dpkg-query -W -f='${Installed-Size}' "$p")"
done < "$work/packages.txt" | sort -k2 -n -r > "$work/sizes.txt"
echo "runtime_libraries=$(wc -l < "$work/libs.txt") runtime_packages=$(wc -l < "$work/sizes.txt")" \
  "runtime_installed_kib=$(awk '{ s += $2 } END { print s + 0 }' "$work/sizes.txt")"
head -5 "$work/sizes.txt" | awk '{ printf "package=%s installed_kib=%d\n", $1, $2 }'
