#!/usr/bin/env bash
# bench/run.sh - dnsperf figures for dnsfw and reference servers, measured in ONE run.
#
#   bench/run.sh [-R ROUNDS=2] [-l SECONDS=10] [-t LAT_SECONDS=5] [-o OUT_DIR]
#                [-p "TARGET:WORKLOADS ..."] [--ref LABEL] [TARGET[:WORKLOADS] ...]
#
# TARGET is either a dnsfw variant, the name of a Corefile in bench/corefiles/ (NAME.Corefile,
# started with `dnsfw run` on its own port; NAME@base starts it with $DNSFW_BASE instead, e.g. a
# venv of an earlier commit, so before and after are measured in one interleaved run), or a
# reference peer of ../shared/bench/peers.sh
# (knot = the upstream itself, py-wire-1p = the bare-Python floor, unbound-bl, py-fwd-raw ...).
# WORKLOADS are the harness's (hit, blocked, miss, mix; comma separated); a TARGET given as an
# argument instead of in -p runs "hit" unless it names its own. A Corefile may bring its own
# hit names: bench/corefiles/NAME.queries (dnsperf lines) replaces hit.txt for that target.
# In the Corefiles {PORT}, {UPSTREAM}, {BLOCKLIST}, {LOGDIR}, {ZONES} (the upstream's zone
# files) and {HOSTS} (a hosts file with an A and an AAAA for every name of the hit workload)
# are filled in. Default: "fwd:hit,miss knot:hit,miss" (the forward path against its upstream).
#
# Answers made by plugins against a cache hit (issue 14: server CPU per query, the "srv us/q"
# column, as ratios to full:hit; each Corefile has full's log and firewall):
#   bench/run.sh -R 3 full hosts file template local acl acl-block
# (hosts, file, template answer the hit names without a cache; local answers local.queries,
# localhost names and ANY queries, with local and any; acl is full with an acl every client
# passes, so its hits are replays that ask acl again; acl-block refuses them: acl's own
# answers.)
#
# Everything runs on loopback: Knot (../shared/bench/upstream.sh) on 127.0.0.1:5301 serves the
# generated zones, every target forwards to it. Rounds interleave the targets so drifts of a
# shared machine hit all alike; summarize.py prints medians and ratios to --ref. Each dnsperf
# run is bounded by -l; everything started here is stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
DATA=${TMPDIR:-/tmp}/dnsbench-data
OUT=${TMPDIR:-/tmp}/dnsfw-bench-$(date +%Y%m%d-%H%M%S)
ROUNDS=2; SEC=10; LSEC=5; REF=""; NAMED=()
TARGETS="fwd:hit,miss knot:hit,miss"
while [ $# -gt 0 ]; do
  case "$1" in
    -R) ROUNDS=$2; shift 2 ;; -l) SEC=$2; shift 2 ;; -t) LSEC=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;; -p) TARGETS=$2; shift 2 ;; --ref) REF=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown argument $1" >&2; exit 2 ;;
    *) NAMED+=("$1"); shift ;;
  esac
done
if [ ${#NAMED[@]} -gt 0 ]; then
  TARGETS=""
  for t in "${NAMED[@]}"; do case "$t" in *:*) TARGETS+=" $t" ;; *) TARGETS+=" $t:hit" ;; esac; done
  TARGETS=${TARGETS# }
fi
DNSFW=${DNSFW:-$ROOT/.venv/bin/dnsfw}
[ -x "$DNSFW" ] || { echo "no $DNSFW: run 'make test' or 'pip install -e .' first" >&2; exit 1; }
"$SHARED/run_bench.sh" --prepare -d "$DATA" >&2
mkdir -p "$OUT/raw" "$OUT/run"
awk '!seen[$1]++ { print "10.0.0.1 " $1; print "fd00::1 " $1 }' "$DATA/hot-unique.txt" > "$OUT/run/hit.hosts"

declare -A PID PORTOF DATAOF
started_peers=()
next_port=5320
own_upstream=0
cleanup() {
  for t in "${!PID[@]}"; do
    [ "$t" = knot ] && continue  # the upstream: stopped below
    case " ${started_peers[*]:-} " in *" $t "*) continue ;; esac
    kill "${PID[$t]}" 2>/dev/null || true
  done
  for p in "${started_peers[@]:-}"; do [ -n "$p" ] && "$SHARED/peers.sh" stop "$p" "$DATA" || true; done
  if [ "$own_upstream" = 1 ]; then "$SHARED/upstream.sh" stop "$DATA" || true; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
# an upstream someone else started (an earlier run, a profiling session) is used, not stopped
if [ -f "$DATA/knot/knotd.pid" ] && kill -0 "$(cat "$DATA/knot/knotd.pid")" 2>/dev/null; then
  echo "using the Knot upstream already running (pid $(cat "$DATA/knot/knotd.pid"))" >&2
else
  "$SHARED/upstream.sh" start "$DATA" 5301 >/dev/null
  own_upstream=1
fi

start_dnsfw() {  # name [binary] -> starts dnsfw with bench/corefiles/${name%@base}.Corefile
  local name=$1 binary=${2:-$DNSFW} port=$next_port conf="$OUT/run/$1.Corefile"
  next_port=$((next_port + 1))
  sed -e "s#{PORT}#$port#g" -e "s#{UPSTREAM}#127.0.0.1:5301#g" \
      -e "s#{BLOCKLIST}#$DATA/blocklist.txt#g" -e "s#{LOGDIR}#$OUT/run/$name#g" \
      -e "s#{ZONES}#$DATA/zones#g" -e "s#{HOSTS}#$OUT/run/hit.hosts#g" \
      "$HERE/corefiles/${name%@base}.Corefile" > "$conf"
  own_queries "$name"
  mkdir -p "$OUT/run/$name"
  "$binary" run -conf "$conf" -quiet >"$OUT/run/$name.out" 2>&1 &
  PID[$name]=$!
  PORTOF[$name]=$port
  local t0=$SECONDS
  until dig +time=1 +tries=1 -p "$port" @127.0.0.1 h1.zone0.test A 2>/dev/null | grep -q 'status: NOERROR'; do
    kill -0 "${PID[$name]}" 2>/dev/null || { cat "$OUT/run/$name.out" >&2; exit 1; }
    [ $((SECONDS - t0)) -lt 120 ] || { echo "$name did not answer" >&2; exit 1; }
    sleep 0.2
  done
  echo "start peer=$name port=$port pid=${PID[$name]} ready_s=$((SECONDS - t0)) $(python3 "$SHARED/procinfo.py" "${PID[$name]}")" | tee -a "$OUT/peers.txt"
}
own_queries() {  # name -> DATAOF[name]: the harness's data, or a copy with NAME.queries as hit.txt
  local name=$1 queries=$HERE/corefiles/${1%@base}.queries dir=$OUT/data/$1
  DATAOF[$name]=$DATA
  [ -f "$queries" ] || return 0
  mkdir -p "$dir"
  cp "$queries" "$dir/hit.txt"; cp "$queries" "$dir/hot-unique.txt"  # hot-unique: the warm-up
  ln -sf "$DATA/blocked.txt" "$dir/blocked.txt"
  DATAOF[$name]=$dir
}

for spec in $TARGETS; do
  t=${spec%%:*}
  if [ "${t%@base}" != "$t" ] && [ -f "$HERE/corefiles/${t%@base}.Corefile" ]; then
    [ -x "${DNSFW_BASE:-}" ] || { echo "$t needs DNSFW_BASE=/path/to/an/earlier/dnsfw" >&2; exit 1; }
    start_dnsfw "$t" "$DNSFW_BASE"
  elif [ -f "$HERE/corefiles/$t.Corefile" ]; then
    start_dnsfw "$t"
  elif [ "$t" = knot ]; then
    PID[$t]=$(cat "$DATA/knot/knotd.pid"); PORTOF[$t]=5301
  else
    "$SHARED/peers.sh" start "$t" "$DATA" | sed 's/^/start /' | tee -a "$OUT/peers.txt"
    started_peers+=("$t"); PID[$t]=$(cat "$DATA/run/$t/pid"); PORTOF[$t]=$("$SHARED/peers.sh" port "$t")
  fi
done

for r in $(seq 1 "$ROUNDS"); do
  for spec in $TARGETS; do
    t=${spec%%:*}; wl=${spec#*:}
    python3 "$SHARED/bench_run.py" --server "127.0.0.1:${PORTOF[$t]}" --data "${DATAOF[$t]:-$DATA}" --label "$t" \
      --workloads "$wl" --seconds "$SEC" --repeats 1 --lat-qps 1000 --lat-seconds "$LSEC" \
      --pid "${PID[$t]}" --raw-dir "$OUT/raw/r$r" --salt "s${r}x$$" \
      | sed "s/^RESULT /RESULT round=$r /" | tee -a "$OUT/results.txt"
  done
done
for spec in $TARGETS; do
  t=${spec%%:*}
  echo "end peer=$t $(python3 "$SHARED/procinfo.py" "${PID[$t]}")" >> "$OUT/peers.txt"
done
first=${TARGETS%% *}; REF=${REF:-${first%%:*}}
python3 "$SHARED/summarize.py" --ref "$REF" --peers "$OUT/peers.txt" "$OUT/results.txt" | tee "$OUT/summary.md"
echo "outputs in $OUT" >&2
