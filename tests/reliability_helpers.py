"""Shared by the reliability tests: fresh interpreters with a timeout, and damaged model variants."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")


def run_python(code: str, *args: object, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter importing this checkout; a hang raises ``TimeoutExpired``.

    A crash (SIGFPE, SIGSEGV) shows as a negative return code instead of taking pytest down.
    """
    environment = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=environment, check=False,
    )


def describe(done: subprocess.CompletedProcess[str]) -> str:
    """Exit status and output of a child, for assertion messages."""
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"


def json_line(done: subprocess.CompletedProcess[str]) -> dict:  # type: ignore[type-arg]
    """The last stdout line of a child that exited 0, parsed as JSON."""
    assert done.returncode == 0, describe(done)
    return json.loads(done.stdout.strip().splitlines()[-1])


MEMORY_CHILD = """
import gc, json, sys, time
from fastrerank import Reranker

def status(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # MiB

def measure(call):
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak RSS (VmHWM, what ru_maxrss reports) to the current RSS
    base = status("VmRSS")
    cpu = time.process_time()
    result = call()
    return result, status("VmHWM") - base, status("VmHWM"), time.process_time() - cpu
"""


def memory_child(body: str, *args: object, timeout: float = 240) -> dict:  # type: ignore[type-arg]
    """Run ``body`` after :data:`MEMORY_CHILD` (``measure(call)`` -> result, peak RSS growth in
    MiB, peak RSS, CPU seconds) in a fresh interpreter; its last stdout line, as JSON."""
    # Measured under glibc's default malloc, which a Reranker leaves alone: the caching switches of
    # fastrerank.tune_process keep freed memory and grow the heap in large steps, which would add a
    # constant offset of up to ~16 MiB to one call's peak that has nothing to do with the document.
    # The memory tests measure what fastrerank's own code allocates.
    return json_line(run_python(MEMORY_CHILD + body, *args, timeout=timeout))


def refresh_sizes(folder: Path) -> None:
    """Record the current file sizes in ``fastrerank.json`` after a test edited a file on purpose."""
    marker = folder / "fastrerank.json"
    metadata = json.loads(marker.read_text())
    metadata["files"] = {name: (folder / name).stat().st_size for name in metadata["files"]}
    marker.write_text(json.dumps(metadata))


def control_stripping_copy(converted: Path, dest: Path) -> Path:
    """A copy of a converted model whose tokenizer deletes control characters and U+200B (as
    XLM-R's own normalizer does), so that a query like ``"\\x00\\x07"`` produces 0 tokens."""
    from tokenizers import Regex, Tokenizer, normalizers

    shutil.copytree(converted, dest)
    tokenizer = Tokenizer.from_file(str(dest / "tokenizer.json"))
    steps = [normalizers.Replace(Regex("[\\x00-\\x1f\\u200b]"), "")]
    if tokenizer.normalizer is not None:
        steps.append(tokenizer.normalizer)
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.save(str(dest / "tokenizer.json"))
    refresh_sizes(dest)
    return dest


def nan_head_copy(converted: Path, dest: Path) -> Path:
    """A copy of a converted model whose head outputs NaN (as an fp16 overflow would)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    shutil.copytree(converted, dest)
    head = load_file(str(dest / "head.safetensors"))
    head["classifier.out_proj.bias"] = np.array([np.nan], dtype=np.float32)
    save_file(head, str(dest / "head.safetensors"))
    refresh_sizes(dest)
    return dest
