"""Shared fixtures: the committed tiny model, the CLI as the reference, sample pairs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "tiny"
EXAMPLE_PAIRS = REPO / "examples" / "pairs.jsonl"


def cli_binary() -> list[str]:
    """The crossrank CLI: $CROSSRANK_CLI, else a built binary, else `cargo run`."""
    explicit = os.environ.get("CROSSRANK_CLI")
    if explicit:
        return [explicit]
    for profile in ("release", "debug"):
        candidate = REPO / "target" / profile / "crossrank"
        if candidate.is_file():
            return [str(candidate)]
    if shutil.which("cargo"):
        return ["cargo", "run", "--quiet", "--manifest-path", str(REPO / "Cargo.toml"), "--"]
    pytest.skip("no crossrank CLI (set CROSSRANK_CLI or build it)")


def cli_score(pairs: list[tuple[str, str]], tmp_path: Path, *extra: str) -> tuple[np.ndarray, np.ndarray]:
    """(logits, scores) of `crossrank score` on the CPU for `pairs`, as float32 arrays."""
    src = tmp_path / "cli-in.jsonl"
    out = tmp_path / "cli-out.jsonl"
    with src.open("w", encoding="utf-8") as f:
        for q, d in pairs:
            f.write(json.dumps({"query": q, "document": d}, ensure_ascii=False) + "\n")
    subprocess.run(
        [*cli_binary(), "score", "--model", str(TINY), "--input", str(src), "--output", str(out),
         "--device", "cpu", "--quiet", *extra],
        check=True,
    )
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(pairs)
    # The CLI prints each f32 with enough digits to round-trip, so float32(value) is exact.
    return (np.array([r["logit"] for r in rows], dtype=np.float32),
            np.array([r["score"] for r in rows], dtype=np.float32))


def example_pairs() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in EXAMPLE_PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["query"], r["document"]) for r in rows]


def many_pairs(n: int) -> list[tuple[str, str]]:
    """n distinct pairs of varied length built from the example pairs."""
    base = example_pairs()
    out = []
    for i in range(n):
        q, d = base[i % len(base)]
        out.append((f"{q} {i}", d if i % 3 else f"{d}, dept. {i % 97}"))
    return out


def bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).view(np.uint32)


@pytest.fixture(scope="session")
def model():
    import crossrank

    return crossrank.CrossEncoder(str(TINY), device="cpu")
