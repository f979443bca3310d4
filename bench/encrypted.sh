#!/usr/bin/env bash
# bench/encrypted.sh - server CPU per query of DoT and DoH against UDP (and TCP), through the
# same chain, with dnsperf keeping its connections open (-m udp|tcp|dot|doh).
#
#   bench/encrypted.sh [-R ROUNDS=3] [-l SECONDS=10] [-c CLIENTS=4] [-w WORKLOAD=hit]
#                      [-C COREFILE=cache] [-o OUT_DIR]
#
# One dnsfw serves .:P, tls://.:P+1 and https://.:P+2 with bench/corefiles/COREFILE.Corefile's
# chain and a throw-away certificate (openssl, ECDSA P-256, made here); Knot
# (../shared/bench/upstream.sh) on 127.0.0.1:5301 is the upstream, WORKLOAD one of the
# harness's query files (hit, blocked, miss, mix; `../shared/bench/run_bench.sh --prepare`
# makes them). Rounds interleave the modes. For each run: queries completed (dnsperf), dnsfw's
# CPU seconds over the run (/proc), CPU microseconds per query; at the end the medians and
# each mode's ratio to UDP (the issue's bound: DoT and DoH <= 3x UDP). Loopback only; each
# dnsperf run is bounded by -l; everything started here is stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
DATA=${TMPDIR:-/tmp}/dnsbench-data
OUT=${TMPDIR:-/tmp}/dnsfw-encrypted-$(date +%Y%m%d-%H%M%S)
ROUNDS=3; SEC=10; CLIENTS=4; WORKLOAD=hit; COREFILE=cache
while [ $# -gt 0 ]; do
  case "$1" in
    -R) ROUNDS=$2; shift 2 ;; -l) SEC=$2; shift 2 ;; -c) CLIENTS=$2; shift 2 ;;
    -w) WORKLOAD=$2; shift 2 ;; -C) COREFILE=$2; shift 2 ;; -o) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
DNSFW=${DNSFW:-$ROOT/.venv/bin/dnsfw}
[ -x "$DNSFW" ] || { echo "no $DNSFW: run 'pip install -e .' first" >&2; exit 1; }
[ -f "$DATA/$WORKLOAD.txt" ] || "$SHARED/run_bench.sh" --prepare -d "$DATA" >&2
mkdir -p "$OUT"
own_upstream=0; PIDF=""
cleanup() {
  [ -n "$PIDF" ] && kill "$PIDF" 2>/dev/null || true
  if [ "$own_upstream" = 1 ]; then "$SHARED/upstream.sh" stop "$DATA" || true; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
if ! { [ -f "$DATA/knot/knotd.pid" ] && kill -0 "$(cat "$DATA/knot/knotd.pid")" 2>/dev/null; }; then
  "$SHARED/upstream.sh" start "$DATA" 5301 >/dev/null
  own_upstream=1
fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$OUT/bench.key" -out "$OUT/bench.crt" 2>/dev/null
P=${BENCH_PORT:-5340}
{ echo ".:$P tls://.:$((P + 1)) https://.:$((P + 2)) {"
  echo "    tls $OUT/bench.crt $OUT/bench.key"
  echo "    timeouts {"
  echo "        idle 60s"
  echo "    }"
  # the chain of the named Corefile: its block's lines without the key, bind kept
  sed -e '/^#/d' -e '/^\./d' -e '/^}/d' -e "s#{UPSTREAM}#127.0.0.1:5301#g" \
    -e "s#{BLOCKLIST}#$DATA/blocklist.txt#g" -e "s#{LOGDIR}#$OUT#g" \
    "$HERE/corefiles/$COREFILE.Corefile"
  echo "}"; } > "$OUT/Corefile"
"$DNSFW" run -conf "$OUT/Corefile" 2> "$OUT/dnsfw.stderr" &
PIDF=$!
for _ in $(seq 100); do grep -q "event='ready'" "$OUT/dnsfw.stderr" && break; sleep 0.1; done
grep -q "event='ready'" "$OUT/dnsfw.stderr" || { cat "$OUT/dnsfw.stderr" >&2; exit 1; }

cpu() {  # CPU seconds of dnsfw (utime + stime)
  awk -v tick="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / tick }' "/proc/$PIDF/stat"
}
declare -A PORT=([udp]=$P [tcp]=$P [dot]=$((P + 1)) [doh]=$((P + 2)))
for r in $(seq "$ROUNDS"); do
  for mode in udp tcp dot doh; do
    extra=()
    [ "$mode" = doh ] && extra=(-O "doh-uri=https://127.0.0.1:${PORT[$mode]}/dns-query" -O doh-method=POST)
    before=$(cpu)
    out=$(dnsperf -m "$mode" -s 127.0.0.1 -p "${PORT[$mode]}" -d "$DATA/$WORKLOAD.txt" \
      -l "$SEC" -c "$CLIENTS" -q 200 "${extra[@]}" 2>&1)
    after=$(cpu)
    done_q=$(sed -n 's/.*Queries completed: *\([0-9]*\).*/\1/p' <<< "$out")
    qps=$(sed -n 's/.*Queries per second: *\([0-9.]*\).*/\1/p' <<< "$out")
    echo "RESULT round=$r mode=$mode queries=${done_q:-0} qps=${qps:-0} cpu_s=$(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }')" \
      | tee -a "$OUT/results.txt"
  done
done
python3 - "$OUT/results.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    if int(f["queries"]):
        runs.setdefault(f["mode"], []).append(float(f["cpu_s"]) * 1e6 / int(f["queries"]))
udp = statistics.median(runs["udp"]) if runs.get("udp") else None
for mode, us in runs.items():
    median = statistics.median(us)
    ratio = f"{median / udp:.2f}x udp" if udp else ""
    print(f"{mode:4} {median:8.1f} us CPU/query  {ratio}")
PY
echo "raw results in $OUT" >&2
