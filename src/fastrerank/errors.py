"""The exceptions fastrerank raises.

Every error the library raises on purpose is a :class:`FastRerankError`, so callers can catch
one type. Input errors are also ``ValueError`` / ``TypeError`` so code written against the
standard library keeps working::

    FastRerankError
    ├─ InvalidInputError (also ValueError)     names the parameter, the value, what was expected
    │  └─ SchemaError                          an API request that does not fit its schema
    ├─ InvalidTypeError (also TypeError)       "documents[3] must be str, got NoneType"
    ├─ ModelLoadError
    │  ├─ ModelNotFoundError (also FileNotFoundError)
    │  ├─ UnsupportedModelError                architecture, labels, position type, format version
    │  └─ CorruptModelError                    truncated weights, missing tokenizer, vocab > embeddings
    ├─ ConversionError
    ├─ ModelClosedError (also RuntimeError)
    ├─ InferenceError                          wraps the cause
    └─ MissingDependencyError (also ImportError)
"""

from __future__ import annotations

__all__ = [
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
    "SchemaError",
    "UnsupportedModelError",
]

_MAX_SHOWN = 80


def shorten(text: str) -> str:
    """``text`` cut to 80 characters (the last three an ellipsis), for error messages."""
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def describe_value(value: object) -> str:
    """``repr(value)`` cut to 80 characters, for error messages."""
    return shorten(repr(value))


class FastRerankError(Exception):
    """Base class of every error fastrerank raises on purpose."""


class InvalidInputError(FastRerankError, ValueError):
    """An argument has the right type but a value outside what is accepted."""


class InvalidTypeError(FastRerankError, TypeError):
    """An argument has the wrong type."""


class SchemaError(InvalidInputError):
    """An API request body that does not match its schema.

    ``field`` is the dotted path of the offending field (or ``None`` for the body itself) and
    ``status`` the HTTP status the API answers with.
    """

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


class ModelLoadError(FastRerankError):
    """A model folder or hub snapshot cannot be loaded."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model folder, a required file in it, or the hub repository is missing."""


class UnsupportedModelError(ModelLoadError):
    """The model is readable but is not a model fastrerank supports."""


class CorruptModelError(ModelLoadError):
    """Files are present but damaged or inconsistent."""


class ConversionError(FastRerankError):
    """Converting a checkpoint to the CTranslate2 format failed; no output was left behind."""


class ModelClosedError(FastRerankError, RuntimeError):
    """The :class:`~fastrerank.Reranker` was closed."""


class InferenceError(FastRerankError):
    """The model failed while scoring, or produced a non-finite score."""


class MissingDependencyError(FastRerankError, ImportError):
    """An optional dependency is not installed; the message says which extra provides it."""
