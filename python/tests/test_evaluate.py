"""CrossEncoder.evaluate: the engine's reranking metrics (src/eval.rs) from Python, equal to the
CLI's `crossrank eval` and to sentence-transformers' evaluator results recorded for the
committed fixtures (tests/fixtures/eval/reference, made by tools/eval_reference.py)."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import REPO, TINY, cli_binary

EVAL = REPO / "tests" / "fixtures" / "eval"


def reference(name: str) -> dict:
    return json.loads((EVAL / "reference" / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("fixture, input_name", [("samples", "samples.jsonl"), ("ranked", "ranked.jsonl"),
                                                 ("pairs-tsv", "pairs.tsv")])
def test_evaluate_matches_the_recorded_evaluator(model, fixture, input_name):
    metrics = model.evaluate(str(EVAL / input_name))
    expected = reference(fixture)["metrics"]
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key


def test_samples_as_dicts_equal_the_file(model):
    rows = [json.loads(line) for line in (EVAL / "ranked.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    from_dicts, per_query = model.evaluate(rows, return_per_query=True)
    from_file = model.evaluate(EVAL / "ranked.jsonl")
    assert from_dicts == from_file
    assert len(per_query) == from_file["queries"]
    assert "base_map" in from_file and "model_card" in from_file


def test_evaluate_equals_the_cli(model, tmp_path):
    out = tmp_path / "eval.json"
    subprocess.run([*cli_binary(), "eval", "--model", str(TINY), "--device", "cpu", "--quiet",
                    "--input", str(EVAL / "samples.jsonl"), "--at-k", "3", "--json", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    assert model.evaluate(EVAL / "samples.jsonl", at_k=3) == json.loads(out.read_text(encoding="utf-8"))


def test_bad_samples_raise_value_error_naming_the_line(model):
    with pytest.raises(ValueError, match="samples:2:"):
        model.evaluate([{"query": "q", "positive": ["a"], "negative": ["b"]}, {"query": "q2"}])
    with pytest.raises(TypeError):
        model.evaluate(["not a dict"])
