"""Read ``config.json`` of a Hugging Face XLM-R or BERT reranker and check every value fastrerank uses.

A value of the wrong type or range is refused here, naming the key, before any weight is read:
otherwise it converts and then kills the process at load (``num_attention_heads: 0`` divides by
zero inside CTranslate2), fails at every call (``pad_token_id: -5``) or builds a gigantic spec
(``num_hidden_layers: 1000000``; the layer count is compared with the checkpoint's in
:func:`fastrerank._conversion.checkpoint.check_layout`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptModelError, ModelNotFoundError, UnsupportedModelError, describe_value

__all__ = ["ACTIVATIONS", "BERT_ARCHITECTURE", "SUPPORTED_ARCHITECTURE", "BertConfig", "ModelConfig", "XLMRConfig",
           "read_config"]

SUPPORTED_ARCHITECTURE = "XLMRobertaForSequenceClassification"
BERT_ARCHITECTURE = "BertForSequenceClassification"
# (architecture, accepted model_type values), as config.json spells them.
_FAMILIES = ((SUPPORTED_ARCHITECTURE, ("xlm-roberta", "roberta")), (BERT_ARCHITECTURE, ("bert",)))
ACTIVATIONS = ("gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu", "silu", "swish")


@dataclass(frozen=True)
class XLMRConfig:
    """The architecture facts fastrerank needs from ``config.json``."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    vocab_size: int
    layer_norm_eps: float
    hidden_act: str
    pad_token_id: int

    @property
    def architecture(self) -> str:
        """The architecture name config.json gives, which ``fastrerank.json`` records."""
        return SUPPORTED_ARCHITECTURE

    @property
    def max_positions(self) -> int:
        """Usable positions: XLM-R reserves ``pad_token_id + 1`` rows of its position table."""
        return self.max_position_embeddings - self.pad_token_id - 1


@dataclass(frozen=True)
class BertConfig:
    """The architecture facts fastrerank needs from a BERT cross-encoder's ``config.json``.

    Unlike XLM-R, BERT numbers positions from 0 (every row of the position table is usable) and
    sums a token-type embedding of ``type_vocab_size`` rows: 0 for the query, 1 for the document.
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    vocab_size: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str
    pad_token_id: int

    @property
    def architecture(self) -> str:
        """The architecture name config.json gives, which ``fastrerank.json`` records."""
        return BERT_ARCHITECTURE

    @property
    def max_positions(self) -> int:
        """Usable positions: the whole position table."""
        return self.max_position_embeddings


ModelConfig = XLMRConfig | BertConfig


def read_config(folder: Path) -> ModelConfig:
    """Read ``config.json`` and accept only a one-label XLM-R or BERT classifier with absolute positions.

    Raises:
        ModelNotFoundError: the folder or ``config.json`` is missing.
        CorruptModelError: ``config.json`` is not JSON, lacks a key, or a value has the wrong type or
            range ("config.json: num_attention_heads must be an int >= 1 that divides hidden_size=64, got 0").
        UnsupportedModelError: another architecture, several labels, relative positions, an unknown hidden_act.
    """
    if not folder.is_dir():
        raise ModelNotFoundError(f"model folder {str(folder)!r} does not exist")
    path = folder / "config.json"
    if not path.is_file():
        raise ModelNotFoundError(f"config.json is missing in {str(folder)!r}")
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorruptModelError(f"config.json: invalid JSON at line {err.lineno}: {err.msg}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise CorruptModelError(f"config.json cannot be read: {err}") from err
    if not isinstance(raw, dict):
        raise CorruptModelError("config.json: expected a JSON object")
    architectures = raw.get("architectures")
    model_type = raw.get("model_type")
    if not any(architectures == [name] and model_type in types for name, types in _FAMILIES):
        raise UnsupportedModelError(
            f"unsupported model: architectures={architectures!r}, model_type={model_type!r}; "
            f"fastrerank converts {SUPPORTED_ARCHITECTURE} (model_type 'xlm-roberta') and "
            f"{BERT_ARCHITECTURE} (model_type 'bert') rerankers"
        )
    id2label = raw.get("id2label") or {"0": None}
    if not isinstance(id2label, dict):
        raise CorruptModelError(f"config.json: id2label must be an object, got {describe_value(id2label)}")
    labels = raw.get("num_labels", len(id2label))
    if isinstance(labels, bool) or labels != 1:
        raise UnsupportedModelError(
            f"unsupported model: {describe_value(labels)} labels; a reranker has exactly 1 (num_labels=1)"
        )
    position_type = raw.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise UnsupportedModelError(
            f"unsupported model: position_embedding_type={describe_value(position_type)}; only 'absolute' is supported"
        )
    return _validated_bert_config(raw) if architectures == [BERT_ARCHITECTURE] else _validated_config(raw)


def _config_int(raw: Mapping[str, Any], key: str, expected: str, valid: Callable[[int], bool],
                default: int | None = None) -> int:
    """``raw[key]`` if it is a real int (not a bool, float or string) for which ``valid`` holds."""
    if key not in raw and default is None:
        raise CorruptModelError(f"config.json: missing key {key!r}")
    value = raw.get(key, default)
    # A float such as 12.0 is refused too: transformers builds its layers from these values and
    # fails on floats, so such a config.json never came from a model that ran.
    if isinstance(value, bool) or not isinstance(value, int) or not valid(value):
        raise CorruptModelError(f"config.json: {key} must be {expected}, got {describe_value(value)}")
    return value


def _shared_values(raw: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    """``(hidden_size, num_attention_heads, num_hidden_layers, intermediate_size, vocab_size)``, checked."""
    hidden = _config_int(raw, "hidden_size", "an int >= 1", lambda v: v >= 1)
    heads = _config_int(raw, "num_attention_heads", f"an int >= 1 that divides hidden_size={hidden}",
                        lambda v: v >= 1 and hidden % v == 0)
    layers = _config_int(raw, "num_hidden_layers", "an int >= 1", lambda v: v >= 1)
    intermediate = _config_int(raw, "intermediate_size", "an int >= 1", lambda v: v >= 1)
    vocab = _config_int(raw, "vocab_size", "an int >= 1", lambda v: v >= 1)
    return hidden, heads, layers, intermediate, vocab


def _eps_and_activation(raw: Mapping[str, Any], default_eps: float) -> tuple[float, str]:
    eps = raw.get("layer_norm_eps", default_eps)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        raise CorruptModelError(f"config.json: layer_norm_eps must be a finite number > 0, got {describe_value(eps)}")
    activation = raw.get("hidden_act", "gelu")
    if not isinstance(activation, str):
        raise CorruptModelError(f"config.json: hidden_act must be a string, got {describe_value(activation)}")
    if activation not in ACTIVATIONS:
        raise UnsupportedModelError(
            f"config.json: unsupported hidden_act {describe_value(activation)} (accepted: {', '.join(ACTIVATIONS)})"
        )
    return float(eps), activation


def _validated_config(raw: Mapping[str, Any]) -> XLMRConfig:
    """Every architecture value fastrerank uses, type- and range-checked, before anything is built."""
    hidden, heads, layers, intermediate, vocab = _shared_values(raw)
    pad = _config_int(raw, "pad_token_id", f"an int in [0, vocab_size={vocab})", lambda v: 0 <= v < vocab, default=1)
    positions = _config_int(
        raw, "max_position_embeddings",
        f"an int > pad_token_id + 1 = {pad + 1} (XLM-R reserves pad_token_id + 1 rows of its position table)",
        lambda v: v > pad + 1,
    )
    eps, activation = _eps_and_activation(raw, 1e-5)
    return XLMRConfig(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=positions,
        vocab_size=vocab,
        layer_norm_eps=eps,
        hidden_act=activation,
        pad_token_id=pad,
    )


def _validated_bert_config(raw: Mapping[str, Any]) -> BertConfig:
    """The BERT values fastrerank uses, checked like XLM-R's; transformers' defaults where BertConfig has one."""
    hidden, heads, layers, intermediate, vocab = _shared_values(raw)
    pad = _config_int(raw, "pad_token_id", f"an int in [0, vocab_size={vocab})", lambda v: 0 <= v < vocab, default=0)
    positions = _config_int(raw, "max_position_embeddings", "an int >= 1", lambda v: v >= 1)
    # The document's tokens have type 1: a table of one row would be read out of bounds.
    types = _config_int(raw, "type_vocab_size", "an int >= 2 (the document's tokens have token type 1)",
                        lambda v: v >= 2, default=2)
    eps, activation = _eps_and_activation(raw, 1e-12)
    return BertConfig(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=positions,
        vocab_size=vocab,
        type_vocab_size=types,
        layer_norm_eps=eps,
        hidden_act=activation,
        pad_token_id=pad,
    )
