"""crossrank.ray.Scorer on a local Ray cluster, against the CLI."""

from __future__ import annotations

import numpy as np
import pytest

import crossrank.ray
from conftest import TINY, bits, cli_score, many_pairs

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def test_scorer_without_ray(tmp_path):
    pairs = many_pairs(20)
    scorer = crossrank.ray.Scorer(str(TINY), device="cpu", error_column="error")
    batch = pa.table({"query": [p[0] for p in pairs[:-1]] + [None], "document": [p[1] for p in pairs]})
    out = scorer(batch)
    assert out.num_rows == 20 and out.column("error").null_count == 19
    numpy_batch = {"query": np.array([p[0] for p in pairs]), "document": np.array([p[1] for p in pairs])}
    out_np = scorer(numpy_batch)
    assert out_np["score"].dtype == np.float32 and out_np["score"].shape == (20,)


def test_ray_dataset_matches_cli(tmp_path):
    ray = pytest.importorskip("ray")
    from ray.data import ActorPoolStrategy

    n = 2400
    pairs = many_pairs(n)
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"id": list(range(n)), "query": [p[0] for p in pairs], "document": [p[1] for p in pairs]}),
                   path, row_group_size=300)
    # Bit equality needs the same batches: the CLI length-sorts windows of --window rows, the
    # Scorer each Ray batch; 300-row batches (8 row groups of 300) line up with --window 300.
    logits, scores = cli_score(pairs, tmp_path, "--window", "300")

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        ds = ray.data.read_parquet(str(path), override_num_blocks=8)
        scored = ds.map_batches(
            crossrank.ray.Scorer,
            fn_constructor_kwargs={"model": str(TINY), "device": "cpu", "threads": 1},
            batch_format="pyarrow",
            batch_size=300,
            compute=ActorPoolStrategy(size=2),
            num_cpus=0.5,  # leaves CPU for the Parquet read tasks on a 2-CPU cluster
        )
        out = pa.concat_tables(ray.get(scored.to_arrow_refs()))
    finally:
        ray.shutdown()
    assert out.num_rows == n
    assert out.column("id").to_pylist() == list(range(n))
    assert out.column("query").to_pylist() == [p[0] for p in pairs]
    np.testing.assert_array_equal(bits(out.column("logit").to_numpy()), bits(logits))
    np.testing.assert_array_equal(bits(out.column("score").to_numpy()), bits(scores))
