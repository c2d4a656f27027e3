"""The transformers reference and an independent statement of the window rule, for the tests.

Nothing here imports fastrerank's engine: the window rule is written again from the issue's text
so that a bug in the engine cannot hide behind the same bug in the test.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=8)
def load_reference(folder: str, plain_text: bool = False):  # type: ignore[no-untyped-def]
    """(tokenizer, model) from transformers, in eval mode, float32.

    ``plain_text=True``: a tokenizer that reads special-token strings in text as plain text
    (see :func:`plain_text_tokenizer_folder`), loaded with ``split_special_tokens=True``.
    """
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if plain_text:
        tokenizer = AutoTokenizer.from_pretrained(str(plain_text_tokenizer_folder(Path(folder))), split_special_tokens=True)
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    return tokenizer, model


_SPECIAL_FIELDS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def plain_text_tokenizer_folder(folder: Path) -> Path:
    """A copy of ``folder``'s tokenizer files in which no text can become a special token.

    ``split_special_tokens=True`` alone is not enough for XLM-R: its Unigram vocabulary holds
    ``<s>``, ``<pad>``, ``</s>``, ``<unk>`` (and in the real models ``<mask>``) as pieces of score
    0.0, so the text ``<pad>`` still becomes the pad id. Here those pieces are renamed to start with
    "▁▁" (a Metaspace word never holds "▁" past its first character), with their ids, and every file
    that names a special token is renamed alike, so transformers finds the same ids.
    """
    out = folder.parent / f"{folder.name}-plain-text-tokenizer"
    if out.exists():
        return out
    work = folder.parent / f"{folder.name}-plain-text-tokenizer.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    specials = set(json.loads((folder / "special_tokens_map.json").read_text()).values())

    def renamed(token: str) -> str:
        return "\u2581\u2581" + token if token in specials else token

    state = json.loads((folder / "tokenizer.json").read_text())
    in_vocab = {piece[0] for piece in state["model"]["vocab"]} & specials
    state["model"]["vocab"] = [[renamed(piece), score] for piece, score in state["model"]["vocab"]]
    for token in state["added_tokens"]:
        token["content"] = renamed(token["content"]) if token["content"] in in_vocab else token["content"]
    (work / "tokenizer.json").write_text(json.dumps(state))
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config = json.loads((folder / name).read_text())
        config.update({field: renamed(config[field]) if config[field] in in_vocab else config[field]
                       for field in _SPECIAL_FIELDS if field in config})
        (work / name).write_text(json.dumps(config))
    work.rename(out)
    return out


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


def reference_pair_logits(folder: Path, query: str, docs: list[str], max_length: int, *,
                          plain_text: bool = False) -> np.ndarray:
    """Logits of ``tokenizer(query, doc, truncation="only_second", max_length=...)`` pairs."""
    tokenizer, _ = load_reference(str(folder), plain_text)
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


def reference_chunked(folder: Path, query: str, docs: list[str], *, max_length: int, overlap: int, max_chunks: int,
                      plain_text: bool = False) -> tuple[np.ndarray, int]:
    """(max logit per document, tokens run) by the rule above, tokenized by transformers."""
    tokenizer, _ = load_reference(str(folder), plain_text)
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
