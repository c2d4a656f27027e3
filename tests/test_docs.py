"""Every code block of the documentation marked runnable runs, in a fresh interpreter, as written.

A block is marked by an HTML comment on the line before its fence (docs/development.md says how
to write one)::

    <!-- runnable -->            run in a folder holding what the quick start writes
    <!-- runnable: fresh -->     run in an empty folder (the quick start itself)

and may be followed by ``<!-- output -->`` and a fenced block: what the block prints, compared as
doctest compares (``...`` matches anything, whitespace runs are equal). The folder a block runs in
holds ``tiny-reranker/`` and ``tiny-reranker-int8/``, made by the quick start's own calls, so the
examples use the model a reader has after the quick start. Nothing can reach the network:
``HF_HUB_OFFLINE=1`` and the conversion cache is the suite's temporary one.
"""

from __future__ import annotations

import doctest
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
MARKER = re.compile(r"^<!-- runnable(?::\s*(?P<mode>[\w-]+))? -->$")
OUTPUT_MARKER = "<!-- output -->"
FENCE = re.compile(r"^(?P<fence>```+|~~~+)(?P<info>.*)$")
MODES = {None, "fresh"}
TIMEOUT_S = 240


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # 1-based line of the marker
    mode: str | None
    code: str
    output: str | None

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def _fenced(lines: list[str], start: int, where: str, what: str) -> tuple[str, str, int]:
    """The info string and body of the fenced block whose opening fence is ``lines[start]``, and the line after it."""
    opening = FENCE.match(lines[start].strip()) if start < len(lines) else None
    if opening is None:
        raise ValueError(f"{where}:{start}: {what} must be followed by a fenced code block")
    fence = opening.group("fence")
    for end in range(start + 1, len(lines)):
        if lines[end].strip() == fence:
            return opening.group("info").strip(), "".join(line + "\n" for line in lines[start + 1:end]), end + 1
    raise ValueError(f"{where}:{start + 1}: the fenced block is never closed")


def _next_line(lines: list[str], index: int) -> int:
    while index < len(lines) and not lines[index].strip():
        index += 1
    return index


def collect(page: Path, root: Path = ROOT) -> list[Block]:
    """The runnable blocks of one page; a malformed marker is an error, never a block silently skipped."""
    where = page.relative_to(root).as_posix()
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    for index, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if marker is None:
            if line.strip().startswith("<!-- runnable"):
                raise ValueError(f"{where}:{index + 1}: malformed marker {line.strip()!r}")
            continue
        mode = marker.group("mode")
        if mode not in MODES:
            raise ValueError(f"{where}:{index + 1}: unknown mode {mode!r} (accepted: fresh)")
        info, code, after = _fenced(lines, index + 1, where, "a runnable marker")
        if info.split()[0:1] != ["python"]:
            raise ValueError(f"{where}:{index + 1}: a runnable block must be ```python, got {info!r}")
        output = None
        following = _next_line(lines, after)
        if following < len(lines) and lines[following].strip() == OUTPUT_MARKER:
            _, output, _ = _fenced(lines, following + 1, where, "an output marker")
        blocks.append(Block(where, index + 1, mode, code, output))
    return blocks


BLOCKS = [block for page in PAGES for block in collect(page)]


@pytest.fixture(scope="session")
def quick_start_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the quick start writes, made by the same calls: a Hugging Face folder and its int8 conversion."""
    from fastrerank import convert
    from fastrerank.testing import ModelShape, make_reranker_folder

    folder = tmp_path_factory.mktemp("quick-start")
    source = make_reranker_folder(folder / "tiny-reranker", ModelShape.tiny())
    convert(source, folder / "tiny-reranker-int8", quantization="int8")
    return folder


def run_block(block: Block, folder: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    if block.mode != "fresh":
        for name in ("tiny-reranker", "tiny-reranker-int8"):
            shutil.copytree(folder / name, workdir / name)
    script = workdir / "block.py"
    script.write_text(block.code, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, script.name], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)


def check_output(expected: str, got: str) -> bool:
    return doctest.OutputChecker().check_output(expected, got, doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)


def test_the_docs_have_runnable_blocks() -> None:
    pages = {block.page for block in BLOCKS}
    assert "README.md" in pages and len(BLOCKS) >= 10, sorted(pages)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_runnable_block(block: Block, quick_start_folder: Path, tmp_path: Path) -> None:
    done = run_block(block, quick_start_folder, tmp_path)
    assert done.returncode == 0, f"{block.name} exited {done.returncode}\n{done.stderr}"
    if block.output is not None:
        assert check_output(block.output, done.stdout), (
            f"{block.name} printed\n{done.stdout}\nexpected\n{block.output}"
        )


# ---- the checker itself -------------------------------------------------------------------------


def test_a_broken_block_fails(quick_start_folder: Path, tmp_path: Path) -> None:
    broken = Block("README.md", 1, None, "from fastrerank import Reranker\nReranker('tiny-reranker-int8').rank(None, [])\n", None)
    done = run_block(broken, quick_start_folder, tmp_path)
    assert done.returncode == 1 and "InvalidTypeError" in done.stderr


def test_markers_are_parsed(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n<!-- runnable -->\n```python\nprint(1)\n```\n\n<!-- output -->\n```text\n1\n```\n"
        "<!-- runnable: fresh -->\n```python\nprint(2)\n```\n```python\nnot marked\n```\n",
        encoding="utf-8",
    )
    blocks = collect(page, tmp_path)
    assert [(b.name, b.mode, b.code, b.output) for b in blocks] == [("page.md:2", None, "print(1)\n", "1\n"),
                                                                    ("page.md:11", "fresh", "print(2)\n", None)]
    for bad in ("<!-- runnable -->\n```bash\nls\n```\n", "<!-- runnable: later -->\n```python\n1\n```\n",
                "<!-- runnable -->\ntext\n", "<!-- runnable-->\n```python\n1\n```\n"):
        page.write_text(bad, encoding="utf-8")
        with pytest.raises(ValueError):
            collect(page, tmp_path)
    assert check_output("2 0.98...\ntokens run: 29\n", "2 0.9879\ntokens run: 29\n")
    assert not check_output("2 0.98...\n", "1 0.98\n")
