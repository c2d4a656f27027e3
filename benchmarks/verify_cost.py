"""What checking sha256 at every load would cost: ``fastrerank.verify`` vs ``Reranker`` load time.

Run on a converted folder of the size that matters, bge-reranker-v2-m3's int8 (~600 MB): the
``large`` shape that ``build.py --shape large`` writes, e.g.
``python benchmarks/verify_cost.py benchmarks/.cache/large/fastrerank-int8``. Each load runs in a
fresh interpreter (the time of ``Reranker(...)`` only, imports excluded). "Cold" evicts the
folder's files from the page cache with ``posix_fadvise(DONTNEED)`` first. docs/models/converting.md
and docs/reliability.md (matrix B) quote the result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
sys.path.insert(0, SRC)

LOAD = """
import sys, time
from fastrerank import Reranker
start = time.perf_counter()
Reranker(sys.argv[1], device="cpu", threads=2)
print(time.perf_counter() - start)
"""


def _evict(folder: Path) -> None:
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _load(folder: Path) -> float:
    done = subprocess.run([sys.executable, "-c", LOAD, str(folder)], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": SRC})
    return float(done.stdout.split()[-1])


def _verify(folder: Path) -> float:
    from fastrerank._model_format import file_sha256

    start = time.perf_counter()
    for path in sorted(folder.iterdir()):  # every file, as verify does (it also works on v1 folders)
        file_sha256(path)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder: Path = args.folder
    result: dict[str, object] = {"bytes": sum(path.stat().st_size for path in folder.iterdir())}
    _load(folder), _verify(folder)  # warm up
    for name, measure in (("load", _load), ("sha256", _verify)):
        result[f"{name}_warm_s"] = statistics.median(measure(folder) for _ in range(args.rounds))
        cold = []
        for _ in range(args.rounds):
            _evict(folder)
            cold.append(measure(folder))
        result[f"{name}_cold_s"] = statistics.median(cold)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
