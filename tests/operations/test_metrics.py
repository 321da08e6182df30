"""Prometheus metrics: each service's port and the gateway's GET /metrics
show what happened — calls by method and code, the outbox draining, every
consumer's backlog, the tally folder catching up, HTTP answers by status —
and the probes read the real tables and JetStream (a backlog they are shown
is a number above 0, not a constant)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import aiohttp
import grpc
import nats
import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as ideas
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.votes.v1 import votes_service_pb2 as votes
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc
from nats.aio.msg import Msg
from nats.js import api

from deploy.localstack import LocalNats
from services.kit import config, db, metrics
from services.kit.inbox import InboxConsumer
from services.kit.metrics import ServiceMetrics, watch_backbone
from services.kit.server import RunningService, ensure_stream
from services.votes import tallies
from services.votes.service import DEFINITION as VOTES
from tests.operations.conftest import StartGateway
from tests.operations.prometheus import Scrape, metrics_url, parse, scrape
from tests.support import Platform, eventually, metadata, stub

ADMIN = metadata("admin-1", "admin")
CAST = "cocreate.votes.v1.VoteService/CastVote"
RPC_COUNT = "cocreate_rpc_duration_seconds_count"
HTTP_REQUESTS = "cocreate_gateway_http_requests_total"
SERVICES = ("ideas", "votes", "rewards")


def consumer_names(service: RunningService) -> list[str]:
    return [c.name for c in service.definition.consumers(service.runtime)]


async def test_a_small_load_moves_every_services_metrics(
    platform: Platform, start_gateway: StartGateway
) -> None:
    running = {name: await platform.start(name) for name in SERVICES}
    urls = {name: metrics_url(service.metrics_port) for name, service in running.items()}
    ideas_client = stub(running["ideas"], ideas_grpc.IdeaServiceStub)
    votes_client = stub(running["votes"], votes_grpc.VoteServiceStub)
    gateway = await start_gateway({n: s.address for n, s in running.items()}, max_body_bytes=4096)

    product = await ideas_client.CreateProduct(
        ideas.CreateProductRequest(name="Phone OS"), metadata=ADMIN
    )
    submitted = await ideas_client.SubmitIdea(
        ideas.SubmitIdeaRequest(product_id=product.product.id, title="Offline maps"),
        metadata=metadata("author"),
    )
    idea_id = submitted.idea.id

    async def votes_knows_the_idea() -> bool:
        try:
            await votes_client.GetTally(votes.GetTallyRequest(idea_id=idea_id), metadata=ADMIN)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    await eventually(votes_knows_the_idea)

    before = await scrape(urls["votes"])
    voters = [f"member-{n}" for n in range(5)]
    for member in voters:
        await votes_client.CastVote(
            votes.CastVoteRequest(idea_id=idea_id), metadata=metadata(member)
        )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await votes_client.CastVote(votes.CastVoteRequest(idea_id=""), metadata=metadata("m"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = await scrape(urls["votes"])

    def rise(code: str) -> float:
        labels = {"service": "votes", "method": CAST, "code": code}
        return after.count(RPC_COUNT, **labels) - before.count(RPC_COUNT, **labels)

    assert rise("OK") == len(voters)
    assert rise("INVALID_ARGUMENT") == 1
    assert after.count(
        "cocreate_rpc_duration_seconds_bucket",
        service="votes",
        method=CAST,
        code="OK",
        le="+Inf",
    ) == after.count(RPC_COUNT, service="votes", method=CAST, code="OK")
    ideas_now = await scrape(urls["ideas"])
    submit = "cocreate.ideas.v1.IdeaService/SubmitIdea"
    assert ideas_now.count(RPC_COUNT, service="ideas", method=submit, code="OK") == 1

    consumers = {name: consumer_names(service) for name, service in running.items()}
    assert all(consumers[name] for name in SERVICES)
    last: dict[str, Scrape] = {}

    async def quiet() -> bool:
        for name in SERVICES:
            last[name] = await scrape(urls[name])
        return (
            all(
                last[name].value("cocreate_outbox_pending", service=name) == 0
                and last[name].value("cocreate_outbox_oldest_age_seconds", service=name) == 0
                and all(
                    last[name].value("cocreate_consumer_pending", service=name, consumer=c) == 0
                    and last[name].value("cocreate_consumer_ack_pending", service=name, consumer=c)
                    == 0
                    for c in consumers[name]
                )
                for name in SERVICES
            )
            and last["votes"].value("cocreate_tally_lag_seconds", service="votes") == 0
        )

    await eventually(quiet, within=30)
    for name in SERVICES:
        assert last[name].label_values("cocreate_consumer_pending", "consumer") == set(
            consumers[name]
        )
        for consumer in consumers[name]:
            redelivered = last[name].value(
                "cocreate_consumer_redeliveries_total", service=name, consumer=consumer
            )
            assert redelivered is not None and redelivered >= 0
        assert last[name].value("cocreate_dead_letters", service=name) == 0
        in_use = last[name].value("cocreate_db_pool_in_use", service=name)
        assert in_use is not None and in_use >= 0
        assert last[name].count("cocreate_metrics_probe_failures_total", probe="backbone") == 0
    tally = await votes_client.GetTally(votes.GetTallyRequest(idea_id=idea_id), metadata=ADMIN)
    assert tally.tally.voter_count == len(voters)

    # The gateway: HTTP answers by route and status.
    gateway_metrics = gateway + "/metrics"
    before = await scrape(gateway_metrics)
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "cocreate.votes.v1.VoteService.GetTally",
        "params": {"ideaId": idea_id},
    }
    bearer = {"Authorization": dict(ADMIN)["authorization"]}
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway + "/rpc", json=call, headers=bearer) as answer:
            assert answer.status == 200
            assert (await answer.json())["result"]["tally"]["voterCount"] == len(voters)
        async with session.get(gateway + "/no-such-page") as answer:
            assert answer.status == 404
        async with session.post(gateway + "/rpc", data=b"[" * 5000) as answer:
            assert answer.status == 413
    after = await scrape(gateway_metrics)

    def answered(route: str, status: str) -> float:
        return after.count(HTTP_REQUESTS, route=route, status=status) - before.count(
            HTTP_REQUESTS, route=route, status=status
        )

    assert answered("/rpc", "200") == 1
    assert answered("unmatched", "404") == 1
    assert answered("/rpc", "413") == 1


async def test_the_probes_read_the_tables_and_jetstream(
    platform: Platform, nats_server: LocalNats, clean_stream: None
) -> None:
    """The kit's probes against a migrated database and the stream with no
    relay or consumer running, so a backlog stays put while it is read."""
    dsn = platform.database_url("probes")
    pool = await db.create_pool(dsn)
    nc = await nats.connect(nats_server.url)
    service_metrics = ServiceMetrics("probes")
    try:
        assert VOTES.migrations is not None
        await db.migrate(pool, [("kit", db.KIT_MIGRATIONS), ("votes", VOTES.migrations)])
        js = nc.jetstream()
        await ensure_stream(js, "COCREATE")
        consumer = InboxConsumer("probe-consumer", {}, subjects=["cocreate.test.>"])
        await js.add_consumer(
            "COCREATE",
            config=api.ConsumerConfig(
                durable_name=consumer.name,
                filter_subjects=consumer.subjects,
                ack_policy=api.AckPolicy.EXPLICIT,
            ),
        )
        watch_backbone(service_metrics, pool=pool, js=js, stream="COCREATE", consumers=[consumer])
        tallies.watch_lag(service_metrics, pool)
        await service_metrics.serve("127.0.0.1:0")
        url = metrics_url(service_metrics.port)

        async with pool.acquire() as conn:
            await conn.execute(
                "insert into outbox (event_id, subject, envelope, created_at) "
                "select gen_random_uuid(), 'cocreate.test.x', '', now() - interval '30 seconds' "
                "from generate_series(1, 3)"
            )
            await conn.execute(
                "insert into dead_letters (consumer, event_id, subject, event_type, envelope, "
                "deliveries, error) values ('c', $1, 's', 't', '', 5, 'boom')",
                uuid.uuid4(),
            )
            await conn.execute(
                "insert into tally_dirty (idea_id, marked_at) "
                "values ('idea-1', now() - interval '20 seconds')"
            )
            for n in range(2):
                await js.publish(f"cocreate.test.{n}", b"event")
            busy = await scrape(url)  # this connection is taken meanwhile
        assert busy.value("cocreate_outbox_pending", service="probes") == 3
        assert busy.count("cocreate_outbox_oldest_age_seconds", service="probes") >= 30
        assert busy.value("cocreate_dead_letters", service="probes") == 1
        assert busy.count("cocreate_tally_lag_seconds", service="probes") >= 20
        assert busy.count("cocreate_db_pool_in_use", service="probes") >= 1
        waiting = {"service": "probes", "consumer": "probe-consumer"}
        assert busy.value("cocreate_consumer_pending", **waiting) == 2
        assert busy.value("cocreate_consumer_redeliveries_total", **waiting) == 0

        # One event delivered, refused and delivered again: one redelivery.
        subscription = await js.pull_subscribe_bind(durable=consumer.name, stream="COCREATE")
        first = await subscription.fetch(1, timeout=5)
        service_metrics.fetched(consumer.name, first)
        assert (await scrape(url)).value("cocreate_consumer_ack_pending", **waiting) == 1
        await first[0].nak()
        both: list[Msg] = []

        async def both_delivered() -> bool:
            with contextlib.suppress(nats.errors.TimeoutError):
                both.extend(await subscription.fetch(2 - len(both), timeout=1))
            return len(both) == 2

        await eventually(both_delivered)
        assert sorted(msg.metadata.num_delivered or 0 for msg in both) == [1, 2]
        service_metrics.fetched(consumer.name, both)
        for msg in both:
            await msg.ack()
        await subscription.unsubscribe()

        await pool.execute("update outbox set published_at = now()")
        await pool.execute("delete from tally_dirty")
        drained = await scrape(url)
        assert drained.value("cocreate_outbox_pending", service="probes") == 0
        assert drained.value("cocreate_outbox_oldest_age_seconds", service="probes") == 0
        assert drained.value("cocreate_tally_lag_seconds", service="probes") == 0
        assert drained.value("cocreate_db_pool_in_use", service="probes") == 0
        assert drained.value("cocreate_consumer_redeliveries_total", **waiting) == 1
        assert drained.value("cocreate_consumer_pending", **waiting) == 0
    finally:
        await service_metrics.close()
        await nc.close()
        await pool.close()


async def test_a_probe_whose_backend_is_away_reads_nan_and_the_scrape_still_answers() -> None:
    """A pool whose Postgres is gone: the gauges read NaN (unknown), the
    failure is counted, and the answer comes within the probe's timeout."""
    service_metrics = ServiceMetrics("away")
    gone = asyncio.Event()

    async def hangs() -> None:
        await gone.wait()  # a backend that never answers

    outbox = service_metrics.gauge("cocreate_outbox_pending", "test").labels("away")
    service_metrics.on_scrape("backbone", hangs, [outbox])
    answer = parse((await asyncio.wait_for(service_metrics.exposition(), timeout=10)).decode())
    assert answer.is_nan("cocreate_outbox_pending", service="away")
    failures = {"service": "away", "probe": "backbone"}
    assert answer.value("cocreate_metrics_probe_failures_total", **failures) == 1


async def test_metrics_ports_follow_the_setting(platform: Platform) -> None:
    """COCREATE_<SVC>_METRICS_ADDR: empty turns metrics off; the defaults are the
    documented ports."""
    off = await platform.start("votes", env={"COCREATE_VOTES_METRICS_ADDR": ""})
    assert off.metrics_port is None
    defaults = {
        name: metrics.metrics_address(
            config.load(
                name, {f"COCREATE_{name.upper()}_DATABASE_URL": "x", "COCREATE_ENV": "development"}
            )
        )
        for name in SERVICES
    }
    assert defaults == {
        "ideas": "127.0.0.1:9101",
        "votes": "127.0.0.1:9102",
        "rewards": "127.0.0.1:9103",
    }
