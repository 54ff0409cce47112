# Sourced by the ops scripts: keeps build output outside the source tree so a fresh clone
# reuses an earlier build (RocksDB alone takes about 10 minutes to compile on 2 cores).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/riftkv/target}"
mkdir -p "$CARGO_TARGET_DIR"
