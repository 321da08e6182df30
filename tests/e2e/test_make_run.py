"""`make run`'s program (python -m deploy.localstack) as a newcomer uses it: it
brings up Postgres, NATS and every service, each answers health and reflection
through buf curl, Ctrl-C stops it all, and a second run keeps the data and
re-applies no migration."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import grpc
import nats
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc

from deploy.localstack import REPLICA_PORT_STEP, ROOT, SERVICES, free_port
from tests import support

BUF = str(Path(sys.executable).parent / "buf")
# A read that needs no token, answered by the ideas service.
PUBLIC_READ = "cocreate.ideas.v1.IdeaService.ListProducts"


@asynccontextmanager
async def running_stack(dev_dir: Path, env: dict[str, str]) -> AsyncIterator[str]:
    """Start the stack, wait for its 'running' line, yield its output so far; Ctrl-C it on exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deploy.localstack",
        cwd=ROOT, env={**os.environ, **env, "COCREATE_DEV_DIR": str(dev_dir)},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    printed = ""
    try:
        async with asyncio.timeout(120):
            while "cocreate is running" not in printed:
                line = await process.stdout.readline()
                assert line, f"the stack exited early; it printed:\n{printed}"
                printed += line.decode()
        yield printed
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            code = await process.wait()
        assert code == 0, f"the stack exited with {code}"


async def get_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, url
        return await response.text()


def buf_curl(*args: str) -> str:
    result = subprocess.run(
        [BUF, "curl", "--protocol", "grpc", "--http2-prior-knowledge", *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


async def migrations_and_marker(pg_port: int) -> dict[str, tuple[int, list[str]]]:
    """Per service database: how many migrations are recorded, and the marker rows."""
    seen = {}
    for service in SERVICES:
        conn = await asyncpg.connect(
            f"postgresql://postgres@127.0.0.1:{pg_port}/cocreate_{service}"
        )
        try:
            count = await conn.fetchval("select count(*) from schema_migrations")
            markers = await conn.fetch(
                "select request_id from idempotent_requests where caller = 'make-run-test'"
            )
            seen[service] = (count, [r["request_id"] for r in markers])
        finally:
            await conn.close()
    return seen


class DistinctPorts:
    """Free ports for one stack, none handed out twice. Each probe closes its
    socket, so the kernel may offer the same port again to the next probe; two
    programs given one port would leave the later one unable to bind."""

    def __init__(self) -> None:
        self.given: set[int] = set()

    def take(self, *offsets: int) -> int:
        """A free port p, with p + each offset free too (other replicas, nodes or
        the votes events process listen there)."""
        while True:
            port = free_port()
            block = {port, *(port + offset for offset in offsets)}
            if block & self.given:
                continue
            try:
                for offset in offsets:
                    with socket.socket() as sock:
                        sock.bind(("127.0.0.1", port + offset))
            except (OSError, OverflowError):  # taken, or beyond the last port
                continue
            self.given |= block
            return port


def one_of_each() -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
    """Free ports for a stack of one process a service (the votes events
    process 10 ports above votes) and its own Postgres and NATS: the gRPC and
    HTTP ports, the metrics ports, and make run's environment for them."""
    free = DistinctPorts()
    room = {"votes": (REPLICA_PORT_STEP,)}  # for the votes events process
    ports = {name: free.take(*room.get(name, ())) for name in (*SERVICES, "gateway", "pg", "nats")}
    metrics_ports = {name: free.take(*room.get(name, ())) for name in SERVICES}
    env = {f"COCREATE_{s.upper()}_ADDR": f"127.0.0.1:{ports[s]}" for s in (*SERVICES, "gateway")}
    env |= {f"COCREATE_{s.upper()}_METRICS_ADDR": f"127.0.0.1:{metrics_ports[s]}" for s in SERVICES}
    env |= {"COCREATE_PG_PORT": str(ports["pg"]), "COCREATE_NATS_PORT": str(ports["nats"])}
    for key in list(os.environ):
        if key.endswith("_DATABASE_URL") or key == "COCREATE_NATS_URL":
            env[key] = ""  # the stack's own servers
    return ports, metrics_ports, env


async def test_make_run_serves_every_service_and_keeps_data_across_runs(tmp_path: Path) -> None:
    ports, metrics_ports, env = one_of_each()

    async with running_stack(tmp_path / "dev", env) as printed:
        for service in SERVICES:
            assert f"grpc://127.0.0.1:{ports[service]}" in printed
            base = f"http://127.0.0.1:{ports[service]}"
            health = json.loads(
                await asyncio.to_thread(buf_curl, f"{base}/grpc.health.v1.Health/Check")
            )
            assert health == {"status": "SERVING"}
            methods = await asyncio.to_thread(buf_curl, "--list-methods", base)
            assert f"cocreate.{service}.v1." in methods
            assert "cocreate.ops.v1.DeadLetterService/ListDeadLetters" in methods
            metrics = f"http://127.0.0.1:{metrics_ports[service]}/metrics"
            assert f"metrics {metrics}" in printed
            assert f'cocreate_outbox_pending{{service="{service}"}}' in await get_text(metrics)
        # The votes' event work runs in a process of its own (COCREATE_ROLE=events).
        events_address = f"127.0.0.1:{ports['votes'] + REPLICA_PORT_STEP}"
        assert f"votes-events grpc://{events_address}" in printed
        await a_vote_reaches_the_ideas_read_model(ports["ideas"], ports["votes"])
        gateway_metrics = f"http://127.0.0.1:{ports['gateway']}/metrics"
        assert f"metrics {gateway_metrics}" in printed
        assert "cocreate_gateway_http_requests_total" in await get_text(gateway_metrics)
        first = await migrations_and_marker(ports["pg"])
        for service in SERVICES:
            conn = await asyncpg.connect(
                f"postgresql://postgres@127.0.0.1:{ports['pg']}/cocreate_{service}"
            )
            await conn.execute(
                "insert into idempotent_requests (caller, method, request_id, response) "
                "values ('make-run-test', 'm', 'kept', '')"
            )
            await conn.close()

    async with running_stack(tmp_path / "dev", env):
        second = await migrations_and_marker(ports["pg"])
    for service in SERVICES:
        assert second[service] == (first[service][0], ["kept"]), service


async def a_vote_reaches_the_ideas_read_model(ideas_port: int, votes_port: int) -> None:
    """An idea submitted, voted for and shown with its vote: the votes
    process answering calls learns of the idea and writes the vote, and the
    votes events process relays it and folds the tally."""
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{ideas_port}") as ideas_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{votes_port}") as votes_channel,
    ):
        ideas = ideas_grpc.IdeaServiceStub(ideas_channel)
        product = await support.new_product(ideas, "make run")
        idea = await support.submit_idea(ideas, product, "author-1", "Dark mode everywhere")
        await support.cast_when_known(votes_grpc.VoteServiceStub(votes_channel), idea.id, "fan-1")

        async def counted() -> bool:
            answer = await ideas.GetIdea(
                ideas_pb.GetIdeaRequest(idea_id=idea.id), metadata=support.metadata("fan-1")
            )
            return bool(answer.idea.voter_count == 1)

        await support.eventually(counted)


async def test_make_run_starts_replicas_and_a_nats_cluster(tmp_path: Path) -> None:
    """COCREATE_REPLICAS=2 COCREATE_NATS_CLUSTER=3: two replicas of each
    service, a 3-node JetStream cluster holding the stream at 3 replicas, and
    a gateway whose calls reach both replicas."""
    # The second replica 10 ports up; the votes events process 10 above it.
    free = DistinctPorts()
    ports = {s: free.take(REPLICA_PORT_STEP, 2 * REPLICA_PORT_STEP) for s in SERVICES}
    metrics_ports = {s: free.take(REPLICA_PORT_STEP, 2 * REPLICA_PORT_STEP) for s in SERVICES}
    gateway, pg = free.take(), free.take()
    nats_port = free.take(1, 2)
    env = {f"COCREATE_{s.upper()}_ADDR": f"127.0.0.1:{ports[s]}" for s in SERVICES}
    env |= {f"COCREATE_{s.upper()}_METRICS_ADDR": f"127.0.0.1:{metrics_ports[s]}" for s in SERVICES}
    env |= {
        "COCREATE_GATEWAY_ADDR": f"127.0.0.1:{gateway}",
        "COCREATE_PG_PORT": str(pg),
        "COCREATE_NATS_PORT": str(nats_port),
        "COCREATE_REPLICAS": "2",
        "COCREATE_NATS_CLUSTER": "3",
    }
    for key in list(os.environ):
        if key.endswith(("_DATABASE_URL", "_TARGET")) or key in (
            "COCREATE_NATS_URL",
            "COCREATE_STREAM_REPLICAS",
        ):
            env[key] = ""  # this test wants the stack's own servers and targets

    async with running_stack(tmp_path / "dev", env) as printed:
        nodes = [f"nats://127.0.0.1:{nats_port + n}" for n in range(3)]
        assert f"nats      {','.join(nodes)}" in printed
        nc = await nats.connect(servers=nodes)
        try:
            stream = await nc.jetstream().stream_info("COCREATE")
        finally:
            await nc.close()
        assert stream.config.num_replicas == 3
        for service in SERVICES:
            for n in (0, 1):
                address = f"127.0.0.1:{ports[service] + REPLICA_PORT_STEP * n}"
                assert f"{f'{service}-{n + 1}':<9} grpc://{address}" in printed
        events_address = f"127.0.0.1:{ports['votes'] + 2 * REPLICA_PORT_STEP}"
        assert f"votes-events grpc://{events_address}" in printed
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{gateway}/readyz") as ready:
                assert ready.status == 200, await ready.text()
            for n in range(20):
                call = {"jsonrpc": "2.0", "id": n, "method": PUBLIC_READ, "params": {}}
                async with session.post(f"http://127.0.0.1:{gateway}/rpc", json=call) as answer:
                    assert "result" in await answer.json()
        for n in (0, 1):
            metrics = await get_text(
                f"http://127.0.0.1:{metrics_ports['ideas'] + REPLICA_PORT_STEP * n}/metrics"
            )
            assert PUBLIC_READ.replace("Service.", "Service/") in metrics, n


async def test_make_run_starts_again_a_program_that_could_not_bind_its_port(
    tmp_path: Path,
) -> None:
    """make run's ports lie in the kernel's ephemeral range, so another
    process's connection can hold one for a moment: the program that could not
    bind it exits, and make run starts it again once the port is free."""
    ports, _metrics_ports, env = one_of_each()
    holder = socket.socket()
    holder.bind(("127.0.0.1", ports["votes"] + REPLICA_PORT_STEP))  # votes-events' port
    holder.listen()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deploy.localstack",
        cwd=ROOT, env={**os.environ, **env, "COCREATE_DEV_DIR": str(tmp_path / "dev")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    logs: asyncio.Future[bytes] | None = None
    try:
        async with asyncio.timeout(120):
            while True:
                line = (await process.stderr.readline()).decode()
                assert line, "make run ended before it started votes-events again"
                if "votes-events exited" in line and "starting it again" in line:
                    break
            holder.close()
            # The services' logs go on coming on stderr: read them, or a full
            # pipe would stop them.
            logs = asyncio.ensure_future(process.stderr.read())
            printed = ""
            while "cocreate is running" not in printed:
                line = (await process.stdout.readline()).decode()
                assert line, f"the stack exited early; it printed:\n{printed}"
                printed += line
        assert f"votes-events grpc://127.0.0.1:{ports['votes'] + REPLICA_PORT_STEP}" in printed
    finally:
        holder.close()
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            # Read what is left, or a full pipe would keep the stack from stopping.
            await asyncio.gather(process.stdout.read(), logs or process.stderr.read())
            code = await process.wait()
    assert code == 0, f"the stack exited with {code}"
