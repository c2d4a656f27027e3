"""The ranking engine: scores equal the transformers reference, the window rule, and the API contract."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ctranslate2
import numpy as np
import pytest

import fastrerank
from fastrerank import InferenceError, InvalidInputError, InvalidTypeError, Reranker
from fastrerank.testing import make_corpus

from .reference import load_reference, reference_chunked, reference_logits_for_ids, reference_pair_logits, sigmoid

QUERY = "apple fruit health"


def _docs(count: int, seed: int = 5, words: int = 1) -> list[str]:
    sentences = make_corpus(count * words, seed=seed)
    return [" ".join(sentences[i * words : (i + 1) * words]) for i in range(count)]


def test_single_window_scores_equal_reference(tiny_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    docs = _docs(24, words=3)
    scores = tiny_reranker.score(QUERY, docs)
    reference = sigmoid(reference_pair_logits(hf_models["tiny"], QUERY, docs, 512))
    np.testing.assert_allclose(scores, reference, atol=1e-4)
    assert reference.max() - reference.min() > 0.3


def test_first_window_equals_only_second_truncation(short_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    """With one chunk, a long document is scored exactly as transformers' only_second truncation."""
    docs = _docs(10, seed=9, words=6)
    scores = short_reranker.score(QUERY, docs, max_chunks_per_doc=1, raw=True)
    np.testing.assert_allclose(scores, reference_pair_logits(hf_models["short"], QUERY, docs, 64), atol=1e-4)


@pytest.mark.parametrize("overlap", [0, 5, 80])
@pytest.mark.parametrize("max_chunks", [1, 2, 3, 1024])
def test_long_documents_follow_the_window_rule(
    overlap: int, max_chunks: int, short_reranker: Reranker, hf_models: dict[str, Path]
) -> None:
    docs = _docs(6, seed=13, words=8) + ["", "short one"]
    query = "machine learning model search"
    ranking = short_reranker.rank(query, docs, overlap_tokens=overlap, max_chunks_per_doc=max_chunks, raw=True)
    expected, tokens = reference_chunked(hf_models["short"], query, docs, max_length=64, overlap=overlap,
                                         max_chunks=max_chunks)
    by_index = {item.index: item.score for item in ranking}
    np.testing.assert_allclose([by_index[i] for i in range(len(docs))], expected, atol=1e-4)
    assert ranking.tokens == tokens


def test_long_query_is_cut_to_three_quarters(short_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    query = " ".join(_docs(4, seed=3, words=4))  # far more than 48 tokens
    docs = _docs(5, seed=4, words=4)
    ranking = short_reranker.rank(query, docs, raw=True)
    assert ranking.query_truncated
    expected, tokens = reference_chunked(hf_models["short"], query, docs, max_length=64, overlap=80, max_chunks=1024)
    np.testing.assert_allclose([item.score for item in sorted(ranking, key=lambda r: r.index)], expected, atol=1e-4)
    assert ranking.tokens == tokens
    assert not short_reranker.rank("apple", docs).query_truncated


def test_order_top_n_and_documents(tiny_reranker: Reranker) -> None:
    docs = _docs(12)
    scores = tiny_reranker.score(QUERY, docs)
    full = tiny_reranker.rank(QUERY, docs)
    assert [item.index for item in full] == sorted(range(12), key=lambda i: -scores[i])
    assert [item.score for item in full] == sorted(scores.tolist(), reverse=True)
    assert all(item.document is None for item in full)
    top = tiny_reranker.rank(QUERY, docs, top_n=3, return_documents=True)
    assert [(item.index, item.score) for item in top] == [(item.index, item.score) for item in full[:3]]
    assert [item.document for item in top] == [docs[item.index] for item in top]
    assert len(tiny_reranker.rank(QUERY, docs, top_n=100)) == 12
    assert top.tokens == full.tokens > 0


def test_duplicate_windows_are_run_once(tiny_reranker: Reranker) -> None:
    once = tiny_reranker.rank(QUERY, ["apple pie"])
    twice = tiny_reranker.rank(QUERY, ["apple pie", "apple pie"])
    assert twice.tokens == once.tokens
    assert twice[0].score == twice[1].score == once[0].score


def test_token_count_matches_reference(tiny_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    tokenizer, _ = load_reference(str(hf_models["tiny"]))
    docs = _docs(7, words=2)
    expected = sum(len(tokenizer(QUERY, doc)["input_ids"]) for doc in docs)
    assert tiny_reranker.rank(QUERY, docs).tokens == expected


UNICODE_DOCS = [
    "预防感冒应勤洗手、戴口罩", "🍕🚀👩‍💻🇩🇪", "مرحبا بالعالم", "e\u0301\u0301\u0301 combining", "\u202eRTL override",
    "\ufeffBOM and \u200dZWJ", "nul\x00inside", "", "   ", "\u200b", "a\ud800b lone surrogate",
]


def test_unicode_and_empty_documents_are_scored(tiny_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    ranking = tiny_reranker.rank(QUERY, UNICODE_DOCS)
    assert sorted(item.index for item in ranking) == list(range(len(UNICODE_DOCS)))
    scores = tiny_reranker.score(QUERY, UNICODE_DOCS)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    # The lone surrogate is scored as U+FFFD. transformers encodes an empty second text as no pair
    # at all, while the rule scores it as <s> query </s></s></s>: build that row by hand.
    clean = UNICODE_DOCS[:-1] + ["a\ufffdb lone surrogate"]
    expected = sigmoid(reference_pair_logits(hf_models["tiny"], QUERY, clean, 512))
    tokenizer, _ = load_reference(str(hf_models["tiny"]))
    empty_row = [0, *tokenizer(QUERY, add_special_tokens=False)["input_ids"], 2, 2, 2]
    expected[UNICODE_DOCS.index("")] = sigmoid(reference_logits_for_ids(hf_models["tiny"], [empty_row]))[0]
    np.testing.assert_allclose(scores, expected, atol=1e-4)






def test_constructor_arguments(converted) -> None:  # type: ignore[no-untyped-def]
    folder = converted("short")
    assert Reranker(folder).max_length == 64
    assert Reranker(folder, max_length=40).max_length == 40
    with pytest.raises(InvalidInputError, match=r"max_length must be in \[16, 64\], got 65"):
        Reranker(folder, max_length=65)
    with pytest.raises(InvalidInputError, match=r"'tpu' is not a valid device \(accepted: auto, cpu, cuda\)"):
        Reranker(folder, device="tpu")
    with pytest.raises(InvalidInputError, match="'int4' is not a valid compute_type"):
        Reranker(folder, compute_type="int4")
    # A valid compute type this device cannot run is refused up front, not reported as a broken model.
    with pytest.raises(InvalidInputError, match=r"compute_type='float16' is not supported on cpu by this "
                                                r"CTranslate2 build \(supported: float32, int8, int8_float32"):
        Reranker(folder, device="cpu", compute_type="float16")
    with pytest.raises(fastrerank.ModelNotFoundError, match="does not exist"):
        Reranker(folder.parent / "nope")
    with pytest.raises(InvalidTypeError, match="model must be a path or a hub id"):
        Reranker(12)  # type: ignore[arg-type]
    assert Reranker(folder, device="cpu").batch_tokens == 512  # the CPU default (benchmarks/RESULTS.md)
    assert fastrerank._reranker.default_batch_tokens("cuda") == 8192
    assert Reranker(folder, batch_tokens=100).batch_tokens == 100
    with pytest.raises(InvalidInputError, match=r"batch_tokens must be .*1.*got 0"):
        Reranker(folder, batch_tokens=0)


def test_replicas_default_to_one_per_thread_on_the_cpu(converted) -> None:  # type: ignore[no-untyped-def]
    from fastrerank._cpus import usable_cores

    folder = converted("tiny")
    cores = usable_cores()  # the affinity, bounded by a container's CPU quota (tests/test_cpus.py)
    with Reranker(folder, device="cpu", threads=2) as default, Reranker(folder, device="cpu", threads=2, replicas=1) as one:
        assert (default.replicas, default._runtime._encoder.num_encoders) == (min(2, cores),) * 2  # at most one a core
        assert (one.replicas, one._runtime._encoder.num_encoders, one.batch_tokens) == (1, 1, 1024)  # a 2-thread replica
        assert f"threads=2 replicas={min(2, cores)} " in repr(default)
    with Reranker(folder, device="cpu") as auto:
        assert auto.replicas == auto.threads == cores and auto.batch_tokens == 512
    with Reranker(folder, device="cpu", threads=2 * cores) as oversubscribed:
        assert oversubscribed.replicas == cores


@pytest.mark.parametrize(("replicas", "error", "message"), [
    (0, InvalidInputError, r"replicas must be >= 1, got 0"),
    (3, InvalidInputError, r"replicas must be at most threads \(2\), got 3: each replica needs a thread"),
    (True, InvalidTypeError, r"replicas must be an int, got bool True"),
    (1.0, InvalidTypeError, r"replicas must be an int, got float 1\.0"),
    ("2", InvalidTypeError, r"replicas must be an int, got str '2'"),
])
def test_bad_replicas_are_refused_before_loading(replicas: object, error: type[Exception], message: str, converted) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        Reranker(converted("tiny"), device="cpu", threads=2, replicas=replicas)  # type: ignore[arg-type]


def test_replicas_on_cuda_default_to_four_whatever_the_threads() -> None:
    # On CUDA each replica is a CUDA stream sharing the weights (tests/test_cuda.py runs them); its
    # thread waits for the GPU, so a 1-CPU worker still gets 4 streams.
    from fastrerank._reranker import _check_replicas, max_threads

    assert _check_replicas(None, "cuda", 8) == 4
    assert _check_replicas(None, "cuda", 1) == 4
    assert _check_replicas(3, "cuda", 1) == 3
    with pytest.raises(InvalidInputError, match=rf"replicas must be in \[1, {max_threads()}\], got {max_threads() + 1}"):
        _check_replicas(max_threads() + 1, "cuda", 1)


def test_replicas_running_batches_at_once_score_like_the_reference(converted, hf_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    # Two replicas, one row a batch: the batches run two at a time and come back in any order.
    docs = _docs(24, words=3)
    with Reranker(converted("tiny"), device="cpu", threads=2, replicas=2, batch_tokens=1) as reranker:
        scores = reranker.score(QUERY, docs)
    np.testing.assert_allclose(scores, sigmoid(reference_pair_logits(hf_models["tiny"], QUERY, docs, 512)), atol=1e-4)


def test_a_small_call_is_shared_by_the_replicas(converted, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # Eight short documents fit one batch of the default budget; with two replicas they go as two.
    import fastrerank._engine.runtime as runtime_module

    real = runtime_module._first_token_states
    batch_rows: list[int] = []

    def recording(encoder, rows, template=None):  # type: ignore[no-untyped-def]
        batch_rows.append(len(rows))
        return real(encoder, rows, template)

    monkeypatch.setattr(runtime_module, "_first_token_states", recording)
    docs = _docs(8)
    with Reranker(converted("tiny"), device="cpu", threads=2) as two, Reranker(converted("tiny"), device="cpu", threads=2, replicas=1) as one:
        np.testing.assert_allclose(two.score(QUERY, docs), one.score(QUERY, docs), atol=1e-5)
    *shared, alone = batch_rows
    assert len(shared) >= 2 and sum(shared) == 8 and alone == 8  # two batches or more, then one


@pytest.mark.skipif(ctranslate2.get_cuda_device_count() > 0, reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_refused_up_front(converted) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match=r"device='cuda' but CTranslate2 sees no CUDA device"):
        Reranker(converted("tiny"), device="cuda")


def test_missing_cublas_error_says_what_to_install(converted) -> None:  # type: ignore[no-untyped-def]
    # What CTranslate2 4.8 raises at the first CUDA batch on a machine without CUDA 12's cuBLAS
    # (seen on a CUDA 13 GPU machine); the model loads fine, so the hint must come with the failure.
    class NoCublasEncoder:
        def forward_batch(self, *args: object) -> None:
            raise RuntimeError("Library libcublas.so.12 is not found or cannot be loaded")

    reranker = Reranker(converted("tiny"))
    reranker._runtime._encoder = NoCublasEncoder()
    with pytest.raises(InferenceError, match=r"CTranslate2 failed on a batch of 1 rows: Library libcublas\.so\.12 "
                                             r"is not found or cannot be loaded; CTranslate2's CUDA build needs "
                                             r"CUDA 12's cuBLAS \(a CUDA 12 toolkit, or `pip install nvidia-cublas-cu12`"):
        reranker.rank("q", ["a doc"])


def test_batch_budget_does_not_change_scores(converted) -> None:  # type: ignore[no-untyped-def]
    # From one row per batch to every row in one batch: padding must not leak into the scores.
    folder = converted("short")
    docs = [" ".join(["panda"] * n) + " bamboo forest" for n in (1, 5, 17, 40, 3, 60)]
    scores = {budget: [r.score for r in sorted(Reranker(folder, batch_tokens=budget).rank("where do pandas live", docs).results,
                                                key=lambda r: r.index)]
              for budget in (1, 128, 100_000)}
    np.testing.assert_allclose(scores[1], scores[100_000], rtol=0, atol=1e-5)
    np.testing.assert_allclose(scores[128], scores[100_000], rtol=0, atol=1e-5)


def test_hugging_face_folder_is_converted_once_into_the_cache(hf_models: dict[str, Path]) -> None:
    first = Reranker(hf_models["tiny"], compute_type="float32")
    assert first.model_path.parent == Path(os.environ["FASTRERANK_CACHE"])
    mtime = (first.model_path / "fastrerank.json").stat().st_mtime_ns
    second = Reranker(hf_models["tiny"], compute_type="float32")
    assert second.model_path == first.model_path
    assert (second.model_path / "fastrerank.json").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(first.score(QUERY, _docs(3)), second.score(QUERY, _docs(3)))
    assert Reranker(hf_models["tiny"]).metadata.quantization == "int8"  # CPU default


def test_module_level_rank_shares_one_reranker(converted) -> None:  # type: ignore[no-untyped-def]
    folder = str(converted("tiny"))
    docs = _docs(5)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: fastrerank.rank(QUERY, docs, 2, model=folder), range(16)))
        assert all(result == results[0] for result in results)
        assert len(fastrerank._api._cache) == 1
        assert results[0] == Reranker(folder).rank(QUERY, docs, 2)
    finally:
        fastrerank.clear_cache()


def test_progress_callback(tiny_reranker: Reranker) -> None:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def record(done: int, total: int) -> None:
        with lock:
            seen.append((done, total))

    tiny_reranker.rank(QUERY, _docs(30), progress=record)
    assert seen[-1] == (30, 30) and all(total == 30 for _, total in seen)


def test_progress_is_reported_on_the_calling_thread_in_order(converted) -> None:  # type: ignore[no-untyped-def]
    # With replicas the batches end on other threads, in any order; the callback still runs here.
    seen: list[tuple[int, int, int]] = []
    with Reranker(converted("tiny"), device="cpu", threads=2, replicas=2, batch_tokens=1) as reranker:
        reranker.rank(QUERY, _docs(30), progress=lambda done, total: seen.append((done, total, threading.get_ident())))
    assert [(done, total) for done, total, _ in seen] == [(i, 30) for i in range(1, 31)]
    assert {ident for _, _, ident in seen} == {threading.get_ident()}


def test_very_long_document_is_cut_before_tokenizing(short_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    text = " ".join(_docs(200, seed=2, words=4))
    huge = (text + " ") * (2_000_000 // len(text))
    ranking = short_reranker.rank(QUERY, [huge, text], max_chunks_per_doc=3, raw=True)
    expected, tokens = reference_chunked(hf_models["short"], QUERY, [text, text], max_length=64, overlap=80, max_chunks=3)
    assert sorted(item.score for item in ranking) == pytest.approx(sorted(expected), abs=1e-4)
    assert ranking.tokens == tokens // 2  # both documents start with the same three windows, run once


def _same_ranking(got: list[dict[str, object]], expected: list[dict[str, object]]) -> bool:
    """Same documents in the same order, scores equal within 1e-6."""
    return [row["index"] for row in got] == [row["index"] for row in expected] and bool(
        np.allclose([row["score"] for row in got], [row["score"] for row in expected], atol=1e-6, rtol=0)
    )


def test_cli_rank(converted) -> None:  # type: ignore[no-untyped-def]
    import json

    folder = str(converted("tiny"))
    done = subprocess.run([sys.executable, "-m", "fastrerank", "rank", "--model", folder, "--top-n", "2", QUERY, "apple pie", "car", "fruit salad"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    expected = Reranker(folder).rank(QUERY, ["apple pie", "car", "fruit salad"], 2)
    # The command tunes its own process (fastrerank.tune_process), which may change CTranslate2's
    # kernels from those this process selected: equal up to float32 rounding.
    assert _same_ranking(output["results"], expected.to_dicts())
    assert (output["tokens"], output["query_truncated"]) == (expected.tokens, False)
    piped = subprocess.run([sys.executable, "-m", "fastrerank", "rank", "--model", folder, QUERY],
                           input="apple pie\ncar\nfruit salad\n", capture_output=True, text=True)
    all_three = Reranker(folder).rank(QUERY, ["apple pie", "car", "fruit salad"]).to_dicts()
    assert _same_ranking(json.loads(piped.stdout)["results"], all_three)
    bad = subprocess.run([sys.executable, "-m", "fastrerank", "rank", "--model", folder, "--top-n", "0", QUERY, "a"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "top_n must be >= 1, got 0" in bad.stderr and "Traceback" not in bad.stderr
