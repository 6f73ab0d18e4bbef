"""Liveness, readiness, Prometheus metrics and the admin stats endpoint."""
from __future__ import annotations

import asyncio
import hmac

from quart import Blueprint, Response, request

from .errors import Unauthorized
from .web import services

bp = Blueprint("health", __name__)

READY_TIMEOUT_SECONDS = 2.0


@bp.get("/healthz")
async def healthz():
    """Liveness: the process is up and its event loop answers."""
    return {"status": "ok"}


async def _check(name: str, probe) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(probe(), READY_TIMEOUT_SECONDS)
        return name, None
    except Exception as exc:  # any failure means not ready; the reason is reported
        return name, f"{name} unreachable: {type(exc).__name__}"


@bp.get("/readyz")
async def readyz():
    """Readiness: the database and the broker (Redis, when configured) answer."""
    svc = services()
    checks = [_check("database", svc.db.ping), _check("redis" if svc.using_redis else "broker",
                                                      svc.broker.ping)]
    results = dict(await asyncio.gather(*checks))
    failures = [reason for reason in results.values() if reason]
    if svc.shutting_down:
        failures.append("shutting down")
    if not svc.listener.running:
        failures.append("listener not running")
    body = {"status": "ready" if not failures else "unavailable",
            "checks": {name: ("ok" if reason is None else reason)
                       for name, reason in results.items()}}
    if failures:
        body["detail"] = "; ".join(failures)
        return body, 503
    return body


@bp.get("/metrics")
async def metrics():
    return Response(services().metrics.render(), content_type="text/plain; version=0.0.4")


def require_api_key() -> None:
    expected = services().settings.api_key
    given = request.headers.get("X-API-Key", "")
    if not expected:
        raise Unauthorized("Ingest is disabled: PULSE_API_KEY is not set")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("Missing or invalid X-API-Key")


@bp.get("/admin/stats")
async def admin_stats():
    """Connection statistics in seed 000's ``get_stats`` shape (API key)."""
    require_api_key()
    return services().hub.get_stats()
