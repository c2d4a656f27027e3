"""Packaging facts kept in one place: the version, the extras CI installs, the console script."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

import fastrerank

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_version_lives_in_fastrerank_version_only() -> None:
    assert "version" not in PYPROJECT["project"] and PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastrerank.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*", fastrerank.__version__)
    assert importlib.metadata.version("fastrerank") == fastrerank.__version__


def test_ruff_and_mypy_are_in_the_dev_extra_which_ci_installs() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    names = {extra: {re.split(r"[<>=\[ ;]", requirement)[0] for requirement in requirements}
             for extra, requirements in extras.items()}
    assert {"ruff", "mypy"} <= names["dev"] and not {"ruff", "mypy"} & names["test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -q -e '.[test,dev]'" in ci and "-m ruff check" in ci and "-m mypy" in ci


def test_the_console_script_is_the_private_cli() -> None:
    assert PYPROJECT["project"]["scripts"] == {"fastrerank": "fastrerank._cli:main"}


# Benchmark results quoted in code drift from the measurements (the same allocator gain was once
# quoted five ways); they belong in benchmarks/RESULTS.md and the docs, which the code points to.
MEASURED = re.compile(r"\b\d+(\.\d+)?x (faster|slower)\b|\b\d+(\.\d+)?x\b(?! ?[\w{(])|\b\d+(\.\d+)? ?(ms|GB/s|MB/s|req/s)\b"
                      r"|\b\d+(\.\d+)? s vs\b|\b\d+(\.\d+)? ?s\b(?= (on|per|for) )|\b\d+(\.\d+)?% (faster|slower|on)\b")


def test_no_measured_figures_in_the_source() -> None:
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted((ROOT / "src" / "fastrerank").rglob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if MEASURED.search(line)]
    assert found == []
