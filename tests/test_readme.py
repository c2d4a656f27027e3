"""The README's quick start runs as written, and the CI script runs the README's test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_quick_start_runs(tmp_path: Path) -> None:
    section = README.split("## Quick start (no download)", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    done = subprocess.run([sys.executable, "-c", code.group(1)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("tokens run: ")
    assert {line.split()[0] for line in lines[:2]} <= {"0", "1", "2"}


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"from a bare Python.*?```bash\n(.*?)\n```", README, re.S)
    assert command is not None
    assert command.group(1) in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
