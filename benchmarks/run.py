"""Run every system on every workload, interleaved, and append raw timings to a JSON-lines file.

Each system is a long-lived ``worker.py`` process in its own venv and environment (allocator,
CTranslate2 switches), all with the same thread count. Rounds go over workloads, and within a
workload over the systems in a seeded shuffled order, so that slow drifts in machine load hit
every system alike; ``report.py`` takes medians. Partial results stay usable: every answer is
appended as soon as it arrives.

Usage (``run.sh`` does all of it): ``python benchmarks/run.py --fastrerank-python P --peers-python P``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL = ("W1", "W2", "W3", "W4", "W5")
GLIBC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "33554432",
             "MALLOC_TRIM_THRESHOLD_": "1073741824", "MALLOC_TOP_PAD_": "268435456"}
THP_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


@dataclass
class System:
    name: str
    venv: str  # "fastrerank" or "peers"
    workloads: tuple[str, ...] = ALL
    env: dict[str, str] = field(default_factory=dict)
    group: str = "main"  # "main" systems are compared; "tuning" variants answer the engine-defaults questions


def systems(mimalloc: str | None) -> list[System]:
    """The compared systems, then the tuning variants of fastrerank int8 (its defaults changed one at a time).

    ``fastrerank-int8`` runs with the library's defaults: the host process left alone (glibc's
    malloc as it is), CTranslate2's AVX-512 kernels on a CPU that has them (chosen while the model
    loads), one encoder replica per thread and 512 padded tokens per batch on the CPU.
    """
    found = [
        System("torch-fp32", "peers"),
        System("st-torch", "peers", ("W1", "W3")),
        System("st-onnx-int8", "peers"),
        System("st-openvino-int8", "peers"),  # OpenVINO's LATENCY form (CrossEncoder's default): 1 stream
        System("st-openvino-throughput", "peers"),  # its THROUGHPUT form: 1-thread streams, async 2-row requests
        System("ct2-raw-int8", "fastrerank"),
        System("fastrerank-int8", "fastrerank"),
        System("fastrerank-int8+cli-env", "fastrerank", ALL, {**GLIBC_ENV, **THP_ENV, "CT2_FORCE_CPU_ISA": "AVX512"}),
        System("fastrerank-float32", "fastrerank"),
        # Tuning variants: what each default is worth (W1; README "Performance on CPU").
        # 0.1.0's defaults: glibc's malloc for CTranslate2, retuned for the whole process with mallopt.
        System("fastrerank-int8+tuned", "fastrerank", ("W1", "W2", "W3"), {"BENCH_TUNE_PROCESS": "1"}, "tuning"),
        System("fastrerank-int8+nommap", "fastrerank", ("W1", "W2"),
               {**GLIBC_ENV, "MALLOC_MMAP_MAX_": "0", "CT2_FORCE_CPU_ISA": "AVX512"}, "tuning"),
        System("fastrerank-int8+avx2", "fastrerank", ("W1",), {"CT2_FORCE_CPU_ISA": "AVX2"}, "tuning"),
        # libgomp's own default (spin 300000 rounds after a parallel region before sleeping) instead of
        # the OMP_WAIT_POLICY=PASSIVE that fastrerank gives CTranslate2's libgomp.
        System("fastrerank-int8+spin", "fastrerank", ("W1", "W2", "W3"), {"GOMP_SPINCOUNT": "300000"}, "tuning"),
        System("fastrerank-int8+spin10k", "fastrerank", ("W1", "W2", "W3"), {"GOMP_SPINCOUNT": "10000"}, "tuning"),
        System("fastrerank-int8+bt8192", "fastrerank", ("W1", "W2"), {"BENCH_BATCH_TOKENS": "8192"}, "tuning"),
        # The layout before replicas: one encoder running each batch on every thread, 1024-token batches.
        System("fastrerank-int8+one-replica", "fastrerank", ALL, {"BENCH_REPLICAS": "1", "BENCH_BATCH_TOKENS": "1024"}, "tuning"),
        System("fastrerank-int8+bt1024", "fastrerank", ("W1",), {"BENCH_BATCH_TOKENS": "1024"}, "tuning"),
        System("fastrerank-int8+bt2048", "fastrerank", ("W1",), {"BENCH_BATCH_TOKENS": "2048"}, "tuning"),
        System("fastrerank-int8+bt256", "fastrerank", ("W1",), {"BENCH_BATCH_TOKENS": "256"}, "tuning"),
    ]
    if mimalloc:
        found.append(System("fastrerank-int8+mimalloc", "fastrerank", ("W1",),
                            {"LD_PRELOAD": mimalloc, "CT2_FORCE_CPU_ISA": "AVX512"}, "tuning"))
    return found


class Worker:
    def __init__(self, system: System, python: str, root: Path, threads: int) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "OPENBLAS_NUM_THREADS": str(threads), "PYTHONPATH": str(HERE.parent / "src"), **system.env}
        self.system = system
        self.log = (root / f"worker-{system.name}.log").open("w")
        self.proc = subprocess.Popen(
            [python, str(HERE / "worker.py"), system.name, "--root", str(root), "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            stderr=self.log,
        )
        self.ready = self._answer()

    def _answer(self) -> dict[str, object]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"worker {self.system.name} died; see its log under the cache folder")
        return json.loads(line)

    def run(self, workload: str, reps: int) -> dict[str, object]:
        self.proc.stdin.write(json.dumps({"workload": workload, "reps": reps}) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._answer()

    def stop(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"stop": True}) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=60)
        self.log.close()


def schedule(rounds: int, quick: bool) -> list[tuple[int, str, int]]:
    """(round, workload, reps per call): every workload every round; W3 (latency) is 10 calls a round."""
    plan = []
    for r in range(rounds):
        for workload, reps in (("W3", 10), ("W1", 1), ("W2", 1), ("W4", 1), ("W5", 1)):
            plan.append((r, workload, 2 if quick and workload == "W3" else reps))
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fastrerank-python", required=True)
    parser.add_argument("--peers-python", required=True)
    parser.add_argument("--root", type=Path, default=HERE / ".cache" / "base")
    parser.add_argument("--out", type=Path, default=None, help="JSON lines (default: ROOT/results.jsonl)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tuning-rounds", type=int, default=5, help="rounds that include the tuning variants")
    parser.add_argument("--mimalloc", default=None, help="path of libmimalloc.so for the LD_PRELOAD variants")
    parser.add_argument("--only", default=None, help="comma-separated system names")
    parser.add_argument("--workloads", default=",".join(ALL), help="comma-separated workloads to run")
    parser.add_argument("--quick", action="store_true", help="one round, for a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out or args.root / "results.jsonl"
    pythons = {"fastrerank": args.fastrerank_python, "peers": args.peers_python}
    chosen = [s for s in systems(args.mimalloc) if not args.only or s.name in args.only.split(",")]
    rounds = 1 if args.quick else args.rounds
    rng = random.Random(args.seed)
    workers: dict[str, Worker] = {}
    started = time.perf_counter()
    with out.open("a") as sink:
        sink.write(json.dumps({"event": "start", "time": time.time(), "threads": args.threads,
                               "systems": [s.__dict__ for s in chosen]}) + "\n")
        for system in chosen:  # one at a time: loading is heavy
            print(f"[run] loading {system.name}", flush=True)
            workers[system.name] = Worker(system, pythons[system.venv], args.root, args.threads)
            sink.write(json.dumps({"event": "ready", "system": system.name, **workers[system.name].ready}) + "\n")
        for r, workload, reps in schedule(rounds, args.quick):
            if workload not in args.workloads.split(","):
                continue
            order = [s for s in chosen if workload in s.workloads and (s.group == "main" or r < args.tuning_rounds)]
            rng.shuffle(order)
            for system in order:
                load_before = os.getloadavg()[0]
                t0 = time.perf_counter()
                answer = workers[system.name].run(workload, reps)
                record = {"event": "call", "round": r, "workload": workload, "system": system.name,
                          "group": system.group, "load_avg": load_before, **answer}
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                print(f"[run] r{r} {workload} {system.name}: median {sorted(answer['seconds'])[len(answer['seconds']) // 2]:.2f} s "
                      f"(call {time.perf_counter() - t0:.1f} s, load {load_before:.1f}, {time.perf_counter() - started:.0f} s in)",
                      flush=True)
        for worker in workers.values():
            worker.stop()
        sink.write(json.dumps({"event": "end", "time": time.time()}) + "\n")


if __name__ == "__main__":
    main()
