#!/usr/bin/env bash
# Idle I/O: what a quiet cluster reads. Starts a 3-node cluster on loopback, loads RECORDS
# keys with `riftkv bench --load` (no deletes), lets the ring settle, then stays idle for
# IDLE_SECS (after a restart, so the data sits in files) and reports per node, per minute of idleness:
# - read_bytes (bytes fetched from the block device) and rchar (bytes returned by read
#   calls, page cache included) from /proc/PID/io, also as a fraction of the node's data
#   directory size;
# - CPU seconds (user + system, /proc/PID/stat).
# The target is under 1% of the data read per minute.
#
# With RIFTKV_BIN_BEFORE set, the same measurement runs for that binary too, alternating
# before/after ROUNDS times in one run, so both see the same machine; the figures of one run
# are compared as ratios. Bounded (about 2 * ROUNDS * (load + IDLE_SECS)); every node is
# stopped and every data dir removed on exit, failed or not. Loopback only.
#
#   ./ops/bench/idle-io.sh                                  # release build (built if missing)
#   RECORDS=100000 IDLE_SECS=180 RIFTKV_BIN_BEFORE=/tmp/riftkv-old ./ops/bench/idle-io.sh
#   RIFTKV_AAE_INTERVAL_MS=500 WARM_SECS=60 ./ops/bench/idle-io.sh   # steady state, AAE busy
set -euo pipefail
cd "$(dirname "$0")/../.."

RECORDS=${RECORDS:-1000000}
IDLE_SECS=${IDLE_SECS:-180}
# Idle seconds before the measured window opens: long enough for anti-entropy's first round
# over every (partition, peer) after the restart, which scans each partition once, the
# window measures the steady state (see BENCHMARKS.md).
WARM_SECS=${WARM_SECS:-0}
SETTLE_SECS=${SETTLE_SECS:-20}
ROUNDS=${ROUNDS:-1}
VALUE_SIZE=${VALUE_SIZE:-100}
RESULTS=${RESULTS:-$HOME/.cache/riftkv/idle-io-results}

if [[ -z "${RIFTKV_BIN:-}" ]]; then
    source ops/env.sh
    cargo build --release --bin riftkv --quiet
    RIFTKV_BIN="$CARGO_TARGET_DIR/release/riftkv"
fi
BINS=("after=$RIFTKV_BIN")
[[ -n "${RIFTKV_BIN_BEFORE:-}" ]] && BINS=("before=$RIFTKV_BIN_BEFORE" "${BINS[@]}")
for b in "${BINS[@]}"; do
    [[ -x "${b#*=}" ]] || { echo "idle-io: no binary at ${b#*=}" >&2; exit 2; }
done

source ops/lib/cluster.sh
rk_tmp idle-io
trap 'rk_cleanup "idle-io"' EXIT
# A stop by signal also runs the cleanup (bash runs EXIT traps only on a normal exit).
trap 'exit 130' INT TERM
mkdir -p "$RESULTS"
CLK_TCK=$(getconf CLK_TCK)

# Prints "read_bytes rchar cpu_ticks" of one process.
sample() {
    local pid=$1
    local rb rc ticks
    rb=$(awk '/^read_bytes:/ {print $2}' "/proc/$pid/io")
    rc=$(awk '/^rchar:/ {print $2}' "/proc/$pid/io")
    # Fields 14 and 15 (utime, stime); the command name (field 2) holds no spaces here.
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    echo "$rb $rc $ticks"
}

stop_nodes() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

# Starts nodes n1..n3 of binary $2 over data dirs under $3 and waits until the ring is settled.
start_nodes() {
    local label=$1 bin=$2 dir=$3 k
    for k in 1 2 3; do
        local seeds=()
        [[ $k -gt 1 ]] && seeds=(--seeds "127.0.0.1:$((BASE + 101))")
        "$bin" server --node-id "n$k" --api-addr "127.0.0.1:$((BASE + k))" \
            --peer-addr "127.0.0.1:$((BASE + 100 + k))" --data-dir "$dir/d$k" \
            "${seeds[@]}" >"$dir/n$k.log" 2>&1 &
        PIDS+=($!)
    done
    local settled=0
    for _ in $(seq 1 300); do
        if curl -sf -m 2 "http://127.0.0.1:$((BASE + 1))/v1/admin/status" \
            | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["ring_settled"] else 1)' \
            2>/dev/null; then
            settled=1
            break
        fi
        sleep 0.5
    done
    [[ $settled -eq 1 ]] || { echo "idle-io: the $label cluster did not settle" >&2; exit 1; }
}

# One measurement of binary $2 labelled $1; appends one JSON line per node to $RESULTS/runs.jsonl.
measure() {
    local label=$1 bin=$2 k
    rk_free_ports 3
    local dir="$TMP/$label"
    rm -rf "$dir"
    mkdir -p "$dir"
    export RIFTKV_CLUSTER_SECRET="idle-$RANDOM$RANDOM"
    start_nodes "$label" "$bin" "$dir"
    local targets="127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2)),127.0.0.1:$((BASE + 3))"
    echo "== $label: loading $RECORDS keys"
    "$bin" bench --target "riftkv://$targets" --workload c --records "$RECORDS" \
        --value-size "$VALUE_SIZE" --load --operations 1 --concurrency 32 --json \
        >"$dir/load.json"
    # A clean stop flushes the memtables, so the idle node reads from its files (as a node
    # does once its data outgrows the write buffers) rather than from memory.
    stop_nodes
    start_nodes "$label" "$bin" "$dir"
    sleep "$SETTLE_SECS"
    if [[ $WARM_SECS -gt 0 ]]; then
        echo "== $label: idle for ${WARM_SECS}s before measuring"
        sleep "$WARM_SECS"
    fi
    local starts=()
    for k in 0 1 2; do starts+=("$(sample "${PIDS[$k]}")"); done
    echo "== $label: idle for ${IDLE_SECS}s"
    sleep "$IDLE_SECS"
    for k in 0 1 2; do
        local end size
        end=$(sample "${PIDS[$k]}")
        size=$(du -sb "$dir/d$((k + 1))" | cut -f1)
        python3 - "$label" "n$((k + 1))" "${starts[$k]}" "$end" "$size" "$IDLE_SECS" "$CLK_TCK" \
            "$RECORDS" >>"$RESULTS/runs.jsonl" <<'EOF'
import json, sys
label, node, start, end, size, secs, tck, records = sys.argv[1:]
s = [int(x) for x in start.split()]
e = [int(x) for x in end.split()]
mins = float(secs) / 60
size = int(size)
print(json.dumps({
    "binary": label, "node": node, "records": int(records), "data_bytes": size,
    "read_bytes_per_min": (e[0] - s[0]) / mins, "rchar_per_min": (e[1] - s[1]) / mins,
    "read_fraction_per_min": (e[0] - s[0]) / mins / size,
    "rchar_fraction_per_min": (e[1] - s[1]) / mins / size,
    "cpu_s_per_min": (e[2] - s[2]) / int(tck) / mins,
}))
EOF
    done
    stop_nodes
    rm -rf "$dir"
}

: >"$RESULTS/runs.jsonl"
for _ in $(seq 1 "$ROUNDS"); do
    for b in "${BINS[@]}"; do measure "${b%%=*}" "${b#*=}"; done
done

python3 - "$RESULTS/runs.jsonl" <<'EOF'
import json, sys
from collections import defaultdict
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'binary':8} {'node':4} {'data MiB':>9} {'read_bytes/min':>15} {'of data':>8} "
      f"{'rchar/min':>12} {'of data':>8} {'CPU s/min':>9}")
for r in runs:
    print(f"{r['binary']:8} {r['node']:4} {r['data_bytes'] / 2**20:9.1f} "
          f"{r['read_bytes_per_min'] / 2**20:11.2f} MiB {100 * r['read_fraction_per_min']:7.2f}% "
          f"{r['rchar_per_min'] / 2**20:8.2f} MiB {100 * r['rchar_fraction_per_min']:7.2f}% "
          f"{r['cpu_s_per_min']:9.2f}")
mean = defaultdict(lambda: defaultdict(list))
for r in runs:
    for f in ("read_fraction_per_min", "rchar_fraction_per_min", "cpu_s_per_min"):
        mean[r["binary"]][f].append(r[f])
avg = {b: {f: sum(v) / len(v) for f, v in fs.items()} for b, fs in mean.items()}
for b, fs in avg.items():
    print(f"{b}: mean per node and minute: read_bytes {100 * fs['read_fraction_per_min']:.3f}% "
          f"of data, rchar {100 * fs['rchar_fraction_per_min']:.3f}% of data, "
          f"CPU {fs['cpu_s_per_min']:.2f} s")
if "before" in avg and "after" in avg:
    for f in ("rchar_fraction_per_min", "cpu_s_per_min"):
        a, b = avg["after"][f], avg["before"][f]
        print(f"after/before {f}: {a / b:.3f}" if b else f"after/before {f}: n/a")
EOF
