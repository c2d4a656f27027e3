"""What users pass that used to reach huggingface_hub or the filesystem unchecked: hub ids that
huggingface_hub refuses, revisions that would leave the cache, and a cache that cannot be written.
Each gives a fastrerank error that says what to change, before anything is written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastrerank
from fastrerank import InvalidInputError, InvalidTypeError, ModelLoadError, ModelNotFoundError, Reranker
from fastrerank import _hub as hub

from .reliability_helpers import describe


def _tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


# --- hub ids huggingface_hub refuses ---------------------------------------------------------------

BAD_HUB_IDS = {
    "BAAI/bge-reranker-v2-m3-": "Repo id must use alphanumeric chars",
    "BAAI/bge-reranker-v2-m3.": "Repo id must use alphanumeric chars",
    "BAAI/bge--reranker": "Cannot have -- or .. in repo_id",
    "BAAI/bge-reranker.git": "Repo_id cannot end by '.git'",
    "a" * 97: "the maximum length is 96",
}


@pytest.mark.parametrize("name", sorted(BAD_HUB_IDS))
def test_a_hub_id_huggingface_hub_refuses_is_model_not_found(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = (rf"^model {re.escape(repr(name)[:77])}.* is neither an existing folder nor a valid Hugging Face hub id "
               rf"\(.*{re.escape(BAD_HUB_IDS[name])}.*\)$")
    with pytest.raises(ModelNotFoundError, match=message) as caught:
        Reranker(name)
    assert len(str(caught.value)) < 300  # the id is not repeated in the reason
    with pytest.raises(ModelNotFoundError, match=message):
        fastrerank.convert(name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_refused_hub_id_on_the_command_line_gives_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "fastrerank", "rank", "--model", "BAAI/bge-reranker-v2-m3-", "q", "d"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1, describe(done)
    assert done.stderr.startswith("fastrerank rank: error: model 'BAAI/bge-reranker-v2-m3-' is neither an existing folder "
                                  "nor a valid Hugging Face hub id ("), describe(done)
    assert "Traceback" not in done.stderr


def test_paths_keep_the_folder_message() -> None:
    with pytest.raises(ModelNotFoundError, match=r"^model folder '\./missing-model' does not exist$"):
        Reranker("./missing-model")
    assert hub.looks_like_hub_id("BAAI/bge-reranker-v2-m3") and hub.looks_like_hub_id("bert-base")
    assert not hub.looks_like_hub_id("~/model") and not hub.looks_like_hub_id("a/b/c")


# --- an unwritable cache ---------------------------------------------------------------------------


def test_a_cache_under_a_file_names_fastrerank_cache(hf_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "afile").write_text("not a folder")
    cache = tmp_path / "afile" / "cache"
    monkeypatch.setenv("FASTRERANK_CACHE", str(cache))
    with pytest.raises(ModelLoadError, match=rf"^cannot write the conversion cache '{re.escape(str(cache))}' \(Not a directory\); "
                                             r"set FASTRERANK_CACHE to a writable folder$") as caught:
        Reranker(hf_models["tiny"], threads=1)
    assert isinstance(caught.value.__cause__, NotADirectoryError)


def test_an_unwritable_lock_names_fastrerank_cache(hf_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import filelock

    # Tests run as root, which no file mode stops: refuse the lock as a read-only folder would.
    def refuse(self: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / "cache" / "x.lock"))

    monkeypatch.setenv("FASTRERANK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    with pytest.raises(ModelLoadError, match=rf"^cannot write the conversion cache '{re.escape(str(tmp_path / 'cache'))}' "
                                             r"\(Permission denied\); set FASTRERANK_CACHE to a writable folder$"):
        Reranker(hf_models["tiny"], threads=1)


# --- revisions never reach the filesystem unchecked ------------------------------------------------

BAD_REVISIONS = ["x/../../../elsewhere", "..", "a/./b", "/main", "main/", "a//b", "", "a\x00b", "a\nb", "a b", "x" * 256]


@pytest.mark.parametrize("revision", BAD_REVISIONS)
def test_a_bad_revision_is_refused_before_anything_is_written(revision: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "deep" / "hf"))
    monkeypatch.setenv("FASTRERANK_CACHE", str(tmp_path / "deep" / "er" / "cache"))
    before = _tree(tmp_path)
    message = rf"^revision must be a branch, tag or commit: .*; got {re.escape(repr(revision)[:77])}"
    with pytest.raises(InvalidInputError, match=message):
        Reranker("org/name", revision=revision)
    with pytest.raises(InvalidInputError, match=message):
        fastrerank.convert("org/name", tmp_path / "out", revision=revision)
    assert _tree(tmp_path) == before


def test_good_revisions_pass_and_the_cache_folder_stays_inside_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for revision in (None, "main", "v1.0", "refs/pr/1", "feature/new-head", "0123456789abcdef0123456789abcdef01234567"):
        assert hub.check_revision(revision) == revision
    with pytest.raises(InvalidTypeError, match=r"^revision must be a str \(branch, tag or commit\) or None, got int$"):
        hub.check_revision(5)
    monkeypatch.setenv("FASTRERANK_CACHE", str(tmp_path / "cache"))
    for source, revision, quantization in [("org/name", "refs/pr/1", "int8"), ("../../x", None, "../../q"), ("/", "main", "/")]:
        folder = hub.converted_cache_dir(source, revision, quantization)
        assert folder.parent == tmp_path / "cache" and folder.name not in (".", ".."), folder
    assert hub.converted_cache_dir("org/name", "refs/pr/1", "int8").name.startswith("org--name--refs--pr--1--int8--")
