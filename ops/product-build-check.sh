#!/usr/bin/env bash
# Proves that the product build of `riftkv` carries none of the test-only fault switches.
#
# The test build (`--all-targets`) turns on dev-dependency features (`testkit`, the planted
# bugs) for the whole workspace, so this builds the binaries the way a release does: without
# dev-dependencies and without `--features fault-injection`. It then looks for each switch's
# environment name, the corrupt route and the in-process fault network in the binary: any would mean an operator (or
# an attacker with access to the environment) could make a node acknowledge writes it drops.
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/env.sh

echo "== product build (no dev-dependency features, no fault-injection)"
cargo build --quiet --workspace --bins
BIN="$CARGO_TARGET_DIR/debug/riftkv"

found=0
for needle in RIFTKV_FAULT_DROP_WRITES RIFTKV_FAULT_POWERLOSS RIFTKV_FAULT_OLD_DOT_RULE \
    /v1/admin/fault/ SimTransport; do
    if grep -aq -- "$needle" "$BIN"; then
        echo "the product build of riftkv contains the test-only '$needle'" >&2
        found=1
    fi
done
# Put the test build's binary back in place (cargo keeps both builds; this only re-links it),
# so tests run after this script still find the fault switches they rely on.
cargo build --quiet --workspace --all-targets
if [[ $found -ne 0 ]]; then
    exit 1
fi
echo "== product build carries no test-only fault switch"
