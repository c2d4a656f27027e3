"""Integrity of converted folders: the sha256 of every file recorded at conversion and checked by
``fastrerank.verify`` / ``fastrerank verify`` (and right after a conversion into the cache), and
a ``fastrerank.json`` whose fields have the wrong type or range.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastrerank
from fastrerank import (
    CorruptModelError,
    InvalidTypeError,
    ModelNotFoundError,
    Reranker,
    UnsupportedModelError,
)
from fastrerank import _loading as loading
from fastrerank._cli import main

from .reliability_helpers import describe

QUERY = "apple fruit"
DOCS = ["the apple is a fruit", "Paris is a city", "fruit salad with apple"]
PAGE = 4096


def _copy(converted, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    return Path(shutil.copytree(converted("tiny"), tmp_path / "model"))


def _zero_middle_page(path: Path) -> None:
    """Zero one 4 KiB page in the middle of ``path``: same size, same format, different bytes."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 // PAGE * PAGE
    assert any(data[start:start + PAGE]), "the page was zeros already: the damage would be no damage"
    data[start:start + PAGE] = bytes(PAGE)
    path.write_bytes(bytes(data))


def _metadata(folder: Path) -> dict[str, object]:
    return json.loads((folder / "fastrerank.json").read_text())


def _write_metadata(folder: Path, metadata: object) -> None:
    (folder / "fastrerank.json").write_text(json.dumps(metadata))


# --- checksums recorded at conversion, checked by fastrerank.verify ---------------------------------


def test_conversion_records_the_sha256_of_every_file(converted) -> None:  # type: ignore[no-untyped-def]
    folder = converted("tiny")
    metadata = _metadata(folder)
    assert metadata["format_version"] == 3
    files = metadata["files"]
    assert isinstance(files, dict) and "model.bin" in files and "head.safetensors" in files
    assert metadata["sha256"] == {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files}


def test_an_intact_folder_verifies(converted, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    folder = converted("tiny")
    assert fastrerank.verify(folder) == _metadata(folder)["sha256"]
    assert fastrerank.verify(str(folder)) == _metadata(folder)["sha256"]
    assert main(["verify", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"ok: {len(_metadata(folder)['files'])} files of {folder} match their sha256\n", "")


@pytest.mark.parametrize("name", ["model.bin", "head.safetensors"])
def test_a_zeroed_page_loads_silently_but_verify_names_the_file(name: str, converted, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(converted, tmp_path)
    _zero_middle_page(folder / name)
    # What load checks (sizes) cannot see this damage: the model loads and scores differently.
    with Reranker(folder, threads=1) as damaged, Reranker(converted("tiny"), threads=1) as intact:
        assert not np.allclose(damaged.score(QUERY, DOCS, raw=True), intact.score(QUERY, DOCS, raw=True))
    message = (rf"^{re.escape(name)} in '{re.escape(str(folder))}' is damaged: its sha256 is [0-9a-f]{{64}}, "
               rf"expected {_metadata(folder)['sha256'][name]}; re-convert with force=True$")  # type: ignore[index]
    with pytest.raises(CorruptModelError, match=message):
        fastrerank.verify(folder)
    assert main(["verify", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(f"fastrerank verify: error: {message[1:-1]}\n", err), err


def test_verify_from_the_command_line_exits_1_without_a_traceback(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(converted, tmp_path)
    _zero_middle_page(folder / "model.bin")
    done = subprocess.run([sys.executable, "-m", "fastrerank", "verify", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, describe(done)
    assert done.stderr.startswith(f"fastrerank verify: error: model.bin in '{folder}' is damaged: its sha256 is "), describe(done)
    assert "Traceback" not in done.stderr


def test_verify_reports_a_truncated_or_missing_file(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(converted, tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(CorruptModelError, match=r"^tokenizer\.json is missing in '.*'; re-convert with force=True$"):
        fastrerank.verify(folder)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        fastrerank.verify(tmp_path / "nope")
    with pytest.raises(InvalidTypeError, match=r"^folder must be a path \(str or os\.PathLike\), got int$"):
        fastrerank.verify(3)  # type: ignore[arg-type]


def test_a_folder_converted_before_checksums_loads_but_cannot_be_verified(converted, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(converted, tmp_path)
    metadata = _metadata(folder)
    del metadata["sha256"]
    metadata["format_version"] = 1  # exactly what fastrerank wrote before checksums
    _write_metadata(folder, metadata)
    with Reranker(folder, threads=1) as old, Reranker(converted("tiny"), threads=1) as new:
        np.testing.assert_array_equal(old.score(QUERY, DOCS), new.score(QUERY, DOCS))
    message = (r"^'.*' has no checksums \(format v1, converted before fastrerank recorded them\): its sizes match "
               r"but its content cannot be verified; re-convert with force=True to record them$")
    with pytest.raises(UnsupportedModelError, match=message):
        fastrerank.verify(folder)
    assert main(["verify", str(folder)]) == 1
    assert "has no checksums" in capsys.readouterr().err


def test_a_v2_folder_without_checksums_is_corrupt(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(converted, tmp_path)
    metadata = _metadata(folder)
    del metadata["sha256"]
    _write_metadata(folder, metadata)
    with pytest.raises(CorruptModelError, match=r"fastrerank\.json: sha256 is missing; re-convert with force=True$"):
        Reranker(folder, threads=1)


# --- fastrerank.json of the wrong shape ------------------------------------------------------------

SHAPES = {
    "null": (lambda m: None, r"must hold a JSON object, got NoneType"),
    "list": (lambda m: [], r"must hold a JSON object, got list"),
    "files null": (lambda m: {**m, "files": None}, r"files must be an object, got None"),
    "embedding_rows str": (lambda m: {**m, "embedding_rows": "1000"}, r"embedding_rows must be an integer >= 1, got '1000'"),
    "special_tokens list": (lambda m: {**m, "special_tokens": [0, 1, 2]}, r"special_tokens must be an object, got \[0, 1, 2\]"),
    "special token negative": (lambda m: {**m, "special_tokens": {"bos": -1}},
                               r"special_tokens\['bos'\] must be a token id >= 0, got -1"),
    "negative size": (lambda m: {**m, "files": {**m["files"], "model.bin": -5}}, r"files\['model\.bin'\] must be a size >= 0, got -5"),
    "bool for an int": (lambda m: {**m, "hidden_size": True}, r"hidden_size must be an integer >= 1, got True"),
    "bool version": (lambda m: {**m, "format_version": True}, r"format_version must be an integer >= 1, got True"),
    "zero layers": (lambda m: {**m, "num_layers": 0}, r"num_layers must be an integer >= 1, got 0"),
    "float positions": (lambda m: {**m, "max_positions": 512.0}, r"max_positions must be an integer >= 1, got 512\.0"),
    "quantization null": (lambda m: {**m, "quantization": None}, r"quantization must be a non-empty string, got None"),
    "revision int": (lambda m: {**m, "source_revision": 3}, r"source_revision must be a string or null, got 3"),
    "file outside the folder": (lambda m: {**m, "files": {"../model.bin": 1}}, r"files has an invalid name '\.\./model\.bin'"),
    "bad checksum": (lambda m: {**m, "sha256": {**m["sha256"], "model.bin": "XYZ"}},
                     r"sha256\['model\.bin'\] must be 64 lowercase hex digits, got 'XYZ'"),
    "checksums of other files": (lambda m: {**m, "sha256": {"model.bin": m["sha256"]["model.bin"]}},
                                 r"sha256 names \['model\.bin'\], files names \["),
    "missing key": (lambda m: {k: v for k, v in m.items() if k != "hidden_size"}, r"hidden_size is missing"),
    "unknown key": (lambda m: {**m, "surprise": 1}, r"unknown key 'surprise'"),
}


@pytest.mark.parametrize("case", sorted(SHAPES))
def test_metadata_of_the_wrong_shape_names_the_field(case: str, converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    edit, problem = SHAPES[case]
    folder = _copy(converted, tmp_path)
    _write_metadata(folder, edit(_metadata(folder)))
    with pytest.raises(CorruptModelError, match=rf"^{re.escape(str(folder / 'fastrerank.json'))}: {problem}.*; re-convert with force=True$"):
        Reranker(folder, threads=1)
    with pytest.raises(CorruptModelError, match=problem):
        fastrerank.verify(folder)


# --- a conversion into the cache is read back before it is used ------------------------------------


def test_a_conversion_damaged_on_its_way_to_the_cache_is_refused_and_removed(
    hf_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTRERANK_CACHE", str(tmp_path / "cache"))
    real = loading.convert_folder

    def convert_then_damage(*args: object, **kwargs: object) -> Path:
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        _zero_middle_page(out / "head.safetensors")
        return out

    monkeypatch.setattr(loading, "convert_folder", convert_then_damage)
    message = (r"^the conversion just written to the cache is damaged \(head\.safetensors in '.*' is damaged: its sha256 is "
               r"[0-9a-f]{64}, expected [0-9a-f]{64}\); it was removed and the next load converts again "
               r"\(if this repeats, check the disk that holds FASTRERANK_CACHE\)$")
    with pytest.raises(CorruptModelError, match=message):
        Reranker(hf_models["tiny"], compute_type="float32", threads=1)
    assert [path.name for path in (tmp_path / "cache").iterdir() if not path.name.endswith(".lock")] == []
    monkeypatch.setattr(loading, "convert_folder", real)
    with Reranker(hf_models["tiny"], compute_type="float32", threads=1) as reranker:
        assert fastrerank.verify(reranker.model_path)
