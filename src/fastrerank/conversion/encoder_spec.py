"""Map XLM-R weights to a CTranslate2 encoder spec and a numpy head: pure, no I/O.

What the mapping takes (checked against CTranslate2's own ``XLMRobertaLoader``, whose output
this reproduces for the encoder): drop the first ``padding_idx + 1`` rows of the position table
(XLM-R numbers positions from ``padding_idx + 1``); give the token-type table as a second input
embedding summed into the first; fuse q, k, v into one linear in that order; no pooler
(``ForSequenceClassification`` has none); post-norm layers with an embedding layer norm.
CTranslate2's converter stops there. The classification head it drops
(``classifier.dense`` -> tanh -> ``classifier.out_proj`` on the first token) is returned
separately and kept in float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..engine.ct2_import import import_ctranslate2
from ..errors import ConversionError, UnsupportedModelError
from .config import ACTIVATIONS, XLMRConfig

__all__ = ["HEAD_TENSORS", "build_encoder_spec", "extract_head", "normalise_names"]

HEAD_TENSORS = ("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias")


def normalise_names(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Key the encoder tensors by their name without the ``roberta.`` prefix, dropping a pooler."""
    out: dict[str, np.ndarray] = {}
    for name, array in tensors.items():
        short = name.removeprefix("roberta.")
        if short.startswith("pooler.") or short.endswith("position_ids"):
            continue
        out[short] = array
    return out


def _expect(tensors: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = tensors.get(name)
    if array is None:
        raise ConversionError(f"tensor {name!r} is missing from the checkpoint")
    if tuple(array.shape) != shape:
        raise ConversionError(f"tensor {name!r} has shape {tuple(array.shape)}, expected {shape} from config.json")
    return array


def extract_head(tensors: Mapping[str, np.ndarray], config: XLMRConfig) -> dict[str, np.ndarray]:
    """The classification head's four tensors in float32, checked against the config."""
    hidden = config.hidden_size
    shapes = {
        "classifier.dense.weight": (hidden, hidden),
        "classifier.dense.bias": (hidden,),
        "classifier.out_proj.weight": (1, hidden),
        "classifier.out_proj.bias": (1,),
    }
    return {name: np.ascontiguousarray(_expect(tensors, name, shape), dtype=np.float32) for name, shape in shapes.items()}


def build_encoder_spec(tensors: Mapping[str, np.ndarray], config: XLMRConfig, vocabulary: Sequence[str]):  # type: ignore[no-untyped-def]
    """Fill a CTranslate2 ``TransformerEncoderModelSpec`` from named float32 arrays.

    ``tensors`` are keyed without the ``roberta.`` prefix (see :func:`normalise_names`);
    ``vocabulary`` lists one token per embedding row, in id order.
    """
    import_ctranslate2()  # first, so that CTranslate2 gets its own allocator (engine.ct2_import)
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

    word = _expect(tensors, "embeddings.word_embeddings.weight", (config.vocab_size, hidden))
    if len(vocabulary) != word.shape[0]:
        raise ConversionError(f"vocabulary has {len(vocabulary)} tokens but the embeddings have {word.shape[0]} rows")
    spec.encoder.embeddings[0].weight = word
    token_types = tensors.get("embeddings.token_type_embeddings.weight")
    if token_types is None or token_types.ndim != 2 or token_types.shape[1] != hidden:
        raise ConversionError("tensor 'embeddings.token_type_embeddings.weight' is missing or mis-shaped")
    spec.encoder.embeddings[1].weight = token_types
    positions = _expect(tensors, "embeddings.position_embeddings.weight", (config.max_position_embeddings, hidden))
    spec.encoder.position_encodings.encodings = positions[config.pad_token_id + 1 :]
    _set_layer_norm(spec.encoder.layernorm_embedding, tensors, "embeddings.LayerNorm", hidden)

    for i, layer in enumerate(spec.encoder.layer):
        prefix = f"encoder.layer.{i}."
        attention = prefix + "attention.self."
        layer.self_attention.linear[0].weight = np.concatenate(
            [_expect(tensors, attention + f"{p}.weight", (hidden, hidden)) for p in ("query", "key", "value")]
        )
        layer.self_attention.linear[0].bias = np.concatenate(
            [_expect(tensors, attention + f"{p}.bias", (hidden,)) for p in ("query", "key", "value")]
        )
        _set_linear(layer.self_attention.linear[1], tensors, prefix + "attention.output.dense", (hidden, hidden))
        _set_layer_norm(layer.self_attention.layer_norm, tensors, prefix + "attention.output.LayerNorm", hidden)
        _set_linear(layer.ffn.linear_0, tensors, prefix + "intermediate.dense", (inter, hidden))
        _set_linear(layer.ffn.linear_1, tensors, prefix + "output.dense", (hidden, inter))
        _set_layer_norm(layer.ffn.layer_norm, tensors, prefix + "output.LayerNorm", hidden)
    if f"encoder.layer.{config.num_layers}.output.dense.weight" in tensors:
        raise ConversionError(f"the checkpoint has more layers than num_hidden_layers={config.num_layers}")

    spec.config.unk_token = "<unk>"
    spec.config.layer_norm_epsilon = config.layer_norm_eps
    spec.register_vocabulary(list(vocabulary))
    return spec


def _set_linear(spec, tensors: Mapping[str, np.ndarray], name: str, shape: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    spec.weight = _expect(tensors, name + ".weight", shape)
    spec.bias = _expect(tensors, name + ".bias", (shape[0],))


def _set_layer_norm(spec, tensors: Mapping[str, np.ndarray], name: str, hidden: int) -> None:  # type: ignore[no-untyped-def]
    spec.gamma = _expect(tensors, name + ".weight", (hidden,))
    spec.beta = _expect(tensors, name + ".bias", (hidden,))
