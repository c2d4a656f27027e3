"""Convert a reranker checkpoint into a fastrerank folder, atomically.

Everything is written into ``<output>.tmp-<pid>-<random>`` beside the output, flushed to disk,
with ``fastrerank.json`` last, and then renamed into place: an interrupted conversion (Ctrl-C,
SIGKILL, a full disk) never leaves a folder that loads. Temporary folders left by dead processes
are removed by the next conversion into the same output (see output.py).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import _model_format as model_format
from .._ctranslate2 import import_ctranslate2
from ..errors import (
    ConversionError,
    CorruptModelError,
    FastRerankError,
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
    describe_value,
)
from .checkpoint import Checkpoint, open_checkpoint
from .families import family_of
from .output import check_output, in_flight, output_lock, remove_stale_temporaries

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["QUANTIZATIONS", "convert_folder"]

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
_PROGRESS_MIN_BYTES = 64 << 20


def convert_folder(
    source: Path,
    output_dir: Path,
    *,
    quantization: str = "int8",
    force: bool = False,
    allow_pickle: bool = False,
    source_model: str | None = None,
    source_revision: str | None = None,
    progress: bool | None = None,
) -> Path:
    """Convert the Hugging Face folder ``source`` into ``output_dir``; see :func:`fastrerank.convert`."""
    if not isinstance(quantization, str):
        raise InvalidTypeError(f"quantization must be str, got {type(quantization).__name__}")
    if quantization not in QUANTIZATIONS:
        raise InvalidInputError(
            f"{describe_value(quantization)} is not a valid quantization (accepted: {', '.join(QUANTIZATIONS)})"
        )
    if "bfloat16" in quantization:
        try:
            import torch  # noqa: F401  CTranslate2 quantizes to bfloat16 with torch
        except ImportError as err:
            raise MissingDependencyError(f"quantization={quantization!r} needs torch: pip install 'fastrerank[pickle]'") from err
    output_dir = Path(os.path.abspath(output_dir))
    source = Path(source)
    with output_lock(output_dir):
        # Checked before anything is read, and again at the rename: force replaces only a converted folder.
        check_output(output_dir, force=force, source=source)
        checkpoint = open_checkpoint(source, allow_pickle=allow_pickle)
        try:
            output_dir.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConversionError(f"cannot create {str(output_dir.parent)!r}: {err.strerror}") from err
        remove_stale_temporaries(output_dir, keep=source)
        temporary = output_dir.with_name(f"{output_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        with in_flight(temporary):
            try:
                temporary.mkdir()
                _write_model(checkpoint, temporary, quantization, source_model or str(source), source_revision, progress)
                _publish(temporary, output_dir, force, source)
            except FastRerankError:
                shutil.rmtree(temporary, ignore_errors=True)
                raise
            except OSError as err:
                shutil.rmtree(temporary, ignore_errors=True)
                raise ConversionError(f"writing {str(output_dir)!r} failed: {err.strerror or err}") from err
            except Exception as err:  # writers outside Python's io (safetensors, tokenizers) raise their own types on ENOSPC/EFBIG
                shutil.rmtree(temporary, ignore_errors=True)
                raise ConversionError(f"writing {str(output_dir)!r} failed: {err}") from err
            except BaseException:  # KeyboardInterrupt and the like: leave nothing half-written behind
                shutil.rmtree(temporary, ignore_errors=True)
                raise
    logger.info("converted %s to %s (%s)", source, output_dir, quantization)
    return output_dir


def _load_tokenizer(tokenizer_file: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(tokenizer_file))
    except Exception as err:  # tokenizers raises a plain Exception for malformed files
        raise CorruptModelError(f"tokenizer.json cannot be loaded: {err}") from err


def _vocabulary(tokenizer: Tokenizer, rows: int) -> list[str]:
    by_id = {index: token for token, index in tokenizer.get_vocab(with_added_tokens=True).items()}
    size = max(by_id, default=-1) + 1
    if size > rows:
        raise CorruptModelError(
            f"the tokenizer has {size} tokens but the model only {rows} embedding rows; ids past the table "
            "would read out of bounds"
        )
    # Rows with no token (the models reserve a few) get a placeholder name: ids are what run.
    return [by_id.get(index, f"<unused_{index}>") for index in range(rows)]


def _read_tensors(checkpoint: Checkpoint, progress: bool | None) -> dict[str, np.ndarray]:
    total = checkpoint.total_bytes()
    show = progress if progress is not None else (total >= _PROGRESS_MIN_BYTES and sys.stderr.isatty())
    tensors: dict[str, np.ndarray] = {}
    bar = None
    if show:
        from huggingface_hub.utils import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc="reading weights")
    try:
        for name, array in checkpoint.tensors():
            tensors[name] = array
            if bar is not None:
                bar.update(min(array.nbytes, total - bar.n))
    finally:
        if bar is not None:
            bar.close()
    return tensors


def _write_model(
    checkpoint: Checkpoint,
    folder: Path,
    quantization: str,
    source_model: str,
    source_revision: str | None,
    progress: bool | None,
) -> None:
    ctranslate2 = import_ctranslate2()

    config = checkpoint.config
    family = family_of(config)
    tokenizer = _load_tokenizer(checkpoint.tokenizer_file)
    facts = family.pair_facts(config, tokenizer)  # before the weights: a refusal costs no reading
    raw = _read_tensors(checkpoint, progress)
    if checkpoint.pickled:  # a safetensors layout was checked from its headers; a pickle's only now
        family.check_layout({name: array.shape for name, array in raw.items()}, config)
    tensors = family.normalise_names(raw)
    del raw
    head = family.extract_head(tensors, config)
    for name in family.HEAD_TENSORS:
        tensors.pop(name, None)
    vocabulary = _vocabulary(tokenizer, config.vocab_size)
    spec = family.build_encoder_spec(tensors, config, vocabulary, facts)
    try:
        spec.validate()
        if progress:
            print(f"quantizing to {quantization} and writing", file=sys.stderr)
        spec.optimize(quantization=quantization)
    except (ValueError, TypeError) as err:
        raise ConversionError(f"the encoder spec is invalid: {err}") from err
    spec.save(str(folder))
    del tensors, spec

    from safetensors.numpy import save_file

    save_file(head, str(folder / model_format.HEAD_FILE))
    shutil.copyfile(checkpoint.tokenizer_file, folder / model_format.TOKENIZER_FILE)
    # safetensors creates files 0600 whatever the umask: give the head the mode every other file
    # got, so that a model converted by one user (a Docker build) loads for another.
    os.chmod(folder / model_format.HEAD_FILE, (folder / model_format.TOKENIZER_FILE).stat().st_mode & 0o777)
    files, sha256 = model_format.describe_files(folder)
    metadata = model_format.ModelMetadata(
        format_version=model_format.FORMAT_VERSION,
        source_model=source_model,
        source_revision=source_revision,
        quantization=quantization,
        max_positions=config.max_positions,
        recommended_max_length=min(model_format.RECOMMENDED_MAX_LENGTH, config.max_positions),
        embedding_rows=config.vocab_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        special_tokens=facts.special_tokens,
        architecture=config.architecture,
        pair_template=facts.pair_template,
        ctranslate2_version=ctranslate2.__version__,
        files=files,
        sha256=sha256,
    )
    for path in folder.iterdir():
        _fsync(path)
    # The commit marker, written last: a folder without it is not a model.
    marker = folder / model_format.METADATA_FILE
    marker.write_text(metadata.to_json(), encoding="utf-8")
    _fsync(marker)
    _fsync(folder)


def _publish(temporary: Path, output_dir: Path, force: bool, source: Path) -> None:
    if os.path.lexists(output_dir):
        check_output(output_dir, force=force, source=source)  # another process may have put something there
        retired = output_dir.with_name(f"{output_dir.name}.tmp-{os.getpid()}-old{uuid.uuid4().hex[:6]}")
        with in_flight(retired):
            os.rename(output_dir, retired)
            try:
                os.rename(temporary, output_dir)
            except BaseException:
                os.rename(retired, output_dir)  # keep the previous conversion rather than none
                raise
            shutil.rmtree(retired, ignore_errors=True)
    else:
        try:
            os.rename(temporary, output_dir)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise ConversionError(f"{str(output_dir)!r} was created meanwhile; pass force=True to replace it") from err
            raise
    _fsync(output_dir.parent)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
