"""Export the peers' model forms from a Hugging Face reranker folder (run in the peers' venv).

- ``onnx/``: ONNX export of the *eager-attention* model (ONNX Runtime runs it faster than an
  export of the sdpa model), then sentence-transformers' dynamic int8 quantization for AVX-512 VNNI
  (``onnx/model_qint8_avx512_vnni.onnx``).
- ``openvino/``: OpenVINO IR, then sentence-transformers' static int8 quantization
  (``openvino/openvino_model_qint8_quantized.xml``) calibrated on local generated texts
  (sentence-transformers' helper would fetch GLUE from the hub).

Usage: ``python benchmarks/build_peers.py HF_FOLDER OUT_FOLDER``; both forms land in OUT_FOLDER,
next to copies of the tokenizer and config, so ``CrossEncoder(OUT_FOLDER, backend=...)`` loads them.
"""

from __future__ import annotations

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


def main() -> None:
    hf, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(hf, out / "onnx-eager")
    export_openvino(hf, out / "openvino")


if __name__ == "__main__":
    main()
