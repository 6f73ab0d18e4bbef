"""One base exception; every REST error leaves the service as ``{"detail": …}``."""
from __future__ import annotations


class PulseError(Exception):
    """Base of every error Pulse raises on purpose. ``status`` is the HTTP status it maps to."""

    status = 500

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status


class ConfigError(PulseError):
    """A bad or missing environment variable; raised at start, names the variable."""


class BadRequest(PulseError):
    status = 400


class Unauthorized(PulseError):
    status = 401


class Forbidden(PulseError):
    status = 403


class NotFound(PulseError):
    status = 404


class Unprocessable(PulseError):
    status = 422


class TooManyRequests(PulseError):
    status = 429


class ServiceUnavailable(PulseError):
    status = 503
