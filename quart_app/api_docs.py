"""``/docs``: Swagger UI over ``/openapi.json``, served from this process (issue 14).

quart-schema's own page loads Swagger UI from a public CDN, so it is blank offline or under a
strict Content-Security-Policy. The assets come from the ``swagger-ui-py`` package (it vendors
the Swagger UI release it names); the page has no inline script, so ``script-src 'self'``
allows it, and turns off the validator badge (a request to a public host).
"""
from __future__ import annotations

import importlib.resources

from quart import Blueprint, Response, send_file
from quart_schema import hide

from .errors import NotFound

bp = Blueprint("api_docs", __name__)

# The only files the page needs, with their types (no directory listing of the package).
ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Pulse API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/init.js"></script>
</body>
</html>
"""

INIT = """SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  showExtensions: true,
  showCommonExtensions: true
});
"""


def _assets():
    return importlib.resources.files("swagger_ui") / "static"


@bp.get("/docs")
@hide
async def docs_page():
    return Response(PAGE, content_type="text/html; charset=utf-8")


@bp.get("/docs/assets/init.js")
@hide
async def docs_init():
    return Response(INIT, content_type="text/javascript; charset=utf-8")


@bp.get("/docs/assets/<name>")
@hide
async def docs_asset(name: str):
    content_type = ASSETS.get(name)
    if content_type is None:
        raise NotFound("Not found")
    with importlib.resources.as_file(_assets() / name) as path:
        response = await send_file(path, mimetype=content_type, conditional=True)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
