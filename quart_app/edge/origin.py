"""Which browser origins may use the service (docs/configuration.md, ``PULSE_ALLOWED_ORIGINS``).

A browser attaches ``Origin`` to every WebSocket handshake and to cross-site requests, and sends
the ``access_token`` cookie with them whatever page started them: without a check, any site a
signed-in user visits could open ``/ws`` in that user's name and read their ``user:`` channels
(cross-site WebSocket hijacking). So:

* a WebSocket handshake whose ``Origin`` is neither the service's own (its ``Host``) nor allowed
  is refused with 403, and so is a request that carries the cookie from such an origin;
* requests without ``Origin`` (servers, curl, native apps) are not affected;
* allowed origins get CORS headers, with credentials, on REST, ``/sse`` and ``/history``.
"""
from __future__ import annotations

from typing import Mapping
from urllib.parse import urlsplit

CORS_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-API-Key"
CORS_ALLOW_METHODS = "GET, POST, OPTIONS"
CORS_MAX_AGE = "600"


class OriginPolicy:
    __slots__ = ("exact", "suffixes", "any", "trust_proxy")

    def __init__(self, allowed: tuple[str, ...], trust_proxy: bool = False) -> None:
        self.any = "*" in allowed
        self.exact = frozenset(o for o in allowed if "*" not in o)
        # "https://*.example.com" -> ("https://", ".example.com")
        self.suffixes = tuple((o.split("*", 1)[0], o.split("*", 1)[1])
                              for o in allowed if o != "*" and "*" in o)
        self.trust_proxy = trust_proxy

    def listed(self, origin: str) -> bool:
        """Allowed by ``PULSE_ALLOWED_ORIGINS`` (the service's own origin aside)."""
        origin = origin.lower()
        if self.any or origin in self.exact:
            return True
        return any(origin.startswith(scheme) and origin.endswith(suffix)
                   and len(origin) > len(scheme) + len(suffix)
                   for scheme, suffix in self.suffixes)

    def own(self, origin: str, headers: Mapping[str, str]) -> bool:
        """``Origin`` names this service: its host and port are the request's ``Host`` (or,
        behind a trusted proxy, ``X-Forwarded-Host``)."""
        try:
            netloc = urlsplit(origin).netloc.lower()
        except ValueError:
            return False
        hosts = {headers.get("host", "").lower()}
        if self.trust_proxy and headers.get("x-forwarded-host"):
            hosts.add(headers["x-forwarded-host"].split(",")[0].strip().lower())
        if netloc in hosts:
            return True
        # Host may carry the default port the Origin leaves out, or the reverse.
        scheme = origin.split(":", 1)[0].lower()
        default = {"http": "80", "https": "443"}.get(scheme)
        return default is not None and any(
            netloc == h.removesuffix(f":{default}") or h == f"{netloc}:{default}" for h in hosts)

    def refuses(self, headers: Mapping[str, str], websocket: bool) -> str | None:
        """The 403 detail for a request this policy refuses, else None. ``headers``: lower-case
        names."""
        origin = headers.get("origin")
        if origin is None:
            return None
        if not websocket and "access_token=" not in headers.get("cookie", ""):
            return None  # not credentialed by the cookie: nothing ambient to abuse
        if origin != "null" and (self.own(origin, headers) or self.listed(origin)):
            return None
        return (f"Origin {origin[:200]!r} is not allowed: add it to PULSE_ALLOWED_ORIGINS "
                "(see docs/configuration.md)")

    def cors_headers(self, origin: str | None) -> list[tuple[str, str]]:
        """CORS headers for a response to ``origin`` (an allowed cross origin), else none."""
        if not origin or origin == "null" or not self.listed(origin):
            return []
        return [("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Vary", "Origin")]

    def preflight_headers(self, origin: str | None) -> list[tuple[str, str]]:
        base = self.cors_headers(origin)
        if not base:
            return []
        return base + [("Access-Control-Allow-Methods", CORS_ALLOW_METHODS),
                       ("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS),
                       ("Access-Control-Max-Age", CORS_MAX_AGE)]
