"""Write a Ray dataset as Parquet so that a re-run replaces the previous results instead of adding to them.

Ray's ``Dataset.write_parquet`` adds files with new names to a folder: running a job twice into
``ranked/`` leaves two full sets of results there, which every reader then counts twice.
:func:`write_parquet_replacing` writes into ``<output>.tmp-<pid>-<id>`` beside the output, records
the files it wrote in ``_fastrerank_output.json`` (Ray's and pyarrow's readers skip ``_`` files),
and then swaps the folder into place. It replaces only a folder it wrote itself and that holds
nothing else, or an empty folder: never a folder the user made or added files to.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, InvalidTypeError

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["OUTPUT_MARKER", "write_parquet_replacing"]

OUTPUT_MARKER = "_fastrerank_output.json"
_WRITER = "fastrerank.integrations.ray.write_parquet_replacing"


def write_parquet_replacing(ds: Dataset, output: str | os.PathLike[str]) -> Path:
    """Run ``ds`` and write it as Parquet files into the folder ``output``, replacing a previous run's.

    ``output`` may be absent, an empty folder, or a previous output of this function (the files
    it lists in ``_fastrerank_output.json`` and nothing else); anything else is refused before
    the job runs, and again before the swap. The new results appear whole: they are written
    beside the output and renamed into place, and the previous ones are deleted only then. A
    job that fails leaves the previous output as it was. If the process is killed during the
    final swap (two renames), the new results are in ``<output>.tmp-*`` and the previous ones in
    ``<output>.old-*``; they are never deleted by a later run, so remove them yourself.

    ``output`` is a local folder, or on a cluster a folder that every node mounts at the same
    path: renaming is not available on object stores (``s3://``, ``gs://``); there, write each
    run to a new prefix with ``Dataset.write_parquet``. Run one job per output at a time.

    Returns:
        The absolute path of ``output``.

    Raises:
        InvalidInputError: naming ``output`` when it is a URI, a file, a symbolic link, a folder
            this function did not write, or one holding files it did not write.

    Example:
        >>> write_parquet_replacing(top_n_per_query(scored, 10), "ranked")  # doctest: +SKIP
        PosixPath('/jobs/ranked')
    """
    path = _check_output(output)
    temporary = path.parent / f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        ds.write_parquet(str(temporary))
        temporary.mkdir(parents=True, exist_ok=True)  # an empty dataset writes no file, and maybe no folder
        files = sorted(entry.name for entry in temporary.iterdir())
        (temporary / OUTPUT_MARKER).write_text(json.dumps({"written_by": _WRITER, "files": files}, indent=1),
                                               encoding="utf-8")
        _check_output(output)  # the folder may have changed while the job ran
        _swap_into_place(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)  # ours alone; after the swap it no longer exists
        raise
    return path


def _swap_into_place(temporary: Path, path: Path) -> None:
    if not os.path.lexists(path):
        os.rename(temporary, path)
        return
    previous = path.parent / f"{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    os.rename(path, previous)
    try:
        os.rename(temporary, path)
    except BaseException:
        os.rename(previous, path)  # put the previous results back
        raise
    shutil.rmtree(previous)  # checked by _check_output: a previous output of ours, or an empty folder


def _check_output(output: object) -> Path:
    """``output`` as an absolute path, if it is absent, empty, or a previous output of ours alone."""
    if not isinstance(output, (str, os.PathLike)):
        raise InvalidTypeError(f"output must be a folder path (str or os.PathLike), got {type(output).__name__}")
    text = os.fspath(output)
    if not isinstance(text, str):
        raise InvalidTypeError(f"output must be a folder path as str, got {type(text).__name__}")
    if "://" in text:
        raise InvalidInputError(f"output {text!r} is a URI: write_parquet_replacing renames folders, which object "
                                "stores cannot do; write each run to a new prefix with Dataset.write_parquet instead")
    path = Path(os.path.abspath(text))
    if path.parent == path:
        raise InvalidInputError(f"output {text!r} is a file-system root; pass a folder inside it")
    if not os.path.lexists(path):
        return path
    refuse = (f"output {text!r} exists and is {{}}: write_parquet_replacing only replaces a folder it wrote "
              "itself; choose another output or remove it yourself (nothing was changed)")
    if path.is_symlink():
        raise InvalidInputError(refuse.format("a symbolic link"))
    if not path.is_dir():
        raise InvalidInputError(refuse.format("a file"))
    entries = {entry.name for entry in path.iterdir()}
    if not entries:
        return path
    if OUTPUT_MARKER not in entries:
        raise InvalidInputError(refuse.format(f"not a previous output (it has no {OUTPUT_MARKER})"))
    try:
        record = json.loads((path / OUTPUT_MARKER).read_text(encoding="utf-8"))
        files = record["files"]
        if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
            raise TypeError("'files' is not a list of file names")
        written = set(files) if record.get("written_by") == _WRITER else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise InvalidInputError(refuse.format(f"not a previous output (its {OUTPUT_MARKER} is unreadable: {err})")) from err
    if written is None:
        raise InvalidInputError(refuse.format(f"not a previous output (its {OUTPUT_MARKER} names another writer)"))
    foreign = sorted(entries - written - {OUTPUT_MARKER})
    if foreign:
        shown = ", ".join(map(repr, foreign[:5])) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InvalidInputError(refuse.format(f"a previous output holding files it did not write ({shown})"))
    return path
