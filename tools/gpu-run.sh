#!/usr/bin/env bash
# tools/gpu-run.sh: every GPU check of the crossrank CUDA backend in one run, well inside 8 min.
#
# Runs on the GPU machine (no Rust toolchain, no network) from the repository root, with the
# bundle built here by tools/make-gpu-bundle.sh carried along:
#     run(command="bash tools/gpu-run.sh", carry=["gpu-bundle"], timeout_s=540)
#
# Steps, correctness first (each one time-limited; a failing step never stops the next ones;
# when the budget runs out the remaining steps are skipped):
#   info         nvidia-smi, driver, the CUDA libraries found (LD_LIBRARY_PATH is set up here)
#   gpu_kernels  gpu-bundle/tests/gpu_kernels --ignored (every kernel vs its CPU twin)
#   gpu_model    gpu-bundle/tests/gpu_model --ignored (whole model vs CPU, tiny fixture, real shapes)
#   tiny         crossrank verify on tests/fixtures/tiny (reference attention path, head_dim 16)
#   ckpt         a real-size random checkpoint (12 layers, hidden 768, 250048 rows, F16) via numpy,
#                generated in the background while the tests run (so are the benchmark pairs)
#   verify       crossrank verify on it: >= 1,000 pairs, 8..2,048 tokens, GPU vs CPU f32
#                (acceptance: max |dlogit| <= 5e-3, same top-1 per query)
#   verify_tuned the same check on 128 short pairs with CROSSRANK_GEMM_TUNE=1 CROSSRANK_PROFILE=1
#                (the autotuned GEMMs and the profiled forward against the CPU)
#   bench        crossrank bench --pairs (SPEED_PAIRS synthetic affiliation pairs from
#                tools/gen_pairs.py) with CROSSRANK_PROFILE=1: pairs/s, TFLOP/s, per-op profile
#   bench_tuned  the same with CROSSRANK_GEMM_TUNE=1 too: the chosen GEMM algorithms
#   gpu_ops      the criterion GPU benchmarks (gpu-bundle/bench/gpu_ops --bench, short times:
#                cuBLASLt sweep, every kernel, every GEMM shape at 2k..32k tokens)
#   pytorch      tools/bench_pytorch.py, the PyTorch peer (native GTE, fp16, SDPA, modes sorted
#                and st32) on the same checkpoint and pairs; the machine's transformers lacks
#                native GTE, so gpu-bundle/wheels (transformers 5.24.0, regex) are installed
#                into $WORK/site first
#   speed        crossrank score --device cuda on the same pairs: end-to-end CLI throughput
#
# Outputs go to $OUT (default ./gpu-out), 8 files: summary.txt, info.txt, tests.log,
# verify.log (tiny, real, tuned), verify-real.json, perf.log (bench, bench_tuned, pytorch,
# speed), perf.json (the bench and PyTorch JSON results, merged), gpu_ops.log. The summary
# (PASS/FAIL per step, headline numbers) is printed last.
#
# Knobs: CROSSRANK_GPU_RUN_BUDGET (seconds for all steps, default 450), VERIFY_PAIRS (1024),
# SPEED_PAIRS (100000), PT_ST32_PAIRS (20000: st32 is slow and its rate does not depend on N),
# CROSSRANK_BUNDLE (gpu-bundle).
# `tools/gpu-run.sh make-checkpoint DIR TOKENIZER_JSON [LAYERS]` and
# `tools/gpu-run.sh make-pairs FILE TOKENIZER_JSON N` run one generator alone.

set -u -o pipefail

# ---------------------------------------------------------------------------------------
# Python generators (numpy only; python3 on the GPU machine has it).

read -r -d '' PY_CHECKPOINT <<'PY'
"""Seeded random checkpoint with the real gte reranker shapes in the "new" packed layout.

Scales follow tools/make_fixture.py (make_weights): unit-scale embeddings, q/k projections
large enough that attention scores have a std around 2, LayerNorm gains around 1, a head
that spreads logits over a few units. Stored as F16; safetensors written by hand (no torch).
"""
import json, math, os, sys, time
import numpy as np

out, tok_path = sys.argv[1], sys.argv[2]
layers = int(sys.argv[3]) if len(sys.argv) > 3 else 12
h, heads, inter = 768, 12, 3072
t0 = time.time()
os.makedirs(out, exist_ok=True)
tok_text = open(tok_path, encoding="utf-8").read()
tok = json.loads(tok_text)
n_ids = len(tok["model"]["vocab"])
for a in tok.get("added_tokens", []):
    n_ids = max(n_ids, a["id"] + 1)
vocab = (n_ids + 63) // 64 * 64  # 250002 -> 250048, like the real model
with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
    f.write(tok_text)
with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
    json.dump({"model_max_length": 8192, "tokenizer_class": "XLMRobertaTokenizer", "bos_token": "<s>",
               "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "pad_token": "<pad>",
               "unk_token": "<unk>", "mask_token": "<mask>"}, f, indent=2)
config = {
    "architectures": ["NewForSequenceClassification"], "model_type": "new", "vocab_size": vocab,
    "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": heads,
    "intermediate_size": inter, "hidden_act": "gelu", "max_position_embeddings": 8192,
    "type_vocab_size": 1, "layer_norm_eps": 1e-12, "layer_norm_type": "layer_norm",
    "position_embedding_type": "rope", "rope_theta": 20000, "rope_scaling": {"type": "ntk", "factor": 8.0},
    "pack_qkv": True, "logn_attention_scale": False, "logn_attention_clip1": False,
    "id2label": {"0": "LABEL_0"}, "torch_dtype": "float16",
    "sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Sigmoid"},
}
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(config, f, indent=2)

rng = np.random.default_rng(0)
inv_h, inv_i = 1.0 / math.sqrt(h), 1.0 / math.sqrt(inter)

def normal(n, std, mean=0.0):
    return rng.standard_normal(n, dtype=np.float32) * np.float32(std) + np.float32(mean)

specs = [  # (name, shape, [(elements, std, mean), ...] concatenated)
    ("new.embeddings.word_embeddings.weight", [vocab, h], [(vocab * h, 1.0, 0.0)]),
    ("new.embeddings.token_type_embeddings.weight", [1, h], [(h, 0.3, 0.0)]),
    ("new.embeddings.LayerNorm.weight", [h], [(h, 0.1, 1.0)]),
    ("new.embeddings.LayerNorm.bias", [h], [(h, 0.05, 0.0)]),
]
for l in range(layers):
    p = f"new.encoder.layer.{l}."
    specs += [
        (p + "attention.qkv_proj.weight", [3 * h, h], [(2 * h * h, 1.5 * inv_h, 0.0), (h * h, inv_h, 0.0)]),
        (p + "attention.qkv_proj.bias", [3 * h], [(2 * h, 0.1, 0.0), (h, 0.05, 0.0)]),
        (p + "attention.o_proj.weight", [h, h], [(h * h, inv_h, 0.0)]),
        (p + "attention.o_proj.bias", [h], [(h, 0.05, 0.0)]),
        (p + "attn_ln.weight", [h], [(h, 0.1, 1.0)]),
        (p + "attn_ln.bias", [h], [(h, 0.05, 0.0)]),
        (p + "mlp.up_gate_proj.weight", [2 * inter, h], [(2 * inter * h, inv_h, 0.0)]),
        (p + "mlp.down_proj.weight", [h, inter], [(h * inter, inv_i, 0.0)]),
        (p + "mlp.down_proj.bias", [h], [(h, 0.05, 0.0)]),
        (p + "mlp_ln.weight", [h], [(h, 0.1, 1.0)]),
        (p + "mlp_ln.bias", [h], [(h, 0.05, 0.0)]),
    ]
specs += [
    ("new.pooler.dense.weight", [h, h], [(h * h, 1.5 * inv_h, 0.0)]),
    ("new.pooler.dense.bias", [h], [(h, 0.1, 0.0)]),
    ("classifier.weight", [1, h], [(h, 2.0 * inv_h, 0.0)]),
    ("classifier.bias", [1], [(1, 0.1, 0.0)]),
]
header, offset = {"__metadata__": {"format": "pt"}}, 0
for name, shape, _ in specs:
    n = math.prod(shape)
    header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + 2 * n]}
    offset += 2 * n
hbytes = json.dumps(header, separators=(",", ":")).encode()
hbytes += b" " * (-len(hbytes) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(len(hbytes).to_bytes(8, "little"))
    f.write(hbytes)
    for name, shape, parts in specs:
        for n, std, mean in parts:
            f.write(normal(n, std, mean).astype("<f2").tobytes())
size = os.path.getsize(os.path.join(out, "model.safetensors"))
assert size == 8 + len(hbytes) + offset, (size, offset)
print(f"checkpoint: {layers} layers, vocab {vocab} ({n_ids} tokenizer ids), {offset / 2 / 1e6:.1f} M params, "
      f"{size / 2**20:.0f} MiB F16 in {time.time() - t0:.1f} s -> {out}")
PY

read -r -d '' PY_PAIRS <<'PY'
"""Synthetic (query, document) pairs of real words from the tokenizer's vocabulary, short like
affiliation matching (about 15..110 tokens per pair), seeded."""
import json, random, sys

out, tok_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
vocab = json.load(open(tok_path, encoding="utf-8"))["model"]["vocab"]
words = [p[1:] for p, _ in vocab if p.startswith("\u2581") and len(p) > 3 and p[1:].isalpha()]
rng = random.Random(0)
with open(out, "w", encoding="utf-8") as f:
    for i in range(n):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        d = " ".join(rng.choice(words) for _ in range(rng.randint(8, 90)))
        f.write(json.dumps({"id": i, "query": q, "document": d}, ensure_ascii=False) + "\n")
print(f"{n} pairs from {len(words)} words -> {out}")
PY

case "${1:-}" in
    make-checkpoint) shift; exec python3 -c "$PY_CHECKPOINT" "$@" ;;
    make-pairs) shift; exec python3 -c "$PY_PAIRS" "$@" ;;
esac

# ---------------------------------------------------------------------------------------
# Setup

BUNDLE="${CROSSRANK_BUNDLE:-gpu-bundle}"
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
BUDGET="${CROSSRANK_GPU_RUN_BUDGET:-450}"
VERIFY_PAIRS="${VERIFY_PAIRS:-1024}"
SPEED_PAIRS="${SPEED_PAIRS:-100000}"
PT_ST32_PAIRS="${PT_ST32_PAIRS:-20000}"
START=$(date +%s)
NPROC=$(nproc 2>/dev/null || echo 4)
BIN="$BUNDLE/bin/crossrank"
WORK="${TMPDIR:-/tmp}/crossrank-gpu-run"
REAL="$WORK/real-model"
PAIRS="$WORK/pairs.jsonl"
mkdir -p "$WORK"
SUMMARY=()

log() { echo "[gpu-run $(( $(date +%s) - START ))s] $*"; }

# Seconds this step may take: its cap, or what is left of the budget minus a reserve.
step_limit() {
    local cap=$1 left=$(( BUDGET - ($(date +%s) - START) - 5 ))
    (( left < cap )) && cap=$left
    echo "$cap"
}

# run_step NAME CAP LOGFILE CMD...: runs CMD under a time limit, appends its output to LOGFILE,
# records PASS/FAIL/TIMEOUT/SKIP with the duration. Returns CMD's status.
run_step() {
    local name=$1 cap=$2 logf=$3
    shift 3
    local limit
    limit=$(step_limit "$cap")
    if (( limit < 10 )); then
        SUMMARY+=("$(printf '%-12s SKIP     time budget spent' "$name")")
        log "$name: skipped (time budget spent)"
        return 99
    fi
    log "$name: start (limit ${limit}s) -> $logf"
    echo "===== $name: $* (limit ${limit}s)" >>"$logf"
    if declare -F "$1" >/dev/null; then
        # A shell function: run it in a child bash that gets its definition (timeout needs a
        # program; it signals the whole process group on expiry).
        set -- bash -c "$(declare -f "$1"); set -o pipefail; \"\$@\"" _ "$@"
    fi
    local t0=$SECONDS rc
    timeout -k 10 "$limit" "$@" >>"$logf" 2>&1
    rc=$?
    local dt=$(( SECONDS - t0 )) status=PASS
    if (( rc == 124 || rc == 137 )); then status=TIMEOUT; elif (( rc != 0 )); then status="FAIL"; fi
    echo "===== $name: $status (exit $rc, ${dt}s)" >>"$logf"
    SUMMARY+=("$(printf '%-12s %-8s %4ss  exit %-3s' "$name" "$status" "$dt" "$rc")")
    log "$name: $status (exit $rc, ${dt}s)"
    if [[ $status != PASS ]]; then
        echo "----- last lines of $logf:"
        tail -n 25 "$logf" | cut -c1-300
        echo "-----"
    fi
    return $rc
}
skip() { SUMMARY+=("$(printf '%-12s SKIP     %s' "$1" "$2")"); log "$1: skipped ($2)"; }

# The CUDA libraries: libcuda from the driver, libcublas/libcublasLt (and libnvrtc for the
# NVRTC test) from the toolkit or the pip wheels; put their directories on LD_LIBRARY_PATH.
LIBS=(libcuda.so.1 libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13)
declare -A LIBDIR=()
for lib in "${LIBS[@]}"; do
    hit=$(ldconfig -p 2>/dev/null | awk -v n="$lib" '$1 == n { print $NF; exit }')
    [[ -n $hit ]] && LIBDIR[$lib]=$(dirname "$hit")
done
missing=()
for lib in "${LIBS[@]}"; do [[ -z ${LIBDIR[$lib]:-} ]] && missing+=(-o -name "$lib"); done
if (( ${#missing[@]} )); then
    # One search for every library ldconfig does not know (first hit per name wins).
    while read -r path; do
        name=$(basename "$path")
        [[ -z ${LIBDIR[$name]:-} ]] && LIBDIR[$name]=$(dirname "$path")
    done < <(timeout 60 find /usr/local /usr/lib /usr/lib64 /opt \( -false "${missing[@]}" \) \
                 \( -type f -o -type l \) 2>/dev/null)
fi
LIBDIRS=""
for lib in "${LIBS[@]}"; do
    d=${LIBDIR[$lib]:-}
    echo "$lib: ${d:-NOT FOUND}" >>"$OUT/info.txt"
    [[ -n $d && ":$LIBDIRS:" != *":$d:"* ]] && LIBDIRS="$LIBDIRS:$d"
done
export LD_LIBRARY_PATH="${LIBDIRS#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUST_BACKTRACE=1

TINY="tests/fixtures/tiny"
[[ -f $TINY/config.json ]] || TINY="$BUNDLE/fixtures/tiny"
export CROSSRANK_TINY_FIXTURE="$PWD/$TINY"
TOKENIZER="$WORK/xlmr-tokenizer.json"
if [[ -f $BUNDLE/assets/xlmr-tokenizer.json.gz ]]; then
    gzip -dc "$BUNDLE/assets/xlmr-tokenizer.json.gz" >"$TOKENIZER"
elif [[ -f $BUNDLE/assets/xlmr-tokenizer.json ]]; then
    cp "$BUNDLE/assets/xlmr-tokenizer.json" "$TOKENIZER"
fi
# Python tools: the working tree's, else the bundle's copies.
tool() { local t; for t in "tools/$1" "$BUNDLE/tools/$1"; do [[ -f $t ]] && { echo "$t"; return; }; done; }
GEN_PAIRS=$(tool gen_pairs.py)
BENCH_PYTORCH=$(tool bench_pytorch.py)

export BUNDLE OUT NPROC BIN WORK REAL PAIRS TOKENIZER SPEED_PAIRS PT_ST32_PAIRS BENCH_PYTORCH

# CPU and disk work in the background while the GPU tests run (each with its own time limit;
# waited for before the first step that needs it): the real-size checkpoint, and the
# benchmark pairs (realistic affiliation pairs from tools/gen_pairs.py, else random words).
CKPT_PID=""
CKPT_T0=$SECONDS
if [[ -s $TOKENIZER ]]; then
    timeout -k 10 120 python3 -c "$PY_CHECKPOINT" "$REAL" "$TOKENIZER" 12 >"$WORK/ckpt.log" 2>&1 &
    CKPT_PID=$!
    log "ckpt: generating $REAL in the background (pid $CKPT_PID)"
fi
PAIRS_PID=""
if [[ -n $GEN_PAIRS ]]; then
    timeout -k 10 120 python3 "$GEN_PAIRS" --n "$SPEED_PAIRS" --seed 0 --out "$PAIRS" >"$WORK/pairs.log" 2>&1 &
    PAIRS_PID=$!
elif [[ -s $TOKENIZER ]]; then
    timeout -k 10 120 python3 -c "$PY_PAIRS" "$PAIRS" "$TOKENIZER" "$SPEED_PAIRS" >"$WORK/pairs.log" 2>&1 &
    PAIRS_PID=$!
fi
[[ -n $PAIRS_PID ]] && log "pairs: generating $SPEED_PAIRS pairs into $PAIRS in the background (pid $PAIRS_PID)"

# ---------------------------------------------------------------------------------------
# info

gpu_info() {
    echo "date: $(date -u +%FT%TZ)  host: $(hostname)  cpus: $NPROC  $(grep -m1 'model name' /proc/cpuinfo)"
    cat "$BUNDLE/BUILD-INFO.txt" 2>/dev/null
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    "$BIN" --version
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,compute_cap --format=csv &&
        nvidia-smi -L
}
run_step info 20 "$OUT/info.txt" gpu_info

# ---------------------------------------------------------------------------------------
# GPU tests

touch "$OUT/tests.log"
for t in gpu_kernels gpu_model; do
    exe="$BUNDLE/tests/$t"
    if [[ ! -x $exe ]]; then skip "$t" "no $exe"; continue; fi
    before=$(wc -l <"$OUT/tests.log" 2>/dev/null || echo 0)
    run_step "$t" 90 "$OUT/tests.log" "$exe" --ignored --test-threads=1 --nocapture
    res=$(tail -n "+$(( before + 1 ))" "$OUT/tests.log" | grep -E "^test result:" | tail -n 1)
    SUMMARY[-1]="${SUMMARY[-1]} ${res#test result: }"
done

# ---------------------------------------------------------------------------------------
# verify on the tiny fixture (head_dim 16: reference attention)

if [[ -f $TINY/config.json ]]; then
    run_step tiny 40 "$OUT/verify.log" "$BIN" verify -m "$TINY" --device cuda --n 400 --threads "$NPROC"
else
    skip tiny "no tiny fixture"
fi

# ---------------------------------------------------------------------------------------
# real-size checkpoint and verify (default path, then tuned + profiled)

CKPT_OK=0
if [[ -n $CKPT_PID ]]; then
    wait "$CKPT_PID"
    rc=$?
    dt=$(( SECONDS - CKPT_T0 ))
    { echo "===== ckpt (background, exit $rc)"; cat "$WORK/ckpt.log"; } >>"$OUT/verify.log"
    if (( rc == 0 )); then
        CKPT_OK=1
        SUMMARY+=("$(printf '%-12s %-8s %4ss  exit %-3s %s' ckpt PASS "$dt" "$rc" "$(tail -n 1 "$WORK/ckpt.log" | cut -c1-90)")")
    else
        SUMMARY+=("$(printf '%-12s %-8s %4ss  exit %-3s' ckpt FAIL "$dt" "$rc")")
        tail -n 20 "$WORK/ckpt.log"
    fi
    log "ckpt: exit $rc after ${dt}s"
else
    skip ckpt "no tokenizer in $BUNDLE/assets"
fi

if (( CKPT_OK )); then
    # The CPU f32 side dominates (~150k tokens); --cpu-budget keeps it inside the step even on
    # a slow host (it then compares the queries it finished, and says so).
    run_step verify 150 "$OUT/verify.log" "$BIN" verify -m "$REAL" --device cuda --n "$VERIFY_PAIRS" \
        --docs-per-query 8 --min-tokens 8 --max-tokens 2048 --threads "$NPROC" --cpu-budget 100 \
        --json-out "$OUT/verify-real.json"
    # A few thousand tokens: tunes the batch's token bucket and the CLS-row bucket, then checks
    # the logits of the tuned, profiled forward against the CPU like `verify`.
    run_step verify_tuned 60 "$OUT/verify.log" env CROSSRANK_GEMM_TUNE=1 CROSSRANK_PROFILE=1 \
        "$BIN" verify -m "$REAL" --device cuda --n 128 --docs-per-query 8 --min-tokens 8 --max-tokens 256 \
        --threads "$NPROC" --cpu-budget 30 --json-out "$WORK/verify-tuned.json"
else
    skip verify "no checkpoint"
    skip verify_tuned "no checkpoint"
fi

# ---------------------------------------------------------------------------------------
# performance: crossrank bench (profiled, then tuned), the criterion GPU benchmarks, the
# PyTorch peer, crossrank score end to end

PAIRS_OK=0
if [[ -n $PAIRS_PID ]]; then
    wait "$PAIRS_PID"
    rc=$?
    { echo "===== pairs (background, exit $rc)"; cat "$WORK/pairs.log"; } >>"$OUT/perf.log"
    if (( rc == 0 )) && [[ -s $PAIRS ]]; then
        PAIRS_OK=1
    else
        SUMMARY+=("$(printf '%-12s %-8s %4ss  exit %-3s' pairs FAIL 0 "$rc")")
    fi
    log "pairs: exit $rc ($(cat "$PAIRS" 2>/dev/null | wc -l) pairs)"
else
    skip pairs "no gen_pairs.py and no tokenizer"
fi

if (( CKPT_OK && PAIRS_OK )); then
    run_step bench 45 "$OUT/perf.log" env CROSSRANK_PROFILE=1 \
        "$BIN" bench -m "$REAL" --pairs "$PAIRS" --device cuda --json "$WORK/bench.json"
    run_step bench_tuned 50 "$OUT/perf.log" env CROSSRANK_PROFILE=1 CROSSRANK_GEMM_TUNE=1 \
        "$BIN" bench -m "$REAL" --pairs "$PAIRS" --device cuda --json "$WORK/bench-tuned.json"
else
    skip bench "no checkpoint or pairs"
    skip bench_tuned "no checkpoint or pairs"
fi

if [[ -x $BUNDLE/bench/gpu_ops ]]; then
    # --bench: criterion's benchmark mode (without it, it runs each benchmark once as a test).
    run_step gpu_ops 75 "$OUT/gpu_ops.log" env CRITERION_HOME="$WORK/criterion" \
        "$BUNDLE/bench/gpu_ops" --bench --warm-up-time 0.3 --measurement-time 0.7
else
    skip gpu_ops "no $BUNDLE/bench/gpu_ops"
fi

pytorch() {
    # transformers >= 5.24 has native GTE; the machine's (5.17) does not: install the carried
    # wheels into $WORK/site (no network, no dependencies resolved) and put it first.
    if ! python3 -c "from transformers import GteForSequenceClassification" 2>/dev/null; then
        local wheels=("$BUNDLE"/wheels/*.whl)
        [[ -e ${wheels[0]} ]] || { echo "no native GTE in this transformers and no $BUNDLE/wheels"; return 1; }
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$WORK/site" "${wheels[@]}" || return 1
        export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    python3 -c "import torch, transformers, tokenizers; from transformers import GteForSequenceClassification; \
print('torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__)" || return 1
    local rc=0 mode n
    # sorted (the best-effort PyTorch) first: it is the one to compare crossrank with.
    for mode in sorted st32; do
        n=()
        [[ $mode == st32 ]] && n=(--n "$PT_ST32_PAIRS")
        PYTHONUNBUFFERED=1 python3 "$BENCH_PYTORCH" --model "$REAL" --pairs "$PAIRS" "${n[@]}" --device cuda \
            --dtype fp16 --attn sdpa --mode "$mode" --threads "$NPROC" --out "$WORK/pytorch-$mode.json" || rc=1
    done
    return $rc
}
if (( CKPT_OK && PAIRS_OK )) && [[ -n $BENCH_PYTORCH ]]; then
    run_step pytorch 100 "$OUT/perf.log" pytorch
else
    skip pytorch "no checkpoint, pairs or tools/bench_pytorch.py"
fi

speed() {
    local t0 t1 n
    t0=$(date +%s.%N)
    "$BIN" score -m "$REAL" -i "$PAIRS" -o "$WORK/scored.jsonl" --device cuda || return 1
    t1=$(date +%s.%N)
    n=$(wc -l <"$WORK/scored.jsonl")
    python3 - "$n" "$t0" "$t1" <<'PY'
import sys
n, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"THROUGHPUT: {n} pairs scored in {t1 - t0:.2f} s end to end (model load, tokenization included): {n / (t1 - t0):.0f} pairs/s")
PY
    head -n 2 "$WORK/scored.jsonl" | cut -c1-300
}
if (( CKPT_OK && PAIRS_OK )); then
    run_step speed 40 "$OUT/perf.log" speed
    tp=$(grep -o "[0-9]* pairs/s" "$OUT/perf.log" | tail -n 1)
    [[ -n $tp ]] && SUMMARY[-1]="${SUMMARY[-1]} $tp"
else
    skip speed "no checkpoint or pairs"
fi

# ---------------------------------------------------------------------------------------
# summary

# perf.json: every JSON result of the performance steps, by name (missing ones are null).
python3 - "$OUT/perf.json" "$WORK" <<'PY' || echo "perf.json: merge failed"
import json, os, sys
out, work = sys.argv[1], sys.argv[2]
merged = {}
for name, file in [("bench", "bench.json"), ("bench_tuned", "bench-tuned.json"), ("verify_tuned", "verify-tuned.json"),
                   ("pytorch_sorted", "pytorch-sorted.json"), ("pytorch_st32", "pytorch-st32.json")]:
    try:
        with open(os.path.join(work, file)) as f:
            merged[name] = json.load(f)
    except (OSError, ValueError):
        merged[name] = None
with open(out, "w") as f:
    json.dump(merged, f, indent=2)
PY

{
    echo "crossrank GPU run: $(date -u +%FT%TZ), $(( $(date +%s) - START )) s, budget ${BUDGET}s"
    grep -m1 -E "^NVIDIA|H100|H200|A100" "$OUT/info.txt" 2>/dev/null
    if [[ -f $OUT/verify-real.json ]]; then
        python3 - "$OUT/verify-real.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"verify real: {r['compared_pairs']}/{r['pairs']} pairs / {r['queries']} queries, {r['min_tokens']}..{r['max_tokens']} tokens: "
      f"max |dlogit| {r['max_abs_dlogit']:.3e}, mean {r['mean_abs_dlogit']:.3e}, max |dscore| {r['max_abs_dscore']:.3e}; "
      f"top-1 {r['top1_agree']}/{r['queries']} (+{r['top1_near_ties']} near ties, {r['top1_mismatch']} mismatches); "
      f"GPU {r['device_seconds']:.2f} s ({r['tokens'] / r['device_seconds']:.0f} tokens/s), CPU {r['cpu_seconds']:.1f} s; "
      f"{'PASS' if r['pass'] else 'FAIL'}")
PY
    fi
    python3 - "$OUT/perf.json" <<'PY' || true
import json, sys
p = json.load(open(sys.argv[1]))
v = p.get("verify_tuned")
if v:
    print(f"verify tuned: max |dlogit| {v['max_abs_dlogit']:.3e}, top-1 {v['top1_agree']}/{v['queries']}; "
          f"{'PASS' if v['pass'] else 'FAIL'}; {v.get('device', '')}")
base = None
for key in ("bench", "bench_tuned"):
    b = p.get(key)
    if not b:
        continue
    pps = b["pairs_per_s"]
    rel = f" ({100 * (pps / base - 1):+.1f}% vs bench)" if base else ""
    base = base or pps
    pct = f", {b['pct_of_peak']}% of {b['peak_gpu']} peak" if b.get("pct_of_peak") is not None else ""
    print(f"{key}: {pps:.0f} pairs/s{rel}, {b['tokens_per_s'] / 1e6:.2f} M tokens/s, {b['tflops']:.1f} TFLOP/s{pct}, "
          f"{b['mean_tokens_per_pair']:.1f} tokens/pair, {b['batches']} batches")
    ops = ((b.get("backend_profile") or {}).get("ops")) or []
    total = sum(o["seconds"] for o in ops if not o["name"].startswith("gemm_autotune")) or 1.0
    if ops:
        print("  profile: " + ", ".join(f"{o['name']} {100 * o['seconds'] / total:.1f}%" for o in ops[:8]))
    if key == "bench_tuned":
        print(f"  device: {b['device']}")
for key in ("pytorch_sorted", "pytorch_st32"):
    t = p.get(key)
    if t:
        rel = f" (crossrank bench is {base / t['pairs_per_s']:.1f}x)" if base else ""
        print(f"{key}: {t['pairs_per_s']:.0f} pairs/s on {t['n_pairs']} pairs, {t['tokens_per_s'] / 1e6:.2f} M tokens/s, "
              f"{t['batches']} batches, transformers {t['transformers_version']}{rel}")
PY
    for line in "${SUMMARY[@]}"; do echo "$line"; done
} | tee "$OUT/summary.txt"

# Non-zero when any step failed or timed out (SKIP alone does not fail the run).
if printf '%s\n' "${SUMMARY[@]}" | grep -qE '^[a-z_]+ +(FAIL|TIMEOUT) '; then
    exit 1
fi
