# Sourced by the ops test scripts that drive a real cluster: the binary, a free block of
# loopback ports, and a 3-node cluster with auth on whose bootstrap admin may also read and
# write data. The caller owns $TMP (made by rk_tmp) and the trap that calls rk_cleanup.
#
#   source ops/lib/cluster.sh
#   rk_binary                      # BIN: $RIFTKV_BIN, or a fresh debug build
#   rk_tmp NAME                    # TMP: a scratch dir; PIDS=() for the nodes
#   trap 'rk_cleanup "NAME test"' EXIT
#   rk_free_ports 3                # BASE: API ports BASE+1.., peer ports BASE+101..
#   rk_start_auth_cluster 3        # nodes n1..n3 on loopback; URL, URLS, TOKEN

# BIN: the riftkv binary to run.
rk_binary() {
    if [[ -n "${RIFTKV_BIN:-}" ]]; then
        BIN=$RIFTKV_BIN
    else
        source ops/env.sh
        cargo build --quiet --workspace --all-targets
        BIN="$CARGO_TARGET_DIR/debug/riftkv"
    fi
    [[ -x "$BIN" ]] || { echo "no riftkv binary at $BIN" >&2; exit 2; }
}

# TMP: a scratch directory for one script's nodes; PIDS: the processes rk_cleanup stops.
rk_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/riftkv-$1.XXXXXX")
    PIDS=()
}

# Stops every node and removes $TMP; on failure first shows the tail of each node's log.
rk_cleanup() {
    local rc=$? what=$1 p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ $rc -ne 0 ]]; then
        echo "$what failed; node logs:" >&2
        tail -n 20 "$TMP"/n*.log >&2 || true
    fi
    rm -rf "$TMP"
}

# BASE: a block of loopback ports where API ports BASE+1..BASE+N and peer ports
# BASE+101..BASE+100+N are all free.
rk_free_ports() {
    local n=$1 b k busy
    BASE=""
    for _ in $(seq 0 40); do
        b=$(( 22000 + (RANDOM % 400) * 10 ))
        busy=0
        for k in $(seq 1 "$n"); do
            if ss -ltn | grep -Eq ":($((b + k))|$((b + 100 + k))) "; then busy=1; break; fi
        done
        if [[ $busy -eq 0 ]]; then BASE=$b; return 0; fi
    done
    echo "no free ports" >&2
    exit 1
}

# Starts N nodes (n1..nN) with auth on and a bootstrap admin token, waits for the ring to
# settle, and grants the admin every data permission. Sets URL (node 1), URLS and TOKEN.
rk_start_auth_cluster() {
    local n=$1 k
    head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "$TMP/token"
    TOKEN=$(cat "$TMP/token")
    export RIFTKV_CLUSTER_SECRET="test-$RANDOM$RANDOM$RANDOM"
    URLS=()
    for k in $(seq 1 "$n"); do
        local seeds=()
        [[ $k -gt 1 ]] && seeds=(--seeds "127.0.0.1:$((BASE + 101))")
        "$BIN" server --node-id "n$k" --api-addr "127.0.0.1:$((BASE + k))" \
            --peer-addr "127.0.0.1:$((BASE + 100 + k))" --data-dir "$TMP/d$k" --ring-size 16 \
            --gossip-interval-ms 200 --auth on --bootstrap-token-file "$TMP/token" \
            "${seeds[@]}" >"$TMP/n$k.log" 2>&1 &
        PIDS+=($!)
        URLS+=("http://127.0.0.1:$((BASE + k))")
    done
    URL=${URLS[0]}
    local settled=0
    for _ in $(seq 1 150); do
        if curl -sf -m 2 -H "Authorization: Bearer $TOKEN" "$URL/v1/admin/status" \
            | grep -q '"ring_settled":true'; then
            settled=1
            break
        fi
        sleep 0.2
    done
    [[ $settled -eq 1 ]] || { echo "the cluster did not settle" >&2; exit 1; }
    # The bootstrap admin may administer; give it the data permissions too.
    curl -sf -m 5 -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d '{"action":"grant","subject":"user:admin","bucket":"*","permissions":["get","put","delete","list","props","metrics"]}' \
        "$URL/v1/admin/grants" >/dev/null
}
