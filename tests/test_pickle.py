"""Pickle checkpoints (docs/reliability.md, matrix B: the ``pytorch_model.bin`` rows; goal G12).

A hostile ``pytorch_model.bin`` whose ``__reduce__`` writes a sentinel file is refused without the
opt-in before the file is even opened (an audit hook watches every ``open``), and refused by
``torch.load(weights_only=True)`` with it; the sentinel never appears. A genuine ``.bin`` with the
opt-in gives the same scores as the same weights in safetensors.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastrerank import Reranker, convert
from fastrerank.errors import MissingDependencyError

from .reliability_helpers import describe, run_python

QUERY = "apple fruit"
DOCS = ["the apple is a fruit", "Paris is a city", "机器学习 data model", ""]


class _Payload:
    """Unpickling this runs code: it writes the sentinel file."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (exec, (f"open({str(self.sentinel)!r}, 'w').write('pwned')",))


def _hostile_folder(hf: Path, dest: Path, sentinel: Path, container: str) -> Path:
    import torch
    from safetensors.torch import load_file

    shutil.copytree(hf, dest)
    state = load_file(dest / "model.safetensors")
    (dest / "model.safetensors").unlink()
    state["classifier.out_proj.bias"] = _Payload(sentinel)  # type: ignore[assignment]
    if container == "zip":
        torch.save(state, dest / "pytorch_model.bin")  # what transformers writes
    else:
        with open(dest / "pytorch_model.bin", "wb") as handle:  # a bare legacy pickle
            pickle.dump(state, handle)
    return dest


_CHILD = """
import json, sys
from pathlib import Path
opened = []
def watch(event, args):
    if event == "open" and str(args[0]).endswith("pytorch_model.bin"):
        opened.append(str(args[0]))
sys.addaudithook(watch)
from fastrerank import FastRerankError, Reranker, convert
folder, out, allow = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
outcomes = []
for attempt in ("convert", "Reranker"):
    try:
        if attempt == "convert":
            convert(folder, out, quantization="float32", allow_pickle=allow)
        else:
            Reranker(folder, allow_pickle=allow, compute_type="float32")
        outcomes.append({"attempt": attempt, "error": None})
    except FastRerankError as err:
        cause = err.__cause__
        outcomes.append({"attempt": attempt, "error": type(err).__name__, "message": str(err),
                         "cause": None if cause is None else f"{type(cause).__module__}.{type(cause).__name__}"})
    outcomes[-1]["opened"] = len(opened)
print(json.dumps(outcomes))
"""


def _attempt(folder: Path, out: Path, allow: bool, cache: Path) -> list[dict]:  # type: ignore[type-arg]
    done = run_python(_CHILD, folder, out, "1" if allow else "0", env={"FASTRERANK_CACHE": str(cache)}, timeout=120)
    assert done.returncode == 0, describe(done)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_g12_hostile_pickle_is_refused_and_never_runs(container: str, hf_models: dict[str, Path], tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    folder = _hostile_folder(hf_models["tiny"], tmp_path / "hostile", sentinel, container)
    cache = tmp_path / "cache"

    refused = _attempt(folder, tmp_path / "out", False, cache)
    for outcome in refused:
        assert outcome["error"] == "ModelLoadError", outcome
        assert outcome["message"] == (
            f"{folder / 'pytorch_model.bin'} is a pickle checkpoint, which can run code when loaded; pass "
            "allow_pickle=True (it is then read with torch.load(weights_only=True)) or convert it to safetensors"
        )
        assert outcome["opened"] == 0, outcome  # refused before the file was opened

    opted_in = _attempt(folder, tmp_path / "out", True, cache)
    for outcome in opted_in:
        assert outcome["error"] == "ConversionError", outcome
        assert outcome["message"].startswith(
            "pytorch_model.bin: refused or unreadable with torch.load(weights_only=True): Weights only load failed"
        ), outcome
        assert outcome["cause"] == "_pickle.UnpicklingError", outcome

    assert not sentinel.exists()
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp-*"))
    leftovers = [path for path in cache.iterdir() if not path.name.endswith(".lock")] if cache.exists() else []
    assert leftovers == []

    # Control: the file really is hostile. A full unpickle (what fastrerank never does) runs it.
    done = run_python("import sys, torch; torch.load(sys.argv[1], weights_only=False)", folder / "pytorch_model.bin")
    assert sentinel.read_text() == "pwned", describe(done)


def test_g12_genuine_pickle_with_opt_in_scores_like_safetensors(hf_models: dict[str, Path], converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch
    from safetensors.torch import load_file

    folder = shutil.copytree(hf_models["tiny"], tmp_path / "pickled")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    out = convert(folder, tmp_path / "out", quantization="float32", allow_pickle=True)
    with Reranker(out, threads=1) as from_pickle, Reranker(converted("tiny"), threads=1) as from_safetensors:
        np.testing.assert_array_equal(from_pickle.score(QUERY, DOCS), from_safetensors.score(QUERY, DOCS))


def test_pickle_needs_a_recent_torch(hf_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from safetensors.torch import load_file

    folder = shutil.copytree(hf_models["tiny"], tmp_path / "pickled")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(MissingDependencyError, match=r"needs torch >= 2\.10, found 2\.5\.1\+cpu"):
        convert(folder, tmp_path / "out", quantization="float32", allow_pickle=True)
    assert not (tmp_path / "out").exists()
