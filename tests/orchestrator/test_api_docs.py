"""/docs (Swagger UI) and /redoc are served from this server: every script, stylesheet, icon and font the pages
load is on this server (they loaded Swagger UI from a CDN, which an offline server cannot reach)."""

import re

import pytest

pytest.importorskip("fastapi_offline", reason="the local API docs need fastapi-offline (pip install '.[api]')")

# what a page loads: src= / href= attributes, the spec's `url:` in the inline script, and url(...) in stylesheets
LOADED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|\burl\s*:\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")


def loaded(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in LOADED.finditer(text)]


def is_local(url: str) -> bool:
    return url.startswith("data:") or not re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", url, re.I)


def test_docs_and_redoc_load_only_local_files(make_client):
    client = make_client()
    for page in ("/docs", "/redoc"):
        answer = client.get(page)
        assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
        urls = loaded(answer.text)
        assert [u for u in urls if not is_local(u)] == [], (page, urls)
        assert "https://" not in answer.text and "http://" not in answer.text, answer.text
        assets = [u for u in urls if u.endswith((".js", ".css", ".png"))]
        assert any(u.endswith(".js") for u in assets), answer.text
        for asset in assets:  # each one answered by this server
            got = client.get(asset)
            assert got.status_code == 200 and len(got.content) > 1000, asset
            if asset.endswith(".css"):
                assert [u for u in loaded(got.text) if not is_local(u)] == [], asset
    assert "/openapi.json" in loaded(client.get("/docs").text)
    assert client.get("/openapi.json").json()["info"]["title"] == "Strato"
