"""Turn ``results.jsonl`` into ``benchmarks/RESULTS.md`` tables and PNG charts (peers' venv: matplotlib, scipy).

Usage: ``python benchmarks/report.py --root benchmarks/.cache/base``. The prose of RESULTS.md
lives between the markers ``<!-- tables:start -->`` and ``<!-- tables:end -->`` is replaced, the
rest of the file (the analysis written by hand) is kept.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import textwrap
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
START, END = "<!-- tables:start -->", "<!-- tables:end -->"
MAX_LENGTH, OVERLAP, SPECIALS = 512, 80, 4
REFERENCE, OURS = "torch-fp32", "fastrerank-int8"
SIZES = {  # what each system loads from disk
    "torch-fp32": "hf/model.safetensors", "st-torch": "hf/model.safetensors",
    "st-onnx-int8": "peers/onnx-eager/onnx/model_qint8_avx512_vnni.onnx",
    "st-openvino-int8": "peers/openvino/openvino/openvino_model_qint8_quantized.bin",
    "st-openvino-throughput": "peers/openvino/openvino/openvino_model_qint8_quantized.bin",
    "ct2-raw-int8": "fastrerank-int8/model.bin", "fastrerank-int8": "fastrerank-int8/model.bin",
    "fastrerank-float32": "fastrerank-float32/model.bin",
}


def rows_of(workload: dict) -> list[int]:
    """Token count of every model row, with fastrerank's window rule for long documents."""
    q = workload["query_tokens"]
    window = MAX_LENGTH - q - SPECIALS
    rows = []
    for n in workload["doc_tokens"]:
        start = 0
        while True:
            end = min(start + window, n)
            rows.append(q + SPECIALS + end - start)
            if end == n:
                break
            start = end - OVERLAP
    return rows


def flops_of(rows: list[int], config: dict) -> float:
    """2 x non-embedding weights x tokens, plus attention's QK^T and AV (4 x n^2 x hidden per layer)."""
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    weights = layers * (4 * h * h + 2 * h * inter)
    return sum(2.0 * weights * n + 4.0 * n * n * h * layers for n in rows)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def versions(python: str, modules: list[str]) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys; out = {}\n"
            "for name in sys.argv[1:]:\n"
            "    try: out[name] = m.version(name)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    try:
        return json.loads(subprocess.run([python, "-c", code, *modules], capture_output=True, text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError):
        return {}


def summarise(root: Path) -> dict:
    records = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines() if line.strip()]
    workloads = json.loads((root / "workloads.json").read_text())
    config = json.loads((root / "hf" / "config.json").read_text())
    peak = best_peak([json.loads(p.read_text()) for p in sorted(root.glob("gemm_peak*.json"))])
    calls = [r for r in records if r.get("event") == "call"]
    groups = {r["system"]: r["group"] for r in calls}
    samples: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in calls:
        cell = samples[(r["system"], r["workload"])]
        cell["seconds"] += r["seconds"]
        cell["cpu"] += r.get("cpu_seconds", [])
        cell["load"].append(r["load_avg"])
        cell["rss"].append(r["peak_rss_mb"])
        cell["scores"] = r["scores"]
    table = {}
    for (system, name), cell in samples.items():
        w = workloads["workloads"][name]
        rows = rows_of(w)
        median = statistics.median(cell["seconds"])
        cpu = statistics.median(cell["cpu"]) if cell["cpu"] else float("nan")
        fp = "fp32" if ("fp32" in system or "float32" in system or system == "st-torch") else "int8"
        gemm_peak = peak["fp32_peak_gflops"] if fp == "fp32" else peak["int8_peak_gops"]
        cpu_peak = peak["fp32_peak_gflops_per_cpu_s"] if fp == "fp32" else peak["int8_peak_gops_per_cpu_s"]
        table[(system, name)] = {
            "system": system, "workload": name, "group": groups[system], "n": len(cell["seconds"]),
            "median_s": median, "p50_s": percentile(cell["seconds"], 0.5), "p95_s": percentile(cell["seconds"], 0.95),
            "cpu_s": cpu, "pairs_per_s": len(w["docs"]) / median, "tokens_per_s": sum(rows) / median,
            "pairs_per_cpu_s": len(w["docs"]) / cpu if not math.isnan(cpu) else float("nan"),
            "gflops": flops_of(rows, config) / median / 1e9, "peak_fraction": flops_of(rows, config) / median / 1e9 / gemm_peak,
            "peak_fraction_cpu": flops_of(rows, config) / cpu / 1e9 / cpu_peak,
            "rss_mb": max(cell["rss"]), "load_avg": statistics.median(cell["load"]), "scores": cell["scores"],
        }
    return {"table": table, "peak": peak, "workloads": workloads, "config": config,
            "start": next((r for r in records if r.get("event") == "start"), {}),
            "ready": {r["system"]: r["load_s"] for r in records if r.get("event") == "ready"}}


def best_peak(measures: list[dict]) -> dict:
    """The best of the GEMM-peak measurements (before and after the run): other load only lowers a peak."""
    best = dict(measures[0])
    best["kernels"] = {k: {m: max(x["kernels"][k][m] for x in measures) for m in v} for k, v in measures[0]["kernels"].items()}
    for key in ("fp32_peak_gflops", "int8_peak_gops", "fp32_peak_gflops_per_cpu_s", "int8_peak_gops_per_cpu_s"):
        best[key] = max(x[key] for x in measures)
    best["load_avg"] = min(x["load_avg"] for x in measures)
    best["measures"] = len(measures)
    return best


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


# st-openvino-int8 is OpenVINO's LATENCY form, st-openvino-throughput its THROUGHPUT form (the faster one).
PEERS = ("torch-fp32", "st-onnx-int8", "st-openvino-int8", "st-openvino-throughput")
TARGETS = {"torch-fp32": ">= 5x", "st-onnx-int8": ">= 1.5x", "st-openvino-int8": ">= 1x",
           "st-openvino-throughput": ">= 1x"}


def targets(summary: dict) -> list[str]:
    """fastrerank int8 (library and command line) against the peers named in the targets, W1, wall and CPU time."""
    table = summary["table"]
    ours = [s for s in (OURS, OURS + "+cli-env", OURS + "+one-replica") if (s, "W1") in table]
    peers = [p for p in PEERS if (p, "W1") in table]
    if not ours or not peers:
        return []
    lines = ["### Targets on W1 (ratio of median wall time; CPU time in brackets)", "",
             "| fastrerank | " + " | ".join(f"x {p} (target {TARGETS[p]})" for p in peers) + " | Spearman vs torch fp32 |",
             "|---|" + "---:|" * (len(peers) + 1)]
    ref = table.get((REFERENCE, "W1"))
    for system in ours:
        row = table[(system, "W1")]
        cells = [f"{table[(p, 'W1')]['median_s'] / row['median_s']:.2f} ({table[(p, 'W1')]['cpu_s'] / row['cpu_s']:.2f})"
                 for p in peers]
        rho = f"{spearman(row['scores'], ref['scores']):.4f}" if ref else "-"
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {rho} |")
    return [*lines, ""]


def markdown(summary: dict, root: Path) -> str:
    table = summary["table"]
    systems = sorted({s for s, _ in table}, key=lambda s: (table[next(k for k in table if k[0] == s)]["group"] != "main", s))
    names = sorted({w for _, w in table})
    lines = targets(summary)
    for name in names:
        w = summary["workloads"]["workloads"][name]
        rows = rows_of(w)
        lines += [f"### {name}: {w['about']}", "",
                  (f"{len(rows)} model rows, {sum(rows):,} non-padding tokens, "
                   f"{flops_of(rows, summary['config']) / 1e12:.2f} TFLOP per call."), "",
                  ("| system | calls | median s | p95 s | pairs/s | tokens/s | x torch fp32 | x fastrerank int8 "
                   "| CPU s/call | x torch (CPU) | x fastrerank (CPU) | % GEMM peak (wall / CPU) | peak RSS MB | load avg |"),
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ref, ours = table.get((REFERENCE, name)), table.get((OURS, name))
        for system in systems:
            row = table.get((system, name))
            if not row:
                continue
            vs_ref = f"{row['pairs_per_s'] / ref['pairs_per_s']:.2f}" if ref else "-"
            vs_ours = f"{row['pairs_per_s'] / ours['pairs_per_s']:.2f}" if ours else "-"
            cpu_ref = f"{ref['cpu_s'] / row['cpu_s']:.2f}" if ref else "-"
            cpu_ours = f"{ours['cpu_s'] / row['cpu_s']:.2f}" if ours else "-"
            bold = "**" if system == OURS else ""
            lines.append(f"| {bold}{system}{bold} | {row['n']} | {row['median_s']:.2f} | {row['p95_s']:.2f} | "
                         f"{row['pairs_per_s']:.2f} | {row['tokens_per_s']:,.0f} | {vs_ref} | {vs_ours} | "
                         f"{row['cpu_s']:.2f} | {cpu_ref} | {cpu_ours} | {100 * row['peak_fraction']:.0f}% / "
                         f"{100 * row['peak_fraction_cpu']:.0f}% | {row['rss_mb']:,.0f} | {row['load_avg']:.1f} |")
        lines.append("")
    lines += ["### Score fidelity on W1 (Spearman vs torch fp32)", "", "| system | Spearman |", "|---|---:|"]
    ref = table.get((REFERENCE, "W1"))
    for system in systems:
        row = table.get((system, "W1"))
        if row and ref and system != REFERENCE and "+" not in system:
            lines.append(f"| {system} | {spearman(row['scores'], ref['scores']):.4f} |")
    lines += ["", "### Model size on disk", "", "| system | file | MB |", "|---|---|---:|"]
    for system, path in SIZES.items():
        if (root / path).exists():
            lines.append(f"| {system} | `{path}` | {(root / path).stat().st_size / 2**20:,.0f} |")
    peak = summary["peak"]
    lines += ["", "### GEMM peak of this machine (same run, 2 threads, 2048^3)", "",
              "| kernel | GFLOP/s (wall) | GFLOP/s per CPU-second |", "|---|---:|---:|"]
    for kernel, value in peak["kernels"].items():
        lines.append(f"| {kernel} | {value['gflops_wall']:.0f} | {value['gflops_per_cpu_s']:.0f} |")
    lines += ["", (f"Best of {peak['measures']} measurements (before and after the run). Peaks used: fp32 "
              f"{peak['fp32_peak_gflops']:.0f} GFLOP/s, int8 {peak['int8_peak_gops']:.0f} GOP/s "
              f"(lowest load average while measured: {peak['load_avg']:.1f})."), ""]
    return "\n".join(lines)


def charts(summary: dict, out: Path, suffix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary["table"]
    config = summary["config"]
    shape = f"{config['hidden_size']}x{config['num_hidden_layers']}"
    shown = {"fastrerank-int8+cli-env": "fastrerank-int8 (CLI)"}
    main = sorted({s for (s, _), r in table.items() if r["group"] == "main"})
    names = [w for w in ("W1", "W2", "W4") if any((s, w) in table for s in main)]
    fig, axes = plt.subplots(1, len(names), figsize=(max(7, 5 * len(names)), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        present = sorted((s for s in main if (s, name) in table), key=lambda s: table[(s, name)]["pairs_per_s"])
        values = [table[(s, name)]["pairs_per_s"] for s in present]
        colors = ["tab:red" if s.startswith("fastrerank") else "tab:gray" for s in present]
        ax.barh([shown.get(s, s) for s in present], values, color=colors)
        ax.set_title(textwrap.fill(f"{name}: {summary['workloads']['workloads'][name]['about']}", 48), fontsize=8)
        ax.set_xlabel("pairs/s, 2 threads (higher is better)", fontsize=8)
    title = f"Throughput, {shape} shape, 2 threads, random weights (median wall time per call)"
    fig.suptitle(textwrap.fill(title, 30 * max(2, len(names))), fontsize=10)
    fig.tight_layout()
    fig.savefig(out / f"throughput{suffix}.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    present = sorted((s for s in main if (s, "W3") in table), key=lambda s: table[(s, "W3")]["p50_s"])
    p50 = [1000 * table[(s, "W3")]["p50_s"] for s in present]
    p95 = [1000 * table[(s, "W3")]["p95_s"] for s in present]
    y = range(len(present))
    ax.barh([i + 0.2 for i in y], p50, height=0.4, label="p50", color="tab:blue")
    ax.barh([i - 0.2 for i in y], p95, height=0.4, label="p95", color="tab:orange")
    ax.set_yticks(list(y), [shown.get(s, s) for s in present])
    ax.set_xlabel("ms per call: 1 query x 8 documents of ~100 tokens (lower is better)")
    ax.legend()
    ax.set_title(f"Latency (W3), {shape} shape, 2 threads", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / f"latency{suffix}.png", dpi=110)
    plt.close(fig)
    return [f"throughput{suffix}.png", f"latency{suffix}.png"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE / ".cache" / "base")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--fastrerank-python", default="python3")
    parser.add_argument("--peers-python", default="python3")
    args = parser.parse_args()
    summary = summarise(args.root)
    suffix = args.results.stem.removeprefix("RESULTS")  # RESULTS.md: "", RESULTS-large.md: "-large"
    charts(summary, args.results.parent, suffix)
    fr = versions(args.fastrerank_python, ["ctranslate2", "tokenizers", "numpy"])
    peers = versions(args.peers_python, ["torch", "transformers", "sentence-transformers", "onnxruntime", "openvino",
                                         "optimum", "optimum-onnx", "optimum-intel", "nncf", "tokenizers"])
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    machine = (f"Machine: {cpu}, {os.cpu_count()} logical CPUs, Linux {platform.release()}; threads per system: "
               f"{summary['start'].get('threads')}. fastrerank venv: {fr}. peers venv: {peers}. "
               f"Workload seed: {summary['workloads']['seed']}. Model load seconds: "
               + ", ".join(f"{s} {v:.1f}" for s, v in summary["ready"].items()) + ".")
    generated = f"{START}\n\n{machine}\n\n{markdown(summary, args.root)}\n{END}"
    text = args.results.read_text() if args.results.exists() else f"# Benchmark results\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    args.results.write_text(head + generated + tail)
    (args.results.parent / f"results-summary{suffix}.json").write_text(json.dumps(
        {f"{s}|{w}": {k: v for k, v in r.items() if k != "scores"} for (s, w), r in summary["table"].items()}, indent=1))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
