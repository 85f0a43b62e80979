#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after another, each for a bounded time, and
# reports executions, exec/s, coverage and crashes per target. Exit status 1 if any target
# crashed (or failed to build/run), 0 otherwise.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 600 s; config safetensors records)
#   tools/fuzz.sh 60 records                           (a one-minute smoke run of one target)
#
# Environment:
#   FUZZ_SANITIZER   address (default) or none (no ASan: faster, still coverage-guided libFuzzer)
#   FUZZ_ARGS        extra libFuzzer flags, e.g. "-rss_limit_mb=4096 -seed=1"
#
# Toolchain: cargo-fuzz needs nightly-only rustc flags (-Z sanitizer, -Z instrument-coverage
# options); on the stable toolchain they are allowed by RUSTC_BOOTSTRAP=1, which this script
# sets for the fuzz builds only. cargo-fuzz is installed from crates.io if missing.
#
# Reproduce a crash: fuzz/target/<host triple>/release/<target> fuzz/artifacts/<target>/crash-…
# (or `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>`).
#
# Corpus: fuzz/corpus/<target>/ (git-ignored, grows across runs) plus the committed seeds
# fuzz/seeds/<target>/ (fuzz/make_seeds.py); the safetensors target also gets the full tiny
# checkpoint. One libFuzzer process per target, in-process (one core). Crashing inputs land in
# fuzz/artifacts/<target>/ and the full libFuzzer log in fuzz/artifacts/logs/<target>.log.
# A fixed crash's input goes to tests/fixtures/fuzz/<target>/, replayed by
# tests/fuzz_regressions.rs under plain `cargo test`.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-600}
[[ $# -gt 0 ]] && shift
case $seconds in
'' | *[!0-9]*)
    echo "usage: tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
    ;;
esac
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(config safetensors records)
sanitizer=${FUZZ_SANITIZER:-address}
read -r -a extra <<<"${FUZZ_ARGS:-}"

export RUSTC_BOOTSTRAP=1
# The fuzz targets need no CUDA kernels: skip nvcc in build.rs.
export CROSSRANK_NO_NVCC=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

python3 fuzz/make_seeds.py

triple=$(rustc -vV | sed -n 's/^host: //p')
mkdir -p fuzz/artifacts/logs
summary=()
failed=0
for target in "${targets[@]}"; do
    if [[ ! -f fuzz/fuzz_targets/$target.rs ]]; then
        echo "unknown fuzz target: $target (have: $(ls fuzz/fuzz_targets | sed 's/\.rs$//' | tr '\n' ' '))" >&2
        exit 2
    fi
    echo "== building $target (sanitizer: $sanitizer)" >&2
    if ! cargo fuzz build --fuzz-dir fuzz -s "$sanitizer" --target "$triple" "$target" >&2; then
        summary+=("$(printf '%-12s BUILD FAILED' "$target")")
        failed=1
        continue
    fi
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    if [[ $target == safetensors ]]; then
        [[ -e $corpus/tiny_full.safetensors ]] || cp tests/fixtures/tiny/model.safetensors "$corpus/tiny_full.safetensors"
    fi
    dict=()
    [[ -f fuzz/dicts/$target.dict ]] && dict=("-dict=fuzz/dicts/$target.dict")
    log=fuzz/artifacts/logs/$target.log
    crashes_before=$(find "fuzz/artifacts/$target" -type f | wc -l)
    echo "== fuzzing $target for ${seconds}s (log: $log)" >&2
    # The binary just built, run directly: `cargo fuzz run` would rebuild first, and the
    # sources may have changed since (a rebuild would then eat into the time, or fail).
    start=$(date +%s)
    set +e
    "fuzz/target/$triple/release/$target" "$corpus" "fuzz/seeds/$target" \
        -artifact_prefix="fuzz/artifacts/$target/" \
        -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
        "${dict[@]}" "${extra[@]}" >"$log" 2>&1 &
    pid=$!
    wait "$pid"
    rc=$?
    set -e
    # Scratch files of the config target (fuzz/src/checks.rs).
    rm -f /dev/shm/crossrank-fuzz-"$pid"-* "${TMPDIR:-/tmp}"/crossrank-fuzz-"$pid"-*
    elapsed=$(($(date +%s) - start))
    crashes=$(($(find "fuzz/artifacts/$target" -type f | wc -l) - crashes_before))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: [0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    status=ok
    if [[ $rc -ne 0 && $crashes -eq 0 ]]; then
        status="FAILED (exit $rc, no crash artifact: see $log)"
        failed=1
        tail -20 "$log" >&2
    elif [[ $rc -ne 0 || $crashes -gt 0 ]]; then
        status="CRASH (exit $rc, $crashes new artifact(s) in fuzz/artifacts/$target/)"
        failed=1
        grep -E '^(==[0-9]+==ERROR|thread .* panicked|SUMMARY|Test unit written|artifact_prefix)' "$log" | head -20 >&2 || true
    fi
    summary+=("$(printf '%-12s %5ss  execs %-10s exec/s %-7s cov %-6s ft %-6s corpus %-6s %s' \
        "$target" "$elapsed" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$status")")
done

echo
echo "fuzz summary (sanitizer: $sanitizer, ${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
