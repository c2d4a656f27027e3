"""This machine's GEMM peak with the benchmark's thread count: fp32 and int8, large square shapes.

fp32: numpy (OpenBLAS) and torch matmul; int8: ONNX Runtime ``MatMulInteger`` (u8 x s8, MLAS
VNNI kernels) and ``torch._int_mm``. Prints one JSON object with the best GFLOP/s (GOP/s for int8)
of each, by wall time and by process CPU time (the latter is less sensitive to other load).
Run in the peers' venv: ``python benchmarks/gemm_peak.py --threads 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _best(fn, flops: float, reps: int = 5) -> dict[str, float]:
    fn()
    walls, cpus = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"gflops_wall": flops / min(walls) / 1e9, "gflops_per_cpu_s": flops / min(cpus) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=2048)
    args = parser.parse_args()
    import numpy as np
    import onnxruntime
    import torch
    from onnx import TensorProto, helper

    n, threads = args.n, args.threads
    flops = 2.0 * n**3
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    a32, b32 = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    out: dict[str, dict[str, float]] = {}
    out["fp32 numpy"] = _best(lambda: a32 @ b32, flops)
    ta, tb = torch.from_numpy(a32), torch.from_numpy(b32)
    out["fp32 torch"] = _best(lambda: ta @ tb, flops)
    ia, ib = torch.randint(-128, 127, (n, n), dtype=torch.int8), torch.randint(-128, 127, (n, n), dtype=torch.int8)
    out["int8 torch._int_mm"] = _best(lambda: torch._int_mm(ia, ib), flops)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "mm",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])],
        [helper.make_tensor("B", TensorProto.INT8, [n, n], rng.integers(-128, 127, (n, n), dtype=np.int8).tobytes(), raw=True)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ua = rng.integers(0, 255, (n, n), dtype=np.uint8)
    out["int8 onnxruntime MatMulInteger"] = _best(lambda: session.run(None, {"A": ua}), flops)
    summary = {
        "threads": threads, "n": n, "load_avg": os.getloadavg()[0], "kernels": out,
        "fp32_peak_gflops": max(v["gflops_wall"] for k, v in out.items() if k.startswith("fp32")),
        "int8_peak_gops": max(v["gflops_wall"] for k, v in out.items() if k.startswith("int8")),
        "fp32_peak_gflops_per_cpu_s": max(v["gflops_per_cpu_s"] for k, v in out.items() if k.startswith("fp32")),
        "int8_peak_gops_per_cpu_s": max(v["gflops_per_cpu_s"] for k, v in out.items() if k.startswith("int8")),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
