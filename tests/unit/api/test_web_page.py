"""The web page at `/`: served from the package without a key, under a Content-Security-Policy
that allows no inline script and no other origin (the browser tests drive it:
tests/integration/test_web.py)."""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.testclient import TestClient

from deploy.api.auth import ApiKeyMiddleware, ApiKeys
from deploy.config.settings import AuthSettings
from deploy.web import STATIC, page_routes

KEY = "a-key-of-sixteen-chars"


def _client() -> TestClient:
    app = ApiKeyMiddleware(
        Starlette(routes=page_routes()), ApiKeys([KEY]), AuthSettings().open_paths
    )
    return TestClient(app)


def test_the_page_and_its_files_need_no_key_and_carry_the_policy() -> None:
    client = _client()
    for path, kind in [
        ("/", "text/html"),
        ("/static/app.js", "javascript"),
        ("/static/style.css", "text/css"),
    ]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"]
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/../__init__.py").status_code in (401, 404)  # never the source


def test_the_page_has_no_inline_script_or_handler() -> None:
    html = (STATIC / "index.html").read_text()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts
    # relative paths: the page works under a Serve route prefix too
    assert all('src="static/' in attrs and not body.strip() for attrs, body in scripts)
    assert '"/static' not in html
    assert not re.search(r"\son[a-z]+=", html)  # no onclick= and the like
    assert "style=" not in html


def test_the_page_links_the_openapi_document() -> None:
    from deploy.web import STATIC

    html = (STATIC / "index.html").read_text()
    assert 'href="openapi.json"' in html  # relative: it works under a route prefix
