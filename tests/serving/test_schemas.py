"""Each API shape: the seeds' examples parse, responses have exactly the documented fields,
and one ranking comes out the same through every shape."""

from __future__ import annotations

import json
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest

from fastrerank.results import RankedDocument, Ranking
from fastrerank.schemas import (
    RerankerLike,
    cloudflare,
    cohere,
    combined,
    dmxapi,
    envelope,
    siliconflow,
    tei,
)

from .fake_reranker import FakeReranker
from .jsonschema_lite import validate
from .locations import load_data, subprocess_env

APPLE = load_data("requests/siliconflow.json")  # query "Apple", 4 documents
THIRD = 1 / 3


def apple_results(*, documents: bool = False) -> list[dict[str, Any]]:
    """What the fake gives for the SiliconFlow example: "apple" first, the rest tied."""
    scores = [2 / 3, THIRD, THIRD, THIRD]
    rows: list[dict[str, Any]] = []
    for index, score in enumerate(scores):
        row: dict[str, Any] = {"index": index, "relevance_score": score}
        if documents:
            row["document"] = {"text": APPLE["documents"][index]}
        rows.append(row)
    return rows


# --- the seeds' examples --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (siliconflow, "siliconflow"),
        (dmxapi, "dmxapi"),
        (envelope, "envelope"),
        (cloudflare, "cloudflare"),
        (combined, "siliconflow"),
        (combined, "dmxapi"),
        (cohere, "siliconflow"),
        (cohere, "envelope"),
    ],
)
def test_seed_example_requests_parse(module: ModuleType, name: str) -> None:
    body = load_data(f"requests/{name}.json")
    text = json.dumps(body, ensure_ascii=False)
    assert module.parse_request(text) == module.parse_request(body)
    assert module.parse_request(text.encode()) == module.parse_request(body)


def test_cloudflare_example_request_fits_its_schema() -> None:
    validate(load_data("requests/cloudflare.json"), load_data("jsonschema/cloudflare_input.json"))


@pytest.mark.parametrize("name", ["siliconflow", "envelope"])
def test_seed_example_responses_fit_the_schemas_written_from_them(name: str) -> None:
    validate(load_data(f"responses/{name}.json"), load_data(f"jsonschema/{name}_output.json"))


def test_dmxapi_example_response_has_the_fields_we_build() -> None:
    example = load_data("responses/dmxapi.json")
    assert set(example) == {"results", "usage"}
    assert {"prompt_tokens", "completion_tokens", "total_tokens"} <= set(example["usage"])


def test_parsed_seed_values() -> None:
    request = siliconflow.parse_request(APPLE)
    assert (request.top_n, request.return_documents) == (4, False)
    assert (request.max_chunks_per_doc, request.overlap_tokens) == (1024, 80)
    dmx = dmxapi.parse_request(load_data("requests/dmxapi.json"))
    assert (dmx.top_n, dmx.return_documents, dmx.max_chunks_per_doc, dmx.overlap_tokens) == (3, True, 5, 20)


def test_siliconflow_defaults() -> None:
    request = siliconflow.parse_request({"model": "m", "query": "q", "documents": ["a"]})
    assert request.top_n is None
    assert request.return_documents is False
    assert (request.max_chunks_per_doc, request.overlap_tokens) == (1024, 80)


# --- exact responses --------------------------------------------------------------------------


@pytest.mark.parametrize("return_documents", [False, True])
def test_siliconflow_response_exact(fake: FakeReranker, return_documents: bool) -> None:
    body = {**APPLE, "return_documents": return_documents}
    response = siliconflow.handle(body, fake, request_id="req-1")
    assert response == {
        "id": "req-1",
        "results": apple_results(documents=return_documents),
        "tokens": {"input_tokens": 24, "output_tokens": 0},
    }
    validate(response, load_data("jsonschema/siliconflow_output.json"))


def test_siliconflow_default_id_is_a_fresh_uuid(reranker: RerankerLike) -> None:
    first = siliconflow.handle(APPLE, reranker)["id"]
    assert len(first) == 36
    assert first != siliconflow.handle(APPLE, reranker)["id"]


@pytest.mark.parametrize("return_documents", [False, True])
def test_dmxapi_response_exact(fake: FakeReranker, return_documents: bool) -> None:
    response = dmxapi.handle({**APPLE, "return_documents": return_documents}, fake)
    assert response == {
        "results": apple_results(documents=return_documents),
        "usage": {"prompt_tokens": 24, "completion_tokens": 0, "total_tokens": 24},
    }
    validate(response, load_data("jsonschema/dmxapi_output.json"))


def test_dmxapi_seed_request_end_to_end(reranker: RerankerLike) -> None:
    response = dmxapi.handle(load_data("requests/dmxapi.json"), reranker)
    validate(response, load_data("jsonschema/dmxapi_output.json"))
    assert [row["document"]["text"] for row in response["results"]] == load_data("requests/dmxapi.json")["documents"]


@pytest.mark.parametrize("return_documents", [False, True])
def test_envelope_response_exact(fake: FakeReranker, return_documents: bool) -> None:
    body = {**APPLE, "return_documents": return_documents}
    response = envelope.handle(body, fake)
    assert response == {
        "success": True,
        "code": "200",
        "message": "successful",
        "data": {"results": apple_results(documents=return_documents)},
    }
    validate(response, load_data("jsonschema/envelope_output.json"))


def test_envelope_parameters_fill_in_for_missing_top_level_fields(fake: FakeReranker) -> None:
    body = {**APPLE, "parameters": {"top_n": 1, "return_documents": True, "temperature": 3}}
    del body["top_n"], body["return_documents"]
    assert envelope.handle(body, fake)["data"]["results"] == apple_results(documents=True)[:1]
    body["top_n"], body["return_documents"] = 2, False
    assert envelope.handle(body, fake)["data"]["results"] == apple_results()[:2]


def test_envelope_seed_example(reranker: RerankerLike) -> None:
    response = envelope.handle(load_data("requests/envelope.json"), reranker)
    validate(response, load_data("jsonschema/envelope_output.json"))
    assert sorted(row["index"] for row in response["data"]["results"]) == [0, 1]


def test_cloudflare_response_exact(fake: FakeReranker) -> None:
    body = {"query": "Apple", "contexts": [{"text": t} for t in APPLE["documents"]], "top_k": 2}
    expected = {"response": [{"id": 0, "score": 2 / 3}, {"id": 1, "score": THIRD}]}
    assert cloudflare.handle(body, fake) == expected
    assert cloudflare.handle(body, fake, envelope=True) == {
        "result": expected,
        "success": True,
        "errors": [],
        "messages": [],
    }
    validate(expected, load_data("jsonschema/cloudflare_output.json"))


def test_cloudflare_seed_example(reranker: RerankerLike) -> None:
    response = cloudflare.handle(load_data("requests/cloudflare.json"), reranker)
    validate(response, load_data("jsonschema/cloudflare_output.json"))
    assert len(response["response"]) == 1  # top_k


@pytest.mark.parametrize("return_documents", [False, True])
def test_cohere_response_exact(fake: FakeReranker, return_documents: bool) -> None:
    body = {
        "model": "rerank-v3.5",
        "query": "Apple",
        "documents": [{"text": "apple"}, "banana", {"text": "fruit", "title": "x"}, "vegetable"],
        "return_documents": return_documents,
        "max_tokens_per_doc": 4096,
        "rank_fields": ["text"],
    }
    results = apple_results(documents=return_documents)
    if return_documents:
        results[2]["document"] = {"text": "fruit", "title": "x"}  # Cohere returns the object whole
    assert cohere.handle(body, fake, request_id="c") == {
        "id": "c",
        "results": results,
        "meta": {"billed_units": {"search_units": 1}},
    }


@pytest.mark.parametrize("return_documents", [False, True])
def test_combined_response_exact(fake: FakeReranker, return_documents: bool) -> None:
    body = {"query": "Apple", "documents": APPLE["documents"], "return_documents": return_documents}
    assert combined.handle(body, fake, request_id="x") == {
        "id": "x",
        "results": apple_results(documents=return_documents),
        "tokens": {"input_tokens": 24, "output_tokens": 0},
        "usage": {"prompt_tokens": 24, "completion_tokens": 0, "total_tokens": 24},
        "meta": {"billed_units": {"search_units": 1}},
    }


@pytest.mark.parametrize("return_text", [False, True])
def test_tei_response_exact(fake: FakeReranker, return_text: bool) -> None:
    body = {"query": "Apple", "texts": APPLE["documents"], "return_text": return_text, "truncate": True}
    expected = [
        {"index": row["index"], "score": row["relevance_score"]} for row in apple_results()
    ]
    if return_text:
        for row in expected:
            row["text"] = APPLE["documents"][row["index"]]
    assert tei.handle(body, fake) == expected


def test_tei_raw_scores_are_logits(fake: FakeReranker) -> None:
    body = {"query": "Apple", "texts": ["apple", "banana"], "raw_scores": True}
    scores = [row["score"] for row in tei.handle(body, fake)]
    assert scores == pytest.approx([0.693147, -0.693147], abs=1e-6)  # logit(2/3), logit(1/3)


# --- one ranking, every shape ------------------------------------------------------------------

QUERY = "fast search engine"
DOCS = ["slow film", "a fast engine", "search engine speed", "fast search engine", "music"]


def pairs(module: ModuleType, response: Any) -> list[tuple[int, float]]:
    """(index, score) best first, read from any shape's response."""
    if module is cloudflare:
        return [(row["id"], row["score"]) for row in response["response"]]
    if module is tei:
        return [(row["index"], row["score"]) for row in response]
    rows = response["data"]["results"] if module is envelope else response["results"]
    return [(row["index"], row["relevance_score"]) for row in rows]


def body_for(module: ModuleType, top_n: int) -> dict[str, Any]:
    if module is cloudflare:
        return {"query": QUERY, "contexts": [{"text": d} for d in DOCS], "top_k": top_n}
    if module is tei:
        return {"query": QUERY, "texts": DOCS}
    return {"model": "m", "query": QUERY, "documents": DOCS, "top_n": top_n}


@pytest.mark.parametrize("module", [cloudflare, siliconflow, dmxapi, cohere, envelope, tei, combined])
def test_same_ranking_through_every_shape(reranker: RerankerLike, module: ModuleType) -> None:
    direct = reranker.rank(QUERY, DOCS)
    expected = [(item.index, item.score) for item in direct]
    assert sorted(index for index, _ in expected) == list(range(len(DOCS)))
    top_n = len(DOCS) if module is tei else 3  # TEI has no top_n: it ranks every text
    assert pairs(module, module.handle(body_for(module, top_n), reranker)) == expected[:top_n]


def test_the_fake_orders_the_shared_example(fake: FakeReranker) -> None:
    assert [item.index for item in fake.rank(QUERY, DOCS)] == [3, 1, 2, 4, 0]  # 1 and 2 tie


def test_build_response_uses_the_ranking_it_is_given() -> None:
    ranking = Ranking((RankedDocument(2, 0.5), RankedDocument(0, 0.25)), tokens=7)
    request = siliconflow.parse_request({"model": "m", "query": "q", "documents": ["a", "b", "c"], "return_documents": True})
    assert siliconflow.build_response(ranking, request, request_id="i") == {
        "id": "i",
        "results": [
            {"index": 2, "relevance_score": 0.5, "document": {"text": "c"}},
            {"index": 0, "relevance_score": 0.25, "document": {"text": "a"}},
        ],
        "tokens": {"input_tokens": 7, "output_tokens": 0},
    }


def test_schemas_import_neither_ctranslate2_nor_tokenizers() -> None:
    # What the package's own __init__ loads is its business; the schema modules must add
    # neither engine dependency (nor the server's) on top of it.
    code = (
        "import sys\n"
        "import fastrerank, fastrerank.errors, fastrerank.results\n"
        "before = set(sys.modules)\n"
        "import fastrerank.schemas.cloudflare, fastrerank.schemas.siliconflow, fastrerank.schemas.dmxapi\n"
        "import fastrerank.schemas.cohere, fastrerank.schemas.envelope, fastrerank.schemas.tei\n"
        "import fastrerank.schemas.combined\n"
        "heavy = ('ctranslate2', 'tokenizers', 'numpy', 'starlette', 'uvicorn')\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, env=subprocess_env()
    )
    assert out.stdout.strip() == "[]"
