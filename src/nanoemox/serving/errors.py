"""Errors as OpenAI-style JSON, the request-body limit, and one-line messages for invalid requests."""
from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from typing import Any, Iterable

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from ..errors import MediaError, NanoEmoXError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as OpenAI-style JSON: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.headers = status, message, type_, param, headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class Cancelled(Exception):
    """The request timed out or its client went away before its answer was complete."""


class BodyTooLarge(HTTPException):
    """Raised while a body streams in past the limit. An HTTPException, so that FastAPI's body
    parsing re-raises it as is instead of turning it into a generic 400."""

    def __init__(self, max_bytes: int):
        super().__init__(413, f"request body is over the {max_bytes / 2**20:g} MB limit of this server (--max-upload-mb)")


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes`: by Content-Length up front, else while they stream in."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            err = BodyTooLarge(self.max_bytes)
            return await ApiError(413, err.detail, "request_too_large").response()(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def error_of(exc: BaseException) -> ApiError:
    """Any failure of a job -> the ApiError its client gets."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, MediaError):
        return ApiError(422, f"unusable media: {exc.reason}", "invalid_media", param="file")
    if isinstance(exc, NanoEmoXError):
        return ApiError(400, str(exc))
    if isinstance(exc, Cancelled):
        return ApiError(504, "the request timed out (--timeout)", "timeout")
    log.error("request failed", exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", "server_error")


def unknown_field(name: str, known: Iterable[str], where: str = "") -> ApiError:
    """400 naming an unexpected field and, when one is close, the field probably meant."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known fields: {', '.join(sorted(known))})"
    return ApiError(400, f"unknown field {where + name!r}{hint}", param=f"{where}{name}")


def validation_error(errors: list[dict[str, Any]], body: Any) -> ApiError:
    """The most specific pydantic error as one line: where, the value given, what was expected."""
    if not errors:
        return ApiError(400, "invalid request")
    first = max(errors, key=lambda e: len(e.get("loc", ())))
    where, parent = _path(first.get("loc", ()), body)
    kind = first.get("type", "")
    if kind == "json_invalid":
        return ApiError(400, f"the request body is not valid JSON ({(first.get('ctx') or {}).get('error', 'decode error')})")
    if kind == "extra_forbidden":
        name = where.rpartition(".")[2]
        from .schema import known_fields_for

        return unknown_field(name, known_fields_for(parent), f"{where.rpartition('.')[0]}." if "." in where else "")
    if kind == "missing":
        return ApiError(400, f"{where}: required field missing", param=where or None)
    if kind == "union_tag_invalid":
        ctx = first.get("ctx") or {}
        return ApiError(400, f"{where}.{ctx.get('discriminator', 'type').strip(chr(39))}={ctx.get('tag')!r}: expected one of {ctx.get('expected_tags')}",
                        param=where or None)
    value = repr(first.get("input"))
    value = value if len(value) <= 60 else value[:57] + "..."
    return ApiError(400, f"{where}={value}: {first.get('msg', 'invalid value')}", param=where or None)


def _path(loc: Iterable[Any], body: Any) -> tuple[str, Any]:
    """A pydantic location read against the body: without its 'body' root and the labels of union
    branches (which are not keys of the body); also the object holding the last key."""
    loc = list(loc)
    parts: list[str] = []
    node, parent = body, None
    for k, seg in enumerate(loc):
        last = k == len(loc) - 1
        if seg == "body" and k == 0:
            continue
        if isinstance(node, list) and isinstance(seg, int):
            parts.append(f"[{seg}]")
            parent, node = node, (node[seg] if seg < len(node) else None)
        elif isinstance(node, Mapping) and isinstance(seg, str) and (seg in node or last):
            parts.append(("." if parts else "") + seg)
            parent, node = node, node.get(seg)
        elif node is None and last:
            parts.append(("." if parts else "") + str(seg))
    return "".join(parts), parent
