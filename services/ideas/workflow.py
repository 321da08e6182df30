"""Status changes as a unit of work: the rule check, the new status, the
history entry and the IdeaStatusChanged event, in the caller's transaction.
The ChangeIdeaStatus RPC uses it as a PM or admin; a release cut uses it with
the release tooling's SERVICE role (and its release id)."""

from __future__ import annotations

import asyncpg
from cocreate.events.v1 import ideas_events_pb2 as events_pb

from services.ideas import domain, store
from services.ideas.store import HistoryKind
from services.kit.auth import Caller
from services.kit.errors import NotFound
from services.kit.events import now_timestamp
from services.kit.outbox import Outbox


async def change_status(
    conn: asyncpg.Connection,
    outbox: Outbox,
    actor: Caller,
    idea_id: str,
    new_status: int,
    note: str,
    *,
    release_id: str = "",
) -> int:
    """Move one idea to `new_status`; returns the status it had."""
    row = await store.lock_idea(conn, idea_id)
    if row is None:
        raise NotFound("idea", idea_id)
    old_status: int = row["status"]
    domain.check_transition(old_status, new_status, actor.role)
    version = await store.set_status(conn, idea_id, new_status)
    await store.add_history(
        conn,
        idea_id,
        HistoryKind.STATUS_CHANGED,
        actor.member_id,
        old_status=old_status,
        new_status=new_status,
        note=note,
    )
    changed_at = now_timestamp()
    event = events_pb.IdeaStatusChanged(
        idea_id=idea_id,
        product_id=str(row["product_id"]),
        author_id=row["author_id"],
        actor_id=actor.member_id,
        note=note,
        changed_at=changed_at,
        release_id=release_id,
        title=row["title"],
    )
    event.old_status = old_status  # type: ignore[assignment]
    event.new_status = new_status  # type: ignore[assignment]
    await outbox.emit(conn, event, aggregate_id=idea_id, aggregate_version=version)
    return old_status
