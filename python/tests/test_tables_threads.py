"""score_table on pyarrow/pandas, concurrency, the GIL, and memory over repeated calls."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import crossrank
from conftest import TINY, bits, cli_score, many_pairs

pa = pytest.importorskip("pyarrow")


def test_arrow_table_round_trip(model, tmp_path):
    pairs = many_pairs(120)
    logits, scores = cli_score(pairs, tmp_path)
    table = pa.table({
        "id": list(range(120)),
        "q": pa.array([p[0] for p in pairs], type=pa.large_string()),
        "doc": pa.array([p[1] for p in pairs], type=pa.string()),
    })
    out = model.score_table(table, query_column="q", document_column="doc")
    assert out.schema.names == ["id", "q", "doc", "logit", "score"]
    assert out.schema.field("logit").type == pa.float32() and out.schema.field("score").type == pa.float32()
    assert out.column("id").to_pylist() == list(range(120))
    np.testing.assert_array_equal(bits(out.column("logit").to_numpy()), bits(logits))
    np.testing.assert_array_equal(bits(out.column("score").to_numpy()), bits(scores))
    # a RecordBatch gives a RecordBatch; existing logit/score columns are replaced, not duplicated
    batch = out.to_batches()[0]
    again = model.score_table(batch, query_column="q", document_column="doc")
    assert isinstance(again, pa.RecordBatch) and again.schema.names == out.schema.names


def test_string_view_columns(model):
    if not hasattr(pa, "string_view"):
        pytest.skip("pyarrow without string_view")
    table = pa.table({"query": pa.array(["a", "b"], type=pa.string_view()),
                      "document": pa.array(["c", "d"], type=pa.string_view())})
    out = model.score_table(table)
    np.testing.assert_array_equal(bits(out.column("score").to_numpy()), bits(model.predict([("a", "c"), ("b", "d")])))


def test_table_errors_and_error_column(model):
    table = pa.table({"query": ["a", None, "c"], "document": ["x", "y", "z"]})
    with pytest.raises(TypeError, match=r"row 1: column 'query' must be str, got NoneType"):
        model.score_table(table)
    with pytest.raises(ValueError, match=r"no column 'document_text'"):
        model.score_table(table, document_column="document_text")
    out = model.score_table(table, error_column="error")
    assert out.num_rows == 3
    assert out.column("error").to_pylist()[0] is None and "row 1" in out.column("error").to_pylist()[1]
    assert out.column("logit").to_pylist()[1] is None  # null, not a made-up score
    expected = model.predict([("a", "x"), ("c", "z")])
    got = out.column("score").to_pylist()
    assert np.float32(got[0]) == expected[0] and np.float32(got[2]) == expected[1]


def test_pandas_dataframe(model):
    pd = pytest.importorskip("pandas")
    pairs = many_pairs(30)
    df = pd.DataFrame({"query": [p[0] for p in pairs], "document": [p[1] for p in pairs], "k": range(30)})
    out = model.score_table(df)
    assert list(out.columns) == ["query", "document", "k", "logit", "score"]
    assert out["score"].dtype == np.float32
    np.testing.assert_array_equal(bits(out["score"].to_numpy()), bits(model.predict(pairs)))
    assert "logit" not in df.columns  # the input is not modified


def test_two_threads_share_one_model(model):
    pairs_a, pairs_b = many_pairs(200), many_pairs(260)[60:]
    expected_a, expected_b = model.predict(pairs_a), model.predict(pairs_b)
    results, failures = {}, []

    def work(name, pairs):
        try:
            for _ in range(3):
                results.setdefault(name, []).append(model.predict(pairs))
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=work, args=("a", pairs_a)), threading.Thread(target=work, args=("b", pairs_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    for got in results["a"]:
        np.testing.assert_array_equal(bits(got), bits(expected_a))
    for got in results["b"]:
        np.testing.assert_array_equal(bits(got), bits(expected_b))


def test_gil_released_while_scoring():
    # One engine thread, so a core stays free for this Python thread.
    m = crossrank.CrossEncoder(TINY, device="cpu", threads=1)
    pairs = many_pairs(3000)
    done = threading.Event()
    spans = []

    def score():
        t0 = time.perf_counter()
        m.predict(pairs)
        spans.append(time.perf_counter() - t0)
        done.set()

    worker = threading.Thread(target=score)
    ticks = []
    worker.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    gaps = np.diff(ticks) if len(ticks) > 1 else np.array([spans[0]])
    # Holding the GIL for the whole call would stall this loop for (nearly) the call's length.
    assert spans[0] > 0.2, "the call is too short to tell"
    assert gaps.max() < 0.5 * spans[0], (gaps.max(), spans[0])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_memory_growth_over_repeated_calls(model):
    pairs = many_pairs(200)
    table = pa.table({"query": [p[0] for p in pairs], "document": [p[1] for p in pairs]})
    for _ in range(5):  # warm up allocator pools and caches
        model.predict(pairs)
        model.score_table(table)
    before = _rss_bytes()
    for _ in range(40):
        model.predict(pairs)
        model.score_table(table)
        model.rank(pairs[0][0], [p[1] for p in pairs[:50]])
    growth = _rss_bytes() - before
    assert growth < 16 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 40 rounds"
