"""The HTTP side: POST /rpc (JSON-RPC 2.0, single or batch), POST /rpc/stream
(one call, answered as NDJSON, one JSON-RPC response per streamed message),
GET /healthz (the gateway is up), GET /readyz (every upstream answers health),
GET /metrics (Prometheus, see services/gateway/metrics.py), GET /methods (every
callable method), GET / (the community web app, see services/gateway/web.py),
GET /console (a small console for trying calls), GET /notifications (a
member's notifications, live, for a browser).

Routing: a method's proto package names its service (`cocreate.votes.v1` →
votes). The `cocreate.ops.v1` methods (dead letters) are served by every
service, so their calls name it in the `X-Cocreate-Service` header.
The `Authorization` header goes upstream as the `authorization` metadata; the
services decide what the caller may do.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from services.gateway import jsonrpc
from services.gateway.jsonrpc import Call, RpcError
from services.gateway.limits import Busy, Limits
from services.gateway.methods import Method, Registry
from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import UPSTREAMS, Settings
from services.gateway.traces import trace_requests
from services.gateway.web import WebApp
from services.kit import channels, log, tracing

SERVICE_HEADER = "X-Cocreate-Service"
NDJSON = "application/x-ndjson"
# How often an open /rpc/stream response checks that its client is still there.
DISCONNECT_CHECK_SECONDS = 1.0
# How long a refused request's unread body is still drained before closing.
LINGER_SECONDS = 0.5
# Deeper JSON than this is refused before anything walks it recursively.
MAX_NESTING = 64

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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond the range of a double")
    return value


def _too_deep() -> RpcError:
    return RpcError(
        jsonrpc.INVALID_REQUEST,
        f"the request nests arrays and objects deeper than {MAX_NESTING} levels",
        {"limit": MAX_NESTING},
    )


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _check_document(document: Any) -> None:
    """Refuses nesting beyond MAX_NESTING and strings holding a lone surrogate
    (a `\\ud800` escape: valid JSON syntax, but not Unicode, so it could
    neither go upstream nor be echoed back). Iterative: depth cannot hurt it."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if _has_surrogate(value):
                raise RpcError(
                    jsonrpc.PARSE_ERROR,
                    "Parse error",
                    {"reason": "a string holds a lone surrogate escape, which is not Unicode"},
                )
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_NESTING:
            raise _too_deep()
        items = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
        for key, item in items:
            if key is not None:
                pending.append((key, depth))
            pending.append((item, depth + 1))


def _parse_body(body: bytes) -> Any:
    """The JSON document, or RpcError(-32700, or -32600 when nested too deep)."""
    try:
        document = json.loads(
            body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite
        )
    except RecursionError:
        raise _too_deep() from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise RpcError(jsonrpc.PARSE_ERROR, "Parse error", {"reason": str(exc)}) from None
    _check_document(document)
    return document


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
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.limits = Limits(
            rate_per_second=settings.rate_limit_per_second,
            burst=settings.rate_limit_burst,
            calls_per_client=settings.max_calls_per_client,
            calls_total=settings.max_calls,
            streams_per_client=settings.max_streams_per_client,
            streams_total=settings.max_streams,
        )

    def _channel(self, target: str) -> grpc.aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            # Spread over every replica the target names (kit/channels.py);
            # OpenTelemetry's client interceptors make each call a client span
            # that sends its `traceparent` upstream.
            channel = channels.aio_channel(target, interceptors=aio_client_interceptors())
            self._channels[target] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

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
                call = self._channel(target).unary_stream(
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
                response = await self._channel(target).unary_unary(
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
        return _parse_body(body)

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
        return _json_response(
            [
                {
                    "method": m.full_name,
                    "serverStreaming": m.server_streaming,
                    "request": m.request_class.DESCRIPTOR.full_name,
                    "response": m.response_class.DESCRIPTOR.full_name,
                }
                for m in self.registry.methods
                if not m.client_streaming
            ]
        )

    async def handle_console(self, request: web.Request) -> web.Response:
        return _page(_PAGE)

    async def handle_notifications_page(self, request: web.Request) -> web.Response:
        return _page(_NOTIFICATIONS_PAGE)

    async def handle_healthz(self, request: web.Request) -> web.Response:
        return _json_response({"status": "ok", "upstreams": dict(self.settings.targets)})

    async def handle_readyz(self, request: web.Request) -> web.Response:
        async def probe(target: str) -> str:
            stub = health_pb2_grpc.HealthStub(self._channel(target))
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.aio.AioRpcError as err:
                return str(err.code().name)
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

        names = list(self.settings.targets)
        states = await asyncio.gather(*(probe(self.settings.targets[n]) for n in names))
        upstreams = dict(zip(names, states, strict=True))
        ready = all(s == "SERVING" for s in states)
        return _json_response(
            {"status": "ready" if ready else "not ready", "upstreams": upstreams},
            200 if ready else 503,
        )

    async def handle_preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def add_cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        allowed = self.settings.cors_origins
        if not origin or not ("*" in allowed or origin in allowed):
            return
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        if "*" not in allowed:
            response.headers["Vary"] = "Origin"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = (
                f"Authorization, Content-Type, {SERVICE_HEADER}"
            )
            response.headers["Access-Control-Max-Age"] = "600"


GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


# A small console for trying calls from a browser.
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cocreate gateway</title>
<style>body{font:14px system-ui;margin:2em;max-width:60em}textarea,input,select{width:100%;
font:13px monospace;margin:.3em 0 1em}pre{background:#f4f4f4;padding:1em;overflow:auto}</style>
</head><body>
<h1>cocreate JSON-RPC 2.0 gateway</h1>
<p>POST <code>/rpc</code> (single or batch), POST <code>/rpc/stream</code> (NDJSON),
GET <code>/methods</code>, <code>/healthz</code>, <code>/readyz</code>.
A member's notifications, live: <a href="notifications">/notifications</a>.
The community web app: <a href="/">/</a>.</p>
<label>method <select id="method"></select></label>
<label>params (protobuf JSON mapping) <textarea id="params" rows="6">{}</textarea></label>
<label>bearer token <input id="token" placeholder="cocreate token --member m1 --role pm"></label>
<label>X-Cocreate-Service (for cocreate.ops.v1) <input id="service" placeholder="votes"></label>
<button id="send">call</button>
<pre id="answer"></pre>
<script>
const $ = (id) => document.getElementById(id);
fetch("methods").then((r) => r.json()).then((methods) => {
  for (const m of methods) {
    const option = document.createElement("option");
    option.textContent = m.method;
    $("method").appendChild(option);
  }
});
$("send").onclick = async () => {
  const headers = {"Content-Type": "application/json"};
  if ($("token").value) headers.Authorization = "Bearer " + $("token").value;
  if ($("service").value) headers["X-Cocreate-Service"] = $("service").value;
  let params;
  try { params = JSON.parse($("params").value || "{}"); }
  catch (e) { $("answer").textContent = "params: " + e; return; }
  const body = JSON.stringify({jsonrpc: "2.0", method: $("method").value, params, id: 1});
  const answer = await fetch("rpc", {method: "POST", headers, body});
  const text = await answer.text();
  try { $("answer").textContent = JSON.stringify(JSON.parse(text), null, 2); }
  catch (e) { $("answer").textContent = text; }
};
</script>
</body></html>
"""


# A member's notifications for a browser: the stored ones (unread first), then
# the new ones live from WatchNotifications on /rpc/stream. When the stream ends
# (the gateway's stream deadline, a restart, an error line) the page resumes
# after the newest id it has, so nothing is missed and nothing shown twice.
# Text from notifications only ever goes in through textContent.
_NOTIFICATIONS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cocreate notifications</title>
<style>body{font:14px system-ui;margin:2em;max-width:60em}input{width:100%;
font:13px monospace;margin:.3em 0 1em}ul{list-style:none;padding:0}
li{padding:.5em;border-bottom:1px solid #ddd}li.unread{background:#eef5ff;font-weight:600}
li.unread::before{content:"\\25CF  ";color:#1a66d6}.meta{color:#666;font-size:12px;
font-weight:normal;margin-left:.5em}#status{color:#666}</style>
</head><body>
<h1>Your notifications</h1>
<p><a href="/">the web app</a> · <a href="console">console</a></p>
<label>member token
<input id="token" placeholder="cocreate token --member m1 --role member"></label>
<button id="connect">connect</button>
<button id="markAll" disabled>mark all read</button>
<span id="unread"></span>
<p id="status">not connected</p>
<ul id="list"></ul>
<script>
const $ = (id) => document.getElementById(id);
const LIST = "cocreate.votes.v1.NotificationService.ListNotifications";
const MARK = "cocreate.votes.v1.NotificationService.MarkNotificationsRead";
const WATCH = "cocreate.votes.v1.NotificationService.WatchNotifications";
const STREAM = "rpc/stream";
const KINDS = {
  NOTIFICATION_KIND_IDEA_STATUS_CHANGED: "idea status",
  NOTIFICATION_KIND_IDEA_MERGED: "idea merged",
  NOTIFICATION_KIND_POINTS_AWARDED: "points",
  NOTIFICATION_KIND_TIER_CHANGED: "tier",
};
// Errors a reconnect cannot fix: the page stops and says so.
const FINAL = new Set(["UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT"]);
let session = null;

const setStatus = (text) => { $("status").textContent = text; };
const showUnread = (s) => { $("unread").textContent = s.unread + " unread"; };
const pause = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
});

function request(s, method, params) {
  return {
    method: "POST",
    headers: {"Content-Type": "application/json", Authorization: "Bearer " + s.token},
    body: JSON.stringify({jsonrpc: "2.0", method, params, id: 1}),
    signal: s.abort.signal,
  };
}

async function rpc(s, method, params) {
  const answer = await fetch("rpc", request(s, method, params));
  const reply = await answer.json();
  if (reply.error) throw new Error(reply.error.message);
  return reply.result;
}

// Shows one notification once (by id); live ones go on top.
function add(s, n, live) {
  if (s.seen.has(n.id)) return;
  const item = document.createElement("li");
  if (!n.read) item.className = "unread";
  const text = document.createElement("span");
  text.textContent = n.text;
  const meta = document.createElement("span");
  meta.className = "meta";
  const when = n.createTime ? new Date(n.createTime).toLocaleString() : "";
  meta.textContent = (KINDS[n.kind] || n.kind) + " \\u00B7 " + when;
  item.append(text, meta);
  if (live) $("list").prepend(item); else $("list").append(item);
  s.seen.set(n.id, item);
  if (BigInt(n.id) > s.newest) s.newest = BigInt(n.id);
  if (live && !n.read) { s.unread += 1; showUnread(s); }
}

async function load(s) {
  let pageToken = "";
  for (let pages = 0; pages < 10; pages++) {
    const page = await rpc(s, LIST, {pageSize: 100, pageToken});
    if (s !== session) return;
    s.unread = Number(page.unreadCount);
    showUnread(s);
    for (const n of page.notifications) add(s, n, false);
    pageToken = page.nextPageToken;
    if (!pageToken) return;
  }
}

// Reads NDJSON lines as they arrive; the last error line (if any) is returned.
async function follow(s, answer) {
  const reader = answer.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  let failure = null;
  for (;;) {
    const {value, done} = await reader.read();
    buffered += decoder.decode(value || new Uint8Array(), {stream: !done});
    let end;
    while ((end = buffered.indexOf("\\n")) >= 0) {
      const line = buffered.slice(0, end).trim();
      buffered = buffered.slice(end + 1);
      if (!line) continue;
      const reply = JSON.parse(line);
      if (reply.error) failure = reply.error;
      else add(s, reply.result.notification, true);
    }
    if (done) return failure;
  }
}

async function watch(s) {
  let backoff = 1000;
  while (!s.abort.signal.aborted) {
    let failure = null;
    try {
      // With nothing seen yet the watch starts from the newest stored one, so
      // what landed since our list is read again once the stream is open.
      const fromNewestStored = s.newest === 0n;
      const answer = await fetch(STREAM, request(s, WATCH, {afterId: s.newest.toString()}));
      if (!answer.ok || !answer.body) throw new Error("HTTP " + answer.status);
      setStatus("live");
      if (fromNewestStored) await load(s);
      failure = await follow(s, answer);
    } catch (e) {
      if (s.abort.signal.aborted) return;
      failure = {message: String(e)};
    }
    const grpcStatus = failure && failure.data ? failure.data.grpcStatus : "";
    if (FINAL.has(grpcStatus)) { setStatus("stopped: " + failure.message); return; }
    // The gateway's stream deadline is the stream's normal end, not a failure.
    if (grpcStatus === "DEADLINE_EXCEEDED") failure = null;
    if (!failure) backoff = 1000;
    setStatus("reconnecting" + (failure ? " (" + failure.message + ")" : "") + " ...");
    await pause(backoff + Math.random() * 500, s.abort.signal);
    if (failure) backoff = Math.min(backoff * 2, 30000);
  }
}

$("connect").onclick = async () => {
  if (session) session.abort.abort();
  const s = {token: $("token").value.trim(), abort: new AbortController(),
             seen: new Map(), newest: 0n, unread: 0};
  session = s;
  $("list").replaceChildren();
  $("unread").textContent = "";
  $("markAll").disabled = true;
  setStatus("loading ...");
  try { await load(s); }
  catch (e) { if (s === session) setStatus("could not list: " + e.message); return; }
  if (s !== session) return;
  $("markAll").disabled = false;
  watch(s);
};

$("markAll").onclick = async () => {
  const s = session;
  if (!s) return;
  try {
    const marked = await rpc(s, MARK, {all: true});
    for (const item of s.seen.values()) item.className = "";
    s.unread = Number(marked.unreadCount);
    showUnread(s);
  } catch (e) { setStatus("could not mark read: " + e.message); }
};
</script>
</body></html>
"""


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


_PAGE_POLICIES: dict[str, str] = {}


def _page(html: str) -> web.Response:
    policy = _PAGE_POLICIES.get(html)
    if policy is None:
        policy = _PAGE_POLICIES[html] = content_security_policy(html)
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
    app.router.add_route("OPTIONS", "/rpc", gateway.handle_preflight)
    app.router.add_route("OPTIONS", "/rpc/stream", gateway.handle_preflight)
    WebApp(settings.dev_tokens, settings.sign_in_url).add_routes(app)
    app.router.add_get("/console", gateway.handle_console)
    app.router.add_get("/notifications", gateway.handle_notifications_page)
    app.router.add_get("/methods", gateway.handle_methods)
    app.router.add_get("/healthz", gateway.handle_healthz)
    app.router.add_get("/readyz", gateway.handle_readyz)
    app.router.add_get("/metrics", metrics.handle_metrics)
    app.on_response_prepare.append(gateway.add_cors_headers)

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
    web.run_app(
        build_app(settings),
        host=host or "127.0.0.1",
        port=int(port),
        print=None,
        shutdown_timeout=math.ceil(settings.deadline_seconds),
    )
