"""/docs works with the network cut off: every asset is served by Pulse itself (issue 14)."""
from __future__ import annotations

import re


async def test_docs_page_references_no_other_host(client):
    response = await client.get("/docs")
    assert response.status_code == 200
    html = await response.get_data(as_text=True)
    assert "swagger-ui" in html
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+", html, re.IGNORECASE), html
    assert "<script>" not in html  # no inline script: a strict CSP (script-src 'self') allows it
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(await asset.get_data()) > 0
    init = await (await client.get("/docs/assets/init.js")).get_data(as_text=True)
    assert '"/openapi.json"' in init and "validatorUrl: null" in init


async def test_docs_assets_serve_only_what_the_page_needs(client):
    bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["Content-Type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in await bundle.get_data()
    for name in ("LICENSE", "..%2F__init__.py", "swagger-editor.js"):
        assert (await client.get(f"/docs/assets/{name}")).status_code == 404


async def test_openapi_document_names_the_installed_version(client):
    from quart_app.resources import version

    spec = await (await client.get("/openapi.json")).get_json()
    assert spec["info"]["version"] == version()
    assert not any(path.startswith("/docs") for path in spec["paths"])
