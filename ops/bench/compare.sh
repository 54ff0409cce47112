#!/usr/bin/env bash
# RiftKV against etcd and Redis with `riftkv bench`, side by side on this machine (loopback
# only): YCSB workloads A, B and C at 16 and 64 clients; RiftKV at dw=0 and dw=2; then an
# open-loop run of each system at 50% of the best throughput it reached. Writes markdown
# tables (absolute figures and ratios to etcd and Redis) to $RESULTS/compare.md and every
# run's JSON beside it. Not part of CI.
#
# Environment:
#   RIFTKV_BIN  riftkv binary to use (default: a release build, made here if missing;
#               the first release build compiles RocksDB: 15 minutes and more on 2 cores)
#   DURATION    seconds per measured run (default 15); 36 runs in all
#   RECORDS     records loaded into each system (default 10000)
#   RESULTS     output directory (default ops/bench/results/<UTC date-time>)
#   BASE_PORT   first port used (default 27700; the next 900 or so must be free)
#
# Bounded: a run gets DURATION + 60 s, and after 15 minutes no new run starts (the tables
# then say which were skipped). Every process started here is stopped on exit, Ctrl-C
# included.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

DURATION=${DURATION:-15}
RECORDS=${RECORDS:-10000}
BASE_PORT=${BASE_PORT:-27700}
RESULTS=${RESULTS:-$ROOT/ops/bench/results/$(date -u +%Y%m%d-%H%M%S)}
BUDGET_SECS=900
WORK=$(mktemp -d /tmp/riftkv-compare.XXXXXX)
PIDS=()

log() { echo "compare: $*" >&2; }
fail() {
    log "$*"
    exit 2
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.2
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v python3 >/dev/null || fail "python3 is required"
command -v curl >/dev/null || fail "curl is required"

# --- the systems' packages
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    [ "$(id -u)" = 0 ] || fail "installing ${need[*]} needs root (or install them first)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- the riftkv binary
if [ -z "${RIFTKV_BIN:-}" ]; then
    source ops/env.sh
    RIFTKV_BIN="$CARGO_TARGET_DIR/release/riftkv"
    if [ ! -x "$RIFTKV_BIN" ]; then
        log "building the release binary (RocksDB takes a while the first time)"
        cargo build --release --workspace --bin riftkv --quiet
    fi
fi
[ -x "$RIFTKV_BIN" ] || fail "no riftkv binary at $RIFTKV_BIN"
mkdir -p "$RESULTS"

# --- ports
RK_BASE=$BASE_PORT                 # riftkv dev: API base+1..3, peer base+101..103
ETCD_CLIENT=$((BASE_PORT + 300))   # etcd members: client +0..2, peer +10..12
REDIS_PORT=$((BASE_PORT + 400))
RK_TARGET="riftkv://127.0.0.1:$((RK_BASE + 1)),127.0.0.1:$((RK_BASE + 2)),127.0.0.1:$((RK_BASE + 3))"
ETCD_TARGET="etcd://127.0.0.1:$ETCD_CLIENT,127.0.0.1:$((ETCD_CLIENT + 1)),127.0.0.1:$((ETCD_CLIENT + 2))"
REDIS_TARGET="redis://127.0.0.1:$REDIS_PORT"

wait_for() { # what, seconds, command...
    local what=$1 secs=$2
    shift 2
    for _ in $(seq 1 $((secs * 4))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    fail "$what did not come up within ${secs}s (logs in $WORK)"
}

# --- RiftKV: 3 server processes under `riftkv dev`
log "starting RiftKV (3 nodes)"
"$RIFTKV_BIN" dev --nodes 3 --base-port "$RK_BASE" --data-dir "$WORK/riftkv" \
    >"$WORK/riftkv-dev.log" 2>&1 &
PIDS+=($!)
rk_settled() {
    local i
    for i in 1 2 3; do
        curl -sf "http://127.0.0.1:$((RK_BASE + i))/v1/admin/status" |
            python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["ring_settled"] and len(s["members"])==3 else 1)' ||
            return 1
    done
}
wait_for "the RiftKV cluster" 120 rk_settled

# --- etcd: 3 members
log "starting etcd (3 members)"
CLUSTER=""
for i in 0 1 2; do
    CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$((ETCD_CLIENT + 10 + i))"
done
for i in 0 1 2; do
    etcd --name "e$i" --data-dir "$WORK/etcd$i" \
        --listen-client-urls "http://127.0.0.1:$((ETCD_CLIENT + i))" \
        --advertise-client-urls "http://127.0.0.1:$((ETCD_CLIENT + i))" \
        --listen-peer-urls "http://127.0.0.1:$((ETCD_CLIENT + 10 + i))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_CLIENT + 10 + i))" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new \
        --initial-cluster-token riftkv-compare >"$WORK/etcd$i.log" 2>&1 &
    PIDS+=($!)
done
etcd_up() {
    local i
    for i in 0 1 2; do
        curl -sf "http://127.0.0.1:$((ETCD_CLIENT + i))/health" | grep -q '"health":"true"' || return 1
    done
}
wait_for "the etcd cluster" 60 etcd_up

# --- Redis: one server, no persistence (its default snapshotting would only add noise)
log "starting Redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --protected-mode yes >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping | grep -q PONG; }
wait_for "Redis" 30 redis_up

START=$SECONDS
SKIPPED=()
# run NAME TARGET [bench flags...]: one measured run into $RESULTS/NAME.json.
run() {
    local name=$1 target=$2
    shift 2
    if [ $((SECONDS - START)) -ge $BUDGET_SECS ]; then
        log "skipping $name: over the ${BUDGET_SECS}s budget"
        SKIPPED+=("$name")
        return 0
    fi
    log "$name"
    local code=0
    timeout --signal=TERM --kill-after=10 $((DURATION + 60)) \
        "$RIFTKV_BIN" bench --target "$target" --records "$RECORDS" --duration "$DURATION" \
        --json "$@" >"$RESULTS/$name.json" 2>"$WORK/$name.err" || code=$?
    if [ "$code" != 0 ] && [ "$code" != 1 ]; then
        log "$name failed (exit $code): $(tail -n 3 "$WORK/$name.err")"
        rm -f "$RESULTS/$name.json"
    fi
}

# Loading is a run of its own (not measured): each system gets the same records once.
for sys in riftkv etcd redis; do
    case $sys in
        riftkv) t=$RK_TARGET ;;
        etcd) t=$ETCD_TARGET ;;
        redis) t=$REDIS_TARGET ;;
    esac
    log "loading $RECORDS records into $sys"
    timeout 600 "$RIFTKV_BIN" bench --target "$t" --records "$RECORDS" --load --workload c \
        --operations 1 --concurrency 32 --json >"$RESULTS/load-$sys.json" 2>"$WORK/load-$sys.err" ||
        fail "loading $sys failed: $(tail -n 3 "$WORK/load-$sys.err")"
done

for w in a b c; do
    for c in 16 64; do
        run "$w-c$c-riftkv-dw0" "$RK_TARGET" --workload "$w" --concurrency "$c" --dw 0
        run "$w-c$c-riftkv-dw2" "$RK_TARGET" --workload "$w" --concurrency "$c" --dw 2
        run "$w-c$c-etcd" "$ETCD_TARGET" --workload "$w" --concurrency "$c"
        run "$w-c$c-redis" "$REDIS_TARGET" --workload "$w" --concurrency "$c"
    done
done

# Open loop at half of each system's best closed-loop throughput on that workload.
best() { # name prefix pattern: the best throughput among the closed runs, or nothing
    python3 - "$RESULTS" "$1" <<'EOF'
import glob, json, sys
best = 0.0
for p in glob.glob(f"{sys.argv[1]}/{sys.argv[2]}"):
    try:
        best = max(best, json.load(open(p))["throughput"])
    except (OSError, ValueError, KeyError):
        pass
print(f"{best / 2:.0f}" if best > 0 else "")
EOF
}
for w in a b c; do
    for sys in riftkv-dw0 riftkv-dw2 etcd redis; do
        rate=$(best "$w-c*-$sys.json")
        [ -n "$rate" ] || continue
        case $sys in
            riftkv-dw0) set -- "$RK_TARGET" --dw 0 ;;
            riftkv-dw2) set -- "$RK_TARGET" --dw 2 ;;
            etcd) set -- "$ETCD_TARGET" ;;
            redis) set -- "$REDIS_TARGET" ;;
        esac
        run "$w-open-$sys" "$1" --workload "$w" --concurrency 64 --target-rate "$rate" "${@:2}"
    done
done

python3 - "$RESULTS" "$DURATION" "$RECORDS" "${SKIPPED[*]:-}" >"$RESULTS/compare.md" <<'EOF'
import json, os, sys
res, duration, records, skipped = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
systems = ["riftkv-dw0", "riftkv-dw2", "etcd", "redis"]
names = {"riftkv-dw0": "RiftKV dw=0", "riftkv-dw2": "RiftKV dw=2", "etcd": "etcd", "redis": "Redis"}

def load(name):
    try:
        return json.load(open(os.path.join(res, name + ".json")))
    except (OSError, ValueError):
        return None

def p(doc, q):
    # Worst percentile over the workload's operations.
    return max((o[q] for o in doc["ops"].values() if o["count"]), default=0.0)

def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"

print(f"# RiftKV, etcd and Redis under YCSB (riftkv bench)\n")
print(f"{records} records of 1000 bytes, {duration} s per run, all on one machine over loopback; "
      "RiftKV 3 nodes (`riftkv dev`), etcd 3 members, Redis 1 server without persistence. "
      "Latency is the worst of the workload's operations, in ms. Ratios are RiftKV / other: "
      "throughput above 1 and latency below 1 favour RiftKV.\n")
for w in "abc":
    print(f"## Workload {w.upper()}\n")
    print("| run | system | ops/s | p50 | p99 | p99.9 | errors | ops/s ÷ etcd | ops/s ÷ Redis | p99 ÷ etcd | p99 ÷ Redis |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in ["c16", "c64", "open"]:
        docs = {s: load(f"{w}-{run}-{s}") for s in systems}
        etcd, redis = docs["etcd"], docs["redis"]
        for s in systems:
            d = docs[s]
            if d is None:
                print(f"| {run} | {names[s]} | not run | | | | | | | | |")
                continue
            label = run if run != "open" else f"open @ {d['target_rate']:.0f}/s"
            cells = [label, names[s], f"{d['throughput']:.0f}", f"{p(d, 'p50_ms'):.2f}",
                     f"{p(d, 'p99_ms'):.2f}", f"{p(d, 'p999_ms'):.2f}", str(d["errors"])]
            if s.startswith("riftkv"):
                cells += [ratio(d["throughput"], etcd and etcd["throughput"]),
                          ratio(d["throughput"], redis and redis["throughput"]),
                          ratio(p(d, "p99_ms"), etcd and p(etcd, "p99_ms")),
                          ratio(p(d, "p99_ms"), redis and p(redis, "p99_ms"))]
            else:
                cells += ["", "", "", ""]
            print("| " + " | ".join(cells) + " |")
    print()
print("Open-loop runs send at half the best closed-loop throughput of the same system and "
      "measure latency from each operation's intended start (docs/bench.md).")
if skipped.strip():
    print(f"\nSkipped (time budget): {skipped}")
EOF
log "tables in $RESULTS/compare.md"
cat "$RESULTS/compare.md"
