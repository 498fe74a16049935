"""The console's files as the service serves them: one origin, no inline code, small."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import httpx

from orchestrator.console.routes import STATIC
from tests.support.apps import client_for, running_app

CONSOLE_CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
}
FIRST_LOAD_BUDGET = 150 * 1024
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def _directives(response: httpx.Response) -> dict[str, str]:
    csp = response.headers["content-security-policy"]
    return dict(part.strip().split(" ", 1) for part in csp.split(";"))


async def test_root_sends_browsers_to_the_console(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        response = await client.get("/")
        assert response.status_code == 307
        assert response.headers["location"] == "/console"


async def test_console_pages_carry_a_strict_content_security_policy(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        for path in ("/console", "/console/app.js", "/console/style.css"):
            response = await client.get(path)
            assert response.status_code == 200, path
            directives = _directives(response)
            for name, value in CONSOLE_CSP.items():
                assert directives[name] == value, (path, name)
            assert "unsafe" not in response.headers["content-security-policy"]
        page = await client.get("/console")
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["x-frame-options"] == "DENY"
        missing = await client.get("/console/nothing.js")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == 404


def test_no_inline_script_or_style_and_no_other_host() -> None:
    for path in STATIC.iterdir():
        text = path.read_text()
        # Nothing from another host (the SVG namespace is a name, never fetched).
        assert not re.search(r"https?://", text.replace(SVG_NAMESPACE, "")), path.name
        if path.suffix == ".html":
            for attributes in re.findall(r"<script\b([^>]*)>", text):
                assert "src=" in attributes, path.name
            assert not re.search(r"\son[a-z]+\s*=", text), path.name
            assert not re.search(r"\sstyle\s*=", text), path.name
            assert "<style" not in text, path.name
        if path.suffix == ".js":
            # CSP forbids them anyway; the console never builds markup from strings.
            for construct in (
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "new Function",
            ):
                assert construct not in text, (path.name, construct)
            assert "localStorage" not in text, path.name  # no token kept by the page
            assert "sessionStorage" not in text, path.name


def test_every_module_the_console_imports_is_served() -> None:
    names = {path.name for path in STATIC.iterdir()}
    for path in STATIC.glob("*.js"):
        for target in re.findall(r'from "\./([^"]+)"', path.read_text()):
            assert target in names, (path.name, target)
    index = (STATIC / "index.html").read_text()
    preloaded = set(re.findall(r'href="/console/([^"]+\.js)"', index))
    modules = {path.name for path in STATIC.glob("*.js")} - {"app.js"}
    assert preloaded == modules  # every module fetched at once, no waterfall


async def test_first_load_is_under_150_kb_compressed(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        index = await client.get("/console")
        linked = re.findall(r'(?:href|src)="(/console/[^"]+)"', index.text)
        transferred = 0
        for path in ["/console", *linked]:
            request = client.build_request("GET", path, headers={"Accept-Encoding": "gzip"})
            response = await client.send(request, stream=True)
            body = b"".join([chunk async for chunk in response.aiter_raw()])
            await response.aclose()
            assert response.status_code == 200, path
            if len(body) > 1024:
                assert response.headers["content-encoding"] == "gzip", path
                assert len(gzip.decompress(body)) > len(body)
            transferred += len(body)
        assert len(linked) >= 10
        assert transferred < FIRST_LOAD_BUDGET


async def test_the_console_version_names_every_file_it_serves(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        first = await client.get("/console/version.json")
        again = await client.get("/console/version.json")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    version = first.json()["version"]
    assert re.fullmatch(r"[0-9a-f]{16}", version)
    assert again.json()["version"] == version
