"""Conversion never loses data and never publishes a model it cannot trust.

``force`` replaces only a previous conversion; a config.json or checkpoint that would convert and
then crash, fail at every call or score nonsense is refused at conversion, naming the key or the
tensor; temporary folders are swept by literal name and never while a conversion writes them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastrerank import ConversionError, UnsupportedModelError, convert, model_format
from fastrerank.conversion import checkpoint as checkpoint_module
from fastrerank.errors import CorruptModelError, FastRerankError


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a digest of its bytes, to prove nothing was touched."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if ".tmp-" in path.name]


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


# --- 2. config.json values and their agreement with the weights ----------------------------------

BAD_CONFIGS = {
    # key: value, error, message
    "heads 0": ({"num_attention_heads": 0}, CorruptModelError,
                "config.json: num_attention_heads must be an int >= 1 that divides hidden_size=64, got 0"),
    "heads not dividing hidden": ({"num_attention_heads": 5}, CorruptModelError,
                                  "num_attention_heads must be an int >= 1 that divides hidden_size=64, got 5"),
    "heads as a string": ({"num_attention_heads": "4"}, CorruptModelError, "num_attention_heads must be .*, got '4'"),
    "layers -1": ({"num_hidden_layers": -1}, CorruptModelError, "num_hidden_layers must be an int >= 1, got -1"),
    "layers 0": ({"num_hidden_layers": 0}, CorruptModelError, "num_hidden_layers must be an int >= 1, got 0"),
    "layers as a float": ({"num_hidden_layers": 2.0}, CorruptModelError, "num_hidden_layers must be an int >= 1, got 2.0"),
    "layers as a bool": ({"num_hidden_layers": True}, CorruptModelError, "num_hidden_layers must be an int >= 1, got True"),
    "layers more than the checkpoint's": ({"num_hidden_layers": 3}, ConversionError,
                                          "config.json: num_hidden_layers=3 but the checkpoint has 2 encoder layers"),
    "layers fewer than the checkpoint's": ({"num_hidden_layers": 1}, ConversionError,
                                           "num_hidden_layers=1 but the checkpoint has 2 encoder layers"),
    "hidden 0": ({"hidden_size": 0}, CorruptModelError, "hidden_size must be an int >= 1, got 0"),
    "hidden as a string": ({"hidden_size": "64"}, CorruptModelError, "hidden_size must be an int >= 1, got '64'"),
    "hidden disagrees with the weights": ({"hidden_size": 32, "num_attention_heads": 2}, ConversionError,
                                          r"word_embeddings.weight' has shape \(1000, 64\), expected \(1000, 32\)"),
    "intermediate 0": ({"intermediate_size": 0}, CorruptModelError, "intermediate_size must be an int >= 1, got 0"),
    "vocab 0": ({"vocab_size": 0}, CorruptModelError, "vocab_size must be an int >= 1, got 0"),
    "vocab null": ({"vocab_size": None}, CorruptModelError, "vocab_size must be an int >= 1, got None"),
    "pad -5": ({"pad_token_id": -5}, CorruptModelError, r"pad_token_id must be an int in \[0, vocab_size=1000\), got -5"),
    "pad past the vocabulary": ({"pad_token_id": 1000}, CorruptModelError,
                                r"pad_token_id must be an int in \[0, vocab_size=1000\), got 1000"),
    "positions leave none usable": ({"max_position_embeddings": 2}, CorruptModelError,
                                    r"max_position_embeddings must be an int > pad_token_id \+ 1 = 2 .*got 2"),
    "positions disagree with the weights": ({"max_position_embeddings": 600}, ConversionError,
                                            r"position_embeddings.weight' has shape \(514, 64\), expected \(600, 64\)"),
    "eps 'nan'": ({"layer_norm_eps": "nan"}, CorruptModelError,
                  "layer_norm_eps must be a finite number > 0, got 'nan'"),
    "eps NaN": ({"layer_norm_eps": float("nan")}, CorruptModelError, "layer_norm_eps must be a finite number > 0, got nan"),
    "eps inf": ({"layer_norm_eps": float("inf")}, CorruptModelError, "layer_norm_eps must be a finite number > 0, got inf"),
    "eps 0": ({"layer_norm_eps": 0}, CorruptModelError, "layer_norm_eps must be a finite number > 0, got 0"),
    "eps negative": ({"layer_norm_eps": -1e-5}, CorruptModelError, "layer_norm_eps must be a finite number > 0, got -1e-05"),
    "activation unknown": ({"hidden_act": "tanh"}, UnsupportedModelError,
                           r"unsupported hidden_act 'tanh' \(accepted: gelu, gelu_new"),
    "activation not a string": ({"hidden_act": 3}, CorruptModelError, "hidden_act must be a string, got 3"),
    "labels true": ({"num_labels": True}, UnsupportedModelError, "True labels; a reranker has exactly 1"),
    "id2label a list": ({"id2label": ["a"]}, CorruptModelError, r"id2label must be an object, got \['a'\]"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_value_is_refused_naming_the_key(case: str, hf_models: dict[str, Path], tmp_path: Path) -> None:
    changes, error, message = BAD_CONFIGS[case]
    source = _copy(hf_models["tiny"], tmp_path / "src")
    _edit_config(source, **changes)
    with pytest.raises(error, match=message) as caught:
        convert(source, tmp_path / "out", quantization="float32")
    assert isinstance(caught.value, FastRerankError)
    assert next(iter(changes)) in str(caught.value) or "shape" in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert _temporaries(tmp_path) == []


def test_a_million_layers_fail_from_the_headers_without_reading_weights(
        hf_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A hostile config.json used to build a 1.2 GB, million-layer spec for 20 s before failing.
    reads: list[str] = []
    monkeypatch.setattr(checkpoint_module.Checkpoint, "tensors", lambda self: reads.append("tensors") or iter(()))
    source = _copy(hf_models["tiny"], tmp_path / "src")
    _edit_config(source, num_hidden_layers=1_000_000)
    with pytest.raises(ConversionError, match="num_hidden_layers=1000000 but the checkpoint has 2 encoder layers"):
        convert(source, tmp_path / "out", quantization="float32")
    assert reads == []
    assert not (tmp_path / "out").exists()


def _rewrite_weights(folder: Path, change) -> None:  # type: ignore[no-untyped-def]
    from safetensors.numpy import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_a_missing_layer_tensor_is_named_from_the_headers(hf_models: dict[str, Path], tmp_path: Path) -> None:
    source = _copy(hf_models["tiny"], tmp_path / "src")
    _rewrite_weights(source, lambda t: t.pop("roberta.encoder.layer.1.attention.self.key.bias"))
    with pytest.raises(ConversionError, match="tensor 'encoder.layer.1.attention.self.key.bias' is missing"):
        convert(source, tmp_path / "out", quantization="float32")
    assert not (tmp_path / "out").exists()


def test_an_integer_weight_is_refused_from_the_headers(hf_models: dict[str, Path], tmp_path: Path) -> None:
    source = _copy(hf_models["tiny"], tmp_path / "src")
    name = "roberta.embeddings.LayerNorm.bias"
    _rewrite_weights(source, lambda t: t.update({name: t[name].astype(np.int32)}))
    with pytest.raises(ConversionError, match=f"tensor '{name}' has dtype I32; expected float32 or float16"):
        convert(source, tmp_path / "out", quantization="float32")


# --- 3. NaN and inf weights --------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["roberta.encoder.layer.0.output.dense.weight", "classifier.out_proj.weight"])
def test_non_finite_weight_is_refused_naming_the_tensor(name: str, value: float, hf_models: dict[str, Path],
                                                        tmp_path: Path) -> None:
    source = _copy(hf_models["tiny"], tmp_path / "src")

    def poison(tensors: dict[str, np.ndarray]) -> None:
        tensors[name][0, 3] = value

    _rewrite_weights(source, poison)
    with pytest.raises(ConversionError, match=f"tensor '{name}' contains NaN or infinite values"):
        convert(source, tmp_path / "out", quantization="int8")
    assert not (tmp_path / "out").exists()
    assert _temporaries(tmp_path) == []


def test_large_finite_weights_are_not_mistaken_for_infinite(hf_models: dict[str, Path], tmp_path: Path) -> None:
    # The check sums in float64; float32's largest values must not overflow it into a false alarm.
    source = _copy(hf_models["tiny"], tmp_path / "src")
    name = "roberta.embeddings.word_embeddings.weight"
    _rewrite_weights(source, lambda t: t[name].__setitem__((slice(900, None), slice(None)), np.finfo(np.float32).max))
    assert model_format.read_metadata(convert(source, tmp_path / "out", quantization="float32")).num_layers == 2
