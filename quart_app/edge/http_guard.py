"""Origin checks and CORS on the Quart side (REST, ``/sse`` and ``/history`` served by Quart,
and ``/ws`` upgrades that reach Quart); the direct endpoints check the same policy
(:mod:`quart_app.edge.origin`) in :mod:`quart_app.edge.routing`."""
from __future__ import annotations

from quart import Quart, Response, request, websocket

from .origin import OriginPolicy


def install(app: Quart, svc) -> None:
    policy = OriginPolicy(svc.settings.edge.allowed_origins, svc.settings.edge.trust_proxy)
    svc.origins = policy

    def lower(headers) -> dict[str, str]:
        return {k.lower(): v for k, v in headers.items()}

    @app.before_request
    async def _origin_check():
        headers = lower(request.headers)
        origin = headers.get("origin")
        if request.method == "OPTIONS" and "access-control-request-method" in headers:
            allowed = policy.preflight_headers(origin)
            return Response(b"", 204 if allowed else 403, allowed)
        refusal = policy.refuses(headers, websocket=False)
        if refusal is not None:
            svc.metrics.origin_refusals += 1
            return {"detail": refusal}, 403
        return None

    @app.before_websocket
    async def _origin_check_ws():
        refusal = policy.refuses(lower(websocket.headers), websocket=True)
        if refusal is not None:
            svc.metrics.origin_refusals += 1
            return {"detail": refusal}, 403
        return None

    @app.after_request
    async def _cors(response: Response) -> Response:
        for name, value in policy.cors_headers(request.headers.get("Origin")):
            if name == "Vary":
                response.vary.add("Origin")
            else:
                response.headers[name] = value
        return response
