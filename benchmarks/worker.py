"""One benchmarked system in its own process: load it, then time calls on request.

Started by ``run.py`` with the system's venv and environment. Speaks JSON lines: reads
``{"workload": "W1", "reps": 3}`` on stdin and answers ``{"seconds": [...], "scores": [...]}``;
``{"stop": true}`` ends it. Its first line is ``{"ready": ..., "load_s": ...}``; every answer
carries ``peak_rss_mb`` (``ru_maxrss``: load and all calls so far), and the first answer for a
workload ``first_call_s``, the untimed warm-up call.

Each system is called through its public API, in its best documented form for a CPU, with the
thread count given by ``--threads``. For W4 (documents longer than a window) the peers get
windows cut beforehand by this file, with fastrerank's rule (window = 512 - query - 4 tokens,
80 tokens of overlap), and their scores are max-pooled per document; cutting is not timed for
them, so it is timed only for fastrerank, which does it itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

Scorer = Callable[[str, list[str]], list[float]]
BATCH_SIZE = 32  # the peers' batch size (rows); FlagEmbedding and sentence-transformers sort by length
# fastrerank's padded-token budget per batch; unset: the library's CPU default (raw CTranslate2 uses it too)
BATCH_TOKENS = int(os.environ["BENCH_BATCH_TOKENS"]) if os.environ.get("BENCH_BATCH_TOKENS") else None
# fastrerank's encoder replicas; unset: the library's default (one per thread on the CPU)
REPLICAS = int(os.environ["BENCH_REPLICAS"]) if os.environ.get("BENCH_REPLICAS") else None


def fastrerank_system(root: Path, compute_type: str, threads: int, device: str = "cpu",
                      batch_tokens: int | None = BATCH_TOKENS, replicas: int | None = REPLICAS) -> Scorer:
    """``fastrerank.Reranker.rank`` end to end; the int8 folder for the int8 compute types, else the type's own."""
    import fastrerank

    if os.environ.get("BENCH_TUNE_PROCESS") == "1":  # the opt-in for a process that is yours
        fastrerank.tune_process()
    folder = root / ("fastrerank-int8" if compute_type.startswith("int8") else f"fastrerank-{compute_type}")
    reranker = fastrerank.Reranker(folder, device=device, compute_type=compute_type, threads=threads,
                                   batch_tokens=batch_tokens, replicas=replicas)

    def score(query: str, docs: list[str]) -> list[float]:
        ranking = reranker.rank(query, docs)
        scores = [0.0] * len(docs)
        for item in ranking.results:
            scores[item.index] = item.score
        return scores

    return score


def ct2_raw_system(root: Path, compute_type: str, threads: int, device: str = "cpu",
                   flash_attention: bool = False, float32_on_device: bool = False) -> Scorer:
    """``ctranslate2.Encoder.forward_batch`` on ids tokenized beforehand (untimed), length-sorted
    batches under the same padded-token budget as fastrerank, and fastrerank's numpy head; the same
    CPU kernels as a fastrerank ``Reranker`` (AVX-512 where available), so the difference is the pipeline."""
    import numpy as np
    from tokenizers import Tokenizer

    from fastrerank import _model_format as model_format
    from fastrerank._ctranslate2 import import_ctranslate2
    from fastrerank._engine.batching import plan_batches
    from fastrerank._engine.cpu_isa import cpu_isa_for_load
    from fastrerank._engine.head import ClassificationHead  # numpy, without BLAS threads (see its docstring)
    from fastrerank._reranker import default_batch_tokens

    ctranslate2 = import_ctranslate2()  # its libgomp sleeps when idle, as in a Reranker
    budget = BATCH_TOKENS or default_batch_tokens(device, threads)  # one replica of `threads` threads
    folder = root / ("fastrerank-int8" if compute_type.startswith("int8") else f"fastrerank-{compute_type}")
    with cpu_isa_for_load():
        encoder = ctranslate2.Encoder(str(folder), device=device, compute_type=compute_type, intra_threads=threads,
                                      flash_attention=flash_attention)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    head = ClassificationHead.from_file(folder / model_format.HEAD_FILE, model_format.verify_folder(folder).hidden_size)
    cache: dict[tuple[str, int], list[list[int]]] = {}

    def score(query: str, docs: list[str]) -> list[float]:
        key = (query, len(docs))
        if key not in cache:  # pre-tokenized: the first call of a workload is untimed (warm-up)
            encoded = [e.ids for e in tokenizer.encode_batch([(query, d) for d in docs])]
            cache[key] = [ids if len(ids) <= 512 else ids[:511] + [ids[-1]] for ids in encoded]  # truncate, keep </s>
        rows = cache[key]
        logits = np.empty(len(rows), dtype=np.float32)
        for batch in plan_batches([len(row) for row in rows], budget):
            states = encoder.forward_batch([rows[i] for i in batch]).last_hidden_state
            if device != "cpu":  # the same copy back to the host that fastrerank makes (float16 as it is)
                if float32_on_device:  # as fastrerank made it up to 0.1.x
                    states = states.to(ctranslate2.DataType.float32)
                states = states.to_device(ctranslate2.Device.cpu)
            logits[batch] = head(np.asarray(states)[:, 0, :].astype(np.float32))
        return logits.tolist()

    return score


def torch_system(root: Path, threads: int, device: str = "cpu", dtype: str = "float32",
                 batch_size: int = BATCH_SIZE) -> Scorer:
    """transformers + torch, length-sorted batches (FlagEmbedding's ``compute_score`` method)."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(root / "hf")
    model = AutoModelForSequenceClassification.from_pretrained(root / "hf").eval()
    model = model.to(device=device, dtype=getattr(torch, dtype))

    @torch.inference_mode()
    def score(query: str, docs: list[str]) -> list[float]:
        pairs = [(query, d) for d in docs]
        lengths = [len(ids) for ids in tokenizer(pairs, truncation=True, max_length=512)["input_ids"]]
        order = np.argsort([-n for n in lengths])
        scores = np.empty(len(pairs), dtype=np.float32)
        for start in range(0, len(pairs), batch_size):
            batch = order[start : start + batch_size]
            features = tokenizer([pairs[i] for i in batch], padding=True, truncation=True, max_length=512,
                                 return_tensors="pt").to(device)
            scores[batch] = model(**features).logits[:, 0].float().cpu().numpy()
        return scores.tolist()

    return score


def cross_encoder_system(root: Path, backend: str, threads: int, device: str = "cpu",
                         dtype: str | None = None) -> Scorer:
    """sentence-transformers ``CrossEncoder.predict``; ``dtype`` (torch backend only) e.g. ``"float16"`` on CUDA."""
    import torch
    import transformers
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(threads)
    if backend == "torch":
        # transformers 5 renamed from_pretrained's torch_dtype to dtype
        dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        model = CrossEncoder(str(root / "hf"), device=device, max_length=512,
                             model_kwargs={dtype_key: getattr(torch, dtype)} if dtype else {})
    elif backend == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model = CrossEncoder(str(root / "peers" / "onnx-eager"), device="cpu", backend="onnx", max_length=512,
                             model_kwargs={"file_name": "model_qint8_avx512_vnni.onnx", "session_options": options,
                                           "provider": "CPUExecutionProvider"})
    else:
        model = CrossEncoder(str(root / "peers" / "openvino"), device="cpu", backend="openvino", max_length=512,
                             model_kwargs={"file_name": "openvino_model_qint8_quantized.xml",
                                           "ov_config": {"INFERENCE_NUM_THREADS": str(threads)}})

    def score(query: str, docs: list[str]) -> list[float]:
        return [float(s) for s in model.predict([(query, d) for d in docs], batch_size=BATCH_SIZE,
                                                 show_progress_bar=False)]

    return score


def openvino_throughput_system(root: Path, threads: int, request_rows: int = 2) -> Scorer:
    """OpenVINO's own API in its THROUGHPUT form, on the same int8 IR as ``st-openvino-int8``.

    ``threads`` streams of one thread each (``PERFORMANCE_HINT=THROUGHPUT``), fed by an
    ``AsyncInferQueue`` with one job per stream: pairs tokenized in the call (as ``CrossEncoder``
    does, truncated to 512), rows sorted longest first and cut into ``request_rows``-row requests,
    each padded to its own longest row; a callback stores each request's logits by row index, then
    the sigmoid (``CrossEncoder``'s activation for one label). Streams x threads is ``threads`` cores.
    """
    import numpy as np
    import openvino
    from transformers import AutoTokenizer

    folder = root / "peers" / "openvino"
    core = openvino.Core()
    compiled = core.compile_model(str(folder / "openvino" / "openvino_model_qint8_quantized.xml"), "CPU",
                                  {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(threads),
                                   "INFERENCE_NUM_THREADS": str(threads)})
    streams = int(compiled.get_property("NUM_STREAMS"))
    print(f"openvino {openvino.__version__}: NUM_STREAMS={streams} "
          f"INFERENCE_NUM_THREADS={compiled.get_property('INFERENCE_NUM_THREADS')} "
          f"INFERENCE_PRECISION_HINT={compiled.get_property('INFERENCE_PRECISION_HINT')} "
          f"OPTIMAL_NUMBER_OF_INFER_REQUESTS={compiled.get_property('OPTIMAL_NUMBER_OF_INFER_REQUESTS')}",
          file=sys.stderr, flush=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pad = tokenizer.pad_token_id
    queue = openvino.AsyncInferQueue(compiled, streams)
    logits = np.empty(0, dtype=np.float32)

    def done(request: openvino.InferRequest, rows: np.ndarray) -> None:
        logits[rows] = request.get_output_tensor(0).data[:, 0]

    queue.set_callback(done)

    def score(query: str, docs: list[str]) -> list[float]:
        nonlocal logits
        encoded = tokenizer([(query, d) for d in docs], truncation=True, max_length=512)["input_ids"]
        order = np.argsort([-len(ids) for ids in encoded], kind="stable")
        logits = np.empty(len(docs), dtype=np.float32)
        for start in range(0, len(order), request_rows):
            rows = order[start : start + request_rows]
            width = len(encoded[rows[0]])  # longest first: the first row is the request's longest
            ids = np.full((len(rows), width), pad, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, : len(encoded[i])] = encoded[i]
                mask[r, : len(encoded[i])] = 1
            queue.start_async({"input_ids": ids, "attention_mask": mask}, rows)
        queue.wait_all()
        return (1.0 / (1.0 + np.exp(-logits))).tolist()

    return score


def flashrank_system(root: Path, threads: int) -> Scorer:
    """FlashRank's ``Ranker.rerank`` on the int8 ONNX model in FlashRank's cache layout (``build_peers.py``).

    Two changes to FlashRank as shipped, both outside its scoring path: the model's name is added
    to its ``model_file_map`` (FlashRank 0.2.10 lists no MiniLM-L-6), and its ONNX Runtime session
    is opened again on the same file with ``threads`` intra-op threads (``Ranker`` opens it with
    ONNX Runtime's defaults and has no thread setting). Tokenization, truncation (FlashRank's
    ``max_length``, 512 here) and its one padded batch per call are FlashRank's own.
    """
    import flashrank.Config
    import onnxruntime
    from build_peers import FLASHRANK_FILE, FLASHRANK_MODEL  # type: ignore[import-not-found]
    from flashrank import Ranker, RerankRequest

    flashrank.Config.model_file_map[FLASHRANK_MODEL] = FLASHRANK_FILE  # the dict Ranker reads
    ranker = Ranker(model_name=FLASHRANK_MODEL, cache_dir=str(root / "peers" / "flashrank"), max_length=512,
                    log_level="WARNING")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    ranker.session = onnxruntime.InferenceSession(str(ranker.model_dir / FLASHRANK_FILE), options,
                                                  providers=["CPUExecutionProvider"])

    def score(query: str, docs: list[str]) -> list[float]:
        ranked = ranker.rerank(RerankRequest(query=query, passages=[{"id": i, "text": d} for i, d in enumerate(docs)]))
        scores = [0.0] * len(docs)
        for passage in ranked:
            scores[passage["id"]] = float(passage["score"])
        return scores

    return score


def load(system: str, root: Path, threads: int) -> Scorer:
    kind = system.split("+")[0]  # "fastrerank-int8+mimalloc" is fastrerank-int8 under another environment
    if kind.startswith("fastrerank-"):
        return fastrerank_system(root, kind.removeprefix("fastrerank-"), threads)
    if kind.startswith("ct2-raw-"):
        return ct2_raw_system(root, kind.removeprefix("ct2-raw-"), threads)
    if kind == "torch-fp32":
        return torch_system(root, threads)
    if kind == "st-openvino-throughput":
        return openvino_throughput_system(root, threads)
    if kind.startswith("st-"):
        return cross_encoder_system(root, kind.split("-")[1], threads)
    if kind == "flashrank":
        return flashrank_system(root, threads)
    raise SystemExit(f"unknown system {system!r}")


def windows(tokenizer_file: Path, query: str, docs: list[str], max_length: int = 512,
            overlap: int = 80) -> tuple[list[str], list[int]]:
    """Cut documents into window texts with fastrerank's rule, for the peers (which truncate)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    query_tokens = len(tokenizer.encode(query, add_special_tokens=False).ids)
    window = max_length - query_tokens - 4
    texts, owners = [], []
    for index, doc in enumerate(docs):
        offsets = tokenizer.encode(doc, add_special_tokens=False).offsets
        start = 0
        while True:
            end = min(start + window, len(offsets))
            texts.append(doc[offsets[start][0] : offsets[end - 1][1]])
            owners.append(index)
            if end == len(offsets):
                break
            start = end - overlap
    return texts, owners


def prepare(system: str, workload: dict, tokenizer_file: Path) -> tuple[list[str], list[int] | None]:
    """The texts ``system`` is called with, and the owning document of each when they are windows.

    fastrerank cuts long documents itself; the peers truncate, so they get windows cut here (untimed).
    """
    docs = list(workload["docs"])
    if max(workload["doc_tokens"]) + workload["query_tokens"] + 4 > 512 and not system.startswith("fastrerank"):
        return windows(tokenizer_file, workload["query"], docs)
    return docs, None


def pool(scores: list[float], owners: list[int] | None) -> list[float]:
    """Per-document scores: the maximum over each document's windows (``owners``), or ``scores`` as they are."""
    if owners is None:
        return scores
    pooled = [float("-inf")] * (max(owners) + 1)
    for owner, value in zip(owners, scores):
        pooled[owner] = max(pooled[owner], value)
    return pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # libraries that print must not break the protocol
    workloads = json.loads((args.root / "workloads.json").read_text())["workloads"]
    start = time.perf_counter()
    scorer = load(args.system, args.root, args.threads)
    protocol.write(json.dumps({"ready": args.system, "load_s": time.perf_counter() - start}) + "\n")
    prepared: dict[str, tuple[str, list[str], list[int] | None]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("stop"):
            break
        name = request["workload"]
        first_call: dict[str, float] = {}
        if name not in prepared:
            w = workloads[name]
            docs, owners = prepare(args.system, w, args.root / "hf" / "tokenizer.json")
            prepared[name] = (w["query"], docs, owners)
            t0 = time.perf_counter()
            scorer(w["query"], docs)  # warm-up, not among the timed calls
            first_call = {"first_call_s": time.perf_counter() - t0}
        query, docs, owners = prepared[name]
        seconds, cpu_seconds = [], []
        for _ in range(request.get("reps", 1)):
            c0, t0 = time.process_time(), time.perf_counter()
            scores = pool(scorer(query, docs), owners)
            seconds.append(time.perf_counter() - t0)
            cpu_seconds.append(time.process_time() - c0)  # all threads of this process
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        protocol.write(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "scores": scores, "peak_rss_mb": peak,
                                   **first_call}) + "\n")


if __name__ == "__main__":
    main()
