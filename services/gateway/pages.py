"""The gateway's own page: GET /console, a small console for trying calls
(html/console.html), served under a policy that lets it run exactly its own
inline script and style. GET /notifications, where a member's notifications
page used to be, now leads to the web app's notifications view, which shows
the same stored and live notifications."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

from aiohttp import web

HTML = Path(__file__).parent / "html"
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def content_security_policy(html: str) -> str:
    """A policy that lets the page run exactly its own inline script and style
    (by their SHA-256) and talk only to this gateway: an injected script or
    style does not run, and no other site may frame the page."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src " + (" ".join(hashes["script"]) or "'none'"),
            "style-src " + (" ".join(hashes["style"]) or "'none'"),
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


@cache
def _page(name: str) -> tuple[str, str]:
    """A page's HTML and its policy, read once."""
    html = (HTML / name).read_text(encoding="utf-8")
    return html, content_security_policy(html)


def page_response(name: str) -> web.Response:
    html, policy = _page(name)
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            "Content-Security-Policy": policy,
            "X-Frame-Options": "DENY",
            # The page's URL (and anything in it) goes nowhere else.
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


async def handle_console(request: web.Request) -> web.Response:
    return page_response("console.html")


async def handle_notifications(request: web.Request) -> web.Response:
    raise web.HTTPFound("/#/notifications")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console", handle_console)
    app.router.add_get("/notifications", handle_notifications)
