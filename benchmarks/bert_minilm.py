"""fastrerank on the ms-marco-MiniLM-L-6-v2 shape against sentence-transformers' CrossEncoder (torch fp32).

The model is random-weight and seeded (``fastrerank.testing.ModelShape.minilm_l6()``: 6 layers,
hidden 384, 12 heads, FFN 1536, 30,522 embedding rows, a WordPiece tokenizer built locally), so
compute cost equals the real model's and score values mean nothing. Workloads W1 (1 query x 64
documents of 64-448 tokens) and W3 (1 query x 8 documents of ~100 tokens) from
``benchmarks/workloads.py``, cut with this model's tokenizer; every document fits one window, so
both systems score the same pairs. Systems run interleaved, one call each per round after a
warm-up, on the same threads; the medians are reported, with the ratios and the load average.

Usage: ``python benchmarks/bert_minilm.py [--rounds 5] [--threads 2]`` (needs sentence-transformers;
benchmarks/run.sh installs it in the peers' venv).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache" / "minilm-l6"


def build() -> tuple[Path, Path]:
    from fastrerank import convert
    from fastrerank.testing import ModelShape, make_bert_reranker_folder

    hf = CACHE / "hf"
    if not (hf / "model.safetensors").exists():
        make_bert_reranker_folder(hf, ModelShape.minilm_l6(), seed=0)
    int8 = CACHE / "int8"
    if not (int8 / "fastrerank.json").exists():
        convert(hf, int8, quantization="int8")
    return hf, int8


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from sentence_transformers import CrossEncoder
    from tokenizers import Tokenizer
    from workloads import make_workloads  # type: ignore[import-not-found]

    from fastrerank import Reranker

    hf, int8 = build()
    workloads = {name: w for name, w in make_workloads(Tokenizer.from_file(str(hf / "tokenizer.json"))).items()
                 if name in ("W1", "W3")}
    torch.set_num_threads(args.threads)
    cross = CrossEncoder(str(hf), device="cpu", max_length=512)
    fast = Reranker(int8, threads=args.threads)

    def run_cross(w: dict) -> np.ndarray:  # type: ignore[type-arg]
        return np.asarray(cross.predict([(w["query"], d) for d in w["docs"]], batch_size=32, show_progress_bar=False))

    def run_fast(w: dict) -> np.ndarray:  # type: ignore[type-arg]
        return fast.score(w["query"], w["docs"])

    systems = {"fastrerank int8": run_fast, "CrossEncoder torch fp32": run_cross}
    load_before = os.getloadavg()
    times: dict[str, dict[str, list[float]]] = {w: {s: [] for s in systems} for w in workloads}
    scores: dict[str, dict[str, np.ndarray]] = {w: {} for w in workloads}
    for name, w in workloads.items():
        for system, run in systems.items():
            scores[name][system] = run(w)  # warm-up, and the scores compared below
    for _ in range(args.rounds):
        for name, w in workloads.items():
            for system, run in systems.items():
                start = time.perf_counter()
                run(w)
                times[name][system].append(time.perf_counter() - start)
    load_after = os.getloadavg()
    report = {"threads": args.threads, "rounds": args.rounds, "loadavg_before": load_before, "loadavg_after": load_after,
              "workloads": {}}
    for name in workloads:
        medians = {system: statistics.median(values) for system, values in times[name].items()}
        report["workloads"][name] = {
            "median_s": medians,
            "speedup_vs_torch_fp32": medians["CrossEncoder torch fp32"] / medians["fastrerank int8"],
            "spearman_int8_vs_torch_fp32": spearman(scores[name]["fastrerank int8"], scores[name]["CrossEncoder torch fp32"]),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
