#!/usr/bin/env bash
# tools/gpu-run.sh: every GPU check of the crossrank CUDA backend in one run, well inside 8 min.
#
# Runs on the GPU machine (no Rust toolchain, no network) from the repository root, with the
# bundle built here by tools/make-gpu-bundle.sh carried along:
#     run(command="bash tools/gpu-run.sh", carry=["gpu-bundle"], timeout_s=540)
#
# Steps (each one time-limited; a failing step never stops the next ones):
#   info     nvidia-smi, driver, the CUDA libraries found (LD_LIBRARY_PATH is set up here)
#   kernels  gpu-bundle/tests/gpu_kernels --ignored (every kernel vs its CPU twin)
#   model    gpu-bundle/tests/gpu_model --ignored (whole model vs CPU, tiny fixture, real shapes)
#   tiny     crossrank verify on tests/fixtures/tiny (reference attention path, head_dim 16)
#   ckpt     a real-size random checkpoint (12 layers, hidden 768, 250048 rows, F16) via numpy,
#            generated in the background while the tests run
#   verify   crossrank verify on it: >= 1,000 pairs, 8..2,048 tokens, GPU vs CPU f32
#            (acceptance: max |dlogit| <= 5e-3, same top-1 per query)
#   speed    crossrank score --device cuda on 100,000 synthetic short pairs (tools/gen_pairs.py
#            when present): a first end-to-end throughput figure
#
# Outputs go to $OUT (default ./gpu-out), at most 8 files: summary.txt, info.txt, tests.log,
# verify-tiny.log, verify-real.log, verify-real.json, speed.log. The summary (PASS/FAIL per
# step) is printed last.
#
# Knobs: CROSSRANK_GPU_RUN_BUDGET (seconds for all steps, default 450), VERIFY_PAIRS (1024),
# SPEED_PAIRS (100000), CROSSRANK_BUNDLE (gpu-bundle).
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
START=$(date +%s)
NPROC=$(nproc 2>/dev/null || echo 4)
BIN="$BUNDLE/bin/crossrank"
WORK="${TMPDIR:-/tmp}/crossrank-gpu-run"
REAL="$WORK/real-model"
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
        SUMMARY+=("$(printf '%-11s SKIP     time budget spent' "$name")")
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
    SUMMARY+=("$(printf '%-11s %-8s %4ss  exit %-3s' "$name" "$status" "$dt" "$rc")")
    log "$name: $status (exit $rc, ${dt}s)"
    if [[ $status != PASS ]]; then
        echo "----- last lines of $logf:"
        tail -n 25 "$logf" | cut -c1-300
        echo "-----"
    fi
    return $rc
}
skip() { SUMMARY+=("$(printf '%-11s SKIP     %s' "$1" "$2")"); log "$1: skipped ($2)"; }

# The CUDA libraries: libcuda from the driver, libcublas/libcublasLt (and libnvrtc for the
# NVRTC test) from the toolkit or the pip wheels; put their directories on LD_LIBRARY_PATH.
find_lib_dir() {
    local name=$1 hit
    hit=$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n { print $NF; exit }')
    if [[ -z $hit ]]; then
        hit=$(timeout 60 find /usr/local /usr/lib /usr/lib64 /opt -name "$name" \( -type f -o -type l \) 2>/dev/null | head -n 1)
    fi
    [[ -n $hit ]] && dirname "$hit"
}
LIBDIRS=""
for lib in libcuda.so.1 libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13; do
    d=$(find_lib_dir "$lib")
    if [[ -n $d ]]; then
        [[ ":$LIBDIRS:" != *":$d:"* ]] && LIBDIRS="$LIBDIRS:$d"
        echo "$lib: $d" >>"$OUT/info.txt"
    else
        echo "$lib: NOT FOUND" >>"$OUT/info.txt"
    fi
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

export BUNDLE OUT NPROC BIN WORK REAL TOKENIZER SPEED_PAIRS PY_PAIRS

# The real-size checkpoint is CPU and disk work: generate it in the background while the GPU
# tests run (its own time limit; waited for before `verify`).
CKPT_PID=""
CKPT_T0=$SECONDS
if [[ -s $TOKENIZER ]]; then
    timeout -k 10 120 python3 -c "$PY_CHECKPOINT" "$REAL" "$TOKENIZER" 12 >"$WORK/ckpt.log" 2>&1 &
    CKPT_PID=$!
    log "ckpt: generating $REAL in the background (pid $CKPT_PID)"
fi

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
run_step info 30 "$OUT/info.txt" gpu_info

# ---------------------------------------------------------------------------------------
# GPU tests

touch "$OUT/tests.log"
for t in gpu_kernels gpu_model; do
    exe="$BUNDLE/tests/$t"
    if [[ ! -x $exe ]]; then skip "$t" "no $exe"; continue; fi
    before=$(wc -l <"$OUT/tests.log" 2>/dev/null || echo 0)
    run_step "$t" 120 "$OUT/tests.log" "$exe" --ignored --test-threads=1 --nocapture
    res=$(tail -n "+$(( before + 1 ))" "$OUT/tests.log" | grep -E "^test result:" | tail -n 1)
    SUMMARY[-1]="${SUMMARY[-1]} ${res#test result: }"
done

# ---------------------------------------------------------------------------------------
# verify on the tiny fixture (head_dim 16: reference attention)

if [[ -f $TINY/config.json ]]; then
    run_step tiny 60 "$OUT/verify-tiny.log" "$BIN" verify -m "$TINY" --device cuda --n 400 --threads "$NPROC"
else
    skip tiny "no tiny fixture"
fi

# ---------------------------------------------------------------------------------------
# real-size checkpoint, verify, throughput

CKPT_OK=0
if [[ -n $CKPT_PID ]]; then
    wait "$CKPT_PID"
    rc=$?
    dt=$(( SECONDS - CKPT_T0 ))
    { echo "===== ckpt (background, exit $rc)"; cat "$WORK/ckpt.log"; } >>"$OUT/verify-real.log"
    if (( rc == 0 )); then
        CKPT_OK=1
        SUMMARY+=("$(printf '%-11s %-8s %4ss  exit %-3s %s' ckpt PASS "$dt" "$rc" "$(tail -n 1 "$WORK/ckpt.log" | cut -c1-90)")")
    else
        SUMMARY+=("$(printf '%-11s %-8s %4ss  exit %-3s' ckpt FAIL "$dt" "$rc")")
        tail -n 20 "$WORK/ckpt.log"
    fi
    log "ckpt: exit $rc after ${dt}s"
else
    skip ckpt "no tokenizer in $BUNDLE/assets"
fi

if (( CKPT_OK )); then
    # The CPU f32 side dominates (~150k tokens); --cpu-budget keeps it inside the step even on
    # a slow host (it then compares the queries it finished, and says so).
    run_step verify 210 "$OUT/verify-real.log" "$BIN" verify -m "$REAL" --device cuda --n "$VERIFY_PAIRS" \
        --docs-per-query 8 --min-tokens 8 --max-tokens 2048 --threads "$NPROC" --cpu-budget 160 \
        --json-out "$OUT/verify-real.json"
else
    skip verify "no checkpoint"
fi

speed() {
    # Realistic affiliation pairs from tools/gen_pairs.py when present, else random words.
    local gen=""
    for g in tools/gen_pairs.py "$BUNDLE/tools/gen_pairs.py"; do [[ -f $g ]] && { gen=$g; break; }; done
    if [[ -n $gen ]]; then
        python3 "$gen" --n "$SPEED_PAIRS" --seed 0 --out "$WORK/pairs.jsonl" || return 1
    else
        python3 -c "$PY_PAIRS" "$WORK/pairs.jsonl" "$TOKENIZER" "$SPEED_PAIRS" || return 1
    fi
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" score -m "$REAL" -i "$WORK/pairs.jsonl" -o "$WORK/scored.jsonl" --device cuda || return 1
    t1=$(date +%s.%N)
    local n
    n=$(wc -l <"$WORK/scored.jsonl")
    python3 - "$n" "$t0" "$t1" <<'PY'
import sys
n, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"THROUGHPUT: {n} pairs scored in {t1 - t0:.2f} s end to end (model load, tokenization included): {n / (t1 - t0):.0f} pairs/s")
PY
    head -n 2 "$WORK/scored.jsonl" | cut -c1-300
}
if (( CKPT_OK )); then
    run_step speed 90 "$OUT/speed.log" speed
    tp=$(grep -o "[0-9]* pairs/s" "$OUT/speed.log" | tail -n 1)
    [[ -n $tp ]] && SUMMARY[-1]="${SUMMARY[-1]} $tp"
else
    skip speed "no checkpoint"
fi

# ---------------------------------------------------------------------------------------
# summary

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
    for line in "${SUMMARY[@]}"; do echo "$line"; done
} | tee "$OUT/summary.txt"
