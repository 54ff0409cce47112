#!/usr/bin/env bash
# Coverage-guided fuzzing of everything RiftKV decodes from outside the process (the targets in
# `fuzz/fuzz_targets/`): peer frames and messages, stored objects and records, context tokens,
# query strings and headers, and multipart answers rendered from arbitrary objects.
#
# libFuzzer (the `libfuzzer-sys` crate) with the compiler's coverage instrumentation, on the
# stable toolchain; no sanitizer runtime is needed, and overflow checks and debug assertions
# are on, so an arithmetic overflow is a finding like a panic. Each target starts from the
# checked-in corpus (`fuzz/corpus/TARGET/`, which also holds every input that ever crashed
# a target, so each is a regression test) and runs for a bounded time. New inputs go to a
# scratch directory, never into the clone.
#
#   ./ops/fuzz.sh                         # every target, FUZZ_SECONDS (default 20) each, as in CI
#   FUZZ_SECONDS=600 ./ops/fuzz.sh object # one target, longer
#   FUZZ_JOBS=1 ./ops/fuzz.sh             # one target at a time (default: one per core)
#   FUZZ_MERGE=1 ./ops/fuzz.sh            # afterwards, fold new coverage into the checked-in corpus
#   FUZZ_SEEDS=1 ./ops/fuzz.sh            # first, (re)write the seed inputs from real encodings
#
# A crash leaves its input in $FUZZ_ARTIFACTS (default ~/.cache/riftkv/fuzz-artifacts) and
# fails the script; reproduce it with `$FUZZ_TARGET_DIR/x86_64-unknown-linux-gnu/release/TARGET FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-20}
ARTIFACTS=${FUZZ_ARTIFACTS:-$HOME/.cache/riftkv/fuzz-artifacts}
# Its own target dir: instrumented code never mixes with the normal build.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/riftkv/fuzz-target}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
ALL=(frame rpc object context params multipart)
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL[@]}")

# libFuzzer's coverage hooks, as `cargo fuzz` sets them. With an explicit --target, RUSTFLAGS
# reach only the fuzzed code, not build scripts or proc-macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
echo "== building fuzz targets (${TARGETS[*]})"
cargo build --quiet --release --locked --manifest-path fuzz/Cargo.toml --target "$TRIPLE" \
    $(printf -- '--bin %s ' "${TARGETS[@]}")
if [[ -n "${FUZZ_SEEDS:-}" ]]; then
    # A plain program (no libFuzzer runtime), so built without the coverage hooks.
    env -u RUSTFLAGS cargo run --quiet --release --locked --manifest-path fuzz/Cargo.toml --bin seeds
fi

mkdir -p "$ARTIFACTS"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/riftkv-fuzz.XXXXXX")
# Fuzzers still running when the script stops (an error, Ctrl-C) stop with it.
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT
failed=()
# fuzz_target T: one bounded libFuzzer run of T from its corpus; its output goes to
# $SCRATCH/T.log, and its exit status says whether it found a failure.
fuzz_target() {
    local t=$1
    # -rss_limit_mb: an input that makes a decoder allocate without bound is a finding.
    "$CARGO_TARGET_DIR/$TRIPLE/release/$t" "$SCRATCH/$t" "fuzz/corpus/$t" \
        -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t-" >"$SCRATCH/$t.log" 2>&1
}
# A libFuzzer process uses one core, so FUZZ_JOBS targets (default: one per core) run side by
# side; each still gets its full time.
JOBS=${FUZZ_JOBS:-$(nproc)}
((JOBS >= 1)) || JOBS=1
for ((i = 0; i < ${#TARGETS[@]}; i += JOBS)); do
    batch=("${TARGETS[@]:i:JOBS}")
    pids=()
    for t in "${batch[@]}"; do
        mkdir -p "fuzz/corpus/$t" "$SCRATCH/$t"
        echo "== fuzz $t for ${SECONDS_EACH}s (corpus: $(find "fuzz/corpus/$t" -type f | wc -l) inputs)"
        fuzz_target "$t" &
        pids+=($!)
    done
    for j in "${!batch[@]}"; do
        t=${batch[j]}
        if ! wait "${pids[j]}"; then
            failed+=("$t")
            echo "fuzz target $t found a failure:" >&2
            grep -E "panicked|ERROR|SUMMARY|Test unit written|out-of-memory|timeout" "$SCRATCH/$t.log" | head -20 >&2 || true
            tail -n 30 "$SCRATCH/$t.log" >&2
        else
            echo "   $t: $(grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$SCRATCH/$t.log" \
                | tr '\n' ' ' | sed 's/stat:://g')"
        fi
    done
done
if [[ -n "${FUZZ_MERGE:-}" ]]; then
    for t in "${TARGETS[@]}"; do
        "$CARGO_TARGET_DIR/$TRIPLE/release/$t" -merge=1 -max_len=65536 "fuzz/corpus/$t" "$SCRATCH/$t" >/dev/null 2>&1
        echo "   $t: corpus now $(find "fuzz/corpus/$t" -type f | wc -l) inputs"
    done
fi
if ((${#failed[@]})); then
    echo "fuzzing found failures in: ${failed[*]} (inputs under $ARTIFACTS)" >&2
    exit 1
fi
echo "fuzzing: no findings in ${TARGETS[*]}"
