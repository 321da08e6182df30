"""The ideas service's changes: submit, edit, move along the workflow, merge,
hide and unhide an idea; add, edit, delete and hide a comment. Each checks its
rules on the locked rows and writes the state, its history entry and its
event in the caller's transaction, so they commit together or not at all.

The servicers (api.py, releases/api.py) parse, authorize, call one of these
and map the answer. A status change is shared: ChangeIdeaStatus makes it as a
PM or admin, a release cut with the release tooling's SERVICE role (and its
release id)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from cocreate.events.v1 import ideas_events_pb2 as events_pb

from services.ideas import comment_store, domain, mappers, product_store, store
from services.ideas.store import HistoryKind
from services.kit import ratelimit
from services.kit.auth import Caller, Role
from services.kit.config import Config
from services.kit.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
)
from services.kit.events import now_timestamp, timestamp
from services.kit.outbox import Outbox


@dataclass(frozen=True)
class Rules:
    """The community's settings the changes apply."""

    edit_window: timedelta
    ideas_per_hour: int
    comments_per_minute: int

    @classmethod
    def from_config(cls, config: Config) -> Rules:
        return cls(
            edit_window=timedelta(
                seconds=config.get_int("COCREATE_IDEAS_EDIT_WINDOW_SECONDS", 3600)
            ),
            ideas_per_hour=config.get_int("COCREATE_IDEAS_IDEAS_PER_HOUR", 10),
            comments_per_minute=config.get_int("COCREATE_IDEAS_COMMENTS_PER_MINUTE", 5),
        )

    async def limit(self, conn: asyncpg.Connection, caller: Caller, action: str) -> None:
        """Rate limits apply to members; staff work in bulk."""
        if caller.role != Role.MEMBER:
            return
        if action == "submit_idea":
            limit, window = self.ideas_per_hour, 3600.0
        else:
            limit, window = self.comments_per_minute, 60.0
        await ratelimit.hit(conn, caller.member_id, action, limit=limit, window_seconds=window)


def _check_etag(etag: str, row: asyncpg.Record, kind: str, key: str) -> None:
    """An update that names the version it read applies only to that version."""
    current = mappers.etag(row["version"])
    if etag and etag != current:
        raise Aborted(
            f"the {kind} changed since it was read; read it again and redo the change",
            reason="ETAG_MISMATCH",
            metadata={f"{kind}_id": key, "etag": current},
        )


async def locked_idea(conn: asyncpg.Connection, idea_id: str, caller: Caller) -> asyncpg.Record:
    """The idea's row, locked; NOT_FOUND if unknown or hidden from the caller."""
    row = await store.lock_idea(conn, idea_id)
    if row is None or (row["hidden"] and not caller.is_staff):
        raise NotFound("idea", idea_id)
    return row


# Products


def _name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(f"a product named {name!r} exists", reason="PRODUCT_NAME_TAKEN")


async def create_product(conn: asyncpg.Connection, name: str, description: str) -> asyncpg.Record:
    row = await product_store.insert_product(conn, name, description)
    if row is None:
        raise _name_taken(name)
    return row


async def update_product(
    conn: asyncpg.Connection,
    product_id: str,
    *,
    name: str | None,
    description: str | None,
    etag: str = "",
) -> asyncpg.Record:
    """The fields given (None: left as is); names stay unique, case-insensitively."""
    current = await product_store.product(conn, product_id, for_update=True)
    if current is None:
        raise NotFound("product", product_id)
    _check_etag(etag, current, "product", product_id)
    if name is not None and await product_store.name_taken(conn, name, product_id):
        raise _name_taken(name)
    try:
        return await product_store.update_product(
            conn, product_id, name=name, description=description
        )
    except asyncpg.UniqueViolationError:  # a concurrent rename took the name
        raise _name_taken(name or "") from None


async def archive_product(conn: asyncpg.Connection, product_id: str) -> asyncpg.Record:
    """An archived product takes no new ideas."""
    if await product_store.product(conn, product_id, for_update=True) is None:
        raise NotFound("product", product_id)
    return await product_store.update_product(
        conn, product_id, name=None, description=None, archived=True
    )


# Ideas


async def submit_idea(
    conn: asyncpg.Connection,
    outbox: Outbox,
    rules: Rules,
    caller: Caller,
    *,
    product_id: str,
    title: str,
    body: str,
    tags: list[str],
) -> asyncpg.Record:
    """A new open idea by the caller; returns it as store.idea reads it."""
    product = await product_store.product(conn, product_id)
    if product is None:
        raise NotFound("product", product_id)
    if product["archived"]:
        raise FailedPrecondition(
            f"product {product['name']!r} is archived and takes no new ideas",
            reason="PRODUCT_ARCHIVED",
            metadata={"product_id": product_id},
        )
    await rules.limit(conn, caller, "submit_idea")
    idea_id = await store.insert_idea(
        conn, product_id=product_id, title=title, body=body, tags=tags, author_id=caller.member_id
    )
    await store.add_history(conn, idea_id, HistoryKind.SUBMITTED, caller.member_id)
    submitted = await store.idea(conn, idea_id)
    assert submitted is not None
    await outbox.emit(
        conn,
        events_pb.IdeaSubmitted(
            idea_id=idea_id,
            product_id=product_id,
            author_id=caller.member_id,
            title=title,
            tags=tags,
            submit_time=timestamp(submitted["created_at"]),
        ),
        aggregate_id=idea_id,
        aggregate_version=1,
    )
    return submitted


async def edit_idea(
    conn: asyncpg.Connection,
    rules: Rules,
    caller: Caller,
    idea_id: str,
    *,
    title: str | None,
    body: str | None,
    tags: list[str] | None,
    etag: str = "",
) -> None:
    """The author's edit of the fields given (None: left as is), within the
    edit window; history records what each changed field was before."""
    row = await store.lock_idea(conn, idea_id)
    # Permission first: a member who may not edit learns nothing about
    # whether the idea exists or is hidden.
    domain.check_may_edit(caller, row["author_id"] if row else None)
    if row is None or (row["hidden"] and not caller.is_staff):
        raise NotFound("idea", idea_id)
    _check_etag(etag, row, "idea", idea_id)
    domain.check_can_edit(
        caller,
        domain.EditableIdea(row["author_id"], row["status"], row["created_at"]),
        datetime.now(UTC),
        rules.edit_window,
    )
    changed = [
        name
        for name, new in (("title", title), ("body", body), ("tags", tags))
        if new is not None and new != (list(row[name]) if name == "tags" else row[name])
    ]
    if not changed:
        return
    await store.update_idea_text(
        conn,
        idea_id,
        title=title if "title" in changed else None,
        body=body if "body" in changed else None,
        tags=tags if "tags" in changed else None,
    )
    await store.add_history(
        conn,
        idea_id,
        HistoryKind.EDITED,
        caller.member_id,
        previous_title=row["title"] if "title" in changed else "",
        previous_body=row["body"] if "body" in changed else "",
        previous_tags=list(row["tags"]) if "tags" in changed else [],
        changed_fields=changed,
    )


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
    event = events_pb.IdeaStatusChanged(
        idea_id=idea_id,
        product_id=str(row["product_id"]),
        author_id=row["author_id"],
        actor_id=actor.member_id,
        note=note,
        change_time=now_timestamp(),
        release_id=release_id,
        title=row["title"],
    )
    event.old_status = old_status  # type: ignore[assignment]
    event.new_status = new_status  # type: ignore[assignment]
    await outbox.emit(conn, event, aggregate_id=idea_id, aggregate_version=version)
    return old_status


async def _final_target(conn: asyncpg.Connection, target_id: str) -> str:
    """Follow merges from `target_id` to the idea they end at."""
    seen: set[str] = set()
    current = target_id
    while True:
        found, merged_into = await store.merged_into(conn, current)
        if not found:
            raise NotFound("idea", current)
        if merged_into is None or current in seen:
            return current
        seen.add(current)
        current = merged_into


async def merge_ideas(
    conn: asyncpg.Connection,
    outbox: Outbox,
    caller: Caller,
    source_id: str,
    target_id: str,
    note: str,
) -> str:
    """Merge the source into the idea the target's merges end at; returns that
    idea's id. Both ideas' history records it."""
    final_id = await _final_target(conn, target_id)
    await store.lock_merge(conn, source_id, final_id)
    source = await store.lock_idea(conn, source_id)
    if source is None:
        raise NotFound("idea", source_id)
    final_id = await _final_target(conn, target_id)  # settled under the lock
    target = await store.lock_idea(conn, final_id)
    assert target is not None
    domain.check_merge(source_id, source["status"], final_id, target["status"])
    version = await store.merge(
        conn, source_id, final_id, domain.merged_tags(target["tags"], source["tags"])
    )
    await store.add_history(
        conn,
        source_id,
        HistoryKind.MERGED_INTO,
        caller.member_id,
        old_status=source["status"],
        new_status=domain.MERGED,
        note=note,
        related_idea_id=final_id,
    )
    await store.add_history(
        conn,
        final_id,
        HistoryKind.MERGE_RECEIVED,
        caller.member_id,
        note=note,
        related_idea_id=source_id,
    )
    await outbox.emit(
        conn,
        events_pb.IdeasMerged(
            source_idea_id=source_id,
            target_idea_id=final_id,
            actor_id=caller.member_id,
            merge_time=timestamp(datetime.now(UTC)),
            source_title=source["title"],
            target_title=target["title"],
        ),
        aggregate_id=source_id,
        aggregate_version=version,
    )
    return final_id


async def hide_idea(
    conn: asyncpg.Connection,
    outbox: Outbox,
    caller: Caller,
    idea_id: str,
    reason: str,
    spam: bool,
) -> None:
    """Hide the idea from members (once: hiding a hidden idea changes nothing)."""
    row = await locked_idea(conn, idea_id, caller)
    if row["hidden"]:
        return
    version = await store.hide_idea(conn, idea_id, reason, spam)
    await store.add_history(conn, idea_id, HistoryKind.HIDDEN, caller.member_id, note=reason)
    await outbox.emit(
        conn,
        events_pb.IdeaHidden(
            idea_id=idea_id,
            author_id=row["author_id"],
            spam=spam,
            reason=reason,
            actor_id=caller.member_id,
            hide_time=timestamp(datetime.now(UTC)),
        ),
        aggregate_id=idea_id,
        aggregate_version=version,
    )


async def unhide_idea(
    conn: asyncpg.Connection, outbox: Outbox, caller: Caller, idea_id: str, reason: str
) -> None:
    row = await locked_idea(conn, idea_id, caller)
    if not row["hidden"]:
        raise FailedPrecondition(
            "the idea is not hidden", reason="NOT_HIDDEN", metadata={"idea_id": idea_id}
        )
    version = await store.unhide_idea(conn, idea_id)
    await store.add_history(conn, idea_id, HistoryKind.UNHIDDEN, caller.member_id, note=reason)
    # The votes service takes votes on it again (rewards does not act: a spam
    # hide's reversal of the submission points stays).
    await outbox.emit(
        conn,
        events_pb.IdeaUnhidden(
            idea_id=idea_id,
            reason=reason,
            actor_id=caller.member_id,
            unhide_time=timestamp(datetime.now(UTC)),
        ),
        aggregate_id=idea_id,
        aggregate_version=version,
    )


# Comments


async def add_comment(
    conn: asyncpg.Connection,
    rules: Rules,
    caller: Caller,
    idea_id: str,
    body: str,
    *,
    official: bool,
) -> asyncpg.Record:
    row = await locked_idea(conn, idea_id, caller)
    if row["status"] == domain.MERGED:
        raise FailedPrecondition(
            "a merged idea is read-only; comment on its target",
            reason="IDEA_MERGED",
            metadata={"target_idea_id": str(row["merged_into"])},
        )
    await rules.limit(conn, caller, "add_comment")
    return await comment_store.insert_comment(conn, idea_id, caller.member_id, body, official)


async def _own_comment(
    conn: asyncpg.Connection, comment_id: str, caller: Caller, *, staff_may: bool
) -> asyncpg.Record:
    row = await comment_store.comment(conn, comment_id, for_update=True)
    # Permission first: whoever may not change the comment learns nothing
    # about whether it exists.
    if not (staff_may and caller.is_staff) and (
        row is None or row["author_id"] != caller.member_id
    ):
        raise PermissionDenied(
            "only the comment's author may change it", reason="NOT_COMMENT_AUTHOR"
        )
    if row is None or (row["hidden"] and not caller.is_staff):
        raise NotFound("comment", comment_id)
    return row


async def edit_comment(
    conn: asyncpg.Connection, caller: Caller, comment_id: str, body: str, etag: str = ""
) -> asyncpg.Record:
    """The author's new text for their comment."""
    row = await _own_comment(conn, comment_id, caller, staff_may=False)
    _check_etag(etag, row, "comment", comment_id)
    return await comment_store.update_comment(conn, comment_id, body=body)


async def delete_comment(conn: asyncpg.Connection, caller: Caller, comment_id: str) -> None:
    """The author, or staff, removes a comment."""
    row = await _own_comment(conn, comment_id, caller, staff_may=True)
    await comment_store.delete_comment(conn, comment_id, str(row["idea_id"]))


async def hide_comment(
    conn: asyncpg.Connection, caller: Caller, comment_id: str, reason: str
) -> asyncpg.Record:
    """Hide a comment from members (once), recorded in its idea's history."""
    existing = await comment_store.comment(conn, comment_id, for_update=True)
    if existing is None:
        raise NotFound("comment", comment_id)
    if existing["hidden"]:
        return existing
    row = await comment_store.update_comment(conn, comment_id, hidden_reason=reason)
    await store.add_history(
        conn, str(row["idea_id"]), HistoryKind.COMMENT_HIDDEN, caller.member_id, note=reason
    )
    return row
