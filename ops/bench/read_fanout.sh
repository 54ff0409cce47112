#!/usr/bin/env bash
# What a read costs at r=1 and r=2: two riftkv binaries (before and after a change to the read
# path) alternated in one run, each on a fresh 3-node `riftkv dev` cluster on loopback with
# 10,000 records. Per round and binary: `riftkv bench` workload C (read only) at r=1 and r=2
# with 64 clients, then `wrk` (64 connections) against node 1's `GET /health` and its GET of
# random keys at r=2, for the ratio of the two. Prints a markdown table. Not part of CI.
#
# Environment:
#   BEFORE, AFTER  the two riftkv binaries (required)
#   DURATION       seconds per measured run (default 10)
#   ROUNDS         rounds of before/after (default 2)
#   BASE_PORT      first port (default 28700; the next 200 must be free)
#
# Bounded: every run has a timeout; every process started here is stopped on exit.
set -euo pipefail
: "${BEFORE:?set BEFORE to the pre-change riftkv binary}"
: "${AFTER:?set AFTER to the post-change riftkv binary}"
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
BASE_PORT=${BASE_PORT:-28700}
RECORDS=10000
WORK=$(mktemp -d /tmp/riftkv-read-fanout.XXXXXX)
DEV_PID=

log() { echo "read_fanout: $*" >&2; }

stop_cluster() {
    [ -n "$DEV_PID" ] || return 0
    kill -TERM "$DEV_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$DEV_PID" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$DEV_PID" 2>/dev/null || true
    wait "$DEV_PID" 2>/dev/null || true
    DEV_PID=
}
cleanup() {
    stop_cluster
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v wrk >/dev/null || { log "wrk is required"; exit 2; }
command -v python3 >/dev/null || { log "python3 is required"; exit 2; }

start_cluster() { # $1 binary
    rm -rf "$WORK/dev"
    "$1" dev --nodes 3 --base-port "$BASE_PORT" --data-dir "$WORK/dev" \
        >"$WORK/dev.log" 2>&1 &
    DEV_PID=$!
    for _ in $(seq 1 120); do
        # Every node must have the committed ring: one settled node says nothing about a
        # node still on the ring version where the others were joining.
        local ready=1
        for k in 1 2 3; do
            curl -sf "http://127.0.0.1:$((BASE_PORT + k))/v1/admin/status" 2>/dev/null |
                python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["ring_settled"] and len(s["members"]) == 3 else 1)' \
                    2>/dev/null || ready=0
        done
        [ "$ready" = 1 ] && return 0
        sleep 0.5
    done
    log "cluster did not become ready"
    tail -20 "$WORK/dev.log" >&2
    exit 2
}

TARGET="riftkv://127.0.0.1:$((BASE_PORT + 1)),127.0.0.1:$((BASE_PORT + 2)),127.0.0.1:$((BASE_PORT + 3))"

bench() { # $1 binary, rest: bench flags; prints throughput
    timeout $((DURATION + 120)) "$1" bench --target "$TARGET" --records "$RECORDS" \
        --concurrency 64 --json "${@:2}" >"$WORK/bench.json"
    python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["throughput"]))' \
        "$WORK/bench.json"
}

cat >"$WORK/keys.lua" <<EOF
math.randomseed(os.time())
request = function()
  local path = string.format("/v1/kv/bench/user%012d?r=2", math.random(0, $((RECORDS - 1))))
  return wrk.format("GET", path)
end
EOF

wrk_rps() { # $@: wrk args after the URL; prints requests/s
    timeout $((DURATION + 30)) wrk -t2 -c64 -d"${DURATION}s" "$@" |
        awk '/^Requests\/sec/ {printf "%d\n", $2}'
}

echo "| round | binary | C r=1 ops/s | C r=2 ops/s | /health req/s (wrk) | GET r=2 req/s (wrk) | GET r=2 / health |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
    for which in before after; do
        bin=$BEFORE
        [ "$which" = after ] && bin=$AFTER
        start_cluster "$bin"
        timeout 300 "$bin" bench --target "$TARGET" --records "$RECORDS" --load \
            --workload c --operations 1 --json >/dev/null
        r1=$(bench "$bin" --workload c --r 1 --duration "$DURATION")
        r2=$(bench "$bin" --workload c --r 2 --duration "$DURATION")
        health=$(wrk_rps "http://127.0.0.1:$((BASE_PORT + 1))/health")
        get2=$(wrk_rps -s "$WORK/keys.lua" "http://127.0.0.1:$((BASE_PORT + 1))")
        ratio=$(python3 -c "print(f'{$get2 / $health:.2f}')")
        echo "| $round | $which | $r1 | $r2 | $health | $get2 | $ratio |"
        stop_cluster
    done
done
