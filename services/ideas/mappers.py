"""Rows of the ideas service's tables as API messages: the one place that maps
them, for IdeaService and ReleaseService alike. Each function is named after
the message it builds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg
from cocreate.ideas.v1 import ideas_service_pb2 as pb
from cocreate.ideas.v1 import release_service_pb2 as release_pb

from services.kit.auth import Caller
from services.kit.events import timestamp


def voters_by_tier(stored: Mapping[str, int] | None) -> dict[str, int]:
    """A stored voters-by-tier map (jsonb) as the API's map."""
    return dict(stored or {})


def etag(version: int) -> str:
    """The etag of a product, idea or comment at `version` (AIP-154); opaque to
    clients, who give it back unchanged."""
    return f'"{version}"'


def product(row: asyncpg.Record) -> pb.Product:
    return pb.Product(
        id=str(row["id"]),
        name=row["name"],
        description=row["description"],
        archived=row["archived"],
        create_time=timestamp(row["created_at"]),
        update_time=timestamp(row["updated_at"]),
        etag=etag(row["version"]),
    )


def comment(row: asyncpg.Record, prefix: str = "") -> pb.Comment:
    if prefix:  # the official response joined onto an idea row
        return pb.Comment(
            id=str(row[f"{prefix}id"]),
            idea_id=str(row["id"]),
            author_id=row[f"{prefix}author_id"],
            body=row[f"{prefix}body"],
            official=True,
            create_time=timestamp(row[f"{prefix}created_at"]),
            update_time=timestamp(row[f"{prefix}updated_at"]),
            etag=etag(row[f"{prefix}version"]),
        )
    return pb.Comment(
        id=str(row["id"]),
        idea_id=str(row["idea_id"]),
        author_id=row["author_id"],
        body=row["body"],
        official=row["official"],
        hidden=row["hidden"],
        hidden_reason=row["hidden_reason"],
        create_time=timestamp(row["created_at"]),
        update_time=timestamp(row["updated_at"]),
        etag=etag(row["version"]),
    )


def idea(row: asyncpg.Record, caller: Caller) -> pb.Idea:
    """An idea as `caller` may see it: moderation fields for staff only."""
    message = pb.Idea(
        id=str(row["id"]),
        number=row["number"],
        product_id=str(row["product_id"]),
        title=row["title"],
        body=row["body"],
        tags=list(row["tags"]),
        status=row["status"],
        author_id=row["author_id"],
        create_time=timestamp(row["created_at"]),
        update_time=timestamp(row["updated_at"]),
        weighted_score=row["weighted_score"],
        voter_count=row["voter_count"],
        voters_by_tier=voters_by_tier(row["voters_by_tier"]),
        trending_score=row["trending_score"],
        comment_count=row["comment_count"],
        merged_into_idea_id=str(row["merged_into"]) if row["merged_into"] else "",
        hidden=row["hidden"],
        etag=etag(row["version"]),
    )
    if caller.is_staff:
        message.hidden_reason = row["hidden_reason"]
        message.report_count = row["report_count"]
    if row["oc_id"] is not None:
        message.official_response.CopyFrom(comment(row, prefix="oc_"))
    return message


def history_entry(row: asyncpg.Record) -> pb.IdeaHistoryEntry:
    return pb.IdeaHistoryEntry(
        id=row["id"],
        kind=row["kind"],
        actor_id=row["actor_id"],
        event_time=timestamp(row["occurred_at"]),
        old_status=row["old_status"],
        new_status=row["new_status"],
        note=row["note"],
        related_idea_id=str(row["related_idea_id"]) if row["related_idea_id"] else "",
        previous_title=row["previous_title"],
        previous_body=row["previous_body"],
        previous_tags=list(row["previous_tags"]),
        changed_fields=list(row["changed_fields"]),
    )


def exported_idea(row: asyncpg.Record) -> pb.ExportedIdea:
    return pb.ExportedIdea(
        id=str(row["id"]),
        number=row["number"],
        product_id=str(row["product_id"]),
        product_name=row["product_name"],
        title=row["title"],
        status=row["status"],
        author_id=row["author_id"],
        create_time=timestamp(row["created_at"]),
        weighted_score=row["weighted_score"],
        voter_count=row["voter_count"],
        voters_by_tier=voters_by_tier(row["voters_by_tier"]),
        trending_score=row["trending_score"],
        comment_count=row["comment_count"],
        tags=list(row["tags"]),
    )


# Releases


def iteration(row: asyncpg.Record) -> release_pb.Iteration:
    return release_pb.Iteration(
        id=str(row["id"]),
        product_id=str(row["product_id"]),
        name=row["name"],
        state=row["state"],
        start_date=row["start_date"].isoformat(),
        end_date=row["end_date"].isoformat(),
        idea_count=row["idea_count"],
        done_count=row["done_count"],
        release_id=str(row["release_id"]) if row["release_id"] else "",
        created_by=row["created_by"],
        create_time=timestamp(row["created_at"]),
        update_time=timestamp(row["updated_at"]),
    )


def iteration_idea(row: asyncpg.Record) -> release_pb.IterationIdea:
    return release_pb.IterationIdea(
        idea_id=str(row["idea_id"]),
        number=row["number"],
        title=row["title"],
        status=row["status"],
        author_id=row["author_id"],
        weighted_score=row["weighted_score"],
        voter_count=row["voter_count"],
        voters_by_tier=voters_by_tier(row["voters_by_tier"]),
        done=row["done"],
        outcome=row["outcome"],
        planned_by=row["planned_by"],
        plan_time=timestamp(row["planned_at"]),
    )


def released_idea(row: asyncpg.Record) -> release_pb.ReleasedIdea:
    return release_pb.ReleasedIdea(
        idea_id=str(row["idea_id"]),
        number=row["number"],
        title=row["title"],
        author_id=row["author_id"],
        weighted_score=row["weighted_score"],
        voter_count=row["voter_count"],
        voters_by_tier=voters_by_tier(row["voters_by_tier"]),
    )


def release(row: asyncpg.Record, shipped: Sequence[asyncpg.Record]) -> release_pb.Release:
    """A release with the ideas it shipped (`shipped`, as released_ideas reads them)."""
    return release_pb.Release(
        id=str(row["id"]),
        iteration_id=str(row["iteration_id"]),
        iteration_name=row["iteration_name"],
        product_id=str(row["product_id"]),
        product_name=row["product_name"],
        version=row["version"],
        shipped_ideas=[released_idea(r) for r in shipped],
        rolled_over_idea_ids=[str(i) for i in row["rolled_over_idea_ids"]],
        next_iteration_id=str(row["next_iteration_id"]) if row["next_iteration_id"] else "",
        dropped_idea_ids=[str(i) for i in row["dropped_idea_ids"]],
        published_by=row["published_by"],
        publish_time=timestamp(row["published_at"]),
    )
