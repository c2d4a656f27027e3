"""Hub ids without a network (docs/reliability.md, matrix B: the hub rows; goal G11).

Each test builds a fake Hugging Face cache (``hub/models--org--name/snapshots/<commit>/...`` and
``refs/main``) under a temporary ``HF_HOME`` and runs fastrerank in a fresh interpreter whose
``socket.socket.connect`` raises and counts: "0 connects" is measured, not assumed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from fastrerank import ModelNotFoundError, Reranker
from fastrerank import _hub as hub
from fastrerank.errors import CorruptModelError

from .reference import load_reference, reference_logits_for_ids, sigmoid
from .reliability_helpers import describe, run_python

REPO = "org/name"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
QUERY = "apple fruit"
DOCS = ["the apple is a fruit", "Paris is a city", "机器学习 data model", ""]
_SNAPSHOT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "model.safetensors")

_CHILD = """
import json, socket, sys, time
connects = []
def refuse(*args, **kwargs):
    connects.append(repr(args[-1:]))
    raise OSError("network disabled by the test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.getaddrinfo = refuse  # a lookup comes before any connect; this sandbox has no DNS anyway
from fastrerank import FastRerankError, Reranker, convert
options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
start = time.perf_counter()
try:
    target = options.pop("convert_to", None)
    if target is not None:
        outcome = {"path": str(convert(sys.argv[1], target, quantization="float32", **options))}
    else:
        with Reranker(sys.argv[1], compute_type="float32", threads=1, **options) as reranker:
            outcome = {"scores": reranker.score(*json.loads(sys.argv[2])).tolist(), "path": str(reranker.model_path)}
except FastRerankError as err:
    outcome = {"error": type(err).__name__, "message": str(err)}
outcome.update(seconds=time.perf_counter() - start, connects=connects)
print(json.dumps(outcome))
"""


def _fake_hub_cache(hf_home: Path, source: Path) -> Path:
    repo = hf_home / "hub" / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in _SNAPSHOT_FILES:
        shutil.copyfile(source / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def _run(tmp_path: Path, *, offline: bool = True, **options: object) -> dict:  # type: ignore[type-arg]
    """The child's outcome; ``options`` are keywords of ``Reranker`` (or ``convert`` with ``convert_to``)."""
    env = {"HF_HOME": str(tmp_path / "hf-home"), "FASTRERANK_CACHE": str(tmp_path / "converted"),
           "HF_HUB_OFFLINE": "1" if offline else "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = run_python(_CHILD, REPO, json.dumps([QUERY, DOCS]), json.dumps(options), env=env, timeout=120)
    assert done.returncode == 0, describe(done)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _converted_folders(tmp_path: Path) -> list[Path]:
    """What the converted-model cache holds besides lock files."""
    cache = tmp_path / "converted"
    return [path for path in cache.iterdir() if not path.name.endswith(".lock")] if cache.exists() else []


def _expected(source: Path) -> np.ndarray:
    tokenizer, _ = load_reference(str(source))
    q = tokenizer(QUERY, add_special_tokens=False)["input_ids"]
    rows = [[0, *q, 2, 2, *tokenizer(doc, add_special_tokens=False)["input_ids"], 2] for doc in DOCS]
    return sigmoid(reference_logits_for_ids(source, rows))


@pytest.mark.slow
def test_g11_offline_hub_id_converts_once_then_loads_with_zero_connects(hf_models: dict[str, Path], tmp_path: Path) -> None:
    expected = _expected(hf_models["tiny"])
    _fake_hub_cache(tmp_path / "hf-home", hf_models["tiny"])
    first = _run(tmp_path)  # converted-model cache cold, hub snapshot cached: converts offline
    assert first["connects"] == [], first
    np.testing.assert_allclose(first["scores"], expected, atol=1e-5)
    assert Path(first["path"]).parent == tmp_path / "converted"

    shutil.rmtree(tmp_path / "hf-home")  # only the converted model is left: no hub at all
    for offline in (True, False):  # a valid cached conversion never asks the hub, whatever HF_HUB_OFFLINE says
        warm = _run(tmp_path, offline=offline)
        assert warm["connects"] == [], warm
        assert warm["path"] == first["path"]
        np.testing.assert_allclose(warm["scores"], expected, atol=1e-5)
    assert not list((tmp_path / "converted").glob("*.tmp-*"))


def test_g11_offline_cold_cache_fails_fast_naming_repo_and_offline(tmp_path: Path) -> None:
    (tmp_path / "hf-home").mkdir()
    cold = _run(tmp_path)
    assert cold["error"] == "ModelNotFoundError", cold
    assert cold["message"] == "'org/name' (revision main) is not in the local cache and HF_HUB_OFFLINE is set"
    assert cold["seconds"] < 1.0, cold
    print(f"G11: offline cold cache -> ModelNotFoundError in {cold['seconds']:.3f} s")
    assert cold["connects"] == []
    online = _run(tmp_path, offline=False)  # the same call online does try the network: the probe works
    assert online["error"] == "ModelNotFoundError" and online["connects"], online
    assert _converted_folders(tmp_path) == []


@pytest.mark.slow
def test_local_files_only_finds_a_hub_id_under_cache_dir_with_zero_connects(hf_models: dict[str, Path], tmp_path: Path) -> None:
    """HF_HUB_OFFLINE is not set: local_files_only alone keeps the network out."""
    expected = _expected(hf_models["tiny"])
    mine = tmp_path / "mine"
    _fake_hub_cache(mine, hf_models["tiny"])  # downloads live in <cache_dir>/hub
    first = _run(tmp_path, offline=False, cache_dir=str(mine), local_files_only=True)
    assert first["connects"] == [], first
    np.testing.assert_allclose(first["scores"], expected, atol=1e-5)
    assert Path(first["path"]).parent == mine  # converted into cache_dir, not FASTRERANK_CACHE
    assert _converted_folders(tmp_path) == []

    shutil.rmtree(mine / "hub")  # only the conversion is left in cache_dir
    warm = _run(tmp_path, offline=False, cache_dir=str(mine), local_files_only=True)
    assert warm["connects"] == [] and warm["path"] == first["path"], warm
    np.testing.assert_allclose(warm["scores"], expected, atol=1e-5)

    converted = _run(tmp_path, offline=False, cache_dir=str(tmp_path / "elsewhere"), local_files_only=True,
                     convert_to=str(tmp_path / "out"))
    assert converted["error"] == "ModelNotFoundError", converted  # another cache_dir holds nothing
    _fake_hub_cache(tmp_path / "elsewhere", hf_models["tiny"])
    converted = _run(tmp_path, offline=False, cache_dir=str(tmp_path / "elsewhere"), local_files_only=True,
                     convert_to=str(tmp_path / "out"))
    assert converted == {"path": str(tmp_path / "out"), "connects": [], "seconds": converted["seconds"]}


def test_local_files_only_without_the_model_fails_naming_it_and_never_connects(tmp_path: Path) -> None:
    (tmp_path / "hf-home").mkdir()
    for options in ({"local_files_only": True}, {"local_files_only": True, "convert_to": str(tmp_path / "out")}):
        cold = _run(tmp_path, offline=False, **options)  # type: ignore[arg-type]
        assert cold["error"] == "ModelNotFoundError", cold
        assert cold["message"] == "'org/name' (revision main) is not in the local cache and local_files_only=True"
        assert cold["connects"] == [], cold
    online = _run(tmp_path, offline=False)  # the same call without it does try the network: the probe works
    assert online["error"] == "ModelNotFoundError" and online["connects"], online
    assert _converted_folders(tmp_path) == [] and not (tmp_path / "out").exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


PARTIAL = {
    "weights deleted": (lambda s: (s / "model.safetensors").unlink(), r"no weights \(model\.safetensors\) found"),
    "weights truncated": (lambda s: _truncate(s / "model.safetensors"), r"model.safetensors has \d+ bytes, its header implies \d+ \(truncated download\?\)"),
    "tokenizer deleted": (lambda s: (s / "tokenizer.json").unlink(), "tokenizer.json is missing"),
    "tokenizer truncated": (lambda s: _truncate(s / "tokenizer.json"), r"tokenizer.json is not valid JSON \(.*\)"),
    "config deleted": (lambda s: (s / "config.json").unlink(), "config.json is missing"),
}


@pytest.mark.parametrize("case", sorted(PARTIAL))
def test_g11_partial_snapshot_is_detected_offline_and_never_converted(case: str, hf_models: dict[str, Path], tmp_path: Path) -> None:
    import re

    damage, problem = PARTIAL[case]
    damage(_fake_hub_cache(tmp_path / "hf-home", hf_models["tiny"]))
    outcome = _run(tmp_path)
    assert outcome["error"] == "CorruptModelError", outcome
    prefix = re.escape("the cached snapshot of 'org/name' (revision main) is incomplete: ")
    assert re.fullmatch(prefix + problem + re.escape("; run once online to repair it"), outcome["message"]), outcome
    assert outcome["connects"] == []
    assert _converted_folders(tmp_path) == []


# --- online paths, with huggingface_hub's download replaced (no network in the suite) --------

def _response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", f"https://huggingface.co/api/models/{REPO}"))


def test_partial_snapshot_online_is_downloaded_again_then_converted(hf_models: dict[str, Path], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    partial = tmp_path / "partial"
    shutil.copytree(hf_models["tiny"], partial)
    _truncate(partial / "model.safetensors")
    calls: list[bool] = []

    def fake_download(repo_id: str, *, force_download: bool = False, **kwargs: object) -> str:
        assert repo_id == REPO and kwargs["local_files_only"] is False
        calls.append(force_download)
        return str(hf_models["tiny"] if force_download else partial)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("FASTRERANK_CACHE", str(tmp_path / "converted"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    with Reranker(REPO, compute_type="float32", threads=1) as reranker:
        np.testing.assert_allclose(reranker.score(QUERY, DOCS), _expected(hf_models["tiny"]), atol=1e-5)
    assert calls == [False, True]  # the truncated snapshot was fetched again, not converted

    calls.clear()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, *, force_download=False, **kw: str(partial))
    with pytest.raises(CorruptModelError, match=r"still|incomplete: model.safetensors has \d+ bytes"):
        hub.download_snapshot(REPO)


@pytest.mark.parametrize(("error", "message"), [
    ("gated", r"^'org/name' \(revision main\) is gated: accept its terms and set HF_TOKEN$"),
    ("missing", r"^'org/name' \(revision main\) was not found on the hub \(if it is private, set HF_TOKEN\)$"),
])
def test_gated_or_private_repo_mentions_hf_token(error: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    def refuse(*args: object, **kwargs: object) -> str:
        if error == "gated":
            raise GatedRepoError("Access to model org/name is restricted.", response=_response(403))
        raise RepositoryNotFoundError("401 Client Error. Repository Not Found", response=_response(401))

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(ModelNotFoundError, match=message) as caught:
        Reranker(REPO)
    assert isinstance(caught.value, FileNotFoundError)
    assert isinstance(caught.value.__cause__, (GatedRepoError, RepositoryNotFoundError))
