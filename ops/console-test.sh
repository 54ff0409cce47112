#!/usr/bin/env bash
# Browser test of the web console (`GET /ui`): a 3-node `riftkv dev` cluster, headless Chromium
# driven by Selenium (ops/console/test_console.py). Checks the cluster page (3 members, then
# one SIGKILLed member turning unreachable within 10 s), the ring drawing (every partition of
# /v1/admin/ring, preference list on click), the traffic page, sibling resolution on the key
# page (checked back through the API), a bucket props edit, and on a node with auth on the
# token login and a panel the token does not allow. Screenshots of every page go
# to $CONSOLE_ARTIFACTS (default ~/.cache/riftkv/console-artifacts, outside the tree).
#
#   ./ops/console-test.sh                      # builds, as in CI
#   RIFTKV_BIN=/path/to/riftkv ./ops/console-test.sh   # uses that binary, no build
#
# Installs Debian's chromium and chromium-driver when missing (needs root) and a pinned
# selenium into ~/.cache/riftkv/venv-console. The cluster and its data are removed on exit,
# failed or not.
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/env.sh

SELENIUM_VERSION=4.50.0
VENV="$HOME/.cache/riftkv/venv-console"
ARTIFACTS="${CONSOLE_ARTIFACTS:-$HOME/.cache/riftkv/console-artifacts}"

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "== installing chromium and chromium-driver (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; then
        apt-get update -q >/dev/null
        apt-get install -y -q chromium chromium-driver >/dev/null
    fi
fi
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import selenium, sys; sys.exit(selenium.__version__ != '$SELENIUM_VERSION')" 2>/dev/null; then
    echo "== installing selenium $SELENIUM_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "selenium==$SELENIUM_VERSION"
fi

if [[ -n "${RIFTKV_BIN:-}" ]]; then
    BIN="$RIFTKV_BIN"
else
    cargo build --quiet --workspace --all-targets
    BIN="$CARGO_TARGET_DIR/debug/riftkv"
fi
[[ -x "$BIN" ]] || { echo "no riftkv binary at $BIN" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/riftkv-console.XXXXXX")
DEV_PID=""
AUTH_PID=""
NODE_PIDS=()
cleanup() {
    local rc=$?
    if [[ -n "$DEV_PID" ]]; then
        # riftkv dev stops its nodes on SIGTERM (SIGKILL after its own grace period).
        kill -TERM "$DEV_PID" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$DEV_PID" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$DEV_PID" 2>/dev/null || true
        wait "$DEV_PID" 2>/dev/null || true
    fi
    if [[ -n "$AUTH_PID" ]]; then
        kill -TERM "$AUTH_PID" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$AUTH_PID" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$AUTH_PID" 2>/dev/null || true
        wait "$AUTH_PID" 2>/dev/null || true
    fi
    # Whatever of the dev nodes outlived riftkv dev (still running on our data dir, so the pid
    # has not been reused).
    for p in "${NODE_PIDS[@]}"; do
        if grep -qaF "$TMP/data" "/proc/$p/cmdline" 2>/dev/null; then
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    if [[ $rc -ne 0 ]]; then
        echo "console test failed; riftkv dev output and node logs:" >&2
        tail -n 20 "$TMP/dev.log" "$TMP"/data/node*/server.log "$TMP/auth1.log" >&2 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# A free block of ports on loopback (dev API base+1..3, peers base+101..103; the node with
# auth on: base+4 and base+104).
BASE=""
for _ in $(seq 0 40); do
    b=$(( 23000 + (RANDOM % 400) * 10 ))
    if ! (ss -ltn | grep -Eq ":(${b}[1-4]|$((b + 100))[1-4]) "); then BASE=$b; break; fi
done
[[ -n "$BASE" ]] || { echo "no free ports" >&2; exit 1; }

# One more node, alone and with auth on, for the token login and the per-panel refusal.
head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "$TMP/token"
"$BIN" server --node-id auth1 --api-addr "127.0.0.1:$((BASE + 4))" \
    --peer-addr "127.0.0.1:$((BASE + 104))" --data-dir "$TMP/auth1" \
    --auth on --bootstrap-token-file "$TMP/token" >"$TMP/auth1.log" 2>&1 &
AUTH_PID=$!

echo "== starting a 3-node dev cluster on ports $((BASE + 1))-$((BASE + 3))"
"$BIN" dev --nodes 3 --base-port "$BASE" --data-dir "$TMP/data" --startup-timeout 90 \
    >"$TMP/dev.log" 2>&1 &
DEV_PID=$!
URL=""
for _ in $(seq 1 400); do
    URL=$(sed -n 's/^Console: \(http[^ ]*\)\/ui$/\1/p' "$TMP/dev.log" | head -n 1)
    [[ -n "$URL" ]] && break
    kill -0 "$DEV_PID" 2>/dev/null || { echo "riftkv dev exited early" >&2; exit 1; }
    sleep 0.25
done
[[ -n "$URL" ]] || { echo "riftkv dev did not print the console URL within 100 s" >&2; exit 1; }
[[ "$URL" == "http://127.0.0.1:$((BASE + 1))" ]] || { echo "unexpected console URL $URL" >&2; exit 1; }
echo "== console at $URL/ui"

# The dev nodes are riftkv dev's children; the test kills node3.
VICTIM_PID=""
while read -r pid args; do
    NODE_PIDS+=("$pid")
    [[ " $args " == *" --node-id node3 "* ]] && VICTIM_PID=$pid
done < <(ps -o pid=,args= --ppid "$DEV_PID")
[[ -n "$VICTIM_PID" ]] || { echo "cannot find node3 among riftkv dev's children" >&2; exit 1; }

AUTH_URL="http://127.0.0.1:$((BASE + 4))"
for _ in $(seq 1 120); do curl -sf "$AUTH_URL/ready" >/dev/null && break; sleep 0.25; done
curl -sf "$AUTH_URL/ready" >/dev/null || { echo "the auth node did not get ready" >&2; exit 1; }

mkdir -p "$ARTIFACTS"
AUTH_BASE="$AUTH_URL" AUTH_TOKEN="$(cat "$TMP/token")" \
    CONSOLE_BASE="$URL" VICTIM_NODE=node3 VICTIM_PID="$VICTIM_PID" CONSOLE_ARTIFACTS="$ARTIFACTS" \
    CHROMIUM="$(command -v chromium)" CHROMEDRIVER="$(command -v chromedriver)" SE_OFFLINE=true PYTHONDONTWRITEBYTECODE=1 \
    timeout 180 "$VENV/bin/python" ops/console/test_console.py
echo "== console test passed; screenshots in $ARTIFACTS"
