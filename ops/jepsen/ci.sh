#!/usr/bin/env bash
# RiftKV partition tests with riftkv-jepsen (needs root, or password-less sudo: network
# namespaces, a bridge and iptables). About 7 minutes:
#   1. a 60-second, 5-node `set` run under partition, kill and wipe (a node's data dir
#      deleted) faults, and 30-second `counter` and `crdt-set` runs (convergent data types)
#      under partition and kill faults: must be valid (exit 0);
#   2. the same workload on a last-write-wins bucket (the control): must report lost writes
#      (exit 1), which proves the checker sees loss;
#   3. a planted bug (nodes that drop writes) must be found (exit 1), a run killed with
#      SIGKILL must leave nothing that stops the next run, and naming a nemesis this build
#      lacks (corrupt) must stop the run with exit 2 (cargo tests in ops/jepsen/tests).
# Each run writes its history, results and report under one temporary directory, kept (and
# printed) when something fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
source ops/env.sh

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    SUDO=(sudo -n -E)
fi

echo "== riftkv-jepsen: build"
# The same invocation as ops/test.sh, so after its build this is a no-op: a `-p` build selects
# other features (no dev-dependency features) and recompiles the workspace crates.
cargo build --quiet --workspace --all-targets
HARNESS="$CARGO_TARGET_DIR/debug/riftkv-jepsen"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/riftkv-jepsen-ci.XXXXXX")
chmod 755 "$WORK"
keep=0
trap 'if [[ $keep -eq 0 ]]; then rm -rf "$WORK"; else echo "riftkv-jepsen results kept in $WORK"; fi' EXIT

# run_expect WANT NAME ARGS...: runs the harness with --out $WORK/NAME and checks its exit code.
run_expect() {
    local want=$1 name=$2
    shift 2
    local rc=0
    "${SUDO[@]}" "$HARNESS" --riftkv-bin "$CARGO_TARGET_DIR/debug/riftkv" --out "$WORK/$name" "$@" \
        >"$WORK/$name.log" 2>&1 || rc=$?
    sed -n '/^---$/,$p' "$WORK/$name.log" | head -20
    if [[ $rc -ne $want ]]; then
        echo "riftkv-jepsen $name: exit code $rc, expected $want; last output:" >&2
        tail -40 "$WORK/$name.log" >&2
        keep=1
        exit 1
    fi
}

echo "== riftkv-jepsen: set, 5 nodes, 60 s, partition+kill+wipe (must be valid)"
run_expect 0 set --nodes 5 --workload set --nemesis partition,kill,wipe --time-limit 60

echo "== riftkv-jepsen: counter, 5 nodes, 30 s, partition+kill (must be valid)"
run_expect 0 counter --nodes 5 --workload counter --nemesis partition,kill --time-limit 30

echo "== riftkv-jepsen: crdt-set, 5 nodes, 30 s, partition+kill (must be valid)"
run_expect 0 crdt-set --nodes 5 --workload crdt-set --nemesis partition,kill --time-limit 30

echo "== riftkv-jepsen: lww control, 5 nodes, 30 s, partition (must lose writes)"
run_expect 1 control --nodes 5 --workload control --nemesis partition --time-limit 30 \
    --convergence-timeout 20
if ! grep -Eq '"lost": [1-9]' "$WORK/control/results.json"; then
    echo "riftkv-jepsen control: exit code 1 but no lost writes in results.json" >&2
    keep=1
    exit 1
fi

echo "== riftkv-jepsen: planted bug is found; a SIGKILLed run is cleaned up by the next"
cargo test --quiet --workspace --test planted_bug --test cleanup -- --ignored --test-threads 1

echo "== riftkv-jepsen: a nemesis that needs a fault-injection build is refused without one"
cargo test --quiet --workspace --test disk_nemeses -- --ignored --exact \
    named_fault_build_nemesis_needs_a_fault_build

echo "== riftkv-jepsen: all partition tests passed"
