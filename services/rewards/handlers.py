"""What rewards does with the ideas and votes events.

Each reward is keyed by (member, rule, award key), where the award key names
what is rewarded (the idea), not the event that told us: a redelivery, a
dead-letter replay, or a release event and a status event describing the same
ship all find the first entry and pay nothing more. The unique index on
ledger_entries holds this even if the code is bypassed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cocreate.events.v1 import ideas_events_pb2, votes_events_pb2
from cocreate.ideas.v1 import idea_status_pb2
from google.protobuf import message as pb_message
from google.protobuf import timestamp_pb2

from services.kit import log
from services.kit.events import Event
from services.kit.inbox import Batched, InboxConsumer
from services.kit.outbox import Outbox
from services.rewards import domain, ledger, replica_store, store

IDEAS_CONSUMER = "rewards-ideas"
VOTES_CONSUMER = "rewards-votes"

# How long a ship waits for the votes consumer to apply what was published
# before it (see RewardHandlers). Well inside the ideas consumer's ack wait.
SHIP_WAITS_FOR_VOTES_SECONDS = 10.0

_log = log.get("rewards")

# Under load a VotesChanged comes from every vote write, a few tens of ms
# apart. Each transaction of the votes consumer costs ~2.5 ms of CPU here and
# ~3 ms in Postgres whatever it carries (bench/LIMITS.md), so it gathers 100 ms
# of them at a time; a voter's points come that much later, and a ship waits
# for them (see RewardHandlers).
VOTE_WRITES_GATHER_SECONDS = 0.1


def _when(message: pb_message.Message, field: str, event: Event[Any]) -> datetime:
    """The time a payload field says, or the envelope's time when it is unset."""
    if message.HasField(field):
        stamp: timestamp_pb2.Timestamp = getattr(message, field)
        return stamp.ToDatetime(tzinfo=UTC)
    return event.event_time


@dataclass(frozen=True)
class Payment:
    """One member to pay under a rule, for what (the award key), and why."""

    event: Event[Any]
    member_id: str
    award_key: str
    reason: str
    occurred_at: datetime


class RewardHandlers:
    """The two consumers' handlers.

    Rewards hears of ships (ideas' events) and of votes (votes' events)
    through two consumers, each at its own pace. A member who retracted just
    before the ship could be heard of after it: paid as a supporter, then the
    reward taken back. So before a ship is applied, `votes_heard` waits until
    the votes consumer has applied every event already published (at most
    SHIP_WAITS_FOR_VOTES_SECONDS): the supporters are those of the ship's
    moment. A vote change still unpublished then (its relay behind) is
    settled when it arrives, as before: paid late, or taken back.
    """

    def __init__(
        self,
        outbox: Outbox,
        tiers: domain.TierThresholds,
        *,
        votes_heard: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._outbox = outbox
        self._tiers = tiers
        self._votes_heard = votes_heard

    def consumers(self) -> list[InboxConsumer]:
        return [
            InboxConsumer(
                IDEAS_CONSUMER,
                {
                    ideas_events_pb2.IdeaSubmitted: self.idea_submitted,
                    ideas_events_pb2.IdeaStatusChanged: self.idea_status_changed,
                    ideas_events_pb2.IdeaHidden: self.idea_hidden,
                    ideas_events_pb2.ReleasePublished: self.release_published,
                },
                # Few events, each locking its accounts in its own order: one
                # per transaction, so no event holds locks while the next takes more.
                apply_together=False,
            ),
            InboxConsumer(
                VOTES_CONSUMER,
                {
                    votes_events_pb2.VotesChanged: Batched(self.votes_changed),
                    votes_events_pb2.VoteCast: Batched(self.votes_cast),
                    votes_events_pb2.VoteRetracted: self.vote_retracted,
                },
                gather_seconds=VOTE_WRITES_GATHER_SECONDS,
            ),
        ]

    # ---- ideas ------------------------------------------------------------

    async def idea_submitted(
        self, conn: asyncpg.Connection, event: Event[ideas_events_pb2.IdeaSubmitted]
    ) -> None:
        m = event.message
        idea = await replica_store.note_idea(conn, m.idea_id, m.author_id)
        if not m.author_id:
            return
        await store.ensure_account(conn, m.author_id)
        if idea["hidden_as_spam"]:
            return  # hidden before we heard of it: nothing to pay
        occurred = _when(m, "submit_time", event)
        await self._pay(
            conn,
            event,
            domain.RULE_IDEA_SUBMITTED,
            m.author_id,
            award_key=f"idea:{m.idea_id}",
            reason=f"idea {m.idea_id} submitted",
            occurred_at=occurred,
        )

    async def idea_status_changed(
        self, conn: asyncpg.Connection, event: Event[ideas_events_pb2.IdeaStatusChanged]
    ) -> None:
        m = event.message
        if m.new_status == idea_status_pb2.IDEA_STATUS_SHIPPED:
            await self._hear_votes_before_shipping(m.idea_id)
        idea = await replica_store.note_idea(conn, m.idea_id, m.author_id)
        await replica_store.set_idea_status(conn, m.idea_id, m.new_status, event.aggregate_version)
        author = m.author_id or idea["author_id"]
        if not author or idea["hidden_as_spam"]:
            return
        occurred = _when(m, "change_time", event)
        if m.new_status in domain.ACCEPTED_STATUSES:
            await self._pay(
                conn,
                event,
                domain.RULE_IDEA_ACCEPTED,
                author,
                award_key=f"idea:{m.idea_id}",
                reason=f"idea {m.idea_id} accepted",
                occurred_at=occurred,
            )
        if m.new_status == idea_status_pb2.IDEA_STATUS_SHIPPED:
            await self._ship(conn, event, m.idea_id, author, occurred)

    async def release_published(
        self, conn: asyncpg.Connection, event: Event[ideas_events_pb2.ReleasePublished]
    ) -> None:
        m = event.message
        if m.shipped_idea_ids:
            await self._hear_votes_before_shipping(*m.shipped_idea_ids)
        occurred = _when(m, "publish_time", event)
        for idea_id in sorted(m.shipped_idea_ids):  # the ideas' locks in one order
            idea = await replica_store.note_idea(conn, idea_id, "")
            if idea["hidden_as_spam"]:
                continue
            await self._ship(conn, event, idea_id, idea["author_id"], occurred)

    async def _hear_votes_before_shipping(self, *idea_ids: str) -> None:
        """Wait for the votes consumer to catch up (see the class). Called before
        the transaction touches anything the votes consumer may need."""
        if self._votes_heard is not None and not await self._votes_heard():
            _log.warning(
                "shipping before every published vote was heard; "
                "a retract heard later takes its supporter reward back",
                extra={"ideas": sorted(idea_ids)},
            )

    async def _ship(
        self,
        conn: asyncpg.Connection,
        event: Event[Any],
        idea_id: str,
        author: str,
        shipped_at: datetime,
    ) -> None:
        # Exclusive: the votes and retracts of this idea handled meanwhile (by
        # the votes consumer) either committed before — their support is seen
        # here — or wait, and then see the idea shipped.
        await replica_store.lock_ideas(conn, [idea_id], exclusive=True)
        await replica_store.mark_shipped(conn, idea_id, shipped_at)
        if author:
            await self._pay(
                conn,
                event,
                domain.RULE_IDEA_SHIPPED_AUTHOR,
                author,
                award_key=f"idea:{idea_id}",
                reason=f"idea {idea_id} shipped",
                occurred_at=shipped_at,
            )
        supporters = await replica_store.active_supporters(conn, idea_id)
        await store.ensure_accounts(conn, supporters)
        await self._pay_many(
            conn,
            domain.RULE_IDEA_SHIPPED_SUPPORTER,
            [
                Payment(
                    event,
                    member,
                    f"idea:{idea_id}",
                    f"supported idea {idea_id}, which shipped",
                    shipped_at,
                )
                for member in supporters
            ],
        )

    async def _pay_supporter(
        self,
        conn: asyncpg.Connection,
        event: Event[Any],
        idea_id: str,
        member_id: str,
        shipped_at: datetime,
    ) -> None:
        await self._pay(
            conn,
            event,
            domain.RULE_IDEA_SHIPPED_SUPPORTER,
            member_id,
            award_key=f"idea:{idea_id}",
            reason=f"supported idea {idea_id}, which shipped",
            occurred_at=shipped_at,
        )

    async def idea_hidden(
        self, conn: asyncpg.Connection, event: Event[ideas_events_pb2.IdeaHidden]
    ) -> None:
        m = event.message
        idea = await replica_store.note_idea(conn, m.idea_id, m.author_id)
        if not m.spam:
            return
        await replica_store.mark_hidden_as_spam(conn, m.idea_id)
        author = m.author_id or idea["author_id"]
        if not author:
            return
        await self._reverse(
            conn,
            event,
            domain.RULE_IDEA_SUBMITTED,
            author,
            idea_id=m.idea_id,
            reason=f"idea {m.idea_id} hidden as spam: submission points reversed",
            actor_id=m.actor_id or domain.SYSTEM_ACTOR,
        )

    # ---- votes ------------------------------------------------------------

    async def votes_changed(
        self, conn: asyncpg.Connection, batch: list[Event[votes_events_pb2.VotesChanged]]
    ) -> None:
        """A run of vote writes (each event one write of member votes), as
        they would be applied one at a time, in a few statements for the
        run: the casts of consecutive writes recorded and paid together, a
        write's retracts after its casts and before the next write's. Each
        transaction here costs about as much whatever it carries, and at a
        few calls in flight the votes service writes (and publishes) every
        few milliseconds, so a run per transaction, not a write, keeps
        rewards' share of the machine small (bench/LIMITS.md). Every idea's
        lock is taken first, in one order, so a ship waiting for one of them
        cannot hold an account this transaction needs later."""
        ideas = [
            *(cast.idea_id for event in batch for cast in event.message.casts),
            *(retract.idea_id for event in batch for retract in event.message.retracts),
        ]
        await replica_store.lock_ideas(conn, ideas, exclusive=False)
        casts: list[Event[votes_events_pb2.VoteCast]] = []
        for event in batch:
            casts.extend(event.carrying(cast) for cast in event.message.casts)
            if not event.message.retracts:
                continue
            # A retract may end a vote cast earlier in the run: those casts first.
            if casts:
                await self._record_casts(conn, casts)
                casts = []
            for retract in event.message.retracts:
                await self.vote_retracted(conn, event.carrying(retract))
        if casts:
            await self._record_casts(conn, casts)

    async def votes_cast(
        self, conn: asyncpg.Connection, batch: list[Event[votes_events_pb2.VoteCast]]
    ) -> None:
        """A run of votes cast, in a few statements for the whole run: record who
        supports what (the newest vote version wins), pay each member's own vote
        once per idea within the rule's daily cap, and pay a supporter whose
        vote was cast before the idea shipped but heard of after."""
        await replica_store.lock_ideas(conn, [e.message.idea_id for e in batch], exclusive=False)
        await self._record_casts(conn, batch)

    async def _record_casts(
        self, conn: asyncpg.Connection, batch: list[Event[votes_events_pb2.VoteCast]]
    ) -> None:
        """`votes_cast` once the ideas' locks are held."""
        casts = [
            (event, event.message, _when(event.message, "cast_time", event)) for event in batch
        ]
        await store.ensure_accounts(conn, [m.member_id for _, m, _ in casts])
        newest = await replica_store.set_supports(
            conn,
            [
                replica_store.SupportChange(
                    m.idea_id,
                    m.member_id,
                    active=True,
                    vote_version=m.vote_version or event.aggregate_version,
                    changed_at=cast_at,
                )
                for event, m, cast_at in casts
            ],
        )
        await self._pay_many(
            conn,
            domain.RULE_VOTE_CAST,
            [
                Payment(
                    event, m.member_id, f"idea:{m.idea_id}", f"voted for idea {m.idea_id}", cast_at
                )
                for event, m, cast_at in casts
                if m.reason == votes_events_pb2.VOTE_CHANGE_REASON_MEMBER and m.member_id
            ],
        )
        # A vote cast before the ship whose event arrives after it still counts.
        shipped = await replica_store.shipped_at_many(conn, [m.idea_id for _, m, _ in casts])
        for (event, m, cast_at), is_newest in zip(casts, newest, strict=True):
            shipped_at = shipped.get(m.idea_id) if is_newest else None
            if shipped_at is not None and cast_at <= shipped_at:
                await self._pay_supporter(conn, event, m.idea_id, m.member_id, shipped_at)

    async def _pay_many(
        self, conn: asyncpg.Connection, rule_id: str, payments: list[Payment]
    ) -> None:
        """`_pay` of one rule for many members at once: their accounts locked
        (in one order), what was paid before and the day's counts read in one
        statement each, the new entries appended together."""
        if not payments:
            return
        accounts = await store.lock_accounts(conn, [p.member_id for p in payments])
        rule = await store.get_rule(conn, rule_id)
        if rule is None or not rule["enabled"] or rule["points"] <= 0:
            return
        keys = [(p.member_id, p.award_key) for p in payments]
        paid = await store.awarded_keys(conn, rule_id, keys)
        days = [(p.member_id, domain.day_of(p.occurred_at)) for p in payments]
        capped = rule["daily_cap"] > 0
        on_day = await store.rewards_on_days(conn, rule_id, sorted(set(days))) if capped else {}
        news = []
        for payment, key, day in zip(payments, keys, days, strict=True):
            if key in paid or (capped and on_day[day] >= rule["daily_cap"]):
                continue
            paid.add(key)
            if capped:
                on_day[day] += 1
            news.append(
                ledger.NewEntry(
                    member_id=payment.member_id,
                    amount=rule["points"],
                    kind=domain.KIND_EARN,
                    reason=payment.reason,
                    source=f"event:{payment.event.event_id}",
                    actor_id=domain.SYSTEM_ACTOR,
                    award_key=payment.award_key,
                    occurred_at=payment.occurred_at,
                    rule_id=rule_id,
                    rule_version=rule["version"],
                )
            )
        await ledger.append_earnings(conn, self._outbox, self._tiers, accounts, news)

    async def vote_retracted(
        self, conn: asyncpg.Connection, event: Event[votes_events_pb2.VoteRetracted]
    ) -> None:
        m = event.message
        retracted_at = _when(m, "retract_time", event)
        await replica_store.lock_ideas(conn, [m.idea_id], exclusive=False)
        newest = await replica_store.set_support(
            conn,
            m.idea_id,
            m.member_id,
            active=False,
            vote_version=m.vote_version or event.aggregate_version,
            changed_at=retracted_at,
        )
        # Retracted before the ship, but heard of after it: take the supporter reward back.
        shipped_at = await replica_store.shipped_at(conn, m.idea_id) if newest else None
        if shipped_at is not None and retracted_at < shipped_at:
            await self._reverse(
                conn,
                event,
                domain.RULE_IDEA_SHIPPED_SUPPORTER,
                m.member_id,
                idea_id=m.idea_id,
                reason=f"support for idea {m.idea_id} ended before it shipped",
                actor_id=domain.SYSTEM_ACTOR,
            )

    # ---- paying -----------------------------------------------------------

    async def _pay(
        self,
        conn: asyncpg.Connection,
        event: Event[Any],
        rule_id: str,
        member_id: str,
        *,
        award_key: str,
        reason: str,
        occurred_at: datetime,
    ) -> None:
        """Pay `rule` to `member` once for `award_key`, within the rule's daily cap."""
        if not member_id:
            return
        await store.lock_account(conn, member_id)
        rule = await store.get_rule(conn, rule_id)
        if rule is None or not rule["enabled"] or rule["points"] <= 0:
            return
        if await store.find_entry(conn, member_id, rule_id, award_key) is not None:
            return
        if (
            rule["daily_cap"] > 0
            and await store.count_rewards_on_day(conn, member_id, rule_id, occurred_at)
            >= rule["daily_cap"]
        ):
            return
        await ledger.append_entry(
            conn,
            self._outbox,
            self._tiers,
            ledger.NewEntry(
                member_id=member_id,
                amount=rule["points"],
                kind=domain.KIND_EARN,
                reason=reason,
                source=f"event:{event.event_id}",
                actor_id=domain.SYSTEM_ACTOR,
                award_key=award_key,
                occurred_at=occurred_at,
                rule_id=rule_id,
                rule_version=rule["version"],
            ),
        )

    async def _reverse(
        self,
        conn: asyncpg.Connection,
        event: Event[Any],
        rule_id: str,
        member_id: str,
        *,
        idea_id: str,
        reason: str,
        actor_id: str,
    ) -> None:
        """Take back, once, what `rule` paid `member` for the idea; never more than
        the balance, which is never negative."""
        account = await store.lock_account(conn, member_id)
        paid = await store.find_entry(conn, member_id, rule_id, f"idea:{idea_id}")
        if paid is None or paid["amount"] <= 0:
            return
        amount = min(paid["amount"], account["balance"])
        if amount <= 0:
            return
        await ledger.append_entry(
            conn,
            self._outbox,
            self._tiers,
            ledger.NewEntry(
                member_id=member_id,
                amount=-amount,
                kind=domain.KIND_REVERSAL,
                reason=reason,
                source=f"event:{event.event_id}",
                actor_id=actor_id,
                award_key=f"reversal:idea:{idea_id}",
                occurred_at=event.event_time,
                rule_id=rule_id,
                rule_version=paid["rule_version"],
            ),
        )
