"""What both services' OpenAPI documents say, in one place: the error body, the
statuses a route answers, the bodies FastAPI cannot see, and the clean-up.

Routes read their bodies themselves (frames are parsed in memory, never spooled),
so FastAPI sees no request body: the multipart forms and the OIP infer body are
declared here as ``openapi_extra``. FastAPI also declares a 422 on every route with
parameters, which neither service ever answers (a query that fails validation is a
400): :func:`install_openapi` removes it, and when a token guards the door it adds
the bearer scheme and the 401 to every route outside the open paths.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorBody",
    "error_responses",
    "install_openapi",
    "json_response",
    "multipart_body",
    "text_response",
]


class ErrorBody(BaseModel):
    """Every error answer of both services: ``{"error": message}``; a few add keys
    (the gateway's 503 adds ``models``, each member's status)."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="what is wrong, in one line; never echoes a frame or a token")


_MEANING = {
    400: "the request is malformed (a field, a query parameter, the body's framing)",
    401: "no valid bearer token (missing header, another scheme, wrong token)",
    404: "no such model on this server",
    413: "over a size, count or pixel limit (named in the message)",
    415: "not multipart/form-data, or a frame that is not JPEG or PNG",
    429: "the batching queue is full; retry after Retry-After seconds",
    500: "a bug or a model answer that cannot be used (logged; the connection stays usable)",
    503: "not ready: the model is loading, or no member could answer",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
}


def _error(status: int, meaning: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": ErrorBody, "description": meaning or _MEANING[status]}
    if status in _HEADERS:
        entry["headers"] = _HEADERS[status]
    return entry


def error_responses(*statuses: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the :class:`ErrorBody` schema;
    ``meanings`` (``s503="..."``) replace a status's generic description."""
    return {s: _error(s, meanings.get(f"s{s}")) for s in statuses}


def json_response(description: str, schema: Mapping[str, Any]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a JSON 200 whose body FastAPI cannot infer (a plain dict)."""
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


def text_response(description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a text/plain 200 (``/metrics``)."""
    return {
        200: {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}
    }


def multipart_body(
    properties: Mapping[str, Mapping[str, Any]],
    required: Collection[str],
    part_types: Mapping[str, str],
) -> dict[str, Any]:
    """``openapi_extra`` declaring a ``multipart/form-data`` request body."""
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    encoding = {name: {"contentType": types} for name, types in part_types.items()}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema, "encoding": encoding}},
        }
    }


def _unused_validation_schemas(doc: dict[str, Any]) -> None:
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if "components" in doc and not schemas:
        doc["components"].pop("schemas", None)


def install_openapi(
    app: FastAPI, *, open_paths: Collection[str], bearer: bool, description: str
) -> None:
    """Replace ``app.openapi`` with the document as the service really answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=description, routes=app.routes
        )
        if bearer:
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
        unauthorized = {**_error(401)}
        unauthorized.pop("model")
        unauthorized["content"] = {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
        }
        for path, operations in doc.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                if bearer and path not in open_paths:
                    operation["security"] = [{"bearer": []}]
                    responses["401"] = unauthorized
        _unused_validation_schemas(doc)
        if bearer:
            schemas = doc["components"].setdefault("schemas", {})
            schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
