"""Opt-in: crossrank against sentence-transformers' own CrossEncoder on the same checkpoint.

Skipped unless CROSSRANK_ST_FIXTURE names a model directory sentence-transformers loads without
remote code (transformers' native layout, model_type "gte": the renaming that
tests/reference.rs `native_transformers_layout_gives_the_same_logits` applies to the tiny fixture)
and sentence-transformers (with torch) is installed:

    CROSSRANK_ST_FIXTURE=/tmp/native-fixture python -m pytest python/tests -k sentence_transformers
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import crossrank
from conftest import many_pairs

FIXTURE = os.environ.get("CROSSRANK_ST_FIXTURE")

pytestmark = pytest.mark.skipif(not FIXTURE, reason="set CROSSRANK_ST_FIXTURE to a native-layout model directory")


def test_predict_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    torch = pytest.importorskip("torch")
    pairs = many_pairs(64)
    reference = st.CrossEncoder(FIXTURE, device="cpu").predict(pairs, activation_fn=torch.nn.Identity())
    ours = crossrank.CrossEncoder(FIXTURE, device="cpu").predict(pairs, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(ours, np.asarray(reference, dtype=np.float32), rtol=0, atol=1e-5)
