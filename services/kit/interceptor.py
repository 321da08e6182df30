"""The one server interceptor: trace, authenticate, run with the caller set, map
errors, log.

gRPC asyncio interceptors only see the call's metadata, not the handler's own
task, so this interceptor wraps the method's behaviour instead: the wrapper runs
in the handler's context, where the contextvar with the caller is visible.

The RPC's server span starts here too, continuing the caller's `traceparent`
metadata (or starting a trace), rather than in OpenTelemetry's gRPC server
interceptor: that one wraps the handler in its own interceptor, whose span
would end before this one maps the handler's exception to the status the
caller gets, and would record an abort as an error whatever its code. Here
the span covers the whole call, ends with the code actually answered, and
is the current span while the caller's token is checked and the call logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from grpc_status import rpc_status
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.kit import auth, errors, log, tracing

if TYPE_CHECKING:
    from services.kit.metrics import RpcMetrics

# Probes and tools must work without a token.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_log = log.get("requests")
_tracer = trace.get_tracer(__name__)

# Codes that say the service failed, not the caller: the span is an error.
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


class _Undecodable:
    """Stands for a request whose bytes are not a message of the method's type."""


_UNDECODABLE = _Undecodable()


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The method's request deserializer, answering `_Undecodable` instead of
    raising: gRPC would answer UNKNOWN with the exception's class and log its
    traceback, before the token is even looked at. The wrapped behaviour
    turns it into INVALID_ARGUMENT after authenticating the caller."""
    if deserialize is None:
        return None

    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError:
            return _UNDECODABLE

    return tolerant


def _refuse_undecodable(request: Any) -> None:
    if request is _UNDECODABLE:
        refused = errors.InvalidArgument(
            [],
            message="the request is not a valid message of the method's type "
            "(corrupt wire format or a string that is not UTF-8)",
        )
        refused.reason = "UNDECODABLE_REQUEST"
        raise refused


def _open_unary(
    behaviour: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request is _UNDECODABLE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the request is not a valid message of the method's type",
            )
        return await behaviour(request, context)

    return wrapped


def _reset_quietly(reset: Callable[[Any], None], token: Any) -> None:
    """Undo a contextvar change. A stream the client abandoned is closed from
    another context (the event loop's finaliser), where the change was never
    made and there is nothing to undo."""
    with contextlib.suppress(ValueError):
        reset(token)


def _role_of(caller: auth.Caller | None) -> str | None:
    if caller is None:
        return None
    return "visitor" if caller.visitor else caller.role.value


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        *,
        service: str,
        jwt_secret: str,
        token_policy: auth.TokenPolicy | None = None,
        metrics: RpcMetrics | None = None,
    ) -> None:
        self._service = service
        self._metrics = metrics
        self._secret = jwt_secret
        self._token_policy = token_policy or auth.TokenPolicy()
        self._tokens = auth.TokenCache()
        self._domain = f"{service}.cocreate"
        # The wrapped handler of each method, built on its first call: a
        # method's handler never changes once the server has started.
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return handler  # no such method: gRPC answers UNIMPLEMENTED
            wrapped = self._wrapped[method] = self._wrap(method, handler)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        deserializer = _tolerant(handler.request_deserializer)
        if method.startswith(_OPEN_PREFIXES):
            if handler.unary_unary:  # a probe's Check: no token, but no traceback either
                return grpc.unary_unary_rpc_method_handler(
                    _open_unary(handler.unary_unary),
                    request_deserializer=deserializer,
                    response_serializer=handler.response_serializer,
                )
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client-streaming methods are not used by cocreate

    def _wrap_unary(
        self, method: str, behaviour: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._serving(method, request, context):
                return await behaviour(request, context)

        return wrapped

    def _wrap_stream(
        self,
        method: str,
        behaviour: Callable[[Any, grpc.aio.ServicerContext], AsyncGenerator[Any, None]],
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with (
                self._serving(method, request, context),
                contextlib.aclosing(behaviour(request, context)) as items,
            ):
                async for item in items:
                    yield item

        return wrapped

    @contextlib.asynccontextmanager
    async def _serving(
        self, method: str, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[None]:
        """What every call gets around its handler, unary or streaming: its
        server span, the caller's token checked and made the current caller,
        an undecodable request refused, an error answered as its status with
        details, and one log line and one metric."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        caller: auth.Caller | None = None
        metadata = dict(context.invocation_metadata() or ())
        span, attached = self._start_span(method, metadata)
        try:
            caller = self._authenticate(metadata, method)
            _refuse_undecodable(request)
            token = auth.set_caller(caller)
            try:
                yield
            finally:
                _reset_quietly(auth.reset_caller, token)
        except (GeneratorExit, asyncio.CancelledError):
            # The client went away (cancelled, deadline, disconnect): normal.
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            code, status = self._status_for(exc, method, context)
            if status is None:
                raise
            await context.abort_with_status(rpc_status.to_status(status))
        finally:
            self._log_call(method, code, started, caller)
            _end_span(span, code)
            attached.detach()

    def _start_span(
        self, method: str, metadata: dict[str, Any]
    ) -> tuple[trace.Span, tracing.Attached]:
        """The call's server span, in the trace of the caller's `traceparent`
        metadata (a new trace without it), made the current span."""
        parent = propagate.extract(metadata)
        service, _, name = method.lstrip("/").rpartition("/")
        span = _tracer.start_span(
            method.lstrip("/"),
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        return span, tracing.Attached(trace.set_span_in_context(span, parent))

    def _authenticate(self, metadata: dict[str, Any], method: str) -> auth.Caller:
        return auth.verify_token(
            metadata.get("authorization"),
            self._secret,
            self._token_policy,
            method=method,
            cache=self._tokens,
        )

    def _status_for(
        self, exc: Exception, method: str, context: grpc.aio.ServicerContext
    ) -> tuple[grpc.StatusCode, status_pb2.Status | None]:
        """The code to log and the status to answer; None when the call was
        already aborted (the abort exception is passed on as it is)."""
        if isinstance(exc, grpc.aio.AbortError):
            return context.code() or grpc.StatusCode.UNKNOWN, None
        mapped = errors.from_exception(exc)
        if mapped is not None:
            if not isinstance(exc, errors.DomainError):
                _log.warning(
                    "call failed on the infrastructure", extra={"method": method}, exc_info=exc
                )
            return mapped.code, mapped.to_status(self._domain)
        # Our bug, not the caller's: the trace goes to our log, never to the caller.
        _log.error("unhandled error", extra={"method": method}, exc_info=exc)
        return grpc.StatusCode.INTERNAL, errors.internal_status()

    def _log_call(
        self, method: str, code: grpc.StatusCode, started: float, caller: auth.Caller | None
    ) -> None:
        seconds = time.perf_counter() - started
        if self._metrics is not None:
            self._metrics.observe(method, code, seconds)
        _log.info(
            "call",
            extra={
                "service": self._service,
                "method": method,
                "code": code.name,
                "ms": round(seconds * 1000, 2),
                "caller": caller.member_id if caller and not caller.visitor else None,
                "role": _role_of(caller),
            },
        )


def _end_span(span: trace.Span, code: grpc.StatusCode) -> None:
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in _SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()
