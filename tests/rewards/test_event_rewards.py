"""Rewards paid from the ideas and votes events: the rules, daily caps,
supporters at the moment of shipping, spam reversal, and exactly once."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from cocreate.events.v1 import ideas_events_pb2, rewards_events_pb2, votes_events_pb2
from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.rewards.v1 import rewards_service_pb2 as pb

from services.kit import events
from services.kit.inbox import InboxConsumer, applied_all_published
from services.kit.outbox import Outbox, PendingEvent
from services.kit.server import RunningService
from services.rewards.domain import TierThresholds
from services.rewards.handlers import IDEAS_CONSUMER, VOTES_CONSUMER, RewardHandlers
from tests.rewards.helpers import (
    ADMIN,
    MEMBER_VOTE,
    balance,
    cast,
    change_status,
    entries,
    handled,
    publish_release,
    retract,
    rewards_stub,
    submit,
)
from tests.support import emit, emit_all, eventually

MERGE = votes_events_pb2.VOTE_CHANGE_REASON_MERGE


async def _all_handled(rewards: RunningService, event_ids: list[str]) -> bool:
    for event_id in event_ids:
        if not await handled(rewards, event_id):
            return False
    return True


@contextlib.asynccontextmanager
async def _votes_consumer_paused(rewards: RunningService) -> AsyncIterator[None]:
    """The votes consumer takes nothing while inside: what is published
    meanwhile waits for it."""
    js, stream = rewards.runtime.js, rewards.runtime.config.stream
    until = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    await js.pause_consumer(stream, VOTES_CONSUMER, until)
    try:
        yield
    finally:
        await js.resume_consumer(stream, VOTES_CONSUMER)


def _vote_write(
    casts: list[tuple[str, str, int]], retracts: tuple[tuple[str, str, int], ...] = ()
) -> votes_events_pb2.VotesChanged:
    """One write of member votes: (idea, member, vote version) each."""
    return votes_events_pb2.VotesChanged(
        casts=[
            votes_events_pb2.VoteCast(
                idea_id=idea, member_id=member, weight=1, reason=MEMBER_VOTE, vote_version=version
            )
            for idea, member, version in casts
        ],
        retracts=[
            votes_events_pb2.VoteRetracted(
                idea_id=idea, member_id=member, reason=MEMBER_VOTE, vote_version=version
            )
            for idea, member, version in retracts
        ],
    )


async def _supporters(rewards: RunningService) -> dict[tuple[str, str], tuple[bool, int]]:
    """(idea, member) → (active, vote version) of every supporter row."""
    return {
        (r["idea_id"], r["member_id"]): (r["active"], r["vote_version"])
        for r in await rewards.runtime.pool.fetch("select * from supporters")
    }


async def test_submissions_pay_five_points_at_most_three_times_a_day(
    rewards: RunningService,
) -> None:
    ids = [await submit(rewards, f"idea-{n}", "author") for n in range(4)]
    await eventually(lambda: _all_handled(rewards, ids))
    paid = await entries(rewards, "author", "idea_submitted")
    assert [e["amount"] for e in paid] == [5, 5, 5]
    assert all(e["rule_version"] == 1 and e["source"].startswith("event:") for e in paid)
    assert await balance(rewards, "author") == 15


async def test_the_same_event_delivered_five_times_issues_one_entry(
    rewards: RunningService,
) -> None:
    envelope = events.wrap(
        ideas_events_pb2.IdeaSubmitted(idea_id="idea-1", author_id="author"),
        source="ideas",
        aggregate_id="idea-1",
        aggregate_version=1,
    )
    subject = events.subject_for(ideas_events_pb2.IdeaSubmitted)
    handlers = RewardHandlers(rewards.runtime.outbox, TierThresholds())
    consumer = handlers.consumers()[0]
    for _ in range(5):
        async with rewards.runtime.pool.acquire() as conn, conn.transaction():
            await consumer.apply(conn, envelope, subject)
    # Replays that bypass the inbox (another consumer name: a fresh inbox) still pay once.
    for n in range(5):
        bypass = InboxConsumer(
            f"replay-{n}", {ideas_events_pb2.IdeaSubmitted: handlers.idea_submitted}
        )
        async with rewards.runtime.pool.acquire() as conn, conn.transaction():
            assert await bypass.apply(conn, envelope, subject)
    # And the same envelope re-published under new message ids reaches the consumer.
    for _ in range(5):
        await rewards.runtime.js.publish(
            subject, envelope.SerializeToString(), headers={"Nats-Msg-Id": str(uuid.uuid4())}
        )
    later = await submit(rewards, "idea-2", "someone-else")
    await eventually(lambda: handled(rewards, later))
    assert await rewards.runtime.pool.fetchval(
        "select count(*) from inbox where consumer = $1 and event_id = $2::uuid",
        IDEAS_CONSUMER,
        envelope.event_id,
    )
    assert [e["amount"] for e in await entries(rewards, "author")] == [5]


async def test_acceptance_pays_the_author_once_per_idea(rewards: RunningService) -> None:
    ids = [
        await submit(rewards, "idea-1", "author"),
        await change_status(rewards, "idea-1", "author", status.IDEA_STATUS_UNDER_REVIEW, 2),
        await change_status(rewards, "idea-1", "author", status.IDEA_STATUS_PLANNED, 3),
        await change_status(rewards, "idea-1", "author", status.IDEA_STATUS_IN_PROGRESS, 4),
    ]
    await eventually(lambda: _all_handled(rewards, ids))
    assert [e["amount"] for e in await entries(rewards, "author", "idea_accepted")] == [50]
    assert await balance(rewards, "author") == 55


async def test_shipping_pays_the_author_and_the_supporters_of_that_moment_once(
    rewards: RunningService,
) -> None:
    ids = [
        await submit(rewards, "idea-1", "author"),
        await cast(rewards, "idea-1", "fan-1"),
        await cast(rewards, "idea-1", "fan-2"),
        await cast(rewards, "idea-1", "quitter"),
        await retract(rewards, "idea-1", "quitter", 2),
    ]
    await eventually(lambda: _all_handled(rewards, ids))
    shipped = await change_status(rewards, "idea-1", "author", status.IDEA_STATUS_SHIPPED, 5)
    await eventually(lambda: handled(rewards, shipped))
    # The release cut announcing the same ship pays nothing more.
    release = await publish_release(rewards, "r1", ["idea-1"])
    await eventually(lambda: handled(rewards, release))
    author = await entries(rewards, "author")
    assert [(e["rule_id"], e["amount"]) for e in author] == [
        ("idea_submitted", 5),
        ("idea_accepted", 50),
        ("idea_shipped_author", 500),
    ]
    for fan in ("fan-1", "fan-2"):
        assert [(e["rule_id"], e["amount"]) for e in await entries(rewards, fan)] == [
            ("vote_cast", 1),
            ("idea_shipped_supporter", 20),
        ]
    assert [e["rule_id"] for e in await entries(rewards, "quitter")] == ["vote_cast"]


@pytest.mark.parametrize("announced_by", ["status", "release"])
async def test_a_ship_waits_for_the_vote_changes_published_before_it(
    rewards: RunningService, announced_by: str
) -> None:
    """A retract published before the ship, which the votes consumer has not
    applied when the ship arrives, is applied first: the member is never paid
    as a supporter (not paid, then taken back)."""
    ids = [
        await submit(rewards, "idea-1", "author"),
        await cast(rewards, "idea-1", "fan"),
        await cast(rewards, "idea-1", "quitter"),
    ]
    await eventually(lambda: _all_handled(rewards, ids))
    js, stream = rewards.runtime.js, rewards.runtime.config.stream
    async with _votes_consumer_paused(rewards):
        await retract(rewards, "idea-1", "quitter", 2)
        if announced_by == "status":
            ship = await change_status(rewards, "idea-1", "author", status.IDEA_STATUS_SHIPPED, 2)
        else:
            ship = await publish_release(rewards, "r1", ["idea-1"])

        async def ship_delivered() -> bool:
            info = await js.consumer_info(stream, IDEAS_CONSUMER)
            return bool(info.num_pending == 0 and info.num_ack_pending == 1)

        # The ship reached its consumer, which waits for the retract: nothing
        # is applied, and the wait itself says the votes are not all heard.
        await eventually(ship_delivered)
        assert not await applied_all_published(js, stream, VOTES_CONSUMER, within=0.2)
        assert not await handled(rewards, ship)
    await eventually(lambda: handled(rewards, ship))
    assert await applied_all_published(js, stream, VOTES_CONSUMER, within=0.0)
    assert [e["rule_id"] for e in await entries(rewards, "quitter")] == ["vote_cast"]
    assert [e["amount"] for e in await entries(rewards, "fan", "idea_shipped_supporter")] == [20]


async def test_a_release_event_alone_ships_and_pays(rewards: RunningService) -> None:
    ids = [await submit(rewards, "idea-1", "author"), await cast(rewards, "idea-1", "fan")]
    await eventually(lambda: _all_handled(rewards, ids))
    release = await publish_release(rewards, "r1", ["idea-1"])
    await eventually(lambda: handled(rewards, release))
    later = await change_status(rewards, "idea-1", "author", status.IDEA_STATUS_SHIPPED, 3)
    await eventually(lambda: handled(rewards, later))
    assert len(await entries(rewards, "author", "idea_shipped_author")) == 1
    assert len(await entries(rewards, "fan", "idea_shipped_supporter")) == 1


async def test_an_idea_hidden_as_spam_gives_back_its_submission_points(
    rewards: RunningService,
) -> None:
    ids = [
        await submit(rewards, "idea-1", "spammer"),
        await emit(
            rewards,
            ideas_events_pb2.IdeaHidden(
                idea_id="idea-1", author_id="spammer", spam=True, actor_id="pm-1"
            ),
            source="ideas",
            aggregate_id="idea-1",
            aggregate_version=2,
        ),
        await emit(
            rewards,
            ideas_events_pb2.IdeaHidden(idea_id="idea-1", author_id="spammer", spam=True),
            source="ideas",
            aggregate_id="idea-1",
            aggregate_version=3,
        ),
    ]
    await eventually(lambda: _all_handled(rewards, ids))
    spam = await entries(rewards, "spammer")
    assert [(e["kind"], e["amount"], e["rule_id"]) for e in spam] == [
        ("earn", 5, "idea_submitted"),
        ("reversal", -5, "idea_submitted"),
    ]
    assert spam[1]["actor_id"] == "pm-1"
    assert await balance(rewards, "spammer") == 0


async def test_votes_pay_one_point_once_per_idea_at_most_ten_a_day(
    rewards: RunningService,
) -> None:
    ids = [await cast(rewards, f"idea-{n}", "voter") for n in range(12)]
    ids.append(await retract(rewards, "idea-0", "voter", 2))
    ids.append(await cast(rewards, "idea-0", "voter", 3))
    await eventually(lambda: _all_handled(rewards, ids))
    paid = await entries(rewards, "voter", "vote_cast")
    assert len(paid) == 10
    assert await balance(rewards, "voter") == 10


async def test_merged_support_moves_and_voided_support_goes(rewards: RunningService) -> None:
    merge = votes_events_pb2.VOTE_CHANGE_REASON_MERGE
    void = votes_events_pb2.VOTE_CHANGE_REASON_VOID
    ids = [
        await submit(rewards, "target", "author"),
        await cast(rewards, "dup", "mover"),
        await retract(rewards, "dup", "mover", 2, reason=merge),
        await cast(rewards, "target", "mover", 1, reason=merge),
        await cast(rewards, "target", "spam-account"),
        await retract(rewards, "target", "spam-account", 2, reason=void),
        # Older than what is stored: ignored.
        await cast(rewards, "dup", "mover", 1),
    ]
    await eventually(lambda: _all_handled(rewards, ids))
    shipped = await change_status(rewards, "target", "author", status.IDEA_STATUS_SHIPPED, 2)
    await eventually(lambda: handled(rewards, shipped))
    assert len(await entries(rewards, "mover", "idea_shipped_supporter")) == 1
    assert [e["rule_id"] for e in await entries(rewards, "mover")].count("vote_cast") == 1
    assert await entries(rewards, "spam-account", "idea_shipped_supporter") == []


async def test_an_entry_records_the_rule_version_that_paid_it(rewards: RunningService) -> None:
    service = rewards_stub(rewards)
    first = await submit(rewards, "idea-1", "author")
    await eventually(lambda: handled(rewards, first))
    updated = await service.UpdateRule(
        pb.UpdateRuleRequest(rule_id="idea_submitted", points=7), metadata=ADMIN
    )
    assert (updated.rule.version, updated.rule.points) == (2, 7)
    second = await submit(rewards, "idea-2", "author")
    await eventually(lambda: handled(rewards, second))
    paid = await entries(rewards, "author", "idea_submitted")
    assert [(e["amount"], e["rule_version"]) for e in paid] == [(5, 1), (7, 2)]


async def test_events_arriving_out_of_order_pay_what_happened(rewards: RunningService) -> None:
    earlier = datetime.now(UTC) - timedelta(minutes=10)
    before_ship = datetime.now(UTC) - timedelta(minutes=5)
    ready = [
        await cast(rewards, "idea-1", "wavering", 1, at=earlier),
        await retract(rewards, "idea-1", "flipper", 2, at=before_ship),
    ]
    await eventually(lambda: _all_handled(rewards, ready))
    shipped = await change_status(rewards, "idea-1", "author", status.IDEA_STATUS_SHIPPED, 4)
    await eventually(lambda: handled(rewards, shipped))
    late = [
        # Cast before the ship, heard of after it: the supporter reward is paid.
        await cast(rewards, "idea-1", "early-fan", 1, at=before_ship),
        # Cast after the ship: nothing.
        await cast(rewards, "idea-1", "late-fan"),
        # Retracted before the ship, heard of after it: the reward is taken back.
        await retract(rewards, "idea-1", "wavering", 2, at=before_ship),
        # Older than the retraction already known: changes nothing, pays nothing.
        await cast(rewards, "idea-1", "flipper", 1, reason=MERGE, at=earlier),
        # Hidden as spam before its submission arrives: the submission pays nothing.
        await emit(
            rewards,
            ideas_events_pb2.IdeaHidden(idea_id="idea-2", author_id="spammer", spam=True),
            source="ideas",
            aggregate_id="idea-2",
            aggregate_version=2,
        ),
        await submit(rewards, "idea-2", "spammer"),
    ]
    await eventually(lambda: _all_handled(rewards, late))
    assert len(await entries(rewards, "early-fan", "idea_shipped_supporter")) == 1
    assert await entries(rewards, "late-fan", "idea_shipped_supporter") == []
    assert [(e["kind"], e["amount"]) for e in await entries(rewards, "wavering")] == [
        ("earn", 1),
        ("earn", 20),
        ("reversal", -20),
    ]
    assert await entries(rewards, "flipper") == []
    assert await entries(rewards, "spammer") == []
    author = await rewards_stub(rewards).GetAccount(
        pb.GetAccountRequest(member_id="author"), metadata=ADMIN
    )
    assert (author.account.lifetime_points, author.account.tier) == (550, "member")


async def test_a_burst_of_votes_is_paid_together_within_the_caps(
    rewards: RunningService,
) -> None:
    """Many VoteCast events arriving together are applied as runs (a few
    statements per run): still one point per member and idea, ten a day, a
    hash chain that verifies, and a balance that is the sum of its entries."""
    members = [f"fan-{n}" for n in range(40)]
    early = await cast(rewards, "idea-0", "fan-0")  # paid before the burst
    await eventually(lambda: _all_handled(rewards, [early]))
    burst = [
        PendingEvent(
            votes_events_pb2.VoteCast(
                idea_id=f"idea-{i}", member_id=m, weight=1, reason=MEMBER_VOTE, vote_version=1
            ),
            aggregate_id=f"idea-{i}/{m}",
            aggregate_version=1,
        )
        for i in range(15)
        for m in members
    ]
    async with rewards.runtime.pool.acquire() as conn, conn.transaction():
        await Outbox("votes").emit_many(conn, burst)

    async def all_paid() -> bool:
        count = await rewards.runtime.pool.fetchval(
            "select count(*) from ledger_entries where rule_id = 'vote_cast'"
        )
        return bool(count == 10 * len(members))

    await eventually(all_paid)
    for member in members:
        paid = await entries(rewards, member, "vote_cast")
        assert len({e["award_key"] for e in paid}) == len(paid) == 10
        assert await balance(rewards, member) == sum(e["amount"] for e in paid) == 10
    transactions = await rewards.runtime.pool.fetchval(
        "select count(distinct xmin::text) from ledger_entries where rule_id = 'vote_cast'"
    )
    assert transactions < 10 * len(members)  # paid in runs, not an event at a time
    verdict = await rewards_stub(rewards).VerifyLedger(pb.VerifyLedgerRequest(), metadata=ADMIN)
    assert verdict.ok, verdict


async def test_votes_written_together_are_paid_and_supported_as_one_event(
    rewards: RunningService,
) -> None:
    """A VotesChanged (one group commit of the votes service) pays each cast's
    point and records each retract, as the same votes arriving one by one
    would; the same votes again in another event pay nothing more."""
    before = await cast(rewards, "idea-c", "m3")
    await eventually(lambda: _all_handled(rewards, [before]))

    def written() -> votes_events_pb2.VotesChanged:
        return _vote_write(
            [("idea-a", "m1", 1), ("idea-b", "m1", 1), ("idea-a", "m2", 1)],
            retracts=(("idea-c", "m3", 2),),
        )

    first = await emit(rewards, written(), source="votes", aggregate_id="votes")
    again = await emit(rewards, written(), source="votes", aggregate_id="votes")
    await eventually(lambda: _all_handled(rewards, [first, again]))

    assert [e["award_key"] for e in await entries(rewards, "m1", "vote_cast")] == [
        "idea:idea-a",
        "idea:idea-b",
    ]
    assert [e["award_key"] for e in await entries(rewards, "m2", "vote_cast")] == ["idea:idea-a"]
    assert await _supporters(rewards) == {
        ("idea-a", "m1"): (True, 1),
        ("idea-b", "m1"): (True, 1),
        ("idea-a", "m2"): (True, 1),
        ("idea-c", "m3"): (False, 2),
    }


async def test_vote_writes_arriving_together_are_applied_as_one_run(
    rewards: RunningService,
) -> None:
    """Vote writes that reach the consumer together are applied in one run:
    each cast paid once, a retract after the casts of the writes before it,
    the supporters as the writes one at a time would leave them, and one
    PointsAwardedTogether for the casts before the retract and one for those
    after it (a write at a time: one for each write that pays)."""
    async with _votes_consumer_paused(rewards):
        ids = await emit_all(
            rewards,
            "votes",
            [
                (write, "votes", 0)
                for write in (
                    _vote_write([("idea-a", "m1", 1), ("idea-b", "m1", 1)]),
                    _vote_write([("idea-a", "m2", 1)], retracts=(("idea-a", "m1", 2),)),
                    _vote_write([("idea-a", "m1", 3), ("idea-b", "m2", 1)]),
                )
            ],
        )

        async def all_waiting() -> bool:
            info = await rewards.runtime.js.consumer_info(
                rewards.runtime.config.stream, VOTES_CONSUMER
            )
            return bool(info.num_pending == len(ids))

        await eventually(all_waiting)
    await eventually(lambda: _all_handled(rewards, ids))

    assert [e["award_key"] for e in await entries(rewards, "m1", "vote_cast")] == [
        "idea:idea-a",
        "idea:idea-b",
    ]
    assert [e["award_key"] for e in await entries(rewards, "m2", "vote_cast")] == [
        "idea:idea-a",
        "idea:idea-b",
    ]
    assert await _supporters(rewards) == {
        ("idea-a", "m1"): (True, 3),
        ("idea-b", "m1"): (True, 1),
        ("idea-a", "m2"): (True, 1),
        ("idea-b", "m2"): (True, 1),
    }
    awarded = await rewards.runtime.pool.fetchval(
        "select count(*) from outbox where subject = $1",
        events.subject_for(rewards_events_pb2.PointsAwardedTogether),
    )
    assert awarded == 2  # the casts before the retract, and m2's cast of idea-b after it
