"""The gRPC servicer of cocreate.ideas.v1.IdeaService: check the caller,
validate the request, make the change (changes.py) in one transaction or read
(store.py), map rows to messages (mappers.py). The rules live in domain.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import grpc
from cocreate.ideas.v1 import ideas_service_pb2 as pb
from cocreate.ideas.v1 import ideas_service_pb2_grpc as pb_grpc

from services.ideas import (
    changes,
    comment_store,
    domain,
    export,
    mappers,
    product_store,
    queries,
    store,
)
from services.kit import idempotency
from services.kit.auth import Caller, Role, current_caller, require_role
from services.kit.errors import NotFound, Violations
from services.kit.server import Runtime
from services.kit.validation import check_etag, check_update_mask, check_uuid

STAFF = (Role.PM, Role.ADMIN)


class IdeaServicer(pb_grpc.IdeaServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._mutations = idempotency.Mutations(
            runtime.pool, pb.DESCRIPTOR.services_by_name["IdeaService"]
        )
        self._rules = changes.Rules.from_config(runtime.config)
        self._similarity_threshold = runtime.config.get_float(
            "COCREATE_IDEAS_SIMILARITY_THRESHOLD", 0.15
        )

    # Helpers

    async def _visible_idea(
        self, conn: asyncpg.Connection, idea_id: str, caller: Caller
    ) -> asyncpg.Record:
        """The idea with its joins; NOT_FOUND if unknown or hidden from the caller."""
        row = await store.idea(conn, idea_id)
        if row is None or (row["hidden"] and not caller.is_staff):
            raise NotFound("idea", idea_id)
        return row

    async def _idea_reply(self, conn: asyncpg.Connection, idea_id: str, caller: Caller) -> pb.Idea:
        row = await store.idea(conn, idea_id)
        assert row is not None
        return mappers.idea(row, caller)

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
            row = await changes.create_product(conn, name, description)
            return pb.CreateProductResponse(product=mappers.product(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def GetProduct(
        self, request: pb.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProductResponse:
        current_caller()
        v = Violations()
        product_id = check_uuid(v, request.product_id, "product_id")
        v.raise_if_any()
        async with self._rt.pool.acquire() as conn:
            row = await product_store.product(conn, product_id)
        if row is None:
            raise NotFound("product", product_id)
        return pb.GetProductResponse(product=mappers.product(row))

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProductsResponse:
        current_caller()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            rows = await product_store.list_products(
                conn, include_archived=request.include_archived, after=page.after, limit=page.fetch
            )
        return pb.ListProductsResponse(
            products=[mappers.product(r) for r in page.items(rows)],
            next_page_token=page.next_token(
                rows, lambda last: {"name": last["sort_name"], "id": str(last["id"])}
            ),
        )

    async def UpdateProduct(
        self, request: pb.UpdateProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateProductResponse:
        caller = require_role(Role.ADMIN)
        v = Violations()
        product_id = check_uuid(v, request.product_id, "product_id")
        paths = check_update_mask(v, request.update_mask, ("name", "description"))
        name = domain.clean_name(
            v, request.name, "name", maximum=domain.PRODUCT_NAME_MAX, required="name" in paths
        )
        description = domain.clean_body(
            v, request.description, "description", domain.PRODUCT_DESCRIPTION_MAX
        )
        etag = check_etag(v, request.etag)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UpdateProductResponse:
            row = await changes.update_product(
                conn,
                product_id,
                name=name if "name" in paths else None,
                description=description if "description" in paths else None,
                etag=etag,
            )
            return pb.UpdateProductResponse(product=mappers.product(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def ArchiveProduct(
        self, request: pb.ArchiveProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.ArchiveProductResponse:
        caller = require_role(Role.ADMIN)
        v = Violations()
        product_id = check_uuid(v, request.product_id, "product_id")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.ArchiveProductResponse:
            row = await changes.archive_product(conn, product_id)
            return pb.ArchiveProductResponse(product=mappers.product(row))

        return await self._mutations.run(caller.member_id, request, work)

    # Ideas

    async def SubmitIdea(
        self, request: pb.SubmitIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitIdeaResponse:
        caller = current_caller()
        v = Violations()
        product_id = check_uuid(v, request.product_id, "product_id")
        title = domain.clean_title(v, request.title)
        body = domain.clean_body(v, request.body)
        tags = domain.clean_tags(v, request.tags)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.SubmitIdeaResponse:
            row = await changes.submit_idea(
                conn,
                self._rt.outbox,
                self._rules,
                caller,
                product_id=product_id,
                title=title,
                body=body,
                tags=tags,
            )
            return pb.SubmitIdeaResponse(idea=mappers.idea(row, caller))

        return await self._mutations.run(caller.member_id, request, work)

    async def GetIdea(
        self, request: pb.GetIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetIdeaResponse:
        caller = current_caller()
        v = Violations()
        by_number = request.WhichOneof("key") == "number"
        if by_number:
            v.check(request.number > 0, "number", "must be positive")
            idea_id = ""
        else:
            idea_id = check_uuid(v, request.idea_id, "idea_id")
        v.raise_if_any()
        async with self._rt.pool.acquire() as conn:
            if by_number:
                found = await store.idea_id_by_number(conn, request.number)
                if found is None:
                    raise NotFound("idea", f"#{request.number}")
                idea_id = found
            row = await self._visible_idea(conn, idea_id, caller)
        return pb.GetIdeaResponse(idea=mappers.idea(row, caller))

    async def ListIdeas(
        self, request: pb.ListIdeasRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListIdeasResponse:
        caller = current_caller()
        v = Violations()
        query = queries.idea_query(v, caller, request.filter, request.order)
        v.raise_if_any()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            rows = await store.list_ideas(conn, query, page.after, page.fetch)
        return pb.ListIdeasResponse(
            ideas=[mappers.idea(r, caller) for r in page.items(rows)],
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
        product_id = check_uuid(v, request.product_id, "product_id", required=False)
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
                pb.SimilarIdea(idea=mappers.idea(row, caller), similarity=score)
                for row, score in found
            ]
        )

    async def UpdateIdea(
        self, request: pb.UpdateIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateIdeaResponse:
        caller = current_caller()
        v = Violations()
        idea_id = check_uuid(v, request.idea_id, "idea_id")
        paths = check_update_mask(v, request.update_mask, ("title", "body", "tags"))
        title = domain.clean_title(v, request.title) if "title" in paths else None
        body = domain.clean_body(v, request.body) if "body" in paths else None
        tags = domain.clean_tags(v, request.tags) if "tags" in paths else None
        etag = check_etag(v, request.etag)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UpdateIdeaResponse:
            await changes.edit_idea(
                conn, self._rules, caller, idea_id, title=title, body=body, tags=tags, etag=etag
            )
            return pb.UpdateIdeaResponse(idea=await self._idea_reply(conn, idea_id, caller))

        return await self._mutations.run(caller.member_id, request, work)

    async def ChangeIdeaStatus(
        self, request: pb.ChangeIdeaStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangeIdeaStatusResponse:
        caller = require_role(*STAFF)
        v = Violations()
        idea_id = check_uuid(v, request.idea_id, "idea_id")
        domain.check_status(v, request.status, "status")
        note = domain.clean_note(v, request.note, "note")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.ChangeIdeaStatusResponse:
            await changes.change_status(
                conn, self._rt.outbox, caller, idea_id, request.status, note
            )
            return pb.ChangeIdeaStatusResponse(idea=await self._idea_reply(conn, idea_id, caller))

        return await self._mutations.run(caller.member_id, request, work)

    async def MergeIdeas(
        self, request: pb.MergeIdeasRequest, context: grpc.aio.ServicerContext
    ) -> pb.MergeIdeasResponse:
        caller = require_role(*STAFF)
        v = Violations()
        source_id = check_uuid(v, request.source_idea_id, "source_idea_id")
        target_id = check_uuid(v, request.target_idea_id, "target_idea_id")
        note = domain.clean_note(v, request.note, "note")
        if source_id and source_id == target_id:
            v.add("target_idea_id", "an idea cannot be merged into itself")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.MergeIdeasResponse:
            final_id = await changes.merge_ideas(
                conn, self._rt.outbox, caller, source_id, target_id, note
            )
            return pb.MergeIdeasResponse(
                source=await self._idea_reply(conn, source_id, caller),
                target=await self._idea_reply(conn, final_id, caller),
            )

        return await self._mutations.run(caller.member_id, request, work)

    async def HideIdea(
        self, request: pb.HideIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.HideIdeaResponse:
        caller = require_role(*STAFF)
        v = Violations()
        idea_id = check_uuid(v, request.idea_id, "idea_id")
        reason = domain.clean_note(v, request.reason, "reason", required=True)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.HideIdeaResponse:
            await changes.hide_idea(conn, self._rt.outbox, caller, idea_id, reason, request.spam)
            return pb.HideIdeaResponse(idea=await self._idea_reply(conn, idea_id, caller))

        return await self._mutations.run(caller.member_id, request, work)

    async def UnhideIdea(
        self, request: pb.UnhideIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnhideIdeaResponse:
        caller = require_role(*STAFF)
        v = Violations()
        idea_id = check_uuid(v, request.idea_id, "idea_id")
        reason = domain.clean_note(v, request.reason, "reason", required=True)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UnhideIdeaResponse:
            await changes.unhide_idea(conn, self._rt.outbox, caller, idea_id, reason)
            return pb.UnhideIdeaResponse(idea=await self._idea_reply(conn, idea_id, caller))

        return await self._mutations.run(caller.member_id, request, work)

    async def ReportIdea(
        self, request: pb.ReportIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportIdeaResponse:
        caller = current_caller()
        v = Violations()
        idea_id = check_uuid(v, request.idea_id, "idea_id")
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
        product_id = check_uuid(v, request.product_id, "product_id", required=False)
        v.raise_if_any()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            rows = await store.list_reported_ideas(conn, product_id, page.after, page.fetch)
        return pb.ListReportedIdeasResponse(
            ideas=[mappers.idea(r, caller) for r in page.items(rows)],
            next_page_token=page.next_token(
                rows, lambda r: {"k": r["report_count"], "id": str(r["id"])}
            ),
        )

    async def ListIdeaHistory(
        self, request: pb.ListIdeaHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListIdeaHistoryResponse:
        caller = current_caller()
        v = Violations()
        idea_id = check_uuid(v, request.idea_id, "idea_id")
        v.raise_if_any()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            await self._visible_idea(conn, idea_id, caller)
            rows = await store.list_history(
                conn, idea_id, int(page.after["id"]) if page.after else 0, page.fetch
            )
        return pb.ListIdeaHistoryResponse(
            entries=[mappers.history_entry(r) for r in page.items(rows)],
            next_page_token=page.next_token(rows, lambda r: {"id": r["id"]}),
        )

    async def ExportIdeas(
        self, request: pb.ExportIdeasRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportIdeasResponse]:
        caller = require_role(*STAFF, Role.SERVICE)
        v = Violations()
        query = queries.export_query(v, caller, request)
        v.raise_if_any()
        pieces = (
            export.csv_pieces(self._rt.pool, query, request.limit)
            if request.format == pb.EXPORT_FORMAT_CSV
            else export.messages(self._rt.pool, query, request.limit)
        )
        async with contextlib.aclosing(pieces):  # a cancelled call ends the query now
            async for piece in pieces:
                yield piece

    # Comments

    async def AddComment(
        self, request: pb.AddCommentRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddCommentResponse:
        caller = require_role(*STAFF) if request.official else current_caller()
        v = Violations()
        idea_id = check_uuid(v, request.idea_id, "idea_id")
        body = domain.clean_comment_body(v, request.body)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.AddCommentResponse:
            row = await changes.add_comment(
                conn, self._rules, caller, idea_id, body, official=request.official
            )
            return pb.AddCommentResponse(comment=mappers.comment(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def ListComments(
        self, request: pb.ListCommentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCommentsResponse:
        caller = current_caller()
        v = Violations()
        idea_id = check_uuid(v, request.idea_id, "idea_id")
        v.raise_if_any()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            await self._visible_idea(conn, idea_id, caller)
            rows = await comment_store.list_comments(
                conn,
                idea_id,
                include_hidden=caller.is_staff,
                after_seq=int(page.after["seq"]) if page.after else 0,
                limit=page.fetch,
            )
        return pb.ListCommentsResponse(
            comments=[mappers.comment(r) for r in page.items(rows)],
            next_page_token=page.next_token(rows, lambda r: {"seq": r["seq"]}),
        )

    async def UpdateComment(
        self, request: pb.UpdateCommentRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCommentResponse:
        caller = current_caller()
        v = Violations()
        comment_id = check_uuid(v, request.comment_id, "comment_id")
        body = domain.clean_comment_body(v, request.body)
        etag = check_etag(v, request.etag)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UpdateCommentResponse:
            row = await changes.edit_comment(conn, caller, comment_id, body, etag)
            return pb.UpdateCommentResponse(comment=mappers.comment(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def DeleteComment(
        self, request: pb.DeleteCommentRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCommentResponse:
        caller = current_caller()
        v = Violations()
        comment_id = check_uuid(v, request.comment_id, "comment_id")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.DeleteCommentResponse:
            await changes.delete_comment(conn, caller, comment_id)
            return pb.DeleteCommentResponse()

        return await self._mutations.run(caller.member_id, request, work)

    async def HideComment(
        self, request: pb.HideCommentRequest, context: grpc.aio.ServicerContext
    ) -> pb.HideCommentResponse:
        caller = require_role(*STAFF)
        v = Violations()
        comment_id = check_uuid(v, request.comment_id, "comment_id")
        reason = domain.clean_note(v, request.reason, "reason", required=True)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.HideCommentResponse:
            row = await changes.hide_comment(conn, caller, comment_id, reason)
            return pb.HideCommentResponse(comment=mappers.comment(row))

        return await self._mutations.run(caller.member_id, request, work)


def register(server: grpc.aio.Server, runtime: Runtime) -> None:
    pb_grpc.add_IdeaServiceServicer_to_server(IdeaServicer(runtime), server)
