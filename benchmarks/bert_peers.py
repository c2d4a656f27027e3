"""fastrerank on the ms-marco-MiniLM-L-6-v2 shape against CrossEncoder (torch fp32, ONNX int8) and FlashRank.

The method of the XLM-R results (``run.py`` + ``worker.py``): each system is a long-lived
``worker.py`` process in its own venv, all on the same thread count; rounds go over the workloads,
and within a workload over the systems in a seeded shuffled order; each worker's first call of a
workload is an untimed warm-up; medians over all timed calls, with ratios and the load average
recorded at every call. The model is ``bert_minilm.py``'s (random-weight, seeded BERT of
MiniLM-L-6's shape, ``ModelShape.minilm_l6()``), and so are the workloads: W1 (1 query x 64
documents of 64-448 tokens) and W3 (latency: 1 query x 8 documents of ~100 tokens, 10 calls a
round), cut with its WordPiece tokenizer; every pair fits 512 tokens, so no system truncates.

Systems (``worker.py``):

- ``fastrerank-int8``: ``Reranker.rank`` on ``fastrerank.convert(..., quantization="int8")``;
- ``st-torch``: sentence-transformers ``CrossEncoder.predict`` on torch fp32 (batch 32);
- ``st-onnx-int8``: ``CrossEncoder(backend="onnx")`` on sentence-transformers' own
  ``export_dynamic_quantized_onnx_model(..., "avx512_vnni")`` of an eager-attention export (batch 32);
- ``flashrank``: FlashRank's ``Ranker.rerank`` on the same fp32 export quantized with onnxruntime's
  ``quantize_dynamic``, in FlashRank's cache layout (``build_peers.py``), so nothing is downloaded.
- ``fastrerank-int8+passive`` (a variant, not a peer): the same under ``OMP_WAIT_POLICY=PASSIVE``;
  CTranslate2's OpenMP threads (libgomp) spin while they wait, which on a machine shared with
  other work burns the cycles the other thread needs (see RESULTS.md);
- ``st-torch+passive``: the same switch for torch, whose CPU wheel uses libgomp too (ONNX Runtime
  has its own thread pool, which the variable does not reach).

Before timing, transformers fp32 (``AutoModelForSequenceClassification``, ``worker.py``'s
``torch-fp32``) scores both workloads once; every system's scores are compared with it (Spearman
per query, and the largest difference of the sigmoid scores), so that all run the same model.

Usage (``bert_peers.sh`` makes the peers' venv and runs this)::

    python benchmarks/bert_peers.py --fastrerank-python P --peers-python Q [--rounds 5] [--threads 2]

Writes ``ROOT/results.jsonl`` (raw calls) and, by default, ``benchmarks/results-bert-peers.json``
(summary) and ``benchmarks/results-bert-peers.jsonl`` (a copy of the raw calls); prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = {"W3": 10, "W1": 1}  # calls per round (W3 is latency: 10 calls a round, as in run.py)
REFERENCE = "torch-fp32"
BASELINE = "st-torch"
OURS = "fastrerank-int8"
VERSIONS = {
    "fastrerank": ("ctranslate2", "tokenizers", "numpy"),
    "peers": ("torch", "transformers", "sentence-transformers", "onnxruntime", "optimum", "optimum-onnx", "onnx",
              "FlashRank", "tokenizers", "numpy"),
}


def build_fastrerank(root: Path) -> None:
    """The model, its fastrerank int8 conversion and the workloads (run with fastrerank's Python)."""
    sys.path.insert(0, str(HERE.parent / "src"))
    sys.path.insert(0, str(HERE))
    from tokenizers import Tokenizer
    from workloads import make_workloads  # type: ignore[import-not-found]

    from fastrerank import convert
    from fastrerank.testing import ModelShape, make_bert_reranker_folder

    hf = root / "hf"
    if not (hf / "model.safetensors").exists():
        shutil.rmtree(root / "hf.tmp", ignore_errors=True)
        make_bert_reranker_folder(root / "hf.tmp", ModelShape.minilm_l6(), seed=0)
        (root / "hf.tmp").rename(hf)
    int8 = root / "fastrerank-int8"
    if not (int8 / "fastrerank.json").exists():
        convert(hf, int8, quantization="int8", progress=False)
    path = root / "workloads.json"
    if not path.exists():  # bert_minilm.py's workloads: same generator, seed and tokenizer
        all_workloads = make_workloads(Tokenizer.from_file(str(hf / "tokenizer.json")), seed=0)
        path.write_text(json.dumps({"seed": 0, "workloads": {name: all_workloads[name] for name in WORKLOADS}},
                                   ensure_ascii=False))


def versions(python: str, names: tuple[str, ...]) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    return json.loads(subprocess.run([python, "-c", code, *names], check=True, capture_output=True, text=True).stdout)


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        for rank, index in enumerate(order):
            out[index] = float(rank)
        return out

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def summarize(records: list[dict], reference: dict[str, list[float]], systems: list[str],
              meta: dict[str, object]) -> dict[str, object]:
    calls = [r for r in records if r.get("event") == "call"]
    ready = {r["system"]: r["load_s"] for r in records if r.get("event") == "ready"}
    report: dict[str, object] = {**meta, "load_s": ready, "workloads": {}}
    for workload in WORKLOADS:
        rows: dict[str, dict[str, object]] = {}
        for system in systems:
            mine = [r for r in calls if r["system"] == system and r["workload"] == workload]
            seconds = sorted(s for r in mine for s in r["seconds"])
            scores = mine[-1]["scores"]
            probabilities = [sigmoid(x) for x in reference[workload]]
            rows[system] = {
                "calls": len(seconds),
                "median_s": statistics.median(seconds),
                "p95_s": seconds[min(len(seconds) - 1, math.ceil(0.95 * len(seconds)) - 1)],
                "cpu_median_s": statistics.median(s for r in mine for s in r["cpu_seconds"]),
                "first_call_s": next(r["first_call_s"] for r in mine if "first_call_s" in r),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
                "load_avg_median": statistics.median(r["load_avg"] for r in mine),
                "spearman_vs_transformers_fp32": spearman(scores, reference[workload]),
                "max_abs_diff_vs_sigmoid_fp32": max(abs(s - p) for s, p in zip(scores, probabilities)),
            }
        for row in rows.values():
            row["x_st_torch"] = rows[BASELINE]["median_s"] / row["median_s"]  # type: ignore[operator]
            row["fastrerank_x"] = row["median_s"] / rows[OURS]["median_s"]  # type: ignore[operator]
        report["workloads"][workload] = rows  # type: ignore[index]
    return report


def markdown(report: dict) -> str:
    lines = ["| workload | system | median s | p95 s | CPU s | x CrossEncoder torch fp32 | fastrerank int8 faster by | "
             "Spearman vs transformers fp32 | max abs diff (sigmoid) | load avg |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for workload, rows in report["workloads"].items():
        for system, row in rows.items():
            lines.append(f"| {workload} | {system} | {row['median_s']:.3f} | {row['p95_s']:.3f} | {row['cpu_median_s']:.3f} | "
                         f"{row['x_st_torch']:.2f} | "
                         f"{row['fastrerank_x']:.2f}x | {row['spearman_vs_transformers_fp32']:.4f} | "
                         f"{row['max_abs_diff_vs_sigmoid_fp32']:.4f} | {row['load_avg_median']:.1f} |")
    lines += ["", "| system | load s (cold start) | first W3 call s | first W1 call s | peak RSS MB |", "|---|---:|---:|---:|---:|"]
    for system, load_s in report["load_s"].items():
        w = report["workloads"]
        lines.append(f"| {system} | {load_s:.2f} | {w['W3'][system]['first_call_s']:.3f} | {w['W1'][system]['first_call_s']:.2f} | "
                     f"{max(w['W3'][system]['peak_rss_mb'], w['W1'][system]['peak_rss_mb']):,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fastrerank-python", default=sys.executable)
    parser.add_argument("--peers-python")
    parser.add_argument("--root", type=Path, default=HERE / ".cache" / "minilm-l6-peers")
    parser.add_argument("--out", type=Path, default=HERE / "results-bert-peers.json", help="summary JSON")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="comma-separated system names (default: all four)")
    parser.add_argument("--build-only", action="store_true", help="build the model, conversion and workloads here, then stop")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        build_fastrerank(args.root)
        return
    if not args.peers_python:
        parser.error("--peers-python is required")

    sys.path.insert(0, str(HERE))
    from run import System, Worker  # type: ignore[import-not-found]

    subprocess.run([args.fastrerank_python, __file__, "--build-only", "--root", str(args.root)], check=True)
    subprocess.run([args.peers_python, str(HERE / "build_peers.py"), str(args.root / "hf"), str(args.root / "peers"),
                    "--forms", "onnx,flashrank"], check=True)
    pythons = {"fastrerank": args.fastrerank_python, "peers": args.peers_python}
    everything = [System(OURS, "fastrerank", tuple(WORKLOADS)), System(BASELINE, "peers", tuple(WORKLOADS)),
                  System("st-onnx-int8", "peers", tuple(WORKLOADS)), System("flashrank", "peers", tuple(WORKLOADS)),
                  System(f"{OURS}+passive", "fastrerank", tuple(WORKLOADS), {"OMP_WAIT_POLICY": "PASSIVE"}, "variant"),
                  System(f"{BASELINE}+passive", "peers", tuple(WORKLOADS), {"OMP_WAIT_POLICY": "PASSIVE"}, "variant")]
    chosen = [s for s in everything if not args.only or s.name in args.only.split(",") or s.name in (OURS, BASELINE)]

    # The reference first, alone: transformers fp32 scores each workload once (logits).
    print(f"[bert-peers] reference {REFERENCE}", flush=True)
    worker = Worker(System(REFERENCE, "peers", tuple(WORKLOADS)), args.peers_python, args.root, args.threads)
    reference = {workload: worker.run(workload, 1)["scores"] for workload in WORKLOADS}
    worker.stop()

    raw = args.root / "results.jsonl"
    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    started = time.perf_counter()
    records: list[dict] = [{"event": "start", "time": time.time(), "threads": args.threads, "rounds": args.rounds,
                            "systems": [s.name for s in chosen], "reference": reference}]
    with raw.open("w") as sink:
        sink.write(json.dumps(records[0]) + "\n")
        workers: dict[str, Worker] = {}
        for system in chosen:  # one at a time: the load time is the cold start
            print(f"[bert-peers] loading {system.name}", flush=True)
            workers[system.name] = Worker(system, pythons[system.venv], args.root, args.threads)
            records.append({"event": "ready", "system": system.name, **workers[system.name].ready})
            sink.write(json.dumps(records[-1]) + "\n")
        for r in range(args.rounds):
            for workload, reps in WORKLOADS.items():
                order = list(chosen)
                rng.shuffle(order)
                for system in order:
                    load_avg = os.getloadavg()[0]
                    answer = workers[system.name].run(workload, reps)
                    records.append({"event": "call", "round": r, "workload": workload, "system": system.name,
                                    "load_avg": load_avg, "load_avg_after": os.getloadavg()[0], **answer})
                    sink.write(json.dumps(records[-1]) + "\n")
                    sink.flush()
                    print(f"[bert-peers] r{r} {workload} {system.name}: median {statistics.median(answer['seconds']):.3f} s "
                          f"(load {load_avg:.1f}, {time.perf_counter() - started:.0f} s in)", flush=True)
        for worker in workers.values():
            worker.stop()
        records.append({"event": "end", "time": time.time()})
        sink.write(json.dumps(records[-1]) + "\n")

    meta = {
        "threads": args.threads, "rounds": args.rounds, "seed": args.seed,
        "machine": {"cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
                    "kernel": platform.release()},
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "run_s": time.perf_counter() - started,
        "versions": {venv: versions(pythons[venv], VERSIONS[venv]) for venv in pythons},
    }
    report = summarize(records, reference, [s.name for s in chosen], meta)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    shutil.copy(raw, args.out.with_suffix(".jsonl"))
    print(markdown(report))


if __name__ == "__main__":
    main()
