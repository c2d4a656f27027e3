"""Build (once) everything the benchmark needs under ``benchmarks/.cache/<shape>/``.

- ``hf/``: a random-weight, seeded, full-size XLM-R reranker (``fastrerank.testing``);
- ``fastrerank-int8/``, ``fastrerank-float32/``: ``fastrerank.convert`` of it;
- ``peers/onnx-eager/``, ``peers/openvino/``: the peers' int8 forms (``build_peers.py``, peers' venv);
- ``workloads.json``: the five workloads (``workloads.py``), cut with the model's own tokenizer.

Every step is skipped when its output exists; delete ``benchmarks/.cache`` to rebuild.
Run with fastrerank's Python: ``python benchmarks/build.py --shape base --peers-python PATH``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _step(name: str, done: bool) -> bool:
    print(f"[build] {name}: {'cached' if done else 'building'}", flush=True)
    return not done


def build(shape_name: str, cache: Path, peers_python: str, seed: int = 0) -> Path:
    from tokenizers import Tokenizer
    from workloads import make_workloads

    import fastrerank
    from fastrerank.testing import ModelShape, make_reranker_folder

    root = cache / shape_name
    hf = root / "hf"
    if _step(f"{shape_name} random-weight model", (hf / "config.json").exists()):
        make_reranker_folder(root / "hf.tmp", getattr(ModelShape, shape_name)(), seed=seed)
        (root / "hf.tmp").rename(hf)
    for quantization in ("int8", "float32"):
        out = root / f"fastrerank-{quantization}"
        if _step(f"fastrerank.convert {quantization}", out.exists()):
            start = time.perf_counter()
            fastrerank.convert(hf, out, quantization=quantization, progress=False)
            print(f"[build]   {time.perf_counter() - start:.1f} s", flush=True)
    peers = root / "peers"
    done = (peers / "openvino" / "openvino" / "openvino_model_qint8_quantized.xml").exists()
    if _step("peers' ONNX int8 and OpenVINO int8 exports (slow: calibration)", done):
        subprocess.run([peers_python, str(HERE / "build_peers.py"), str(hf), str(peers)], check=True)
    for folder in (peers / "onnx-eager", peers / "onnx-eager" / "onnx", peers / "openvino"):
        for name in TOKENIZER_FILES:  # one tokenizer for every system
            shutil.copy(hf / name, folder / name)
    workloads = root / "workloads.json"
    if _step("workloads", workloads.exists()):
        data = make_workloads(Tokenizer.from_file(str(hf / "tokenizer.json")), seed)
        workloads.write_text(json.dumps({"seed": seed, "workloads": data}, ensure_ascii=False))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="base", choices=["tiny", "base", "large"])
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--peers-python", required=True)
    args = parser.parse_args()
    build(args.shape, args.cache, args.peers_python)


if __name__ == "__main__":
    main()
