#!/usr/bin/env bash
# The long fuzzing pass: runs every cargo-fuzz target in fuzz/ (libFuzzer, coverage-guided) for
# EDDY_FUZZ_SECONDS each (default 3600), one after the other, growing fuzz/corpus/<target>/ with
# the inputs that reach new code. Prints one summary line per target and fails if any target
# crashed: a crash, timeout or out-of-memory input is left in fuzz/artifacts/<target>/ (see
# docs/fuzzing.md for how to turn it into a regression). The short pass in the test suite
# (tests/e2e/fuzz_corpus.rs) replays the corpus this grows.
#
#   scripts/fuzz.sh                          every target, EDDY_FUZZ_SECONDS each
#   EDDY_FUZZ_SECONDS=600 scripts/fuzz.sh copy_csv pg_frontend
#   EDDY_FUZZ_CMIN=1 scripts/fuzz.sh         also minimize each corpus afterwards
#
# Stable Rust is enough. With `--sanitizer none`, cargo-fuzz adds no -Z flag to RUSTFLAGS
# (cargo-fuzz src/project.rs: `Sanitizer::None => {} // needs no flags`; -Z only comes with a
# sanitizer, --build-std or --careful); what it does add (-Cpasses=sancov-module,
# -Cllvm-args=-sanitizer-coverage-*, --cfg fuzzing, -Cdebug-assertions, -Ccodegen-units=1) is
# stable. So RUSTC_BOOTSTRAP is not set. The price of no sanitizer is small for Eddy: the code
# fuzzed is safe Rust, where the bugs are panics (including overflow checks, which
# -Cdebug-assertions turns on) and hangs, which libFuzzer catches without one.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS=(line_protocol copy_text copy_csv copy_binary pg_frontend)
SECS="${EDDY_FUZZ_SECONDS:-3600}"
if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    TARGETS=("${ALL_TARGETS[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# A target directory of its own: the instrumented build shares nothing with the normal one
# (different RUSTFLAGS would rebuild everything each time one follows the other).
export CARGO_TARGET_DIR="${EDDY_FUZZ_TARGET_DIR:-$HOME/.cache/eddy-fuzz-target}"

root="$(pwd)"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

echo "fuzz: $(cargo fuzz --version), $(rustc --version)"
echo "fuzz: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "fuzz: ${#TARGETS[@]} target(s), ${SECS}s each, target dir $CARGO_TARGET_DIR"

# One build of every target first, so a build error stops the pass before any fuzzing.
cargo fuzz build --sanitizer none

failed=0
summary=()
started=$(date +%s)
for t in "${TARGETS[@]}"; do
    corpus="$root/fuzz/corpus/$t"
    regressions="$root/fuzz/regressions/$t"
    artifacts="$root/fuzz/artifacts/$t"
    mkdir -p "$corpus" "$regressions" "$artifacts"
    before=$(find "$corpus" -type f | wc -l)
    dict=()
    if [ -f "$root/fuzz/dict/$t.dict" ]; then
        dict=("-dict=$root/fuzz/dict/$t.dict")
    fi
    echo "fuzz: $t: ${SECS}s from $before corpus inputs"
    status=0
    # New inputs go to the first corpus directory; the regressions are read, never written.
    cargo fuzz run "$t" --sanitizer none "$corpus" "$regressions" -- \
        -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        ${dict[@]+"${dict[@]}"} 2>&1 | tee "$logs/$t.log" || status=$?
    after=$(find "$corpus" -type f | wc -l)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -1 | cut -d' ' -f2 || true)
    ft=$(grep -o 'ft: [0-9]*' "$logs/$t.log" | tail -1 | cut -d' ' -f2 || true)
    crashes=$(find "$artifacts" -type f | wc -l)
    result=ok
    if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        result=FAILED
        failed=1
    fi
    line="$t: ${result}, ${runs:-?} runs (${rate:-?}/s) in ${SECS}s, cov ${cov:-?}, ft ${ft:-?}, corpus $before -> $after, crashes $crashes"
    summary+=("$line")
    echo "fuzz: $line"

    if [ "${EDDY_FUZZ_CMIN:-0}" = 1 ] && [ "$result" = ok ]; then
        # cmin keeps one input per coverage feature under SHA-1 names; keep the hand-written
        # and generated seeds (any name that is not 40 hex digits) under their names too.
        seeds="$(mktemp -d)"
        for f in "$corpus"/*; do
            if [ -f "$f" ] && ! [[ "$(basename "$f")" =~ ^[0-9a-f]{40}$ ]]; then
                cp "$f" "$seeds/"
            fi
        done
        cargo fuzz cmin "$t" --sanitizer none "$corpus" -- -rss_limit_mb=2048 -timeout=10
        cp "$seeds"/* "$corpus/" 2>/dev/null || true
        rm -rf "$seeds"
        echo "fuzz: $t: corpus minimized to $(find "$corpus" -type f | wc -l) inputs"
    fi
done

hours=$(awk -v s="$(($(date +%s) - started))" 'BEGIN { printf "%.2f", s / 3600 }')
echo
echo "fuzz: summary (${hours} h in all, $(rustc --version))"
for line in "${summary[@]}"; do
    echo "  $line"
done

leftover=$(find "$root/fuzz/artifacts" -type f 2>/dev/null | sort)
if [ -n "$leftover" ]; then
    echo
    echo "fuzz: FAILED: inputs that crash, hang or exhaust memory (reproduce with"
    echo "  cargo fuzz run --sanitizer none <target> <file>; fix the bug, then move the file to"
    echo "  fuzz/regressions/<target>/ so the test suite replays it forever):"
    echo "$leftover" | sed 's/^/  /'
    exit 1
fi
if [ "$failed" -ne 0 ]; then
    echo "fuzz: FAILED (see the log above)"
    exit 1
fi
echo "fuzz: no crashes"
