"""What tracing costs the vote's hot path with export off: the votes
process's CPU per CastVote, for variants of the same votes service run one
after another, round after round, on one Postgres and one NATS (the machine
is shared and noisy: only figures from the same run are compared).

    .venv/bin/python -m bench.trace_cost [--calls 4000] [--rounds 3]
        [--tree NAME=PATH ...]

The variants: `export off` (the default: spans not recorded, ids flowing),
`sdk disabled` (OTEL_SDK_DISABLED=true: no spans, no ids, the floor), and
each `--tree NAME=PATH`, the votes service of another checkout (an earlier
commit, for a before-and-after) run with this one's virtual environment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg
import grpc
from cocreate.votes.v1 import votes_service_pb2 as votes
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.probes import cpu_seconds
from deploy.localstack import ROOT, LocalNats, LocalPostgres, free_port
from services.kit import auth, config

IN_FLIGHT = 16
IDEAS = 50


async def _until_serving(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(600):
            try:
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the votes service at {address} did not start")


async def _cast(address: str, calls: int, run: int) -> None:
    """`calls` CastVotes, IN_FLIGHT at a time, each by its own member."""
    async with grpc.aio.insecure_channel(address) as channel:
        client = votes_grpc.VoteServiceStub(channel)
        numbers = iter(range(calls))

        async def caller() -> None:
            for n in numbers:
                token = auth.mint_token(f"r{run}-m{n}", "member", config.DEV_JWT_SECRET)
                await client.CastVote(
                    votes.CastVoteRequest(idea_id=f"idea-{n % IDEAS}"),
                    metadata=(("authorization", f"Bearer {token}"),),
                )

        await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))


def _spawn(tree: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The votes service of `tree`; its log lines are written, then dropped."""
    return subprocess.Popen(
        [sys.executable, "-m", "services.votes"], cwd=tree, env=env, stderr=subprocess.DEVNULL
    )


async def _writes(database: str) -> int:
    """How many group-commit writes the votes service made (one event each)."""
    conn = await asyncpg.connect(database)
    try:
        found: int = await conn.fetchval(
            "select count(*) from outbox where subject = 'cocreate.votes.votes.changed'"
        )
    finally:
        await conn.close()
    return found


async def _measure(
    postgres: LocalPostgres, nats: LocalNats, tree: Path, env: dict[str, str], calls: int, run: int
) -> tuple[float, float]:
    """The votes process's CPU seconds per 1,000 CastVotes (after a warm-up),
    and the votes per write: the CPU per vote falls as the batches grow, so
    only runs with batches alike compare."""
    database = postgres.create_database(f"trace_cost_{run}")
    address = f"127.0.0.1:{free_port()}"
    child_env = {
        **os.environ,
        "COCREATE_ENV": "development",
        "COCREATE_VOTES_DATABASE_URL": database,
        "COCREATE_VOTES_ADDR": address,
        "COCREATE_VOTES_METRICS_ADDR": "",
        "COCREATE_VOTES_CAST_LIMIT": "0",
        "COCREATE_NATS_URL": nats.url,
        **env,
    }
    process = _spawn(tree, child_env)
    try:
        await _until_serving(address)
        conn = await asyncpg.connect(database)
        try:
            await conn.execute(
                "insert into ideas (idea_id, status, open, version) "
                "select 'idea-' || n, 1, true, 1 from generate_series(0, $1 - 1) n",
                IDEAS,
            )
        finally:
            await conn.close()
        await _cast(address, calls // 5, run * 10)  # warm-up
        pids = {"votes": [process.pid]}
        before, writes_before = cpu_seconds(pids)["votes"], await _writes(database)
        await _cast(address, calls, run * 10 + 1)
        used = cpu_seconds(pids)["votes"] - before
        return used / calls * 1000, calls / max(1, await _writes(database) - writes_before)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)


async def _main(calls: int, rounds: int, trees: dict[str, Path]) -> None:
    variants: dict[str, tuple[Path, dict[str, str]]] = {
        "export off": (ROOT, {}),
        "sdk disabled": (ROOT, {"OTEL_SDK_DISABLED": "true"}),
        **{name: (path, {}) for name, path in trees.items()},
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as folder:
        postgres = LocalPostgres(Path(folder) / "pg", free_port(), durable=False).start()
        nats = LocalNats(Path(folder) / "js", free_port(), sync_always=False).start()
        try:
            run = 0
            for round_number in range(rounds):
                for name, (tree, env) in variants.items():
                    run += 1
                    per_thousand, per_write = await _measure(postgres, nats, tree, env, calls, run)
                    seconds[name].append(per_thousand)
                    print(f"round {round_number + 1} {name:>14}: {per_thousand:.3f} s CPU "
                          f"per 1,000 CastVotes, {per_write:.1f} votes per write",
                          flush=True)  # fmt: skip
        finally:
            nats.stop()
            postgres.stop()
    print("median CPU of the votes process per CastVote:")
    for name, figures in seconds.items():
        print(f"  {name:>14}: {statistics.median(figures):.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.trace_cost")
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()
    trees = {name: Path(path) for name, _, path in (t.partition("=") for t in args.tree)}
    asyncio.run(_main(args.calls, args.rounds, trees))


if __name__ == "__main__":
    main()
