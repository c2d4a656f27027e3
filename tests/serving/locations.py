"""Where the serving tests' files are, and the environment of a child Python that uses them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DATA = HERE / "data"
SRC = HERE.parents[1] / "src"


def load_data(name: str) -> Any:
    """A JSON file under tests/serving/data."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python that imports fastrerank and these test helpers."""
    paths = [str(SRC), str(HERE), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
