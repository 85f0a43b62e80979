#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets into fuzz/seeds/<target>/.

Standard library only. Run from anywhere: python3 fuzz/make_seeds.py
(tools/fuzz.sh also adds tests/fixtures/tiny/model.safetensors, the full 1.4 MB checkpoint of
the tiny config, to the safetensors corpus at run time, so it is not duplicated here.)

safetensors seeds, all valid files (header: u64 LE length + JSON; data: tensors back to back):
- micro_packed.safetensors: a complete checkpoint of the "micro" config the safetensors target
  also validates against (vocab 16, hidden 8, 2 heads, intermediate 12, 1 layer), new-impl
  names with the `new.` prefix, F32 and F16 mixed;
- micro_native.safetensors: the same model in transformers-native names (separate q/k/v and
  up/gate projections), `gte.` prefix, BF16 and F32 mixed;
- tiny_partial.safetensors: a few tensors of the tiny config (embeddings only), which
  GteTensors::new accepts and validate rejects;
- odd_dtypes.safetensors: unsupported dtypes and zero-sized / scalar shapes.
"""

import json
import os
import random
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(ROOT, "seeds")
TINY_CONFIG = os.path.join(ROOT, "..", "tests", "fixtures", "tiny", "config.json")

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1, "F64": 8, "I32": 4}


def encode(dtype, n, rng):
    if dtype == "F32":
        return struct.pack(f"<{n}f", *[rng.uniform(-1, 1) for _ in range(n)])
    if dtype == "F16":
        return struct.pack(f"<{n}e", *[rng.uniform(-1, 1) for _ in range(n)])
    if dtype == "BF16":
        # Upper halves of f32 values.
        words = struct.unpack(f"<{n}I", struct.pack(f"<{n}f", *[rng.uniform(-1, 1) for _ in range(n)]))
        return struct.pack(f"<{n}H", *[w >> 16 for w in words])
    return bytes(rng.randrange(256) for _ in range(n * SIZES[dtype]))


def safetensors(tensors, seed=0):
    """tensors: list of (name, dtype, shape)."""
    rng = random.Random(seed)
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, dtype, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        blob = encode(dtype, n, rng)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes
    return struct.pack("<Q", len(text)) + text + data


def gte_tensors(vocab, h, inter, layers, native, prefix, dtypes):
    out = []
    dt = iter(dtypes * 1000)
    p = prefix
    out.append((f"{p}embeddings.word_embeddings.weight", next(dt), [vocab, h]))
    out.append((f"{p}embeddings.token_type_embeddings.weight", next(dt), [1, h]))
    out.append((f"{p}embeddings.LayerNorm.weight", next(dt), [h]))
    out.append((f"{p}embeddings.LayerNorm.bias", next(dt), [h]))
    for i in range(layers):
        if native:
            l = f"{p}layers.{i}."
            for x in "qkv":
                out.append((f"{l}self_attn.{x}_proj.weight", next(dt), [h, h]))
                out.append((f"{l}self_attn.{x}_proj.bias", next(dt), [h]))
            out.append((f"{l}self_attn.o_proj.weight", next(dt), [h, h]))
            out.append((f"{l}self_attn.o_proj.bias", next(dt), [h]))
            out.append((f"{l}post_attention_layernorm.weight", next(dt), [h]))
            out.append((f"{l}post_attention_layernorm.bias", next(dt), [h]))
            out.append((f"{l}mlp.up_proj.weight", next(dt), [inter, h]))
            out.append((f"{l}mlp.gate_proj.weight", next(dt), [inter, h]))
            out.append((f"{l}mlp.down_proj.weight", next(dt), [h, inter]))
            out.append((f"{l}mlp.down_proj.bias", next(dt), [h]))
            out.append((f"{l}post_mlp_layernorm.weight", next(dt), [h]))
            out.append((f"{l}post_mlp_layernorm.bias", next(dt), [h]))
        else:
            l = f"{p}encoder.layer.{i}."
            out.append((f"{l}attention.qkv_proj.weight", next(dt), [3 * h, h]))
            out.append((f"{l}attention.qkv_proj.bias", next(dt), [3 * h]))
            out.append((f"{l}attention.o_proj.weight", next(dt), [h, h]))
            out.append((f"{l}attention.o_proj.bias", next(dt), [h]))
            out.append((f"{l}attn_ln.weight", next(dt), [h]))
            out.append((f"{l}attn_ln.bias", next(dt), [h]))
            out.append((f"{l}mlp.up_gate_proj.weight", next(dt), [2 * inter, h]))
            out.append((f"{l}mlp.down_proj.weight", next(dt), [h, inter]))
            out.append((f"{l}mlp.down_proj.bias", next(dt), [h]))
            out.append((f"{l}mlp_ln.weight", next(dt), [h]))
            out.append((f"{l}mlp_ln.bias", next(dt), [h]))
    out.append((f"{p}pooler.dense.weight", next(dt), [h, h]))
    out.append((f"{p}pooler.dense.bias", next(dt), [h]))
    out.append(("classifier.weight", next(dt), [1, h]))
    out.append(("classifier.bias", next(dt), [1]))
    return out


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    micro = dict(vocab=16, h=8, inter=12, layers=1)
    write("safetensors", "micro_packed.safetensors",
          safetensors(gte_tensors(**micro, native=False, prefix="new.", dtypes=["F32", "F16"]), 1))
    write("safetensors", "micro_native.safetensors",
          safetensors(gte_tensors(**micro, native=True, prefix="gte.", dtypes=["BF16", "F32"]), 2))
    write("safetensors", "tiny_partial.safetensors",
          safetensors(gte_tensors(4032, 64, 128, 2, False, "new.", ["F16"])[1:4], 3))
    write("safetensors", "odd_dtypes.safetensors", safetensors([
        ("new.embeddings.word_embeddings.weight", "I64", [2, 2]),
        ("classifier.bias", "F32", []),
        ("classifier.weight", "F16", [0, 8]),
        ("position_ids", "I64", [1, 4]),
        ("x", "BOOL", [3]),
    ], 4))

    # config: the tiny fixture, a minimal transformers-native config, and a few near misses.
    with open(TINY_CONFIG, "rb") as f:
        write("config", "tiny.json", f.read())
    write("config", "native_min.json", b'{"model_type": "gte"}')
    write("config", "native_linear.json", json.dumps({
        "model_type": "gte", "hidden_size": 1024, "num_attention_heads": 16, "num_hidden_layers": 24,
        "intermediate_size": 4096, "vocab_size": 250048, "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 160000},
        "sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"},
        "id2label": {"0": "LABEL_0"}, "head_dim": 64, "dtype": "bfloat16"}).encode())
    write("config", "tokenizer_config.json", b'{"model_max_length": 8192, "tokenizer_class": "XLMRobertaTokenizer"}')
    write("config", "huge_max_length.json", b'{"model_max_length": 1000000000000000019884624838656}')
    write("config", "bad_heads.json", b'{"model_type": "new", "vocab_size": 10, "hidden_size": 10, '
          b'"num_hidden_layers": 1, "num_attention_heads": 3, "intermediate_size": 4}')

    # records: JSONL and TSV lines, good and bad, with CRLF and invalid UTF-8.
    write("records", "good.jsonl",
          b'{"id": 1, "query": "what is a reranker?", "document": "A cross-encoder scores pairs."}\n'
          b'{"query": "\\u00e9t\\u00e9", "document": "", "meta": {"k": [1, 2.5, null, true]}}\n'
          b'{"query": "q", "document": "d", "logit": 3, "score": "x"}\r\n')
    write("records", "bad.jsonl",
          b'{"query": "q"}\n\n   \n[1, 2]\n{"query": 1, "document": "d"}\n{"query": "q", "document": "d"\n'
          b'{"query": "\xff", "document": "d"}\n{}')
    write("records", "good.tsv", b"what is a reranker?\tA cross-encoder scores pairs.\n\t\nq\td\r\n")
    write("records", "bad.tsv", b"no tab here\na\tb\tc\n\n\xc3\x28\tx\nlast\tline without newline")
    write("records", "mixed.txt", "日本語\tテキスト\n{\"query\": \"a\tb\", \"document\": \"c\"}\n\r\n\r".encode())


if __name__ == "__main__":
    main()
