"""The HTTP side: POST /rpc (JSON-RPC 2.0, single or batch), POST /rpc/stream
(one call, answered as NDJSON, one JSON-RPC response per streamed message),
GET /healthz (the gateway is up), GET /readyz (every upstream answers health),
GET /metrics (Prometheus, see services/gateway/metrics.py), GET /methods (every
callable method), GET / (the community web app, see services/gateway/web.py),
GET /console (a small console for trying calls; see pages.py).

Routing: a method's proto package names its service (`cocreate.votes.v1` →
votes). The `cocreate.ops.v1` methods (dead letters) are served by every
service, so their calls name it in the `X-Cocreate-Service` header.
The `Authorization` header goes upstream as the `authorization` metadata; the
services decide what the caller may do.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import message

from services.gateway import jsonrpc, pages
from services.gateway.cors import Cors
from services.gateway.jsonrpc import Call, RpcError
from services.gateway.limits import Busy, Limits
from services.gateway.methods import Method, Registry
from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import UPSTREAMS, Settings
from services.gateway.traces import trace_requests
from services.gateway.upstreams import Upstreams
from services.gateway.web import WebApp
from services.kit import collector, log, tracing

SERVICE_HEADER = "X-Cocreate-Service"
NDJSON = "application/x-ndjson"
# How often an open /rpc/stream response checks that its client is still there.
DISCONNECT_CHECK_SECONDS = 1.0
# How long a refused request's unread body is still drained before closing.
LINGER_SECONDS = 0.5

_log = log.get("gateway")

# Awaited when an upstream stream has opened (its headers arrived).
Opened = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Context:
    """What the HTTP request contributes to each of its calls."""

    metadata: tuple[tuple[str, str], ...]
    service_hint: str | None
    # Who the limits count against: the remote address.
    client: str = ""


def _busy(busy: Busy, *, http_status: int = 200) -> RpcError:
    return jsonrpc.status_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        busy.message,
        http_status=http_status,
        limit=busy.limit,
        retryAfterSeconds=round(busy.retry_after_seconds, 3),
    )


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
    )


class Gateway:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.upstreams = Upstreams(settings.targets)
        self.limits = Limits(
            rate_per_second=settings.rate_limit_per_second,
            burst=settings.rate_limit_burst,
            calls_per_client=settings.max_calls_per_client,
            calls_total=settings.max_calls,
            streams_per_client=settings.max_streams_per_client,
            streams_total=settings.max_streams,
        )

    async def close(self) -> None:
        await self.upstreams.close()

    # --- one call ------------------------------------------------------------

    def _route(self, method: Method, context: Context) -> tuple[str, str]:
        """(service name, gRPC target) for a call."""
        if method.area in UPSTREAMS:
            return method.area, self.settings.targets[method.area]
        hint = (context.service_hint or "").strip().lower()
        if hint in UPSTREAMS:
            return hint, self.settings.targets[hint]
        choices = ", ".join(UPSTREAMS)
        raise RpcError(
            jsonrpc.INVALID_PARAMS,
            "Invalid params",
            {
                "reason": f"{method.package} is served by every service; name one in the "
                f"{SERVICE_HEADER} header ({choices})",
                "fieldViolations": [
                    {"field": SERVICE_HEADER, "description": f"must be one of {choices}"}
                ],
            },
        )

    def _resolve(self, call: Call, context: Context) -> tuple[Method, str, str, message.Message]:
        method = self.registry.find(call.method)
        if method is None or method.client_streaming:
            raise RpcError(
                jsonrpc.METHOD_NOT_FOUND,
                "Method not found",
                {
                    "method": call.method,
                    "reason": "client-streaming methods are not served over JSON-RPC"
                    if method is not None
                    else "no such gRPC method (expected package.Service.Method)",
                },
            )
        upstream, target = self._route(method, context)
        request = jsonrpc.to_request(method.request_class, call.params)
        return method, upstream, target, request

    def _grpc_error(
        self, err: grpc.aio.AioRpcError, method: Method, upstream: str, target: str
    ) -> RpcError:
        failure = jsonrpc.from_grpc(err, upstream=upstream, target=target)
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            deadline = (
                self.settings.stream_deadline_seconds
                if method.server_streaming
                else self.settings.deadline_seconds
            )
            failure.message = (
                f"the {upstream} service did not answer within the gateway's deadline "
                f"of {deadline:g}s"
            )
            failure.data["deadlineSeconds"] = deadline
        return failure

    async def _stream(
        self,
        method: Method,
        target: str,
        request: message.Message,
        context: Context,
        opened: Opened | None = None,
    ) -> AsyncIterator[message.Message]:
        """The upstream's messages; `opened` is awaited once its headers arrived
        (a live stream may send them long before its first message)."""
        try:
            with self.limits.stream(context.client):
                call = self.upstreams.channel(target).unary_stream(
                    method.path,
                    request_serializer=_serialize,
                    response_deserializer=method.response_class.FromString,
                )(
                    request,
                    timeout=self.settings.stream_deadline_seconds,
                    metadata=context.metadata,
                )
                try:
                    if opened is not None:
                        await call.initial_metadata()
                        await opened()
                    async for item in call:
                        yield item
                finally:
                    call.cancel()
        except Busy as busy:  # only opening the slot raises it
            raise _busy(busy) from None

    async def _unary(
        self, method: Method, target: str, request: message.Message, context: Context
    ) -> Any:
        try:
            async with self.limits.call(context.client, self.settings.deadline_seconds):
                response = await self.upstreams.channel(target).unary_unary(
                    method.path,
                    request_serializer=_serialize,
                    response_deserializer=method.response_class.FromString,
                )(request, timeout=self.settings.deadline_seconds, metadata=context.metadata)
        except Busy as busy:
            raise _busy(busy) from None
        return jsonrpc.to_json(response)

    async def _collect(
        self, method: Method, target: str, request: message.Message, context: Context
    ) -> list[Any]:
        limit = self.settings.max_stream_items
        items: list[Any] = []
        async for item in self._stream(method, target, request, context):
            if len(items) == limit:
                raise RpcError(
                    jsonrpc.STREAM_TOO_LONG,
                    f"{method.full_name} streams more than {limit} messages; "
                    "POST /rpc/stream answers them as NDJSON without a limit",
                    {"limit": limit},
                )
            items.append(jsonrpc.to_json(item))
        return items

    async def execute(self, call: Call, context: Context) -> Any:
        """The JSON `result` of one call (a list for a server-streaming method), or RpcError."""
        method, upstream, target, request = self._resolve(call, context)
        if method.endless:
            raise jsonrpc.status_error(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{method.full_name} streams until the caller leaves; call it on POST "
                "/rpc/stream, which answers each message as it comes",
                endpoint="/rpc/stream",
            )
        try:
            if method.server_streaming:
                return await self._collect(method, target, request, context)
            return await self._unary(method, target, request, context)
        except grpc.aio.AioRpcError as err:
            raise self._grpc_error(err, method, upstream, target) from None

    async def answer(self, obj: Any, context: Context) -> dict[str, Any] | None:
        """The response object for one request object (None for a notification)."""
        try:
            call = jsonrpc.parse_call(obj)
        except RpcError as err:
            return jsonrpc.error(jsonrpc.request_id_of(obj), err)
        try:
            response = jsonrpc.result(call.id, await self.execute(call, context))
        except RpcError as err:
            response = jsonrpc.error(call.id, err)
        except Exception:
            _log.exception("call failed", extra={"method": call.method})
            response = jsonrpc.error(call.id, RpcError(jsonrpc.INTERNAL_ERROR, "Internal error"))
        return None if call.is_notification else response

    # --- HTTP ----------------------------------------------------------------

    @staticmethod
    def _context(request: web.Request) -> Context:
        """What the HTTP request gives its calls; RpcError(-32600) for an
        Authorization header gRPC metadata cannot carry (controls, non-ASCII)."""
        authorization = request.headers.get("Authorization")
        if authorization and not all(" " <= ch <= "~" for ch in authorization):
            raise RpcError(
                jsonrpc.INVALID_REQUEST,
                "Invalid Request",
                {"reason": "the Authorization header must be printable ASCII: 'Bearer <jwt>'"},
            )
        metadata = (("authorization", authorization),) if authorization else ()
        return Context(
            metadata=metadata,
            service_hint=request.headers.get(SERVICE_HEADER),
            client=request.remote or "",
        )

    async def _document(self, request: web.Request) -> Any:
        timeout = self.settings.body_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RpcError(
                jsonrpc.INVALID_REQUEST,
                f"request body exceeds the gateway's limit of {self.settings.max_body_bytes} bytes",
                {"limitBytes": self.settings.max_body_bytes},
                http_status=413,
            ) from None
        except TimeoutError:
            raise RpcError(
                jsonrpc.INVALID_REQUEST,
                f"the request body did not arrive within {timeout:g}s",
                {"timeoutSeconds": timeout},
                http_status=408,
            ) from None
        return jsonrpc.parse_document(body)

    def _admit(self, context: Context, calls: int) -> None:
        """The client's rate limit: RpcError with HTTP 429 and when to retry."""
        try:
            self.limits.admit(context.client, calls)
        except Busy as busy:
            raise _busy(busy, http_status=429) from None

    async def _request(self, request: web.Request) -> tuple[Any, Context]:
        """The body's document and the call context, the client's rate limit
        taken (one per call of a batch); RpcError refuses the request whole."""
        document = await self._document(request)
        context = self._context(request)
        self._admit(context, len(document) if isinstance(document, list) else 1)
        return document, context

    async def handle_rpc(self, request: web.Request) -> web.StreamResponse:
        try:
            document, context = await self._request(request)
        except RpcError as err:
            return _refused(_json_response(jsonrpc.error(None, err), err.http_status), err)
        if isinstance(document, list):
            if not document:
                empty = RpcError(
                    jsonrpc.INVALID_REQUEST, "Invalid Request", {"reason": "empty batch"}
                )
                return _json_response(jsonrpc.error(None, empty))
            if len(document) > self.settings.max_batch:
                too_long = RpcError(
                    jsonrpc.INVALID_REQUEST,
                    f"batch of {len(document)} calls exceeds the gateway's limit of "
                    f"{self.settings.max_batch}",
                    {"limit": self.settings.max_batch, "size": len(document)},
                )
                return _json_response(jsonrpc.error(None, too_long))
            answers = await asyncio.gather(*(self.answer(obj, context) for obj in document))
            present = [a for a in answers if a is not None]
            return _json_response(present) if present else web.Response(status=204)
        answer = await self.answer(document, context)
        return web.Response(status=204) if answer is None else _json_response(answer)

    async def handle_stream(self, request: web.Request) -> web.StreamResponse:
        """One call; each streamed message is a line `{"jsonrpc","result","id"}`; an
        error (before or during the stream) is the last line."""
        try:
            document, context = await self._request(request)
            if isinstance(document, list):
                raise RpcError(
                    jsonrpc.INVALID_REQUEST,
                    "Invalid Request",
                    {"reason": "the streaming endpoint takes one call, not a batch"},
                )
            call = jsonrpc.parse_call(document)
        except RpcError as failure:
            refusal = _ndjson_response([jsonrpc.error(None, failure)], failure.http_status)
            return _refused(refusal, failure)
        response = web.StreamResponse(headers={"Content-Type": NDJSON})

        async def opened() -> None:
            # The caller learns the stream is open before its first message.
            if not call.is_notification and not response.prepared:
                await response.prepare(request)

        async def pump() -> None:
            async for line in self._stream_lines(call, context, opened):
                if call.is_notification:
                    continue
                if not response.prepared:
                    await response.prepare(request)
                await _write_line(response, line)

        # A live stream may send nothing for minutes: when the client goes away
        # meanwhile, the upstream call ends now rather than at the stream deadline.
        pumping = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(_until_disconnected(request))
        try:
            await asyncio.wait((pumping, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, watching):
                task.cancel()
            await asyncio.gather(pumping, watching, return_exceptions=True)
        if pumping.cancelled():  # the client went away: nobody reads the answer
            return response if response.prepared else web.Response(status=204)
        pumping.result()  # a failure of the pump itself surfaces here
        if not response.prepared:
            return web.Response(status=204)
        await response.write_eof()
        return response

    async def _stream_lines(
        self, call: Call, context: Context, opened: Opened | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        method: Method | None = None
        upstream = target = ""
        try:
            method, upstream, target, request = self._resolve(call, context)
            if not method.server_streaming:
                yield jsonrpc.result(call.id, await self._unary(method, target, request, context))
                return
            async for item in self._stream(method, target, request, context, opened):
                yield jsonrpc.result(call.id, jsonrpc.to_json(item))
        except RpcError as failure:
            yield jsonrpc.error(call.id, failure)
        except grpc.aio.AioRpcError as err:
            assert method is not None
            yield jsonrpc.error(call.id, self._grpc_error(err, method, upstream, target))

    async def handle_methods(self, request: web.Request) -> web.Response:
        """Every method the gateway can call, for discovery."""
        return _json_response(self.registry.describe())

    async def handle_healthz(self, request: web.Request) -> web.Response:
        return _json_response({"status": "ok", "upstreams": dict(self.settings.targets)})

    async def handle_readyz(self, request: web.Request) -> web.Response:
        upstreams = await self.upstreams.health()
        ready = all(state == "SERVING" for state in upstreams.values())
        return _json_response(
            {"status": "ready" if ready else "not ready", "upstreams": upstreams},
            200 if ready else 503,
        )


GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


async def _until_disconnected(request: web.Request) -> None:
    """Returns once the client's connection is gone (aiohttp only cancels a
    handler for that when the runner enables handler cancellation)."""
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(DISCONNECT_CHECK_SECONDS)


def _serialize(msg: message.Message) -> bytes:
    return msg.SerializeToString()


async def _write_line(response: web.StreamResponse, payload: Any) -> None:
    await response.write(json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n")


def _ndjson_response(lines: list[Any], status: int = 200) -> web.Response:
    body = b"".join(json.dumps(x, ensure_ascii=False).encode("utf-8") + b"\n" for x in lines)
    return web.Response(status=status, body=body, headers={"Content-Type": NDJSON})


def _refused(response: web.Response, err: RpcError) -> web.Response:
    """A request refused whole: 429 says when to retry; 408 and 413 close the
    connection, whose body was not (all) read."""
    if err.http_status == 429 and isinstance(err.data, dict):
        response.headers["Retry-After"] = str(max(1, math.ceil(err.data["retryAfterSeconds"])))
    if err.http_status in (408, 413):
        response.force_close()
    return response


def build_app(settings: Settings, registry: Registry | None = None) -> web.Application:
    tracing.setup("gateway")
    gateway = Gateway(settings, registry or Registry.load())
    metrics = GatewayMetrics()
    # One byte over the limit is enough to know it is exceeded.
    app = web.Application(
        middlewares=[trace_requests, metrics.count_requests],
        client_max_size=settings.max_body_bytes,
        # After answering a request whose body did not all arrive (408, 413),
        # read what is left for at most this long, not aiohttp's 10 s.
        handler_args={"lingering_time": LINGER_SECONDS},
    )
    app[GATEWAY_KEY] = gateway
    app.router.add_post("/rpc", gateway.handle_rpc)
    app.router.add_post("/rpc/stream", gateway.handle_stream)
    cors = Cors(settings.cors_origins, ["Authorization", "Content-Type", SERVICE_HEADER])
    cors.add_routes(app, ["/rpc", "/rpc/stream"])
    WebApp(settings.dev_tokens, settings.sign_in_url).add_routes(app)
    pages.add_routes(app)
    app.router.add_get("/methods", gateway.handle_methods)
    app.router.add_get("/healthz", gateway.handle_healthz)
    app.router.add_get("/readyz", gateway.handle_readyz)
    app.router.add_get("/metrics", metrics.handle_metrics)

    async def close_channels(_app: web.Application) -> None:
        await gateway.close()

    app.on_cleanup.append(close_channels)
    return app


def run() -> None:
    """The `python -m services.gateway` entry point."""
    from services.gateway import settings as settings_module
    from services.kit.config import ConfigError

    log.setup()
    try:
        settings = settings_module.load()
        tracing.setup("gateway")
    except ConfigError as exc:
        raise SystemExit(f"cocreate-gateway: {exc}") from None
    host, _, port = settings.listen_addr.rpartition(":")
    _log.info("serving", extra={"address": settings.listen_addr, "upstreams": settings.targets})
    collector.tune_after_start()
    web.run_app(
        build_app(settings),
        host=host or "127.0.0.1",
        port=int(port),
        print=None,
        shutdown_timeout=math.ceil(settings.deadline_seconds),
    )
