"""Settings fail early and clearly; the trace of a call follows its events."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import asyncpg
import pytest
from cocreate.events.v1 import envelope_pb2
from cocreate.ideas.v1 import ideas_service_pb2 as ideas
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from google.protobuf import wrappers_pb2
from opentelemetry import trace

from services.kit import config, events, tracing
from services.kit.inbox import InboxConsumer
from services.kit.outbox import Outbox
from services.kit.server import ServiceDefinition
from tests.support import Platform, eventually, metadata, stub

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_a_missing_database_url_is_named() -> None:
    with pytest.raises(config.ConfigError, match="COCREATE_VOTES_DATABASE_URL is required"):
        config.load("votes", {})


def test_a_malformed_number_is_named() -> None:
    env = {
        "COCREATE_ENV": "development",
        "COCREATE_VOTES_DATABASE_URL": "postgresql://x/y",
        "COCREATE_CONSUMER_MAX_DELIVER": "lots",
    }
    with pytest.raises(config.ConfigError, match="COCREATE_CONSUMER_MAX_DELIVER='lots'"):
        config.load("votes", env)


def test_a_service_started_without_its_database_url_exits_with_the_setting_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.votes"],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "COCREATE_VOTES_DATABASE_URL is required" in result.stderr
    assert "Traceback" not in result.stderr


async def test_an_rpc_trace_reaches_the_event_it_writes(platform: Platform) -> None:
    service = await platform.start("ideas")
    client = stub(service, ideas_grpc.IdeaServiceStub)
    admin = (*metadata("admin-1", "admin"), ("traceparent", TRACEPARENT))
    await client.CreateProduct(ideas.CreateProductRequest(name="Traced"), metadata=admin)
    product = await client.ListProducts(ideas.ListProductsRequest(), metadata=admin)
    await client.SubmitIdea(
        ideas.SubmitIdeaRequest(product_id=product.products[0].id, title="A traced idea"),
        metadata=(*metadata("m1"), ("traceparent", TRACEPARENT)),
    )
    stored = await service.runtime.pool.fetchval(
        "select envelope from outbox where subject = $1", "cocreate.ideas.idea.submitted"
    )
    envelope = envelope_pb2.Envelope.FromString(stored)
    assert tracing.trace_id(envelope.traceparent) == TRACE_ID


async def test_events_a_handler_emits_continue_the_trace_of_the_event_it_handles(
    platform: Platform,
) -> None:
    async def relay_onwards(conn: asyncpg.Connection, event: events.Event[Any]) -> None:
        await Outbox("notes").emit(
            conn, wrappers_pb2.StringValue(value="next"), aggregate_id="n",
            subject="cocreate.test.trace.second",
        )  # fmt: skip

    consumer = InboxConsumer(
        "notes-trace",
        {wrappers_pb2.StringValue: relay_onwards},
        subjects=["cocreate.test.trace.first"],
    )
    definition = ServiceDefinition(
        name="notes", service_names=[], register=lambda s, r: None, consumers=lambda r: [consumer]
    )
    service = await platform.start("notes", definition=definition)
    pool = service.runtime.pool
    with trace.use_span(trace.NonRecordingSpan(tracing.span_context_of(TRACEPARENT))):
        async with pool.acquire() as conn, conn.transaction():
            await Outbox("notes").emit(
                conn, wrappers_pb2.StringValue(value="first"), aggregate_id="n",
                subject="cocreate.test.trace.first",
            )  # fmt: skip

    async def second_event() -> bytes | None:
        found: bytes | None = await pool.fetchval(
            "select envelope from outbox where subject = 'cocreate.test.trace.second'"
        )
        return found

    envelope = envelope_pb2.Envelope.FromString(await eventually(second_event))
    assert tracing.trace_id(envelope.traceparent) == TRACE_ID
    assert envelope.traceparent != TRACEPARENT  # a new span in the same trace
