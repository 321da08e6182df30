"""The gRPC servicer of cocreate.ideas.v1.IdeaService: check the caller,
validate the request, apply the rules in one transaction with its history and
event, map rows to messages. The rules live in domain.py, the SQL in store.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
from cocreate.events.v1 import ideas_events_pb2 as events_pb
from cocreate.ideas.v1 import idea_status_pb2
from cocreate.ideas.v1 import ideas_service_pb2 as pb
from cocreate.ideas.v1 import ideas_service_pb2_grpc as pb_grpc
from google.protobuf import field_mask_pb2

from services.ideas import domain, store, workflow
from services.ideas.store import HistoryKind, IdeaQuery, Order
from services.kit import idempotency, ratelimit
from services.kit.auth import Caller, Role, current_caller, require_role
from services.kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Violations,
)
from services.kit.events import timestamp
from services.kit.server import Runtime
from services.kit.validation import check_timestamp

STAFF = (Role.PM, Role.ADMIN)
MAX_QUERY = 200
# Ideas to an export message: the stream's cost is per message, the rows'
# per row; at 500 a message stays far under gRPC's 4 MiB limit.
EXPORT_BATCH = 500
# IdeaStatus numbers as the CSV export names them: IDEA_STATUS_PLANNED → planned.
STATUS_NAMES = {
    value.number: value.name.removeprefix("IDEA_STATUS_").lower()
    for value in idea_status_pb2.IdeaStatus.DESCRIPTOR.values
}
MAX_MEMBER_ID = 128


def product_message(row: asyncpg.Record) -> pb.Product:
    return pb.Product(
        id=str(row["id"]),
        name=row["name"],
        description=row["description"],
        archived=row["archived"],
        create_time=timestamp(row["created_at"]),
        update_time=timestamp(row["updated_at"]),
    )


def comment_message(row: asyncpg.Record, prefix: str = "") -> pb.Comment:
    if prefix:  # the official response joined onto an idea row
        return pb.Comment(
            id=str(row[f"{prefix}id"]),
            idea_id=str(row["id"]),
            author_id=row[f"{prefix}author_id"],
            body=row[f"{prefix}body"],
            official=True,
            create_time=timestamp(row[f"{prefix}created_at"]),
            update_time=timestamp(row[f"{prefix}updated_at"]),
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
    )


def idea_message(row: asyncpg.Record, caller: Caller) -> pb.Idea:
    idea = pb.Idea(
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
        voters_by_tier=store.voters_by_tier(row),
        trending_score=row["trending_score"],
        comment_count=row["comment_count"],
        merged_into_idea_id=str(row["merged_into"]) if row["merged_into"] else "",
        hidden=row["hidden"],
    )
    if caller.is_staff:
        idea.hidden_reason = row["hidden_reason"]
        idea.report_count = row["report_count"]
    if row["oc_id"] is not None:
        idea.official_response.CopyFrom(comment_message(row, prefix="oc_"))
    return idea


def history_message(row: asyncpg.Record) -> pb.IdeaHistoryEntry:
    return pb.IdeaHistoryEntry(
        id=row["id"],
        kind=row["kind"],
        actor_id=row["actor_id"],
        occurred_at=timestamp(row["occurred_at"]),
        old_status=row["old_status"],
        new_status=row["new_status"],
        note=row["note"],
        related_idea_id=str(row["related_idea_id"]) if row["related_idea_id"] else "",
        previous_title=row["previous_title"],
        previous_body=row["previous_body"],
        previous_tags=list(row["previous_tags"]),
        changed_fields=list(row["changed_fields"]),
    )


def export_message(row: asyncpg.Record) -> pb.ExportedIdea:
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
        voters_by_tier=store.voters_by_tier(row),
        trending_score=row["trending_score"],
        comment_count=row["comment_count"],
        tags=list(row["tags"]),
    )


def mask_paths(v: Violations, mask: field_mask_pb2.FieldMask, allowed: tuple[str, ...]) -> set[str]:
    paths = set(mask.paths) or set(allowed)
    unknown = sorted(paths - set(allowed))
    v.check(not unknown, "update_mask", f"unknown paths {unknown}; allowed: {list(allowed)}")
    return paths & set(allowed)


class IdeaServicer(pb_grpc.IdeaServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._mutations = idempotency.Mutations(
            runtime.pool, pb.DESCRIPTOR.services_by_name["IdeaService"]
        )
        config = runtime.config
        self._edit_window = timedelta(
            seconds=config.get_int("COCREATE_IDEAS_EDIT_WINDOW_SECONDS", 3600)
        )
        self._ideas_per_hour = config.get_int("COCREATE_IDEAS_IDEAS_PER_HOUR", 10)
        self._comments_per_minute = config.get_int("COCREATE_IDEAS_COMMENTS_PER_MINUTE", 5)
        self._similarity_threshold = config.get_float("COCREATE_IDEAS_SIMILARITY_THRESHOLD", 0.15)

    # Helpers

    async def _visible_idea(
        self, conn: asyncpg.Connection, idea_id: str, caller: Caller
    ) -> asyncpg.Record:
        """The idea with its joins; NOT_FOUND if unknown or hidden from the caller."""
        row = await store.idea(conn, idea_id)
        if row is None or (row["hidden"] and not caller.is_staff):
            raise NotFound("idea", idea_id)
        return row

    async def _locked_idea(
        self, conn: asyncpg.Connection, idea_id: str, caller: Caller
    ) -> asyncpg.Record:
        row = await store.lock_idea(conn, idea_id)
        if row is None or (row["hidden"] and not caller.is_staff):
            raise NotFound("idea", idea_id)
        return row

    async def _idea_reply(self, conn: asyncpg.Connection, idea_id: str, caller: Caller) -> pb.Idea:
        row = await store.idea(conn, idea_id)
        assert row is not None
        return idea_message(row, caller)

    async def _limit(self, conn: asyncpg.Connection, caller: Caller, action: str) -> None:
        """Rate limits apply to members; staff work in bulk."""
        if caller.role != Role.MEMBER:
            return
        if action == "submit_idea":
            limit, window = self._ideas_per_hour, 3600.0
        else:
            limit, window = self._comments_per_minute, 60.0
        await ratelimit.hit(conn, caller.member_id, action, limit=limit, window_seconds=window)

    def _query(self, v: Violations, caller: Caller, flt: pb.IdeaFilter, order: int) -> IdeaQuery:
        product_id = domain.check_id(v, flt.product_id, "filter.product_id", required=False)
        for index, status in enumerate(flt.statuses):
            domain.check_status(v, status, f"filter.statuses[{index}]")
        tag = domain.normalise_tag(flt.tag)
        v.check(not flt.tag or len(tag) <= domain.TAG_MAX, "filter.tag", "is too long")
        v.check(len(flt.author_id) <= MAX_MEMBER_ID, "filter.author_id", "is too long")
        text = flt.query.strip()
        v.check(len(text) <= MAX_QUERY, "filter.query", f"at most {MAX_QUERY} characters")
        for name, value in (("query", text), ("tag", tag), ("author_id", flt.author_id)):
            domain.check_storable(v, value, f"filter.{name}")
        v.check(
            order in pb.IdeaOrder.values(), "order", "must be TOP, TRENDING, NEWEST, MOST_DISCUSSED"
        )
        if flt.include_hidden and not caller.is_staff:
            v.add("filter.include_hidden", "only PMs and admins see hidden ideas")
        return IdeaQuery(
            product_id=product_id,
            statuses=sorted(set(flt.statuses)),
            tag=tag,
            author_id=flt.author_id,
            text=text,
            include_hidden=flt.include_hidden,
            order=Order(order) if order in set(Order) else Order.NEWEST,
        )

    # Products

    async def CreateProduct(
        self, request: pb.CreateProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateProductResponse:
        caller = require_role(Role.ADMIN)
        v = Violations()
        name = domain.clean_name(
            v, request.name, "name", maximum=domain.PRODUCT_NAME_MAX, required=True
        )
        description = domain.clean_body(
            v, request.description, "description", domain.PRODUCT_DESCRIPTION_MAX
        )
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.CreateProductResponse:
            row = await store.insert_product(conn, name, description)
            if row is None:
                raise AlreadyExists(f"a product named {name!r} exists", reason="PRODUCT_NAME_TAKEN")
            return pb.CreateProductResponse(product=product_message(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def GetProduct(
        self, request: pb.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProductResponse:
        current_caller()
        v = Violations()
        product_id = domain.check_id(v, request.product_id, "product_id")
        v.raise_if_any()
        async with self._rt.pool.acquire() as conn:
            row = await store.product(conn, product_id)
        if row is None:
            raise NotFound("product", product_id)
        return pb.GetProductResponse(product=product_message(row))

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProductsResponse:
        current_caller()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            rows = await store.list_products(
                conn, include_archived=request.include_archived, after=page.after, limit=page.fetch
            )
        return pb.ListProductsResponse(
            products=[product_message(r) for r in page.items(rows)],
            next_page_token=page.next_token(
                rows, lambda last: {"name": last["sort_name"], "id": str(last["id"])}
            ),
        )

    async def UpdateProduct(
        self, request: pb.UpdateProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateProductResponse:
        caller = require_role(Role.ADMIN)
        v = Violations()
        product_id = domain.check_id(v, request.product_id, "product_id")
        paths = mask_paths(v, request.update_mask, ("name", "description"))
        name = domain.clean_name(
            v, request.name, "name", maximum=domain.PRODUCT_NAME_MAX, required="name" in paths
        )
        description = domain.clean_body(
            v, request.description, "description", domain.PRODUCT_DESCRIPTION_MAX
        )
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UpdateProductResponse:
            if await store.product(conn, product_id, for_update=True) is None:
                raise NotFound("product", product_id)
            if "name" in paths and await store.name_taken(conn, name, product_id):
                raise AlreadyExists(f"a product named {name!r} exists", reason="PRODUCT_NAME_TAKEN")
            try:
                row = await store.update_product(
                    conn,
                    product_id,
                    name=name if "name" in paths else None,
                    description=description if "description" in paths else None,
                )
            except asyncpg.UniqueViolationError:  # a concurrent rename took the name
                raise AlreadyExists(
                    f"a product named {name!r} exists", reason="PRODUCT_NAME_TAKEN"
                ) from None
            return pb.UpdateProductResponse(product=product_message(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def ArchiveProduct(
        self, request: pb.ArchiveProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.ArchiveProductResponse:
        caller = require_role(Role.ADMIN)
        v = Violations()
        product_id = domain.check_id(v, request.product_id, "product_id")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.ArchiveProductResponse:
            if await store.product(conn, product_id, for_update=True) is None:
                raise NotFound("product", product_id)
            row = await store.update_product(
                conn, product_id, name=None, description=None, archived=True
            )
            return pb.ArchiveProductResponse(product=product_message(row))

        return await self._mutations.run(caller.member_id, request, work)

    # Ideas

    async def SubmitIdea(
        self, request: pb.SubmitIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitIdeaResponse:
        caller = current_caller()
        v = Violations()
        product_id = domain.check_id(v, request.product_id, "product_id")
        title = domain.clean_title(v, request.title)
        body = domain.clean_body(v, request.body)
        tags = domain.clean_tags(v, request.tags)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.SubmitIdeaResponse:
            product = await store.product(conn, product_id)
            if product is None:
                raise NotFound("product", product_id)
            if product["archived"]:
                raise FailedPrecondition(
                    f"product {product['name']!r} is archived and takes no new ideas",
                    reason="PRODUCT_ARCHIVED",
                    metadata={"product_id": product_id},
                )
            await self._limit(conn, caller, "submit_idea")
            idea_id = await store.insert_idea(
                conn,
                product_id=product_id,
                title=title,
                body=body,
                tags=tags,
                author_id=caller.member_id,
            )
            await store.add_history(conn, idea_id, HistoryKind.SUBMITTED, caller.member_id)
            idea = await self._idea_reply(conn, idea_id, caller)
            await self._rt.outbox.emit(
                conn,
                events_pb.IdeaSubmitted(
                    idea_id=idea_id,
                    product_id=product_id,
                    author_id=caller.member_id,
                    title=title,
                    tags=tags,
                    submitted_at=idea.create_time,
                ),
                aggregate_id=idea_id,
                aggregate_version=1,
            )
            return pb.SubmitIdeaResponse(idea=idea)

        return await self._mutations.run(caller.member_id, request, work)

    async def GetIdea(
        self, request: pb.GetIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetIdeaResponse:
        caller = current_caller()
        v = Violations()
        by_number = request.number != 0 and not request.idea_id
        if by_number:
            v.check(request.number > 0, "number", "must be positive")
            idea_id = ""
        else:
            idea_id = domain.check_id(v, request.idea_id, "idea_id")
            v.check(request.number == 0, "number", "give either idea_id or number, not both")
        v.raise_if_any()
        async with self._rt.pool.acquire() as conn:
            if by_number:
                found = await store.idea_id_by_number(conn, request.number)
                if found is None:
                    raise NotFound("idea", f"#{request.number}")
                idea_id = found
            row = await self._visible_idea(conn, idea_id, caller)
        return pb.GetIdeaResponse(idea=idea_message(row, caller))

    async def ListIdeas(
        self, request: pb.ListIdeasRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListIdeasResponse:
        caller = current_caller()
        v = Violations()
        query = self._query(v, caller, request.filter, request.order)
        v.raise_if_any()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            rows = await store.list_ideas(conn, query, page.after, page.fetch)
        return pb.ListIdeasResponse(
            ideas=[idea_message(r, caller) for r in page.items(rows)],
            next_page_token=page.next_token(rows, query.position_of),
        )

    async def FindSimilarIdeas(
        self, request: pb.FindSimilarIdeasRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindSimilarIdeasResponse:
        caller = current_caller()
        v = Violations()
        title = request.title.strip()
        v.check(
            2 <= len(title) <= domain.TITLE_MAX,
            "title",
            f"must be 2..{domain.TITLE_MAX} characters after trimming",
        )
        domain.check_storable(v, title, "title")
        body = domain.clean_body(v, request.body)
        product_id = domain.check_id(v, request.product_id, "product_id", required=False)
        v.check(request.max_results >= 0, "max_results", "must not be negative")
        v.raise_if_any()
        limit = min(request.max_results or 5, 20)
        async with self._rt.pool.acquire() as conn, conn.transaction():
            found = await store.similar_ideas(
                conn,
                title=title,
                body=body,
                product_id=product_id,
                include_hidden=caller.is_staff,
                limit=limit,
                threshold=self._similarity_threshold,
            )
        return pb.FindSimilarIdeasResponse(
            similar_ideas=[
                pb.SimilarIdea(idea=idea_message(row, caller), similarity=score)
                for row, score in found
            ]
        )

    async def UpdateIdea(
        self, request: pb.UpdateIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateIdeaResponse:
        caller = current_caller()
        v = Violations()
        idea_id = domain.check_id(v, request.idea_id, "idea_id")
        paths = mask_paths(v, request.update_mask, ("title", "body", "tags"))
        title = domain.clean_title(v, request.title) if "title" in paths else None
        body = domain.clean_body(v, request.body) if "body" in paths else None
        tags = domain.clean_tags(v, request.tags) if "tags" in paths else None
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UpdateIdeaResponse:
            row = await store.lock_idea(conn, idea_id)
            # Permission first: a member who may not edit learns nothing about
            # whether the idea exists or is hidden.
            domain.check_may_edit(caller, row["author_id"] if row else None)
            if row is None or (row["hidden"] and not caller.is_staff):
                raise NotFound("idea", idea_id)
            domain.check_can_edit(
                caller,
                domain.EditableIdea(row["author_id"], row["status"], row["created_at"]),
                datetime.now(UTC),
                self._edit_window,
            )
            changed = [
                name
                for name, new in (("title", title), ("body", body), ("tags", tags))
                if new is not None and new != (list(row[name]) if name == "tags" else row[name])
            ]
            if changed:
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
            return pb.UpdateIdeaResponse(idea=await self._idea_reply(conn, idea_id, caller))

        return await self._mutations.run(caller.member_id, request, work)

    async def ChangeIdeaStatus(
        self, request: pb.ChangeIdeaStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangeIdeaStatusResponse:
        caller = require_role(*STAFF)
        v = Violations()
        idea_id = domain.check_id(v, request.idea_id, "idea_id")
        domain.check_status(v, request.status, "status")
        note = domain.clean_note(v, request.note, "note")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.ChangeIdeaStatusResponse:
            await workflow.change_status(
                conn, self._rt.outbox, caller, idea_id, request.status, note
            )
            return pb.ChangeIdeaStatusResponse(idea=await self._idea_reply(conn, idea_id, caller))

        return await self._mutations.run(caller.member_id, request, work)

    async def MergeIdeas(
        self, request: pb.MergeIdeasRequest, context: grpc.aio.ServicerContext
    ) -> pb.MergeIdeasResponse:
        caller = require_role(*STAFF)
        v = Violations()
        source_id = domain.check_id(v, request.source_idea_id, "source_idea_id")
        target_id = domain.check_id(v, request.target_idea_id, "target_idea_id")
        note = domain.clean_note(v, request.note, "note")
        if source_id and source_id == target_id:
            v.add("target_idea_id", "an idea cannot be merged into itself")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.MergeIdeasResponse:
            final_id = await self._final_target(conn, target_id)
            await store.lock_ideas(conn, [source_id, final_id])
            source = await store.lock_idea(conn, source_id)
            if source is None:
                raise NotFound("idea", source_id)
            final_id = await self._final_target(conn, target_id)  # settled under the lock
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
            await self._rt.outbox.emit(
                conn,
                events_pb.IdeasMerged(
                    source_idea_id=source_id,
                    target_idea_id=final_id,
                    actor_id=caller.member_id,
                    merged_at=timestamp(datetime.now(UTC)),
                    source_title=source["title"],
                    target_title=target["title"],
                ),
                aggregate_id=source_id,
                aggregate_version=version,
            )
            return pb.MergeIdeasResponse(
                source=await self._idea_reply(conn, source_id, caller),
                target=await self._idea_reply(conn, final_id, caller),
            )

        return await self._mutations.run(caller.member_id, request, work)

    async def _final_target(self, conn: asyncpg.Connection, target_id: str) -> str:
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

    async def HideIdea(
        self, request: pb.HideIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.HideIdeaResponse:
        caller = require_role(*STAFF)
        v = Violations()
        idea_id = domain.check_id(v, request.idea_id, "idea_id")
        reason = domain.clean_note(v, request.reason, "reason", required=True)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.HideIdeaResponse:
            row = await self._locked_idea(conn, idea_id, caller)
            if not row["hidden"]:
                version = await store.hide_idea(conn, idea_id, reason, request.spam)
                await store.add_history(
                    conn, idea_id, HistoryKind.HIDDEN, caller.member_id, note=reason
                )
                await self._rt.outbox.emit(
                    conn,
                    events_pb.IdeaHidden(
                        idea_id=idea_id,
                        author_id=row["author_id"],
                        spam=request.spam,
                        reason=reason,
                        actor_id=caller.member_id,
                        hidden_at=timestamp(datetime.now(UTC)),
                    ),
                    aggregate_id=idea_id,
                    aggregate_version=version,
                )
            return pb.HideIdeaResponse(idea=await self._idea_reply(conn, idea_id, caller))

        return await self._mutations.run(caller.member_id, request, work)

    async def UnhideIdea(
        self, request: pb.UnhideIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnhideIdeaResponse:
        caller = require_role(*STAFF)
        v = Violations()
        idea_id = domain.check_id(v, request.idea_id, "idea_id")
        reason = domain.clean_note(v, request.reason, "reason", required=True)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UnhideIdeaResponse:
            row = await self._locked_idea(conn, idea_id, caller)
            if not row["hidden"]:
                raise FailedPrecondition(
                    "the idea is not hidden", reason="NOT_HIDDEN", metadata={"idea_id": idea_id}
                )
            version = await store.unhide_idea(conn, idea_id)
            await store.add_history(
                conn, idea_id, HistoryKind.UNHIDDEN, caller.member_id, note=reason
            )
            # The votes service takes votes on it again (rewards does not act:
            # a spam hide's reversal of the submission points stays).
            await self._rt.outbox.emit(
                conn,
                events_pb.IdeaUnhidden(
                    idea_id=idea_id,
                    reason=reason,
                    actor_id=caller.member_id,
                    unhidden_at=timestamp(datetime.now(UTC)),
                ),
                aggregate_id=idea_id,
                aggregate_version=version,
            )
            return pb.UnhideIdeaResponse(idea=await self._idea_reply(conn, idea_id, caller))

        return await self._mutations.run(caller.member_id, request, work)

    async def ReportIdea(
        self, request: pb.ReportIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportIdeaResponse:
        caller = current_caller()
        v = Violations()
        idea_id = domain.check_id(v, request.idea_id, "idea_id")
        reason = domain.clean_note(v, request.reason, "reason")
        v.raise_if_any()
        idempotency.check_request_id(request.request_id)
        async with self._rt.pool.acquire() as conn, conn.transaction():
            await self._visible_idea(conn, idea_id, caller)
            await store.report_idea(conn, idea_id, caller.member_id, reason)
        return pb.ReportIdeaResponse()

    async def ListReportedIdeas(
        self, request: pb.ListReportedIdeasRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReportedIdeasResponse:
        caller = require_role(*STAFF)
        v = Violations()
        product_id = domain.check_id(v, request.product_id, "product_id", required=False)
        v.raise_if_any()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            rows = await store.list_reported_ideas(conn, product_id, page.after, page.fetch)
        return pb.ListReportedIdeasResponse(
            ideas=[idea_message(r, caller) for r in page.items(rows)],
            next_page_token=page.next_token(
                rows, lambda r: {"k": r["report_count"], "id": str(r["id"])}
            ),
        )

    async def ListIdeaHistory(
        self, request: pb.ListIdeaHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListIdeaHistoryResponse:
        caller = current_caller()
        v = Violations()
        idea_id = domain.check_id(v, request.idea_id, "idea_id")
        v.raise_if_any()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            await self._visible_idea(conn, idea_id, caller)
            rows = await store.list_history(
                conn, idea_id, int(page.after["id"]) if page.after else 0, page.fetch
            )
        return pb.ListIdeaHistoryResponse(
            entries=[history_message(r) for r in page.items(rows)],
            next_page_token=page.next_token(rows, lambda r: {"id": r["id"]}),
        )

    async def ExportIdeas(
        self, request: pb.ExportIdeasRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportIdeasResponse]:
        caller = require_role(*STAFF, Role.SERVICE)
        v = Violations()
        query = self._query(v, caller, request.filter, request.order)
        v.check(request.limit >= 0, "limit", "must not be negative")
        if request.HasField("created_after"):
            query.created_after = check_timestamp(v, request.created_after, "created_after")
        if request.HasField("created_before"):
            query.created_before = check_timestamp(v, request.created_before, "created_before")
        if query.created_after and query.created_before:
            v.check(
                query.created_after < query.created_before,
                "created_before",
                "must be after created_after",
            )
        v.raise_if_any()
        if request.format == pb.EXPORT_FORMAT_CSV:
            async for piece in self._export_csv(query, request.limit):
                yield piece
            return
        batch: list[pb.ExportedIdea] = []
        async with self._rt.pool.acquire() as conn, conn.transaction(readonly=True):
            async for row in store.export_ideas(conn, query, request.limit, EXPORT_BATCH):
                batch.append(export_message(row))
                if len(batch) == EXPORT_BATCH:
                    yield pb.ExportIdeasResponse(ideas=batch)
                    batch = []
        if batch:
            yield pb.ExportIdeasResponse(ideas=batch)

    async def _export_csv(
        self, query: IdeaQuery, limit: int
    ) -> AsyncIterator[pb.ExportIdeasResponse]:
        """Postgres renders the CSV (COPY); pieces pass through as they come.
        The queue is short, so COPY waits for a slow reader and memory stays
        flat; a reader that goes away cancels the COPY."""
        pieces: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)

        async def keep(piece: bytes | bytearray) -> None:
            await pieces.put(bytes(piece))  # asyncpg may hand a buffer it reuses

        async def copy() -> int:
            conn = await self._rt.pool.acquire()
            try:
                count = await store.export_csv(conn, query, limit, STATUS_NAMES, keep)
            except BaseException as stopped:
                # A COPY cut short leaves the connection inside the protocol;
                # the pool (which resets nothing on release) must not reuse it.
                conn.terminate()
                if isinstance(stopped, Exception):
                    await pieces.put(None)  # wakes the reader, which then raises this error
                raise
            finally:
                await self._rt.pool.release(conn)
            await pieces.put(None)
            return count

        copying = asyncio.create_task(copy())
        try:
            while (piece := await pieces.get()) is not None:
                yield pb.ExportIdeasResponse(csv=piece)
            yield pb.ExportIdeasResponse(csv_row_count=await copying)
        finally:
            if not copying.done():
                copying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await copying

    # Comments

    async def AddComment(
        self, request: pb.AddCommentRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddCommentResponse:
        caller = require_role(*STAFF) if request.official else current_caller()
        v = Violations()
        idea_id = domain.check_id(v, request.idea_id, "idea_id")
        body = domain.clean_comment_body(v, request.body)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.AddCommentResponse:
            row = await self._locked_idea(conn, idea_id, caller)
            if row["status"] == domain.MERGED:
                raise FailedPrecondition(
                    "a merged idea is read-only; comment on its target",
                    reason="IDEA_MERGED",
                    metadata={"target_idea_id": str(row["merged_into"])},
                )
            await self._limit(conn, caller, "add_comment")
            comment = await store.insert_comment(
                conn, idea_id, caller.member_id, body, request.official
            )
            return pb.AddCommentResponse(comment=comment_message(comment))

        return await self._mutations.run(caller.member_id, request, work)

    async def ListComments(
        self, request: pb.ListCommentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCommentsResponse:
        caller = current_caller()
        v = Violations()
        idea_id = domain.check_id(v, request.idea_id, "idea_id")
        v.raise_if_any()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            await self._visible_idea(conn, idea_id, caller)
            rows = await store.list_comments(
                conn,
                idea_id,
                include_hidden=caller.is_staff,
                after_seq=int(page.after["seq"]) if page.after else 0,
                limit=page.fetch,
            )
        return pb.ListCommentsResponse(
            comments=[comment_message(r) for r in page.items(rows)],
            next_page_token=page.next_token(rows, lambda r: {"seq": r["seq"]}),
        )

    async def _own_comment(
        self, conn: asyncpg.Connection, comment_id: str, caller: Caller, *, staff_may: bool
    ) -> asyncpg.Record:
        row = await store.comment(conn, comment_id, for_update=True)
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

    async def UpdateComment(
        self, request: pb.UpdateCommentRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCommentResponse:
        caller = current_caller()
        v = Violations()
        comment_id = domain.check_id(v, request.comment_id, "comment_id")
        body = domain.clean_comment_body(v, request.body)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UpdateCommentResponse:
            await self._own_comment(conn, comment_id, caller, staff_may=False)
            row = await store.update_comment(conn, comment_id, body=body)
            return pb.UpdateCommentResponse(comment=comment_message(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def DeleteComment(
        self, request: pb.DeleteCommentRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCommentResponse:
        caller = current_caller()
        v = Violations()
        comment_id = domain.check_id(v, request.comment_id, "comment_id")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.DeleteCommentResponse:
            row = await self._own_comment(conn, comment_id, caller, staff_may=True)
            await store.delete_comment(conn, comment_id, str(row["idea_id"]))
            return pb.DeleteCommentResponse()

        return await self._mutations.run(caller.member_id, request, work)

    async def HideComment(
        self, request: pb.HideCommentRequest, context: grpc.aio.ServicerContext
    ) -> pb.HideCommentResponse:
        caller = require_role(*STAFF)
        v = Violations()
        comment_id = domain.check_id(v, request.comment_id, "comment_id")
        reason = domain.clean_note(v, request.reason, "reason", required=True)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.HideCommentResponse:
            existing = await store.comment(conn, comment_id, for_update=True)
            if existing is None:
                raise NotFound("comment", comment_id)
            row = existing
            if not existing["hidden"]:
                row = await store.update_comment(conn, comment_id, hidden_reason=reason)
                await store.add_history(
                    conn,
                    str(row["idea_id"]),
                    HistoryKind.COMMENT_HIDDEN,
                    caller.member_id,
                    note=reason,
                )
            return pb.HideCommentResponse(comment=comment_message(row))

        return await self._mutations.run(caller.member_id, request, work)


def register(server: grpc.aio.Server, runtime: Runtime) -> None:
    pb_grpc.add_IdeaServiceServicer_to_server(IdeaServicer(runtime), server)
