"""The OpenAPI document of the server, built from the pydantic request models."""

from __future__ import annotations

import functools
from typing import Any

from pydantic.json_schema import models_json_schema

from fastrerank.server._routes import ROUTES

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


@functools.cache
def openapi_document(version: str) -> dict[str, Any]:
    """OpenAPI 3.1: every route, its request body schema, its documented statuses."""
    unique = list(dict.fromkeys(route.shape.request_model for route in ROUTES))
    refs, defs = models_json_schema([(m, "validation") for m in unique], ref_template=_REF)
    paths: dict[str, Any] = {
        "/health": {"get": {"summary": "Liveness and the served models", "responses": {"200": {"description": "ok"}}}},
    }
    for route in ROUTES:
        path = route.path.replace("{model:path}", "{model}")
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("account", "model")
            if "{" + name in route.path
        ]
        paths[path] = {
            "post": {
                "summary": route.summary,
                "parameters": parameters,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": refs[(route.shape.request_model, "validation")]}},
                },
                "responses": _RESPONSES,
                "security": [{"bearer": []}, {}],
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "fastrerank", "version": version},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_RESPONSES = {
    "200": {"description": "The ranking, best first, in the API's response shape"},
    "400": {"description": "Invalid request; the message names the field"},
    "401": {"description": "Missing or invalid API key"},
    "413": {"description": "Body or document count over the server's limit"},
    "429": {"description": "Every slot and queue place taken"},
    "503": {"description": "Waited too long for a free slot"},
}
