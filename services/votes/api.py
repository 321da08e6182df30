"""The VoteService servicer: check the caller and the request, run the change
in one transaction, map the result. SQL lives in store/, the rules in
domain.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import grpc
from cocreate.votes.v1 import votes_service_pb2 as pb
from cocreate.votes.v1 import votes_service_pb2_grpc as pb_grpc

from services.kit import idempotency
from services.kit.auth import Caller, Role, current_caller, require_role
from services.kit.errors import (
    Aborted,
    NotFound,
    PermissionDenied,
    Violations,
)
from services.kit.server import Runtime
from services.kit.validation import check_key, check_text
from services.votes import changes, domain, mappers, store
from services.votes.writer import DEFAULT_MAX_BATCH, RateLimit, VoteWriter

CAST_LIMIT_SETTING = "COCREATE_VOTES_CAST_LIMIT"
CAST_WINDOW_SETTING = "COCREATE_VOTES_CAST_WINDOW_SECONDS"
DEFAULT_CAST_LIMIT = 120
DEFAULT_CAST_WINDOW_SECONDS = 60.0
WRITERS_SETTING = "COCREATE_VOTES_WRITERS"
DEFAULT_WRITERS = 1
MAX_BATCH_SETTING = "COCREATE_VOTES_MAX_BATCH"
WRITE_PAUSE_SETTING = "COCREATE_VOTES_WRITE_PAUSE_MS"
DEFAULT_WRITE_PAUSE_MS = 40.0


class VoteServicer(pb_grpc.VoteServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._mutations = idempotency.Mutations(
            runtime.pool, pb.DESCRIPTOR.services_by_name["VoteService"]
        )
        # Members' casts and retracts are written in batches (writer.py).
        self._writer = VoteWriter(
            runtime.pool,
            runtime.outbox,
            RateLimit(
                runtime.config.get_int(CAST_LIMIT_SETTING, DEFAULT_CAST_LIMIT),
                runtime.config.get_float(CAST_WINDOW_SETTING, DEFAULT_CAST_WINDOW_SECONDS),
            ),
            writers=runtime.config.get_int(WRITERS_SETTING, DEFAULT_WRITERS),
            max_batch=runtime.config.get_int(MAX_BATCH_SETTING, DEFAULT_MAX_BATCH),
            pause_seconds=runtime.config.get_float(WRITE_PAUSE_SETTING, DEFAULT_WRITE_PAUSE_MS)
            / 1000,
        )

    async def CastVote(
        self, request: pb.CastVoteRequest, context: grpc.aio.ServicerContext
    ) -> pb.CastVoteResponse:
        caller = current_caller()
        _check_vote_change(request.idea_id, request.request_id)
        return await self._writer.cast(caller.member_id, request.idea_id, request.request_id)

    async def RetractVote(
        self, request: pb.RetractVoteRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetractVoteResponse:
        caller = current_caller()
        _check_vote_change(request.idea_id, request.request_id)
        return await self._writer.retract(caller.member_id, request.idea_id, request.request_id)

    async def GetTally(
        self, request: pb.GetTallyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTallyResponse:
        caller = current_caller()
        _check_ids(("idea_id", request.idea_id))
        found = _visible(caller, await store.get_tallies(self._rt.pool, [request.idea_id]))
        if request.idea_id not in found:
            raise NotFound("idea", request.idea_id)
        return pb.GetTallyResponse(tally=mappers.tally(found[request.idea_id]))

    async def BatchGetTallies(
        self, request: pb.BatchGetTalliesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetTalliesResponse:
        caller = current_caller()
        violations = Violations()
        _check_idea_ids(violations, request.idea_ids)
        violations.raise_if_any()
        found = _visible(caller, await store.get_tallies(self._rt.pool, list(request.idea_ids)))
        response = pb.BatchGetTalliesResponse()
        for idea_id in request.idea_ids:
            if idea_id in found:
                response.tallies.append(mappers.tally(found[idea_id]))
            else:
                response.missing_idea_ids.append(idea_id)
        return response

    async def ListMyVotes(
        self, request: pb.ListMyVotesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMyVotesResponse:
        caller = current_caller()
        member_id = request.member_id or caller.member_id
        if member_id != caller.member_id and not _is_staff(caller):
            raise PermissionDenied(
                "members may only list their own votes",
                metadata={"member_id": member_id},
            )
        violations = Violations()
        if request.member_id:
            check_key(violations, request.member_id, "member_id")
        _check_idea_ids(violations, request.idea_ids)
        violations.raise_if_any()
        # The filter is the resolved member (a token from the list without a
        # member_id goes on with the caller's own member_id named, and back)
        # and the ideas asked about.
        page = self._rt.page_tokens.page(
            pb.ListMyVotesRequest(
                member_id=member_id,
                page_size=request.page_size,
                page_token=request.page_token,
                idea_ids=sorted(set(request.idea_ids)),
            )
        )
        after = _after(page.after, "idea_id")
        rows = await store.list_member_votes(
            self._rt.pool, member_id, after, page.fetch, list(request.idea_ids) or None
        )
        return pb.ListMyVotesResponse(
            votes=[mappers.vote(r) for r in page.items(rows)],
            next_page_token=page.next_token(
                rows,
                lambda last: {"cast_at": last["cast_at"].isoformat(), "idea_id": last["idea_id"]},
            ),
        )

    async def ListSupporters(
        self, request: pb.ListSupportersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSupportersResponse:
        require_role(Role.PM, Role.ADMIN)
        _check_ids(("idea_id", request.idea_id))
        page = self._rt.page_tokens.page(request)
        await self._known_idea(request.idea_id)
        rows = await store.list_supporters(
            self._rt.pool, request.idea_id, _after(page.after, "member_id"), page.fetch
        )
        return pb.ListSupportersResponse(
            supporters=[mappers.vote(r) for r in page.items(rows)],
            next_page_token=page.next_token(
                rows,
                lambda last: {
                    "cast_at": last["cast_at"].isoformat(),
                    "member_id": last["member_id"],
                },
            ),
        )

    async def ListVoteHistory(
        self, request: pb.ListVoteHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListVoteHistoryResponse:
        require_role(Role.PM, Role.ADMIN)
        _check_ids(("idea_id", request.idea_id))
        page = self._rt.page_tokens.page(request)
        await self._known_idea(request.idea_id)
        after_id = int(page.after["id"]) if page.after else 0
        rows = await store.list_history(self._rt.pool, request.idea_id, after_id, page.fetch)
        return pb.ListVoteHistoryResponse(
            entries=[mappers.history_entry(r) for r in page.items(rows)],
            next_page_token=page.next_token(rows, lambda r: {"id": r["id"]}),
        )

    async def GetWeightPolicy(
        self, request: pb.GetWeightPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetWeightPolicyResponse:
        current_caller()
        return pb.GetWeightPolicyResponse(
            policy=mappers.policy(await store.get_policy(self._rt.pool))
        )

    async def UpdateWeightPolicy(
        self, request: pb.UpdateWeightPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateWeightPolicyResponse:
        caller = require_role(Role.ADMIN)
        weights = dict(request.weights)
        violations = Violations()
        domain.check_policy(violations, weights)
        violations.check(request.expected_version >= 0, "expected_version", "must not be negative")
        violations.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UpdateWeightPolicyResponse:
            await store.lock_policy(conn, exclusive=True)
            if request.expected_version:
                current = (await store.get_policy(conn)).version
                if current != request.expected_version:
                    raise Aborted(
                        f"the policy is at version {current}, "
                        f"not {request.expected_version}; read it and try again",
                        reason="POLICY_VERSION_MISMATCH",
                        metadata={
                            "expected_version": str(request.expected_version),
                            "current_version": str(current),
                        },
                    )
            stored = await store.replace_policy(conn, weights, caller.member_id)
            changed = await store.reweight_to_policy(conn, stored.policy)
            await store.add_history(
                conn,
                [
                    store.HistoryEntry(
                        row["idea_id"],
                        row["member_id"],
                        domain.ACTION_REWEIGHT,
                        domain.CAUSE_POLICY_CHANGE,
                        row["weight"],
                        row["previous_weight"],
                        row["tier"],
                        caller.member_id,
                    )
                    for row in changed
                ],
            )
            await store.mark_dirty(conn, [row["idea_id"] for row in changed])
            return pb.UpdateWeightPolicyResponse(
                policy=mappers.policy(stored), reweighted_vote_count=len(changed)
            )

        return await self._mutations.run(caller.member_id, request, work)

    async def VoidMemberVotes(
        self, request: pb.VoidMemberVotesRequest, context: grpc.aio.ServicerContext
    ) -> pb.VoidMemberVotesResponse:
        caller = require_role(Role.PM, Role.ADMIN)
        violations = Violations()
        check_key(violations, request.member_id, "member_id")
        # A ban is recorded with its reason.
        domain.check_note(violations, "reason", request.reason, required=request.ban)
        check_text(violations, request.reason, "reason")
        violations.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.VoidMemberVotesResponse:
            await store.lock_policy(conn)
            await store.lock_member(conn, request.member_id, exclusive=True)
            votes = await store.active_votes_of_member(
                conn, request.member_id, open_ideas_only=False
            )
            for vote in votes:
                await changes.retract(
                    conn,
                    self._rt.outbox,
                    vote,
                    cause=domain.CAUSE_VOID,
                    actor_id=caller.member_id,
                    note=request.reason,
                )
            idea_ids = [vote["idea_id"] for vote in votes]
            await store.record_void(
                conn, request.member_id, caller.member_id, request.reason, idea_ids
            )
            banned = await store.is_vote_banned(conn, request.member_id)
            if request.ban and not banned:
                await store.record_vote_ban(
                    conn,
                    request.member_id,
                    banned=True,
                    actor_id=caller.member_id,
                    reason=request.reason,
                )
                banned = True
            return pb.VoidMemberVotesResponse(
                voided_vote_count=len(votes), idea_ids=idea_ids, banned=banned
            )

        return await self._mutations.run(caller.member_id, request, work)

    async def LiftVoteBan(
        self, request: pb.LiftVoteBanRequest, context: grpc.aio.ServicerContext
    ) -> pb.LiftVoteBanResponse:
        caller = require_role(Role.PM, Role.ADMIN)
        violations = Violations()
        check_key(violations, request.member_id, "member_id")
        domain.check_note(violations, "reason", request.reason, required=True)
        check_text(violations, request.reason, "reason")
        violations.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.LiftVoteBanResponse:
            await store.lock_member(conn, request.member_id, exclusive=True)
            if not await store.is_vote_banned(conn, request.member_id):
                return pb.LiftVoteBanResponse(lifted=False)
            await store.record_vote_ban(
                conn,
                request.member_id,
                banned=False,
                actor_id=caller.member_id,
                reason=request.reason,
            )
            return pb.LiftVoteBanResponse(lifted=True)

        return await self._mutations.run(caller.member_id, request, work)

    async def _known_idea(self, idea_id: str) -> None:
        if await store.get_idea(self._rt.pool, idea_id) is None:
            raise NotFound("idea", idea_id)


def _visible(caller: Caller, tallies: dict[str, store.Record]) -> dict[str, store.Record]:
    """The tallies the caller may see: a hidden idea's only to PMs and admins."""
    if _is_staff(caller):
        return tallies
    return {idea_id: row for idea_id, row in tallies.items() if not row["hidden"]}


def _is_staff(caller: Caller) -> bool:
    return caller.role in (Role.PM, Role.ADMIN)


def _check_vote_change(idea_id: str, request_id: str) -> None:
    violations = Violations()
    check_key(violations, idea_id, "idea_id")
    idempotency.check_request_id(request_id, violations)
    violations.raise_if_any()


def _check_ids(*fields: tuple[str, str]) -> None:
    violations = Violations()
    for name, value in fields:
        check_key(violations, value, name)
    violations.raise_if_any()


def _after(position: dict[str, Any] | None, key: str) -> tuple[datetime, str] | None:
    if position is None:
        return None
    return datetime.fromisoformat(position["cast_at"]), str(position[key])


def _check_idea_ids(violations: Violations, idea_ids: Sequence[str]) -> None:
    """A list of ideas asked about in one call: at most MAX_BATCH, each an id."""
    violations.check(
        len(idea_ids) <= domain.MAX_BATCH,
        "idea_ids",
        f"at most {domain.MAX_BATCH} ideas per call",
    )
    for index, idea_id in enumerate(idea_ids[: domain.MAX_BATCH]):
        check_key(violations, idea_id, f"idea_ids[{index}]")
