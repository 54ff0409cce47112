#!/usr/bin/env bash
# Failure detection under load: a 3-node cluster on loopback with a long gossip interval
# (GOSSIP_MS, default 6000) under YCSB-A, for two binaries alternated in one run (BEFORE,
# AFTER), ROUNDS times each, so both meet the same machine noise. Each run starts a fresh
# cluster, waits until it is settled, loads RECORDS records, runs DURATION seconds of
# workload A at CONCURRENCY clients, and reports operations, errors, and answers `503`
# (the bench's kind `unavailable`: quorum unavailable or overloaded). Not part of CI.
#
#   BEFORE=/path/to/old/riftkv ./ops/bench/detector.sh      # AFTER: the release build
#
# Bounded: a cluster that does not settle within 180 s fails the run; every process started
# here is stopped on exit, Ctrl-C included, and the data is removed.
set -euo pipefail
cd "$(dirname "$0")/../.."

BEFORE=${BEFORE:?set BEFORE to the riftkv binary to compare against}
if [[ -z "${AFTER:-}" ]]; then
    source ops/env.sh
    AFTER="$CARGO_TARGET_DIR/release/riftkv"
fi
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-30}
RECORDS=${RECORDS:-1000}
CONCURRENCY=${CONCURRENCY:-16}
GOSSIP_MS=${GOSSIP_MS:-6000}
PORT=${PORT:-28701}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/riftkv-detector.XXXXXX")
PIDS=()

stop_nodes() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_nodes
    rm -rf "$WORK"
}
trap cleanup EXIT

settled() {
    local i
    for i in 0 1 2; do
        curl -sf "http://127.0.0.1:$((PORT + i))/v1/admin/status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["ring_settled"] and len(s["members"]) == 3 else 1)' 2>/dev/null || return 1
    done
}

# One run: writes "operations errors unavailable" to $WORK/NAME.result.
run_once() {
    local bin=$1 name=$2 i seeds=""
    for i in 0 1 2; do
        "$bin" server --node-id "n$i" --api-addr "127.0.0.1:$((PORT + i))" \
            --peer-addr "127.0.0.1:$((PORT + 100 + i))" --data-dir "$WORK/$name/n$i" \
            --ring-size 32 --gossip-interval-ms "$GOSSIP_MS" $seeds \
            >"$WORK/$name-n$i.log" 2>&1 &
        PIDS+=($!)
        seeds="--seeds 127.0.0.1:$((PORT + 100))"
    done
    local deadline=$((SECONDS + 180))
    until settled; do
        if ((SECONDS > deadline)); then
            echo "detector: $name did not settle within 180 s" >&2
            tail -5 "$WORK/$name-n0.log" >&2
            exit 1
        fi
        sleep 1
    done
    local target="riftkv://127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))"
    "$bin" bench --target "$target" --workload a --records "$RECORDS" --load \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --json \
        >"$WORK/$name.json" 2>"$WORK/$name.err" || true
    stop_nodes
    python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["operations"], s["errors"], s["errors_by_kind"].get("unavailable", 0))' \
        "$WORK/$name.json" >"$WORK/$name.result"
}

echo "| run | binary | operations | errors | 503 answers |"
echo "|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
    for which in before after; do
        if [[ $which == before ]]; then bin=$BEFORE; else bin=$AFTER; fi
        run_once "$bin" "$which-$round"
        read -r ops errors unavailable <"$WORK/$which-$round.result"
        echo "| $round | $which | $ops | $errors | $unavailable |"
    done
done
