"""The gateway's server span for each HTTP request.

It continues the caller's `traceparent` header (or starts a trace); the gRPC
calls the request makes are client spans inside it (OpenTelemetry's gRPC
client interceptors on the gateway's channels) and send the trace upstream.
A small middleware rather than OpenTelemetry's aiohttp-server package, whose
middleware only works once its instrumentor has patched aiohttp globally.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.gateway.metrics import route_of

_tracer = trace.get_tracer(__name__)


@web.middleware
async def trace_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = route_of(request)
    with _tracer.start_as_current_span(
        f"{request.method} {route}",
        context=propagate.extract(request.headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            response = await handler(request)
        except web.HTTPException as refused:
            _answered(span, refused.status)
            raise
        except Exception:  # aiohttp answers it 500
            _answered(span, 500)
            raise
        _answered(span, response.status)
        return response


def _answered(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
