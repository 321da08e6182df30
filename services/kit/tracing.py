"""Traces with OpenTelemetry: one TracerProvider per process, set from the
standard OTEL_* variables.

Export is off unless `OTEL_TRACES_EXPORTER` names an exporter (`otlp`,
`console`, …) or an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_EXPORTER_OTLP_PROTOCOL` picks
`grpc` (the default) or `http/protobuf`, and `OTEL_SDK_DISABLED=true` turns the
whole SDK off. `OTEL_SERVICE_NAME` defaults to the service's name.

While nothing is exported, spans are not recorded but every call and event
still gets its trace and span ids: a new trace is not sampled (the
`parentbased_always_off` sampler), so a span costs little more than its ids,
the logs carry the trace id and `traceparent` still goes on to the services
called and into the events written. Once spans are exported, the sampler of
`OTEL_TRACES_SAMPLER` decides (every trace by default) and each SQL statement
is a span too (the asyncpg instrumentation, off otherwise: it costs CPU per
statement).

The trace context travels in gRPC metadata and, as a W3C `traceparent`, in the
event envelope: `current()` is what a producer stamps on its events and
`context_from()` what a consumer continues.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from importlib.metadata import entry_points

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from services.kit import log
from services.kit.config import ConfigError

TRACEPARENT = "traceparent"
_TRACE_CONTEXT = TraceContextTextMapPropagator()
_NOT_WHILE_SILENT = ParentBased(ALWAYS_OFF)


class _Exports(SpanProcessor):
    """Where ended spans go: the processors exporting them, none while export
    is off. Unlike the provider's own list, a processor can be taken out again
    (a test's in-memory exporter)."""

    def __init__(self) -> None:
        self.processors: tuple[SpanProcessor, ...] = ()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self.processors:
            processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self.processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self.processors)


class _WhileExporting(Sampler):
    """The configured sampler while spans are exported; otherwise a new trace
    is not sampled (its ids still flow) and a caller's sampled trace is
    followed, so a service that exports behind one that does not still gets
    the traces its caller chose."""

    def __init__(self, exports: _Exports, configured: Sampler) -> None:
        self._exports = exports
        self._configured = configured

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        sampler = self._configured if self._exports.processors else _NOT_WHILE_SILENT
        return sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"WhileExporting{{{self._configured.get_description()}}}"


_log = log.get("tracing")
_exports = _Exports()
_provider: TracerProvider | None = None


def setup(service: str) -> None:
    """Set the process's TracerProvider from the OTEL_* variables, once: a
    process runs one service (tests run several in one process; the first
    names the resource). ConfigError for an exporter that is not installed."""
    global _provider
    if _provider is not None:
        return
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"cocreate-{service}"}))
    provider.sampler = _WhileExporting(_exports, provider.sampler)
    provider.add_span_processor(_exports)
    trace.set_tracer_provider(provider)
    _provider = provider
    exporters = exporters_from_environment()
    for exporter in exporters:
        export_to(BatchSpanProcessor(exporter))
    _log.info(
        "traces",
        extra={
            "exporters": [f"{type(e).__module__}.{type(e).__name__}" for e in exporters],
            "sampler": provider.sampler.get_description(),
        },
    )


def exporters_from_environment() -> list[SpanExporter]:
    """The exporters the OTEL_* variables name; none unless they ask for one."""
    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint_set = any(
        os.environ.get(variable)
        for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if not names and endpoint_set:
        names = "otlp"
    chosen = [name.strip() for name in names.split(",") if name.strip() not in ("", "none")]
    return [_exporter(name) for name in chosen]


def _exporter(name: str) -> SpanExporter:
    if name == "otlp":  # as the SDK's own configuration reads it
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        ).strip()
        name = "otlp_proto_http" if protocol == "http/protobuf" else "otlp_proto_grpc"
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER names {name!r}, which is not an installed exporter"
        )
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter


def export_to(processor: SpanProcessor) -> None:
    """Send ended spans to `processor` from now on (it exports them): spans
    are recorded, sampled as configured, and SQL statements become spans."""
    _exports.processors = (*_exports.processors, processor)
    instrumentor = AsyncPGInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def stop_exporting(processor: SpanProcessor) -> None:
    """Undo `export_to(processor)` and shut the processor down."""
    _exports.processors = tuple(p for p in _exports.processors if p is not processor)
    if not _exports.processors:
        AsyncPGInstrumentor().uninstrument()
    processor.shutdown()


def exporting() -> bool:
    return bool(_exports.processors)


def current() -> str:
    """The W3C traceparent of the current span ("" outside any trace)."""
    carrier: dict[str, str] = {}
    _TRACE_CONTEXT.inject(carrier)
    return carrier.get(TRACEPARENT, "")


def context_from(traceparent: str) -> Context:
    """A context whose (remote) parent is `traceparent`; an empty one, where a
    new trace starts, when it is missing or malformed."""
    if not traceparent:
        return Context()
    return _TRACE_CONTEXT.extract({TRACEPARENT: traceparent})


def span_context_of(traceparent: str) -> trace.SpanContext:
    return trace.get_current_span(context_from(traceparent)).get_span_context()


def trace_id(traceparent: str) -> str:
    """The trace id of a traceparent in hex ("" when malformed)."""
    found = span_context_of(traceparent)
    return trace.format_trace_id(found.trace_id) if found.is_valid else ""


class Attached:
    """The current context set to `ctx` until `detach()`; a detach from
    another task (a stream the client abandoned is closed by the event loop's
    finaliser, where nothing was attached) leaves things as they are."""

    def __init__(self, ctx: Context) -> None:
        self._task = asyncio.current_task()
        self._token = otel_context.attach(ctx)

    def detach(self) -> None:
        if asyncio.current_task() is self._task:
            otel_context.detach(self._token)
