#!/usr/bin/env bash
# Tests of the Python client (clients/python) against a real 3-node cluster with auth on:
# installs the package into a venv, starts the nodes on free loopback ports, gives the
# bootstrap admin the data permissions and runs the pytest suite (which ends by killing two
# of the nodes to check quorum errors). Bounded (under 2 minutes once the venv exists); the
# nodes and their data are removed on exit, failed or not.
#
#   ./ops/python-client-test.sh                          # as in CI (builds with cargo)
#   RIFTKV_BIN=/path/to/riftkv ./ops/python-client-test.sh   # an existing binary, no cargo
#   ./ops/python-client-test.sh -k siblings              # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="$HOME/.cache/riftkv/venv-pyclient"
PINS=(httpx==0.28.1 pytest==8.3.4 pytest-timeout==2.3.1)

if [[ ! -x "$VENV/bin/python" ]] || [[ "$(cat "$VENV/.pins" 2>/dev/null)" != "${PINS[*]}" ]]; then
    echo "== creating $VENV (${PINS[*]})"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
    echo "${PINS[*]}" > "$VENV/.pins"
fi
echo "== pip install ./clients/python"
"$VENV/bin/pip" install --quiet --disable-pip-version-check ./clients/python

source ops/lib/cluster.sh
rk_binary
rk_tmp pyclient
trap 'rk_cleanup "python client test"' EXIT
rk_free_ports 4
rk_start_auth_cluster 3

# A fourth node, a cluster of its own, serving HTTPS with a certificate of a test CA (for the
# client's `ca` option). Skipped when openssl is missing.
TLS_URL=""
if command -v openssl >/dev/null; then
    (
        cd "$TMP"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.pem -days 2 -subj "/CN=riftkv-pyclient-test-ca"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout node.key \
            -out node.csr -subj "/CN=127.0.0.1"
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
            "extendedKeyUsage=serverAuth,clientAuth" "basicConstraints=CA:FALSE" > node.ext
        openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem \
            -days 2 -extfile node.ext
    ) >"$TMP/openssl.log" 2>&1
    "$BIN" server --node-id tls1 --api-addr "127.0.0.1:$((BASE + 4))" \
        --peer-addr "127.0.0.1:$((BASE + 104))" --data-dir "$TMP/d4" --ring-size 16 \
        --auth on --bootstrap-token-file "$TMP/token" --tls-cert "$TMP/node.pem" \
        --tls-key "$TMP/node.key" --tls-ca "$TMP/ca.pem" >"$TMP/n4.log" 2>&1 &
    PIDS+=($!)
    TLS_URL="https://127.0.0.1:$((BASE + 4))"
    for _ in $(seq 1 50); do
        curl -sf -m 2 --cacert "$TMP/ca.pem" "$TLS_URL/ready" >/dev/null && break
        sleep 0.2
    done
    curl -sf -m 5 --cacert "$TMP/ca.pem" -X POST -H "Authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' \
        -d '{"action":"grant","subject":"user:admin","bucket":"*","permissions":["get","put","delete","list","props"]}' \
        "$TLS_URL/v1/admin/grants" >/dev/null
    export RIFTKV_TEST_TLS_URL=$TLS_URL RIFTKV_TEST_CA="$TMP/ca.pem"
fi
sleep 1

export RIFTKV_TEST_URLS
RIFTKV_TEST_URLS=$(IFS=,; echo "${URLS[*]}")
export RIFTKV_TEST_PIDS
RIFTKV_TEST_PIDS=$(IFS=,; echo "${PIDS[*]:0:3}")
export RIFTKV_TEST_TOKEN=$TOKEN
echo "== pytest against $RIFTKV_TEST_URLS"
cd clients/python
# The quorum test SIGKILLs two nodes; the shell's own "Killed" notices go to /dev/null, pytest's
# output does not.
rc=0
{ timeout 170 "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$@" 2>&3 || rc=$?; } 3>&2 2>/dev/null
exit $rc
