#!/usr/bin/env bash
# Build rwal-compare, run peerbench's workloads against the physical floors, the peers and rwal,
# interleaved in REPS rounds, and print the target ratios (ratios.py).
#
# usage: benches/compare/run.sh [OUT]      (OUT: where the raw output goes; default
#                                           /tmp/rwal-compare-<UTC time>.txt)
# Every knob is an environment variable (defaults in brackets):
#   REPS [3]            rounds; each round runs every part below for every log
#   PARTS ["phys w1 w2 w3 scale w4"]
#   PEERS ["okaywal raft-engine sqlite"]
#   RWAL_LOGS ["rwal-staged"]   add rwal-mmap / rwal-pwrite to compare the other backends
#   COUNT_W1 [2000]     durable-latency records (peerbench's run_all.sh: 2000)
#   SECONDS_W2 [5]      group-commit seconds per run (run_all.sh: 5)
#   THREADS_W2 ["16 64"]
#   COUNT_W3 [1000000]  append-throughput records (run_all.sh: 1000000)
#   COUNT_SCALE [1000000]  append-threads records (split over the threads)
#   MIB_W4 [256]        recovery log size, 4 KiB records (run_all.sh: 256)
#   W4_COLD [0]         1: also run the cold-cache recovery (not a target)
#   PHYS_ONLY [odirect] peerbench --phys-only sections; `odirect` holds the 4 KiB
#                       O_DIRECT|O_DSYNC floor loop
#   DIR [/tmp/rwal-compare-data]   scratch directory (wiped; must be under /tmp)
#   EXTRA []            more flags for every run, e.g. --spin
#   BUILD [1]           0: do not build, use the existing binary
#   CARGO_TARGET_DIR [/tmp/compare-target]
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/compare-target}
BIN=$CARGO_TARGET_DIR/release/rwal-compare
REPS=${REPS:-3}
PARTS=${PARTS:-"phys w1 w2 w3 scale w4"}
PEERS=${PEERS:-"okaywal raft-engine sqlite"}
RWAL_LOGS=${RWAL_LOGS:-"rwal-staged"}
COUNT_W1=${COUNT_W1:-2000}
SECONDS_W2=${SECONDS_W2:-5}
THREADS_W2=${THREADS_W2:-"16 64"}
COUNT_W3=${COUNT_W3:-1000000}
COUNT_SCALE=${COUNT_SCALE:-1000000}
MIB_W4=${MIB_W4:-256}
W4_COLD=${W4_COLD:-0}
PHYS_ONLY=${PHYS_ONLY:-odirect}
DIR=${DIR:-/tmp/rwal-compare-data}
# Wiped after a failed run: only a directory under /tmp is taken.
case $DIR in
  *..*) echo "DIR must be a directory under /tmp, not $DIR" >&2; exit 1 ;;
  /tmp/?*) ;;
  *) echo "DIR must be a directory under /tmp, not $DIR" >&2; exit 1 ;;
esac
EXTRA=${EXTRA:-}
OUT=${1:-/tmp/rwal-compare-$(date -u +%Y%m%dT%H%M%SZ).txt}

if [ "${BUILD:-1}" != 0 ]; then
  nice -n 10 cargo build --release --manifest-path "$HERE/Cargo.toml" || exit 1
fi
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }

# Rotate a list by N places, so that no log always runs first (or right after the same one).
rotate() { local n=$1; shift; local a=("$@"); local k=${#a[@]}; local i
  for ((i = 0; i < k; i++)); do printf '%s ' "${a[$(((i + n) % k))]}"; done; }

run() {
  echo "# [+$(( $(date +%s) - started ))s] $* $EXTRA"
  # shellcheck disable=SC2086
  "$BIN" "$@" $EXTRA --dir "$DIR" 2>&1
  local rc=$?
  # A run that fails (a panic skips its own clean-up) leaves no scratch data behind.
  [ "$rc" -eq 0 ] || { echo "FAILED rc=$rc $*"; rm -rf "$DIR"; }
}

rev=$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$HERE/../.." status --porcelain -- wal 2>/dev/null | head -c1)
started=$(date +%s)
{
  echo "# rwal-compare $(date -u +%FT%TZ) host=$(uname -n) kernel=$(uname -r) nproc=$(nproc)" \
       "rwal=$rev${dirty:+-dirty} load=$(cut -d' ' -f1-3 /proc/loadavg) reps=$REPS parts=[$PARTS]" \
       "peers=[$PEERS] rwal_logs=[$RWAL_LOGS]"
  for rep in $(seq 1 "$REPS"); do
    r=$((rep - 1))
    for p in $PARTS; do
      case $p in
        phys) run --phys-only "$PHYS_ONLY" --rep "$rep" ;;
        w1) for l in $(rotate $r raw $PEERS $RWAL_LOGS); do
              run --log "$l" --workload durable-latency --size 128 --count "$COUNT_W1" --rep "$rep"
            done ;;
        w2) for t in $THREADS_W2; do for l in $(rotate $r raw-group $PEERS $RWAL_LOGS); do
              run --log "$l" --workload group-commit --threads "$t" --size 128 --seconds "$SECONDS_W2" --rep "$rep"
            done; done ;;
        w3) for l in $(rotate $r raw $PEERS $RWAL_LOGS); do
              run --log "$l" --workload append-throughput --size 128 --count "$COUNT_W3" --rep "$rep"
            done ;;
        scale) for l in $(rotate $r $RWAL_LOGS); do for t in $(rotate $r 1 2); do
                 run --log "$l" --workload append-threads --threads "$t" --size 128 --count "$COUNT_SCALE" --rep "$rep"
               done; done ;;
        w4) for l in $(rotate $r raw $PEERS $RWAL_LOGS); do
              run --log "$l" --workload recovery --size 4096 --mib "$MIB_W4" --rep "$rep"
              [ "$W4_COLD" = 1 ] && run --log "$l" --workload recovery --size 4096 --mib "$MIB_W4" --rep "$rep" --cold
            done ;;
        *) echo "unknown part $p" >&2 ;;
      esac
    done
  done
  echo "# done $(date -u +%FT%TZ) after $(( $(date +%s) - started )) s, load=$(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT"

echo
echo "raw output: $OUT"
python3 "$HERE/ratios.py" "$OUT"
