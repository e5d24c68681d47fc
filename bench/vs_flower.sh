#!/usr/bin/env bash
# fedge vs. Flower 1.6 on the transfer scenario: an MLP 784-2800-2800-10
# (~10M parameters, 40 MB in fp32), 8 clients/agents, one local SGD step of
# batch 10, 5 rounds, all on 127.0.0.1, plain and with TLS.
#
# The two systems run alternately (A B A B: for each rep, for tls in 0 1:
# Flower, fedge fp32, fedge int8), because the machines are shared and their
# speed drifts: only compare figures from one run of this script, and quote
# the ratio.
#   Flower: the harness at ../shared/peers/flower (next to the repository),
#     run_federation.py --clients 8 --rounds 5 --hidden 2800 --local-steps 1
#     --batch-size 10 [--tls]. Its figure is the median round wall time over
#     rounds 2..R (of summary.json's round_wall_s, the statistic fedge's
#     figure is) and the server's peak RSS (server_vmhwm_mb). Flower always
#     sends fp32.
#   fedge: bench/transfer_bench.sh [--tls] --encoding fp32|int8. Its figure is
#     the median round wall time over rounds 2..R (round_seconds_median) and
#     the coordinator's peak RSS (coordinator_peak_rss_mb).
# Both are medians over rounds 2..R, so they compare like with like.
#
# Other load: the harness reports the CPU other processes used during its
# run (foreign_cpu_frac_of_machine: busy time from /proc/stat minus the CPU
# of the processes it started, over wall time x cores). Each fedge rep is
# measured the same way here: transfer_bench.sh runs under a small Python
# helper that is a child subreaper (so every process of the rep, even one
# its parent left behind, is reaped by it and its CPU shows in the helper's
# getrusage(RUSAGE_CHILDREN)), and the helper compares that with /proc/stat.
# A rep where other processes used more than 10% of the machine, or that
# failed, is redone, at most --retries times (default 3); after that a busy
# rep is kept with a warning on stderr.
#
# Output, on stdout at the end, one line per setting (read by scripts):
#   scenario=transfer tls=0|1 encoding=fp32|int8 fedge_s=A flower_s=B ratio=R fedge_rss_mb=M flower_rss_mb=N
# Each value is the median over the setting's clean reps (over all its reps,
# with a warning, when none was clean); ratio = fedge_s / flower_s. For
# encoding=int8, flower_s and flower_rss_mb are Flower's fp32 figures from
# the same alternation. A value that could not be measured prints "none".
# Progress (each rep, side and figure) goes to stderr.
#
# usage: bench/vs_flower.sh [--reps N] [--quick] [--retries N] [--out DIR]
#   --reps N     reps of each side and setting (default 3)
#   --quick      smoke check: 1 rep of 3 rounds
#   --retries N  redos of a busy or failed rep (default 3)
#   --out DIR    keep the raw results (logs, summary.json, reps.tsv) in DIR;
#                by default they go to a temporary folder removed at exit
#                (kept when FEDGE_KEEP_WORK is set)
# Environment: FEDGE_BUILD_DIR, the fedge build folder holding
# server/fedge-coordinator and edge_agent/fedge-agent (default build/).
# Needs the fedge build (scripts/build.sh fedge-coordinator fedge-agent); it
# installs the Flower harness's Debian packages itself through
# scripts/install-deps.sh --bench (sudo when not root).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=3
rounds=5
retries=3
out=""
usage() { sed -n '/^# usage:/,/^# the Flower/s/^# \{0,1\}//p' "$0" >&2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps=$2; shift 2 ;;
    --quick) reps=1; rounds=3; shift ;;
    --retries) retries=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "vs_flower: unknown argument '$1'" >&2; usage; exit 2 ;;
  esac
done
for v in "$reps" "$retries"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "vs_flower: --reps and --retries take a number, not '$v'" >&2; exit 2; }
done
[ "$reps" -ge 1 ] || { echo "vs_flower: --reps must be at least 1" >&2; exit 2; }
max_foreign=0.10 # a rep where other processes used more of the machine is redone

# --- prerequisites ---------------------------------------------------------
flower="$root/../shared/peers/flower"
if [ ! -f "$flower/run_federation.py" ]; then
  echo "vs_flower: the Flower 1.6 harness is missing: expected $flower/run_federation.py" \
    "($(realpath -m "$flower")), next to the repository" >&2
  exit 2
fi
flower=$(cd "$flower" && pwd)
# Flower's Python side and GNU time (idempotent; quick when all is there).
"$root/scripts/install-deps.sh" --bench >&2 || {
  echo "vs_flower: could not install the Flower harness's packages (see $flower/README.md);" \
    "run scripts/install-deps.sh --bench and read its error" >&2
  exit 2
}
build=${FEDGE_BUILD_DIR:-$root/build}
for b in "$build/server/fedge-coordinator" "$build/edge_agent/fedge-agent"; do
  [ -x "$b" ] || {
    echo "vs_flower: $b missing: run scripts/build.sh fedge-coordinator fedge-agent" \
      "(or point FEDGE_BUILD_DIR at a build folder)" >&2
    exit 2
  }
done
build=$(cd "$build" && pwd)

. "$root/scripts/lib.sh"
fedge_work_dir vs-flower
if [ -n "$out" ]; then
  mkdir -p "$out"
  results=$(cd "$out" && pwd)
else
  results="$work/results"
  mkdir -p "$results"
fi

# transfer_bench.sh takes its build from <its repository>/build. For another
# build folder, run it from a shadow of the repository whose build/ is a
# link to FEDGE_BUILD_DIR (everything else links to this repository).
fedge_root=$root
if [ "$build" != "$(cd "$root/build" 2>/dev/null && pwd || true)" ]; then
  fedge_root="$work/fedge-root"
  mkdir -p "$fedge_root"
  for e in "$root"/*; do
    [ "$(basename "$e")" = build ] || ln -s "$e" "$fedge_root/"
  done
  ln -s "$build" "$fedge_root/build"
fi

# The helper for the fedge reps: runs a command as a child subreaper, reaps
# every descendant (killing any still alive 30 s after the command ended),
# and writes "foreign_cpu_frac=F own_cpu_s=S wall_s=W" to OUT, the same
# measure as run_federation.py's foreign_cpu_frac_of_machine. INT or TERM
# stops the command's whole tree.
cat > "$work/measure_cpu.py" <<'EOF'
import ctypes, os, resource, signal, subprocess, sys, time

def busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")

def own_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime

def descendants():
    todo, seen = [os.getpid()], []
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
        if p != os.getpid():
            seen.append(p)
    return seen

def reap(deadline):
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

def stop_all():
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in descendants():
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        if reap(time.monotonic() + 5):
            return

def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)

out, cmd = sys.argv[1], sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("measure_cpu: prctl(PR_SET_CHILD_SUBREAPER) failed")
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
b0, o0, w0 = busy_s(), own_s(), time.monotonic()
rc = subprocess.call(cmd)
if not reap(time.monotonic() + 30):
    print("measure_cpu: processes of the rep still running 30 s after it ended; stopping them",
          file=sys.stderr)
    stop_all()
b1, o1, w1 = busy_s(), own_s(), time.monotonic()
foreign = max(0.0, (b1 - b0) - (o1 - o0))
with open(out, "w") as f:
    f.write(f"foreign_cpu_frac={foreign / ((w1 - w0) * (os.cpu_count() or 1)):.4f} "
            f"own_cpu_s={o1 - o0:.2f} wall_s={w1 - w0:.2f}\n")
sys.exit(rc)
EOF

# Each rep runs in the background under `timeout` and is waited for, so INT
# or TERM reach this script's trap at once; the trap passes SIGINT on (the
# harness stops the processes it started on KeyboardInterrupt, the helper
# on any signal), waits up to 60 s, then kills what is left of it.
child=""
stop_child() {
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -INT "$child" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$child" 2>/dev/null || true
  fi
  child=""
}
trap 'stop_child; fedge_cleanup' EXIT
trap 'echo "vs_flower: interrupted" >&2; exit 130' INT TERM

run_bg() { # run_bg LOG CMD...: runs CMD in the background, waits, returns its status
  local log=$1
  shift
  "$@" > "$log" 2>&1 &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

is_num() { [[ "${1:-}" =~ ^[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }

# measure_flower TLS DIR and measure_fedge TLS ENCODING DIR set m_s (round
# seconds), m_rss (peak RSS MB) and m_frac (the fraction of the machine other
# processes used), each "none" when missing; they fail when the run did.
# (Globals, not output: a command substitution would hold off the traps.)
measure_flower() {
  local tls=$1 dir=$2
  local args=(--clients 8 --rounds "$rounds" --hidden 2800 --local-steps 1 --batch-size 10 --out "$dir")
  [ "$tls" = 0 ] || args+=(--tls)
  m_s=none m_rss=none m_frac=none
  mkdir -p "$dir"
  run_bg "$dir/launcher.log" timeout -s INT -k 30 900 \
    /usr/bin/python3 "$flower/run_federation.py" "${args[@]}" || return 1
  [ -s "$dir/summary.json" ] || return 1
  read -r m_s m_rss m_frac < <(/usr/bin/python3 - "$dir/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
import statistics
# The median over rounds 2..R, as fedge's transfer_bench.sh reports it.
walls = (s.get("round_wall_s") or [])[1:]
v = [statistics.median(walls) if walls else None, s.get("server_vmhwm_mb"), s.get("foreign_cpu_frac_of_machine")]
print(" ".join("none" if x is None else repr(float(x)) for x in v))
EOF
  ) || return 1
}

measure_fedge() {
  local tls=$1 enc=$2 dir=$3
  local args=(--rounds "$rounds" --encoding "$enc")
  [ "$tls" = 0 ] || args+=(--tls)
  m_s=none m_rss=none m_frac=none
  mkdir -p "$dir"
  rm -f "$dir/cpu.txt"
  run_bg "$dir/transfer_bench.log" timeout -s INT -k 30 900 \
    /usr/bin/python3 "$work/measure_cpu.py" "$dir/cpu.txt" \
    "$fedge_root/bench/transfer_bench.sh" "${args[@]}" || return 1
  local last
  last=$(grep '^round_seconds_median=' "$dir/transfer_bench.log" | tail -1) || return 1
  m_s=$(sed -n 's/.*round_seconds_median=\([^ ]*\).*/\1/p' <<< "$last")
  m_rss=$(sed -n 's/.*coordinator_peak_rss_mb=\([^ ]*\).*/\1/p' <<< "$last")
  m_frac=$(sed -n 's/.*foreign_cpu_frac=\([^ ]*\).*/\1/p' "$dir/cpu.txt" 2>/dev/null || true)
}

# rep REP TLS SIDE ENC: measures one rep of one side, redoing it when it
# failed or the machine was busy, and appends
# "tls enc side rep round_s rss_mb foreign_frac clean" to reps.tsv.
rep() {
  local r=$1 tls=$2 side=$3 enc=$4 try got="" clean
  for try in $(seq $((retries + 1))); do
    local dir="$results/rep$r-tls$tls-$side-$enc-try$try"
    local what="rep $r/$reps tls=$tls $side $enc (try $try)"
    if [ "$side" = flower ]; then
      measure_flower "$tls" "$dir" || true
    else
      measure_fedge "$tls" "$enc" "$dir" || true
    fi
    is_num "$m_rss" || m_rss=none
    is_num "$m_frac" || m_frac=none
    if ! is_num "$m_s"; then
      echo "vs_flower: $what: FAILED, no round time (see $dir)" >&2
      continue
    fi
    clean=0
    if is_num "$m_frac" && awk -v f="$m_frac" -v m="$max_foreign" 'BEGIN { exit !(f <= m) }'; then
      clean=1
    fi
    got="$m_s $m_rss $m_frac $clean"
    awk -v w="$what" -v s="$m_s" -v r="$m_rss" -v f="$m_frac" -v c="$clean" -v last="$((try > retries))" 'BEGIN {
      printf "vs_flower: %s: round %.3f s, peak RSS %s MB, other processes used %s of the machine%s\n",
        w, s, (r == "none" ? r : sprintf("%.0f", r)), (f == "none" ? "an unmeasured share" : sprintf("%.0f%%", 100 * f)),
        (c ? "" : last ? " -- busy" : " -- busy, redo") }' >&2
    [ "$clean" = 0 ] || break
  done
  if [ -z "$got" ]; then
    echo "vs_flower: WARNING rep $r tls=$tls $side $enc failed $((retries + 1)) times: not counted" >&2
    return 0
  fi
  read -r m_s m_rss m_frac clean <<< "$got"
  [ "$clean" = 1 ] || echo "vs_flower: WARNING rep $r tls=$tls $side $enc: the machine stayed busy" \
    "in all $((retries + 1)) tries; its last measured try is kept, marked busy" >&2
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tls" "$enc" "$side" "$r" "$m_s" "$m_rss" "$m_frac" "$clean" \
    >> "$results/reps.tsv"
}

echo "vs_flower: $reps rep(s) of $rounds rounds; fedge build $build; Flower harness $flower;" \
  "raw results in $results${out:+ (kept)}" >&2
: > "$results/reps.tsv"
for r in $(seq "$reps"); do
  for tls in 0 1; do
    rep "$r" "$tls" flower fp32
    rep "$r" "$tls" fedge fp32
    rep "$r" "$tls" fedge int8
  done
done

# median TLS ENC SIDE COLUMN: prints the median of a column of reps.tsv (5:
# round s, 6: RSS MB) over the setting's clean reps and "clean", or over all
# its reps and "busy" when none was clean, or "none none" without a value.
median() {
  awk -F'\t' -v t="$1" -v e="$2" -v sd="$3" -v col="$4" '
    $1 == t && $2 == e && $3 == sd && $col != "none" { all[++na] = $col; if ($8 == 1) clean[++nc] = $col }
    function med(v, n,   i, j, x) {
      for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > x + 0; j--) v[j + 1] = v[j]; v[j + 1] = x }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    END { if (nc) print med(clean, nc), "clean"; else if (na) print med(all, na), "busy"; else print "none none" }
  ' "$results/reps.tsv"
}
median_of() { # median_of TLS ENC SIDE COLUMN: the value, with a warning on stderr for busy reps
  local v state
  read -r v state < <(median "$@")
  [ "$state" != busy ] || [ "$4" != 5 ] ||
    echo "vs_flower: WARNING tls=$1 $3 $2: no clean rep; its figures are medians over busy reps" >&2
  echo "$v"
}
fmt() { if is_num "$2"; then printf "%.$1f" "$2"; else printf none; fi; }

lines=()
for tls in 0 1; do
  fl_s=$(median_of "$tls" fp32 flower 5)
  fl_rss=$(median_of "$tls" fp32 flower 6)
  for enc in fp32 int8; do
    fe_s=$(median_of "$tls" "$enc" fedge 5)
    fe_rss=$(median_of "$tls" "$enc" fedge 6)
    ratio=none
    if is_num "$fe_s" && is_num "$fl_s" && awk -v b="$fl_s" 'BEGIN { exit !(b > 0) }'; then
      ratio=$(awk -v a="$fe_s" -v b="$fl_s" 'BEGIN { printf "%.3f", a / b }')
    fi
    lines+=("scenario=transfer tls=$tls encoding=$enc fedge_s=$(fmt 3 "$fe_s") flower_s=$(fmt 3 "$fl_s") ratio=$ratio fedge_rss_mb=$(fmt 1 "$fe_rss") flower_rss_mb=$(fmt 1 "$fl_rss")")
  done
done
printf '%s\n' "${lines[@]}"
