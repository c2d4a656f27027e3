"""Regressions found by a hostile review of the cgroup quota, CUDA replicas, off-caller batches and states code."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from fastrerank._cpus import cgroup_cpu_limit, usable_cores
from fastrerank._reranker import _check_replicas
from fastrerank.errors import InvalidTypeError


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


@pytest.mark.parametrize(("files", "limit"), [
    pytest.param({"proc/self/cgroup": b"\xff\xfe garbage\n0::/\n", "sys/fs/cgroup/cpu.max": "200000 100000\n"}, 2,
                 id="binary-garbage-line"),
    # A quota too big for a float, or a period much longer than it: exact whole CPUs, never 0.
    pytest.param({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": f"{10 ** 400} 1\n"}, 10 ** 400, id="v2-huge-quota"),
    pytest.param({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": f"1 {10 ** 400}\n"}, 1, id="v2-huge-period"),
    pytest.param({"proc/self/cgroup": "1:cpu:/\n", "sys/fs/cgroup/cpu/cpu.cfs_quota_us": f"{10 ** 400}\n",
                  "sys/fs/cgroup/cpu/cpu.cfs_period_us": "1\n"}, 10 ** 400, id="v1-huge-quota"),
    # A v1 controller list that cannot name a folder: stat fails with ENAMETOOLONG (as it could with EACCES).
    pytest.param({"proc/self/cgroup": "1:cpu," + "x" * 300 + ":/\n", "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "100000\n",
                  "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, 1, id="v1-name-too-long"),
])
def test_odd_cgroup_files_never_raise(files: dict[str, str | bytes], limit: int, tmp_path: Path) -> None:
    assert cgroup_cpu_limit(_tree(tmp_path, files)) == limit
    assert usable_cores(tmp_path) >= 1


def test_a_cgroup_named_with_bytes_that_are_not_utf8_is_read(tmp_path: Path) -> None:
    # Cgroup names are any bytes but "/": /proc/self/cgroup is not always UTF-8 text.
    _tree(tmp_path, {"proc/self/cgroup": b"0::/ctr\xff\n"})
    folder = bytes(tmp_path / "sys/fs/cgroup/ctr") + b"\xff"
    os.makedirs(folder)
    with open(folder + b"/cpu.max", "w") as out:
        out.write("100000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1
    assert usable_cores(tmp_path) == 1


def test_a_deep_cgroup_path_is_read_quickly(tmp_path: Path) -> None:
    # Reranker() reads this: a long path (20,000 levels that do not exist) must not take seconds.
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/" + "a/" * 20000 + "\n",
                            "sys/fs/cgroup/cpu.max": "200000 100000\n"})
    start = time.monotonic()
    assert cgroup_cpu_limit(root) == 2
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("value", [np.array([2]), np.array([1, 2]), np.zeros((1, 1), dtype=np.int64)],
                         ids=["array-of-one", "array-of-two", "2d-array"])
def test_replicas_given_an_integer_array_is_refused_by_name(device: str, value: object) -> None:
    # ndarray has __index__, but only a 0-d array can use it: numpy's own TypeError escaped, naming nothing.
    with pytest.raises(InvalidTypeError, match=r"^replicas must be an int, got ndarray"):
        _check_replicas(value, device, 2)


def test_a_damaged_model_in_a_folder_named_for_cuda_is_still_a_damaged_model(converted, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # CTranslate2's messages quote the model's folder ("Unable to open file 'model.bin' in model
    # '<folder>'"): a folder whose path says "cuda" must not turn a damaged model into a GPU failure.
    import shutil

    import ctranslate2

    from fastrerank import CorruptModelError
    from fastrerank._engine.runtime import EncoderRuntime

    folder = Path(shutil.copytree(converted("tiny"), tmp_path / "models-cuda" / "tiny"))

    def refuse(path: str, *args: object, **kwargs: object) -> None:
        raise RuntimeError(f"Unable to open file 'model.bin' in model '{path}'")  # CTranslate2's own wording

    monkeypatch.setattr(ctranslate2, "Encoder", refuse)
    with pytest.raises(CorruptModelError, match="re-convert with force=True"):
        EncoderRuntime(folder, device="cuda", compute_type="default", threads=1)
