"""The README's quick start is a runnable block with its output, and the CI script runs the README's test command.

``tests/test_docs.py`` runs every runnable block of the README and of ``docs/``, the quick start
included, and compares what it prints with the output shown under it; here the quick start is
checked to be such a block, showing what it prints.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_docs import collect

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_quick_start_is_run_with_its_output() -> None:
    section_start = README.index("## Quick start (no download)")
    section_line = README[:section_start].count("\n") + 1
    next_section = README.index("\n## ", section_start + 1)
    section_end = README[:next_section].count("\n") + 1
    blocks = [block for block in collect(ROOT / "README.md") if section_line < block.line < section_end]
    assert len(blocks) == 1, "the quick start must be one block marked <!-- runnable: fresh -->"
    quick_start = blocks[0]
    assert quick_start.mode == "fresh"  # it writes the folders the other examples use
    assert "make_reranker_folder" in quick_start.code and "fastrerank.convert" in quick_start.code
    assert quick_start.output is not None
    lines = quick_start.output.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("tokens run: ")
    assert {line.split()[0] for line in lines[:2]} <= {"0", "1", "2"}


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"from a bare Python.*?```bash\n(.*?)\n```", README, re.S)
    assert command is not None
    assert command.group(1) in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def test_readme_is_a_front_door() -> None:
    assert README.count("\n") <= 300, "the README links to docs/ for the details"


def test_readme_links_exist() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [target for target in targets if not re.match(r"^[a-z]+:", target)]
    assert local and [target for target in local if not (ROOT / target).exists()] == []
