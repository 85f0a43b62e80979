"""Scoring a Ray Data dataset: ``Dataset.map_batches(crossrank.ray.Scorer, ...)``.

::

    import ray
    from ray.data import ActorPoolStrategy
    import crossrank.ray

    ds = ray.data.read_parquet("s3://bucket/pairs/")
    scored = ds.map_batches(
        crossrank.ray.Scorer,
        fn_constructor_kwargs={"model": "cometadata/gte-multilingual-reranker-affiliations", "device": "cuda"},
        batch_format="pyarrow",
        batch_size=4096,
        compute=ActorPoolStrategy(size=8),   # one actor per GPU
        num_gpus=1,
    )
    scored.write_parquet("s3://bucket/scored/")

Each actor loads the model once (in ``__init__``) and scores every batch it is given. With
``num_gpus=1`` Ray sets ``CUDA_VISIBLE_DEVICES`` to the actor's GPU, so ``device="cuda"`` is
that GPU. This module does not import Ray: ``Scorer`` is a plain callable class.
"""

from __future__ import annotations

import os
from typing import Any

from .cross_encoder import CrossEncoder


class Scorer:
    """A Ray Data ``map_batches`` callable: batch in, the same batch plus ``logit``/``score`` out.

    Args:
        model: model directory or hub id (every node must reach it: a shared path or the hub).
        device: ``"cuda"`` (the actor's GPU), ``"cpu"``, ``"auto"`` (default) or ``"cuda:N"``.
        query_column, document_column: input column names.
        logit_column, score_column: float32 output columns (replacing columns of those names).
        error_column: when set, a row whose query or document is null or not a string gets a
            null logit/score and its message in this column instead of failing the task.
        max_length, batch_tokens, threads, activation_fn: as ``crossrank.CrossEncoder``.

    Batches may be pyarrow tables (``batch_format="pyarrow"``, the fastest), pandas
    DataFrames or dicts of numpy arrays; the output has the same kind, every input column and
    the input row order.
    """

    def __init__(
        self,
        model: str,
        device: str | None = None,
        *,
        query_column: str = "query",
        document_column: str = "document",
        logit_column: str = "logit",
        score_column: str = "score",
        error_column: str | None = None,
        max_length: int | None = None,
        batch_tokens: int | None = None,
        threads: int | None = None,
        activation_fn: Any = None,
    ) -> None:
        if device is not None and str(device).startswith("cuda") and not os.environ.get("CUDA_VISIBLE_DEVICES", "x"):
            raise RuntimeError(
                "crossrank.ray.Scorer: device='cuda' but this actor was given no GPU "
                "(CUDA_VISIBLE_DEVICES is empty): pass num_gpus=1 to map_batches"
            )
        self.encoder = CrossEncoder(
            model,
            device=device,
            max_length=max_length,
            batch_tokens=batch_tokens,
            threads=threads,
            activation_fn=activation_fn,
        )
        self.columns = dict(
            query_column=query_column,
            document_column=document_column,
            logit_column=logit_column,
            score_column=score_column,
            error_column=error_column,
        )

    def __call__(self, batch: Any) -> Any:
        return self.encoder.score_table(batch, **self.columns, show_progress_bar=False)
