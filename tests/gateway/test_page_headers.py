"""Finding 9: the gateway's own page (the console) sends a Content-Security-
Policy that allows exactly its own inline script and style, and refuses to be
framed or to leak its URL."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from tests.gateway.conftest import StartGateway


@pytest.mark.parametrize("path", ["/console"])
async def test_pages_send_a_strict_policy(start_gateway: StartGateway, path: str) -> None:
    gateway = await start_gateway()
    page = await gateway.request("GET", path)
    assert page.status == 200
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    directives = (p.strip() for p in page.headers["Content-Security-Policy"].split(";"))
    policy = {name: value for name, _, value in (d.partition(" ") for d in directives)}
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert "unsafe" not in page.headers["Content-Security-Policy"]
    html = page.body.decode()
    for kind in ("script", "style"):
        bodies = re.findall(rf"<{kind}>(.*?)</{kind}>", html, re.DOTALL)
        assert bodies, f"{path} has no inline {kind}"
        allowed = set(policy[f"{kind}-src"].split())
        for body in bodies:
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in allowed
    # Inline handlers and other script sources would be blocked by the policy.
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html)
    assert "<script src" not in html and "style=" not in html
