"""Fill a CTranslate2 encoder spec from named float32 arrays: pure, no I/O, shared by every family.

Both families are BERT-style encoders that CTranslate2's ``TransformerEncoderSpec`` runs: word
and token-type embeddings summed (two source embeddings merged by addition), learnt absolute
positions, an embedding layer norm, post-norm layers with q, k, v fused into one linear in that
order, no scaling of the embeddings. What differs (which rows of the position table are used,
the token-type table, the unknown token) is passed in by the family module (``xlm_roberta.py``,
``bert.py``), which also keeps the classification head out of the spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ConversionError, UnsupportedModelError
from .config import ACTIVATIONS, ModelConfig

__all__ = ["expect_tensor", "fill_encoder_spec"]


def expect_tensor(tensors: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``tensors[name]``, which must exist with ``shape`` (both named in the error otherwise)."""
    array = tensors.get(name)
    if array is None:
        raise ConversionError(f"tensor {name!r} is missing from the checkpoint")
    if tuple(array.shape) != shape:
        raise ConversionError(f"tensor {name!r} has shape {tuple(array.shape)}, expected {shape} from config.json")
    return array


def fill_encoder_spec(  # type: ignore[no-untyped-def]
    tensors: Mapping[str, np.ndarray],
    config: ModelConfig,
    vocabulary: Sequence[str],
    *,
    positions: np.ndarray,
    token_types: np.ndarray,
    unk_token: str,
):
    """A CTranslate2 ``TransformerEncoderModelSpec`` without pooler, from encoder tensors keyed without prefix.

    ``positions`` is the position table as CTranslate2 indexes it (row 0 for the first token);
    ``token_types`` the token-type table; ``vocabulary`` lists one token per embedding row.
    """
    from ctranslate2.specs import common_spec, transformer_spec

    if config.hidden_act not in ACTIVATIONS:
        raise UnsupportedModelError(f"unsupported hidden_act {config.hidden_act!r} (accepted: {', '.join(ACTIVATIONS)})")
    hidden, inter = config.hidden_size, config.intermediate_size
    activation = common_spec.Activation.GELU if config.hidden_act.startswith("gelu") else (
        common_spec.Activation.RELU if config.hidden_act == "relu" else common_spec.Activation.SWISH
    )
    if config.hidden_act in ("gelu_new", "gelu_fast", "gelu_pytorch_tanh"):
        activation = common_spec.Activation.GELUTanh

    encoder = transformer_spec.TransformerEncoderSpec(
        config.num_layers,
        config.num_heads,
        pre_norm=False,
        activation=activation,
        layernorm_embedding=True,
        num_source_embeddings=2,
        embeddings_merge=common_spec.EmbeddingsMerge.ADD,
    )
    spec = transformer_spec.TransformerEncoderModelSpec(encoder, pooling_layer=False)
    spec.encoder.scale_embeddings = False

    word = expect_tensor(tensors, "embeddings.word_embeddings.weight", (config.vocab_size, hidden))
    if len(vocabulary) != word.shape[0]:
        raise ConversionError(f"vocabulary has {len(vocabulary)} tokens but the embeddings have {word.shape[0]} rows")
    spec.encoder.embeddings[0].weight = word
    spec.encoder.embeddings[1].weight = token_types
    spec.encoder.position_encodings.encodings = positions
    _set_layer_norm(spec.encoder.layernorm_embedding, tensors, "embeddings.LayerNorm", hidden)

    for i, layer in enumerate(spec.encoder.layer):
        prefix = f"encoder.layer.{i}."
        attention = prefix + "attention.self."
        layer.self_attention.linear[0].weight = np.concatenate(
            [expect_tensor(tensors, attention + f"{p}.weight", (hidden, hidden)) for p in ("query", "key", "value")]
        )
        layer.self_attention.linear[0].bias = np.concatenate(
            [expect_tensor(tensors, attention + f"{p}.bias", (hidden,)) for p in ("query", "key", "value")]
        )
        _set_linear(layer.self_attention.linear[1], tensors, prefix + "attention.output.dense", (hidden, hidden))
        _set_layer_norm(layer.self_attention.layer_norm, tensors, prefix + "attention.output.LayerNorm", hidden)
        _set_linear(layer.ffn.linear_0, tensors, prefix + "intermediate.dense", (inter, hidden))
        _set_linear(layer.ffn.linear_1, tensors, prefix + "output.dense", (hidden, inter))
        _set_layer_norm(layer.ffn.layer_norm, tensors, prefix + "output.LayerNorm", hidden)
    if f"encoder.layer.{config.num_layers}.output.dense.weight" in tensors:
        raise ConversionError(f"the checkpoint has more layers than num_hidden_layers={config.num_layers}")

    spec.config.unk_token = unk_token
    spec.config.layer_norm_epsilon = config.layer_norm_eps
    spec.register_vocabulary(list(vocabulary))
    return spec


def _set_linear(spec, tensors: Mapping[str, np.ndarray], name: str, shape: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    spec.weight = expect_tensor(tensors, name + ".weight", shape)
    spec.bias = expect_tensor(tensors, name + ".bias", (shape[0],))


def _set_layer_norm(spec, tensors: Mapping[str, np.ndarray], name: str, hidden: int) -> None:  # type: ignore[no-untyped-def]
    spec.gamma = expect_tensor(tensors, name + ".weight", (hidden,))
    spec.beta = expect_tensor(tensors, name + ".bias", (hidden,))
