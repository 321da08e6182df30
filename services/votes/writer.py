"""Members' casts and retracts, written in batches: many calls, one transaction.

Why: a cast in its own transaction cost about 17 statements and a commit (an
fsync) per vote, so the service managed about 100 votes/s while the same
process answered 2,000 empty calls/s. Here CastVote and RetractVote hand
their change to the VoteWriter and wait for its answer. The writer gathers
what is waiting into a batch and writes the whole batch in one transaction
with a fixed number of statements — the locks; one read for every check,
which also counts the casts into their members' rate limits; one write of
the votes, their history, the tally marks, the remembered answers and the
events (`db.write_all`) — and one commit: a batch of casts is five round
trips to Postgres, BEGIN included, whatever its size. Calls that arrive
while batches are being written wait for the next one, so a batch grows with
the load and a lone call on an idle service is written at once (group
commit). Under load a write starts `pause_seconds`
(COCREATE_VOTES_WRITE_PAUSE_MS) after the previous one ended: what a write
costs beyond its votes — its transaction, its event, the relay's publish,
each consumer's transaction — is spent once for all the calls that arrived
meanwhile. Measured with `make bench`: at 64 calls in flight, a 20 ms pause
gave about 27 votes a write and 1.3× the votes per second of a 3 ms one
(about 10 a write), whose per-write costs were most of the machine's CPU;
starting writes 20 ms apart (not after a pause) gave 15 a write. The pause
ends early when calls stop arriving (see `_gather`), so at a few calls in
flight a write does not wait for callers that are all already waiting. A
write takes at most `max_batch` (COCREATE_VOTES_MAX_BATCH, 40) or half of
the calls waiting, whichever is more (`_write_size`): at 64 calls in flight,
writes of every waiting caller (about 45) left the calls loop idle while
each ran; capped at 40, the callers split into two cohorts, one gathered
while the other's write runs, and the cast phase's idle share fell from
22 % to about 12 % (bench/LIMITS.md). At 256 in flight a cap of 40 made six
or seven writes a cycle, each with what a write costs beyond its votes;
half of the waiting keeps two cohorts there too.

What stays true:
- OK means committed: a call is answered after its batch committed. When a
  batch fails (the database away, a conflict) every call in it fails with
  UNAVAILABLE or ABORTED, and a retry is safe: a cast of an active vote
  changes nothing, and a retry with the request_id gets the first answer.
- One change per vote and per request in flight: a call whose (idea, member)
  or request_id is in a batch being written waits for the next batch, so
  changes to one vote commit in the order they arrived, and a retry finds the
  first call's remembered answer.
- Serial order with bans, voids, tier and policy changes, status changes and
  merges: before it reads, a batch takes the shared advisory locks a single
  cast took (the policy, its ideas, its members) in the global order, and
  those writers take them exclusively (see store/__init__.py). Batches of
  other replicas take them shared too: a vote one of them changed between
  this batch's read and its write is seen before the commit, and the batch
  is written again.
- A caller's mistake (banned, unknown or closed idea, no vote to retract,
  over the rate limit) fails that call alone; the rest of the batch commits.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter, deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from cocreate.events.v1 import votes_events_pb2 as events_pb
from cocreate.ideas.v1 import idea_status_pb2
from cocreate.votes.v1 import votes_service_pb2 as pb
from google.protobuf import message as pb_message
from opentelemetry import trace
from opentelemetry.trace import Link

from services.kit import db, idempotency, ratelimit, tracing
from services.kit.errors import (
    DomainError,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    StaleRead,
)
from services.kit.outbox import Outbox, PendingEvent
from services.votes import changes, domain, mappers, store

_tracer = trace.get_tracer(__name__)

# While a write waits for more calls, it starts once none came for this long.
# At 16 calls in flight the gather is the calls loop answering one write's
# callers and taking their next calls, a fraction of a millisecond apart: A/B
# runs (six rounds each) gave 1 ms 15 % more votes/s there and a p99 3.1× the
# health call's against 3.3× for 2 ms (4 ms: 3.4×); 1.5 ms, timed as in
# `_gather`, 9 % fewer votes/s than 1 ms.
QUIET_SECONDS = 0.001
# ...and once this long passed since the last caller of the previous write
# was resumed: about what it takes a caller to send its next call (at 16 in
# flight the first reached the writer 1.7-3.4 ms after the last resume). With
# the 1 ms quiet alone, a write at 64 in flight left with the other cohort
# before the resumed callers came back: 24-26 votes a write against 27-32,
# 0.375 of the health call against 0.428 (A/B, two alternations of two rounds).
COMEBACK_SECONDS = 0.003
# ...and, while fewer calls came since the previous write started than it
# answered, once this long passed since the last call: more of its callers
# are likely coming back. At 16 in flight the bench's generator runs its
# callers in two processes, and when one process's calls came more than 1 ms
# after the other's, a write left with half of them (8 and 8, 11 % of the
# writes). A/B at 16 in flight, two alternations of two rounds: 14.4-15.1
# votes a write against 13.0-13.5, the casts' p99 29-39 ms against 39-46
# (3.1-3.5x the health call's against 3.5-4.1x). The bench's own throughput
# section, three alternations: 14.9-15.4 votes a write against 13.2-13.5,
# p99 2.8-3.3x against 2.7-4.3x; at 64 in flight the same.
EXPECTING_QUIET_SECONDS = 0.003

# ...unless every caller the writer knows of is already waiting: the most
# callers it held at once while each of this many writes gathered. At 16
# calls in flight the write then starts 0.1 ms after the last call instead of
# about 2.2 ms (the quiet, polled): A/B on one stack, three alternations,
# 0.31-0.36 of the health call against 0.26-0.31 and the casts' p50 7.3-9.1 ms
# against 9.4-10.8; the p99 the same; at 64 in flight a write fills to
# max_batch first, as before. Counting the callers held at once, not the size
# of the last writes, keeps two cohorts from staying apart: while one's write
# runs, the other's calls arrive, and both are counted (bench/LIMITS.md).
KNOWN_CALLERS_WRITES = 8

CAST_ACTION = "cast_vote"

# At most this many votes a write, unless more than twice as many wait
# (COCREATE_VOTES_MAX_BATCH; why 40: above).
DEFAULT_MAX_BATCH = 40
# ...and never more than this many, however many wait: a change takes up to
# three advisory locks (its request, its idea, its member), and the writes
# of eight pods at once (the most a votes database serves) stay below the
# shared lock table of a Postgres with default settings (64 locks a
# connection, 100 connections).
LARGEST_WRITE = 200


def _settle(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


class Kind(enum.Enum):
    CAST = "VoteService.CastVote"
    RETRACT = "VoteService.RetractVote"


@dataclass(eq=False)
class _Change:
    kind: Kind
    idea_id: str
    member_id: str
    request_id: str
    # The span of the call that asked for the change.
    caller_span: trace.SpanContext
    answer: asyncio.Future[pb_message.Message] = field(repr=False)

    def exclusive_keys(self) -> tuple[Hashable, ...]:
        """What must not be in two batches being written at once."""
        vote = ("vote", self.idea_id, self.member_id)
        if not self.request_id:
            return (vote,)
        return vote, ("request", self.member_id, self.kind.value, self.request_id)


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window_seconds: float


class VoteWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        outbox: Outbox,
        rate_limit: RateLimit,
        *,
        writers: int = 1,
        max_batch: int = DEFAULT_MAX_BATCH,
        pause_seconds: float = 0.0,
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        # The rate limit the read counts each batch's casts against.
        self._counting = store.CastCount(
            Kind.CAST.value, CAST_ACTION, rate_limit.limit, rate_limit.window_seconds
        )
        self._max_writers = writers
        self._max_batch = min(max_batch, LARGEST_WRITE)
        self._pause = pause_seconds
        # When the next write may start (the event loop's clock).
        self._next_write_at = 0.0
        self._pending: deque[_Change] = deque()
        self._busy: set[Hashable] = set()
        self._writers: set[asyncio.Task[None]] = set()
        # Callers answered whose handlers have not run again yet, when a call
        # last came and when a caller was last resumed, the calls that came
        # since the last write started and how many it answered (see
        # `_gather`).
        self._resuming = 0
        self._last_call = 0.0
        self._last_resume = 0.0
        self._came_since_write = 0
        self._last_write_size = 0
        # The callers the writer knows of: the most it held at once (waiting
        # or being written) while each of the last writes gathered, the most
        # since the last one started, the votes being written now, and the
        # gathers to wake once every known caller is waiting (see `_gather`).
        self._held_most: deque[int] = deque(maxlen=KNOWN_CALLERS_WRITES)
        self._held_most_now = 0
        self._writing = 0
        self._gathering: set[asyncio.Future[None]] = set()

    async def cast(self, member_id: str, idea_id: str, request_id: str) -> pb.CastVoteResponse:
        answer = await self._submit(Kind.CAST, member_id, idea_id, request_id)
        assert isinstance(answer, pb.CastVoteResponse)
        return answer

    async def retract(
        self, member_id: str, idea_id: str, request_id: str
    ) -> pb.RetractVoteResponse:
        answer = await self._submit(Kind.RETRACT, member_id, idea_id, request_id)
        assert isinstance(answer, pb.RetractVoteResponse)
        return answer

    async def _submit(
        self, kind: Kind, member_id: str, idea_id: str, request_id: str
    ) -> pb_message.Message:
        change = _Change(
            kind,
            idea_id,
            member_id,
            request_id,
            trace.get_current_span().get_span_context(),
            asyncio.get_running_loop().create_future(),
        )
        self._pending.append(change)
        self._last_call = asyncio.get_running_loop().time()
        self._came_since_write += 1
        self._held_most_now = max(self._held_most_now, len(self._pending) + self._writing)
        if self._gathering and self._everyone_waiting():
            for gathering in self._gathering:
                _settle(gathering)
        if len(self._writers) < self._max_writers:
            task = asyncio.create_task(self._write_while_pending(), name="votes-writer")
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)
        try:
            return await change.answer
        finally:
            # Only the writer settles an answer without cancelling it (a
            # caller that goes away cancels it), and it counted each one.
            if not change.answer.cancelled():
                self._resuming -= 1
                self._last_resume = asyncio.get_running_loop().time()

    async def _write_while_pending(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while True:
                await self._gather(loop)
                batch = self._take_batch()
                if not batch:
                    return
                self._came_since_write = 0
                self._held_most.append(self._held_most_now)
                self._held_most_now = len(batch) + len(self._pending) + self._writing
                self._writing += len(batch)
                taken = {key for change in batch for key in change.exclusive_keys()}
                self._busy |= taken
                try:
                    await self._write(batch)
                finally:
                    self._writing -= len(batch)
                    self._busy -= taken
                    self._last_write_size = len(batch)
                    self._next_write_at = loop.time() + self._pause
        finally:
            # At once, not in a done callback: a change submitted between this
            # writer's last look and the callback would find every writer slot
            # taken and wait for a writer that never comes.
            self._writers.discard(asyncio.current_task())

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for more calls to join the next write: while they keep coming,
        until `pause_seconds` after the last write ended (or a full batch).
        The write starts once QUIET_SECONDS passed since the last call came
        (EXPECTING_QUIET_SECONDS while fewer calls came since the previous
        write started than it answered) and COMEBACK_SECONDS since the last
        caller of the previous write was resumed: every caller that was
        going to join has by then (at a few calls in flight, all of them are
        waiting). It starts at once when every caller it knows of is waiting
        (`_everyone_waiting`): the quiet is for callers that may still come.

        The quiet does not begin while callers of the previous write are
        still to be resumed: the calls loop hands out their answers one by
        one and only then takes their next calls, so no call can arrive
        meanwhile. A quiet timed through that spell ended gathers at 64
        calls in flight because the loop was busy, not because calls had
        stopped (bench/LIMITS.md); polled every QUIET_SECONDS instead, it
        let a write start about 2.3 ms after the last call rather than 1."""
        while len(self._pending) < self._max_batch:
            now = loop.time()
            rest = self._next_write_at - now
            if rest <= 0 or self._everyone_waiting():
                return
            if self._resuming:
                quiet = QUIET_SECONDS
            else:
                end = max(self._last_call + QUIET_SECONDS, self._last_resume + COMEBACK_SECONDS)
                if self._came_since_write < self._last_write_size:
                    end = max(end, self._last_call + EXPECTING_QUIET_SECONDS)
                quiet = end - now
                if quiet <= 0:
                    return
            await self._sleep_unless_everyone_waits(loop, min(quiet, rest))

    def _everyone_waiting(self) -> bool:
        """Whether every caller the writer knows of is waiting for the next
        write: as many calls wait as it held at most while any of the last
        KNOWN_CALLERS_WRITES writes gathered (or since the last one started),
        and none of the last write's callers is still to be resumed. No other
        call is then coming, and the quiet would only delay the write."""
        if self._resuming or not self._held_most:
            return False
        known = max(self._held_most_now, *self._held_most)
        # One caller known is no evidence that no other is coming: a lone
        # member's cast keeps the quiet, so a second member casting right
        # after joins the write (and is known from then on).
        return known > 1 and len(self._pending) >= known

    async def _sleep_unless_everyone_waits(
        self, loop: asyncio.AbstractEventLoop, seconds: float
    ) -> None:
        """Sleep `seconds`, or less: `_submit` wakes the gather as soon as
        the last caller it knows of is waiting."""
        woken = loop.create_future()
        timer = loop.call_later(seconds, _settle, woken)
        self._gathering.add(woken)
        try:
            await woken
        finally:
            timer.cancel()
            self._gathering.discard(woken)

    def _take_batch(self) -> list[_Change]:
        """The oldest waiting changes that touch nothing being written now, at
        most one per vote and per request; the others keep their places."""
        batch: list[_Change] = []
        held: list[_Change] = []
        claimed: set[Hashable] = set()
        size = self._write_size()
        while self._pending and len(batch) < size:
            change = self._pending.popleft()
            if change.answer.done():
                continue  # the caller went away before it was written
            keys = change.exclusive_keys()
            if any(key in self._busy or key in claimed for key in keys):
                held.append(change)
                continue
            claimed.update(keys)
            batch.append(change)
        self._pending.extendleft(reversed(held))
        return batch

    def _write_size(self) -> int:
        """How many changes the next write takes at most: `max_batch`, or
        half of those waiting when more than twice as many wait. Writes of
        half of them keep the callers of a load that heavy in two cohorts,
        one gathered while the other's write runs, as `max_batch` does at 64
        calls in flight; at 256 in flight, writes of 40 made six or seven a
        cycle. A/B on one stack at 256 in flight, three alternations:
        0.51-0.54 of the health call against 0.44-0.46, the casts' p50
        85-92 ms against 98-101, and less CPU a vote in every process
        (bench/LIMITS.md)."""
        return min(max(self._max_batch, len(self._pending) // 2), LARGEST_WRITE)

    async def _write(self, batch: list[_Change]) -> None:
        try:
            answers = await self._commit(batch)
        except Exception as exc:  # nothing of the batch committed
            for change in batch:
                if not change.answer.done():
                    self._resuming += 1
                    change.answer.set_exception(exc)
            return
        for change, answer in zip(batch, answers, strict=True):
            if change.answer.done():
                continue
            self._resuming += 1  # its caller is now to be resumed
            if isinstance(answer, DomainError):
                change.answer.set_exception(answer)
            else:
                change.answer.set_result(answer)

    async def _commit(self, batch: list[_Change]) -> list[pb_message.Message | DomainError]:
        """Write the batch in one transaction. A deadlock or serialization
        failure (a concurrent writer that took its locks in another order) is
        the database's to resolve, not the callers': the batch is written again
        a few times before its calls are answered ABORTED.

        The write is a span in the trace of the batch's first call, linked to
        every call it serves: a vote alone in its batch is followed in one
        trace from the call to its event's handling, and under load each call's
        trace links to the write that served it. The batch's event carries
        this span's context."""
        first = trace.set_span_in_context(trace.NonRecordingSpan(batch[0].caller_span))
        with _tracer.start_as_current_span(
            "votes write",
            context=first,
            links=[Link(change.caller_span) for change in batch[1:]],
            attributes={"cocreate.batch.size": len(batch)},
        ):
            return await db.in_transaction(self._pool, lambda conn: self._apply(conn, batch))

    async def _apply(
        self, conn: asyncpg.Connection, batch: Sequence[_Change]
    ) -> list[pb_message.Message | DomainError]:
        """Check and write the batch in the caller's transaction; each change's
        answer or the error that refuses it."""
        await store.lock_keys(
            conn,
            exclusive=sorted(
                idempotency.request_key(c.member_id, c.kind.value, c.request_id)
                for c in batch
                if c.request_id
            ),
            shared=[
                store.policy_key(),
                *sorted({store.idea_key(c.idea_id) for c in batch}),
                *sorted({store.member_key(c.member_id) for c in batch}),
            ],
        )
        rows = await store.read_for_vote_changes(
            conn,
            [c.idea_id for c in batch],
            [c.member_id for c in batch],
            [c.kind.value for c in batch],
            [c.request_id for c in batch],
            self._counting,
        )
        policy = store.policy_of(rows[0]["policy_weights"])
        answers: list[pb_message.Message | DomainError | None] = [None] * len(batch)
        casts: list[int] = []
        retracts: list[int] = []
        for i, (change, row) in enumerate(zip(batch, rows, strict=True)):
            if row["remembered"] is not None:
                answers[i] = _remembered(change.kind, row["remembered"])
                continue
            refusal = _refusal(change.kind, row)
            if refusal is not None:
                answers[i] = refusal
            else:
                (casts if change.kind is Kind.CAST else retracts).append(i)
        casts = await self._within_rate_limit(conn, batch, rows, casts, answers)

        # The votes are written as the read predicts them, in the statement
        # that writes the rest: one round trip less than writing the votes
        # first and building the rest from what that returns (at 64 calls in
        # flight about 5 % more casts/s, bench/LIMITS.md). The batch's locks
        # keep every writer but another replica's batch away from its votes,
        # and the write counts only the votes that still stood as read: a
        # race with such a batch is seen before the commit, and the batch is
        # written again (StaleRead).
        now = rows[0]["now"]  # the transaction's, which its writes carry
        activated: list[Mapping[str, Any]] = []
        deactivated: list[Mapping[str, Any]] = []
        history: list[store.HistoryEntry] = []
        # A cast adds its vote to its idea's tally; a retract asks for a recount.
        marks: list[tuple[str, domain.AddedVote | None]] = []
        written = events_pb.VotesChanged()
        remembered: list[tuple[str, str, str, pb_message.Message]] = []
        for i in [*casts, *retracts]:
            change, read = batch[i], rows[i]
            vote: Mapping[str, Any]
            if change.kind is Kind.CAST and not read["active"]:
                tier = policy.tier_of(read["stored_tier"])
                weight = policy.weight_of(tier)
                vote = _next_version(
                    read, weight=weight, tier=tier, active=True, cast_at=now, retracted_at=None
                )
                activated.append(vote)
                written.casts.append(changes.cast_event(vote, domain.CAUSE_MEMBER))
                marks.append((change.idea_id, domain.added_vote(weight, tier, now)))
                history.append(_history_entry(change, vote))
            elif change.kind is Kind.RETRACT and read["active"]:
                vote = _next_version(read, active=False, retracted_at=now)
                deactivated.append(vote)
                written.retracts.append(changes.retract_event(vote, domain.CAUSE_MEMBER))
                marks.append((change.idea_id, None))
                history.append(_history_entry(change, vote))
            else:  # already as asked: a cast of an active vote, a retract of an inactive one
                vote = read
            answer: pb_message.Message = (
                pb.CastVoteResponse(vote=mappers.vote(vote))
                if change.kind is Kind.CAST
                else pb.RetractVoteResponse(vote=mappers.vote(vote))
            )
            answers[i] = answer
            if change.request_id:
                remembered.append((change.member_id, change.kind.value, change.request_id, answer))
        # What the batch leaves besides its votes, in one statement.
        events = (
            [PendingEvent(written, aggregate_id="votes", traceparent=tracing.current())]
            if history
            else []
        )
        vote_writes = [
            (write(votes), len(votes))
            for write, votes in ((store.activation, activated), (store.deactivation, deactivated))
            if votes
        ]
        written_votes = await db.write_all(
            conn,
            [
                *store.vote_change_rows(history, marks),
                idempotency.remembered_rows(remembered),
                self._outbox.rows(events),
            ],
            [change for change, _ in vote_writes],
        )
        if written_votes != [count for _, count in vote_writes]:
            raise StaleRead("a vote of the batch changed between its read and its write")
        done = [answer for answer in answers if answer is not None]
        assert len(done) == len(batch), "every change of a batch is answered"
        return done

    async def _within_rate_limit(
        self,
        conn: asyncpg.Connection,
        batch: Sequence[_Change],
        rows: Sequence[store.Record],
        casts: list[int],
        answers: list[pb_message.Message | DomainError | None],
    ) -> list[int]:
        """The casts that fit in their member's window (a member's first ones in
        the batch); the others are answered RESOURCE_EXHAUSTED. The read
        counted every cast without a remembered answer: those not made (over
        the limit, or refused) are given back."""
        limit = self._counting
        counted = {row["member_id"]: row for row in rows if row["rate_attempts"] is not None}
        room = {
            member: ratelimit.room(row["rate_hits"], row["rate_attempts"], limit.limit)
            for member, row in counted.items()
        }
        fitting: list[int] = []
        made: Counter[str] = Counter()
        for i in casts:
            member = batch[i].member_id
            if member not in counted or made[member] < room[member]:
                made[member] += 1
                fitting.append(i)
            else:
                retry_after = max(0.001, float(counted[member]["rate_retry_after"]))
                answers[i] = ratelimit.exhausted(
                    limit.action, limit.limit, limit.window_seconds, retry_after
                )
        await ratelimit.uncount(
            conn,
            {member: row["rate_attempts"] - made[member] for member, row in counted.items()},
            limit.action,
        )
        return fitting


def _remembered(kind: Kind, stored: bytes) -> pb_message.Message:
    answer: pb_message.Message = (
        pb.CastVoteResponse() if kind is Kind.CAST else pb.RetractVoteResponse()
    )
    answer.ParseFromString(stored)
    return answer


def _refusal(kind: Kind, row: store.Record) -> DomainError | None:
    """Why a change cannot be made, from what the batch read under its locks."""
    if kind is Kind.CAST and row["banned"]:
        return PermissionDenied(
            "you may not cast votes: your voting is banned",
            reason="VOTING_BANNED",
            metadata={"member_id": row["member_id"]},
        )
    if not row["idea_known"]:
        return NotFound("idea", row["idea_id"])
    if not row["idea_open"]:
        status = idea_status_pb2.IdeaStatus.Name(row["idea_status"])
        return FailedPrecondition(
            f"idea {row['idea_id']!r} is closed ({status}); it takes no more votes",
            reason="IDEA_CLOSED",
            metadata={"idea_id": row["idea_id"], "status": status},
        )
    if kind is Kind.RETRACT and row["version"] is None:
        return NotFound("vote", changes.vote_aggregate(row["idea_id"], row["member_id"]))
    return None


def _next_version(read: store.Record, **changed: Any) -> dict[str, Any]:
    """The vote `read` with what a change makes of it, at its next version (1
    for a member's first cast on the idea)."""
    vote = {name: read[name] for name in _VOTE_COLUMNS} | changed
    vote["version"] = (read["version"] or 0) + 1
    return vote


_VOTE_COLUMNS = ("idea_id", "member_id", "weight", "tier", "active", "cast_at", "retracted_at")


def _history_entry(change: _Change, vote: store.Record) -> store.HistoryEntry:
    if change.kind is Kind.CAST:
        return store.HistoryEntry(
            change.idea_id,
            change.member_id,
            domain.ACTION_CAST,
            domain.CAUSE_MEMBER,
            vote["weight"],
            0,
            vote["tier"],
            change.member_id,
        )
    return store.HistoryEntry(
        change.idea_id,
        change.member_id,
        domain.ACTION_RETRACT,
        domain.CAUSE_MEMBER,
        0,
        vote["weight"],
        vote["tier"],
        change.member_id,
    )
