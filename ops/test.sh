#!/usr/bin/env bash
# The whole RiftKV test suite, as CI runs it: setup, formatting, lints, then every test layer
# (unit and property tests, in-process cluster tests, multi-process tests against real
# `riftkv server` processes), the observability test against a real Prometheus, and the
# Jepsen-style partition tests (network namespaces and iptables: needs root), coverage-guided
# fuzzing of every decoder of outside input (`ops/fuzz.sh`), the Python client's tests and the
# web console in a headless browser, and last a check
# that the product build has none of the test-only fault switches.
set -euo pipefail
cd "$(dirname "$0")/.."
./ops/setup-debian.sh
source ops/env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== build"
cargo build --workspace --all-targets --quiet
echo "== tests"
cargo test --workspace --no-fail-fast -- --test-threads 2
echo "== observability (real Prometheus)"
./ops/observability-test.sh
echo "== fuzzing (libFuzzer; every decoder of outside input, 15 s per target)"
FUZZ_SECONDS=${FUZZ_SECONDS:-15} ./ops/fuzz.sh
echo "== schema testing (Schemathesis against a 3-node cluster with auth on)"
./ops/schemathesis-test.sh
echo "== Python client (against a real 3-node cluster with auth on)"
./ops/python-client-test.sh
echo "== web console (headless Chromium against riftkv dev)"
./ops/console-test.sh
echo "== partition tests (riftkv-jepsen)"
./ops/jepsen/ci.sh
echo "== product build: no test-only fault switch"
./ops/product-build-check.sh
