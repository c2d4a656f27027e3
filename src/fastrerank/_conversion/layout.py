"""Check a checkpoint's tensor names and shapes against its config, from the headers alone: pure, shared by every family."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import ConversionError

__all__ = ["check_encoder_layout"]

_LAYER = re.compile(r"encoder\.layer\.(\d+)\.")


def check_encoder_layout(shapes: Mapping[str, tuple[int, ...]], prefix: str, num_layers: int, hidden: int,
                         intermediate: int, outside_layers: Mapping[str, tuple[int | None, ...]]) -> None:
    """Check a BERT-style encoder's post-LN layers and the tensors ``outside_layers`` (short name -> shape).

    ``shapes`` maps each tensor name (with or without ``prefix``: ``roberta.``, ``bert.``) to its
    shape, as a safetensors header gives them; a ``None`` dimension accepts any size >= 1. The
    layer count is compared first, so that a config claiming a million layers fails here in
    constant time instead of building a million-layer spec.

    Raises:
        ConversionError: the layer count differs from ``num_hidden_layers``, a tensor is missing,
            or a shape differs from what ``config.json`` implies (both named).
    """
    named = {name.removeprefix(prefix): name for name in shapes}
    layers = {int(match.group(1)) for short in named if (match := _LAYER.match(short))}
    if len(layers) != num_layers:
        raise ConversionError(
            f"config.json: num_hidden_layers={num_layers} but the checkpoint has {len(layers)} encoder layers"
        )
    expected = dict(outside_layers)
    for i in range(num_layers):  # bounded: the layer count equals the checkpoint's, checked above
        layer = f"encoder.layer.{i}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            expected[f"{layer}{part}.weight"] = (hidden, hidden)
            expected[f"{layer}{part}.bias"] = (hidden,)
        for part in ("attention.output.LayerNorm", "output.LayerNorm"):
            expected[f"{layer}{part}.weight"] = (hidden,)
            expected[f"{layer}{part}.bias"] = (hidden,)
        expected[f"{layer}intermediate.dense.weight"] = (intermediate, hidden)
        expected[f"{layer}intermediate.dense.bias"] = (intermediate,)
        expected[f"{layer}output.dense.weight"] = (hidden, intermediate)
        expected[f"{layer}output.dense.bias"] = (hidden,)
    for short, want in expected.items():
        name = named.get(short)
        if name is None:
            raise ConversionError(f"tensor {short!r} is missing from the checkpoint")
        found = tuple(shapes[name])
        if len(found) != len(want) or any(f < 1 if w is None else f != w for f, w in zip(found, want)):
            shown = "(" + ", ".join("*" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "") + ")"
            raise ConversionError(f"tensor {name!r} has shape {found}, expected {shown} from config.json")
