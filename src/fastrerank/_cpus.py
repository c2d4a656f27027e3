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
        # Cgroup names are any bytes but "/": decoded as file names are, so that they name their
        # folders, and split only where the kernel ends a line (splitlines() would split at "\x1c").
        lines = os.fsdecode((root / "proc/self/cgroup").read_bytes()).split("\n")
    except OSError:
        return None
    limits: list[int] = []
    for line in dict.fromkeys(lines):
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2: "0::/path"
            limits += _limits_along(root / "sys/fs/cgroup", path, _v2_limit)
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            for mount in dict.fromkeys((controllers, "cpu,cpuacct", "cpu", "cpuacct,cpu")):
                if os.path.isdir(root / "sys/fs/cgroup" / mount):  # False, not an error, where stat fails
                    limits += _limits_along(root / "sys/fs/cgroup" / mount, path, _v1_limit)
                    break
    return min(limits) if limits else None


def _limits_along(mount: Path, path: str, read: Callable[[Path], int | None]) -> list[int]:
    """The limits found in the cgroup at ``path`` under ``mount`` and in each of its ancestors.

    Inside a container with its own cgroup namespace the path is ``/`` and the mount is the
    container's own cgroup, so the mount itself is read too.
    """
    names = path.split("/")
    # A path outside the mount (a cgroup namespace shows "/../x" for a sibling's cgroup): only the
    # mount itself, which is this process's own cgroup as far as it can see, is read.
    names = [] if ".." in names else [name for name in names if name not in ("", ".")]
    found: list[int] = []
    folder = mount
    # From the mount down, as far as the folders exist: a long path that is not there costs one
    # stat, not one per level.
    for depth in range(len(names) + 1):
        if depth:
            folder = folder / names[depth - 1]
        if not os.path.isdir(folder):
            break
        limit = read(folder)
        if limit is not None:
            found.append(limit)
    return found


def _whole_cpus(quota: int, period: int) -> int | None:
    """A quota per period in whole CPUs rounded up (exact: no float), ``None`` unless both are positive."""
    return -(-quota // period) if quota > 0 and period > 0 else None


def _v2_limit(folder: Path) -> int | None:
    """``cpu.max`` is ``"max 100000"`` (no limit) or ``"<quota> <period>"`` in microseconds."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()
        return None if quota == "max" else _whole_cpus(int(quota), int(period))
    except (OSError, ValueError):
        return None


def _v1_limit(folder: Path) -> int | None:
    """``cpu.cfs_quota_us`` is -1 (no limit) or the quota per ``cpu.cfs_period_us``, in microseconds."""
    try:
        return _whole_cpus(int((folder / "cpu.cfs_quota_us").read_text()),
                           int((folder / "cpu.cfs_period_us").read_text()))
    except (OSError, ValueError):
        return None
