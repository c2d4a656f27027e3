"""usable_cores: the affinity mask bounded by the cgroup CPU quota, read from fake /proc and /sys trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastrerank import Reranker
from fastrerank._cpus import cgroup_cpu_limit, usable_cores


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(("files", "limit"), [
    # cgroup v2 inside a container's own namespace: the mount is the container's cgroup
    ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "150000 100000\n"}, 2),
    ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "max 100000\n"}, None),
    ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "100000 100000\n"}, 1),
    # v2 on a host: the process's cgroup and its ancestors, the tightest wins
    ({"proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
      "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000\n",
      "sys/fs/cgroup/kubepods/pod1/cpu.max": "250000 100000\n",
      "sys/fs/cgroup/kubepods/cpu.max": "800000 100000\n"}, 3),
    # a container without its own cgroup namespace: the path names the host's cgroup, the limit
    # sits in it; and one whose path is not under the mount at all (only the mount is read)
    ({"proc/self/cgroup": "0::/docker/abc\n", "sys/fs/cgroup/docker/abc/cpu.max": "200000 100000\n"}, 2),
    ({"proc/self/cgroup": "0::/docker/abc\n", "sys/fs/cgroup/cpu.max": "300000 100000\n"}, 3),
    # cgroup v1 (hybrid hosts): cfs quota and period, -1 is no limit
    ({"proc/self/cgroup": "9:name=systemd:/\n4:cpu,cpuacct:/docker/abc\n0::/\n",
      "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
      "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}, 1),
    ({"proc/self/cgroup": "3:cpu,cpuacct,cpuset:/\n",  # mounted under the controllers' own name
      "sys/fs/cgroup/cpu,cpuacct,cpuset/cpu.cfs_quota_us": "400000\n",
      "sys/fs/cgroup/cpu,cpuacct,cpuset/cpu.cfs_period_us": "100000\n"}, 4),
    ({"proc/self/cgroup": "1:cpu:/\n",
      "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, None),
    # unreadable or unexpected: no limit known
    ({}, None),
    ({"proc/self/cgroup": "garbage\n"}, None),
    ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "lots\n"}, None),
    ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "0 100000\n"}, None),
    ({"proc/self/cgroup": "0::/../../etc\n", "sys/fs/cgroup/cpu.max": "200000 100000\n"}, 2),
])
def test_the_cgroup_cpu_quota_is_read_in_whole_cpus_rounded_up(files: dict[str, str], limit: int | None, tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tree(tmp_path, files)) == limit


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux: an affinity mask")
def test_usable_cores_is_the_affinity_bounded_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    one_cpu = tree(tmp_path / "one", {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "100000 100000\n"})
    many = tree(tmp_path / "many", {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": f"{(affinity + 8) * 100000} 100000\n"})
    assert usable_cores(one_cpu) == 1
    assert usable_cores(many) == affinity
    assert usable_cores(tmp_path / "nothing") == affinity


def test_default_threads_and_replicas_follow_the_quota(converted, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # A container with a 1-CPU quota on a bigger host: one thread, one replica, not one per host core.
    import fastrerank._reranker as reranker_module

    monkeypatch.setattr(reranker_module, "usable_cores", lambda: 1)
    with Reranker(converted("tiny"), device="cpu") as reranker:
        assert (reranker.threads, reranker.replicas) == (1, 1)
