#!/usr/bin/env bash
# Observability test against a real Prometheus: starts a 3-node RiftKV cluster on 127.0.0.1
# and a Prometheus (Debian's package) scraping it every second, drives traffic (writes, reads,
# deletes, siblings, a SIGKILLed node, sloppy writes, strict-quorum refusals, hint delivery and
# read repair after the restart), then checks through Prometheus's HTTP API that every panel of
# ops/grafana/riftkv.json has data, every rule of ops/prometheus/alerts.yml loads and
# evaluates, and RiftKVNodeUnreachable fires for the killed node. Also checks the JSON logs:
# a client request id is followed onto the replicas, and no value or secret is logged.
#
# Prometheus runs with copies of the repository files: ports moved to the test cluster,
# scrape and rule evaluation every 1s, and every alert's `for:` shortened to 2s so the test
# sees alerts fire within seconds. The real `for:` durations stay in the repository file.
#
# Usage: ops/observability-test.sh        (about a minute; exits non-zero on any failure)
# Env:   RIFTKV_OBS_BASE_PORT (default 27700): node k uses API port BASE+k, peer BASE+100+k.
set -euo pipefail
# The whole run is bounded: past the limit the script gets SIGTERM and its trap cleans up.
if [ -z "${RIFTKV_OBS_BOUNDED:-}" ]; then
    RIFTKV_OBS_BOUNDED=1 exec timeout --foreground -k 15 240 "$0" "$@"
fi
cd "$(dirname "$0")/.."
ROOT=$PWD

BASE=${RIFTKV_OBS_BASE_PORT:-27700}
NODES=3
KILLED=2
TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/riftkv/target}
BIN="$TARGET_DIR/debug/riftkv"
CHECK=(python3 "$ROOT/ops/observability/obscheck.py")
STARTED_AT=$SECONDS

fail() {
    echo "observability-test: FAIL: $*" >&2
    exit 1
}
step() { echo "== [$((SECONDS - STARTED_AT))s] $*"; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/riftkv-obs.XXXXXX")
declare -A NODE_PID=()
PROM_PID=""
POLICY_RC=""

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    [ -n "$PROM_PID" ] && stop_pid "$PROM_PID"
    for k in "${!NODE_PID[@]}"; do
        stop_pid "${NODE_PID[$k]}"
    done
    [ -n "$POLICY_RC" ] && rm -f "$POLICY_RC"
    if [ "$rc" -ne 0 ] && [ -d "$TMP" ]; then
        echo "---- last log lines (kept nowhere after exit) ----" >&2
        for f in "$TMP"/node*.log "$TMP"/prometheus.log; do
            [ -f "$f" ] || continue
            echo "-- $f" >&2
            tail -n 12 "$f" >&2
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "observability-test: FAIL: interrupted or over the time limit" >&2; exit 130' INT TERM

# ---------------------------------------------------------------- prerequisites
step "prerequisites"
command -v python3 >/dev/null || fail "python3 is required"
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    echo "installing Debian's prometheus package (its service is not started)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    # Keep apt from starting the packaged service: this test runs its own Prometheus.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        POLICY_RC=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY_RC" >/dev/null
        $SUDO chmod +x "$POLICY_RC"
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null \
        || fail "apt-get install prometheus failed"
    if [ -n "$POLICY_RC" ]; then
        $SUDO rm -f "$POLICY_RC"
        POLICY_RC=""
    fi
fi
if [ ! -x "$BIN" ]; then
    echo "building riftkv"
    CARGO_TARGET_DIR="$TARGET_DIR" cargo build --quiet --bin riftkv || fail "cargo build failed"
fi

port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
# Like the servers: connections of an earlier run in TIME_WAIT do not block a new listener.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}
for k in $(seq 1 $NODES); do
    for port in $((BASE + k)) $((BASE + 100 + k)); do
        port_free "$port" || fail "port $port is in use (set RIFTKV_OBS_BASE_PORT)"
    done
done
PROM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PROM="http://127.0.0.1:$PROM_PORT"

# ---------------------------------------------------------------- config checks
step "promtool check config / check rules"
promtool check config ops/prometheus/prometheus.yml >/dev/null \
    || fail "promtool check config ops/prometheus/prometheus.yml"
promtool check rules ops/prometheus/alerts.yml >/dev/null \
    || fail "promtool check rules ops/prometheus/alerts.yml"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' ops/grafana/riftkv.json \
    || fail "ops/grafana/riftkv.json is not valid JSON"

mkdir -p "$TMP/prom/data"
# Scrape and evaluate every second; move the dev cluster's ports (8700+k) to this test's.
python3 - "$BASE" ops/prometheus/prometheus.yml >"$TMP/prom/prometheus.yml" <<'EOF'
import re, sys
base, text = int(sys.argv[1]), open(sys.argv[2]).read()
text = re.sub(r"(?m)^(\s*(?:scrape_interval|scrape_timeout|evaluation_interval):).*$", r"\1 1s", text)
text = re.sub(r"127\.0\.0\.1:(87\d\d)\b", lambda m: f"127.0.0.1:{base + int(m.group(1)) - 8700}", text)
sys.stdout.write(text)
EOF
sed -E 's/^(\s*)for:.*/\1for: 2s/' ops/prometheus/alerts.yml >"$TMP/prom/alerts.yml"
for k in $(seq 1 $NODES); do
    grep -q "127.0.0.1:$((BASE + k))" "$TMP/prom/prometheus.yml" \
        || fail "could not point the Prometheus config at node $k (port $((BASE + k)))"
done
promtool check config "$TMP/prom/prometheus.yml" >/dev/null || fail "test copy of prometheus.yml is invalid"

# ---------------------------------------------------------------- cluster
VALUE_MARKER="obs-value-$RANDOM$RANDOM"
export RIFTKV_CLUSTER_SECRET="obs-secret-$RANDOM$RANDOM"
# Debug for the API and the inter-node handler: every request, and every call made for it on
# another node, is logged with its request id.
export RUST_LOG="info,riftkv_server::api=debug,riftkv_cluster::dispatch=debug"
api_url() { echo "http://127.0.0.1:$((BASE + $1))"; }
peer_addr() { echo "127.0.0.1:$((BASE + 100 + $1))"; }

start_node() {
    local k=$1 seeds=$2
    local args=(server --node-id "node$k" --api-addr "127.0.0.1:$((BASE + k))"
        --peer-addr "$(peer_addr "$k")" --data-dir "$TMP/node$k" --cluster-name riftkv-obs
        --gossip-interval-ms 250 --handoff-interval-ms 500 --log-format json)
    [ -n "$seeds" ] && args+=(--seeds "$seeds")
    "$BIN" "${args[@]}" >>"$TMP/node$k.log" 2>&1 &
    NODE_PID[$k]=$!
}

step "starting $NODES nodes on 127.0.0.1:$((BASE + 1))..$((BASE + NODES))"
ALL_URLS=()
for k in $(seq 1 $NODES); do
    if [ "$k" -eq 1 ]; then start_node 1 ""; else start_node "$k" "$(peer_addr 1)"; fi
    ALL_URLS+=("$(api_url "$k")")
done
LIVE_URLS=()
for k in $(seq 1 $NODES); do
    [ "$k" -ne "$KILLED" ] && LIVE_URLS+=("$(api_url "$k")")
done
timeout 80 "${CHECK[@]}" wait-ready --members $NODES --timeout 60 "${ALL_URLS[@]}" \
    || fail "cluster did not settle"

step "starting Prometheus on $PROM"
prometheus --config.file="$TMP/prom/prometheus.yml" --storage.tsdb.path="$TMP/prom/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time=1h \
    --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
timeout 40 "${CHECK[@]}" wait-targets --prom "$PROM" --count $NODES --timeout 30 \
    || fail "Prometheus does not scrape every node"

step "checking /metrics of every node"
timeout 30 "${CHECK[@]}" check-metrics "${ALL_URLS[@]}" || fail "metrics exposition"

# ---------------------------------------------------------------- traffic
TRAFFIC_START=$(date +%s)
REQUEST_ID="obs-trace-$RANDOM$RANDOM"
step "traffic on the healthy cluster"
timeout 60 "${CHECK[@]}" traffic-healthy --value-marker "$VALUE_MARKER" \
    --request-id "$REQUEST_ID" "${ALL_URLS[@]}" || fail "healthy traffic"

step "SIGKILL node$KILLED"
kill -KILL "${NODE_PID[$KILLED]}"
wait "${NODE_PID[$KILLED]}" 2>/dev/null || true
unset "NODE_PID[$KILLED]"
timeout 40 "${CHECK[@]}" wait-reachable --node "node$KILLED" --state down --timeout 30 \
    "${LIVE_URLS[@]}" || fail "the survivors do not see node$KILLED down"

step "traffic with node$KILLED down (sloppy writes, strict quorums)"
timeout 60 "${CHECK[@]}" traffic-degraded --value-marker "$VALUE_MARKER" "${LIVE_URLS[@]}" \
    || fail "traffic with a node down"

step "waiting for RiftKVNodeUnreachable{peer=node$KILLED} to fire"
timeout 40 "${CHECK[@]}" wait-alert --prom "$PROM" --alert RiftKVNodeUnreachable \
    --label "peer=node$KILLED" --timeout 30 || fail "node-unreachable alert"
timeout 40 "${CHECK[@]}" wait-alert --prom "$PROM" --alert RiftKVTargetDown \
    --label "instance=127.0.0.1:$((BASE + KILLED))" --timeout 30 || fail "target-down alert"

step "restarting node$KILLED"
start_node "$KILLED" "$(peer_addr 1),$(peer_addr 3)"
timeout 80 "${CHECK[@]}" wait-ready --members $NODES --timeout 60 "${ALL_URLS[@]}" \
    || fail "cluster did not settle after the restart"
timeout 70 "${CHECK[@]}" traffic-recovered --value-marker "$VALUE_MARKER" --timeout 30 \
    "${ALL_URLS[@]}" || fail "recovery traffic"
timeout 40 "${CHECK[@]}" wait-alert --prom "$PROM" --alert RiftKVNodeUnreachable \
    --label "peer=node$KILLED" --gone --timeout 30 || fail "node-unreachable alert stays firing"

# ---------------------------------------------------------------- Prometheus checks
step "evaluating every dashboard panel and alert rule"
sleep 3 # the last scrapes of the traffic
TRAFFIC_END=$(date +%s)
timeout 60 "${CHECK[@]}" check-dashboard --prom "$PROM" --dashboard ops/grafana/riftkv.json \
    --start "$TRAFFIC_START" --end "$TRAFFIC_END" || fail "dashboard panels"
timeout 30 "${CHECK[@]}" check-rules --prom "$PROM" --rules-file ops/prometheus/alerts.yml \
    || fail "alert rules"

# ---------------------------------------------------------------- logs
step "stopping the cluster; checking the logs"
for k in "${!NODE_PID[@]}"; do
    kill -TERM "${NODE_PID[$k]}"
done
for k in "${!NODE_PID[@]}"; do
    pid=${NODE_PID[$k]}
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "node$k still runs 20s after SIGTERM"
    code=0
    wait "$pid" || code=$?
    unset "NODE_PID[$k]"
    [ "$code" -eq 0 ] || fail "node$k exited with $code after SIGTERM"
done
timeout 30 "${CHECK[@]}" check-logs --request-id "$REQUEST_ID" --min-nodes 2 \
    --forbid "$VALUE_MARKER" --forbid "$RIFTKV_CLUSTER_SECRET" "$TMP"/node*.log \
    || fail "logs"

step "observability test passed"
