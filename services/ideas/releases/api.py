"""The gRPC servicer of cocreate.ideas.v1.ReleaseService: iterations, planning,
the release cut and release notes. Status changes go through the ideas
service's own change (services/ideas/changes.py, which ChangeIdeaStatus uses
too), so planning and a cut record history and emit IdeaStatusChanged
exactly like ChangeIdeaStatus (a cut with the release id set)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import grpc
from cocreate.events.v1 import ideas_events_pb2 as events_pb
from cocreate.ideas.v1 import release_service_pb2 as pb
from cocreate.ideas.v1 import release_service_pb2_grpc as pb_grpc

from services.ideas import changes, domain, mappers, product_store
from services.ideas import store as ideas_store
from services.ideas.releases import notes, rules, store
from services.ideas.releases.rules import Outcome, State
from services.kit import idempotency
from services.kit.auth import Caller, Role, current_caller, require_role
from services.kit.errors import AlreadyExists, FailedPrecondition, NotFound, Violations
from services.kit.events import timestamp
from services.kit.server import Runtime
from services.kit.validation import check_uuid

RELEASE_MANAGERS = (Role.PM, Role.ADMIN, Role.SERVICE)
MAX_COMMENTERS_READ = 20


async def _release(conn: asyncpg.Connection, row: asyncpg.Record) -> pb.Release:
    return mappers.release(row, await store.released_ideas(conn, str(row["id"])))


class ReleaseServicer(pb_grpc.ReleaseServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._mutations = idempotency.Mutations(
            runtime.pool, pb.DESCRIPTOR.services_by_name["ReleaseService"]
        )

    async def _locked_iteration(
        self, conn: asyncpg.Connection, iteration_id: str
    ) -> asyncpg.Record:
        row = await store.lock_iteration(conn, iteration_id)
        if row is None:
            raise NotFound("iteration", iteration_id)
        return row

    async def _iteration_reply(self, conn: asyncpg.Connection, iteration_id: str) -> pb.Iteration:
        row = await store.iteration(conn, iteration_id)
        assert row is not None
        return mappers.iteration(row)

    # Iterations

    async def CreateIteration(
        self, request: pb.CreateIterationRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateIterationResponse:
        caller = require_role(*RELEASE_MANAGERS)
        v = Violations()
        product_id = check_uuid(v, request.product_id, "product_id")
        name = rules.clean_text(v, request.name, "name", maximum=rules.NAME_MAX)
        dates = rules.iteration_dates(v, name, request.start_date, request.end_date)
        v.raise_if_any()
        assert dates is not None

        async def work(conn: asyncpg.Connection) -> pb.CreateIterationResponse:
            product = await product_store.product(conn, product_id)
            if product is None:
                raise NotFound("product", product_id)
            row = await store.insert_iteration(
                conn,
                product_id=product_id,
                name=name,
                start=dates[0],
                end=dates[1],
                created_by=caller.member_id,
            )
            if row is None:
                raise AlreadyExists(
                    f"product {product['name']!r} has an iteration named {name!r}",
                    reason="ITERATION_NAME_TAKEN",
                    metadata={"product_id": product_id, "name": name},
                )
            return pb.CreateIterationResponse(iteration=mappers.iteration(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def GetIteration(
        self, request: pb.GetIterationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetIterationResponse:
        current_caller()
        v = Violations()
        iteration_id = check_uuid(v, request.iteration_id, "iteration_id")
        v.raise_if_any()
        async with self._rt.pool.acquire() as conn:
            row = await store.iteration(conn, iteration_id)
        if row is None:
            raise NotFound("iteration", iteration_id)
        return pb.GetIterationResponse(iteration=mappers.iteration(row))

    async def ListIterations(
        self, request: pb.ListIterationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListIterationsResponse:
        current_caller()
        v = Violations()
        product_id = check_uuid(v, request.product_id, "product_id", required=False)
        for index, state in enumerate(request.states):
            v.check(state in {s.value for s in State}, f"states[{index}]", "must be a known state")
        v.raise_if_any()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            rows = await store.list_iterations(
                conn,
                product_id=product_id,
                states=sorted(set(request.states)),
                after=page.after,
                limit=page.fetch,
            )
        return pb.ListIterationsResponse(
            iterations=[mappers.iteration(r) for r in page.items(rows)],
            next_page_token=page.next_token(
                rows, lambda last: {"start": last["start_date"].isoformat(), "id": str(last["id"])}
            ),
        )

    async def FreezeIteration(
        self, request: pb.FreezeIterationRequest, context: grpc.aio.ServicerContext
    ) -> pb.FreezeIterationResponse:
        caller = require_role(*RELEASE_MANAGERS)
        v = Violations()
        iteration_id = check_uuid(v, request.iteration_id, "iteration_id")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.FreezeIterationResponse:
            row = await self._locked_iteration(conn, iteration_id)
            rules.require_state(
                row["state"], (State.PLANNING, State.FROZEN), "freeze", iteration_id
            )
            if row["state"] == State.PLANNING:
                await store.set_state(conn, iteration_id, State.FROZEN)
            return pb.FreezeIterationResponse(
                iteration=await self._iteration_reply(conn, iteration_id)
            )

        return await self._mutations.run(caller.member_id, request, work)

    # Planning

    async def PlanIdea(
        self, request: pb.PlanIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.PlanIdeaResponse:
        caller = require_role(*RELEASE_MANAGERS)
        v = Violations()
        iteration_id = check_uuid(v, request.iteration_id, "iteration_id")
        idea_id = check_uuid(v, request.idea_id, "idea_id")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.PlanIdeaResponse:
            iteration = await self._locked_iteration(conn, iteration_id)
            idea = await ideas_store.lock_idea(conn, idea_id)
            if idea is None:
                raise NotFound("idea", idea_id)
            planned_in = await store.open_iteration_of(conn, idea_id)
            if planned_in != iteration_id:
                await self._plan(conn, caller, iteration, idea, planned_in)
            row = await store.item(conn, iteration_id, idea_id)
            assert row is not None
            return pb.PlanIdeaResponse(idea=mappers.iteration_idea(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def _plan(
        self,
        conn: asyncpg.Connection,
        caller: Caller,
        iteration: asyncpg.Record,
        idea: asyncpg.Record,
        planned_in: str | None,
    ) -> None:
        iteration_id, idea_id = str(iteration["id"]), str(idea["id"])
        rules.require_state(iteration["state"], (State.PLANNING,), "plan ideas", iteration_id)
        if idea["product_id"] != iteration["product_id"]:
            raise FailedPrecondition(
                "the idea belongs to another product than the iteration",
                reason="IDEA_OF_OTHER_PRODUCT",
                metadata={"idea_product_id": str(idea["product_id"])},
            )
        if planned_in is not None:
            raise FailedPrecondition(
                "the idea is planned in another open iteration; unplan it there first",
                reason="IDEA_IN_OTHER_ITERATION",
                metadata={"iteration_id": planned_in},
            )
        status = idea["status"]
        if status not in rules.PLANNABLE:
            raise FailedPrecondition(
                f"the idea is {domain.status_name(status)}; only open ideas can be planned",
                reason="IDEA_CLOSED",
                metadata={"status": domain.status_name(status)},
            )
        note = f"planned into iteration {iteration['name']}"
        if status == domain.OPEN:
            await changes.change_status(
                conn, self._rt.outbox, caller, idea_id, domain.UNDER_REVIEW, note
            )
            status = domain.UNDER_REVIEW
        if status == domain.UNDER_REVIEW:
            await changes.change_status(
                conn, self._rt.outbox, caller, idea_id, domain.PLANNED, note
            )
        await store.plan(conn, iteration_id, idea_id, caller.member_id)

    async def UnplanIdea(
        self, request: pb.UnplanIdeaRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnplanIdeaResponse:
        caller = require_role(*RELEASE_MANAGERS)
        v = Violations()
        iteration_id = check_uuid(v, request.iteration_id, "iteration_id")
        idea_id = check_uuid(v, request.idea_id, "idea_id")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UnplanIdeaResponse:
            iteration = await self._locked_iteration(conn, iteration_id)
            rules.require_state(iteration["state"], (State.PLANNING,), "unplan ideas", iteration_id)
            if not await store.unplan(conn, iteration_id, idea_id):
                raise NotFound("planned idea", idea_id)
            return pb.UnplanIdeaResponse()

        return await self._mutations.run(caller.member_id, request, work)

    async def MarkIdeaDone(
        self, request: pb.MarkIdeaDoneRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarkIdeaDoneResponse:
        caller = require_role(*RELEASE_MANAGERS)
        v = Violations()
        iteration_id = check_uuid(v, request.iteration_id, "iteration_id")
        idea_id = check_uuid(v, request.idea_id, "idea_id")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.MarkIdeaDoneResponse:
            iteration = await self._locked_iteration(conn, iteration_id)
            rules.require_state(
                iteration["state"],
                (State.PLANNING, State.FROZEN),
                "mark ideas done",
                iteration_id,
            )
            row = await store.item(conn, iteration_id, idea_id)
            if row is None or row["outcome"] != Outcome.PLANNED:
                raise NotFound("planned idea", idea_id)
            if not request.undo and row["status"] not in rules.SHIPPABLE:
                raise FailedPrecondition(
                    f"the idea is {domain.status_name(row['status'])}; only planned or "
                    "in-progress ideas can be done",
                    reason="IDEA_NOT_IN_WORK",
                    metadata={"status": domain.status_name(row["status"])},
                )
            await store.set_done(conn, iteration_id, idea_id, not request.undo)
            updated = await store.item(conn, iteration_id, idea_id)
            assert updated is not None
            return pb.MarkIdeaDoneResponse(idea=mappers.iteration_idea(updated))

        return await self._mutations.run(caller.member_id, request, work)

    async def ListIterationIdeas(
        self, request: pb.ListIterationIdeasRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListIterationIdeasResponse:
        caller = current_caller()
        v = Violations()
        iteration_id = check_uuid(v, request.iteration_id, "iteration_id")
        v.raise_if_any()
        page = self._rt.page_tokens.page(request)
        async with self._rt.pool.acquire() as conn:
            if await store.iteration(conn, iteration_id) is None:
                raise NotFound("iteration", iteration_id)
            rows = await store.list_items(conn, iteration_id, page.after, page.fetch)
        visible = [r for r in page.items(rows) if caller.is_staff or not r["hidden"]]
        return pb.ListIterationIdeasResponse(
            ideas=[mappers.iteration_idea(r) for r in visible],
            next_page_token=page.next_token(
                rows, lambda last: {"score": last["weighted_score"], "id": str(last["idea_id"])}
            ),
        )

    # The cut

    async def CutRelease(
        self, request: pb.CutReleaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.CutReleaseResponse:
        caller = require_role(*RELEASE_MANAGERS)
        v = Violations()
        iteration_id = check_uuid(v, request.iteration_id, "iteration_id")
        version = rules.clean_version(v, request.version)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.CutReleaseResponse:
            iteration = await self._locked_iteration(conn, iteration_id)
            if iteration["state"] == State.RELEASED:
                release_row = await store.release_of_iteration(conn, iteration_id)
                assert release_row is not None
                if release_row["version"].lower() != version.lower():
                    raise FailedPrecondition(
                        f"the iteration was released as {release_row['version']!r}",
                        reason="ITERATION_ALREADY_RELEASED",
                        metadata={
                            "release_id": str(release_row["id"]),
                            "version": release_row["version"],
                        },
                    )
            else:
                release_id = await self._cut(conn, caller, iteration, version)
                release_row = await store.release(conn, release_id)
                assert release_row is not None
            return pb.CutReleaseResponse(release=await _release(conn, release_row))

        return await self._mutations.run(caller.member_id, request, work)

    async def _cut(
        self, conn: asyncpg.Connection, caller: Caller, iteration: asyncpg.Record, version: str
    ) -> str:
        """Ship, roll over, store the release and announce it; the release id."""
        iteration_id, product_id = str(iteration["id"]), str(iteration["product_id"])
        taken = await store.release_by_version(conn, product_id, version)
        if taken is not None:
            raise AlreadyExists(
                f"the product already has a release {taken['version']!r}",
                reason="VERSION_TAKEN",
                metadata={"release_id": str(taken["id"]), "version": taken["version"]},
            )
        items = await store.open_items_locked(conn, iteration_id)
        plan = rules.plan_cut([(str(r["idea_id"]), r["status"], r["done"]) for r in items])
        release_id = str(uuid.uuid4())
        next_iteration_id: str | None = None
        if plan.roll_over:
            next_iteration_id = await self._next_iteration(conn, caller, iteration)
            await store.set_outcome(conn, iteration_id, plan.roll_over, Outcome.ROLLED_OVER)
            await store.carry_over(conn, iteration_id, next_iteration_id, plan.roll_over)
        await store.set_outcome(conn, iteration_id, plan.drop, Outcome.DROPPED)
        # The release tooling's transition (PLANNED → SHIPPED), recorded as the caller.
        release_manager = Caller(member_id=caller.member_id, role=Role.SERVICE)
        for idea_id in plan.ship:
            await changes.change_status(
                conn,
                self._rt.outbox,
                release_manager,
                idea_id,
                domain.SHIPPED,
                f"shipped in {version}",
                release_id=release_id,
            )
        shipped = [*plan.ship, *plan.already_shipped]
        await store.set_outcome(conn, iteration_id, shipped, Outcome.SHIPPED)
        try:
            async with conn.transaction():
                await store.insert_release(
                    conn,
                    release_id=release_id,
                    iteration_id=iteration_id,
                    product_id=product_id,
                    version=version,
                    next_iteration_id=next_iteration_id,
                    rolled_over=plan.roll_over,
                    dropped=plan.drop,
                    published_by=caller.member_id,
                )
        except asyncpg.UniqueViolationError:  # a concurrent cut took the version
            raise AlreadyExists(
                f"the product already has a release {version!r}",
                reason="VERSION_TAKEN",
                metadata={"version": version},
            ) from None
        await store.snapshot_shipped(conn, release_id, shipped)
        await store.set_state(conn, iteration_id, State.RELEASED, release_id)
        await self._rt.outbox.emit(
            conn,
            events_pb.ReleasePublished(
                release_id=release_id,
                iteration_id=iteration_id,
                product_id=product_id,
                version=version,
                shipped_idea_ids=shipped,
                rolled_over_idea_ids=plan.roll_over,
                publish_time=timestamp(datetime.now(UTC)),
            ),
            aggregate_id=release_id,
            aggregate_version=1,
        )
        return release_id

    async def _next_iteration(
        self, conn: asyncpg.Connection, caller: Caller, iteration: asyncpg.Record
    ) -> str:
        """The ISO-week iteration after `iteration`, created when missing."""
        product_id = str(iteration["product_id"])
        name = rules.next_week_name(
            iteration["start_date"], iteration["end_date"], iteration["name"]
        )
        row = await store.iteration_by_name(conn, product_id, name)
        if row is None:
            week = rules.iso_week(name)
            assert week is not None
            row = await store.insert_iteration(
                conn,
                product_id=product_id,
                name=name,
                start=week[0],
                end=week[1],
                created_by=caller.member_id,
            ) or await store.iteration_by_name(conn, product_id, name)
            assert row is not None
        if row["state"] == State.RELEASED:
            raise FailedPrecondition(
                f"the next iteration {name} is already released; nothing can roll over into it",
                reason="NEXT_ITERATION_RELEASED",
                metadata={"iteration_id": str(row["id"]), "name": name},
            )
        return str(row["id"])

    # Releases and notes

    async def GetRelease(
        self, request: pb.GetReleaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReleaseResponse:
        current_caller()
        v = Violations()
        release_id = check_uuid(v, request.release_id, "release_id")
        v.raise_if_any()
        async with self._rt.pool.acquire() as conn:
            row = await store.release(conn, release_id)
            if row is None:
                raise NotFound("release", release_id)
            return pb.GetReleaseResponse(release=await _release(conn, row))

    async def ListReleases(
        self, request: pb.ListReleasesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReleasesResponse:
        current_caller()
        v = Violations()
        product_id = check_uuid(v, request.product_id, "product_id", required=False)
        v.raise_if_any()
        page = self._rt.page_tokens.page(request, default=20, maximum=100)
        async with self._rt.pool.acquire() as conn:
            rows = await store.list_releases(conn, product_id, page.after, page.fetch)
            releases = [await _release(conn, r) for r in page.items(rows)]
        return pb.ListReleasesResponse(
            releases=releases,
            next_page_token=page.next_token(rows, lambda r: {"n": r["number"]}),
        )

    async def GetReleaseNotes(
        self, request: pb.GetReleaseNotesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReleaseNotesResponse:
        current_caller()
        v = Violations()
        release_id = check_uuid(v, request.release_id, "release_id", required=False)
        iteration_id = check_uuid(v, request.iteration_id, "iteration_id", required=False)
        if bool(request.release_id) == bool(request.iteration_id):
            v.add("release_id", "give exactly one of release_id and iteration_id")
        v.check(
            request.format in pb.ReleaseNotesFormat.values(), "format", "must be MARKDOWN or JSON"
        )
        v.raise_if_any()
        async with self._rt.pool.acquire() as conn:
            if release_id:
                row = await store.release(conn, release_id)
                if row is None:
                    raise NotFound("release", release_id)
            else:
                iteration = await store.iteration(conn, iteration_id)
                if iteration is None:
                    raise NotFound("iteration", iteration_id)
                row = await store.release_of_iteration(conn, iteration_id)
                if row is None:
                    raise FailedPrecondition(
                        f"iteration {iteration['name']} has not been released yet",
                        reason="ITERATION_NOT_RELEASED",
                        metadata={"iteration_id": iteration_id},
                    )
            release = await _release(conn, row)
            talkers = await store.commenters(
                conn, [i.idea_id for i in release.shipped_ideas], MAX_COMMENTERS_READ
            )
        built = notes.build(
            release,
            release.shipped_ideas,
            [notes.Commenter(r["author_id"], r["comments"]) for r in talkers],
        )
        if request.format == pb.RELEASE_NOTES_FORMAT_JSON:
            content, media_type = notes.as_json(built), notes.JSON
        else:
            content, media_type = notes.markdown(built), notes.MARKDOWN
        return pb.GetReleaseNotesResponse(notes=built, content=content, media_type=media_type)


def register(server: grpc.aio.Server, runtime: Runtime) -> None:
    pb_grpc.add_ReleaseServiceServicer_to_server(ReleaseServicer(runtime), server)
