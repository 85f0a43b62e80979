#!/usr/bin/env bash
# crossrank vs the PyTorch peer on the same checkpoint and pairs, in one run.
#
#   tools/bench-compare.sh MODEL PAIRS [--device cpu|cuda] [--n N] [--threads T]
#                          [--out DIR] [--batch-tokens N] [--warmup K]
#
# Runs `crossrank bench` and tools/bench_pytorch.py in modes st32 (padded batches of 32 in
# input order, what sentence-transformers' CrossEncoder.predict does) and sorted (length-sorted
# batches under a padded-token budget: PyTorch's best effort), one after the other, then prints
# one table (pairs/s, tokens/s, crossrank's speedup over each PyTorch mode) and keeps the raw
# JSON results in DIR (default bench-results/<date>-<device>).
#
# PyTorch runs fp32 on the CPU and fp16 with SDPA attention on CUDA; crossrank runs its f32
# CPU reference or its CUDA fp16 path. Timings exclude model loading on both sides; both
# include tokenization. `--threads T` sets torch's intra-op threads and crossrank's compute
# threads (its tokenizer workers use every core either way).
#
# Environment: PYTHON (default /opt/crtools/bin/python when present, else python3) must have
# torch and transformers (tools/README.md); CROSSRANK (default target/release/crossrank,
# built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 2 ]] || usage
model=$1 pairs=$2
shift 2
device=cpu n=1024 threads="" out="" batch_tokens="" warmup=2
while [[ $# -gt 0 ]]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --batch-tokens) batch_tokens=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
done
case $device in cpu) dtype=fp32 ;; cuda) dtype=fp16 ;; *) echo "--device cpu|cuda" >&2; exit 2 ;; esac
out=${out:-bench-results/$(date +%Y%m%d-%H%M%S)-$device}
mkdir -p "$out"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x /opt/crtools/bin/python ]]; then PYTHON=/opt/crtools/bin/python; else PYTHON=python3; fi
fi
bin=${CROSSRANK:-target/release/crossrank}
if [[ ! -x $bin ]]; then
  cargo build --release --locked
fi

cr_args=(bench --model "$model" --pairs "$pairs" --n "$n" --device "$device" --warmup "$warmup" --quiet
         --json "$out/crossrank.json")
py_args=(--model "$model" --pairs "$pairs" --n "$n" --device "$device" --dtype "$dtype" --attn sdpa)
if [[ -n $threads ]]; then
  cr_args+=(--threads "$threads")
  py_args+=(--threads "$threads")
fi
[[ -n $batch_tokens ]] && cr_args+=(--batch-tokens "$batch_tokens")

echo "== crossrank ($device)" >&2
"$bin" "${cr_args[@]}" | tee "$out/crossrank.txt" >&2
for mode in st32 sorted; do
  echo "== PyTorch $mode ($device, $dtype)" >&2
  "$PYTHON" tools/bench_pytorch.py "${py_args[@]}" --mode "$mode" --out "$out/pytorch_$mode.json" > /dev/null
done

python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
cr = json.loads((out / "crossrank.json").read_text())
rows = [("crossrank", cr["device"], cr["n_pairs"], cr["seconds"], cr["pairs_per_s"], cr["tokens_per_s"])]
peers = {}
for mode in ("st32", "sorted"):
    p = json.loads((out / f"pytorch_{mode}.json").read_text())
    peers[mode] = p
    what = f'torch {p["torch_version"]} {p["dtype"]} {p["attn_implementation"]}, {p["threads"]} threads'
    rows.append((f"pytorch {mode}", what, p["n_pairs"], p["seconds"], p["pairs_per_s"], p["tokens_per_s"]))
print(f"{'engine':<16} {'pairs':>6} {'seconds':>9} {'pairs/s':>10} {'tokens/s':>11}  setup")
for name, what, n, s, pps, tps in rows:
    print(f"{name:<16} {n:>6} {s:>9.3f} {pps:>10.1f} {tps:>11.0f}  {what}")
for mode, p in peers.items():
    print(f"crossrank speedup vs pytorch {mode}: {cr['pairs_per_s'] / p['pairs_per_s']:.2f}x pairs/s")
summary = {"crossrank": cr, "pytorch": peers,
           "speedup": {m: round(cr["pairs_per_s"] / p["pairs_per_s"], 3) for m, p in peers.items()}}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"raw results: {out}/")
PY
