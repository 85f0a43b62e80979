"""PyTorch baseline for the reranker: transformers' native GTE on a pairs file.

This is the "peer" our engine is compared with. It loads a "new"-layout checkpoint into
transformers' native GteForSequenceClassification (tools/gte_reference.py, SDPA
attention, no remote code, no Hub access) and scores (query, document) pairs.

Modes:
    st32    exactly what sentence-transformers CrossEncoder.predict does: pairs in input
            order, batches of --batch-size (32), each tokenized with the fast tokenizer
            (padding to the longest in the batch, truncation longest_first at max_length),
            forward under torch.inference_mode(), sigmoid.
    sorted  a best-effort PyTorch: tokenize everything, sort by length, fill batches up to
            --max-tokens padded tokens (rows x longest row), forward, restore input order.

Timing covers tokenization + forward (+ device synchronisation on CUDA) for all pairs,
after one untimed warm-up batch; model loading is excluded.

Usage:

    python tools/bench_pytorch.py --model DIR --pairs pairs.jsonl [--n N] --device cpu|cuda \
        --dtype fp32|fp16|bf16 --mode st32|sorted [--batch-size 32] [--max-tokens 16384] \
        [--max-length L] [--threads N] [--out results.json] [--scores-out scores.jsonl]

--pairs takes the JSONL ({"id", "query", "document"}) or TSV (id, query, document) written
by tools/gen_pairs.py. --scores-out writes {"id", "logit", "score"} per pair in input order.

Requirements:

    pip install torch transformers==5.24.0 tokenizers safetensors numpy
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gte_reference as ref  # noqa: E402  (also sets HF_HUB_OFFLINE before transformers loads)

import torch  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def read_pairs(path, n=None):
    """(ids, pairs) from a gen_pairs.py JSONL or TSV file."""
    ids, pairs = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("{"):
                obj = json.loads(line)
                pid, q, d = obj.get("id", str(len(ids))), obj["query"], obj["document"]
            else:
                pid, q, d = line.split("\t", 2)
            ids.append(pid)
            pairs.append((q, d))
            if n is not None and len(pairs) >= n:
                break
    return ids, pairs


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class St32:
    """sentence-transformers CrossEncoder.predict, batch by batch in input order."""

    def __init__(self, model, tokenizer, max_length, batch_size, device):
        self.model, self.tok, self.max_length = model, tokenizer, max_length
        self.batch_size, self.device = batch_size, device
        self.real_tokens = self.padded_tokens = self.batches = 0

    def run(self, pairs):
        logits = []
        for start in range(0, len(pairs), self.batch_size):
            batch = [list(p) for p in pairs[start : start + self.batch_size]]
            enc = self.tok(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                out = self.model(**enc).logits
            logits.append(out.float().cpu())  # .cpu() also waits for the device
            self.real_tokens += int(enc["attention_mask"].sum())
            self.padded_tokens += enc["input_ids"].numel()
            self.batches += 1
        return torch.cat(logits)[:, 0]


class Sorted:
    """Length-sorted batches under a padded-token budget; results back in input order."""

    def __init__(self, model, tokenizer, max_length, max_tokens, pad_id, device):
        self.model, self.tok, self.max_length, self.max_tokens = model, tokenizer, max_length, max_tokens
        self.pad_id, self.device = pad_id, device
        self.real_tokens = self.padded_tokens = self.batches = 0

    def run(self, pairs):
        self.tok.enable_truncation(self.max_length, strategy="longest_first")
        encoded = [e.ids for e in self.tok.encode_batch(pairs)]
        # Longest first: the big, memory-hungry batches run while nothing else is allocated.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        logits = torch.empty(len(encoded))
        start = 0
        while start < len(order):
            width = len(encoded[order[start]])  # rows are sorted, so the first is the longest
            rows = max(1, self.max_tokens // max(width, 1))
            idx = order[start : start + rows]
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[r, : len(encoded[i])] = 1
            with torch.inference_mode():
                out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logits[idx] = out.float().cpu()[:, 0]
            self.real_tokens += int(mask.sum())
            self.padded_tokens += ids.numel()
            self.batches += 1
            start += len(idx)
        return logits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path, help="checkpoint directory (\"new\" layout)")
    ap.add_argument("--pairs", required=True, type=Path)
    ap.add_argument("--n", type=int, default=None, help="use the first N pairs")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--mode", choices=["st32", "sorted"], default="st32")
    ap.add_argument("--batch-size", type=int, default=32, help="st32 batch size")
    ap.add_argument("--max-tokens", type=int, default=16384, help="sorted: padded tokens per batch")
    ap.add_argument("--max-length", type=int, default=None,
                    help="truncation length (default: min(model_max_length, max_position_embeddings))")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--out", type=Path, default=None, help="write the result JSON here too")
    ap.add_argument("--scores-out", type=Path, default=None)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA requested but not available")
    max_length = args.max_length or ref.default_max_length(args.model)

    pair_ids, pairs = read_pairs(args.pairs, args.n)
    if not pairs:
        sys.exit("no pairs")

    t_load = time.perf_counter()
    model = ref.hf_model(args.model, dtype=DTYPES[args.dtype], attn_implementation=args.attn, device=args.device)
    tok_file = str(args.model / "tokenizer.json")
    if args.mode == "st32":
        from transformers import PreTrainedTokenizerFast

        # What CrossEncoder holds: a fast tokenizer over tokenizer.json, XLM-R inputs only.
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=tok_file, pad_token="<pad>", model_max_length=max_length,
                                            model_input_names=["input_ids", "attention_mask"])
        runner = St32(model, tokenizer, max_length, args.batch_size, device)
    else:
        tokenizer = ref.load_tokenizer(tok_file)
        pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 1
        runner = Sorted(model, tokenizer, max_length, args.max_tokens, pad_id, device)
    load_s = time.perf_counter() - t_load

    # Warm-up (untimed): one batch through the same path, then reset the counters.
    runner.run(pairs[: args.batch_size if args.mode == "st32" else min(len(pairs), 64)])
    sync(device)
    runner.real_tokens = runner.padded_tokens = runner.batches = 0

    t0 = time.perf_counter()
    logits = runner.run(pairs)
    sync(device)
    seconds = time.perf_counter() - t0

    scores = torch.sigmoid(logits.double())
    result = {
        "mode": args.mode,
        "device": args.device,
        "dtype": args.dtype,
        "attn_implementation": args.attn,
        "n_pairs": len(pairs),
        "seconds": round(seconds, 4),
        "pairs_per_s": round(len(pairs) / seconds, 2),
        "tokens_per_s": round(runner.real_tokens / seconds, 1),
        "real_tokens": runner.real_tokens,
        "padded_tokens": runner.padded_tokens,
        "batches": runner.batches,
        "batch_size": args.batch_size if args.mode == "st32" else None,
        "max_tokens": args.max_tokens if args.mode == "sorted" else None,
        "max_length": max_length,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "transformers_version": __import__("transformers").__version__,
        "cpu": cpu_name(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "model": str(args.model),
        "pairs_file": str(args.pairs),
        "load_seconds": round(load_s, 2),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.scores_out:
        with open(args.scores_out, "w", encoding="utf-8") as f:
            for pid, lg, sc in zip(pair_ids, logits.tolist(), scores.tolist()):
                f.write(json.dumps({"id": pid, "logit": lg, "score": sc}) + "\n")


if __name__ == "__main__":
    main()
