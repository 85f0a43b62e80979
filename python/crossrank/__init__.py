"""crossrank: fast cross-encoder reranker inference (gte-multilingual), on CPU or CUDA.

``crossrank.CrossEncoder`` is a drop-in for sentence-transformers' ``CrossEncoder``
(``predict``, ``rank``) with ``score_table`` for pyarrow/pandas tables;
``crossrank.ray.Scorer`` scores a Ray Data dataset with one model per actor.
"""

from ._crossrank import Engine, __version__, long_version
from .cross_encoder import CrossEncoder

__all__ = ["CrossEncoder", "Engine", "__version__", "long_version"]
