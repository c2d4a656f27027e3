"""The CUDA benchmark: fastrerank (float16, int8_float16) against transformers + torch fp16 and
sentence-transformers ``CrossEncoder`` fp16, on one GPU, in one process, systems interleaved.

Run on a GPU machine with ``bash benchmarks/gpu.sh`` (it installs nothing from the network). The
models are rebuilt there from the same seeds as the CPU benchmark's (``fastrerank.testing``, random
weights, full-size architectures); the workloads are the CPU benchmark's ``workloads.json`` files.
A CPU smoke run of every code path: ``python benchmarks/gpu.py --device cpu --shapes tiny
--compute-types int8,float32 --torch-dtype float32 --rounds 1``.

Writes ``gpu-results.json`` (every timed call, scores, memory, versions) and ``RESULTS-gpu.md``
into ``--out``. Scores are compared with transformers fp32 on the same GPU and weights.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from report import flops_of, percentile, rows_of, spearman  # noqa: E402
from worker import Scorer, cross_encoder_system, ct2_raw_system, fastrerank_system, pool, prepare, torch_system  # noqa: E402

WORKLOADS = (("W3", 10), ("W1", 1), ("W2", 1), ("W4", 1))  # (workload, timed calls per round)
REFERENCE = "torch-fp32"  # the fidelity reference: transformers fp32 on the same device
LOGITS = ("torch-", "ct2-raw-")  # systems that return raw logits (the others return sigmoid scores)


def build(shape: str, work: Path, compute_types: list[str]) -> Path:
    """The random-weight HF folder (same seed as the CPU benchmark) and its fastrerank conversions."""
    import fastrerank
    from fastrerank.testing import ModelShape, make_reranker_folder

    root = work / shape
    if not (root / "hf" / "config.json").exists():
        start = time.perf_counter()
        make_reranker_folder(root / "hf", getattr(ModelShape, shape)(), seed=0)
        print(f"[gpu] {shape}: model generated in {time.perf_counter() - start:.1f} s", flush=True)
    for quantization in sorted({"int8" if t.startswith("int8") else t for t in compute_types}):
        out = root / f"fastrerank-{quantization}"
        if not out.exists():
            start = time.perf_counter()
            fastrerank.convert(root / "hf", out, quantization=quantization, progress=False)
            print(f"[gpu] {shape}: converted to {quantization} in {time.perf_counter() - start:.1f} s", flush=True)
    return root


def systems(device: str, compute_types: list[str], dtype: str) -> dict[str, Callable[[Path], Scorer]]:
    """Name -> loader: the fp32 reference, torch at two batch sizes, CrossEncoder, raw CTranslate2 (with and
    without its FlashAttention option, and with the float32 copy to the host), fastrerank per compute type
    at its CUDA defaults (4 replicas, 8192 tokens a batch), and the first compute type with 1, 2, 4 and 8
    replicas and at two other budgets."""
    found: dict[str, Callable[[Path], Scorer]] = {
        REFERENCE: lambda root: torch_system(root, 1, device, "float32"),
        f"torch-{dtype}": lambda root: torch_system(root, 1, device, dtype),
        f"torch-{dtype}-b128": lambda root: torch_system(root, 1, device, dtype, batch_size=128),
        f"st-torch-{dtype}": lambda root: cross_encoder_system(root, "torch", 1, device, dtype),
        f"ct2-raw-{compute_types[0]}": lambda root: ct2_raw_system(root, compute_types[0], 1, device),
        # CTranslate2's FlashAttention-2 path (Ampere and newer, fp16/bf16), if this build has it
        f"ct2-raw-{compute_types[0]}+flash": lambda root: ct2_raw_system(root, compute_types[0], 1, device,
                                                                         flash_attention=True),
    }
    for compute_type in compute_types:
        found[f"fastrerank-{compute_type}"] = (
            lambda root, c=compute_type: fastrerank_system(root, c, 0, device, replicas=None))
    # the copy of the states to the host as fastrerank made it up to 0.1.x: float32 on the GPU, then copied
    found[f"ct2-raw-{compute_types[0]}+f32copy"] = lambda root: ct2_raw_system(root, compute_types[0], 1, device,
                                                                            float32_on_device=True)
    for replicas in (1, 2, 4, 8):  # batches on that many CUDA streams at once, sharing the weights (default 4)
        found[f"fastrerank-{compute_types[0]}+r{replicas}"] = (
            lambda root, r=replicas: fastrerank_system(root, compute_types[0], r, device, replicas=r))
    for budget in (2048, 32768):
        found[f"fastrerank-{compute_types[0]}+bt{budget}"] = (
            lambda root, b=budget: fastrerank_system(root, compute_types[0], 1, device, batch_tokens=b))
    return found


def device_memory_used_mb(device: str) -> float:
    """Memory in use on the GPU (all allocators of this process and any other), or peak RSS on a CPU."""
    if device == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info()
        return (total - free) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gemm_peak(device: str) -> dict[str, float]:
    """Dense GEMM rates on this device (TFLOP/s; TOP/s for int8): 8192^3 products, median of 10."""
    import torch

    if device != "cuda":
        return {}
    n = 8192
    out = {}
    for name, make, mm in (
        ("float16", lambda: torch.randn(n, n, device="cuda", dtype=torch.float16), torch.matmul),
        ("bfloat16", lambda: torch.randn(n, n, device="cuda", dtype=torch.bfloat16), torch.matmul),
        ("int8", lambda: torch.randint(-128, 127, (n, n), device="cuda", dtype=torch.int8), torch._int_mm),
    ):
        a, b = make(), make()
        for _ in range(3):
            mm(a, b)
        times = []
        for _ in range(10):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            mm(a, b)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        out[name] = 2.0 * n**3 / statistics.median(times) / 1e12
        del a, b
    torch.cuda.empty_cache()
    return out


def run_shape(shape: str, args: argparse.Namespace, log: list[dict]) -> None:
    root = build(shape, args.work, args.compute_types)
    workloads = json.loads((args.workloads_dir / shape / "workloads.json").read_text())["workloads"]
    loaders = systems(args.device, args.compute_types, args.torch_dtype)
    if args.only:
        loaders = {k: v for k, v in loaders.items() if k in args.only or k == REFERENCE}
    loaded: dict[str, Scorer] = {}
    prepared: dict[tuple[str, str], tuple[list[str], list[int] | None]] = {}
    for name, loader in loaders.items():
        before = device_memory_used_mb(args.device)
        start = time.perf_counter()
        try:
            scorer = loader(root)
            load_s = time.perf_counter() - start
            for workload, w in workloads.items():
                docs, owners = prepare(name, w, root / "hf" / "tokenizer.json")
                prepared[(name, workload)] = (docs, owners)
                for _ in range(2):  # warm-up: kernels, allocator caches, autotuning
                    scorer(w["query"], docs)
        except Exception as err:  # a system that cannot load or run is reported, not fatal
            log.append({"event": "load_failed", "shape": shape, "system": name, "error": repr(err)})
            print(f"[gpu] {shape} {name}: failed: {err!r}", flush=True)
            continue
        memory = device_memory_used_mb(args.device) - before
        log.append({"event": "ready", "shape": shape, "system": name, "load_s": load_s, "memory_mb": memory})
        print(f"[gpu] {shape} {name}: loaded in {load_s:.1f} s, {memory:.0f} MiB", flush=True)
        loaded[name] = scorer
    rng = random.Random(0)
    for r in range(args.rounds):
        for workload, reps in WORKLOADS:
            order = list(loaded)
            rng.shuffle(order)
            for name in order:
                w = workloads[workload]
                docs, owners = prepared[(name, workload)]
                seconds = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    # host floats come back, so the GPU work is done; the peers' windows are max-pooled
                    scores = pool(loaded[name](w["query"], docs), owners)
                    seconds.append(time.perf_counter() - t0)
                log.append({"event": "call", "shape": shape, "round": r, "system": name, "workload": workload,
                            "seconds": seconds, "scores": scores})
        print(f"[gpu] {shape}: round {r + 1}/{args.rounds} done", flush=True)
    loaded.clear()
    gc.collect()
    if args.device == "cuda":
        import torch

        torch.cuda.empty_cache()


def _sigmoid(values: list[float], system: str) -> list[float]:
    if system.startswith(LOGITS):
        return [1.0 / (1.0 + math.exp(-v)) for v in values]
    return values


def _ratio(cells: dict[tuple[str, str], dict], other: str | None, workload: str, median: float) -> str:
    """How many times faster than ``other`` a median of ``median`` seconds is, on ``workload``."""
    if other is None or (other, workload) not in cells:
        return "n/a"
    return f"{statistics.median(cells[(other, workload)]['seconds']) / median:.2f}"


def summarise(log: list[dict], args: argparse.Namespace) -> str:
    meta = next(r for r in log if r.get("event") == "meta")
    lines = [
        "# fastrerank on a GPU",
        "",
        f"Generated by `benchmarks/gpu.py` ({meta['date']}) on {meta['gpu']}; torch {meta['torch']}, "
        f"transformers {meta['transformers']}, sentence-transformers {meta['sentence_transformers']}, "
        f"CTranslate2 {meta['ctranslate2']}; {args.rounds} interleaved rounds, medians. Same random-weight "
        "models (compute cost equal to the real ones) and workloads as the CPU benchmark; fidelity is "
        "against transformers fp32 on the same GPU.",
        "",
    ]
    if meta.get("gemm_peak"):
        peak = meta["gemm_peak"]
        lines += ["Dense GEMM on this GPU (8192^3, torch): " + ", ".join(f"{k} {v:.0f} T/s" for k, v in peak.items()), ""]
    for note in meta.get("notes", []):
        lines += [f"- {note}"]
    for failed in (r for r in log if r.get("event") == "load_failed"):
        lines += [f"- {failed['shape']} {failed['system']} did not load: `{failed['error'][:200]}`"]
    lines.append("")
    calls = [r for r in log if r.get("event") == "call"]
    peaks = meta.get("gemm_peak", {})
    for shape in dict.fromkeys(c["shape"] for c in calls):  # the shapes run so far
        config = json.loads((args.work / shape / "hf" / "config.json").read_text())
        workloads = json.loads((args.workloads_dir / shape / "workloads.json").read_text())["workloads"]
        ready = {r["system"]: r for r in log if r.get("event") == "ready" and r["shape"] == shape}
        cells: dict[tuple[str, str], dict] = {}
        for r in (c for c in calls if c["shape"] == shape):
            cell = cells.setdefault((r["system"], r["workload"]), {"seconds": [], "scores": r["scores"]})
            cell["seconds"] += r["seconds"]
        if not cells:
            continue
        dtype = args.torch_dtype
        baseline = min((s for s in ready if s.startswith(f"torch-{dtype}")),
                       key=lambda s: statistics.median(cells[(s, "W1")]["seconds"]), default=None)
        ours = f"fastrerank-{args.compute_types[0]}"
        lines += [f"## {shape}", "",
                  f"`{baseline}` is the fastest torch {dtype} batch size run (32, and 128 rows where run) on W1.", "",
                  f"| system | workload | median s | p50 / p95 ms | pairs/s | tokens/s | x {baseline} | x {ours} "
                  "| peak fraction | Spearman vs fp32 | max abs diff | memory MiB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for (workload, _) in sorted(WORKLOADS, key=lambda x: x[0]):
            w = workloads[workload]
            rows = rows_of(w)
            for system in ready:
                if (system, workload) not in cells:
                    continue
                cell = cells[(system, workload)]
                median = statistics.median(cell["seconds"])
                ref = cells.get((REFERENCE, workload))
                rho = diff = float("nan")
                if ref and system != REFERENCE:
                    a, b = _sigmoid(cell["scores"], system), _sigmoid(ref["scores"], REFERENCE)
                    rho = spearman(a, b)
                    diff = max(abs(x - y) for x, y in zip(a, b))
                precision = "int8" if "int8" in system else ("bfloat16" if "bfloat16" in system else "float16")
                # torch._int_mm is no int8 ceiling on Hopper (it ran below float16): use the higher rate
                peak = max(peaks.get(precision, 0.0), peaks.get("float16", 0.0)) or None
                fraction = f"{flops_of(rows, config) / median / 1e12 / peak:.1%}" if peak else "n/a"

                lines.append(
                    f"| {system} | {workload} | {median:.4f} | {percentile(cell['seconds'], 0.5) * 1e3:.1f} / "
                    f"{percentile(cell['seconds'], 0.95) * 1e3:.1f} | {len(w['docs']) / median:.0f} | "
                    f"{sum(rows) / median:.0f} | {_ratio(cells, baseline, workload, median)} | {_ratio(cells, ours, workload, median)} | {fraction} | "
                    f"{rho:.4f} | {diff:.2e} | {ready[system]['memory_mb']:.0f} |")
        lines.append("")
    lines += ["Peak fraction: FLOPs per pair from the architecture (2 x weights x tokens + attention) over "
              "the measured dense GEMM rate of the system's matrix precision (float16 for fp32 systems, "
              "whose GEMMs run in TF32 or fp32: their fraction is an upper bound; for int8 the higher of the "
              "int8 and float16 rates, as torch._int_mm is no int8 ceiling here). Memory: growth of the "
              "GPU's used memory over the system's load and warm-up (CUDA caching allocators included). "
              "W4's fidelity columns compare slightly different inputs: the peers score window texts cut "
              "beforehand and re-tokenized (a window's first word can tokenize differently), fastrerank "
              "scores token windows.", ""]
    return "\n".join(lines)


def transfer(out: Path) -> None:
    """Time the copy of a batch's float16 states to the host, the two ways fastrerank has made it:
    converted to float32 on the GPU then copied (up to 0.1.x), or copied as float16 and converted by
    numpy (now). Batches of 8192 padded tokens (the CUDA default budget), hidden 768 and 1024."""
    import ctranslate2
    import numpy as np
    import torch

    f32, cpu = ctranslate2.DataType.float32, ctranslate2.Device.cpu
    ways = {
        "float32 on the GPU, then copy": lambda v: np.asarray(v.to(f32).to_device(cpu))[:, 0, :].copy(),
        "copy float16, numpy converts": lambda v: np.asarray(v.to_device(cpu))[:, 0, :].astype(np.float32),
    }
    results = []
    for rows, width, hidden in ((16, 512, 768), (64, 128, 768), (16, 512, 1024)):
        states = torch.randn(rows, width, hidden, device="cuda", dtype=torch.float16)
        view = ctranslate2.StorageView.from_array(states)
        outputs = {}
        for name, way in ways.items():
            for _ in range(3):
                way(view)
            times = []
            for _ in range(20):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                outputs[name] = way(view)
                times.append(time.perf_counter() - t0)
            results.append({"rows": rows, "width": width, "hidden": hidden, "way": name,
                            "median_ms": statistics.median(times) * 1e3})
        first, second = outputs.values()
        assert np.array_equal(first, second), "the two ways gave different states"
    for r in results:
        print(f"[transfer] {r['rows']}x{r['width']}x{r['hidden']}: {r['way']}: {r['median_ms']:.3f} ms", flush=True)
    (out / "transfer.json").write_text(json.dumps(results))


def probe(device: str) -> None:
    """Load a tiny converted model on ``device`` and score two documents; exit 1 with the error on failure."""
    import tempfile

    import fastrerank
    from fastrerank.testing import ModelShape, make_reranker_folder

    with tempfile.TemporaryDirectory() as tmp:
        hf = make_reranker_folder(Path(tmp) / "hf", ModelShape.tiny(), seed=0)
        out = fastrerank.convert(hf, Path(tmp) / "ct2", quantization="float16", progress=False)
        try:
            result = fastrerank.Reranker(out, device=device, compute_type="float16").rank("q", ["a b", "c"])
        except Exception as err:
            print(f"[probe] {err!r}", flush=True)
            raise SystemExit(1) from err
        print(f"[probe] ok: {[round(r.score, 4) for r in result.results]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shapes", type=lambda s: s.split(","), default=["base", "large"])
    parser.add_argument("--compute-types", type=lambda s: s.split(","), default=["float16", "int8_float16"])
    parser.add_argument("--torch-dtype", default="float16")
    parser.add_argument("--only", type=lambda s: s.split(","), default=None, help="system names (the reference always runs)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fastrerank-gpu"))
    parser.add_argument("--workloads-dir", type=Path, default=HERE / ".cache", help="holds SHAPE/workloads.json")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/fastrerank-gpu-out")))
    parser.add_argument("--probe", action="store_true", help="only check that a tiny model runs on --device")
    parser.add_argument("--transfer", action="store_true", help="only time the copy of states to the host (CUDA)")
    parser.add_argument("--summarise", type=Path, default=None,
                        help="only rewrite RESULTS-gpu.md in --out from this gpu-results.json (--work: SHAPE/hf/config.json)")
    args = parser.parse_args()
    if args.probe:
        return probe(args.device)
    if args.transfer:
        args.out.mkdir(parents=True, exist_ok=True)
        return transfer(args.out)
    if args.summarise:
        args.out.mkdir(parents=True, exist_ok=True)
        log = json.loads(args.summarise.read_text())
        args.rounds = 1 + max(r["round"] for r in log if r.get("event") == "call")
        (args.out / "RESULTS-gpu.md").write_text(summarise(log, args))
        return None
    import ctranslate2
    import sentence_transformers
    import torch
    import transformers

    args.out.mkdir(parents=True, exist_ok=True)
    gpu = platform.processor() or platform.machine()
    if args.device == "cuda":
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip()
    log: list[dict] = [{"event": "meta", "date": time.strftime("%Y-%m-%d"), "gpu": gpu, "torch": torch.__version__,
                        "transformers": transformers.__version__, "sentence_transformers": sentence_transformers.__version__,
                        "ctranslate2": ctranslate2.__version__, "gemm_peak": gemm_peak(args.device),
                        "notes": [n for n in os.environ.get("GPU_BENCH_NOTES", "").split("|") if n]
                        + [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("CT2_")]}]
    print(f"[gpu] {log[0]}", flush=True)
    for shape in args.shapes:
        run_shape(shape, args, log)
        (args.out / "gpu-results.json").write_text(json.dumps(log))  # partial results survive a timeout
        (args.out / "RESULTS-gpu.md").write_text(summarise(log, args))
    print((args.out / "RESULTS-gpu.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
