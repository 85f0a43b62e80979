#!/usr/bin/env bash
# tools/gpu-perf.sh: the performance half of a GPU lease, in one call of about 4 minutes.
#
# Runs on the GPU machine from the repository root, with the bundle carried along:
#     run(command="bash tools/gpu-perf.sh", carry=["gpu-bundle"], timeout_s=420)
# A targeted rerun of some steps: GPU_STEPS=bench,pytorch bash tools/gpu-perf.sh
#
# Steps (each time-limited; budget GPU_BUDGET, default 300 s; the caps add up to 270 s):
#   info           10  nvidia-smi (name, SMs, clocks, driver), libraries, bundle
#   ckpt, pairs    bg  the real-size random checkpoint (tools/gpu_gen.py) and SPEED_PAIRS
#                      (100,000) affiliation pairs (tools/gen_pairs.py, ~40 tokens per pair),
#                      generated in the background while gpu_ops runs
#   gpu_ops        60  the criterion kernel and GEMM benchmarks (benches/gpu_ops.rs, short
#                      times), cuBLASLt sweep included
#   bench          40  crossrank bench --pairs: pairs/s file to file (read, tokenize, pack,
#                      copy, compute, write), TFLOP/s and % of the device's dense fp16 peak,
#                      GPU compute alone (pairs / forward-busy seconds)
#   bench_profile  40  the same with --profile and CROSSRANK_GEMM_TUNE=1: per-op breakdown and
#                      the tuned GEMM choices
#   speed          30  crossrank score --device cuda, the CLI end to end (model load included)
#   pytorch        90  tools/bench_pytorch.py, transformers' native GTE in fp16 with SDPA on the
#                      same checkpoint and pairs: (a) st32 = CrossEncoder.predict, padded
#                      batches of 32 in input order (PT_ST32_PAIRS, 20,000: its rate does not
#                      depend on N), (b) sorted = length-sorted batches of 16,384 padded tokens
#
# $OUT gets 3 files: gpu-perf-summary.txt (printed last), gpu-perf-results.json (every JSON
# result), gpu-perf-logs.tar.gz (every log, the criterion output included).
# Knobs: GPU_BUDGET, GPU_STEPS, SPEED_PAIRS, PT_ST32_PAIRS, REAL_MODEL, REAL_LAYERS,
# CROSSRANK_BUNDLE (see tools/gpu-lib.sh). Without a GPU every GPU step FAILs ("no CUDA
# device") and the script exits 1 after its summary (the CI dry run, tools/test.sh).

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
# shellcheck source=tools/gpu-lib.sh
source tools/gpu-lib.sh
gpu_setup gpu-perf 300
SPEED_PAIRS=${SPEED_PAIRS:-100000}
PT_ST32_PAIRS=${PT_ST32_PAIRS:-20000}
GEN=$(tool gpu_gen.py)
GEN_PAIRS=$(tool gen_pairs.py)
BENCH_PYTORCH=$(tool bench_pytorch.py)
PAIRS="$WORK/pairs.jsonl"
export SPEED_PAIRS PT_ST32_PAIRS BENCH_PYTORCH PAIRS

run_step info 10 "$INFO" gpu_info

NEEDS_MODEL=0
for s in bench bench_profile speed pytorch; do want "$s" && NEEDS_MODEL=1; done
(( NEEDS_MODEL )) && start_checkpoint
# Realistic affiliation pairs (numpy), else random words of the tokenizer (standard library).
if (( ! NEEDS_MODEL )); then
    :
elif [[ -n $GEN_PAIRS ]] && python3 -c "import numpy" 2>/dev/null; then
    BG_LIMIT=120 background pairs python3 "$GEN_PAIRS" --n "$SPEED_PAIRS" --seed 0 --out "$PAIRS"
elif [[ -s $TOKENIZER && -n $GEN ]]; then
    BG_LIMIT=120 background pairs python3 "$GEN" pairs "$PAIRS" "$TOKENIZER" "$SPEED_PAIRS"
else
    skip pairs "no pair generator"
fi

if [[ -x $BUNDLE/bench/gpu_ops ]]; then
    # --bench: criterion's benchmark mode (without it, each benchmark runs once as a test).
    run_step gpu_ops 60 "$LOGS/gpu_ops.log" env CRITERION_HOME="$WORK/criterion" \
        "$BUNDLE/bench/gpu_ops" --bench --warm-up-time 0.3 --measurement-time 0.7
else
    skip gpu_ops "no $BUNDLE/bench/gpu_ops"
fi

CKPT_OK=0 PAIRS_OK=0
wait_checkpoint && CKPT_OK=1
[[ -n ${BG_PID[pairs]:-} ]] && wait_background pairs && [[ -s $PAIRS ]] && PAIRS_OK=1

if (( CKPT_OK && PAIRS_OK )); then
    run_step bench 40 "$LOGS/bench.log" "$BIN" bench -m "$REAL" --pairs "$PAIRS" --device cuda --json "$LOGS/bench.json"
    run_step bench_profile 40 "$LOGS/bench.log" env CROSSRANK_GEMM_TUNE=1 \
        "$BIN" bench -m "$REAL" --pairs "$PAIRS" --device cuda --profile --json "$LOGS/bench-profile.json"
else
    skip bench "no checkpoint or pairs"
    skip bench_profile "no checkpoint or pairs"
fi

speed() {
    local t0 t1 n
    t0=$(date +%s.%N)
    "$BIN" score -m "$REAL" -i "$PAIRS" -o "$WORK/scored.jsonl" --device cuda || return 1
    t1=$(date +%s.%N)
    n=$(wc -l <"$WORK/scored.jsonl")
    python3 - "$n" "$t0" "$t1" "$LOGS/speed.json" <<'PY'
import json, sys
n, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
r = {"n_pairs": n, "seconds": round(t1 - t0, 3), "pairs_per_s": round(n / (t1 - t0), 1)}
json.dump(r, open(sys.argv[4], "w"))
print(f"THROUGHPUT: {n} pairs scored in {t1 - t0:.2f} s end to end (model load, tokenization included): "
      f"{n / (t1 - t0):.0f} pairs/s")
PY
    head -n 2 "$WORK/scored.jsonl" | cut -c1-300
}
if (( CKPT_OK && PAIRS_OK )); then
    run_step speed 30 "$LOGS/speed.log" speed
else
    skip speed "no checkpoint or pairs"
fi

pytorch() {
    local rc=0 mode n
    # sorted (the best-effort PyTorch, b) first: the one crossrank must beat 2x.
    for mode in sorted st32; do
        n=()
        [[ $mode == st32 ]] && n=(--n "$PT_ST32_PAIRS")
        PYTHONUNBUFFERED=1 python3 "$BENCH_PYTORCH" --model "$REAL" --pairs "$PAIRS" "${n[@]}" --device cuda \
            --dtype fp16 --attn sdpa --mode "$mode" --threads "$NPROC" --out "$LOGS/pytorch-$mode.json" || rc=1
    done
    return $rc
}
if want pytorch; then
    if (( ! CKPT_OK || ! PAIRS_OK )) || [[ -z $BENCH_PYTORCH ]]; then
        skip pytorch "no checkpoint, pairs or tools/bench_pytorch.py"
    elif ! setup_transformers; then
        add_row pytorch FAIL - - "PyTorch peer unusable: $(tail -n 1 "$LOGS/python.log" | cut -c1-80)"
    else
        run_step pytorch 90 "$LOGS/pytorch.log" pytorch
    fi
fi

# ---------------------------------------------------------------------------------------
# summary: the figures issue 4's targets are stated in

merge_results
mapfile -t HEADLINES < <(python3 - "$WORK/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
b = r.get("bench")
base = b["pairs_per_s"] if b else None
for key in ("bench", "bench-profile"):
    b = r.get(key)
    if not b:
        continue
    split = b.get("time_split") or {}
    compute = split.get("compute_s") or 0.0
    gpu_only = f", GPU compute alone {b['n_pairs'] / compute:.0f} pairs/s" if compute > 0 else ""
    pct = f", {b['pct_of_peak']}% of {b['peak_gpu']} dense fp16 peak ({b['peak_fp16_tflops']} TF)" \
        if b.get("pct_of_peak") is not None else ", no peak known for this device"
    print(f"{key}: {b['pairs_per_s']:.0f} pairs/s file to file{gpu_only}; {b['tokens_per_s'] / 1e6:.2f} M tokens/s, "
          f"{b['tflops']:.1f} TFLOP/s{pct}; {b['mean_tokens_per_pair']:.1f} tokens/pair, {b['batches']} batches"
          + (f" [target >= 45000: {'met' if b['pairs_per_s'] >= 45000 else 'NOT met'}]" if key == "bench" else ""))
    ops = ((b.get("backend_profile") or {}).get("ops")) or []
    total = sum(o["seconds"] for o in ops if not o["name"].startswith("gemm_autotune")) or 1.0
    if ops:
        print("  profile: " + ", ".join(f"{o['name']} {100 * o['seconds'] / total:.1f}%" for o in ops[:8]))
    print(f"  device: {b['device']}")
s = r.get("speed")
if s:
    print(f"speed: crossrank score, {s['n_pairs']} pairs in {s['seconds']} s = {s['pairs_per_s']:.0f} pairs/s (model load included)")
for key, label, target in (("pytorch-st32", "PyTorch (a) st32, padded batches of 32 in input order", 4.0),
                           ("pytorch-sorted", "PyTorch (b) length-sorted batches", 2.0)):
    t = r.get(key)
    if t:
        ratio = f"; crossrank bench {base / t['pairs_per_s']:.1f}x (target >= {target:.0f}x)" if base else ""
        print(f"{label}: {t['pairs_per_s']:.0f} pairs/s on {t['n_pairs']} pairs, {t['tokens_per_s'] / 1e6:.2f} M tokens/s, "
              f"{t['batches']} batches, torch {t['torch_version']}, transformers {t['transformers_version']}{ratio}")
PY
)
GPU_COMMAND="bash tools/gpu-perf.sh"
finish
