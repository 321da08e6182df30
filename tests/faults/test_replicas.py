"""Replicas, proven on one machine: a 3-node JetStream cluster (the stream at
3 replicas), two replicas of each service against the same databases, and a
gateway spreading its calls over them, under the crash schedules' mixed load.
Twice during the load the stream's leader node and one replica of each
service are killed (SIGKILL) and started again.

Once quiet, the crash suite's checker finds every invariant intact, and the
replica checks find: each event handled once per consumer, by one of the
replicas, and both replicas of each service consumed (their durable consumers
are shared); each migration applied by one replica though both started
together; no two folds of the tallies overlapping; the gateway's calls
reaching both replicas of each service. The replica checks are then shown to
report a fault planted behind each of them.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nats
import pytest

from deploy.localstack import LocalNatsCluster
from services.kit.config import nats_servers
from tests.faults import checker
from tests.faults.harness import SERVICES, CrashStack
from tests.faults.load import Clients, Record, client, releases, set_up
from tests.support import metadata

SEED = 20261206
LOAD_SECONDS = 30.0
CLIENTS = 4
MEMBERS_PER_CLIENT = 40
# Seconds into the load when a node and a replica of each service are killed,
# and which replica.
KILLS = ((7.0, 1), (18.0, 2))
DOWN_SECONDS = 2.0
# A read per service that only the gateway's reader calls, so its count on a
# replica's metrics is the gateway's calls to that replica.
GATEWAY_READS = {
    "ideas": "cocreate.ideas.v1.IdeaService/ListIdeas",
    "votes": "cocreate.votes.v1.VoteService/GetTally",
    "rewards": "cocreate.rewards.v1.RewardsService/ListLeaderboard",
}
# JSON-RPC codes no read may get: INTERNAL, UNKNOWN, the gateway's own fault;
# and a method or params refused (the reads are well formed).
FORBIDDEN_CODES = {-32013, -32002, -32603, -32601, -32602}


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[CrashStack]:
    running = CrashStack(tmp_path, replicas=2, nats_nodes=3, gateway=True)
    try:
        await running.start()
        yield running
    finally:
        await asyncio.to_thread(running.stop)


async def stream_leader(stack: CrashStack) -> str:
    """The cluster node that leads the stream, as the stack names it (`nats-<n>`)."""
    nc = await nats.connect(servers=nats_servers(stack.nats.url))
    try:
        info = await nc.jetstream().stream_info(checker.STREAM)
    finally:
        await nc.close()
    assert info.cluster is not None and info.cluster.leader, info
    assert len(info.cluster.replicas or []) == 2, info.cluster  # 3 replicas: a leader, 2 more
    return "nats-" + str(info.cluster.leader).removeprefix("node")


async def kill_a_node_and_a_replica_of_each(stack: CrashStack, record: Record) -> None:
    started = time.monotonic()
    for at, replica in KILLS:
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        victims = [await stream_leader(stack), *(f"{name}-{replica}" for name in SERVICES)]
        for victim in victims:
            stack.kill(victim)
            record.kills.append(victim)
        await asyncio.sleep(DOWN_SECONDS)
        for victim in victims:
            await stack.restart(victim)
        for name in SERVICES:
            await stack.wait_serving(name)
        assert isinstance(stack.nats, LocalNatsCluster)
        await asyncio.to_thread(stack.nats.wait_healthy)


class GatewayReader:
    """Reads through the gateway's JSON-RPC, one per service in turn."""

    def __init__(self, stack: CrashStack, record: Record, product_id: str) -> None:
        self.url = f"http://{stack.gateway}/rpc"
        self.record = record
        self.product_id = product_id
        self.headers = {"authorization": metadata("reader-1")[0][1]}
        self.answers = 0

    async def read(self, session: aiohttp.ClientSession, n: int) -> None:
        idea = sorted(self.record.ideas)[n % len(self.record.ideas)]
        params = {
            "ideas": {"filter": {"productId": self.product_id}},
            "votes": {"ideaId": idea},
            "rewards": {"period": "LEADERBOARD_PERIOD_ALL_TIME"},
        }
        service = SERVICES[n % len(SERVICES)]
        method = GATEWAY_READS[service].replace("/", ".")
        body = {"jsonrpc": "2.0", "id": n, "method": method, "params": params[service]}
        try:
            async with session.post(self.url, json=body, headers=self.headers) as answer:
                reply = json.loads(await answer.read())
        except (aiohttp.ClientError, TimeoutError):
            return  # the gateway is not the part under test here; its upstreams are
        self.answers += 1
        code = reply.get("error", {}).get("code")
        if code in FORBIDDEN_CODES:
            self.record.forbidden.append(f"{method} through the gateway: {reply['error']}")

    async def until(self, stop: float) -> None:
        async with aiohttp.ClientSession() as session:
            n = 0
            while time.monotonic() < stop:
                await self.read(session, n)
                n += 1
                await asyncio.sleep(0.05)

    async def spread(self, calls: int) -> None:
        async with aiohttp.ClientSession() as session:
            for n in range(calls):
                await self.read(session, n)


async def calls_seen(stack: CrashStack, instance: str, method: str) -> float:
    """How many calls of `method` the replica answered, from its metrics."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{stack.metrics[instance]}/metrics") as answer,
    ):
        text = await answer.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("cocreate_rpc_duration_seconds_count{") and f'"{method}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def replica_logs(stack: CrashStack) -> dict[str, list[str]]:
    return {
        name: [
            line
            for instance in stack.instances[name]
            for line in (stack.folder / f"{instance}.log").read_text().splitlines()
        ]
        for name in SERVICES
    }


async def recorded_migrations(dbs: checker.Databases) -> dict[str, set[str]]:
    return {
        name: {
            f"{r['component']}/{r['name']}"
            for r in await conn.fetch("select component, name from schema_migrations")
        }
        for name, conn in dbs.all.items()
    }


async def replica_checks(
    stack: CrashStack, dbs: checker.Databases, logs: dict[str, list[str]]
) -> list[str]:
    return [
        *await checker.handled_once(stack, dbs),
        *await checker.every_replica_consumed(dbs, stack.instances),
        *await checker.one_folder_at_a_time(dbs),
        *checker.migrations_applied_once(logs, await recorded_migrations(dbs)),
    ]


@pytest.mark.timeout(600)
async def test_replicas_share_the_work_and_lose_nothing_when_a_node_and_replicas_die(
    stack: CrashStack,
) -> None:
    started = time.monotonic()
    assert (await stream_leader(stack)).startswith("nats-")
    clients = Clients(stack, Record())
    product_id = await set_up(clients, random.Random(f"{SEED}/setup"), ideas=12)
    stop = time.monotonic() + LOAD_SECONDS
    members = [f"r{SEED}-m{n}" for n in range(CLIENTS * MEMBERS_PER_CLIENT)]
    reader = GatewayReader(stack, clients.record, product_id)
    await asyncio.gather(
        *(client(clients, SEED, n, members[n::CLIENTS], product_id, stop) for n in range(CLIENTS)),
        releases(clients, SEED, product_id, stop),
        reader.until(stop),
        kill_a_node_and_a_replica_of_each(stack, clients.record),
    )
    stack.check_unplanned_exits(set())

    dbs = await checker.Databases.open(stack)
    try:
        await checker.wait_for_quiet(stack, dbs)
        violations = await checker.check_all(stack, dbs, clients)
        logs = replica_logs(stack)
        violations += await replica_checks(stack, dbs, logs)

        # The gateway spreads its calls over both replicas of each service,
        # the restarted ones too.
        await reader.spread(60)
        for name, method in GATEWAY_READS.items():
            for instance in stack.instances[name]:
                if not await calls_seen(stack, instance, method):
                    violations.append(f"the gateway sent no {method} to {instance}")
        folds = {
            r["folded_by"]: r["folds"]
            for r in await dbs.votes.fetch(
                "select folded_by, count(*) as folds from tally_folds group by folded_by"
            )
        }
        report = checker.summary(clients.record, time.monotonic() - started)
        print(json.dumps({**report, "gateway_answers": reader.answers, "folds": folds}))
        assert clients.record.ok > 100, report  # the load did real work
        assert not stack.unplanned_exits, stack.unplanned_exits
        assert not violations, violations[:20]

        # The replica checks speak when something is wrong: a fault planted
        # behind each of them is reported.
        consumer = await dbs.rewards.fetchval("select consumer from inbox limit 1")
        await dbs.rewards.execute(
            "delete from inbox where (consumer, event_id) in "
            "(select consumer, event_id from inbox where consumer = $1 limit 1)",
            consumer,
        )
        await dbs.ideas.execute("update inbox set handled_by = 'ideas-1'")
        await dbs.votes.execute(
            "insert into tally_folds (folded_by, started_at, finished_at, ideas) "
            "select 'planted', started_at, finished_at, ideas from tally_folds limit 1"
        )
        applied_twice = next(line for line in logs["votes"] if '"applied migration"' in line)
        logs["votes"].append(applied_twice)
        found = "\n".join(await replica_checks(stack, dbs, logs))
    finally:
        await dbs.close()
    assert f"consumer {consumer} handled" in found, found
    assert "ideas: replicas ['ideas-2'] handled no event" in found, found
    assert "(planted) overlapped" in found, found
    assert f"votes: {json.loads(applied_twice)['migration']} was applied 2 times" in found, found
