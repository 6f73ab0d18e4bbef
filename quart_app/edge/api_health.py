"""Liveness, readiness, Prometheus metrics and the admin stats endpoint."""
from __future__ import annotations

import asyncio

from quart import Blueprint, Response

from ..web import require_api_key, services

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
    results = dict(await asyncio.gather(*(_check(name, probe)
                                          for name, probe in svc.readiness.items())))
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


@bp.get("/admin/stats")
async def admin_stats():
    """Connection statistics in seed 000's ``get_stats`` shape for this process (API key), and
    ``cluster``: the same figures summed over every live process (realtime/cluster.py)."""
    require_api_key()
    svc = services()
    return {**svc.hub.get_stats(), "cluster": await svc.cluster.stats()}
