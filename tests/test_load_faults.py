"""Damaged converted folders and concurrent conversions (docs/reliability.md, matrix B).

The rows about bad Hugging Face checkpoints are covered by test_conversion.py; these are the
rows about what a converted folder can suffer after the fact (a corrupt or truncated file, a
missing commit marker, a newer format) and about two processes converting the same model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastrerank import (
    ModelLoadError,
    ModelNotFoundError,
    Reranker,
    UnsupportedModelError,
)
from fastrerank.errors import CorruptModelError

from .reliability_helpers import SRC, describe

QUERY = "apple fruit"
DOCS = ["the apple is a fruit", "Paris is a city", ""]


def _edit_metadata(folder: Path, **changes: object) -> None:
    marker = folder / "fastrerank.json"
    metadata = json.loads(marker.read_text())
    metadata.update(changes)
    marker.write_text(json.dumps(metadata))


def _overwrite_same_size(path: Path, seed: int = 0) -> None:
    size = path.stat().st_size
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())


def _bump_binary_version(folder: Path) -> None:
    data = bytearray((folder / "model.bin").read_bytes())
    data[0:4] = (99).to_bytes(4, "little")  # CTranslate2's binary version field
    (folder / "model.bin").write_bytes(bytes(data))


DAMAGE = {
    "model.bin garbage": (lambda f: _overwrite_same_size(f / "model.bin"), CorruptModelError,
                          r"^CTranslate2 cannot load '.*' \(.*\); re-convert with force=True$"),
    "model.bin from a newer CTranslate2": (_bump_binary_version, CorruptModelError,
                                           r"binary version v99.*re-convert with force=True$"),
    "model.bin truncated": (lambda f: (f / "model.bin").write_bytes((f / "model.bin").read_bytes()[:100]), CorruptModelError,
                            r"^model\.bin in '.*' has 100 bytes, expected \d+; re-convert with force=True$"),
    "head missing": (lambda f: (f / "head.safetensors").unlink(), CorruptModelError,
                     r"^head\.safetensors is missing in '.*'; re-convert with force=True$"),
    "head garbage": (lambda f: _overwrite_same_size(f / "head.safetensors"), CorruptModelError,
                     r"^head\.safetensors cannot be read \(.*\); re-convert with force=True$"),
    "tokenizer garbage": (lambda f: _overwrite_same_size(f / "tokenizer.json"), CorruptModelError,
                          r"^tokenizer\.json cannot be loaded"),
    "fastrerank.json missing": (lambda f: (f / "fastrerank.json").unlink(), ModelNotFoundError,
                                r"^fastrerank\.json is missing in '.*': not a converted fastrerank model"),
    "fastrerank.json not JSON": (lambda f: (f / "fastrerank.json").write_text("{oops"), CorruptModelError,
                                 r"fastrerank\.json: Expecting property name"),
    "format too new": (lambda f: _edit_metadata(f, format_version=4), UnsupportedModelError,
                       r"fastrerank\.json: model format v4; this fastrerank reads <= v3 \(upgrade fastrerank\)$"),
    "unknown metadata key": (lambda f: _edit_metadata(f, surprise=1), CorruptModelError,
                             r"fastrerank\.json: unknown key 'surprise'; re-convert with force=True$"),
    "vocab larger than embeddings": (lambda f: _edit_metadata(f, embedding_rows=500), CorruptModelError,
                                     r"^the tokenizer has 1000 tokens but the model only 500 embedding rows$"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_converted_folder_gives_a_model_load_error(case: str, converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    damage, error, message = DAMAGE[case]
    folder = shutil.copytree(converted("tiny"), tmp_path / "model")
    damage(folder)
    with pytest.raises(error, match=message) as caught:
        Reranker(folder, threads=1)
    assert isinstance(caught.value, ModelLoadError)
    if case.startswith("model.bin") and "truncated" not in case:
        assert isinstance(caught.value.__cause__, RuntimeError)  # CTranslate2's own error, kept as the cause


def test_files_of_a_good_copy_load(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = shutil.copytree(converted("tiny"), tmp_path / "model")
    with Reranker(folder, threads=1) as copy, Reranker(converted("tiny"), threads=1) as original:
        np.testing.assert_array_equal(copy.score(QUERY, DOCS), original.score(QUERY, DOCS))


_RACER = """
import json, os, sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
from fastrerank import Reranker
with Reranker(sys.argv[1], compute_type="float32", threads=1) as reranker:
    print(json.dumps({"path": str(reranker.model_path), "scores": reranker.score(*json.loads(sys.argv[3])).tolist()}))
"""


@pytest.mark.slow
def test_two_processes_converting_the_same_model_make_one_folder(hf_models: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": SRC, "FASTRERANK_CACHE": str(cache)}
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, str(hf_models["tiny"]), str(go), json.dumps([QUERY, DOCS])],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    time.sleep(2)  # both interpreters started and are polling
    go.touch()
    results = []
    for racer in racers:
        stdout, stderr = racer.communicate(timeout=120)
        done = subprocess.CompletedProcess(racer.args, racer.returncode, stdout, stderr)
        assert racer.returncode == 0, describe(done)
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert results[0]["path"] == results[1]["path"]
    assert results[0]["scores"] == results[1]["scores"]
    entries = sorted(path.name for path in cache.iterdir())
    assert [name for name in entries if not name.endswith(".lock")] == [Path(results[0]["path"]).name], entries


def test_converted_files_share_one_mode(hf_models: dict[str, Path], tmp_path: Path) -> None:
    from fastrerank import convert

    out = convert(hf_models["tiny"], tmp_path / "model", quantization="float32")
    modes = {path.name: path.stat().st_mode & 0o777 for path in out.iterdir()}
    assert len(set(modes.values())) == 1, modes  # safetensors alone would write head.safetensors 0600
