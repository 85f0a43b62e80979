#!/usr/bin/env python3
"""sentence-transformers' CrossEncoderRerankingEvaluator on crossrank's own scores.

The evaluator only needs a model object with `.predict(pairs, ...)`. This script scores every
(query, document) pair the samples can ask for with `crossrank score` (so the scores are
exactly the ones `crossrank eval` uses), then runs the real evaluator with a stand-in model
that returns those scores as float32, as `CrossEncoder.predict` does. The evaluator's metrics
and its model-card strings are printed (or written) as JSON, to compare with
`crossrank eval --json`.

    pip install sentence-transformers scikit-learn
    python tools/eval_reference.py --crossrank target/release/crossrank \
        --model tests/fixtures/tiny --input tests/fixtures/eval/ranked.jsonl [--at-k 10] \
        [--always-rerank-positives true|false] [--output ref.json]

Ties: the evaluator's MRR ranks with numpy's `argsort(scores)[::-1]`; on x86 numpy 2 sorts
with SIMD networks that order tied scores in no stable way. `--numpy-without-simd` turns that
dispatch off (NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4", checked), so lists of up to 16
documents are sorted by numpy's stable insertion sort: the tie order `crossrank eval` uses.

Inputs: the evaluator's samples JSONL, or labeled pairs (`{"query", "document", "label"}`
JSONL, `query<TAB>document<TAB>label` TSV), grouped by query as `crossrank eval` groups them.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


def read_samples(path):
    """The evaluator's samples, converting labeled pairs (first-appearance query order)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if path.endswith((".tsv", ".txt")):
        if lines and lines[0] == "query\tdocument\tlabel":
            lines = lines[1:]
        for line in lines:
            query, document, label = line.split("\t")
            rows.append({"query": query, "document": document, "label": float(label)})
    else:
        rows = [json.loads(line) for line in lines]
    if rows and "positive" in rows[0]:
        return rows
    groups = {}
    for row in rows:
        sample = groups.setdefault(row["query"], {"query": row["query"], "positive": [], "negative": []})
        (sample["positive"] if float(row["label"]) == 1.0 else sample["negative"]).append(row["document"])
    return list(groups.values())


def all_pairs(samples):
    """Every (query, document) pair the evaluator may score, each once."""
    seen = {}
    for s in samples:
        positive = [s["positive"]] if isinstance(s["positive"], str) else s["positive"]
        for doc in positive + s.get("negative", []) + s.get("documents", []):
            seen.setdefault((s["query"], doc), None)
    return list(seen)


def crossrank_scores(crossrank, model, pairs):
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "pairs.jsonl")
        out = os.path.join(tmp, "scored.jsonl")
        with open(inp, "w", encoding="utf-8") as f:
            for q, d in pairs:
                f.write(json.dumps({"query": q, "document": d}) + "\n")
        subprocess.run(
            [crossrank, "score", "--device", "cpu", "--quiet", "--model", model, "-i", inp, "-o", out],
            check=True,
        )
        with open(out, encoding="utf-8") as f:
            scored = [json.loads(line) for line in f]
    assert len(scored) == len(pairs), "crossrank score answered every pair"
    return {(r["query"], r["document"]): r["score"] for r in scored}


class CardData:
    """Receives the evaluator's model-card metrics (the "0.9666 (-0.0334)" strings)."""

    def __init__(self):
        self.metrics = None

    def set_evaluation_metrics(self, evaluator, metrics, epoch=0, step=0):
        self.metrics = dict(metrics)


class ScoresModel:
    """Stands in for CrossEncoder: `predict` returns crossrank's scores as float32."""

    def __init__(self, scores):
        self.scores = scores
        self.model_card_data = CardData()

    def predict(self, pairs, **kwargs):
        return np.array([self.scores[(q, d)] for q, d in pairs], dtype=np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crossrank", default="target/release/crossrank")
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--at-k", type=int, default=10)
    ap.add_argument("--always-rerank-positives", default="true", choices=["true", "false"])
    ap.add_argument("--output", default="-")
    ap.add_argument("--numpy-without-simd", action="store_true", help="numpy's scalar sort (see above)")
    args = ap.parse_args()
    if args.numpy_without_simd:
        os.environ["NPY_DISABLE_CPU_FEATURES"] = "X86_V3 X86_V4"
    global np
    import numpy as np
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    ties = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0], dtype=np.float32)
    numpy_sort_is_stable = bool((np.argsort(ties) == np.argsort(ties, kind="stable")).all())
    if args.numpy_without_simd and not numpy_sort_is_stable:
        sys.exit("--numpy-without-simd: numpy's argsort of 16 tied values is still not stable")

    samples = read_samples(args.input)
    model = ScoresModel(crossrank_scores(args.crossrank, args.model, all_pairs(samples)))
    evaluator = CrossEncoderRerankingEvaluator(
        samples, at_k=args.at_k, always_rerank_positives=args.always_rerank_positives == "true", write_csv=False
    )
    metrics = {k: float(v) for k, v in evaluator(model).items()}
    import sentence_transformers
    import sklearn

    report = {
        "input": args.input,
        "at_k": args.at_k,
        "always_rerank_positives": args.always_rerank_positives == "true",
        "metrics": metrics,
        "model_card": model.model_card_data.metrics,
        "numpy_without_simd": args.numpy_without_simd,
        "numpy_argsort_stable_up_to_16": numpy_sort_is_stable,
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "scikit_learn": sklearn.__version__,
            "numpy": np.__version__,
        },
    }
    text = json.dumps(report, indent=2) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
