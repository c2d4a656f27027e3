"""The transformers reference and an independent statement of the window rule, for the tests.

Nothing here imports fastrerank's engine: the window rule is written again from the issue's text
so that a bug in the engine cannot hide behind the same bug in the test.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=8)
def load_reference(folder: str):  # type: ignore[no-untyped-def]
    """(tokenizer, model) from transformers, in eval mode, float32."""
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    return tokenizer, model


def _padded(rows: list[list[int]]):  # type: ignore[no-untyped-def]
    """Right-padded ids (pad id 1) and the attention mask, as transformers expects them."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), 1, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def reference_logits_for_ids(folder: Path, rows: list[list[int]]) -> np.ndarray:
    """Logits of the reference model for rows of ids (special tokens included)."""
    import torch

    _, model = load_reference(str(folder))
    ids, mask = _padded(rows)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits[:, 0].double().numpy()


def reference_first_token_states(folder: Path, rows: list[list[int]]) -> np.ndarray:
    """Last hidden state of the first token, from the reference model."""
    import torch

    _, model = load_reference(str(folder))
    ids, mask = _padded(rows)
    with torch.no_grad():
        return model.roberta(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0].numpy()


def reference_pair_logits(folder: Path, query: str, docs: list[str], max_length: int) -> np.ndarray:
    """Logits of ``tokenizer(query, doc, truncation="only_second", max_length=...)`` pairs."""
    tokenizer, _ = load_reference(str(folder))
    rows = [tokenizer(query, doc, truncation="only_second", max_length=max_length)["input_ids"] for doc in docs]
    return reference_logits_for_ids(folder, rows)


def windows_by_rule(doc_len: int, query_len: int, max_length: int, overlap: int, max_chunks: int) -> list[tuple[int, int]]:
    """The issue's rule, restated: W = L - q - 4, o = min(overlap, W // 4), s = W - o."""
    window = max_length - query_len - 4
    o = min(overlap, window // 4)
    step = window - o
    spans = []
    k = 0
    while k < max_chunks:
        start = k * step
        spans.append((start, min(start + window, doc_len)))
        if start + window >= doc_len:
            break
        k += 1
    return spans


def reference_chunked(folder: Path, query: str, docs: list[str], *, max_length: int, overlap: int, max_chunks: int) -> tuple[np.ndarray, int]:
    """(max logit per document, tokens run) by the rule above, tokenized by transformers."""
    tokenizer, _ = load_reference(str(folder))
    q = tokenizer(query, add_special_tokens=False)["input_ids"][: max_length * 3 // 4]
    best, tokens = [], 0
    for doc in docs:
        d = tokenizer(doc, add_special_tokens=False)["input_ids"]
        rows = [[0, *q, 2, 2, *d[s:e], 2] for s, e in windows_by_rule(len(d), len(q), max_length, overlap, max_chunks)]
        tokens += sum(len(row) for row in rows)
        best.append(reference_logits_for_ids(folder, rows).max())
    return np.array(best), tokens


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))
