"""The XLM-R family (``XLMRobertaForSequenceClassification``): layout, names, head, encoder spec, pair facts.

What the mapping takes (checked against CTranslate2's own ``XLMRobertaLoader``, whose output
this reproduces for the encoder): drop the first ``padding_idx + 1`` rows of the position table
(XLM-R numbers positions from ``padding_idx + 1``); give the token-type table (one row, always
0) as a second input embedding summed into the first; no pooler (``ForSequenceClassification``
has none). CTranslate2's converter stops there. The classification head it drops
(``classifier.dense`` -> tanh -> ``classifier.out_proj`` on the first token) is returned
separately and kept in float32. Pairs are ``<s> query </s></s> window </s>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .. import _model_format as model_format
from ..errors import ConversionError
from .config import XLMRConfig
from .encoder_spec import expect_tensor, fill_encoder_spec
from .layout import check_encoder_layout
from .pairs import PairFacts

__all__ = ["HEAD_TENSORS", "build_encoder_spec", "check_layout", "extract_head", "normalise_names", "pair_facts"]

HEAD_TENSORS = ("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias")


def check_layout(shapes: Mapping[str, tuple[int, ...]], config: XLMRConfig) -> None:
    """Check tensor names (with or without ``roberta.``) and shapes against ``config``; see :func:`check_encoder_layout`."""
    hidden = config.hidden_size
    # None: any size >= 1 (the token-type table's rows, which config.json's type_vocab_size need not match).
    outside_layers: dict[str, tuple[int | None, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab_size, hidden),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, hidden),
        "embeddings.token_type_embeddings.weight": (None, hidden),
        "embeddings.LayerNorm.weight": (hidden,),
        "embeddings.LayerNorm.bias": (hidden,),
        "classifier.dense.weight": (hidden, hidden),
        "classifier.dense.bias": (hidden,),
        "classifier.out_proj.weight": (1, hidden),
        "classifier.out_proj.bias": (1,),
    }
    check_encoder_layout(shapes, "roberta.", config.num_layers, hidden, config.intermediate_size, outside_layers)


def normalise_names(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Key the encoder tensors by their name without the ``roberta.`` prefix, dropping a pooler."""
    out: dict[str, np.ndarray] = {}
    for name, array in tensors.items():
        short = name.removeprefix("roberta.")
        if short.startswith("pooler.") or short.endswith("position_ids"):
            continue
        out[short] = array
    return out


def extract_head(tensors: Mapping[str, np.ndarray], config: XLMRConfig) -> dict[str, np.ndarray]:
    """The classification head's four tensors in float32, checked against the config."""
    hidden = config.hidden_size
    shapes = {
        "classifier.dense.weight": (hidden, hidden),
        "classifier.dense.bias": (hidden,),
        "classifier.out_proj.weight": (1, hidden),
        "classifier.out_proj.bias": (1,),
    }
    return {name: np.ascontiguousarray(expect_tensor(tensors, name, shape), dtype=np.float32)
            for name, shape in shapes.items()}


def build_encoder_spec(tensors: Mapping[str, np.ndarray], config: XLMRConfig, vocabulary: Sequence[str],  # type: ignore[no-untyped-def]
                       facts: PairFacts):
    """Fill a CTranslate2 ``TransformerEncoderModelSpec`` from arrays keyed without ``roberta.`` (:func:`normalise_names`)."""
    hidden = config.hidden_size
    token_types = tensors.get("embeddings.token_type_embeddings.weight")
    if token_types is None or token_types.ndim != 2 or token_types.shape[1] != hidden:
        raise ConversionError("tensor 'embeddings.token_type_embeddings.weight' is missing or mis-shaped")
    positions = expect_tensor(tensors, "embeddings.position_embeddings.weight", (config.max_position_embeddings, hidden))
    return fill_encoder_spec(tensors, config, vocabulary, positions=positions[config.pad_token_id + 1 :],
                             token_types=token_types, unk_token=facts.unk_token)


def pair_facts(config: XLMRConfig, tokenizer: object) -> PairFacts:
    """XLM-R's fixed ids (``<s>`` 0, ``</s>`` 2, ``<unk>`` 3) and pair template, as every XLM-R reranker has them."""
    return PairFacts(
        special_tokens={"bos": 0, "pad": config.pad_token_id, "eos": 2, "unk": 3},
        pair_template=model_format.XLMR_PAIR_TEMPLATE,
        unk_token="<unk>",
    )
