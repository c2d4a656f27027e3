"""Export the peers' model forms from a Hugging Face reranker folder (run in the peers' venv).

- ``onnx/``: ONNX export of the *eager-attention* model (ONNX Runtime runs it faster than an
  export of the sdpa model), then sentence-transformers' dynamic int8 quantization for AVX-512 VNNI
  (``onnx/model_qint8_avx512_vnni.onnx``).
- ``openvino/``: OpenVINO IR, then sentence-transformers' static int8 quantization
  (``openvino/openvino_model_qint8_quantized.xml``) calibrated on local generated texts
  (sentence-transformers' helper would fetch GLUE from the hub).
- ``flashrank/``: FlashRank's model cache (BERT rerankers only): ``flashrank/<model name>/`` holding
  the fp32 ONNX export above quantized by onnxruntime's ``quantize_dynamic`` with its defaults,
  under the file name FlashRank's ``model_file_map`` gives it, next to the ``config.json``,
  ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json`` and ``vocab.txt``
  that ``Ranker`` reads. A folder that exists is never downloaded, so
  ``Ranker(model_name=..., cache_dir=OUT_FOLDER/flashrank)`` runs offline.

Usage: ``python benchmarks/build_peers.py HF_FOLDER OUT_FOLDER [--forms onnx,openvino,flashrank]``
(default ``onnx,openvino``); the forms land in OUT_FOLDER, next to copies of the tokenizer and
config, so ``CrossEncoder(OUT_FOLDER, backend=...)`` loads them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def export_onnx(hf: Path, out: Path) -> None:
    import torch
    from optimum.exporters.onnx import onnx_export_from_model
    from sentence_transformers import CrossEncoder
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model
    from transformers import AutoModelForSequenceClassification

    if (out / "onnx" / "model_qint8_avx512_vnni.onnx").exists():
        return
    torch.set_num_threads(2)
    model = AutoModelForSequenceClassification.from_pretrained(hf, attn_implementation="eager").eval()
    onnx_export_from_model(model, out / "onnx", do_validation=False)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(hf / name, out / name)
    encoder = CrossEncoder(str(out), backend="onnx", device="cpu")
    export_dynamic_quantized_onnx_model(encoder, "avx512_vnni", str(out))


def export_openvino(hf: Path, out: Path, num_samples: int = 300) -> None:
    import nncf
    from optimum.intel.openvino import OVConfig, OVQuantizationConfig, OVQuantizer
    from sentence_transformers import CrossEncoder

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from fastrerank.testing import make_corpus

    if (out / "openvino" / "openvino_model_qint8_quantized.xml").exists():
        return
    encoder = CrossEncoder(str(hf), backend="openvino", device="cpu")
    encoder.save_pretrained(str(out))  # writes openvino/openvino_model.xml + tokenizer files
    encoder = CrossEncoder(str(out), backend="openvino", device="cpu")
    ov_model = encoder.model if hasattr(encoder, "model") else encoder.transformers_model
    sentences = make_corpus(num_sentences=2 * num_samples, seed=123)
    pairs = list(zip(sentences[::2], sentences[1::2]))
    samples = []
    for query, doc in pairs:
        features = encoder.tokenizer(query, doc, padding="max_length", max_length=384, truncation=True, return_tensors="np")
        samples.append({k: v for k, v in features.items() if k in ("input_ids", "attention_mask")})
    config = OVQuantizationConfig(num_samples=num_samples)
    quantizer = OVQuantizer.from_pretrained(ov_model)
    tmp = out / "openvino_qint8_tmp"
    quantizer.quantize(calibration_dataset=nncf.Dataset(samples), save_directory=tmp, ov_config=OVConfig(quantization_config=config))
    for suffix in ("xml", "bin"):
        shutil.move(tmp / "openvino" / f"openvino_model.{suffix}", out / "openvino" / f"openvino_model_qint8_quantized.{suffix}")
    shutil.rmtree(tmp)


# FlashRank 0.2.10 lists no MiniLM-L-6 (only TinyBERT-L-2 and MiniLM-L-12 among the ms-marco
# models); worker.py registers this name in its model_file_map, with the file name in its style.
FLASHRANK_MODEL = "ms-marco-MiniLM-L-6-v2"
FLASHRANK_FILE = "flashrank-MiniLM-L-6-v2_Q.onnx"
FLASHRANK_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def export_flashrank(hf: Path, onnx_folder: Path, cache: Path) -> None:
    """FlashRank's cache layout from the fp32 ONNX export in ``onnx_folder`` (``export_onnx`` first)."""
    from onnxruntime.quantization import quantize_dynamic

    model_dir = cache / FLASHRANK_MODEL
    if (model_dir / FLASHRANK_FILE).exists():
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in FLASHRANK_FILES:
        shutil.copy(hf / name, model_dir / name)
    # FlashRank does not say how its *_Q.onnx files were made; onnxruntime's dynamic quantization
    # with its defaults (int8 weights per tensor, activations quantized at run time) is the usual way.
    quantize_dynamic(onnx_folder / "onnx" / "model.onnx", model_dir / f"{FLASHRANK_FILE}.tmp")
    (model_dir / f"{FLASHRANK_FILE}.tmp").rename(model_dir / FLASHRANK_FILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hf", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--forms", default="onnx,openvino", help="comma-separated: onnx, openvino, flashrank")
    args = parser.parse_args()
    forms = args.forms.split(",")
    hf, out = args.hf, args.out
    out.mkdir(parents=True, exist_ok=True)
    if "onnx" in forms or "flashrank" in forms:
        export_onnx(hf, out / "onnx-eager")
    if "openvino" in forms:
        export_openvino(hf, out / "openvino")
    if "flashrank" in forms:
        export_flashrank(hf, out / "onnx-eager", out / "flashrank")


if __name__ == "__main__":
    main()
