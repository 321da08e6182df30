"""Crash schedules: a mixed load from concurrent clients while seeded kills
take down each service, nats-server and Postgres (SIGKILL and immediate
shutdown), one or two at a time, sometimes during a start-up; then, once
quiet, the checker finds nothing lost, nothing twice, and no call answered
INTERNAL or UNKNOWN.

`make test` runs one short schedule. `make test-faults SEEDS=N` runs N longer
ones (COCREATE_FAULT_SEEDS=N, COCREATE_FAULT_SECONDS); a failing seed is
printed and replayed with COCREATE_FAULT_SEED=<seed>.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults import checker
from tests.faults.harness import CrashStack
from tests.faults.load import Clients, Record, client, kills, releases, set_up

MEMBERS_PER_CLIENT = 40
CLIENTS = 6


def _seeds() -> list[int]:
    if "COCREATE_FAULT_SEED" in os.environ:
        return [int(os.environ["COCREATE_FAULT_SEED"])]
    count = int(os.environ.get("COCREATE_FAULT_SEEDS", "0"))
    return list(range(1, count + 1)) if count else [20261202]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[CrashStack]:
    running = CrashStack(tmp_path)
    try:
        await running.start()
        yield running
    finally:
        await asyncio.to_thread(running.stop)


async def run_load(stack: CrashStack, seed: int, seconds: float, *, with_kills: bool) -> Clients:
    import random

    clients = Clients(stack, Record())
    product_id = await set_up(clients, random.Random(f"{seed}/setup"), ideas=12)
    stop = time.monotonic() + seconds
    members = [f"s{seed}-m{n}" for n in range(CLIENTS * MEMBERS_PER_CLIENT)]
    work = [client(clients, seed, n, members[n::CLIENTS], product_id, stop) for n in range(CLIENTS)]
    work.append(releases(clients, seed, product_id, stop))
    if with_kills:
        work.append(kills(stack, seed, clients.record, stop))
    await asyncio.gather(*work)
    return clients


@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", _seeds())
async def test_nothing_is_lost_or_paid_twice_under_a_crash_schedule(
    stack: CrashStack, seed: int
) -> None:
    seconds = float(os.environ.get("COCREATE_FAULT_SECONDS", "40"))
    print(f"crash schedule seed {seed} ({seconds:.0f}s); replay: COCREATE_FAULT_SEED={seed}")
    started = time.monotonic()
    clients = await run_load(stack, seed, seconds, with_kills=True)
    dbs = await checker.Databases.open(stack)
    try:
        await checker.wait_for_quiet(stack, dbs)
        violations = await checker.check_all(stack, dbs, clients)
    finally:
        await dbs.close()
    report = checker.summary(clients.record, time.monotonic() - started)
    print(json.dumps(report), "unplanned exits:", stack.unplanned_exits)
    assert clients.record.ok > 100, report  # the load did real work
    assert not violations, f"seed {seed}: {violations[:20]}"


async def test_the_checker_finds_planted_violations(stack: CrashStack) -> None:
    """The checker is only worth its silence if it speaks: after a clean run,
    break one invariant of each kind behind the API and see it reported."""
    clients = await run_load(stack, 7, 6.0, with_kills=False)
    dbs = await checker.Databases.open(stack)
    try:
        await checker.wait_for_quiet(stack, dbs)
        assert await checker.check_all(stack, dbs, clients) == []

        member = await dbs.rewards.fetchval("select member_id from accounts limit 1")
        await dbs.rewards.execute(
            "insert into ledger_entries (id, member_id, seq, amount, balance_after, kind, "
            "reason, source, rule_id, actor_id, award_key, occurred_at, created_at, hash) "
            "select gen_random_uuid(), $1, 999999, 7, 7, 'grant', 'planted', 'test', '', "
            "'test', 'planted', now(), now(), '\\x00'",
            member,
        )
        idea = await dbs.votes.fetchval("select idea_id from tallies limit 1")
        await dbs.votes.execute(
            "update tallies set weighted_score = weighted_score + 1 where idea_id = $1", idea
        )
        await dbs.votes.execute(
            "insert into dead_letters (consumer, event_id, subject, event_type, envelope, "
            "deliveries, error) values ('planted', gen_random_uuid(), 's', 't', '', 1, 'x')"
        )
        unmerged = await dbs.votes.fetchval(
            "select idea_id from ideas where merged_into is null and idea_id not in "
            "(select merged_into from ideas where merged_into is not null) limit 1"
        )
        # Stock taken without a redemption.
        await dbs.rewards.execute(
            "update catalogue_items set stock = stock - 1 where id = $1", clients.record.item_id
        )
        # OK answers that were never stored.
        clients.record.votes[("nobody", unmerged)] = True
        clients.record.releases["00000000-0000-4000-8000-000000000001"] = []
        found = "\n".join(await checker.check_all(stack, dbs, clients))
    finally:
        await dbs.close()
    assert f"balance of {member}" in found
    assert "VerifyLedger" in found
    assert f"tally of {idea}" in found
    assert f"ideas shows {idea}" in found
    assert "parked" in found
    assert f"the cast of nobody on {unmerged}" in found
    assert "the item's stock is" in found
    assert "release 00000000-0000-4000-8000-000000000001 answered OK is not stored" in found
