#!/usr/bin/env bash
# tools/gpu-dry-run.sh: tools/gpu-check.sh and tools/gpu-perf.sh end to end on a machine
# WITHOUT a GPU (CI: tools/test.sh). Every step must run and every GPU step must fail cleanly,
# each script must print its summary and exit 1, and $OUT must stay within 4 files. This is
# what keeps the prepared GPU commands working between the rare GPU leases.
#
#   tools/gpu-dry-run.sh
#
# Cheap by construction: a debug bundle of symlinks to the already-built debug artifacts
# (tools/make-gpu-bundle.sh --debug; only the gpu_ops bench target is compiled on top of
# `cargo test`), the committed tiny fixture as the "real" checkpoint, a few pairs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir=target/gpu-dry-run
rm -rf "$dir"
mkdir -p "$dir/tmp"
t0=$SECONDS
echo "[dry-run] debug bundle: tools/make-gpu-bundle.sh --debug $dir/bundle"
if ! tools/make-gpu-bundle.sh --debug "$dir/bundle" >"$dir/bundle.log" 2>&1; then
    tail -n 30 "$dir/bundle.log"
    echo "gpu-dry-run: building the debug bundle failed" >&2
    exit 1
fi

fail() { echo "gpu-dry-run: $*" >&2; exit 1; }

# The test runner on a fake test binary (one passing, one failing, one hanging test): each in
# its own process, the failure rerun with CUDA_LAUNCH_BLOCKING=1, the hang cut by its limit.
fake="$dir/fake_gpu_tests"
cat >"$fake" <<'SH'
#!/usr/bin/env bash
if [[ $1 == --list ]]; then printf 'passes: test\nfails: test\nhangs: test\n\n3 tests, 0 benchmarks\n'; exit 0; fi
case $2 in
    passes) echo "test passes ... ok"; exit 0 ;;
    fails) echo "thread 'fails' panicked at tests/x.rs:1:1:"; echo "blocking=${CUDA_LAUNCH_BLOCKING:-0}"; exit 101 ;;
    hangs) sleep 30 ;;
esac
SH
chmod +x "$fake"
set +e
runner_out=$(CROSSRANK_TEST_LOG_DIR="$dir/fake-logs" bash tools/gpu-test-runner.sh --per-test 2 "$fake")
runner_rc=$?
set -e
# shellcheck disable=SC2001
sed 's/^/    /' <<<"$runner_out"
(( runner_rc != 0 )) || fail "gpu-test-runner passed with a failing test"
grep -q "^TEST fake_gpu_tests::passes PASS" <<<"$runner_out" || fail "runner: no PASS line for the passing test"
grep -q "^TEST fake_gpu_tests::fails FAIL" <<<"$runner_out" || fail "runner: no FAIL line for the failing test"
grep -q "^TEST fake_gpu_tests::hangs TIMEOUT" <<<"$runner_out" || fail "runner: the hanging test did not time out"
grep -q "blocking=1" "$dir/fake-logs/fake_gpu_tests.fails.log.blocking" || fail "runner: no CUDA_LAUNCH_BLOCKING=1 rerun"
grep -q "^TESTS: 1 passed, 1 failed, 1 timed out of 3" <<<"$runner_out" || fail "runner: wrong totals"

# The bundle's embedded-PTX check refuses an NVRTC build.
printf '#!/bin/sh\necho "crossrank 0.1.0 (CUDA kernels: no nvcc at build time: NVRTC at run time)"\n' >"$dir/fake_nvrtc"
chmod +x "$dir/fake_nvrtc"
if tools/make-gpu-bundle.sh --check-ptx "$dir/fake_nvrtc" 2>/dev/null; then
    fail "make-gpu-bundle.sh accepted a binary without embedded PTX"
fi

# check SCRIPT GPU_STEPS...: runs tools/SCRIPT.sh, then checks its exit status, summary and
# $OUT, and that each named GPU step failed for want of a device (sanitizer steps may instead
# be skipped as unavailable, the PyTorch peer may fail for want of torch).
check() {
    local script=$1 rc row step status out="$dir/out-$1"
    shift
    mkdir -p "$out"
    echo "[dry-run] $script (no GPU)"
    set +e
    env OUT="$out" TMPDIR="$dir/tmp" CROSSRANK_BUNDLE="$dir/bundle" REAL_MODEL=tests/fixtures/tiny \
        VERIFY_PAIRS=16 DRIFT_PAIRS=6 SPEED_PAIRS=48 PT_ST32_PAIRS=16 GPU_BUDGET=240 \
        bash "tools/$script.sh" >"$dir/$script.log" 2>&1
    rc=$?
    set -e
    local summary="$out/$script-summary.txt"
    [[ -f $summary ]] || { tail -n 40 "$dir/$script.log"; fail "$script wrote no $summary"; }
    sed 's/^/    /' "$summary"
    (( rc == 1 )) || fail "$script exited $rc without a GPU (expected 1)"
    grep -q '^result: FAIL$' "$summary" || fail "$script: the summary does not say 'result: FAIL'"
    [[ $(tail -n 1 "$dir/$script.log") == "  mkdir -p benches/results/"* ]] ||
        fail "$script: the summary is not the last thing printed"
    local files
    files=$(find "$out" -type f | wc -l)
    (( files >= 1 && files <= 4 )) || fail "$script left $files files in \$OUT (at most 4)"
    for step in "$@"; do
        row=$(grep -m 1 -E "^$step +" "$summary") || fail "$script: no summary row for step $step"
        status=$(awk '{print $2}' <<<"$row")
        case $step:$status in
            memcheck:SKIP | racecheck:SKIP | synccheck:SKIP) [[ $row == *"sanitizer unavailable"* ]] || fail "$script: $row" ;;
            pytorch:FAIL) ;;
            *:FAIL) [[ $row == *"no CUDA device"* ]] || fail "$script: step $step failed, but not for want of a device: $row" ;;
            *) fail "$script: step $step is $status without a GPU: $row" ;;
        esac
    done
    echo "[dry-run] $script: exit 1, every GPU step FAILed or was unavailable, $files files in \$OUT"
}

check gpu-check info gpu_kernels gpu_model gpu_fault memcheck racecheck synccheck tiny families verify drift
check gpu-perf info gpu_ops bench bench_profile speed pytorch
echo "[dry-run] both GPU scripts fail cleanly without a GPU ($(( SECONDS - t0 )) s)"
