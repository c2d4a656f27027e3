"""``Reranker.score_pairs`` against one ``Reranker.rank`` call per query: 100 queries x 20 documents.

Models are generated (``fastrerank.testing``): the 2-layer ``tiny`` shape, where per-call overhead
dominates, and a ``small`` 4-layer, hidden-256 shape, where the encoder does. Each
query has its own 20 documents of 8-120 words. Both paths run on the same ``Reranker`` (float32,
CPU, the default batch budget), interleaved, ``--rounds`` times; the medians and their ratio are
printed as a Markdown table for ``benchmarks/RESULTS.md`` ("score_pairs vs rank per query"), with
the largest score difference between the two paths.

    python benchmarks/score_pairs.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from fastrerank import Reranker, convert  # noqa: E402
from fastrerank.testing import ModelShape, make_corpus, make_reranker_folder, make_tokenizer  # noqa: E402

SHAPES = {
    "tiny": ModelShape.tiny(),
    "small": ModelShape(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
}


def workload(queries: int, documents: int, seed: int = 11) -> list[tuple[str, list[str]]]:
    """``queries`` queries of 3-12 words, each with ``documents`` documents of 8-120 words."""
    rng = random.Random(seed)
    words = " ".join(make_corpus(4000, seed=seed)).split()

    def text(low: int, high: int) -> str:
        start = rng.randrange(len(words) - high)
        return " ".join(words[start : start + rng.randint(low, high)])

    return [(text(3, 12), [text(8, 120) for _ in range(documents)]) for _ in range(queries)]


def per_query(reranker: Reranker, work: list[tuple[str, list[str]]]) -> np.ndarray:
    scores = []
    for query, docs in work:
        ranking = reranker.rank(query, docs)
        by_index = np.empty(len(docs))
        for item in ranking:
            by_index[item.index] = item.score
        scores.append(by_index)
    return np.concatenate(scores)


def pairs(reranker: Reranker, work: list[tuple[str, list[str]]]) -> np.ndarray:
    return reranker.score_pairs([(query, doc) for query, docs in work for doc in docs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--documents", type=int, default=20)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    work = workload(args.queries, args.documents)
    print("| shape | rank per query (s) | score_pairs (s) | ratio | max abs score difference |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = make_tokenizer()
        for name in args.shapes:
            hf = make_reranker_folder(Path(tmp) / "hf" / name, SHAPES[name], seed=7, tokenizer=tokenizer)
            folder = convert(hf, Path(tmp) / "ct2" / name, quantization="float32")
            with Reranker(folder, device="cpu", threads=args.threads) as reranker:
                pairs(reranker, work[:5])  # warm up
                times: dict[str, list[float]] = {"rank": [], "pairs": []}
                outputs: dict[str, np.ndarray] = {}
                for _ in range(args.rounds):
                    for label, run in (("rank", per_query), ("pairs", pairs)):
                        start = time.perf_counter()
                        outputs[label] = run(reranker, work)
                        times[label].append(time.perf_counter() - start)
            rank_s, pairs_s = statistics.median(times["rank"]), statistics.median(times["pairs"])
            difference = float(np.abs(outputs["rank"] - outputs["pairs"]).max())
            print(f"| {name} | {rank_s:.3f} | {pairs_s:.3f} | {rank_s / pairs_s:.2f}x | {difference:.1e} |")


if __name__ == "__main__":
    main()
