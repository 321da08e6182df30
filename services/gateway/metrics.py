"""The gateway's Prometheus metrics, on its own port's GET /metrics.

`cocreate_gateway_http_requests_total{route, status}` counts every answered
HTTP request by the route it matched (`/rpc`, `/assets/{name}`, …; `unmatched`
for a path the gateway does not serve, so scanners cannot grow the label set)
and its HTTP status. A JSON-RPC error is still HTTP 200 (the error is in the
body); the statuses tell the requests refused whole (408, 413, 429) and the
gateway's own failures (5xx).

Each application has its own registry, for the same reason as the services'
(kit/metrics.py): tests start many gateways in one process.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, generate_latest

from services.kit.metrics import TEXT_FORMAT

UNMATCHED = "unmatched"


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "cocreate_gateway_http_requests_total",
            "HTTP requests the gateway answered, by route and status",
            ["route", "status"],
            registry=self.registry,
        )

    def _count(self, request: web.Request, status: int) -> None:
        self._requests.labels(route_of(request), str(status)).inc()

    @web.middleware
    async def count_requests(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as refused:
            self._count(request, refused.status)
            raise
        except Exception:  # aiohttp answers it 500
            self._count(request, 500)
            raise
        self._count(request, response.status)
        return response

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": TEXT_FORMAT}
        )
