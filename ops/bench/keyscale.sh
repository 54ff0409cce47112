#!/usr/bin/env bash
# Key-scale figures (BENCHMARKS.md, "Storage at key scale"): for each data-set size, a fresh
# 3-node cluster (`riftkv dev`, loopback only) is loaded with `riftkv bench --load` (1 KiB
# values, n=3, r=w=2 by default), then runs YCSB-A closed loop for KEYSCALE_SECS. Per run it
# prints one line: records, load time, ops/s, read and update p99, RSS now and peak (VmHWM) per
# node from /proc, and disk per node (`du` of each data dir) while serving and after the clean
# stop (a stop flushes every memtable). Live data is records x value size per node (every node
# holds every key with three nodes and n=3).
#
# With KEYSCALE_BINS="label=path,label=path" it alternates the binaries at each size, in one
# run, so a before/after comparison sees the same machine noise. Bounded: every bench run has a
# duration, the cluster is stopped and its data removed on exit, failed or not.
#
#   ./ops/bench/keyscale.sh                                   # release build (built if missing)
#   KEYSCALE_SIZES="10000 100000" KEYSCALE_SECS=20 ./ops/bench/keyscale.sh
#   KEYSCALE_BINS="before=/tmp/riftkv-old,after=target/release/riftkv" ./ops/bench/keyscale.sh
#   KEYSCALE_PERF=1 ./ops/bench/keyscale.sh   # also `perf record -g` the nodes during each run
#   KEYSCALE_SETTLE=0 ./ops/bench/keyscale.sh  # run right after the load, compaction debt unpaid
#
# By default each run starts once every node reports no compaction pending or running
# (`riftkv_storage_pending_compaction_bytes`, `riftkv_storage_running_compactions`; at most
# KEYSCALE_SETTLE_MAX seconds): a load writes the whole data set in a burst, and the
# compaction it leaves behind would otherwise be measured as the cost of the data set's size.
# The wait is printed as settle_s.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES=${KEYSCALE_SIZES:-"10000 100000 300000 1000000"}
SECS=${KEYSCALE_SECS:-30}
VALUE=${KEYSCALE_VALUE_SIZE:-1024}
CONC=${KEYSCALE_CONCURRENCY:-16}
PORT=${KEYSCALE_BASE_PORT:-27900}
RESULTS=${RESULTS:-$HOME/.cache/riftkv/keyscale-results}
SETTLE=${KEYSCALE_SETTLE:-1}
SETTLE_MAX=${KEYSCALE_SETTLE_MAX:-600}

if [[ -z "${KEYSCALE_BINS:-}" ]]; then
    if [[ -z "${RIFTKV_BIN:-}" ]]; then
        source ops/env.sh
        RIFTKV_BIN="$CARGO_TARGET_DIR/release/riftkv"
        echo "keyscale: building the release binary (RocksDB takes a while the first time)" >&2
        cargo build --release --bin riftkv --quiet
    fi
    KEYSCALE_BINS="riftkv=$RIFTKV_BIN"
fi
IFS=',' read -r -a BINS <<<"$KEYSCALE_BINS"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/riftkv-keyscale.XXXXXX")
DEV=""
PERF=""
stop_cluster() {
    if [[ -n "$DEV" ]]; then
        # SIGINT: the supervisor stops every node cleanly (each flushes its storage).
        kill -INT "$DEV" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$DEV" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$DEV" 2>/dev/null || true
        DEV=""
    fi
}
cleanup() {
    [[ -n "$PERF" ]] && kill "$PERF" 2>/dev/null || true
    stop_cluster
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$RESULTS"

kib() { awk '/^'"$1"':/ {print $2}' "/proc/$2/status" 2>/dev/null || echo 0; }
disk_mib() { du -sm "$1" | cut -f1; }
# Compaction work a node reports: pending bytes plus running compactions (0 = settled).
compaction_owed() {
    curl -sf -m 5 "http://127.0.0.1:$1/metrics" 2>/dev/null | awk '
        /^riftkv_storage_pending_compaction_bytes / {s += $2}
        /^riftkv_storage_running_compactions / {s += $2}
        END {print s + 0}'
}
# Waits (at most SETTLE_MAX s) until no node owes compaction; prints the seconds waited.
settle_compaction() {
    local start owed k
    start=$(date +%s)
    while (($(date +%s) - start < SETTLE_MAX)); do
        owed=0
        for k in 1 2 3; do
            owed=$((owed + $(compaction_owed "$((PORT + k))")))
        done
        ((owed == 0)) && break
        sleep 1
    done
    echo $(($(date +%s) - start))
}

printf '%-8s %9s %8s %8s %9s %8s %8s  %-26s %-26s %-20s %-20s\n' bin records load_s settle_s \
    ops_s rd_p99 upd_p99 "rss_mib(now)" "rss_mib(peak)" disk_mib_serving disk_mib_stopped
for n in $SIZES; do
    for entry in "${BINS[@]}"; do
        label=${entry%%=*}
        bin=${entry#*=}
        data="$WORK/$label-$n"
        "$bin" dev --nodes 3 --base-port "$PORT" --data-dir "$data" >"$data.log" 2>&1 &
        DEV=$!
        for _ in $(seq 1 300); do
            ready=0
            for k in 1 2 3; do
                curl -sf "http://127.0.0.1:$((PORT + k))/v1/admin/status" 2>/dev/null |
                    grep -q '"ring_settled":true' && ready=$((ready + 1))
            done
            [[ $ready -eq 3 ]] && break
            sleep 0.2
        done
        [[ $ready -eq 3 ]] || { tail "$data.log" >&2; exit 1; }
        pids=$(pgrep -P "$DEV" | tr '\n' ' ')
        target="riftkv://127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2)),127.0.0.1:$((PORT + 3))"
        bench=("$bin" bench --target "$target" --workload a --records "$n" --value-size "$VALUE"
            --concurrency "$CONC" --r 2 --w 2 --json)
        start=$(date +%s.%N)
        "${bench[@]}" --load --duration 1 >/dev/null
        wall=$(python3 -c "import time; print(f'{time.time() - $start - 1:.0f}')")
        settled=-
        [[ $SETTLE == 1 ]] && settled=$(settle_compaction)
        if [[ -n "${KEYSCALE_PERF:-}" ]]; then
            perf record -F 99 -g -o "$RESULTS/$label-$n.perf" -p "$(echo $pids | tr ' ' ',')" \
                -- sleep "$((SECS - 2))" >/dev/null 2>&1 &
            PERF=$!
        fi
        "${bench[@]}" --duration "$SECS" >"$RESULTS/$label-$n.json"
        if [[ -n "$PERF" ]]; then wait "$PERF" || true; PERF=""; fi
        rss_now="" rss_peak="" disk_serving=""
        for p in $pids; do
            rss_now+="$(( $(kib VmRSS "$p") / 1024 )) "
            rss_peak+="$(( $(kib VmHWM "$p") / 1024 )) "
        done
        for k in 1 2 3; do disk_serving+="$(disk_mib "$data/node$k") "; done
        stop_cluster
        disk_stopped=""
        for k in 1 2 3; do disk_stopped+="$(disk_mib "$data/node$k") "; done
        python3 - "$RESULTS/$label-$n.json" "$label" "$n" "$wall" "$settled" "$rss_now" \
            "$rss_peak" "$disk_serving" "$disk_stopped" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
label, n, wall, settled, now, peak, serving, stopped = sys.argv[2:10]
p99 = lambda op: r["ops"].get(op, {}).get("p99_ms", float("nan"))
print(f"{label:8} {int(n):9d} {wall:>8} {settled:>8} {r['throughput']:9.0f} {p99('read'):8.2f} "
      f"{p99('update'):8.2f}  {now:26} {peak:26} {serving:20} {stopped:20}")
EOF
        rm -rf "$data"
    done
done
