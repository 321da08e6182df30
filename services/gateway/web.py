"""The community web app the gateway serves: plain HTML, ES modules and CSS
from services/gateway/web/ (no build step), at GET / and GET /assets/<file>;
GET /web/config tells the page what this gateway offers; POST /dev/token is
the development sign-in.

The files are read once at start-up and served from memory by name, so no
request path ever reaches the file system. The page talks to POST /rpc and
POST /rpc/stream like any other client; its policy lets it run only its own
files and connect only to this gateway.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from services.kit import auth, config

WEB_ROOT = Path(__file__).resolve().parent / "web"
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
APP_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
# A development sign-in lasts a working day, or the deployment's maximum if shorter.
DEV_TOKEN_SECONDS = 8 * 3600
MAX_MEMBER_ID = 64


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_files(root: Path = WEB_ROOT) -> dict[str, StaticFile]:
    """Every servable file under `root` by its path relative to it."""
    files: dict[str, StaticFile] = {}
    for path in sorted(root.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[path.relative_to(root).as_posix()] = StaticFile(body, content_type, etag)
    return files


def _headers(policy: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        # A token handed over in the URL's fragment goes nowhere else.
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        # Always revalidated (cheaply, by ETag): a new version shows at once.
        "Cache-Control": "no-cache",
    }


def _problem(status: int, message: str, **data: Any) -> web.Response:
    payload = {"error": {"message": message, **data}}
    return web.Response(
        status=status,
        body=json.dumps(payload, ensure_ascii=False).encode(),
        content_type="application/json",
    )


class WebApp:
    def __init__(
        self, dev_tokens: auth.TokenPolicy | None, sign_in_url: str = "", root: Path = WEB_ROOT
    ) -> None:
        self.files = load_files(root)
        self.dev_tokens = dev_tokens
        self.sign_in_url = sign_in_url
        if "index.html" not in self.files:
            raise RuntimeError(f"the web app's index.html is missing from {root}")

    def _serve(self, request: web.Request, name: str) -> web.Response:
        found = self.files.get(name)
        if found is None:
            return _problem(404, f"no such file: /assets/{name}")
        headers = _headers(APP_POLICY)
        headers["ETag"] = found.etag
        if request.headers.get("If-None-Match") == found.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=found.body, content_type=found.content_type, charset="utf-8", headers=headers
        )

    async def handle_index(self, request: web.Request) -> web.Response:
        return self._serve(request, "index.html")

    async def handle_asset(self, request: web.Request) -> web.Response:
        return self._serve(request, request.match_info["name"])

    async def handle_config(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"devSignIn": self.dev_tokens is not None, "signInUrl": self.sign_in_url}
        )

    async def handle_dev_token(self, request: web.Request) -> web.Response:
        """`{"memberId", "role"}` → `{"token", "expiresInSeconds"}`; only in
        development with the development secret (else 404, saying why)."""
        policy = self.dev_tokens
        if policy is None:
            return _problem(
                404,
                "development sign-in is off: this gateway does not run with "
                "COCREATE_ENV=development and the development secret; sign in through "
                "the community's own identity provider",
            )
        try:
            asked = json.loads(await request.read())
        except (UnicodeDecodeError, ValueError):
            return _problem(400, 'the body must be JSON: {"memberId": "...", "role": "member"}')
        if not isinstance(asked, dict):
            return _problem(400, 'the body must be a JSON object: {"memberId", "role"}')
        member_id = asked.get("memberId")
        role = asked.get("role", "member")
        if (
            not isinstance(member_id, str)
            or not member_id.strip()
            or len(member_id) > MAX_MEMBER_ID
            or not member_id.isprintable()
            or member_id != member_id.strip()
        ):
            return _problem(
                400,
                f"memberId must be 1..{MAX_MEMBER_ID} printable characters "
                "without surrounding spaces",
                field="memberId",
            )
        roles = [r.value for r in auth.Role]
        if role not in roles:
            return _problem(400, "role must be one of " + ", ".join(roles), field="role")
        seconds = DEV_TOKEN_SECONDS
        if policy.max_ttl_seconds:
            seconds = min(seconds, policy.max_ttl_seconds)
        token = auth.mint_token(
            member_id,
            role,
            config.DEV_JWT_SECRET,
            seconds,
            issuer=policy.issuer,
            audience=policy.audience,
        )
        return web.json_response({"token": token, "expiresInSeconds": seconds})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.handle_index)
        app.router.add_get("/assets/{name:[A-Za-z0-9_-]+[.][a-z]+}", self.handle_asset)
        app.router.add_get("/web/config", self.handle_config)
        app.router.add_post("/dev/token", self.handle_dev_token)
