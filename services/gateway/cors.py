"""Cross-origin calls from the web pages of other sites: the origins listed in
COCREATE_GATEWAY_CORS_ORIGINS (or `*`) may call the JSON-RPC endpoints; any
other origin gets no CORS headers, so its browser refuses the answer."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web


class Cors:
    def __init__(self, allowed: Sequence[str], request_headers: Sequence[str]) -> None:
        self._allowed = list(allowed)
        self._request_headers = ", ".join(request_headers)

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        allowed = self._allowed
        if not origin or not ("*" in allowed or origin in allowed):
            return
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        if "*" not in allowed:
            response.headers["Vary"] = "Origin"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = self._request_headers
            response.headers["Access-Control-Max-Age"] = "600"

    def add_routes(self, app: web.Application, paths: Sequence[str]) -> None:
        for path in paths:
            app.router.add_route("OPTIONS", path, self.preflight)
        app.on_response_prepare.append(self.add_headers)
