#!/usr/bin/env bash
# Sets up a fresh Debian machine and starts a local 3-node RiftKV cluster (`riftkv dev`).
# Extra arguments go to `riftkv dev` (e.g. --nodes 5, --base-port 9700, --data-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
./ops/setup-debian.sh
source ops/env.sh
cargo build --quiet --bin riftkv
exec "$CARGO_TARGET_DIR/debug/riftkv" dev "$@"
