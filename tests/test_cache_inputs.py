"""What users pass that used to reach huggingface_hub or the filesystem unchecked: hub ids that
huggingface_hub refuses, revisions that would leave the cache, and a cache that cannot be written.
Each gives a fastrerank error that says what to change, before anything is written.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
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


# --- cache_dir and local_files_only ----------------------------------------------------------------

BAD_CACHE_OPTIONS = [
    ({"cache_dir": 5}, InvalidTypeError, r"^cache_dir must be a folder path \(str or os\.PathLike\) or None, got int$"),
    ({"cache_dir": b"/tmp/x"}, InvalidTypeError, r"^cache_dir must be a folder path \(str or os\.PathLike\) or None, got bytes$"),
    ({"cache_dir": ["a"]}, InvalidTypeError, r"^cache_dir must be a folder path \(str or os\.PathLike\) or None, got list$"),
    ({"cache_dir": ""}, InvalidInputError, r"^cache_dir must be a folder path, got ''$"),
    ({"cache_dir": "  "}, InvalidInputError, r"^cache_dir must be a folder path, got '  '$"),
    ({"local_files_only": "yes"}, InvalidTypeError, r"^local_files_only must be a bool, got str 'yes'$"),
    ({"local_files_only": 1}, InvalidTypeError, r"^local_files_only must be a bool, got int 1$"),
    ({"local_files_only": None}, InvalidTypeError, r"^local_files_only must be a bool, got NoneType None$"),
]

ENTRY_POINTS = {
    "Reranker": lambda model, out, **kw: Reranker(model, **kw),
    "rank": lambda model, out, **kw: fastrerank.rank("q", ["d"], model=model, **kw),
    "score_pairs": lambda model, out, **kw: fastrerank.score_pairs([("q", "d")], model=model, **kw),
    "arank": lambda model, out, **kw: asyncio.run(fastrerank.arank("q", ["d"], model=model, **kw)),
    "convert": lambda model, out, **kw: fastrerank.convert(model, out, **kw),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(("options", "error", "message"), BAD_CACHE_OPTIONS, ids=[str(o) for o, _, _ in BAD_CACHE_OPTIONS])
def test_bad_cache_options_are_refused_before_anything_is_written(entry: str, options: dict[str, object], error: type[Exception],
                                                                  message: str, hf_models: dict[str, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTRERANK_CACHE", str(tmp_path / "cache"))
    before = _tree(tmp_path)
    with pytest.raises(error, match=message):
        ENTRY_POINTS[entry](hf_models["tiny"], tmp_path / "out", **options)
    assert _tree(tmp_path) == before


def test_a_cache_dir_that_is_a_file_is_refused(hf_models: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(InvalidInputError, match=rf"^cache_dir must be a folder, but {re.escape(repr(str(tmp_path / 'afile')))} is a file$"):
        Reranker(hf_models["tiny"], cache_dir=tmp_path / "afile")


def test_cache_dir_holds_the_conversion_instead_of_fastrerank_cache(hf_models: dict[str, Path], converted, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTRERANK_CACHE", str(tmp_path / "env-cache"))
    with Reranker(hf_models["tiny"], compute_type="float32", threads=1, cache_dir=str(tmp_path / "mine")) as reranker, \
            Reranker(converted("tiny"), threads=1) as reference:
        assert reranker.model_path.parent == tmp_path / "mine"
        np.testing.assert_allclose(reranker.score("apple fruit", ["apple pie", "car engine"]),
                                   reference.score("apple fruit", ["apple pie", "car engine"]), atol=1e-6)
        copy = pickle.loads(pickle.dumps(reranker))  # loads again from the same cache_dir
        with copy:
            assert copy.model_path == reranker.model_path
    assert not (tmp_path / "env-cache").exists()
    with Reranker(hf_models["tiny"], compute_type="float32", threads=1) as by_environment:  # the default is still the variable
        assert by_environment.model_path.parent == tmp_path / "env-cache"


def test_an_unwritable_cache_dir_says_to_pass_another(hf_models: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    cache = tmp_path / "afile" / "cache"
    with pytest.raises(ModelLoadError, match=rf"^cannot write the conversion cache '{re.escape(str(cache))}' \(Not a directory\); "
                                             r"pass a writable folder as cache_dir$"):
        Reranker(hf_models["tiny"], threads=1, cache_dir=cache)


def test_the_process_cache_keys_on_cache_dir_but_shares_across_local_files_only(hf_models: dict[str, Path], tmp_path: Path) -> None:
    from fastrerank import _api

    fastrerank.clear_cache()
    try:
        model = hf_models["tiny"]
        first = fastrerank.rank("apple", ["apple pie"], model=model, compute_type="float32", cache_dir=tmp_path / "a")
        again = fastrerank.rank("apple", ["apple pie"], model=model, compute_type="float32", cache_dir=str(tmp_path / "a"),
                                local_files_only=True)  # the same model: no second copy for local_files_only
        assert len(_api._cache) == 1 and again == first
        other = fastrerank.score_pairs([("apple", "apple pie")], model=model, compute_type="float32", cache_dir=tmp_path / "b")
        assert sorted(reranker.model_path.parent for reranker in _api._cache.values()) == [tmp_path / "a", tmp_path / "b"]
        assert other[0] == pytest.approx(first[0].score, abs=1e-6)
    finally:
        fastrerank.clear_cache()
