"""Strict validation and each API's error shape."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from fastrerank.errors import InvalidInputError, SchemaError
from fastrerank.schemas import (
    ErrorKind,
    ServiceError,
    cloudflare,
    cohere,
    combined,
    dmxapi,
    envelope,
    siliconflow,
    tei,
)

from .fake_reranker import FakeReranker

BASE = '"model": "m", "query": "q", "documents": ["a", "b"]'


def parse_error(module: ModuleType, body: Any) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        module.parse_request(body)
    return caught.value


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ('"top_n": true', "top_n", "top_n: Input should be a valid integer, got true"),
        ('"top_n": 2.0', "top_n", "top_n: Input should be a valid integer, got 2.0"),
        ('"top_n": "3"', "top_n", 'top_n: Input should be a valid integer, got "3"'),
        ('"top_n": NaN', "top_n", "top_n: NaN is not a valid JSON value"),
        ('"top_n": Infinity', "top_n", "top_n: Infinity is not a valid JSON value"),
        ('"top_n": -Infinity', "top_n", "top_n: -Infinity is not a valid JSON value"),
        ('"top_n": 1e999', "top_n", "top_n: Input should be a valid integer, got Infinity"),
        ('"top_n": 0', "top_n", "top_n: Input should be greater than or equal to 1, got 0"),
        ('"top_n": null, "top_n": -1', "top_n", "top_n: Input should be greater than or equal to 1, got -1"),
        ('"overlap_tokens": 81', "overlap_tokens", "overlap_tokens: Input should be less than or equal to 80, got 81"),
        ('"overlap_tokens": -1', "overlap_tokens", "overlap_tokens: Input should be greater than or equal to 0, got -1"),
        ('"overlap_tokens": false', "overlap_tokens", "overlap_tokens: Input should be a valid integer, got false"),
        ('"max_chunks_per_doc": 0', "max_chunks_per_doc", "max_chunks_per_doc: Input should be greater than or equal to 1, got 0"),
        ('"return_documents": 1', "return_documents", "return_documents: Input should be a valid boolean, got 1"),
        ('"return_documents": "true"', "return_documents", 'return_documents: Input should be a valid boolean, got "true"'),
        ('"query": "\\ud800"', "query", "query: lone surrogate escape in a string (invalid Unicode)"),
        ('"documents": ["ok", "\\udfff x"]', "documents.1", "documents.1: lone surrogate escape in a string (invalid Unicode)"),
        ('"documents": []', "documents", "documents: List should have at least 1 item after validation, not 0, got []"),
        ('"documents": ["a", 3]', "documents.1", "documents.1: Input should be a valid string, got 3"),
        ('"documents": ["a", null]', "documents.1", "documents.1: Input should be a valid string, got null"),
        ('"documents": "abc"', "documents", 'documents: Input should be a valid list, got "abc"'),
        ('"query": ""', "query", 'query: String should have at least 1 character, got ""'),
        ('"query": 5', "query", "query: Input should be a valid string, got 5"),
        ('"model": 5', "model", "model: Input should be a valid string, got 5"),
    ],
)
def test_siliconflow_strictness(extra: str, field: str, message: str) -> None:
    error = parse_error(siliconflow, "{" + BASE + ", " + extra + "}")
    assert (error.status, error.field, error.message) == (400, field, message)
    code = 20012 if field == "model" else 20015  # SiliconFlow: model does not exist / invalid parameter
    assert siliconflow.build_error(error) == (400, {"code": code, "message": message, "data": None})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[]", "body must be a JSON object, got array"),
        ('"x"', "body must be a JSON object, got string"),
        ("3", "body must be a JSON object, got number"),
        ("null", "body must be a JSON object, got null"),
        ("{", "body is not valid JSON: EOF while parsing an object at line 1 column 1"),
        ("", "body is not valid JSON: EOF while parsing a value at line 1 column 0"),
        ("query=q&documents=a", "body is not valid JSON: expected value at line 1 column 1"),
        (b"\xff{}", "body is not valid JSON: expected value at line 1 column 1"),
        ('{"query": "q"} trailing', "body is not valid JSON: trailing characters at line 1 column 16"),
    ],
)
def test_body_that_is_not_a_json_object(body: str | bytes, message: str) -> None:
    for module in (cloudflare, siliconflow, cohere, envelope, tei):
        error = parse_error(module, body)
        assert (error.status, error.field, error.message) == (400, None, message)


def test_missing_fields_are_named() -> None:
    assert parse_error(siliconflow, '{"query": "q", "documents": ["a"]}').message == "model is required"
    assert parse_error(cohere, '{"documents": ["a"]}').message == "query is required"
    assert parse_error(tei, '{"query": "q"}').message == "texts is required"
    assert parse_error(cloudflare, '{"query": "q"}').message == "contexts is required"
    assert parse_error(cloudflare, '{"query": "q", "contexts": [{}]}').field == "contexts.0.text"


def test_duplicate_keys_last_wins_and_unknown_fields_are_ignored() -> None:
    body = '{' + BASE + ', "top_n": 1, "top_n": 2, "rank_fields": ["x"], "max_tokens_per_doc": 9, "parameters": {}}'
    assert siliconflow.parse_request(body).top_n == 2
    assert cohere.parse_request('{"query": "a", "query": "b", "documents": ["d"]}').query == "b"


def test_strings_keep_what_json_allows() -> None:
    text = "\u0000 \u202e مرحبا 👩\u200d💻 \ufeff e\u0301"
    request = siliconflow.parse_request({"model": "m", "query": text, "documents": [text, ""]})
    assert request.query == text
    assert request.documents == [text, ""]  # an empty document is scored, not rejected
    assert siliconflow.parse_request('{' + BASE + ', "query": "\\ud83d\\ude00"}').query == "😀"


def test_cloudflare_rejects_empty_context_text() -> None:
    error = parse_error(cloudflare, {"query": "q", "contexts": [{"text": "a"}, {"text": ""}]})
    assert error.field == "contexts.1.text"
    status, body = cloudflare.build_error(error)
    assert status == 400
    assert body == {
        "result": None,
        "success": False,
        "errors": [{"code": 5006, "message": 'contexts.1.text: String should have at least 1 character, got ""'}],
        "messages": [],
    }


def test_cloudflare_top_k_is_strict() -> None:
    assert parse_error(cloudflare, '{"query": "q", "contexts": [{"text": "a"}], "top_k": true}').field == "top_k"
    assert parse_error(cloudflare, '{"query": "q", "contexts": [{"text": "a"}], "top_k": 0}').field == "top_k"


def test_siliconflow_takes_strings_only_while_cohere_unwraps_objects() -> None:
    body = {"model": "m", "query": "q", "documents": [{"text": "a"}]}
    assert parse_error(siliconflow, body).field == "documents.0"
    assert cohere.parse_request(body).documents == ["a"]
    assert combined.parse_request(body).documents == ["a"]
    assert parse_error(cohere, {"query": "q", "documents": [{"title": "a"}]}).field == "documents.0"
    assert parse_error(cohere, {"query": "q", "documents": [{"text": 1}]}).field == "documents.0"


def test_tei_options_are_strict() -> None:
    assert parse_error(tei, '{"query": "q", "texts": ["a"], "raw_scores": 1}').field == "raw_scores"
    assert parse_error(tei, '{"query": "q", "texts": ["a"], "truncation_direction": "up"}').field == "truncation_direction"
    assert parse_error(tei, '{"query": "q", "texts": []}').field == "texts"


def test_envelope_parameters_are_validated_too() -> None:
    error = parse_error(envelope, '{' + BASE + ', "parameters": {"top_n": "2"}}')
    assert error.field == "parameters.top_n"
    assert parse_error(envelope, '{' + BASE + ', "parameters": []}').field == "parameters"


ALL_ERRORS = SchemaError("top_n: bad", field="top_n")


@pytest.mark.parametrize(
    ("module", "status", "body"),
    [
        (cloudflare, 400, {"result": None, "success": False, "errors": [{"code": 5006, "message": "top_n: bad"}], "messages": []}),
        (siliconflow, 400, {"code": 20015, "message": "top_n: bad", "data": None}),
        (dmxapi, 400, {"code": 20015, "message": "top_n: bad", "data": None}),
        (combined, 400, {"code": 20015, "message": "top_n: bad", "detail": "top_n: bad", "data": None}),
        (envelope, 400, {"success": False, "code": "400", "message": "top_n: bad"}),
        (cohere, 400, {"message": "top_n: bad"}),
        (tei, 400, {"error": "top_n: bad", "error_type": "validation"}),
    ],
)
def test_error_shapes(module: ModuleType, status: int, body: dict[str, Any]) -> None:
    assert module.build_error(ALL_ERRORS) == (status, body)


@pytest.mark.parametrize(
    ("error", "cloudflare_code", "siliconflow_code", "tei_type"),
    [
        (SchemaError("unknown model 'x'", field="model"), 5007, 20012, "validation"),
        (SchemaError("unauthorized", status=401), 10000, 401, "unauthorized"),
        (SchemaError("too large", status=413), 3006, 413, "payload_too_large"),
        (SchemaError("busy", status=429), 3040, 50603, "overloaded"),
        (SchemaError("timed out in queue", status=503), 3040, 50603, "unhealthy"),
        (SchemaError("internal error", status=500), 5006, 500, "backend"),
    ],
)
def test_error_codes_follow_status_and_field(
    error: SchemaError, cloudflare_code: int, siliconflow_code: int, tei_type: str
) -> None:
    assert cloudflare.build_error(error)[1]["errors"][0]["code"] == cloudflare_code
    assert siliconflow.build_error(error)[1]["code"] == siliconflow_code
    assert tei.build_error(error)[1]["error_type"] == tei_type
    assert envelope.build_error(error)[1]["code"] == str(error.status)
    for module in (cloudflare, siliconflow, envelope, cohere, tei):
        assert module.build_error(error)[0] == error.status


def test_engine_errors_become_a_400_with_the_engine_message() -> None:
    fake = FakeReranker(max_length=40)  # window 40 - 1 - 4 = 35 tokens
    body = {"model": "m", "query": "q", "documents": ["a"], "overlap_tokens": 50}
    with pytest.raises(SchemaError) as caught:
        siliconflow.handle(body, fake)
    assert caught.value.status == 400
    assert caught.value.message == "overlap_tokens must be < the window W=35, got 50"
    assert isinstance(caught.value.__cause__, InvalidInputError)
    with pytest.raises(SchemaError, match="query must be a non-empty string"):
        cohere.handle({"query": "   ", "documents": ["a"]}, fake)


@pytest.mark.parametrize("depth", [150, 900, 5000])
def test_deeply_nested_bodies_are_a_400(depth: int) -> None:
    body = '{"model": "m", "query": "q", "documents": ["a"], "x": ' + "[" * depth + "NaN" + "]" * depth + "}"
    error = parse_error(siliconflow, body)
    assert error.status == 400
    if depth == 150:
        assert error.message == "x" + ".0" * 38 + "...: NaN is not a valid JSON value"
        assert error.field == "x" + ".0" * depth
    else:
        assert error.message.startswith(("body is not valid JSON", "x.0.0"))


def test_lone_surrogate_in_a_key_is_named() -> None:
    error = parse_error(cohere, '{"query": "q", "documents": ["a"], "x": {"\\ud800": 1}}')
    assert (error.field, error.message) == ("x", "x: lone surrogate escape in a string (invalid Unicode)")


def test_a_million_wrong_documents_make_one_error() -> None:
    # Without FailFast, pydantic builds a million error objects: seconds and ~1 GB of memory.
    body = b'{"model": "m", "query": "q", "documents": [' + b",".join([b"1"] * 1_000_000) + b"]}"
    for module in (siliconflow, combined, cohere, tei):
        key = b"texts" if module is tei else b"documents"
        error = parse_error(module, body.replace(b"documents", key))
        assert error.message == f"{key.decode()}.0: Input should be a valid string, got 1"
        assert len(error.__cause__.errors()) == 1  # type: ignore[union-attr]
    contexts = b'{"query": "q", "contexts": [' + b",".join([b"1"] * 100_000) + b"]}"
    error = parse_error(cloudflare, contexts)
    assert error.field == "contexts.0" and len(error.__cause__.errors()) == 1  # type: ignore[union-attr]


def test_a_large_body_refused_by_the_parser_is_not_walked() -> None:
    # Finding the field costs a lax parse and a walk of every value: only for small bodies.
    small = '{"query": "q", "documents": [' + ", ".join(['"a"'] * 100) + ', NaN]}'
    assert parse_error(cohere, small).message == "documents.100: NaN is not a valid JSON value"
    large = '{"query": "q", "documents": [' + ", ".join(['"a"'] * 100_000) + ', NaN]}'
    error = parse_error(cohere, large)
    assert error.message.startswith("body is not valid JSON: expected value at line 1 column ")
    many = '{"query": "q", "documents": [' + ", ".join(["1"] * 20_000) + ', NaN]}'  # under 256 KiB
    assert parse_error(cohere, many).message.startswith("body is not valid JSON: expected value at line 1 column ")


def test_cloudflare_rejects_empty_contexts() -> None:
    error = parse_error(cloudflare, {"query": "q", "contexts": []})
    assert error.field == "contexts"
    assert cloudflare.build_error(error)[1]["errors"] == [
        {"code": 5006, "message": "contexts: List should have at least 1 item after validation, not 0, got []"}
    ]


@pytest.mark.parametrize(
    ("kind", "status", "cloudflare_code", "siliconflow_code", "tei_type"),
    [
        (ErrorKind.UNAUTHORIZED, 401, 10000, 401, "unauthorized"),
        (ErrorKind.METHOD_NOT_ALLOWED, 405, 5006, 405, "validation"),
        (ErrorKind.REQUEST_TIMEOUT, 408, 5006, 408, "validation"),
        (ErrorKind.TOO_LARGE, 413, 3006, 413, "payload_too_large"),
        (ErrorKind.OVERLOADED, 429, 3040, 50603, "overloaded"),
        (ErrorKind.INTERNAL, 500, 5006, 500, "backend"),
        (ErrorKind.UNAVAILABLE, 503, 3040, 50603, "unhealthy"),
    ],
)
def test_each_error_kind_maps_once_to_a_status_and_to_each_shape(
    kind: ErrorKind, status: int, cloudflare_code: int, siliconflow_code: int, tei_type: str
) -> None:
    error = ServiceError(kind, "why")
    assert error.status == kind.status == status
    assert not isinstance(error, ValueError)  # only a body that does not fit is a ValueError
    assert cloudflare.SHAPE.build_error(error) == cloudflare.build_error(error)
    assert cloudflare.build_error(error)[1]["errors"] == [{"code": cloudflare_code, "message": "why"}]
    assert siliconflow.build_error(error) == (status, {"code": siliconflow_code, "message": "why", "data": None})
    assert combined.SHAPE.build_error(error) == (
        status, {"code": siliconflow_code, "message": "why", "detail": "why", "data": None}
    )
    assert tei.SHAPE.build_error(error) == (status, {"error": "why", "error_type": tei_type})
    assert envelope.SHAPE.build_error(error) == (status, {"success": False, "code": str(status), "message": "why"})
    assert cohere.SHAPE.build_error(error) == (status, {"message": "why"})
