"""Type stubs of the native extension (python/src/lib.rs)."""

from typing import Any, Callable, Iterable

__version__: str
long_version: str

class Engine:
    """A loaded model: config, memory-mapped checkpoint, tokenizer and backend (CPU or CUDA)."""

    def __init__(
        self,
        model: str,
        device: str = "auto",
        max_length: int | None = None,
        batch_tokens: int | None = None,
        threads: int = 0,
    ) -> None: ...
    @property
    def model_dir(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def device_note(self) -> str | None: ...
    @property
    def max_length(self) -> int: ...
    @property
    def batch_tokens(self) -> int: ...
    @property
    def activation(self) -> str: ...
    def score(
        self,
        queries: Iterable[Any],
        documents: Iterable[Any],
        activation: str | None = None,
        collect_errors: bool = False,
        progress: Callable[[int], Any] | None = None,
        row: str = "pair",
        fields: tuple[str, str] = ("query", "document"),
        window: int | None = None,
    ) -> tuple[bytes, bytes, list[str | None] | None]:
        """(logits, scores, errors): float32 bytes per row in input order; errors only with collect_errors."""
    def evaluate(
        self,
        source: str,
        is_path: bool,
        at_k: int = 10,
        always_rerank_positives: bool = True,
        format: str | None = None,
    ) -> tuple[str, list[str]]:
        """(report JSON, per-query JSON lines) of `crossrank eval` on a path or JSON-lines samples."""
