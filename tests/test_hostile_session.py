"""Regressions found by a hostile review of the cgroup quota, CUDA replicas, off-caller batches and states code."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


@pytest.mark.parametrize("name", [b"ctr\xff", "ctr\u2028x".encode(), b"ctr\x1cx"], ids=["not-utf8", "line-separator", "file-separator"])
def test_a_cgroup_named_with_any_bytes_is_read(name: bytes, tmp_path: Path) -> None:
    # Cgroup names are any bytes but "/" (and only "\n" ends a line): /proc/self/cgroup is not always UTF-8 text.
    _tree(tmp_path, {"proc/self/cgroup": b"0::/" + name + b"\n"})
    folder = bytes(tmp_path / "sys/fs/cgroup") + b"/" + name
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


class _Failed(Exception):
    pass


@given(data=st.data())
def test_run_batches_keeps_its_promises_through_errors_interrupts_and_threads_that_cannot_start(data: st.DataObject) -> None:
    # Each batch runs at most once (exactly once without an error), its result is handed over once,
    # on the calling thread; off_caller keeps every batch off that thread while one can be started;
    # and no batch thread is left when run_batches returns or raises, Ctrl-C included.
    import _thread
    import threading

    from fastrerank._engine.dispatch import run_batches

    count = data.draw(st.integers(0, 10), label="batches")
    workers = data.draw(st.integers(-1, 5), label="workers")
    off_caller = data.draw(st.booleans(), label="off_caller")
    actions = data.draw(st.lists(st.sampled_from(["ok"] * 4 + ["slow", "raise", "ctrl-c", "interrupt_main"]),
                                 min_size=count, max_size=count), label="actions")
    fail_delivery = data.draw(st.one_of(st.none(), st.tuples(st.integers(1, 10), st.sampled_from(["raise", "ctrl-c"]))),
                              label="fail_delivery")
    startable = data.draw(st.one_of(st.none(), st.integers(0, 5)), label="threads_that_can_start")
    caller, lock = threading.get_ident(), threading.Lock()
    ran: list[tuple[int, int]] = []
    delivered: list[tuple[int, int, int]] = []
    real_start, starts = threading.Thread.start, [0]

    def start(thread: threading.Thread) -> None:
        if thread.name == "fastrerank-batch":
            starts[0] += 1
            if startable is not None and starts[0] > startable:
                raise RuntimeError("can't start new thread")
        real_start(thread)

    def run(batch: int) -> int:
        with lock:
            ran.append((batch, threading.get_ident()))
        if actions[batch] == "raise":
            raise _Failed(batch)
        if actions[batch] == "ctrl-c":
            raise KeyboardInterrupt
        if actions[batch] == "interrupt_main":
            _thread.interrupt_main()  # a Ctrl-C for the calling thread, from a batch
        if actions[batch] == "slow":
            time.sleep(0.005)  # still running when another batch fails
        return batch * 7

    def on_result(index: int, result: int) -> None:
        delivered.append((index, result, threading.get_ident()))
        if fail_delivery is not None and len(delivered) == fail_delivery[0]:
            raise _Failed("on_result") if fail_delivery[1] == "raise" else KeyboardInterrupt

    stopped = False
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threading.Thread, "start", start)
        try:
            try:
                run_batches(run, list(range(count)), workers, on_result, off_caller=off_caller)
                left = [t for t in threading.enumerate() if t.name == "fastrerank-batch"]
                for _ in range(100):  # where a Ctrl-C from a batch is still pending, it comes here
                    pass
            except (_Failed, KeyboardInterrupt):
                left, stopped = [t for t in threading.enumerate() if t.name == "fastrerank-batch"], True
        except KeyboardInterrupt:
            stopped = True
    assert left == []
    batches_run = [batch for batch, _ in ran]
    assert len(batches_run) == len(set(batches_run))
    indexes = [index for index, _, _ in delivered]
    assert len(indexes) == len(set(indexes)) and set(indexes) <= set(batches_run)
    assert all(result == index * 7 and thread == caller for index, result, thread in delivered)
    assert not {index for index in indexes if actions[index] in ("raise", "ctrl-c")}
    if not stopped:
        assert sorted(batches_run) == sorted(indexes) == list(range(count))
    if startable == 0 or (not off_caller and (workers <= 1 or count <= 1)):
        assert all(thread == caller for _, thread in ran)
    elif off_caller:
        assert all(thread != caller for _, thread in ran)


@given(st.lists(st.integers(1, 600), max_size=60), st.integers(1, 10000), st.integers(2, 9), st.integers(0, 10000))
def test_a_split_call_fits_the_budget_and_no_batch_is_cut_while_the_floor_has_room(
        lengths: list[int], budget: int, parts: int, floor: int) -> None:
    from fastrerank._engine.batching import plan_batches

    batches = plan_batches(lengths, budget, parts=parts, min_split_tokens=floor)
    assert sorted(index for batch in batches for index in batch) == list(range(len(lengths)))
    for batch, after in zip(batches, batches[1:]):
        assert (len(batch) + 1) * lengths[batch[0]] > min(budget, floor)  # the next row did not fit under the floor
        assert lengths[batch[-1]] >= lengths[after[0]]  # longest first
    for batch in batches:
        assert len(batch) == 1 or len(batch) * lengths[batch[0]] <= budget
