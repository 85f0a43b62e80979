#!/usr/bin/env bash
# tools/gpu-check.sh: the correctness half of a GPU lease, in one call of about 5 minutes.
#
# Runs on the GPU machine (no Rust toolchain, no network) from the repository root, with the
# bundle built here by tools/make-gpu-bundle.sh carried along:
#     run(command="bash tools/gpu-check.sh", carry=["gpu-bundle"], timeout_s=480)
# A targeted rerun of some steps: GPU_STEPS=verify,drift bash tools/gpu-check.sh
#
# Steps (each time-limited; a failing step never stops the next ones; budget GPU_BUDGET,
# default 445 s; the caps below add up to 440 s, a typical run is shorter):
#   info         10  nvidia-smi (name, SMs, clocks, driver), the CUDA libraries, the bundle
#   ckpt         bg  the real-size random checkpoint (12 layers, hidden 768, 250048 rows, F16;
#                    tools/gpu_gen.py), generated in the background while the tests run,
#                    with the drift pairs (gpu_gen.py pairs, 8..2,048 tokens)
#   gpu_kernels  75  every kernel vs its CPU twin, each test in its own process
#                    (tools/gpu-test-runner.sh; a failure is rerun with CUDA_LAUNCH_BLOCKING=1)
#   gpu_model    70  the whole model vs the CPU (tiny fixture, real shapes; the BERT and
#                    XLM-R fixtures vs their fp16 twin and transformers), likewise
#   gpu_fault    15  a refused PTX module carries the JIT log; a sticky fault: first error
#                    kept, no panic on drop
#   memcheck     50  compute-sanitizer --tool memcheck over the kernel tests
#   racecheck    30  compute-sanitizer --tool racecheck over the attention tests
#   synccheck    20  compute-sanitizer --tool synccheck over the attention tests
#                    (all three: SKIP "sanitizer unavailable" where the tool is missing or
#                    refuses the device, as on gVisor)
#   tiny         20  crossrank verify on tests/fixtures/tiny (reference attention path)
#   families     10  crossrank verify on tests/fixtures/bert-tiny (flash d32) and xlmr-tiny
#   verify       85  crossrank verify on the real-size checkpoint: VERIFY_PAIRS (1,024) pairs
#                    of 8..2,048 tokens, FAIL when fewer pairs than asked were compared;
#                    gated on the CPU fp16 twin and its second summation order (2 CPU runs
#                    inside VERIFY_CPU_BUDGET; --skip-f32: the f32 drift is the drift step's)
#   drift        55  crossrank score (cpu f32, cuda) and transformers' native GTE in fp16 (SDPA)
#                    on the same DRIFT_PAIRS (256) pairs: crossrank-GPU vs CPU f32 beside
#                    torch-fp16 vs CPU f32 (tools/torch_drift.py)
#
# A sanitizer step whose time ran out with every test run so far clean is PARTIAL (not a
# failure; the note counts the tests not run; rerun it alone with GPU_STEPS=memcheck).
# $OUT gets 3 files: gpu-check-summary.txt (the summary, printed last), gpu-check-results.json
# (verify, drift and the step table as JSON), gpu-check-logs.tar.gz (every log).
# Knobs: GPU_BUDGET, GPU_STEPS, VERIFY_PAIRS, VERIFY_CPU_BUDGET (70 s), DRIFT_PAIRS,
# REAL_MODEL, REAL_LAYERS, CROSSRANK_BUNDLE (see tools/gpu-lib.sh).
# Without a GPU every GPU step FAILs ("no CUDA device") and the script exits 1 after its
# summary: CI runs it so (tools/test.sh, the GPU dry run).

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
# shellcheck source=tools/gpu-lib.sh
source tools/gpu-lib.sh
gpu_setup gpu-check 445
VERIFY_PAIRS=${VERIFY_PAIRS:-1024}
VERIFY_CPU_BUDGET=${VERIFY_CPU_BUDGET:-70}
DRIFT_PAIRS=${DRIFT_PAIRS:-256}
GEN=$(tool gpu_gen.py)
RUNNER=$(tool gpu-test-runner.sh)
export VERIFY_PAIRS VERIFY_CPU_BUDGET DRIFT_PAIRS GEN
DRIFT_IN="$WORK/drift-pairs.jsonl"
export DRIFT_IN

run_step info 10 "$INFO" gpu_info

# ---------------------------------------------------------------------------------------
# CPU and disk work in the background while the GPU tests run.

if want ckpt || want verify || want drift; then
    start_checkpoint
    if [[ -s $TOKENIZER && -n $GEN ]]; then
        BG_LIMIT=60 background drift_pairs python3 "$GEN" pairs "$DRIFT_IN" "$TOKENIZER" "$DRIFT_PAIRS" \
            --min-words 3 --max-words 2000
    fi
fi

# ---------------------------------------------------------------------------------------
# GPU tests, one process each, then under the sanitizer

tests_step() {
    local name=$1 cap=$2 rc
    shift 2
    want "$name" || return 0
    local exe="$BUNDLE/tests/$name"
    if [[ ! -x $exe ]]; then skip "$name" "no $exe"; return; fi
    CROSSRANK_TEST_LOG_DIR="$LOGS/tests" run_step "$name" "$cap" "$LOGS/tests.log" \
        bash "$RUNNER" --per-test 30 --budget $(( $(step_limit "$cap") - 3 )) "$@" "$exe"
    rc=$?
    (( rc == 99 )) && return  # skipped: the time budget is spent
    note_last "$(grep -E '^TESTS:' "$LOGS/tests.log" | tail -n 1 | sed 's/^TESTS: //')"
}
tests_step gpu_kernels 75
tests_step gpu_model 70
tests_step gpu_fault 15

SANITIZER=""
for s in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer /opt/nvidia/compute-sanitizer/compute-sanitizer; do
    if command -v "$s" >/dev/null 2>&1; then SANITIZER=$(command -v "$s"); break; fi
done
if [[ -z $SANITIZER ]]; then
    SANITIZER=$(find /usr/local /opt -maxdepth 4 -name compute-sanitizer \( -type f -o -type l \) 2>/dev/null | head -n 1)
fi

sanitize() {
    local name=$1 cap=$2 filter=$3 tool_args=$4
    want "$name" || return 0
    local exe="$BUNDLE/tests/gpu_kernels"
    if [[ -z $SANITIZER ]]; then skip "$name" "sanitizer unavailable (no compute-sanitizer)"; return; fi
    if [[ ! -x $exe ]]; then skip "$name" "no $exe"; return; fi
    local logf="$LOGS/sanitizer.log" from why
    from=$(( $(wc -l <"$logf" 2>/dev/null || echo 0) + 1 ))
    CROSSRANK_TEST_LOG_DIR="$LOGS/sanitizer-$name" run_step "$name" "$cap" "$logf" \
        bash "$RUNNER" --per-test 30 --budget $(( $(step_limit "$cap") - 3 )) --filter "$filter" \
        --wrap "$SANITIZER $tool_args --error-exitcode 86 --print-limit 20" "$exe"
    local rc=$?
    (( rc == 99 )) && return  # skipped: the time budget is spent
    # Exit 3: every test that ran was clean, the runner's budget left some unrun: reported as
    # PARTIAL (not a failure; the note says how many; rerun with GPU_STEPS=$name).
    (( rc == 3 )) && SUMMARY[-1]=$(sed -E 's/^([a-z_]+ +)FAIL    /\1PARTIAL /' <<<"${SUMMARY[-1]}")
    note_last "$(grep -E '^TESTS:' "$logf" | tail -n 1 | sed 's/^TESTS: //; s/ (under.*//')"
    # The tool exists but cannot instrument this device or runtime (gVisor): not a finding.
    why=$(tail -n "+$from" "$logf" | grep -m1 -oE "Device not supported|Unable to find injection library|terminated before first instrumented API call|device is not supported")
    if [[ -n $why ]]; then
        SUMMARY[-1]=$(printf '%-13s %-8s %5s  %-5s %s' "$name" SKIP - - "sanitizer unavailable: $why")
    fi
}
# memcheck: every kernel test but the NVRTC one (a compiler run, no kernel of interest) and the
# 65,536-sequence grid split (minutes under the tool); racecheck/synccheck: the attention
# kernels, the ones with shared-memory tiles and barriers.
# (No --leak-check: the tests keep one device open for the whole process by design.)
sanitize memcheck 50 '^(attention_(flash_matches|flash_accepts|flash_head_dim|reference|cls)|embedding|qkv|bias|add_bias|gated|cls|gemm)' \
    "--tool memcheck"
ATTENTION_TESTS='^attention_(flash_matches_cpu|flash_head_dim_32|reference_matches_cpu|cls_matches|cls_head_dim_32)'
sanitize racecheck 30 "$ATTENTION_TESTS" "--tool racecheck --racecheck-report hazard"
sanitize synccheck 20 "$ATTENTION_TESTS" "--tool synccheck"

# ---------------------------------------------------------------------------------------
# verify: tiny fixture, real-size checkpoint

if [[ -f $TINY/config.json ]]; then
    run_step tiny 20 "$LOGS/verify.log" "$BIN" verify -m "$TINY" --device cuda --n 400 --threads "$NPROC" \
        --json-out "$LOGS/verify-tiny.json"
else
    skip tiny "no tiny fixture"
fi
if [[ -f tests/fixtures/bert-tiny/config.json && -f tests/fixtures/xlmr-tiny/config.json ]]; then
    run_step families 10 "$LOGS/verify.log" bash -c 'for f in bert-tiny xlmr-tiny; do
        "$0" verify -m "tests/fixtures/$f" --device cuda --n 200 --threads "$1" \
            --json-out "$2/verify-$f.json" || exit 1; done' "$BIN" "$NPROC" "$LOGS"
else
    skip families "no bert-tiny / xlmr-tiny fixture"
fi

CKPT_OK=0
wait_checkpoint && CKPT_OK=1
# verify must compare every pair it was asked for (a CPU time budget may stop it early).
verify_real() {
    "$BIN" verify -m "$REAL" --device cuda --n "$VERIFY_PAIRS" --docs-per-query 8 --min-tokens 8 \
        --max-tokens 2048 --threads "$NPROC" --cpu-budget "$VERIFY_CPU_BUDGET" --skip-f32 \
        --json-out "$LOGS/verify-real.json"
    local rc=$?
    python3 - "$LOGS/verify-real.json" "$VERIFY_PAIRS" <<'PY' || { (( rc == 0 )) && rc=1; }
import json, sys
r = json.load(open(sys.argv[1]))
want = int(sys.argv[2])
got = r.get("pairs_compared", r.get("compared_pairs"))
if got is None or got < want:
    sys.exit(f"verify compared {got} of {want} pairs asked for: FAIL")
print(f"verify compared {got} of {want} pairs")
PY
    return $rc
}
if (( CKPT_OK )); then
    run_step verify 85 "$LOGS/verify.log" verify_real
else
    skip verify "no checkpoint"
fi

# ---------------------------------------------------------------------------------------
# drift: crossrank-GPU and torch-fp16, each against the CPU f32 reference, same pairs

drift() {
    local args=(-m "$REAL" --max-length 2048)
    "$BIN" tokenize "${args[@]}" --input "$DRIFT_IN" >"$WORK/drift-ids.jsonl" || return 1
    "$BIN" score "${args[@]}" -i "$DRIFT_IN" -o "$WORK/drift-cpu.jsonl" --device cpu --threads "$NPROC" --quiet || return 1
    "$BIN" score "${args[@]}" -i "$DRIFT_IN" -o "$WORK/drift-gpu.jsonl" --device cuda --quiet || return 1
    if (( ! TORCH_OK )); then
        echo "PyTorch peer unusable: $(tail -n 1 "$LOGS/python.log")"
        return 1
    fi
    PYTHONUNBUFFERED=1 python3 "$(tool torch_drift.py)" --model "$REAL" --ids "$WORK/drift-ids.jsonl" \
        --cpu "$WORK/drift-cpu.jsonl" --gpu "$WORK/drift-gpu.jsonl" --out "$LOGS/drift.json"
}
if want drift; then
    DRIFT_OK=0
    [[ -n ${BG_PID[drift_pairs]:-} ]] && wait_background drift_pairs && DRIFT_OK=1
    if (( ! CKPT_OK || ! DRIFT_OK )); then
        skip drift "no checkpoint or drift pairs"
    else
        TORCH_OK=0
        setup_transformers && TORCH_OK=1
        export TORCH_OK
        run_step drift 55 "$LOGS/drift.log" drift
    fi
fi

# ---------------------------------------------------------------------------------------
# summary

merge_results
mapfile -t HEADLINES < <(python3 - "$WORK/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def g(d, *keys, default=None):
    for k in keys:
        if isinstance(d, dict) and k in d:
            return d[k]
    return default
for name in ("verify-tiny", "verify-real"):
    v = r.get(name)
    if not v:
        continue
    asked = g(v, "pairs_requested", "pairs")
    got = g(v, "pairs_compared", "compared_pairs")
    gate = g(v, "gate")
    fp16 = g(v, "fp16")
    verdict = g(v, "pass")
    line = (f"{name}: {got}/{asked} pairs, {g(v, 'min_tokens')}..{g(v, 'max_tokens')} tokens; "
            f"vs CPU f32 max |dlogit| {g(g(v, 'f32', default=v), 'max_abs_dlogit', default=float('nan')):.3e} "
            f"mean {g(g(v, 'f32', default=v), 'mean_abs_dlogit', default=float('nan')):.3e}")
    if isinstance(fp16, dict):
        line += f"; vs CPU fp16 max {g(fp16, 'max_abs_dlogit', default=float('nan')):.3e}"
    if isinstance(gate, dict):
        line += (f"; gate {g(gate, 'allowed_at_zero', default=float('nan')):.2e} per pair, "
                 f"{g(gate, 'mean_allowed', default=float('nan')):.2e} mean")
    elif gate is not None:
        line += f"; gate {gate}"
    line += f"; top-1 {g(v, 'top1_agree')}/{g(v, 'queries')}; {'PASS' if verdict else 'FAIL'}"
    print(line)
d = r.get("drift")
if d:
    c, t = d["crossrank_gpu_vs_cpu_f32"], d["torch_fp16_vs_cpu_f32"]
    print(f"drift ({d['pairs']} pairs, {d['min_tokens']}..{d['max_tokens']} tokens): crossrank-GPU vs CPU f32 "
          f"mean {c['mean_abs_dlogit']:.3e} max {c['max_abs_dlogit']:.3e} | torch fp16 ({d['attn_implementation']}) "
          f"vs CPU f32 mean {t['mean_abs_dlogit']:.3e} max {t['max_abs_dlogit']:.3e} | "
          f"{'crossrank no worse' if d['crossrank_no_worse'] else 'crossrank WORSE'}")
PY
)
GPU_COMMAND="bash tools/gpu-check.sh"
finish
