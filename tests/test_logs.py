"""logs.py: PULSE_LOG_LEVEL, access lines as fields with the token redacted, and no ANSI or
duplicate fields from libraries (issue 14)."""
from __future__ import annotations

import json
import logging

import pytest

from quart_app import logs
from quart_app.config import load_settings
from quart_app.errors import ConfigError


def format_record(msg: str, *args, **extra) -> dict:
    record = logging.LogRecord("databases", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return json.loads(logs.JsonFormatter().format(record))


def test_library_colour_fields_and_escapes_are_dropped():
    line = format_record("Connected to database %s", "\x1b[1msqlite:///x.db\x1b[0m",
                         color_message="Connected to database \x1b[1m%s\x1b[0m")
    assert line["msg"] == "Connected to database sqlite:///x.db"
    assert "color_message" not in line
    assert "\x1b" not in json.dumps(line) and "\\u001b" not in json.dumps(line)


def test_log_level_is_validated_and_named():
    assert load_settings({}).log_level == "INFO"
    assert load_settings({"PULSE_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert load_settings({"PULSE_LOG_LEVEL": "warn"}).log_level == "WARNING"
    with pytest.raises(ConfigError, match="PULSE_LOG_LEVEL"):
        load_settings({"PULSE_LOG_LEVEL": "chatty"})


def test_configure_sets_the_handler_level():
    root = logging.getLogger()
    before = root.level
    try:
        logs.configure("WARNING")
        handler = next(h for h in root.handlers if getattr(h, "_pulse", False))
        assert handler.level == logging.WARNING
        logs.configure("DEBUG")
        assert handler.level == logging.DEBUG and root.level == logging.DEBUG
    finally:
        logs.configure("INFO")
        root.setLevel(before)


def test_access_fields_are_structured_and_redacted():
    scope = {"type": "http", "method": "GET", "path": "/history",
             "query_string": b"channel=mining&token=eyJhbGciOi.eyJzdWIiOi.sig", "headers": [],
             "client": ("10.0.0.7", 51234)}
    response = {"status": 200, "headers": [(b"content-length", b"321")]}
    fields = logs.access_fields(scope, response, 0.0123)
    assert fields == {"method": "GET", "path": "/history?channel=mining&token=[redacted]",
                      "status": 200, "bytes": 321, "duration_ms": 12.3, "kind": "http",
                      "peer": "10.0.0.7:51234"}
    ws = logs.access_fields({**scope, "type": "websocket", "path": "/ws", "query_string": b""},
                            {"status": 101, "headers": []}, 0.001)
    assert ws["method"] == "GET" and ws["path"] == "/ws" and ws["bytes"] is None


async def test_access_line_goes_through_the_json_formatter(caplog):
    from hypercorn.config import Config

    config = Config()
    config.accesslog = logging.getLogger("pulse.access")
    logger = logs.RedactingLogger(config)
    scope = {"type": "http", "method": "POST", "path": "/api/events", "query_string": b"",
             "headers": [], "client": ("127.0.0.1", 1)}
    with caplog.at_level(logging.INFO, logger="pulse.access"):
        await logger.access(scope, {"status": 202, "headers": []}, 0.002)
    record = caplog.records[-1]
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["msg"] == "access" and line["status"] == 202 and line["method"] == "POST"


async def test_opened_websockets_and_streams_are_logged_at_debug(caplog):
    """A line per client per reconnect stays out of INFO; a refused upgrade does not."""
    from hypercorn.config import Config

    config = Config()
    config.accesslog = logging.getLogger("pulse.access")
    logger = logs.RedactingLogger(config)
    ws = {"type": "websocket", "method": "GET", "path": "/ws", "query_string": b"",
          "headers": [], "client": ("127.0.0.1", 1)}
    sse = {**ws, "type": "http", "path": "/sse"}
    with caplog.at_level(logging.INFO, logger="pulse.access"):
        await logger.access(ws, {"status": 101, "headers": []}, 0.001)
        await logger.access(sse, {"status": 200, "headers": []}, 0.001)
        assert caplog.records == []
        await logger.access(ws, {"status": 403, "headers": []}, 0.001)
        assert [r.levelno for r in caplog.records] == [logging.INFO]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="pulse.access"):
        await logger.access(ws, {"status": 101, "headers": []}, 0.001)
    assert [(r.levelno, r.status) for r in caplog.records] == [(logging.DEBUG, 101)]
