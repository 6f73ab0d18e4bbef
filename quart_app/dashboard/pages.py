"""The dashboard page (DESIGN §4, §12): ``GET /``, the files under ``static/``, ``GET /me``, and
the way in.

The page authenticates with the ``access_token`` cookie (HttpOnly, so no script can read it; the
same-origin WebSocket, EventSource and fetch send it by themselves). In production the host
application sets that cookie. In development and the demo, a link sets it:

* ``GET /?token=<jwt>`` stores a valid token in the cookie and redirects to ``/`` without it, so
  the token leaves the address bar and the history (and never reaches a log: see ``logs.py``);
* ``GET /dev/login?user=N`` mints a token for user N first (``APP_ENV=development`` only).

``GET /me`` tells the page who it is (the cookie is unreadable from JavaScript).
"""
from __future__ import annotations

import time
from pathlib import PurePosixPath
from urllib.parse import urlencode

from quart import Blueprint, Response, redirect, request, send_file

from ..realtime.protocol import parse_offset
from ..realtime.auth import Principal, mint_token
from ..errors import BadRequest, NotFound, Unauthorized
from ..resources import static_dir
from ..web import current_principal, services

bp = Blueprint("pages", __name__)

COOKIE = "access_token"
DEV_TOKEN_TTL_SECONDS = 12 * 3600

# Module scripts need a JavaScript MIME type (browsers refuse `import` of anything else); the
# platform's mimetypes table varies, so the types served are pinned here. Text types get
# `; charset=utf-8` from the response itself.
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain",
}
# Node's tests, package files and installed dev dependencies live under static/ but are no part
# of the page; the client package's modules (static/client/*.js) are, as /static/client/….
HIDDEN_PREFIXES = (("js", "tests"), ("package.json",), ("client", "tests"),
                   ("client", "node_modules"), ("client", "package.json"),
                   ("client", "package-lock.json"), ("client", "tsconfig.json"))


async def _file(relative: str) -> Response:
    """A file under static/ with its pinned type; 404 for anything else (dotfiles, tests, ..)."""
    pure = PurePosixPath(relative)
    parts = pure.parts
    if (not parts or pure.is_absolute()
            or any(p in ("..", ".") or p.startswith(".") or "\\" in p for p in parts)
            or any(parts[:len(prefix)] == prefix for prefix in HIDDEN_PREFIXES)):
        raise NotFound("Not found")
    root = static_dir()
    path = root.joinpath(*parts)
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if (content_type is None or not path.is_file()
            or not path.resolve().is_relative_to(root.resolve())):
        raise NotFound("Not found")
    response = await send_file(path, mimetype=content_type, conditional=True)
    # Revalidate every time (ETag): no build step means no hashed names to cache forever.
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _here_without(*names: str) -> str:
    """``/`` plus the current query minus ``names`` (``?transport=sse`` survives a sign-in)."""
    kept = [(k, v) for k, v in request.args.items(multi=True) if k not in names]
    return "/" + (f"?{urlencode(kept)}" if kept else "")


def _signed_in(token: str, principal: Principal, location: str) -> Response:
    response = redirect(location, 303)
    response.set_cookie(
        COOKIE, token,
        max_age=max(0, int(principal.expires_at - time.time())),
        path="/", httponly=True, samesite="Lax", secure=_served_over_tls())
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/")
async def index():
    """The dashboard; with ``?token=`` it first moves a valid token into the cookie."""
    token = request.args.get("token")
    if token is not None:
        try:
            principal = services().tokens.verify(token)
        except Unauthorized:
            # The page then says why it shows "sign in" rather than the dashboard.
            response = redirect(_here_without("token") + "#signin=invalid", 303)
            response.headers["Referrer-Policy"] = "no-referrer"
            return response
        return _signed_in(token, principal, _here_without("token"))
    return await _file("index.html")


def _served_over_tls() -> bool:
    """HTTPS here, or (with PULSE_TRUST_PROXY) at the TLS-terminating proxy in front."""
    if request.scheme in ("https", "wss"):
        return True
    if services().settings.edge.trust_proxy:
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return forwarded == "https"
    return False


@bp.get("/static/<path:path>")
async def static_file(path: str):
    return await _file(path)


@bp.get("/dev/login")
async def dev_login():
    """Development only: mint a token for ``?user=N`` (default 1) and sign the browser in."""
    settings = services().settings
    if settings.production:
        raise NotFound("Not found")
    raw = request.args.get("user", "1")
    user_id = parse_offset(raw)
    if not user_id:
        raise BadRequest("'user' must be a positive integer user id")
    token = mint_token(settings.jwt_secret, user_id, ttl_seconds=DEV_TOKEN_TTL_SECONDS)
    principal = services().tokens.verify(token)
    return _signed_in(token, principal, _here_without("user"))


@bp.get("/me")
async def me():
    """Who the caller is: the page needs its user id for its own channels."""
    principal = current_principal()
    return {"user_id": principal.user_id, "name": principal.name,
            "projects": sorted(principal.projects), "expires_at": int(principal.expires_at)}
