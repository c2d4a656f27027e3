"""fastrerank: fast in-process reranking with XLM-RoBERTa cross-encoders on CTranslate2.

>>> from fastrerank import rank
>>> rank("what is a panda?", ["The giant panda is a bear.", "Paris is in France."], top_n=1)  # doctest: +SKIP

Importing this package loads no model and imports neither CTranslate2 nor any optional extra.
"""

from ._api import arank, clear_cache, convert, rank, score_pairs
from ._model_format import verify_checksums as verify
from ._reranker import DEFAULT_MODEL, Reranker
from ._supported_models import SupportedModel, list_supported_models
from ._tuning import ProcessTuning, tune_process
from .errors import (
    ConversionError,
    CorruptModelError,
    FastRerankError,
    InferenceError,
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
    ModelClosedError,
    ModelLoadError,
    ModelNotFoundError,
    SchemaError,
    UnsupportedModelError,
)
from .results import RankedDocument, Ranking

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "ConversionError",
    "CorruptModelError",
    "FastRerankError",
    "InferenceError",
    "InvalidInputError",
    "InvalidTypeError",
    "MissingDependencyError",
    "ModelClosedError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ProcessTuning",
    "RankedDocument",
    "Ranking",
    "Reranker",
    "SchemaError",
    "SupportedModel",
    "UnsupportedModelError",
    "arank",
    "clear_cache",
    "convert",
    "list_supported_models",
    "rank",
    "score_pairs",
    "tune_process",
    "verify",
]
