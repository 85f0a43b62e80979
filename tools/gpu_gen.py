"""Generators for the GPU scripts (tools/gpu-check.sh, tools/gpu-perf.sh), run on the GPU machine.

    python3 tools/gpu_gen.py checkpoint DIR TOKENIZER_JSON [--layers 12]
        A seeded random checkpoint with the real gte reranker shapes in the "new" packed
        layout (12 layers, hidden 768, 250048 rows), F16, about 612 MB. numpy only.
    python3 tools/gpu_gen.py pairs FILE TOKENIZER_JSON N [--min-words A --max-words B]
        N seeded (query, document) JSONL pairs of real words from the tokenizer's vocabulary.
        Default lengths are short like affiliation matching (about 15..110 tokens per pair);
        with --max-words 1500 the lengths are log-uniform and reach the 2,048-token range
        (the torch drift comparison). Standard library only (runs where numpy is missing).

Checkpoint scales follow tools/make_fixture.py (make_weights): unit-scale embeddings, q/k
projections large enough that attention scores have a std around 2, LayerNorm gains around 1,
a head that spreads logits over a few units. Safetensors are written by hand (no torch).
"""

import argparse
import json
import math
import os
import random
import sys
import time


def checkpoint(out, tok_path, layers):
    import numpy as np

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


def pairs(out, tok_path, n, min_words, max_words):
    vocab = json.load(open(tok_path, encoding="utf-8"))["model"]["vocab"]
    words = [p[1:] for p, _ in vocab if p.startswith("\u2581") and len(p) > 3 and p[1:].isalpha()]
    if not words:
        sys.exit(f"{tok_path}: no whole-word pieces in the vocabulary")
    rng = random.Random(0)

    def length(lo, hi):
        if max_words is None:
            return rng.randint(lo, hi)
        # log-uniform: most pairs short, every length up to the longest exercised
        return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))

    q_lo, q_hi = (3, 12) if max_words is None else (min_words, max(min_words, min(max_words // 4, 64)))
    d_lo, d_hi = (8, 90) if max_words is None else (min_words, max_words)
    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            q = " ".join(rng.choice(words) for _ in range(length(q_lo, q_hi)))
            d = " ".join(rng.choice(words) for _ in range(length(d_lo, d_hi)))
            f.write(json.dumps({"id": i, "query": q, "document": d}, ensure_ascii=False) + "\n")
    print(f"{n} pairs from {len(words)} words -> {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("checkpoint")
    c.add_argument("out")
    c.add_argument("tokenizer")
    c.add_argument("--layers", type=int, default=12)
    p = sub.add_parser("pairs")
    p.add_argument("out")
    p.add_argument("tokenizer")
    p.add_argument("n", type=int)
    p.add_argument("--min-words", type=int, default=1)
    p.add_argument("--max-words", type=int, default=None)
    a = ap.parse_args()
    if a.what == "checkpoint":
        checkpoint(a.out, a.tokenizer, a.layers)
    else:
        pairs(a.out, a.tokenizer, a.n, a.min_words, a.max_words)


if __name__ == "__main__":
    main()
