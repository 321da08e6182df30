"""Traces: one vote is followed under one trace from the gateway's HTTP call
to the reward's ledger entry; a caller's `traceparent` is continued; spans go
out over OTLP when the OTEL_* variables say so, and nowhere by default.

The services and the gateway run in the test's process (tests/support.py), so
an in-memory exporter on the process's provider sees every span they end."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from aiohttp import web
from cocreate.events.v1 import envelope_pb2
from cocreate.ideas.v1 import ideas_service_pb2 as ideas
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from deploy.localstack import free_port
from services.kit import tracing
from services.rewards import domain as rewards_domain
from tests.gateway.conftest import GatewayClient, StartGateway, bearer
from tests.support import Platform, eventually, metadata, stub

CAST_VOTE = "cocreate.votes.v1.VoteService.CastVote"
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process ends while the test runs (export turned on)."""
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    tracing.export_to(processor)
    try:
        yield exporter
    finally:
        tracing.stop_exporting(processor)


async def start_platform(
    platform: Platform, start_gateway: StartGateway
) -> tuple[GatewayClient, str]:
    """ideas, votes, rewards and a gateway; an idea the votes service knows.
    The set-up calls go to the services directly, so the gateway's one call
    is the vote."""
    ideas_service = await platform.start("ideas")
    votes_service = await platform.start("votes")
    rewards_service = await platform.start("rewards")
    gateway = await start_gateway(
        targets={
            "ideas": ideas_service.address,
            "votes": votes_service.address,
            "rewards": rewards_service.address,
        },
        headers=bearer("voter-1", "member"),
    )
    client = stub(ideas_service, ideas_grpc.IdeaServiceStub)
    product = await client.CreateProduct(
        ideas.CreateProductRequest(name="Traced"), metadata=metadata("admin-1", "admin")
    )
    idea = await client.SubmitIdea(
        ideas.SubmitIdeaRequest(product_id=product.product.id, title="Follow one vote"),
        metadata=metadata("author-1"),
    )
    idea_id = str(idea.idea.id)

    async def votes_knows_it() -> bool:
        known = await votes_service.runtime.pool.fetchval(
            "select open from ideas where idea_id = $1", idea_id
        )
        return bool(known)

    await eventually(votes_knows_it)
    return gateway, idea_id


def in_trace(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def named(found: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def statement(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("db.statement") or attributes.get("db.query.text") or "")


def ancestry(span: ReadableSpan, found: Sequence[ReadableSpan]) -> list[str]:
    """The names from `span` up to its trace's root, following parent ids, as
    far as the parents are in `found` (a parent ends after its children)."""
    by_id = {s.context.span_id: s for s in found}
    names = [span.name]
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


async def test_one_vote_is_followed_from_the_http_call_to_the_ledger_entry_in_one_trace(
    platform: Platform, start_gateway: StartGateway, spans: InMemorySpanExporter
) -> None:
    gateway, idea_id = await start_platform(platform, start_gateway)
    before = {s.context.span_id for s in spans.get_finished_spans()}

    answer = await gateway.call(CAST_VOTE, {"ideaId": idea_id})
    assert "result" in answer, answer

    [http] = [
        s
        for s in spans.get_finished_spans()
        if s.name == "POST /rpc" and s.context.span_id not in before
    ]
    assert http.kind is SpanKind.SERVER and http.parent is None

    async def from_the_ledger_entry_to_the_root() -> list[str] | None:
        found = in_trace(spans, http.context.trace_id)
        for span in found:
            if "insert into ledger_entries" in " ".join(statement(span).lower().split()):
                trail = ancestry(span, found)
                return trail if trail[-1] == "POST /rpc" else None
        return None

    # From the ledger's SQL statement back to the HTTP call, parent by parent.
    trail = await eventually(from_the_ledger_entry_to_the_root)
    for step in (
        "process cocreate.votes.votes.changed",
        "votes write",
        "cocreate.votes.v1.VoteService/CastVote",
        "/cocreate.votes.v1.VoteService/CastVote",
        "POST /rpc",
    ):
        assert step in trail, f"{step!r} is not on the way from the ledger entry: {trail}"

    found = in_trace(spans, http.context.trace_id)
    [server] = named(found, "cocreate.votes.v1.VoteService/CastVote")
    assert server.kind is SpanKind.SERVER
    assert (server.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    [publish] = named(found, "publish cocreate.votes.votes.changed")
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None
    assert publish.parent.span_id == named(found, "votes write")[0].context.span_id
    [process] = [
        s
        for s in named(found, "process cocreate.votes.votes.changed")
        if (s.attributes or {}).get("messaging.consumer.group.name") == "rewards-votes"
    ]
    assert process.kind is SpanKind.CONSUMER
    # The write's SQL statements are spans of the write, its outbox row among them.
    [write] = named(found, "votes write")
    assert any(
        "insert into outbox" in statement(s)
        for s in found
        if s.parent and s.parent.span_id == write.context.span_id
    )
    # The ledger entry is the vote's reward.
    entries = await platform.running[2].runtime.pool.fetch(
        "select rule_id from ledger_entries where member_id = 'voter-1'"
    )
    assert [r["rule_id"] for r in entries] == [rewards_domain.RULE_VOTE_CAST]


async def test_a_callers_traceparent_is_continued_through_the_gateway_to_the_service(
    platform: Platform, start_gateway: StartGateway, spans: InMemorySpanExporter
) -> None:
    gateway, idea_id = await start_platform(platform, start_gateway)
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

    answer = await gateway.call(
        CAST_VOTE, {"ideaId": idea_id}, headers={"traceparent": traceparent}
    )
    assert "result" in answer, answer

    async def server_span() -> ReadableSpan | None:
        for span in spans.get_finished_spans():
            if span.name == "cocreate.votes.v1.VoteService/CastVote":
                return span
        return None

    server = await eventually(server_span)
    assert format_trace_id(server.context.trace_id) == CALLER_TRACE
    [http] = named(spans.get_finished_spans(), "POST /rpc")
    assert format_trace_id(http.context.trace_id) == CALLER_TRACE
    assert http.parent is not None and http.parent.is_remote
    assert format_span_id(http.parent.span_id) == CALLER_SPAN


async def test_a_call_without_export_still_has_a_trace_id_that_reaches_its_event(
    platform: Platform,
) -> None:
    """Export off (no exporter in this test): nothing is recorded, but the
    call's trace id still reaches the event it writes."""
    assert not tracing.exporting()
    service = await platform.start("ideas")
    client = stub(service, ideas_grpc.IdeaServiceStub)
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"
    product = await client.CreateProduct(
        ideas.CreateProductRequest(name="Untraced"), metadata=metadata("admin-1", "admin")
    )
    await client.SubmitIdea(
        ideas.SubmitIdeaRequest(product_id=product.product.id, title="No export"),
        metadata=(*metadata("author-1"), ("traceparent", traceparent)),
    )
    stored = await service.runtime.pool.fetchval(
        "select envelope from outbox where subject = 'cocreate.ideas.idea.submitted'"
    )
    carried = envelope_pb2.Envelope.FromString(stored).traceparent
    assert tracing.trace_id(carried) == CALLER_TRACE
    assert carried != traceparent  # the service's own span, in the caller's trace


# ---- OTLP export, in a service process of its own ---------------------------


class OtlpReceiver:
    """A tiny OTLP/HTTP trace receiver: keeps every export request's spans."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def handle(self, request: web.Request) -> web.Response:
        export = trace_service_pb2.ExportTraceServiceRequest.FromString(await request.read())
        self.requests.append(export)
        return web.Response(
            body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def spans(self) -> list[tuple[str, str]]:
        """(service.name, span name) of every span received."""
        found: list[tuple[str, str]] = []
        for export in self.requests:
            for resource_spans in export.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope in resource_spans.scope_spans:
                    found.extend((service, span.name) for span in scope.spans)
        return found


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[OtlpReceiver, str]]:
    collected = OtlpReceiver()
    app = web.Application()
    app.router.add_post("/v1/traces", collected.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield collected, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def run_ideas(
    platform: Platform, otel: dict[str, str], log_file: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m services.ideas` with only the settings it needs and `otel`."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "COCREATE_ENV": "development",
        "COCREATE_IDEAS_DATABASE_URL": platform.database_url("ideas"),
        "COCREATE_IDEAS_ADDR": address,
        "COCREATE_IDEAS_METRICS_ADDR": "",
        "COCREATE_NATS_URL": platform.nats.url,
        **otel,
    }
    with log_file.open("wb") as log_out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.ideas"], env=env, stderr=log_out, stdout=log_out
        )
    return process, address


async def list_products_when_up(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        client = ideas_grpc.IdeaServiceStub(channel)

        async def answered() -> bool:
            try:
                await client.ListProducts(ideas.ListProductsRequest(), timeout=2)
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.UNAVAILABLE:
                    return False
                raise
            return True

        await eventually(answered, within=60)


def log_lines(log_file: Path) -> list[dict[str, object]]:
    lines = []
    for raw in log_file.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return lines


async def stopped(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    await asyncio.to_thread(process.wait, 30)


async def test_spans_go_out_over_otlp_when_the_otel_variables_say_so(
    platform: Platform, receiver: tuple[OtlpReceiver, str], tmp_path: Path
) -> None:
    collected, endpoint = receiver
    process, address = run_ideas(
        platform,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
        tmp_path / "ideas.log",
    )
    try:
        await list_products_when_up(address)

        async def exported() -> bool:
            names = {name.lower() for _, name in collected.spans()}
            # The call, and the SQL statements it made.
            return "cocreate.ideas.v1.ideaservice/listproducts" in names and "select" in names

        await eventually(exported, within=30)
        assert {service for service, _ in collected.spans()} == {"cocreate-ideas"}
    finally:
        await stopped(process)


async def test_nothing_is_exported_by_default_yet_logs_carry_trace_ids(
    platform: Platform, tmp_path: Path
) -> None:
    log_file = tmp_path / "ideas.log"
    process, address = run_ideas(platform, {}, log_file)
    try:
        await list_products_when_up(address)

        def call_logged() -> list[dict[str, object]]:
            return [
                line
                for line in log_lines(log_file)
                if line.get("method") == "/cocreate.ideas.v1.IdeaService/ListProducts"
            ]

        async def logged() -> list[dict[str, object]]:
            return call_logged()

        [call, *_] = await eventually(logged)
        assert len(str(call["trace_id"])) == 32 and len(str(call["span_id"])) == 16
        [started] = [line for line in log_lines(log_file) if line.get("msg") == "traces"]
        assert started["exporters"] == []
    finally:
        await stopped(process)


def test_an_exporter_that_is_not_installed_stops_the_service_with_the_variable_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.votes"],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "COCREATE_ENV": "development",
            "COCREATE_VOTES_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "OTEL_TRACES_EXPORTER": "nonesuch",
        },
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "OTEL_TRACES_EXPORTER names 'nonesuch'" in result.stderr
    assert "Traceback" not in result.stderr
