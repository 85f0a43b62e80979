"""``crossrank.CrossEncoder``: sentence-transformers' ``CrossEncoder`` API over the crossrank engine.

The engine (``crossrank._crossrank.Engine``) tokenizes, batches by token budget and runs the
model with the GIL released; this module gives it the shape Python users already call:
``predict`` and ``rank`` as in sentence-transformers 5, and ``score_table`` for pyarrow and
pandas tables. Scores are the CLI's, bit for bit, on the CPU.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from . import _crossrank

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import pyarrow

logger = logging.getLogger("crossrank")

# torch.nn activation modules the engine computes itself, recognized by class name so that
# torch need not be imported (or even installed).
_ENGINE_ACTIVATIONS = {"Identity": "identity", "Sigmoid": "sigmoid", "Tanh": "tanh"}

# Constructor options of sentence-transformers' CrossEncoder that only concern torch or
# transformers; accepted so that existing calls keep working, and ignored with a warning.
_TORCH_ONLY_OPTIONS = (
    "cache_folder",
    "trust_remote_code",
    "local_files_only",
    "token",
    "model_kwargs",
    "tokenizer_kwargs",
    "config_kwargs",
    "model_card_data",
    "backend",
    "automodel_args",
    "tokenizer_args",
)


class CrossEncoder:
    """A cross-encoder reranker loaded into the crossrank engine.

    A drop-in for ``sentence_transformers.CrossEncoder`` for inference: ``predict`` and ``rank``
    take the same arguments and return the same shapes; scores equal transformers' float32
    forward to about 1e-5 on the CPU (fp16 with fp32 accumulation on CUDA).

    Args:
        model_name_or_path: a model directory (``config.json``, ``model.safetensors``,
            ``tokenizer.json``) or a Hugging Face hub id such as
            ``"cometadata/gte-multilingual-reranker-affiliations"`` (fetched into the standard
            cache; ``HF_HUB_OFFLINE=1`` uses the cache only).
        device: ``None`` or ``"auto"`` (CUDA when usable, else the CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``. A ``torch.device`` is accepted too.
        max_length: pair length limit in tokens (pairs are truncated ``longest_first``);
            ``None``: the model's (min of ``model_max_length`` and ``max_position_embeddings``).
        batch_tokens: tokens per forward batch; ``None``: the backend's default.
        threads: CPU threads; ``None`` or 0: every core.
        **kwargs: sentence-transformers options. ``activation_fn`` sets the default activation
            (as in ``predict``), ``num_labels`` must be 1 (or None), ``revision`` pins a hub
            revision; torch/transformers-only options (``trust_remote_code``, ``model_kwargs``,
            ``cache_folder``, ...) are ignored with a warning.

    Raises:
        OSError: the model cannot be found or read (missing directory, bad checkpoint, hub).
        ValueError: a bad argument (unknown device, ``max_length`` above the model's limit).
        RuntimeError: CUDA was requested but cannot be used.

    One instance may be used from several threads at once; scoring releases the GIL.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        device: str | None = None,
        max_length: int | None = None,
        *,
        batch_tokens: int | None = None,
        threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        activation_fn = kwargs.pop("activation_fn", None)
        num_labels = kwargs.pop("num_labels", None)
        revision = kwargs.pop("revision", None)
        if num_labels not in (None, 1):
            raise ValueError(f"num_labels={num_labels}: crossrank scores one-label rerankers only (num_labels=1)")
        for key in kwargs:
            if key in _TORCH_ONLY_OPTIONS:
                warnings.warn(f"crossrank.CrossEncoder: `{key}` only concerns torch/transformers; ignored", stacklevel=2)
            else:
                warnings.warn(f"crossrank.CrossEncoder: unknown option `{key}`; ignored", stacklevel=2)
        spec = os.fspath(model_name_or_path)
        if revision is not None and not os.path.isdir(spec):
            spec = f"{spec}@{revision}"
        device_name = "auto" if device is None else str(device)
        self._engine = _crossrank.Engine(
            spec,
            device=device_name,
            max_length=max_length,
            batch_tokens=batch_tokens,
            threads=threads or 0,
        )
        if self._engine.device_note:
            logger.info("crossrank: %s", self._engine.device_note)
        # Validated now, so that a bad default fails at construction, not at the first predict.
        _resolve_activation(activation_fn)
        self.default_activation_fn = activation_fn
        self.model_name_or_path = spec

    # -- properties ---------------------------------------------------------------------------

    @property
    def engine(self) -> _crossrank.Engine:
        """The underlying engine (``crossrank._crossrank.Engine``)."""
        return self._engine

    @property
    def device(self) -> str:
        """The backend the model runs on, e.g. ``"cpu (2 threads)"``."""
        return self._engine.device

    @property
    def max_length(self) -> int:
        """Pair length limit in tokens, special tokens included."""
        return self._engine.max_length

    @property
    def num_labels(self) -> int:
        """Always 1: the model has one logit per pair."""
        return 1

    @property
    def model_dir(self) -> str:
        """The local model directory (a hub id resolved into the cache)."""
        return self._engine.model_dir

    def __repr__(self) -> str:
        return f"CrossEncoder({self.model_name_or_path!r}, device={self.device!r}, max_length={self.max_length})"

    # -- scoring ------------------------------------------------------------------------------

    def predict(
        self,
        sentences: Sequence[tuple[str, str] | list[str]] | tuple[str, str] | list[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable[..., Any] | None = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
    ) -> Any:
        """Scores (query, document) pairs.

        Args:
            sentences: a list of pairs (tuples or lists of two ``str``), or one pair.
            batch_size: accepted for compatibility and ignored: the engine batches by token
                budget (``batch_tokens``), which is faster than a fixed number of pairs.
            show_progress_bar: a tqdm bar (if tqdm is installed); ``None``: shown when the
                ``crossrank`` logger is at INFO or DEBUG, as sentence-transformers does.
            activation_fn: ``None``: the model's activation (``config.json``
                ``sentence_transformers.activation_fn``, Sigmoid for gte rerankers, or the
                constructor's ``activation_fn``). ``torch.nn.Identity()`` gives raw logits,
                ``torch.nn.Sigmoid()``/``Tanh()`` those activations; they are recognized by
                class name and computed by the engine (torch is not imported). Any other
                callable is applied to the float32 logits (a numpy array; a torch module gets a
                tensor).
            apply_softmax: as in sentence-transformers, softmax applies only to models with
                more than one label; these rerankers have one, so it changes nothing.
            convert_to_numpy: return a numpy array (the default); ``False``: a list of
                numpy float32 scalars.
            convert_to_tensor: return a ``torch.Tensor`` (needs torch).

        Returns:
            ``np.ndarray`` of float32, shape (N,), in input order; a float32 scalar for one
            pair; shape (0,) for an empty list.

        Raises:
            TypeError: an item is not a pair of strings (the message names it).
            ValueError: a pair does not have two elements, or its text is not valid Unicode.
            RuntimeError: a device failure while scoring.
        """
        del batch_size, apply_softmax  # see the docstring
        if isinstance(sentences, (tuple, list)) and len(sentences) > 0 and isinstance(sentences[0], str):
            pairs: list[Any] = [sentences]
            singular = True
        else:
            pairs = list(sentences)
            singular = False
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)):
                raise TypeError(
                    f"sentences[{i}] must be a (query, document) pair (tuple or list of two str), "
                    f"got {type(pair).__name__}"
                )
            if len(pair) != 2:
                raise ValueError(f"sentences[{i}] has {len(pair)} elements; a pair has two (query, document)")
        _, scores, _ = self._score([p[0] for p in pairs], [p[1] for p in pairs], activation_fn, show_progress_bar)
        return _convert(scores, singular, convert_to_numpy, convert_to_tensor)

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable[..., Any] | None = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
    ) -> list[dict[str, Any]]:
        """Scores every document against ``query`` and returns them best first.

        Returns:
            ``[{"corpus_id": i, "score": s}, ...]`` (plus ``"text"`` with
            ``return_documents=True``), sorted by score, highest first; equal scores are
            ordered by logit (a saturated sigmoid can tie distinct logits), then by input
            order, exactly as ``crossrank rank``. ``top_k`` keeps the first ``top_k``.
            The other arguments are ``predict``'s.
        """
        del batch_size, apply_softmax, convert_to_numpy, convert_to_tensor
        if not isinstance(query, str):
            raise TypeError(f"query must be str, got {type(query).__name__}")
        if isinstance(documents, str):
            raise TypeError("documents must be a list of str, got one str")
        if top_k is not None and top_k < 0:
            raise ValueError(f"top_k must be >= 0 or None, got {top_k}")
        documents = list(documents)
        logits, scores, _ = self._score([query] * len(documents), documents, activation_fn, show_progress_bar)
        # lexsort: the last key is the primary one; ties fall back to input order.
        order = np.lexsort((np.arange(len(documents)), -logits.astype(np.float64), -scores.astype(np.float64)))
        if top_k is not None:
            order = order[:top_k]
        results = []
        for i in order:
            entry: dict[str, Any] = {"corpus_id": int(i), "score": scores[i]}
            if return_documents:
                entry["text"] = documents[i]
            results.append(entry)
        return results

    def score_table(
        self,
        table: "pyarrow.Table | pyarrow.RecordBatch | pandas.DataFrame",
        query_column: str = "query",
        document_column: str = "document",
        *,
        logit_column: str = "logit",
        score_column: str = "score",
        error_column: str | None = None,
        activation_fn: Callable[..., Any] | None = None,
        show_progress_bar: bool | None = None,
    ) -> Any:
        """Scores the rows of a pyarrow ``Table``/``RecordBatch`` or a pandas ``DataFrame``.

        Returns the same kind of table with every input column kept, in order, and float32
        ``logit_column`` and ``score_column`` appended (replacing columns of those names).
        Query and document columns may be string, large_string or string_view (any column
        whose values are ``str``).

        A null or non-string query/document raises TypeError naming the row, unless
        ``error_column`` is given: then that row's logit and score are null (NaN in pandas) and
        the message is in ``error_column`` (null for rows that scored), so no row is lost.
        """
        kind, columns, n = _table_columns(table, query_column, document_column)
        queries, documents = columns
        logits, scores, errors = self._score(
            queries,
            documents,
            activation_fn,
            show_progress_bar,
            collect_errors=error_column is not None,
            row="row",
            fields=(f"column '{query_column}'", f"column '{document_column}'"),
        )
        assert len(logits) == n
        new_columns: dict[str, Any] = {logit_column: logits, score_column: scores}
        if error_column is not None:
            new_columns[error_column] = errors
        return _with_columns(kind, table, new_columns, errors)

    def evaluate(
        self,
        samples: "Sequence[dict[str, Any]] | str | os.PathLike[str]",
        at_k: int = 10,
        always_rerank_positives: bool = True,
        *,
        format: str | None = None,
        return_per_query: bool = False,
    ) -> "dict[str, Any] | tuple[dict[str, Any], list[dict[str, Any]]]":
        """Reranking metrics exactly as sentence-transformers' ``CrossEncoderRerankingEvaluator``
        computes them from this model's ``predict`` scores (``crossrank eval`` in Python).

        Args:
            samples: the evaluator's samples, ``[{"query": ..., "positive": [...],
                "negative": [...]}]`` or ``[{"query", "positive", "documents": [...]}]``, or
                labeled pairs ``[{"query", "document", "label"}]``; or the path of a JSONL/TSV
                file holding them (as ``crossrank eval --input``).
            at_k: cut-off of MRR@k and NDCG@k.
            always_rerank_positives: the evaluator's option of that name.
            format: ``"jsonl"`` or ``"tsv"`` for a path (default: from its extension).
            return_per_query: also return one dict per query (metrics, counts, ties).

        Returns:
            ``{"map", "mrr@K", "ndcg@K"}`` (plus ``base_*`` and ``model_card`` for samples with
            ``documents``) and the counts and tie facts of ``crossrank eval --json``.
        """
        import json

        if isinstance(samples, (str, os.PathLike)):
            source, is_path = os.fspath(samples), True
        else:
            lines = []
            for i, sample in enumerate(samples):
                if not isinstance(sample, dict):
                    raise TypeError(f"samples[{i}] must be a dict, got {type(sample).__name__}")
                lines.append(json.dumps(sample, ensure_ascii=False))
            source, is_path = "\n".join(lines), False
        report, per_query = self._engine.evaluate(source, is_path, at_k, always_rerank_positives, format)
        metrics = json.loads(report)
        if return_per_query:
            return metrics, [json.loads(row) for row in per_query]
        return metrics

    # -- internals ----------------------------------------------------------------------------

    def _score(
        self,
        queries: list[Any],
        documents: list[Any],
        activation_fn: Callable[..., Any] | None,
        show_progress_bar: bool | None,
        *,
        collect_errors: bool = False,
        row: str = "pair",
        fields: tuple[str, str] = ("query", "document"),
    ) -> Any:
        """(logits, scores, errors): float32 arrays, one value per row; errors only with collect_errors."""
        if activation_fn is None:
            activation_fn = self.default_activation_fn
        engine_activation, custom = _resolve_activation(activation_fn)
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
        bar = _progress_bar(len(queries)) if show_progress_bar and queries else None
        try:
            logit_bytes, score_bytes, errors = self._engine.score(
                queries,
                documents,
                activation=engine_activation,
                collect_errors=collect_errors,
                progress=bar.update if bar is not None else None,
                row=row,
                fields=fields,
            )
        finally:
            if bar is not None:
                bar.close()
        logits = np.frombuffer(logit_bytes, dtype=np.float32).copy()
        scores = np.frombuffer(score_bytes, dtype=np.float32).copy()
        if custom is not None:
            scores = _apply_custom(custom, logits)
        return logits, scores, errors


def _resolve_activation(activation_fn: Any) -> tuple[str | None, Callable[..., Any] | None]:
    """(activation the engine computes or None for the model's, callable applied afterwards)."""
    if activation_fn is None:
        return None, None
    if isinstance(activation_fn, str):
        name = activation_fn.lower()
        if name not in _ENGINE_ACTIVATIONS.values():
            raise ValueError(f"activation_fn {activation_fn!r}: expected 'sigmoid', 'identity' or 'tanh', or a callable")
        return name, None
    name = _ENGINE_ACTIVATIONS.get(type(activation_fn).__name__)
    if name is not None:
        return name, None
    if not callable(activation_fn):
        raise TypeError(f"activation_fn must be callable or None, got {type(activation_fn).__name__}")
    return "identity", activation_fn


def _apply_custom(fn: Callable[..., Any], logits: np.ndarray) -> np.ndarray:
    """``fn`` applied to float32 logits; torch modules get (and give back) a tensor."""
    is_torch = any(cls.__module__.startswith("torch") for cls in type(fn).__mro__)
    if is_torch:
        import torch

        with torch.no_grad():
            out = fn(torch.from_numpy(logits.copy())).detach().cpu().numpy()
    else:
        out = fn(logits.copy())
    out = np.asarray(out, dtype=np.float32)
    if out.shape != logits.shape:
        raise ValueError(f"activation_fn returned shape {out.shape} for logits of shape {logits.shape}")
    return out


def _convert(scores: np.ndarray, singular: bool, convert_to_numpy: bool, convert_to_tensor: bool) -> Any:
    if convert_to_tensor:
        try:
            import torch
        except ImportError as e:
            raise ImportError("predict(convert_to_tensor=True) needs torch, which is not installed") from e
        tensor = torch.from_numpy(scores)
        return tensor[0] if singular else tensor
    if singular:
        return scores[0]
    if not convert_to_numpy:
        return list(scores)
    return scores


class _PlainProgress:
    """A progress line on stderr where tqdm is not installed."""

    def __init__(self, total: int) -> None:
        import sys

        self._total, self._done, self._stream = total, 0, sys.stderr

    def update(self, n: int) -> None:
        self._done += n
        self._stream.write(f"\rcrossrank: {self._done}/{self._total} pairs")
        self._stream.flush()

    def close(self) -> None:
        self._stream.write("\n")
        self._stream.flush()


def _progress_bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainProgress(total)
    return tqdm(total=total, desc="Scoring", unit="pair")


def _table_columns(table: Any, query_column: str, document_column: str) -> tuple[str, tuple[list[Any], list[Any]], int]:
    """("arrow" | "pandas" | "dict", (queries, documents) as Python lists, row count)."""
    module = type(table).__module__
    if module.startswith("pyarrow"):
        kind = "arrow"
        names = list(table.schema.names)
        get = lambda name: table.column(name).to_pylist()  # noqa: E731
        n = table.num_rows
    elif module.startswith("pandas"):
        kind = "pandas"
        names = [str(c) for c in table.columns]
        get = lambda name: table[name].tolist()  # noqa: E731
        n = len(table)
    elif isinstance(table, dict):
        kind = "dict"  # Ray Data's "numpy" batch format: column name -> array
        names = list(table)
        get = lambda name: list(table[name])  # noqa: E731
        n = len(next(iter(table.values()))) if table else 0
    else:
        raise TypeError(
            f"score_table expects a pyarrow Table/RecordBatch, a pandas DataFrame or a dict of columns, "
            f"got {type(table).__name__}"
        )
    for name in (query_column, document_column):
        if name not in names:
            raise ValueError(f"no column {name!r} in the table (columns: {', '.join(map(repr, names))})")
    return kind, (get(query_column), get(document_column)), n


def _with_columns(kind: str, table: Any, columns: dict[str, Any], errors: list[str | None] | None) -> Any:
    failed = None if errors is None else np.array([e is not None for e in errors], dtype=bool)
    if kind == "arrow":
        import pyarrow as pa

        for name, values in columns.items():
            if isinstance(values, np.ndarray):
                array = pa.array(values, type=pa.float32(), mask=failed if failed is not None and failed.any() else None)
            else:
                array = pa.array(values, type=pa.string())
            index = table.schema.get_field_index(name)
            if index >= 0:
                table = table.set_column(index, name, array)
            else:
                table = table.append_column(name, array)
        return table
    if kind == "pandas":
        table = table.copy()
        for name, values in columns.items():
            table[name] = values
        return table
    out = dict(table)
    for name, values in columns.items():
        out[name] = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
    return out
