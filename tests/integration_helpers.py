"""What the framework integration tests share: texts, the reference ranking, the missing-framework check."""

from __future__ import annotations

import subprocess
import sys

from fastrerank import Reranker
from fastrerank.testing import make_corpus

QUERY = "apple fruit health"
TEXTS = [" ".join(make_corpus(36, seed=21)[i : i + 3]) for i in range(0, 36, 3)]  # 12 documents


def expected_ranking(reranker: Reranker, texts: list[str], top_n: int | None) -> list[tuple[str, float]]:
    """(text, score) best first, from :meth:`Reranker.rank` on the same texts."""
    return [(texts[item.index], item.score) for item in reranker.rank(QUERY, texts, top_n)]


def assert_missing_framework_is_named(*, framework: str, module: str, extra: str) -> None:
    """Importing the integration without its framework raises MissingDependencyError naming the extra.

    In a fresh interpreter, where ``framework`` is made unimportable as if it were not installed.
    """
    code = (f"import sys; sys.modules[{framework!r}] = None\n"
            "import fastrerank\n"
            f"try:\n    import {module}\n"
            "except fastrerank.MissingDependencyError as err:\n"
            "    print(type(err.__cause__).__name__, err)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ModuleNotFoundError this integration needs ")
    assert done.stdout.rstrip().endswith(f"which is not installed: pip install 'fastrerank[{extra}]'")
