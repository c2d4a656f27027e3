"""Conversion never loses data and never publishes a model it cannot trust.

``force`` replaces only a previous conversion; a config.json or checkpoint that would convert and
then crash, fail at every call or score nonsense is refused at conversion, naming the key or the
tensor; temporary folders are swept by literal name and never while a conversion writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fastrerank import ConversionError, Reranker, UnsupportedModelError, convert
from fastrerank import _model_format as model_format
from fastrerank._conversion import checkpoint as checkpoint_module
from fastrerank._conversion import convert as convert_module
from fastrerank._conversion import output as output_module
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


# --- 1. force replaces only a conversion -------------------------------------------------------


def test_output_equal_to_source_is_refused_and_source_kept(hf_models: dict[str, Path], tmp_path: Path) -> None:
    source = _copy(hf_models["tiny"], tmp_path / "model")
    before = _snapshot(source)
    with pytest.raises(ConversionError, match="output '.*model' is the source folder; choose another output"):
        convert(source, source, quantization="float32", force=True)
    assert _snapshot(source) == before
    assert _temporaries(tmp_path) == []


def test_output_holding_the_source_is_refused_even_when_it_is_a_conversion(
        hf_models: dict[str, Path], converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A converted folder the user later put the Hugging Face model into: replacing it would delete the source.
    holder = _copy(converted("tiny"), tmp_path / "holder")
    source = _copy(hf_models["tiny"], holder / "hf")
    before = _snapshot(holder)
    with pytest.raises(ConversionError, match="output '.*holder' contains the source folder '.*hf'"):
        convert(source, holder, quantization="float32", force=True)
    assert _snapshot(holder) == before


def test_cli_force_into_the_current_folder_keeps_everything(hf_models: dict[str, Path], tmp_path: Path) -> None:
    # The reported case: `fastrerank convert ./model . --force` used to delete the current folder, source included.
    work = tmp_path / "work"
    _copy(hf_models["tiny"], work / "model")
    (work / "notes.txt").write_text("mine")
    before = _snapshot(work)
    done = subprocess.run([sys.executable, "-m", "fastrerank", "convert", "./model", ".", "--force"],
                          cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "contains the source folder 'model'" in done.stderr
    assert "Traceback" not in done.stderr
    assert _snapshot(work) == before


def test_force_refuses_a_folder_that_is_not_a_conversion(hf_models: dict[str, Path], tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for force in (True, False):
        with pytest.raises(ConversionError, match="'.*mine' exists and is not a fastrerank conversion "
                                                  r"\(it has no fastrerank.json\); force=True only replaces"):
            convert(hf_models["tiny"], mine, quantization="float32", force=force)
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mine"]


def test_force_refuses_a_file(hf_models: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("a file")
    with pytest.raises(ConversionError, match="'.*out' exists and is a file, not a converted folder"):
        convert(hf_models["tiny"], target, quantization="float32", force=True)
    assert target.read_text() == "a file"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_force_refuses_a_symbolic_link_and_keeps_its_target(converted, tmp_path: Path, hf_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    target = _copy(converted("tiny"), tmp_path / "v1")
    link = tmp_path / "current"
    link.symlink_to(target)
    before = _snapshot(target)
    with pytest.raises(ConversionError, match="'.*current' exists and is a symbolic link"):
        convert(hf_models["tiny"], link, quantization="float32", force=True)
    assert link.is_symlink() and _snapshot(target) == before


def test_force_replaces_a_previous_conversion(hf_models: dict[str, Path], tmp_path: Path) -> None:
    out = convert(hf_models["tiny"], tmp_path / "out", quantization="float32")
    convert(hf_models["tiny"], out, quantization="int8", force=True)
    assert model_format.read_metadata(out).quantization == "int8"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_output_inside_the_source_is_created_and_replaced(hf_models: dict[str, Path], tmp_path: Path) -> None:
    source = _copy(hf_models["tiny"], tmp_path / "model")
    before = _snapshot(source)
    out = convert(source, source / "ct2", quantization="float32")
    convert(source, out, quantization="int8", force=True)
    assert model_format.read_metadata(out).quantization == "int8"
    assert {name: digest for name, digest in _snapshot(source).items() if not name.startswith("ct2")} == before


def test_output_is_checked_before_any_weight_is_read(hf_models: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    monkeypatch.setattr(convert_module, "open_checkpoint", lambda folder, **_: opened.append(folder))
    (tmp_path / "out").write_text("a file")
    with pytest.raises(ConversionError, match="is a file"):
        convert(hf_models["tiny"], tmp_path / "out", force=True)
    assert opened == []


def test_hub_id_output_is_checked_before_downloading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastrerank import _hub as hub

    downloads: list[str] = []
    monkeypatch.setattr(hub, "download_snapshot", lambda repo_id, *args, **kwargs: downloads.append(repo_id))
    (tmp_path / "out").mkdir()
    with pytest.raises(ConversionError, match="is not a fastrerank conversion"):
        convert("BAAI/bge-reranker-base", tmp_path / "out", force=True)
    assert downloads == []


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


# --- 9. temporary folders ---------------------------------------------------------------------


def test_stale_temporary_of_an_output_with_glob_characters_is_removed(hf_models: dict[str, Path], tmp_path: Path) -> None:
    stale = tmp_path / f"m[1].tmp-{_dead_pid()}-deadbeef"
    stale.mkdir()
    (stale / "model.bin").write_bytes(b"half")
    convert(hf_models["tiny"], tmp_path / "m[1]", quantization="float32")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m[1]"]


@pytest.mark.parametrize("output", ["*", "a*", "?"])
def test_an_output_named_like_a_pattern_spares_other_outputs_temporaries(output: str, hf_models: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    dead = _dead_pid()
    others = [tmp_path / f"other.tmp-{dead}-deadbeef", tmp_path / f"ab.tmp-{dead}-deadbeef", tmp_path / f"b.tmp-{dead}-x"]
    for folder in others:
        folder.mkdir()
    convert(hf_models["tiny"], tmp_path / output, quantization="float32")
    assert all(folder.is_dir() for folder in others)


def test_a_source_named_like_a_stale_temporary_is_never_swept(hf_models: dict[str, Path], tmp_path: Path) -> None:
    source = _copy(hf_models["tiny"], tmp_path / f"out.tmp-{_dead_pid()}-deadbeef")
    before = _snapshot(source)
    convert(source, tmp_path / "out", quantization="float32")
    assert _snapshot(source) == before


def test_the_sweep_never_removes_a_temporary_this_process_is_writing(tmp_path: Path) -> None:
    live = tmp_path / f"out.tmp-{os.getpid()}-1234abcd"
    left = tmp_path / f"out.tmp-{os.getpid()}-5678abcd"  # same pid, not being written: a reused pid's leftover
    live.mkdir()
    left.mkdir()
    with output_module.in_flight(live):
        output_module.remove_stale_temporaries(tmp_path / "out")
        assert live.is_dir() and not left.exists()
    output_module.remove_stale_temporaries(tmp_path / "out")
    assert not live.exists()


def _convert_in_threads(source: Path, out: Path, *, force: bool) -> list[object]:
    """Two conversions into ``out``: the second starts once the first is writing its temporary folder."""
    results: list[object] = [None, None]

    def run(slot: int) -> None:
        try:
            results[slot] = convert(source, out, quantization="float32", force=force)
        except FastRerankError as err:
            results[slot] = err

    first = threading.Thread(target=run, args=(0,))
    first.start()
    deadline = time.monotonic() + 30
    while not list(out.parent.glob("out.tmp-*")) and first.is_alive() and time.monotonic() < deadline:
        time.sleep(0.002)
    second = threading.Thread(target=run, args=(1,))
    second.start()
    first.join(60)
    second.join(60)
    return results


def test_two_threads_into_one_output_without_force(hf_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    results = _convert_in_threads(hf_models["tiny"], out, force=False)
    assert results[0] == out, results
    assert isinstance(results[1], ConversionError) and "exists; pass force=True" in str(results[1]), results
    assert model_format.read_metadata(out).quantization == "float32"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_two_threads_into_one_output_with_force(hf_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    results = _convert_in_threads(hf_models["tiny"], out, force=True)
    assert results == [out, out]
    with Reranker(out, threads=1) as reranker:
        assert len(reranker.rank("apple", ["apple fruit", "city river"])) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    assert output_module._output_locks == {}  # the per-output locks do not pile up
