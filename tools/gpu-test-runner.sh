#!/usr/bin/env bash
# tools/gpu-test-runner.sh: runs every #[ignore]d (GPU) test of the given test binaries, each in
# its own process, so that one sticky CUDA error (a fault poisons the context for the rest of
# the process) fails that test alone instead of every later test of the binary.
#
#   tools/gpu-test-runner.sh [--filter REGEX] [--wrap 'CMD ARGS'] [--per-test SECONDS]
#                            [--budget SECONDS] EXE...
#
# - the tests are the binary's own list (`EXE --list --ignored`), filtered by --filter (an
#   extended regex on the test name);
# - each runs as `[WRAP] EXE --exact NAME --ignored --test-threads=1 --nocapture` under a time
#   limit (--per-test, default 60 s); --wrap puts a tool in front (compute-sanitizer);
# - a failed test (without --wrap) is rerun alone with CUDA_LAUNCH_BLOCKING=1, so the error
#   names the launch that faulted rather than a later synchronization;
# - one line per test (`TEST binary::name PASS 1s`), then `TESTS: P passed, F failed, T timed
#   out of N`; exit 0 only when every listed test passed and there was at least one;
# - --budget (default: none) bounds the whole run: a test starts only with its time left, the
#   rest are reported `NOT RUN` (exit 3 when everything that ran passed), so a caller's time
#   limit never cuts the runner off before its totals.
#
# CROSSRANK_TEST_LOG_DIR (default: a temp dir) keeps one log per test run.
set -u -o pipefail

filter="" wrap="" per_test=60 budget=0
while (( $# )); do
    case $1 in
        --filter) filter=$2; shift 2 ;;
        --wrap) wrap=$2; shift 2 ;;
        --per-test) per_test=$2; shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        --) shift; break ;;
        -*) echo "gpu-test-runner: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
(( $# )) || { echo "usage: $0 [--filter REGEX] [--wrap 'CMD'] [--per-test S] EXE..." >&2; exit 2; }

logdir=${CROSSRANK_TEST_LOG_DIR:-$(mktemp -d)}
mkdir -p "$logdir"
read -r -a wrap_cmd <<<"$wrap"
passed=0 failed=0 timed_out=0 total=0 not_run=0
failures=()

# run_one EXE NAME LOG [ENV...]: one test in its own process; sets $rc and $dt.
run_one() {
    local exe=$1 name=$2 log=$3
    shift 3
    local t0=$SECONDS limit=$per_test
    if (( budget > 0 && budget - SECONDS < limit )); then limit=$(( budget - SECONDS )); fi
    env "$@" timeout -k 5 "$limit" "${wrap_cmd[@]}" "$exe" --exact "$name" --ignored --test-threads=1 \
        --nocapture >"$log" 2>&1
    rc=$?
    dt=$(( SECONDS - t0 ))
}

# The lines of a failed test's log that say why: the panic and its message, mismatches,
# the sanitizer's findings.
excerpt() {
    grep -E -A1 "panicked at|^Error|mismatch|========= (Invalid|Race|Barrier|ERROR|Program hit|Error)|ERROR SUMMARY" "$1" |
        grep -v -- '^--$' | head -n "$2" | cut -c1-240 | sed 's/^/    /'
}

for exe in "$@"; do
    bin=$(basename "$exe")
    if [[ ! -x $exe ]]; then
        echo "TEST $bin MISSING ($exe is not an executable)"
        failed=$(( failed + 1 ))
        failures+=("$bin (missing)")
        continue
    fi
    mapfile -t names < <("$exe" --list --ignored 2>/dev/null | sed -n 's/: test$//p')
    if [[ -n $filter ]]; then
        mapfile -t names < <(printf '%s\n' "${names[@]}" | grep -E -- "$filter")
    fi
    for name in "${names[@]}"; do
        [[ -n $name ]] || continue
        total=$(( total + 1 ))
        if (( budget > 0 && budget - SECONDS < 5 )); then
            echo "TEST $bin::$name NOT RUN (the runner's --budget of ${budget}s is spent)"
            not_run=$(( not_run + 1 ))
            continue
        fi
        log="$logdir/$bin.$name.log"
        # No backtrace on the first run (symbolizing one costs about a second per process).
        run_one "$exe" "$name" "$log" CROSSRANK_REQUIRE_GPU=1 RUST_BACKTRACE=0
        if (( rc == 0 )); then
            passed=$(( passed + 1 ))
            echo "TEST $bin::$name PASS ${dt}s"
            continue
        fi
        status=FAIL
        (( rc == 124 || rc == 137 )) && status=TIMEOUT
        echo "TEST $bin::$name $status ${dt}s (exit $rc)"
        excerpt "$log" 12
        if [[ -z $wrap && $status == FAIL ]]; then
            run_one "$exe" "$name" "$log.blocking" CROSSRANK_REQUIRE_GPU=1 CUDA_LAUNCH_BLOCKING=1 RUST_BACKTRACE=1
            echo "    rerun alone with CUDA_LAUNCH_BLOCKING=1: exit $rc (${dt}s)"
            excerpt "$log.blocking" 6
        fi
        if [[ $status == TIMEOUT ]]; then
            timed_out=$(( timed_out + 1 ))
        else
            failed=$(( failed + 1 ))
        fi
        failures+=("$bin::$name ($status)")
    done
done

echo "TESTS: $passed passed, $failed failed, $timed_out timed out$( (( not_run )) && echo ", $not_run not run") of $total${wrap:+ (under ${wrap_cmd[0]##*/})}"
(( ${#failures[@]} )) && printf 'FAILED: %s\n' "${failures[@]}"
(( total > 0 && passed == total )) && exit 0
(( total > 0 && passed + not_run == total )) && exit 3
exit 1
