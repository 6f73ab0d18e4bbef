"""Is a parsed JSON value one every consumer can store and parse? (issue 12)

Shared by the built-in app's ingest (:mod:`quart_app.dashboard.events`) and the generic publish
API (:mod:`quart_app.publish_api`): JSON text can carry what PostgreSQL, UTF-8 or a browser
cannot, and both refuse it with a 422 naming where it is.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

MIN_INT, MAX_INT = -(2**63), 2**63 - 1   # PostgreSQL BIGINT
MAX_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def json_problem(value: Any) -> str | None:
    """The first reason ``value`` is not JSON that every consumer can store and parse, as
    ``where: what`` (``data.items[2].name: text holds a NUL character``); None if there is none.

    Parsed JSON text can hold what PostgreSQL, UTF-8 or a browser refuse (issue 12): NUL
    (PostgreSQL text and JSONB have none), lone surrogates (``"\\ud800"`` has no UTF-8 form),
    non-finite numbers (``1e400`` parses to Infinity; ``NaN`` is Python's extension), integers
    past BIGINT, and nesting deeper than :data:`MAX_DEPTH`. Iterative, so depth costs no stack;
    nothing it reports echoes the offending text.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        where = path or "body"
        if isinstance(item, (dict, list, tuple)):
            if depth > MAX_DEPTH:
                return f"{where}: nested more than {MAX_DEPTH} levels deep"
            if isinstance(item, dict):
                children = []
                for key in item:
                    if not isinstance(key, str):
                        return f"{where}: not a JSON object key: {type(key).__name__}"
                    problem = _text_problem(key)
                    if problem is not None:
                        return f"{where}: a key {problem}"
                    children.append((item[key], _member(path, key), depth + 1))
            else:
                children = [(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))  # depth first, in document order
        elif isinstance(item, str):
            problem = _text_problem(item)
            if problem is not None:
                return f"{where}: text {problem}"
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                return f"{where}: integer out of range (-2^63 to 2^63-1)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where}: not a finite number (NaN or Infinity)"
        else:
            return f"{where}: not a JSON value: {type(item).__name__}"
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character"
    if not text.isascii() and _SURROGATE.search(text):
        return "holds a lone surrogate (not UTF-8)"
    return None


def _member(path: str, key: str) -> str:
    if _SEGMENT.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key[:64])}]"
