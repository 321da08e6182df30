"""Tallies are folded from the votes by one writer, so a hot idea is never a
hot row.

Why: the obvious design — every cast does `update tallies set score = score
+ w where idea_id = $1` — makes every vote on a popular idea queue on that
one row lock until the voter's transaction commits; 2,000 members voting on
one idea at once would run one at a time. Sharded counter rows spread that
lock, but a tally event must carry a per-idea version and a consistent
snapshot, which brings the serialisation back when the event is written.

Instead a cast writes only rows nobody else writes: the member's own vote row
(keyed by idea and member), its history entry, its event and an append-only
`tally_dirty` mark. It commits and answers. This background folder — one per
database, elected by an advisory lock, woken by NOTIFY at commit and polling
as a fallback — takes the committed marks, computes each marked idea's new
tally, stores it with the next version, and emits the changed tallies in one
TalliesChanged event in the same transaction. Many casts that land between
two folds make one tally change, whose version still grows by one.

A cast's mark carries what it adds: the vote's weight, its tier and its
trending term (domain.AddedVote). When every mark of an idea in a fold is a
cast's, the fold adds them to the stored tally (domain.add_votes) without
reading the idea's votes, so a fold costs the same for an idea with ten votes
and one with a million. Any other change — a retract, a ban or void, a tier or
policy reweight, a merge — marks without a vote, and the fold recounts that
idea from its active votes (one grouped aggregate: score, voters, voters per
tier and the log-space trending sum). Retracts recount rather than subtract:
the sums would subtract exactly, but taking a term out of a log-space sum
loses precision as it cancels, and a recount is exact.

Nothing is lost or counted twice: a mark commits with its vote, so the fold
that takes the mark sees the vote, and a mark committed after a fold took its
marks is left for the next one. A recount and the removal of every mark of
its ideas still waiting happen in one statement (store.recount), in one
snapshot: a cast the recount counts loses its mark with it, and a cast it
does not see keeps its mark for the next fold. So a tally always equals the
recount of its active votes, which the invariant test and the crash checker
check.

Replicas: every replica runs this loop, and each fold elects its folder with
a transaction-level advisory lock, so two folds never overlap and a replica
killed mid-fold hands over at once (its transaction and lock die with its
connection; the next wake-up of another replica folds). A session-level lock
held for a process's life would leave the others idle, but would still need
this per-fold lock: a holder whose lock connection broke may still be folding
on its pool when another replica takes over. Each fold is recorded in
`tally_folds` (its replica, its start and end), which is how the replica
test shows that one folder was active at a time.

The folder is one of the service's background loops (ServiceDefinition.background).
Its lag, `cocreate_tally_lag_seconds`, is the age of the oldest mark not
folded yet (0 when none waits), read when Prometheus scrapes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
from cocreate.events.v1 import votes_events_pb2 as events_pb

from services.kit import worker
from services.kit.events import now_timestamp
from services.kit.metrics import ServiceMetrics
from services.kit.outbox import Outbox, PendingEvent
from services.votes import domain, store

_FOLDER_LOCK = "votes:tally-folder"
# A fold's tallies travel in TalliesChanged events of at most this many (each
# about 100 bytes: far below NATS's 1 MB message limit).
TALLIES_PER_EVENT = 500
# The envelope names no single idea; each tally carries its idea and version.
TALLIES_AGGREGATE = "tallies"


class TallyFolder:
    def __init__(
        self,
        pool: asyncpg.Pool,
        outbox: Outbox,
        dsn: str,
        *,
        instance: str = "",
        poll_seconds: float = 0.5,
        batch_size: int = 2000,
        gather_seconds: float = 0.1,
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        self._dsn = dsn
        self._instance = instance  # recorded with each fold it makes
        self._poll_seconds = poll_seconds
        self._fold_batch = batch_size
        # A fold at most this often: the marks of many casts make one fold,
        # and a tally is still at most this much older than its votes.
        self._gather_seconds = gather_seconds

    async def run(self, stop: asyncio.Event) -> None:
        async def step() -> bool:
            return await self.fold_once(self._pool) > 0  # more marks may be waiting

        await worker.run_woken(
            step,
            dsn=self._dsn,
            channel=store.TALLY_DIRTY_CHANNEL,
            poll_seconds=self._poll_seconds,
            stop=stop,
            what="fold tallies",
            gather_seconds=self._gather_seconds,
        )

    async def fold_once(self, pool: asyncpg.Pool) -> int:
        """Fold one batch of marks; how many ideas were folded (0 when another
        replica is folding or nothing was marked)."""
        async with pool.acquire() as conn, conn.transaction():
            election = await conn.fetchrow(
                "select pg_try_advisory_xact_lock(hashtextextended($1, 0)) as elected, "
                "clock_timestamp() as at",
                _FOLDER_LOCK,
            )
            if not election["elected"]:
                return 0
            marks = await store.take_marks(conn, self._fold_batch)
            if not marks:
                return 0
            to_recount = [idea_id for idea_id, added in marks.items() if added is None]
            groups = await store.recount(conn, to_recount)
            before = await store.stored_tallies(
                conn, [idea_id for idea_id, added in marks.items() if added is not None]
            )
            stored = await store.save_tallies(
                conn,
                [
                    domain.fold(idea_id, groups[idea_id])
                    if added is None
                    else domain.add_votes(before[idea_id], added)
                    for idea_id, added in marks.items()
                ],
            )
            await self._outbox.emit_many(
                conn,
                [
                    PendingEvent(
                        events_pb.TalliesChanged(tallies=[_changed(row) for row in chunk]),
                        aggregate_id=TALLIES_AGGREGATE,
                    )
                    for chunk in _chunks(stored, TALLIES_PER_EVENT)
                ],
            )
            await store.record_fold(conn, self._instance, election["at"], len(marks))
            return len(marks)


def watch_lag(metrics: ServiceMetrics, pool: asyncpg.Pool) -> None:
    lag = metrics.gauge(
        "cocreate_tally_lag_seconds",
        "Age of the oldest vote change the tally folder has not folded yet (0 when none waits)",
    ).labels(metrics.service)

    async def probe() -> None:
        lag.set(await store.oldest_mark_age_seconds(pool))

    metrics.on_scrape("tally-lag", probe, [lag])


def _chunks(rows: Sequence[store.Record], size: int) -> list[Sequence[store.Record]]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def _changed(stored: store.Record) -> events_pb.TallyChanged:
    tally = events_pb.TallyChanged(
        idea_id=stored["idea_id"],
        version=stored["version"],
        weighted_score=stored["weighted_score"],
        voter_count=stored["voter_count"],
        trending_score=stored["trending_score"],
        change_time=now_timestamp(),
    )
    tally.voters_by_tier.update(store.tier_counts(stored["voters_by_tier"]))
    return tally
