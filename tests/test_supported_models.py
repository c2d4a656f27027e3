"""fastrerank.list_supported_models(): the documented models, with the same facts as the documentation's table."""

from __future__ import annotations

import dataclasses
import doctest
import re
from pathlib import Path

import pytest

import fastrerank
from fastrerank import SupportedModel, list_supported_models
from fastrerank import _model_format as model_format
from fastrerank import _supported_models as supported_models
from fastrerank.testing import ModelShape

ROOT = Path(__file__).resolve().parent.parent
# | model | layers | hidden | usable positions | recommended max_length | ...
TABLE_ROW = re.compile(r"^\| ([\w.-]+/[\w.-]+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", re.M)


def _documented() -> dict[str, tuple[int, int, int, int]]:
    """The "Supported models" table's rows, wherever the documentation keeps it (the README or docs/)."""
    rows: dict[str, tuple[int, int, int, int]] = {}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if not page.is_file():
            continue
        for model, *numbers in TABLE_ROW.findall(page.read_text(encoding="utf-8")):
            layers, hidden, positions, max_length = map(int, numbers)
            assert rows.setdefault(model, (layers, hidden, positions, max_length)) == (layers, hidden, positions, max_length), \
                f"{page.name} disagrees with another page about {model}"
    return rows


def test_the_list_is_the_documented_table() -> None:
    listed = {m.model: (m.layers, m.hidden_size, m.max_positions, m.recommended_max_length) for m in list_supported_models()}
    assert listed == _documented()
    assert len(listed) == len(list_supported_models()) == 8


def test_entries_are_frozen_typed_and_the_default_model_comes_first() -> None:
    models = list_supported_models()
    assert isinstance(models, tuple) and all(isinstance(m, SupportedModel) for m in models)
    assert models[0].model == fastrerank.DEFAULT_MODEL
    assert {m.architecture for m in models} == {"XLMRobertaForSequenceClassification", "BertForSequenceClassification"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        models[0].layers = 1  # type: ignore[misc]
    assert repr(models[-1]) == (
        "SupportedModel(model='cross-encoder/ms-marco-TinyBERT-L-2-v2', architecture='BertForSequenceClassification', "
        "layers=2, hidden_size=128, max_positions=512, recommended_max_length=512)"
    )


def test_recommended_max_length_is_the_engines_default_and_fits_the_positions() -> None:
    for model in list_supported_models():
        assert model.recommended_max_length == model_format.RECOMMENDED_MAX_LENGTH <= model.max_positions, model


def test_the_full_size_fixture_shapes_match_the_models_they_stand_for() -> None:
    by_id = {m.model: m for m in list_supported_models()}
    for model, shape, reserved in [("BAAI/bge-reranker-v2-m3", ModelShape.large(), 2),  # XLM-R reserves two position rows
                                   ("BAAI/bge-reranker-base", ModelShape.base(), 2),
                                   ("cross-encoder/ms-marco-MiniLM-L-6-v2", ModelShape.minilm_l6(), 0)]:
        entry = by_id[model]
        assert (shape.num_layers, shape.hidden_size, shape.max_position_embeddings - reserved) == \
            (entry.layers, entry.hidden_size, entry.max_positions), model


def test_the_docstring_example_runs() -> None:
    result = doctest.testmod(supported_models, verbose=False)
    assert result.attempted == 3 and result.failed == 0
