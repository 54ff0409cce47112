#!/usr/bin/env bash
# Overload at ten times the sustainable rate (docs/security.md, "Limits"): one node with a
# small in-flight bound is measured at its sustainable rate (closed loop, YCSB-A), then offered
# OVERLOAD_FACTOR (10) times that rate open loop for OVERLOAD_SECS (60) seconds, then measured
# again at once. It checks, and prints:
# - every answer under overload is a success or `503 overloaded` (the bench counts both
#   `overloaded` and `quorum_unavailable` as `unavailable`; on one node with n=1 only
#   `overloaded` can occur) — no timeout, no broken connection, no other error;
# - the node's peak RSS (sampled every 200 ms from /proc) stays under RSS_BOUND_MIB (256);
# - right after the load stops, a closed-loop run has no error and reaches at least
#   RECOVERY_SHARE (0.7) of the sustainable rate measured before.
# Exits 1 when a check fails. Bounded (about 2 minutes); the node and its data are removed on
# exit, failed or not. A load measurement, not a timed test: it is not part of ops/test.sh
# (tests/overload.rs checks the same properties in CI with a closed-loop flood).
#
#   ./ops/bench/overload.sh                      # release build (built if missing)
#   RIFTKV_BIN=target/debug/riftkv ./ops/bench/overload.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

FACTOR=${OVERLOAD_FACTOR:-10}
SECS=${OVERLOAD_SECS:-60}
RSS_BOUND_MIB=${RSS_BOUND_MIB:-256}
RECOVERY_SHARE=${RECOVERY_SHARE:-0.7}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-32}
PORT=${PORT:-27801}
RESULTS=${RESULTS:-$HOME/.cache/riftkv/overload-results}

if [[ -z "${RIFTKV_BIN:-}" ]]; then
    source ops/env.sh
    RIFTKV_BIN="$CARGO_TARGET_DIR/release/riftkv"
    if [[ ! -x "$RIFTKV_BIN" ]]; then
        echo "overload: building the release binary (RocksDB takes a while the first time)" >&2
        cargo build --release --workspace --bin riftkv --quiet
    fi
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/riftkv-overload.XXXXXX")
PID=""
SAMPLER=""
cleanup() {
    [[ -n "$SAMPLER" ]] && kill "$SAMPLER" 2>/dev/null || true
    if [[ -n "$PID" ]]; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$RESULTS"

"$RIFTKV_BIN" server --node-id n1 --api-addr "127.0.0.1:$PORT" --peer-addr "127.0.0.1:$((PORT + 100))" \
    --data-dir "$WORK/data" --ring-size 16 --n-val 1 --max-in-flight "$MAX_IN_FLIGHT" \
    >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null || { tail "$WORK/server.log" >&2; exit 1; }

BENCH=("$RIFTKV_BIN" bench --target "riftkv://127.0.0.1:$PORT" --workload a --records 1000 --json)
echo "== load and sustainable rate (closed loop, 16 clients, 15 s)"
"${BENCH[@]}" --load --concurrency 16 --duration 15 >"$RESULTS/before.json"
RATE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput"])' "$RESULTS/before.json")
OFFER=$(python3 -c "print(int(float('$RATE') * $FACTOR))")
echo "   sustainable: $RATE ops/s; offering $OFFER ops/s for ${SECS}s"

# RSS sampler: the peak, in KiB, written when it rises.
(
    peak=0
    while kill -0 "$PID" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
        if [[ -n "$rss" && "$rss" -gt "$peak" ]]; then peak=$rss; echo "$peak" >"$WORK/peak"; fi
        sleep 0.2
    done
) &
SAMPLER=$!

echo "== overload (open loop at ${FACTOR}x)"
# Most operations are refused by design, so the bench's "too many errors" exit is expected
# here; the checks below read its JSON.
# At most 256 in flight: under the per-address connection bound (1024), past which connections
# are refused at accept by design (docs/security.md).
"${BENCH[@]}" --target-rate "$OFFER" --concurrency 256 --duration "$SECS" >"$RESULTS/overload.json" || true
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=""
echo "== recovery (closed loop, 16 clients, 10 s, at once)"
"${BENCH[@]}" --concurrency 16 --duration 10 >"$RESULTS/after.json"

python3 - "$RESULTS" "$(cat "$WORK/peak" 2>/dev/null || echo 0)" "$RSS_BOUND_MIB" "$RECOVERY_SHARE" "$FACTOR" <<'EOF'
import json, sys
results, peak_kib, bound, share, factor = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
load = lambda n: json.load(open(f"{results}/{n}.json"))
before, over, after = load("before"), load("overload"), load("after")
errs = dict(over["errors_by_kind"])
missed = errs.pop("missed", 0)
answered = over["operations"] - missed
refused = errs.pop("unavailable", 0)
other = sum(errs.values())
peak_mib = peak_kib / 1024
print(f"sustainable rate            {before['throughput']:10.0f} ops/s")
print(f"offered ({factor}x)               {over.get('target_rate') or 0:10.0f} ops/s")
print(f"answered under overload     {answered:10d} ({over['throughput']:.0f} ops/s incl. refusals)")
print(f"  of which 503 overloaded   {refused:10d}")
print(f"  other errors              {other:10d} {errs if other else ''}")
print(f"  not sent (client behind)  {missed:10d}")
print(f"peak RSS                    {peak_mib:10.1f} MiB (bound {bound:.0f} MiB)")
print(f"after: throughput           {after['throughput']:10.0f} ops/s ({after['throughput'] / before['throughput']:.2f}x of before), errors {after['errors']}")
ok = other == 0 and peak_mib < bound and after["errors"] == 0 and after["throughput"] >= share * before["throughput"]
print("overload: " + ("ok" if ok else "FAILED"))
sys.exit(0 if ok else 1)
EOF
