"""Structured JSON logs; tokens never reach a log line (DESIGN §5).

A token may travel in the query string (browsers cannot set headers on WebSocket or
EventSource), so every log line — ours and Hypercorn's access log — passes through
:func:`redact`, which blanks ``token=…`` and ``access_token=…`` values and bearer headers.
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
REDACTED = "[redacted]"


def redact(text: str) -> str:
    text = _TOKEN_RE.sub(r"\1" + REDACTED, text)
    text = _BEARER_RE.sub(r"\1" + REDACTED, text)
    return _JWT_RE.sub(REDACTED, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    _skip = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in self._skip and not key.startswith("_"):
                body[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            body["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(body, default=str)


def configure(level: int = logging.INFO) -> None:
    """Install the JSON formatter on the root logger once (tests may capture logs)."""
    root = logging.getLogger()
    if any(getattr(h, "_pulse", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._pulse = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)


# The atoms that can carry a token: the request line, path + query, and credential headers.
_SENSITIVE_ATOMS = ("r", "R", "q", "U", "Uq", "{authorization}i", "{cookie}i", "{referer}i",
                    "{sec-websocket-protocol}i")


class RedactingLogger(HypercornLogger):
    """A Hypercorn logger whose access lines carry no token (module level: workers pickle it)."""

    def atoms(self, request, response, request_time):
        atoms = super().atoms(request, response, request_time)
        for key in _SENSITIVE_ATOMS:
            value = atoms.get(key)
            if isinstance(value, str):
                atoms[key] = redact(value)
        return atoms
