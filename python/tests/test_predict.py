"""CrossEncoder.predict / rank semantics against sentence-transformers' API and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest

import crossrank
from conftest import TINY, bits, cli_score, example_pairs, many_pairs


class Identity:  # recognized by class name, as torch.nn.Identity
    def __call__(self, x):
        raise AssertionError("the engine computes Identity itself")


class Sigmoid:  # as torch.nn.Sigmoid
    def __call__(self, x):
        raise AssertionError("the engine computes Sigmoid itself")


def test_scores_bit_equal_to_cli(model, tmp_path):
    pairs = many_pairs(3500)  # over 1024: the CLI's growing windows (1024, 2048, ...) are followed
    logits, scores = cli_score(pairs, tmp_path)
    got = model.predict(pairs)
    assert got.dtype == np.float32 and got.shape == (3500,)
    np.testing.assert_array_equal(bits(got), bits(scores))
    raw = model.predict(pairs, activation_fn=Identity())
    np.testing.assert_array_equal(bits(raw), bits(logits))


def test_max_length_and_batch_tokens_match_cli(tmp_path):
    pairs = many_pairs(60)
    logits, _ = cli_score(pairs, tmp_path, "--max-length", "16", "--batch-tokens", "64")
    m = crossrank.CrossEncoder(TINY, device="cpu", max_length=16, batch_tokens=64)
    assert m.max_length == 16
    np.testing.assert_array_equal(bits(m.predict(pairs, activation_fn=Identity())), bits(logits))


def test_one_pair_is_a_scalar(model):
    q, d = example_pairs()[0]
    one = model.predict((q, d))
    assert isinstance(one, np.float32) and np.ndim(one) == 0
    assert model.predict([q, d]) == one  # a list of two str is one pair, as in sentence-transformers
    batch = model.predict([(q, d), (d, q)])
    assert batch.shape == (2,)
    # Same pair, other batch company: equal to float32 rounding (the CPU path is batch invariant
    # to ~1e-6, not bit for bit; bit equality with the CLI holds for the same input).
    assert abs(float(batch[0]) - float(one)) <= 1e-5


def test_empty_input(model):
    out = model.predict([])
    assert isinstance(out, np.ndarray) and out.shape == (0,) and out.dtype == np.float32
    assert model.rank("q", []) == []


def test_activation_options(model):
    pairs = example_pairs()
    default = model.predict(pairs)
    logits = model.predict(pairs, activation_fn=Identity())
    assert not np.array_equal(default, logits)
    np.testing.assert_array_equal(bits(model.predict(pairs, activation_fn=Sigmoid())), bits(default))
    # the config activation is Sigmoid; computed with the engine's formula
    np.testing.assert_allclose(default, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-6)
    # any other callable gets the float32 logits
    seen = []

    def double(x):
        seen.append(x.dtype)
        return x * 2

    np.testing.assert_array_equal(model.predict(pairs, activation_fn=double), logits * 2)
    assert seen == [np.float32]
    # apply_softmax changes nothing for one label (sentence-transformers applies it only when num_labels > 1)
    np.testing.assert_array_equal(model.predict(pairs, apply_softmax=True), default)
    # a constructor default activation
    m = crossrank.CrossEncoder(TINY, device="cpu", activation_fn=Identity())
    np.testing.assert_array_equal(bits(m.predict(pairs)), bits(logits))
    with pytest.raises(TypeError, match="callable"):
        model.predict(pairs, activation_fn=42)


def test_convert_options(model):
    pairs = example_pairs()[:3]
    as_list = model.predict(pairs, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == 3
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="torch"):
            model.predict(pairs, convert_to_tensor=True)
    else:
        t = model.predict(pairs, convert_to_tensor=True)
        assert tuple(t.shape) == (3,)


def test_batch_size_is_only_a_hint(model):
    pairs = many_pairs(50)
    np.testing.assert_array_equal(bits(model.predict(pairs, batch_size=1)), bits(model.predict(pairs, batch_size=512)))


def test_progress_bar(model, capsys):
    pairs = many_pairs(40)
    with_bar = model.predict(pairs, show_progress_bar=True)
    np.testing.assert_array_equal(bits(with_bar), bits(model.predict(pairs, show_progress_bar=False)))
    assert "40" in capsys.readouterr().err  # tqdm or the plain line, on stderr


def test_rank(model):
    docs = [d for _, d in example_pairs()[:8]]
    query = example_pairs()[0][0]
    scores = model.predict([(query, d) for d in docs])
    ranked = model.rank(query, docs)
    assert [r["corpus_id"] for r in ranked] == sorted(range(8), key=lambda i: (-scores[i], i))
    assert all(set(r) == {"corpus_id", "score"} for r in ranked)
    assert [bits(r["score"]) for r in ranked] == [bits(scores[r["corpus_id"]]) for r in ranked]
    top = model.rank(query, docs, top_k=3, return_documents=True)
    assert [r["corpus_id"] for r in top] == [r["corpus_id"] for r in ranked[:3]]
    assert all(r["text"] == docs[r["corpus_id"]] for r in top)
    assert model.rank(query, docs, top_k=0) == []
    assert len(model.rank(query, docs, top_k=100)) == 8


def test_rank_ties_keep_input_order(model):
    docs = ["same document", "other text here", "same document", "same document"]
    ranked = model.rank("a query", docs)
    tied = [r["corpus_id"] for r in ranked if docs[r["corpus_id"]] == "same document"]
    assert tied == [0, 2, 3]
    # with a constant activation every document ties on score: equal logits keep input order
    flat = model.rank("a query", ["x", "x", "x"], activation_fn=lambda x: np.zeros_like(x))
    assert [r["corpus_id"] for r in flat] == [0, 1, 2]


def test_bad_pairs(model):
    with pytest.raises(TypeError, match=r"pair 1: document must be str, got int"):
        model.predict([("q", "d"), ("q", 3)])
    with pytest.raises(TypeError, match=r"pair 0: query must be str, got NoneType"):
        model.predict([(None, "d")])
    with pytest.raises(TypeError, match=r"sentences\[1\] must be a \(query, document\) pair"):
        model.predict([("q", "d"), "not a pair"])
    with pytest.raises(ValueError, match=r"sentences\[0\] has 3 elements"):
        model.predict([("q", "d", "e")])
    with pytest.raises(ValueError, match=r"pair 0: query is not valid Unicode"):
        model.predict([("\ud800 lone surrogate", "d")])
    with pytest.raises(TypeError, match="query must be str"):
        model.rank(3, ["d"])
    with pytest.raises(ValueError, match="top_k"):
        model.rank("q", ["d"], top_k=-1)


def test_load_errors(tmp_path):
    with pytest.raises(OSError, match="not found"):
        crossrank.CrossEncoder(str(tmp_path / "missing"), device="cpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in TINY.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes((TINY / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(OSError, match="model.safetensors"):
        crossrank.CrossEncoder(broken, device="cpu")
    with pytest.raises(ValueError, match="unknown device"):
        crossrank.CrossEncoder(TINY, device="tpu")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        crossrank.CrossEncoder(TINY, device="cpu", max_length=10**6)
    with pytest.raises(ValueError, match="num_labels"):
        crossrank.CrossEncoder(TINY, device="cpu", num_labels=3)


def test_cuda_unavailable_is_runtime_error():
    try:
        m = crossrank.CrossEncoder(TINY, device="cuda")
    except RuntimeError as e:
        assert str(e)  # carries the engine's reason (driver or library missing)
    else:  # a GPU machine
        assert "cuda" in m.device.lower()
    auto = crossrank.CrossEncoder(TINY)  # auto falls back to the CPU where CUDA is unusable
    assert auto.device


def test_torch_only_options_warn():
    with pytest.warns(UserWarning, match="trust_remote_code"):
        crossrank.CrossEncoder(TINY, device="cpu", trust_remote_code=True)


def test_info(model):
    assert model.num_labels == 1
    assert model.max_length == model.engine.max_length > 0
    assert model.engine.activation == "sigmoid"
    assert "cpu" in model.device
    assert crossrank.__version__
    assert not math.isnan(float(model.predict(("a", "b"))))
