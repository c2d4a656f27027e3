"""The BERT family (``BertForSequenceClassification``, one label): layout, names, head, encoder spec, pair facts.

The ms-marco cross-encoders (MiniLM-L-4/6/12, TinyBERT-L-2) are this family. The mapping follows
CTranslate2's own ``BertLoader``: word and token-type embeddings summed, the whole position
table (BERT numbers positions from 0, unlike XLM-R's ``padding_idx + 1``), an embedding layer
norm, post-norm layers with q, k, v fused. ``BertLoader`` also puts the pooler in the spec
(``pooling_layer=True``); fastrerank keeps it in the float32 head instead, because BERT's
``classifier(tanh(pooler.dense(h[:, 0])))`` is exactly the form of XLM-R's head
``out_proj(tanh(dense(h[:, 0])))``: ``head.safetensors`` stores ``pooler.dense`` as ``dense`` and
``classifier`` as ``out_proj``, the engine's head is unchanged, and an int8 encoder never
quantizes the pooler. Pairs are built as the model's own ``tokenizer.json`` builds them
(``[CLS] query [SEP] window [SEP]``, token type 1 from the window on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptModelError
from .config import BertConfig
from .encoder_spec import expect_tensor, fill_encoder_spec
from .layout import check_encoder_layout
from .pairs import PairFacts, template_from_tokenizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["HEAD_TENSORS", "build_encoder_spec", "check_layout", "extract_head", "normalise_names", "pair_facts"]

# BERT's names for the two linears of the head, in the order of xlm_roberta.HEAD_TENSORS' roles.
HEAD_TENSORS = ("pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias")
_HEAD_FILE_NAMES = ("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias")


def check_layout(shapes: Mapping[str, tuple[int, ...]], config: BertConfig) -> None:
    """Check tensor names (with or without ``bert.``) and shapes against ``config``; see :func:`check_encoder_layout`."""
    hidden = config.hidden_size
    outside_layers: dict[str, tuple[int | None, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab_size, hidden),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, hidden),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, hidden),
        "embeddings.LayerNorm.weight": (hidden,),
        "embeddings.LayerNorm.bias": (hidden,),
        "pooler.dense.weight": (hidden, hidden),
        "pooler.dense.bias": (hidden,),
        "classifier.weight": (1, hidden),
        "classifier.bias": (1,),
    }
    check_encoder_layout(shapes, "bert.", config.num_layers, hidden, config.intermediate_size, outside_layers)


def normalise_names(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Key the tensors by their name without the ``bert.`` prefix, dropping the ``position_ids`` buffer."""
    return {name.removeprefix("bert."): array for name, array in tensors.items() if not name.endswith("position_ids")}


def extract_head(tensors: Mapping[str, np.ndarray], config: BertConfig) -> dict[str, np.ndarray]:
    """Pooler and classifier in float32, under the head file's names (see the module docstring)."""
    hidden = config.hidden_size
    shapes = ((hidden, hidden), (hidden,), (1, hidden), (1,))
    return {stored: np.ascontiguousarray(expect_tensor(tensors, name, shape), dtype=np.float32)
            for stored, name, shape in zip(_HEAD_FILE_NAMES, HEAD_TENSORS, shapes)}


def build_encoder_spec(tensors: Mapping[str, np.ndarray], config: BertConfig, vocabulary: Sequence[str],  # type: ignore[no-untyped-def]
                       facts: PairFacts):
    """Fill a CTranslate2 ``TransformerEncoderModelSpec`` from arrays keyed without ``bert.`` (:func:`normalise_names`)."""
    hidden = config.hidden_size
    token_types = expect_tensor(tensors, "embeddings.token_type_embeddings.weight", (config.type_vocab_size, hidden))
    positions = expect_tensor(tensors, "embeddings.position_embeddings.weight", (config.max_position_embeddings, hidden))
    return fill_encoder_spec(tensors, config, vocabulary, positions=positions, token_types=token_types,
                             unk_token=facts.unk_token)


def pair_facts(config: BertConfig, tokenizer: Tokenizer) -> PairFacts:
    """The pair template and special ids of the model's own tokenizer.

    Raises:
        CorruptModelError: the tokenizer names no unknown token its vocabulary holds.
        UnsupportedModelError: it builds pairs in a way the engine cannot reproduce.
    """
    template = template_from_tokenizer(tokenizer, token_type_rows=config.type_vocab_size)
    unk_token = getattr(tokenizer.model, "unk_token", None)  # WordPiece's; CTranslate2's config names it
    unk_id = tokenizer.token_to_id(unk_token) if isinstance(unk_token, str) else None
    if unk_id is None:
        raise CorruptModelError(f"tokenizer.json: the model's unk_token {unk_token!r} is not in its vocabulary")
    return PairFacts(
        special_tokens={"cls": template["before_query"][0], "sep": template["between"][0], "pad": config.pad_token_id,
                        "unk": unk_id},
        pair_template=template,
        unk_token=str(unk_token),
    )
