"""The five benchmark workloads, generated from a seed with the fixture tokenizer.

Every document is cut at a token boundary of the fixture tokenizer, so the token counts below
are exact (special tokens excluded); a pair ``<s> q </s></s> d </s>`` adds 4 tokens.

- W1 throughput: one query x 64 documents of 64-448 tokens (uniform).
- W2 full windows: one query x 16 documents that fill the 512-token window exactly.
- W3 latency: one query x 8 documents of ~100 tokens (90-110).
- W4 long documents: one query x 8 documents of 3,000 tokens (the reranker chunks them).
- W5 mid-size request: W1's query and its first 24 documents (7,120 tokens; issue 17's shape).

Usage: ``python benchmarks/workloads.py TOKENIZER_JSON OUT_JSON [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from tokenizers import Tokenizer

WINDOW = 512  # usable positions of XLM-R (max_position_embeddings 514 minus 2)
PAIR_SPECIALS = 4  # <s> q </s></s> d </s>
SPEC = {
    "W1": {"docs": 64, "min_tokens": 64, "max_tokens": 448, "about": "1 query x 64 documents of 64-448 tokens"},
    "W2": {"docs": 16, "min_tokens": None, "max_tokens": None, "about": "1 query x 16 documents filling 512 tokens"},
    "W3": {"docs": 8, "min_tokens": 90, "max_tokens": 110, "about": "latency: 1 query x 8 documents of ~100 tokens"},
    "W4": {"docs": 8, "min_tokens": 3000, "max_tokens": 3000, "about": "long documents: 1 query x 8 documents of 3,000 tokens"},
}


def _words(rng: random.Random) -> list[str]:
    # Imported here so that the module needs fastrerank only when generating.
    from fastrerank.testing import make_corpus

    sentences = make_corpus(num_sentences=6000, seed=rng.randint(0, 2**31))
    rng.shuffle(sentences)
    return sentences


def _text_of(tokenizer: Tokenizer, sentences: list[str], rng: random.Random, tokens: int) -> str:
    """A text of exactly ``tokens`` tokens (no special tokens), cut at a token boundary.

    Re-encoding a cut text may segment its last word differently, so cuts near the target are
    tried until one gives exactly ``tokens``; a fresh text is drawn when none does.
    """
    for _attempt in range(100):
        parts: list[str] = []
        while True:
            parts.append(rng.choice(sentences))
            text = " ".join(parts)
            encoding = tokenizer.encode(text, add_special_tokens=False)
            if len(encoding.ids) >= tokens + 16:
                break
        for cut in sorted(range(max(1, tokens - 8), tokens + 16), key=lambda c: abs(c - tokens)):
            candidate = text[: encoding.offsets[cut - 1][1]]
            if len(tokenizer.encode(candidate, add_special_tokens=False).ids) == tokens:
                return candidate
    raise RuntimeError(f"could not cut a text to {tokens} tokens")


def make_workloads(tokenizer: Tokenizer, seed: int = 0) -> dict[str, dict[str, object]]:
    rng = random.Random(seed)
    sentences = _words(rng)
    workloads: dict[str, dict[str, object]] = {}
    for name, spec in SPEC.items():
        query_tokens = rng.randint(8, 24)
        query = _text_of(tokenizer, sentences, rng, query_tokens)
        docs = []
        for _ in range(int(spec["docs"])):
            if spec["min_tokens"] is None:  # fill the window: q + d + 4 == 512
                n = WINDOW - query_tokens - PAIR_SPECIALS
            else:
                n = rng.randint(int(spec["min_tokens"]), int(spec["max_tokens"]))
            docs.append(_text_of(tokenizer, sentences, rng, n))
        doc_tokens = [len(tokenizer.encode(d, add_special_tokens=False).ids) for d in docs]
        workloads[name] = {
            "about": spec["about"],
            "query": query,
            "query_tokens": query_tokens,
            "docs": docs,
            "doc_tokens": doc_tokens,
        }
    # Derived after the others, so that W1-W4 stay what the seed made them before W5 existed.
    w1 = workloads["W1"]
    workloads["W5"] = {**w1, "about": "1 query x 24 documents of 64-448 tokens (W1's first 24)",
                       "docs": w1["docs"][:24], "doc_tokens": w1["doc_tokens"][:24]}  # type: ignore[index]
    return workloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizer")
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    workloads = make_workloads(Tokenizer.from_file(args.tokenizer), args.seed)
    Path(args.out).write_text(json.dumps({"seed": args.seed, "workloads": workloads}, ensure_ascii=False))
    for name, w in workloads.items():
        print(name, w["about"], "query", w["query_tokens"], "doc tokens", min(w["doc_tokens"]), "-", max(w["doc_tokens"]))


if __name__ == "__main__":
    main()
