"""Casts and retracts are written in batches (services/votes/writer.py): calls
that arrive together commit together, yet each call gets its own answer — a
refusal fails that call alone, a repeated request_id is applied once, the
rate limit holds exactly, and the tallies equal the recount."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest
from cocreate.events.v1 import votes_events_pb2 as events_pb
from cocreate.votes.v1 import votes_service_pb2 as pb

from services.kit import idempotency
from services.votes import store, writer
from tests.support import Platform, error_reason, eventually, metadata
from tests.votes import feed

PM = metadata("pm-1", "pm")


async def _answer(call: object) -> grpc.StatusCode | pb.Vote:
    try:
        answer = await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return answer.vote


async def _write_sizes(pool: asyncpg.Pool, idea_ids: Sequence[str]) -> list[int]:
    """How many of these ideas' votes each transaction that wrote them wrote,
    largest first (a row's xmin is the transaction that last wrote it)."""
    rows = await pool.fetch(
        "select count(*) as n from votes where idea_id = any($1::text[]) "
        "group by xmin::text order by n desc",
        list(idea_ids),
    )
    return [row["n"] for row in rows]


async def _writes(pool: asyncpg.Pool, idea_ids: Sequence[str]) -> int:
    """How many transactions wrote the votes of these ideas."""
    return len(await _write_sizes(pool, idea_ids))


async def test_a_burst_commits_together_and_each_call_gets_its_own_answer(
    platform: Platform,
) -> None:
    svc = await platform.start("votes", env={"COCREATE_VOTES_CAST_LIMIT": "0"})
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "open-1", "open-2", "closed")
    await feed.close(svc, "closed")
    await client.VoidMemberVotes(
        pb.VoidMemberVotesRequest(member_id="spammer", reason="sock puppet", ban=True),
        metadata=PM,
    )
    fans = [f"fan-{n}" for n in range(300)]

    def cast(member: str, idea: str) -> object:
        return client.CastVote(pb.CastVoteRequest(idea_id=idea), metadata=metadata(member))

    answers = await asyncio.gather(
        *(_answer(cast(fan, "open-1" if n % 2 else "open-2")) for n, fan in enumerate(fans)),
        _answer(cast("spammer", "open-1")),
        _answer(cast("late-fan", "closed")),
        _answer(cast("lost-fan", "no-such-idea")),
        _answer(
            client.RetractVote(
                pb.RetractVoteRequest(idea_id="open-1"), metadata=metadata("never-voted")
            )
        ),
    )
    *fan_answers, banned, closed, unknown, no_vote = answers
    assert all(isinstance(a, pb.Vote) and a.active for a in fan_answers)
    assert [banned, closed, unknown, no_vote] == [
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.NOT_FOUND,
    ]
    # Fewer transactions than votes: they were written together.
    assert await _writes(svc.runtime.pool, ["open-1", "open-2"]) < len(fans)
    await feed.tally_settles(client, "open-1", score=150, voters=150)
    await feed.tally_settles(client, "open-2", score=150, voters=150)
    events = await feed.outbox_events(svc, "cocreate.votes.vote.cast", events_pb.VoteCast)
    assert sorted(e.member_id for e in events) == sorted(fans)


async def test_one_request_sent_many_times_at_once_is_applied_once(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    request = pb.CastVoteRequest(idea_id="idea-1", request_id="tap-tap-tap")
    answers = await asyncio.gather(
        *(client.CastVote(request, metadata=metadata("m1")) for _ in range(20))
    )
    assert all(answer == answers[0] for answer in answers)
    history = await svc.runtime.pool.fetchval(
        "select count(*) from vote_history where member_id = 'm1'"
    )
    assert history == 1
    # A retract and a cast of the same vote sent together end as one of the
    # two serial orders: retract then cast (active, three history entries) or
    # cast (no change) then retract (inactive, two).
    await asyncio.gather(
        client.RetractVote(pb.RetractVoteRequest(idea_id="idea-1"), metadata=metadata("m1")),
        client.CastVote(pb.CastVoteRequest(idea_id="idea-1"), metadata=metadata("m1")),
    )
    entries = await svc.runtime.pool.fetchval(
        "select count(*) from vote_history where member_id = 'm1'"
    )
    active = await svc.runtime.pool.fetchval(
        "select active from votes where member_id = 'm1' and idea_id = 'idea-1'"
    )
    assert (entries, active) in {(3, True), (2, False)}


async def test_the_cast_limit_holds_exactly_for_casts_arriving_together(
    platform: Platform,
) -> None:
    svc = await platform.start(
        "votes",
        env={"COCREATE_VOTES_CAST_LIMIT": "3", "COCREATE_VOTES_CAST_WINDOW_SECONDS": "3600"},
    )
    client = feed.votes(svc)
    ideas = [f"idea-{n}" for n in range(8)]
    await feed.submit_ideas(svc, *ideas)
    outcomes = await asyncio.gather(
        *(
            _answer(client.CastVote(pb.CastVoteRequest(idea_id=i), metadata=metadata("eager")))
            for i in ideas
        )
    )
    assert sum(isinstance(o, pb.Vote) for o in outcomes) == 3
    assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 5
    hits = await svc.runtime.pool.fetchval(
        "select hits from rate_limit_windows where member_id = 'eager'"
    )
    assert hits == 3  # refused attempts are not counted
    try:
        await client.CastVote(pb.CastVoteRequest(idea_id=ideas[0]), metadata=metadata("eager"))
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(error) == "RATE_LIMITED"
    else:
        raise AssertionError("a fourth cast in the window was accepted")


async def test_only_casts_that_are_made_count_against_the_limit(platform: Platform) -> None:
    """A batch counts its casts into the window as it reads them; a cast
    refused (closed or unknown idea) or answered from a request_id retry is
    given back, so it does not use up the member's limit."""
    svc = await platform.start(
        "votes",
        env={"COCREATE_VOTES_CAST_LIMIT": "2", "COCREATE_VOTES_CAST_WINDOW_SECONDS": "3600"},
    )
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "open-1", "open-2", "closed")
    await feed.close(svc, "closed")
    member = metadata("picky")

    def cast(idea: str, request_id: str = "") -> object:
        return client.CastVote(
            pb.CastVoteRequest(idea_id=idea, request_id=request_id), metadata=member
        )

    first = await _answer(cast("open-1", "first"))
    assert isinstance(first, pb.Vote)
    refused_and_retried = await asyncio.gather(
        _answer(cast("closed")),
        _answer(cast("no-such-idea")),
        _answer(cast("open-1", "first")),
    )
    assert list(refused_and_retried) == [
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        first,
    ]
    hits = await svc.runtime.pool.fetchval(
        "select hits from rate_limit_windows where member_id = 'picky'"
    )
    assert hits == 1
    second = await _answer(cast("open-2"))
    assert isinstance(second, pb.Vote) and second.active
    assert await _answer(cast("closed")) == grpc.StatusCode.FAILED_PRECONDITION
    hits = await svc.runtime.pool.fetchval(
        "select hits from rate_limit_windows where member_id = 'picky'"
    )
    assert hits == 2


async def test_a_write_does_not_wait_its_pause_for_calls_that_are_not_coming(
    platform: Platform,
) -> None:
    """Under load a write waits up to COCREATE_VOTES_WRITE_PAUSE_MS after the
    last one for more calls to join it, but starts as soon as they stop
    coming: one member casting again and again, with a pause of a minute, is
    answered each time long before the minute is over."""
    svc = await platform.start(
        "votes", env={"COCREATE_VOTES_CAST_LIMIT": "0", "COCREATE_VOTES_WRITE_PAUSE_MS": "60000"}
    )
    client = feed.votes(svc)
    ideas = [f"idea-{n}" for n in range(5)]
    await feed.submit_ideas(svc, *ideas)

    async def one_after_another() -> None:
        for idea in ideas:
            await client.CastVote(pb.CastVoteRequest(idea_id=idea), metadata=metadata("m1"))

    await asyncio.wait_for(one_after_another(), timeout=30)
    assert await _writes(svc.runtime.pool, ideas) == len(ideas)


async def test_a_write_waits_longer_for_the_callers_of_the_last_write_still_to_come_back(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While fewer calls came since the last write started than it answered,
    more of its callers are likely coming back, and the next write waits
    EXPECTING_QUIET_SECONDS after the last call rather than QUIET_SECONDS: a
    caller a little late (one process of a client behind another) joins the
    write instead of waiting for the next. The quiets are scaled up here so
    that a slow machine cannot blur them."""
    monkeypatch.setattr(writer, "QUIET_SECONDS", 0.2)
    monkeypatch.setattr(writer, "EXPECTING_QUIET_SECONDS", 2.0)
    svc = await platform.start(
        "votes", env={"COCREATE_VOTES_CAST_LIMIT": "0", "COCREATE_VOTES_WRITE_PAUSE_MS": "60000"}
    )
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1", "idea-2", "idea-3")

    async def cast(member: str, idea: str) -> None:
        await client.CastVote(pb.CastVoteRequest(idea_id=idea), metadata=metadata(member))

    await cast("m1", "idea-1")  # a write of one
    await asyncio.gather(cast("m2", "idea-2"), cast("m3", "idea-2"))
    assert await _writes(svc.runtime.pool, ["idea-2"]) == 1, (
        "two calls together make one write, which answers two"
    )

    async def late() -> None:
        await asyncio.sleep(0.6)  # past the quiet, within the longer one
        await cast("m3", "idea-3")

    await asyncio.wait_for(asyncio.gather(cast("m2", "idea-3"), late()), timeout=30)
    assert await _writes(svc.runtime.pool, ["idea-3"]) == 1


async def test_a_write_starts_without_the_quiet_once_every_caller_it_knows_of_is_waiting(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five members cast together again and again (a client with five calls
    in flight). Once the writer has held the five at once, it starts a write
    as soon as the five are waiting, not after the quiet that waits for
    callers who may still come: with the quiets scaled up to seconds, a round
    is answered long before they end, in one write."""
    for quiet in ("QUIET_SECONDS", "EXPECTING_QUIET_SECONDS", "COMEBACK_SECONDS"):
        monkeypatch.setattr(writer, quiet, 5.0)
    svc = await platform.start(
        "votes", env={"COCREATE_VOTES_CAST_LIMIT": "0", "COCREATE_VOTES_WRITE_PAUSE_MS": "60000"}
    )
    client = feed.votes(svc)
    members = [f"m{n}" for n in range(5)]
    rounds = [f"idea-{n}" for n in range(4)]
    await feed.submit_ideas(svc, *rounds)

    async def cast_together(idea: str) -> None:
        await asyncio.gather(
            *(
                client.CastVote(pb.CastVoteRequest(idea_id=idea), metadata=metadata(member))
                for member in members
            )
        )

    # The first rounds teach the writer its five callers: a round's calls
    # arrive together, while the first of them is being written at the latest.
    for idea in rounds[:2]:
        await asyncio.wait_for(cast_together(idea), timeout=30)
    for idea in rounds[2:]:
        await asyncio.wait_for(cast_together(idea), timeout=2.5)
        assert await _writes(svc.runtime.pool, [idea]) == 1, "the five are written together"


async def _crowd_write_sizes(platform: Platform, casts: int, max_batch: int) -> list[int]:
    """Submit `casts` casts at once to a writer of `max_batch`; the size of
    each write that took them, largest first."""
    svc = await platform.start("votes", env={"COCREATE_VOTES_CAST_LIMIT": "0"})
    ideas = [f"idea-{n}" for n in range(casts)]
    await feed.submit_ideas(svc, *ideas)
    crowd = writer.VoteWriter(
        svc.runtime.pool, svc.runtime.outbox, writer.RateLimit(0, 60), max_batch=max_batch
    )
    # Each cast joins the queue when its task first runs, all before the
    # writer the first one starts.
    answers = await asyncio.gather(*(crowd.cast(f"m{n}", idea, "") for n, idea in enumerate(ideas)))
    assert all(answer.vote.active for answer in answers)
    return await _write_sizes(svc.runtime.pool, ideas)


async def test_a_crowd_of_waiting_calls_is_written_half_at_a_time(platform: Platform) -> None:
    """With more than twice `max_batch` changes waiting, a write takes half of
    them (`VoteWriter._write_size`), so that a heavy load is written in two
    cohorts rather than in many writes of `max_batch`: 61 casts waiting at
    once, with writes of 5, are written as 30, 15, 8, 5 and 3 — not as
    twelve writes of 5 and one of 1."""
    assert await _crowd_write_sizes(platform, casts=61, max_batch=5) == [30, 15, 8, 5, 3]


async def test_a_write_takes_at_most_the_largest_write_however_many_wait(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half of a very large crowd would be a write whose advisory locks fill
    Postgres's lock table: no write takes more than LARGEST_WRITE (scaled
    down here to 10)."""
    monkeypatch.setattr(writer, "LARGEST_WRITE", 10)
    sizes = await _crowd_write_sizes(platform, casts=61, max_batch=5)
    assert sizes == [10] * 5 + [5, 5, 1]


LOCKERS: dict[str, Callable[[asyncpg.Connection], Awaitable[object]]] = {
    # A tier change or a ban's lift holds the member exclusively.
    "member": lambda conn: store.lock_member(conn, "m1", exclusive=True),
    # A status change or a merge holds the idea exclusively.
    "idea": lambda conn: store.lock_ideas(conn, ["idea-1"], exclusive=True),
    # A policy update holds the policy exclusively.
    "policy": lambda conn: store.lock_policy(conn, exclusive=True),
    # A single call with the same request_id holds the request.
    "request": lambda conn: idempotency.replay(
        conn, "m1", writer.Kind.CAST.value, "r-1", pb.CastVoteResponse
    ),
}


@pytest.mark.parametrize("holder", sorted(LOCKERS))
async def test_a_batch_waits_for_the_locks_the_other_writers_take(
    platform: Platform, holder: str
) -> None:
    """A batch takes all its locks in one statement (`store.lock_keys`): they
    must be the very locks the other writers take one by one, or a cast would
    read and write beside a tier change, a status change, a policy update or
    a retry of its own request instead of after it."""
    svc = await platform.start("votes", env={"COCREATE_VOTES_CAST_LIMIT": "0"})
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    pool = svc.runtime.pool
    async with pool.acquire() as conn, conn.transaction():
        await LOCKERS[holder](conn)
        cast = asyncio.ensure_future(
            client.CastVote(
                pb.CastVoteRequest(idea_id="idea-1", request_id="r-1"), metadata=metadata("m1")
            )
        )

        async def batch_waits() -> int:
            """Advisory locks asked for and not granted: the batch's, held by the holder."""
            waiting: int = await pool.fetchval(
                "select count(*) from pg_locks where locktype = 'advisory' and not granted"
            )
            return waiting

        await eventually(batch_waits)
        assert not cast.done()
        assert await pool.fetchval("select count(*) from votes") == 0
    vote = (await asyncio.wait_for(cast, timeout=30)).vote
    assert vote.active and vote.member_id == "m1"


# The other replica's change of m1's vote on idea-1, at $1: a cast, a retract.
OTHER_REPLICAS = {
    "cast": """
        insert into votes as v (idea_id, member_id, weight, tier, active, cast_at, version)
        values ('idea-1', 'm1', 1, 'newcomer', true, $1, 1)
        on conflict (idea_id, member_id) do update
            set active = true, cast_at = $1, retracted_at = null, version = v.version + 1
        """,
    "retract": """
        update votes set active = false, retracted_at = $1, version = version + 1
        where idea_id = 'idea-1' and member_id = 'm1'
        """,
}


@pytest.mark.parametrize(
    ("before", "change"), [("none", "cast"), ("retracted", "cast"), ("active", "retract")]
)
async def test_a_vote_another_replica_writes_between_the_read_and_the_write_is_read_again(
    platform: Platform, before: str, change: str
) -> None:
    """A batch reads its votes and then writes them, and the shared locks let
    another replica's batch make the same change to the same vote in between.
    The change must not be made twice: the call answers the vote as the other
    replica left it, and the batch adds no history and no event for it."""
    svc = await platform.start("votes", env={"COCREATE_VOTES_CAST_LIMIT": "0"})
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    pool = svc.runtime.pool
    m1 = metadata("m1")
    if before in ("retracted", "active"):
        await client.CastVote(pb.CastVoteRequest(idea_id="idea-1"), metadata=m1)
    if before == "retracted":
        await client.RetractVote(pb.RetractVoteRequest(idea_id="idea-1"), metadata=m1)
    history = await pool.fetchval("select count(*) from vote_history")
    changed = "cocreate.votes.votes.changed"
    written = "select count(*) from outbox where subject = $1"
    batches = await pool.fetchval(written, changed)
    others = datetime(2026, 1, 1, tzinfo=UTC)
    async with pool.acquire() as other, other.transaction():
        # The other replica's change, written and not committed.
        await other.execute(OTHER_REPLICAS[change], others)
        call = asyncio.ensure_future(
            client.CastVote(pb.CastVoteRequest(idea_id="idea-1"), metadata=m1)
            if change == "cast"
            else client.RetractVote(pb.RetractVoteRequest(idea_id="idea-1"), metadata=m1)
        )

        async def write_waits() -> int:
            """The batch has read the vote as it was and waits to write it."""
            waiting: int = await pool.fetchval(
                "select count(*) from pg_stat_activity where pid <> pg_backend_pid() "
                "and wait_event_type = 'Lock' and backend_type = 'client backend'"
            )
            return waiting

        await eventually(write_waits)
        assert not call.done()
    vote = (await asyncio.wait_for(call, timeout=30)).vote
    stored = await pool.fetchrow(
        "select * from votes where idea_id = 'idea-1' and member_id = 'm1'"
    )
    if change == "cast":
        assert stored["active"] and stored["cast_at"] == others
        assert vote.active and vote.cast_time.ToDatetime(tzinfo=UTC) == others
    else:
        assert not stored["active"] and stored["retracted_at"] == others
        assert not vote.active and vote.retract_time.ToDatetime(tzinfo=UTC) == others
    assert await pool.fetchval("select count(*) from vote_history") == history
    assert await pool.fetchval(written, changed) == batches
