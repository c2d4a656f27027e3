"""How many cores this process may use: its CPU affinity, bounded by its cgroup's CPU quota.

A container given 2 CPUs on a 64-core host (``docker run --cpus 2``, a Kubernetes CPU limit)
still sees 64 cores in its affinity mask; the limit is a CFS quota in its cgroup. Sizing the
default threads and replicas from the affinity alone would run 64 threads on 2 CPUs' worth of
time, and the kernel throttles the whole process for the rest of each period. So the quota
bounds the count, rounded up (1.5 CPUs -> 2), as the Go and Java runtimes round it.

Linux only: elsewhere, and wherever the cgroup files cannot be read or parsed, the affinity (or
``os.cpu_count()``) is the answer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["usable_cores"]


def usable_cores(root: Path = Path("/")) -> int:
    """Cores this process may run on: its affinity mask, bounded by its cgroup CPU quota (v1 or v2).

    ``root`` is where ``proc/`` and ``sys/`` are read from (the tests point it at a fake tree).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_limit(root)
    return max(1, min(cores, quota)) if quota is not None else cores


def cgroup_cpu_limit(root: Path = Path("/")) -> int | None:
    """The CPU quota of this process's cgroup and its ancestors, in whole CPUs rounded up; ``None`` if unlimited or unknown."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2: "0::/path"
            limits += _limits_along(root / "sys/fs/cgroup", path, _v2_limit)
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            for mount in dict.fromkeys((controllers, "cpu,cpuacct", "cpu", "cpuacct,cpu")):
                if (root / "sys/fs/cgroup" / mount).is_dir():
                    limits += _limits_along(root / "sys/fs/cgroup" / mount, path, _v1_limit)
                    break
    return math.ceil(min(limits)) if limits else None


def _limits_along(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The limits found in the cgroup at ``path`` under ``mount`` and in each of its ancestors.

    Inside a container with its own cgroup namespace the path is ``/`` and the mount is the
    container's own cgroup, so the mount itself is read too.
    """
    found: list[float] = []
    # A path outside the mount (a cgroup namespace shows "/../x" for a sibling's cgroup): only the
    # mount itself, which is this process's own cgroup as far as it can see, is read.
    folder = mount if ".." in path.split("/") else mount / path.strip("/")
    while True:
        limit = read(folder)
        if limit is not None:
            found.append(limit)
        if folder == mount or mount not in folder.parents:
            return found
        folder = folder.parent


def _v2_limit(folder: Path) -> float | None:
    """``cpu.max`` is ``"max 100000"`` (no limit) or ``"<quota> <period>"`` in microseconds."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()
        return int(quota) / int(period) if quota != "max" and int(quota) > 0 and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def _v1_limit(folder: Path) -> float | None:
    """``cpu.cfs_quota_us`` is -1 (no limit) or the quota per ``cpu.cfs_period_us``, in microseconds."""
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
