"""Raw CTranslate2 on one workload under one thread layout and batch budget: the engine-defaults search.

``intra`` threads per batch (OpenMP) x ``inter`` batches in parallel (CTranslate2 replicas
sharing one copy of the weights, fed by as many Python threads), rows packed longest first
under ``budget`` padded tokens, in a process left alone (``BENCH_TUNE_PROCESS=1`` applies
``fastrerank.tune_process()``; ``NO_MMAP=1`` also disables malloc's mmap).
Prints the wall seconds of each call (after one warm-up) and the median CPU seconds.

Usage (fastrerank's venv, after ``benchmarks/build.py``)::

    python benchmarks/thread_layout.py --root benchmarks/.cache/base --workload W1 2 1 1024
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

_M_MMAP_MAX = -4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("intra", type=int)
    parser.add_argument("inter", type=int)
    parser.add_argument("budget", type=int)
    parser.add_argument("--root", type=Path, default=HERE / ".cache" / "base")
    parser.add_argument("--workload", default="W1")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--docs", type=int, default=None, help="score only the workload's first DOCS documents")
    args = parser.parse_args()

    import numpy as np

    from fastrerank import tune_process
    from fastrerank._engine.batching import plan_batches

    if os.environ.get("BENCH_TUNE_PROCESS") == "1":
        tune_process()
    if os.environ.get("NO_MMAP") == "1":
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_MAX, 0)
    from tokenizers import Tokenizer

    from fastrerank._ctranslate2 import import_ctranslate2
    from fastrerank._engine.cpu_isa import cpu_isa_for_load

    ctranslate2 = import_ctranslate2()  # as the library loads it: libgomp idles passively

    folder = args.root / "fastrerank-int8"
    workload = json.loads((args.root / "workloads.json").read_text())["workloads"][args.workload]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    docs = workload["docs"][: args.docs]
    encoded = tokenizer.encode_batch([(workload["query"], doc) for doc in docs])
    rows = [e.ids if len(e.ids) <= 512 else e.ids[:511] + [e.ids[-1]] for e in encoded]
    with cpu_isa_for_load():  # AVX-512 where the CPU has it, as the library does
        encoder = ctranslate2.Encoder(str(folder), device="cpu", compute_type="int8",
                                      intra_threads=args.intra, inter_threads=args.inter)
    batches = plan_batches([len(row) for row in rows], args.budget)

    def run_batch(batch: list[int]) -> None:
        states = encoder.forward_batch([rows[i] for i in batch]).last_hidden_state
        np.asarray(states)[:, 0, :].copy()

    def call() -> None:
        pending: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        for batch in batches:
            pending.put(batch)

        def worker() -> None:
            while True:
                try:
                    run_batch(pending.get_nowait())
                except queue.Empty:
                    return

        threads = [threading.Thread(target=worker) for _ in range(args.inter)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    call()  # warm-up
    wall, cpu = [], []
    for _ in range(args.calls):
        c0, t0 = time.process_time(), time.perf_counter()
        call()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(json.dumps({"workload": args.workload, "docs": len(docs), "intra": args.intra, "inter": args.inter, "budget": args.budget,
                      "batches": len(batches), "no_mmap": os.environ.get("NO_MMAP") == "1",
                      "isa": os.environ.get("CT2_FORCE_CPU_ISA"), "wall_s": [round(w, 3) for w in wall],
                      "cpu_s_median": round(statistics.median(cpu), 2)}))


if __name__ == "__main__":
    main()
