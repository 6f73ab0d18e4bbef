"""Structured JSON logs; tokens never reach a log line (DESIGN §5).

A token may travel in the query string (browsers cannot set headers on WebSocket or
EventSource), so every log line — ours and Hypercorn's access log — passes through
:func:`redact`, which blanks ``token=…`` and ``access_token=…`` values and bearer headers.

Libraries' decorations stay out (issue 14): ``databases`` attaches a ``color_message`` with ANSI
escapes to its records; the formatter drops that field and strips escapes from every string.
Access lines are fields (method, path, status, bytes, duration_ms, peer), not one flat string.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time

from hypercorn.logging import Logger as HypercornLogger

_TOKEN_RE = re.compile(r"((?:^|[?&\s])(?:access_)?token=)[^&\s\"']+", re.IGNORECASE)
_BEARER_RE = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
REDACTED = "[redacted]"
# Fields some libraries add for their own console formatters (uvicorn's and `databases`'
# `color_message`): a duplicate of the message with colour codes.
_LIBRARY_FIELDS = frozenset({"color_message"})


def redact(text: str) -> str:
    text = _TOKEN_RE.sub(r"\1" + REDACTED, text)
    text = _BEARER_RE.sub(r"\1" + REDACTED, text)
    return _JWT_RE.sub(REDACTED, text)


def _clean(text: str) -> str:
    return redact(_ANSI_RE.sub("", text)) if "\x1b" in text else redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    _skip = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"} | _LIBRARY_FIELDS

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _clean(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in self._skip and not key.startswith("_"):
                body[key] = _clean(value) if isinstance(value, str) else value
        if record.exc_info:
            body["exc"] = _clean(self.formatException(record.exc_info))
        return json.dumps(body, default=str)


def configure(level: int | str = logging.INFO) -> None:
    """Install the JSON formatter on the root logger once, at ``level`` (``PULSE_LOG_LEVEL``).

    The level is the handler's: the root logger is only ever lowered to it, so a test that
    captures logs at a lower level still sees them.
    """
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_pulse", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._pulse = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setLevel(level)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)


# The atoms that can carry a token: the request line, path + query, and credential headers.
_SENSITIVE_ATOMS = ("r", "R", "q", "U", "Uq", "{authorization}i", "{cookie}i", "{referer}i",
                    "{sec-websocket-protocol}i")


class RedactingLogger(HypercornLogger):
    """A Hypercorn logger whose access lines carry no token (module level: workers pickle it).

    An access line is ``"access"`` with fields: ``method``, ``path`` (the query kept, its token
    redacted), ``status``, ``bytes`` (the response's Content-Length, when it has one),
    ``duration_ms``, ``kind`` (http, websocket) and ``peer`` (the client's address and port,
    which names the TCP connection). Built from the scope directly: Hypercorn's atoms copy the
    whole environment for every request.
    """

    async def access(self, request, response, request_time) -> None:
        if self.access_logger is None:
            return
        # A WebSocket opened (101) or an event stream opened is a line per client per
        # reconnect: DEBUG, as the connect/disconnect lines (a 10,000-client reconnect storm
        # spent a quarter of its CPU writing them at INFO). Refusals stay at INFO.
        status = response.get("status") if response is not None else None
        opened = status == 101 or (status == 200 and request.get("path") == "/sse")
        level = logging.DEBUG if opened else logging.INFO
        if not self.access_logger.isEnabledFor(level):
            return
        self.access_logger.log(level, "access",
                               extra=access_fields(request, response, request_time))

    def atoms(self, request, response, request_time):
        atoms = super().atoms(request, response, request_time)
        for key in _SENSITIVE_ATOMS:
            value = atoms.get(key)
            if isinstance(value, str):
                atoms[key] = redact(value)
        return atoms


def access_fields(request, response, request_time: float) -> dict:
    """The structured fields of one access line (see :class:`RedactingLogger`)."""
    query = request.get("query_string", b"").decode("latin-1")
    path = request.get("path", "")
    if query:
        path = redact(f"{path}?{query}")
    size = None
    status = None
    if response is not None:
        status = response.get("status")
        for name, value in response.get("headers", ()):
            if name.lower() == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    pass
                break
    client = request.get("client")
    peer = f"{client[0]}:{client[1]}" if client and len(client) == 2 else None
    return {"method": request.get("method", "GET") if request["type"] == "http" else "GET",
            "path": path, "status": status, "bytes": size,
            "duration_ms": round(request_time * 1000, 3), "kind": request["type"], "peer": peer}
