"""Helpers shared by the blueprints: the caller's principal, the service container, errors."""
from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING

from quart import current_app, request

from .errors import PulseError, Unauthorized, Unprocessable
from .realtime.auth import Principal, token_from_request

if TYPE_CHECKING:
    from .services import Services

# What an ``Idempotency-Key`` header may be (``/api/events``, ``/api/publish``).
KEY_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))
KEY_MAX = 255


def services() -> "Services":
    return current_app.extensions["pulse"]


def current_principal() -> Principal:
    """The caller of this HTTP request, or raise Unauthorized (-> 401 ``{"detail": …}``)."""
    token = token_from_request(request.args, request.cookies, request.headers)
    return services().tokens.verify(token)


def require_api_key() -> None:
    expected = services().settings.api_key
    given = request.headers.get("X-API-Key", "")
    if not expected:
        raise Unauthorized("Ingest is disabled: PULSE_API_KEY is not set")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("Missing or invalid X-API-Key")


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key``, or None; a malformed one is a 422."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= KEY_MAX and set(key) <= KEY_CHARS):
        raise Unprocessable(
            f"Idempotency-Key must be 1 to {KEY_MAX} visible ASCII characters (no spaces)")
    return key


async def json_body(max_bytes: int):
    """The request's JSON body: 413 past ``max_bytes`` (refused before a byte is read when the
    length is announced, else counted once read), 422 if it is not JSON or nests too deeply."""
    too_large = PulseError(f"Body too large (max {max_bytes} bytes)", 413)
    if (request.content_length or 0) > max_bytes:
        raise too_large
    raw = await request.get_data()
    if len(raw) > max_bytes:  # a chunked body
        raise too_large
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise Unprocessable("Body must be JSON (and nested less deeply)") from None
