"""Pulse: a realtime dashboard service.

``create_app()`` is the one wiring point: it reads the settings, builds the services (database,
broker, hub, listener) and registers the blueprints. Data flows broker -> listener -> hub ->
outbox -> transport (``transport_ws`` / ``transport_sse``).
"""
from __future__ import annotations

import logging

from quart import Quart, Response, has_websocket_context, request, websocket
from werkzeug.exceptions import HTTPException
from werkzeug.routing.exceptions import WebsocketMismatch
from quart_schema import QuartSchema, RequestSchemaValidationError
from redis.exceptions import RedisError

from .config import Settings, load_settings
from .errors import PulseError
from .services import Services

__all__ = ["create_app"]

log = logging.getLogger("pulse")


def create_app(settings: Settings | None = None) -> Quart:
    """Build the Quart app. Raises ConfigError (naming the variable) for a bad environment,
    InstallationError for an installed package that lacks its sql/ or static/ files."""
    from . import logs, resources
    from .edge import hypercorn_hooks

    settings = settings or load_settings()
    logs.configure(settings.log_level)
    resources.check()
    hypercorn_hooks.install(deflate=settings.ws_deflate)

    app = Quart(__name__, static_folder=None)
    # /docs is api_docs.py's page, served from local assets (quart-schema's loads a CDN).
    QuartSchema(app, openapi_path="/openapi.json", swagger_ui_path=None, redoc_ui_path=None,
                scalar_ui_path=None,
                info={"title": "Pulse", "version": resources.version()})
    app.json.sort_keys = False  # after QuartSchema, which installs its own JSON provider
    _skip_conversion_for_plain_values(app)
    from .dashboard import channels
    from .realtime import namespaces

    builtin = namespaces.Registry(channels.NAMESPACES)
    namespaces.install(namespaces.load_file(settings.namespaces_file, builtin)
                       if settings.namespaces_file else builtin)
    svc = Services(settings)
    if not hypercorn_hooks.status["installed"]:
        svc.metrics.edge_fallbacks = 1
    app.extensions["pulse"] = svc

    for blueprint in _blueprints():
        app.register_blueprint(blueprint)
    for install in _installers():
        install(app, svc)
    _register_error_handlers(app)

    @app.before_serving
    async def _start() -> None:
        await svc.start()

    @app.after_serving
    async def _stop() -> None:
        await svc.stop()

    return app


def _blueprints():
    from . import api_docs, publish_api
    from .dashboard import api as api_dashboard, ingest, pages
    from .edge import api_health, api_history, api_presence, transport_sse, transport_ws

    return [api_health.bp, transport_ws.bp, transport_sse.bp, api_history.bp, api_presence.bp,
            api_dashboard.bp, ingest.bp, publish_api.bp, pages.bp, api_docs.bp]


def _installers():
    """Modules that add blueprints, background jobs or the stats provider to the services."""
    from .dashboard import api as api_dashboard
    from .edge import http_guard, transport_ws

    return [http_guard.install, transport_ws.install, api_dashboard.install]


def _skip_conversion_for_plain_values(app: Quart) -> None:
    """Send dicts and lists straight to the JSON provider.

    quart-schema wraps ``make_response`` and runs every result through pydantic, building a new
    ``TypeAdapter`` for each plain dict (two per request, ~0.3 ms: a sixth of an ingest's CPU).
    Models still take its path.
    """
    converting = app.make_response
    plain = getattr(converting, "__wrapped__", None)
    if plain is None:  # pragma: no cover - quart-schema changed its wrapper
        return

    async def make_response(result):
        value = result[0] if isinstance(result, tuple) else result
        if isinstance(value, (dict, list, str, bytes, Response)):
            return await plain(result)
        return await converting(result)

    app.make_response = make_response  # type: ignore[method-assign]


def _register_error_handlers(app: Quart) -> None:
    @app.errorhandler(PulseError)
    async def _pulse_error(error: PulseError):
        return {"detail": error.detail}, error.status

    @app.errorhandler(RedisError)
    async def _broker_down(error: RedisError):
        return {"detail": f"Broker unavailable: {type(error).__name__}"}, 503

    @app.errorhandler(RequestSchemaValidationError)
    async def _validation_error(error: RequestSchemaValidationError):
        return {"detail": _describe_validation(error.validation_error)}, 422

    @app.errorhandler(404)
    async def _not_found(_error):
        return {"detail": "Not found"}, 404

    @app.errorhandler(405)
    async def _method_not_allowed(_error):
        return {"detail": "Method not allowed"}, 405

    @app.errorhandler(500)
    async def _internal(_error):
        return {"detail": "Internal server error"}, 500

    @app.errorhandler(WebsocketMismatch)
    async def _websocket_mismatch(_error):
        # An upgrade to an HTTP route runs in a websocket context (no `request` there).
        path = websocket.path if has_websocket_context() else request.path
        if path == "/ws":
            return {"detail": "This endpoint takes a WebSocket upgrade (Upgrade: websocket)"}, 400
        return {"detail": "This endpoint does not take a WebSocket upgrade"}, 400

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException):
        """Every other HTTP error Quart raises (400, 413, …) as JSON too; redirects as they are."""
        if error.code is None or error.code < 400:
            return error
        return {"detail": error.description or error.name}, error.code


def _describe_validation(error) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        parts = []
        for item in errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "__root__")
            parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        if parts:
            return "; ".join(parts)
    return str(error)
