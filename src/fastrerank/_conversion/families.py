"""Which family module converts a checkpoint: one module per family, with the same function names.

``xlm_roberta.py`` and ``bert.py`` each give ``HEAD_TENSORS``, ``check_layout``,
``normalise_names``, ``extract_head``, ``build_encoder_spec`` and ``pair_facts`` (as
safetensors' framework adapters share theirs); ``convert.py`` and ``checkpoint.py`` call them
through :func:`family_of` and never name a family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from . import bert, xlm_roberta
from .config import BertConfig, ModelConfig
from .pairs import PairFacts

__all__ = ["Family", "family_of"]


class Family(Protocol):
    """What a family module offers (a module satisfies this protocol)."""

    HEAD_TENSORS: tuple[str, ...]

    def check_layout(self, shapes: Mapping[str, tuple[int, ...]], config: Any) -> None: ...

    def normalise_names(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def extract_head(self, tensors: Mapping[str, np.ndarray], config: Any) -> dict[str, np.ndarray]: ...

    def build_encoder_spec(self, tensors: Mapping[str, np.ndarray], config: Any, vocabulary: Sequence[str],
                           facts: PairFacts) -> Any: ...

    def pair_facts(self, config: Any, tokenizer: Any) -> PairFacts: ...


def family_of(config: ModelConfig) -> Family:
    """The module that converts checkpoints of ``config``'s family."""
    return bert if isinstance(config, BertConfig) else xlm_roberta
