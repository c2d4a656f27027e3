"""Throughput of RerankScorer on a local Ray instance with 1 and 2 actors, against plain Reranker.score.

Writes its table between the ``ray-throughput`` markers of docs/ray.md (or of README.md once the
recipe is merged there; ``--no-write`` to only print it). The model is a random-weight XLM-R of a small "medium" shape (6 layers, hidden 384,
int8), generated here: base-size models (12 layers, hidden 768) are too slow on a 2-core
development machine for a quick run, and the random weights cost the same to run as trained ones.

    python benchmarks/ray_throughput.py --pairs 4000
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fastrerank import Reranker, convert  # noqa: E402
from fastrerank.testing import ModelShape, make_corpus, make_reranker_folder  # noqa: E402

MEDIUM = ModelShape(hidden_size=384, num_layers=6, num_heads=6, intermediate_size=1536)
DOCS_PER_QUERY = 50


def make_pairs(count: int):  # type: ignore[no-untyped-def]
    import pandas as pd

    corpus = make_corpus(4000, seed=1)
    rng = random.Random(3)
    rows = []
    for index in range(count):
        query_id = index // DOCS_PER_QUERY
        rows.append({"query_id": f"q{query_id}", "query": corpus[query_id % 200],
                     "doc_id": f"d{index}", "document": rng.choice(corpus)})
    return pd.DataFrame(rows)


def baseline(model: Path, pairs, threads: int) -> float:  # type: ignore[no-untyped-def]
    """Pairs per second of Reranker.score in this process, one call per query."""
    with Reranker(model, threads=threads) as reranker:
        start = time.perf_counter()
        for query, group in pairs.groupby("query", sort=False):
            reranker.score(query, list(group["document"]))
        return len(pairs) / (time.perf_counter() - start)


def through_ray(model: Path, pairs, actors: int, batch_size: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds for Ray Data to score ``pairs``: starting the actors and loading the model included."""
    import ray

    from fastrerank.integrations.ray import RerankScorer

    blocks = [pairs.iloc[start:start + batch_size] for start in range(0, len(pairs), batch_size)]
    dataset = ray.data.from_pandas(blocks)
    start = time.perf_counter()
    scored = dataset.map_batches(
        RerankScorer, fn_constructor_kwargs={"model": str(model)}, batch_format="pyarrow", batch_size=batch_size,
        num_cpus=1, compute=ray.data.ActorPoolStrategy(size=actors),
    ).materialize()
    elapsed = time.perf_counter() - start
    if scored.count() != len(pairs):
        raise RuntimeError(f"scored {scored.count()} rows of {len(pairs)}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--no-write", action="store_true", help="print the table without updating docs/ray.md")
    args = parser.parse_args()

    import ray

    with tempfile.TemporaryDirectory() as scratch:
        hf = make_reranker_folder(Path(scratch) / "hf", MEDIUM, seed=7)
        model = convert(hf, Path(scratch) / "medium-int8", quantization="int8")
        pairs = make_pairs(args.pairs)
        rows = [("Reranker.score in-process, 1 thread", baseline(model, pairs, 1), ""),
                ("Reranker.score in-process, 2 threads", baseline(model, pairs, 2), "")]
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024**2,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "src")}})
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            for actors in (1, 2):
                startup = through_ray(model, pairs.iloc[: 2 * actors], actors, 1)  # start-up and model load only
                elapsed = through_ray(model, pairs, actors, args.batch_size)
                rate = len(pairs) / max(elapsed - startup, 1e-9)
                rows.append((f"Ray Data, {actors} actor{'s' if actors > 1 else ''} x 1 thread", rate,
                             f"{elapsed:.1f} s (start-up {startup:.1f} s)"))
        finally:
            ray.shutdown()

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    table = [
        f"Measured by `benchmarks/ray_throughput.py` on {os.cpu_count()} cores ({platform.machine()}, "
        f"Ray {ray.__version__}, load average {load} at the end: the machine is shared, so treat these as rough): "
        f"{args.pairs} pairs, {DOCS_PER_QUERY} documents of one sentence per query, a random-weight 6-layer "
        "hidden-384 XLM-R in int8 (a base-size model, 12 layers and hidden 768, costs several times more per "
        f"pair and was too slow to run here), batch_size={args.batch_size}, one CPU and one encoder thread per "
        "actor. Ray rates leave out the start-up (starting the actors and loading the model, measured on a "
        "2-row run), which a long job pays once.",
        "",
        "| setup | pairs/s | wall time |",
        "| --- | ---: | ---: |",
    ]
    for name, rate, wall in rows:
        table.append(f"| {name} | {rate:,.0f} | {wall} |")
    text = "\n".join(table)
    print(text)
    if not args.no_write:  # into the file holding the markers: docs/ray.md, or the README it was merged into
        doc = next(path for path in (ROOT / "docs" / "ray.md", ROOT / "README.md")
                   if path.exists() and "<!-- ray-throughput:start -->" in path.read_text())
        updated = re.sub(r"(<!-- ray-throughput:start -->\n).*?(\n<!-- ray-throughput:end -->)",
                         lambda match: match.group(1) + text + match.group(2), doc.read_text(), flags=re.S)
        doc.write_text(updated)


if __name__ == "__main__":
    main()
