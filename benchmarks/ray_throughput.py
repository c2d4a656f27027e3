"""Throughput of the documented Ray Data recipe (docs/integrations/ray.md: Parquet in, Parquet out) with 1 and 2 actors, beside Reranker.score.

Each Ray row runs the recipe as a user would: one Parquet file of pairs, ``actor_pool_size`` and
``spread_over_actors``, ``RerankScorer`` in an actor pool, ``top_n_per_query`` and
``write_parquet_replacing`` into the same output folder every time (the script checks that it
holds one set of results at the end). The in-process rows score the same pairs with
``Reranker.score``, one call per query. One more row runs 2 actors without ``spread_over_actors``:
the file is one block, so one actor does all the work.

Writes its table between the ``ray-throughput`` markers of docs/integrations/ray.md (``--no-write`` to only
print it). The model is a random-weight XLM-R of a small "medium" shape (6 layers, hidden 384,
int8), generated here: base-size models (12 layers, hidden 768) are too slow on a 2-core
development machine for a quick run, and random weights cost the same to run as trained ones.

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
TOP_N = 10


def write_pairs(path: Path, count: int) -> int:
    """One Parquet file of ``count`` pairs, ``DOCS_PER_QUERY`` per query; returns the number of queries."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus = make_corpus(4000, seed=1)
    rng = random.Random(3)
    rows = [{"query_id": f"q{index // DOCS_PER_QUERY}", "query": corpus[(index // DOCS_PER_QUERY) % 200],
             "doc_id": f"d{index}", "document": rng.choice(corpus)} for index in range(count)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len({row["query_id"] for row in rows})


def in_process(model: Path, pairs: Path, threads: int) -> float:
    """Pairs per second of Reranker.score in this process, one call per query (reading the file left out)."""
    import pandas as pd

    frame = pd.read_parquet(pairs)
    with Reranker(model, threads=threads) as reranker:
        start = time.perf_counter()
        for query, group in frame.groupby("query", sort=False):
            reranker.score(query, list(group["document"]))
        return len(frame) / (time.perf_counter() - start)


def recipe(model: Path, pairs: Path, output: Path, *, actors: int, num_cpus: float, batch_size: int,
           spread: bool = True) -> float:
    """Seconds for the documented recipe from read_parquet to the written output, start-up included."""
    import ray

    from fastrerank.integrations.ray import (
        RerankScorer,
        actor_pool_size,
        spread_over_actors,
        top_n_per_query,
        write_parquet_replacing,
    )

    start = time.perf_counter()
    actors = actor_pool_size(num_cpus=num_cpus, actors=actors)
    ds = ray.data.read_parquet(str(pairs))
    if spread:
        ds = spread_over_actors(ds, actors)
    scored = ds.map_batches(
        RerankScorer, fn_constructor_kwargs={"model": str(model)}, batch_format="pyarrow", batch_size=batch_size,
        num_cpus=num_cpus, compute=ray.data.ActorPoolStrategy(size=actors),
    )
    write_parquet_replacing(top_n_per_query(scored, TOP_N, "query_id", order_key="doc_id"), output)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray instance")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setup; the fastest counts (a shared machine)")
    parser.add_argument("--no-write", action="store_true", help="print the table without updating docs/integrations/ray.md")
    args = parser.parse_args()

    import pandas as pd
    import ray

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        model = convert(make_reranker_folder(scratch / "hf", MEDIUM, seed=7), scratch / "medium-int8",
                        quantization="int8")
        queries = write_pairs(scratch / "pairs.parquet", args.pairs)
        write_pairs(scratch / "few.parquet", 4 * DOCS_PER_QUERY // 10)  # the start-up run: a few pairs
        rows: list[tuple[str, float, str]] = [
            (f"Reranker.score in-process, {threads} thread{'s' if threads > 1 else ''}",
             max(in_process(model, scratch / "pairs.parquet", threads) for _ in range(args.repeat)), "")
            for threads in (1, 2)]
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 object_store_memory=256 * 1024**2, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "src")}})
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            context.wait_for_min_actors_s = 600  # as the recipe does
            output = scratch / "ranked"
            for actors, spread in ((1, True), (2, True), (2, False)):
                num_cpus = min(1.0, (args.cpus - 1) / actors)  # the largest share that keeps one CPU free
                options = {"actors": actors, "num_cpus": num_cpus, "batch_size": args.batch_size, "spread": spread}
                startup = min(recipe(model, scratch / "few.parquet", output, **options)  # type: ignore[arg-type]
                              for _ in range(args.repeat))
                elapsed = min(recipe(model, scratch / "pairs.parquet", output, **options)  # type: ignore[arg-type]
                              for _ in range(args.repeat))
                if len(pd.read_parquet(output)) != queries * TOP_N:
                    raise RuntimeError(f"{output} does not hold one set of {queries * TOP_N} results")
                name = (f"recipe, {actors} actor{'s' if actors > 1 else ''} x num_cpus={num_cpus:g} (1 thread each)"
                        + ("" if spread else ", without spread_over_actors"))
                rows.append((name, args.pairs / max(elapsed - startup, 1e-9),
                             f"{elapsed:.1f} s ({args.pairs / elapsed:,.0f} pairs/s; start-up {startup:.1f} s)"))
        finally:
            ray.shutdown()

    loads = " / ".join(", ".join(f"{value:.1f}" for value in load) for load in (load_before, os.getloadavg()))
    table = [
        f"Measured by `benchmarks/ray_throughput.py` on {os.cpu_count()} cores ({platform.machine()}, "
        f"Ray {ray.__version__}; load average {loads} at the start / end, on a machine shared with other jobs): "
        f"one Parquet file of {args.pairs} pairs, {DOCS_PER_QUERY} one-sentence documents per query, a "
        "random-weight 6-layer hidden-384 XLM-R in int8 (a base-size model, 12 layers and hidden 768, costs "
        f"several times more per pair), batch_size={args.batch_size}, on a local Ray of {args.cpus} CPUs"
        f"{f', the fastest of {args.repeat} runs per setup' if args.repeat > 1 else ', one run per setup'}. Each "
        "recipe row runs the whole recipe, read to written output; pairs/s leaves out the start-up (the same "
        "recipe on a file of a few pairs: starting the actors, loading the model, Ray's scheduling), which a "
        "long job pays once; the wall time includes it.",
        "",
        "| setup | pairs/s | wall time |",
        "| --- | ---: | ---: |",
    ]
    table += [f"| {name} | {rate:,.0f} | {wall} |" for name, rate, wall in rows]
    text = "\n".join(table)
    print(text)
    if not args.no_write:
        readme = ROOT / "docs" / "integrations" / "ray.md"
        updated, count = re.subn(r"(<!-- ray-throughput:start -->\n).*?(\n<!-- ray-throughput:end -->)",
                                 lambda match: match.group(1) + text + match.group(2), readme.read_text(), flags=re.S)
        if count != 1:
            raise SystemExit(f"{readme} has no ray-throughput markers")
        readme.write_text(updated)


if __name__ == "__main__":
    main()
