"""docs/reliability.md, goal G13: random JSON bodies on every route give 2xx or 4xx in the route's shape, never a 5xx.

Examples per route: ``FASTRERANK_FUZZ_EXAMPLES`` (300 by default; 5000 for a nightly run).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrerank.server import create_app

from .asgi_client import request
from .fake_reranker import FakeReranker
from .server_cases import BODIES, error_message

EXAMPLES = int(os.environ.get("FASTRERANK_FUZZ_EXAMPLES", "300"))
FIELDS = [
    "model", "query", "documents", "texts", "contexts", "text", "top_n", "top_k",
    "return_documents", "return_text", "raw_scores", "truncate", "truncation_direction",
    "max_chunks_per_doc", "overlap_tokens", "parameters", "input", "rank_fields",
]

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | surrogates
    | st.sampled_from(["", " ", "Apple", "fruit banana", "\x00", "Left"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@st.composite
def bodies(draw: st.DrawFn, path: str) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "any", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "any":
        value: Any = draw(json_values)
    else:
        value = dict(BODIES[path])
        for _ in range(draw(st.integers(1, 3))):
            field = draw(st.sampled_from(FIELDS + list(value)))
            if draw(st.booleans()) and field in value:
                del value[field]
            else:
                value[field] = draw(json_values)
    return json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True).encode("utf-8", "surrogatepass")


APP = create_app({"m": FakeReranker()}, max_documents=50)


@pytest.mark.parametrize("path", list(BODIES))
def test_random_bodies_never_give_a_5xx(path: str) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies(path))
    def check(body: bytes) -> None:
        response = request(APP, "POST", path, content=body)
        assert response.status_code < 500, response.text
        assert "Traceback" not in response.text
        if response.status_code >= 400:
            assert response.status_code in (400, 413)
            assert error_message(path, response.json())

    check()
