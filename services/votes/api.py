"""The VoteService servicer: check the caller and the request, run the change
in one transaction, map the result. SQL lives in store.py, the rules in
domain.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import grpc
from cocreate.ideas.v1 import idea_status_pb2
from cocreate.votes.v1 import votes_service_pb2 as pb
from cocreate.votes.v1 import votes_service_pb2_grpc as pb_grpc

from services.kit import idempotency, ratelimit
from services.kit.auth import Caller, Role, current_caller, require_role
from services.kit.errors import (
    Aborted,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Violations,
)
from services.kit.server import Runtime
from services.kit.validation import check_text
from services.votes import changes, domain, store

CAST_LIMIT_SETTING = "COCREATE_VOTES_CAST_LIMIT"
CAST_WINDOW_SETTING = "COCREATE_VOTES_CAST_WINDOW_SECONDS"
DEFAULT_CAST_LIMIT = 120
DEFAULT_CAST_WINDOW_SECONDS = 60.0


class VoteServicer(pb_grpc.VoteServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._cast_limit = runtime.config.get_int(CAST_LIMIT_SETTING, DEFAULT_CAST_LIMIT)
        self._cast_window = runtime.config.get_float(
            CAST_WINDOW_SETTING, DEFAULT_CAST_WINDOW_SECONDS
        )

    async def CastVote(
        self, request: pb.CastVoteRequest, context: grpc.aio.ServicerContext
    ) -> pb.CastVoteResponse:
        caller = current_caller()
        _check_ids(("idea_id", request.idea_id))

        async def work(conn: asyncpg.Connection) -> pb.CastVoteResponse:
            await ratelimit.hit(
                conn,
                caller.member_id,
                "cast_vote",
                limit=self._cast_limit,
                window_seconds=self._cast_window,
            )
            # Shared locks: the policy, the idea's state and the member's tier
            # stay as read until commit, without casts waiting for each other.
            await store.lock_policy(conn)
            await store.lock_ideas(conn, [request.idea_id])
            await store.lock_member(conn, caller.member_id)
            # Under the member's lock: a void with ban either committed before
            # (the ban is seen) or waits for this cast (and voids it).
            if await store.is_vote_banned(conn, caller.member_id):
                raise PermissionDenied(
                    "you may not cast votes: your voting is banned",
                    reason="VOTING_BANNED",
                    metadata={"member_id": caller.member_id},
                )
            await _open_idea(conn, request.idea_id)
            policy = (await store.get_policy(conn)).policy
            tier = policy.tier_of(await store.get_member_tier(conn, caller.member_id))
            vote, _ = await changes.cast(
                conn,
                self._rt.outbox,
                idea_id=request.idea_id,
                member_id=caller.member_id,
                weight=policy.weight_of(tier),
                tier=tier,
                cause=domain.CAUSE_MEMBER,
                actor_id=caller.member_id,
            )
            return pb.CastVoteResponse(vote=_vote(vote))

        return await idempotency.run_once(
            self._rt.pool,
            caller.member_id,
            "CastVote",
            request.request_id,
            pb.CastVoteResponse,
            work,
        )

    async def RetractVote(
        self, request: pb.RetractVoteRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetractVoteResponse:
        caller = current_caller()
        _check_ids(("idea_id", request.idea_id))

        async def work(conn: asyncpg.Connection) -> pb.RetractVoteResponse:
            await store.lock_ideas(conn, [request.idea_id])
            await _open_idea(conn, request.idea_id)
            vote = await store.get_vote(conn, request.idea_id, caller.member_id, for_update=True)
            if vote is None:
                raise NotFound("vote", changes.vote_aggregate(request.idea_id, caller.member_id))
            if vote["active"]:
                vote = await changes.retract(
                    conn,
                    self._rt.outbox,
                    vote,
                    cause=domain.CAUSE_MEMBER,
                    actor_id=caller.member_id,
                )
            return pb.RetractVoteResponse(vote=_vote(vote))

        return await idempotency.run_once(
            self._rt.pool,
            caller.member_id,
            "RetractVote",
            request.request_id,
            pb.RetractVoteResponse,
            work,
        )

    async def GetTally(
        self, request: pb.GetTallyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTallyResponse:
        current_caller()
        _check_ids(("idea_id", request.idea_id))
        found = await store.get_tallies(self._rt.pool, [request.idea_id])
        if request.idea_id not in found:
            raise NotFound("idea", request.idea_id)
        return pb.GetTallyResponse(tally=_tally(found[request.idea_id]))

    async def BatchGetTallies(
        self, request: pb.BatchGetTalliesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetTalliesResponse:
        current_caller()
        violations = Violations()
        violations.check(
            len(request.idea_ids) <= domain.MAX_BATCH,
            "idea_ids",
            f"at most {domain.MAX_BATCH} ideas per call",
        )
        for index, idea_id in enumerate(request.idea_ids[: domain.MAX_BATCH]):
            domain.check_id(violations, f"idea_ids[{index}]", idea_id)
        violations.raise_if_any()
        found = await store.get_tallies(self._rt.pool, list(request.idea_ids))
        response = pb.BatchGetTalliesResponse()
        for idea_id in request.idea_ids:
            if idea_id in found:
                response.tallies.append(_tally(found[idea_id]))
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
        if request.member_id:
            _check_ids(("member_id", request.member_id))
        # The filter is the resolved member: a token from the list without a
        # member_id goes on with the caller's own member_id named, and back.
        page = self._rt.page_tokens.page(
            pb.ListMyVotesRequest(
                member_id=member_id, page_size=request.page_size, page_token=request.page_token
            )
        )
        after = _after(page.after, "idea_id")
        rows = await store.list_member_votes(self._rt.pool, member_id, after, page.fetch)
        return pb.ListMyVotesResponse(
            votes=[_vote(r) for r in page.items(rows)],
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
            supporters=[_vote(r) for r in page.items(rows)],
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
            entries=[_history(r) for r in page.items(rows)],
            next_page_token=page.next_token(rows, lambda r: {"id": r["id"]}),
        )

    async def GetWeightPolicy(
        self, request: pb.GetWeightPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetWeightPolicyResponse:
        current_caller()
        return pb.GetWeightPolicyResponse(policy=_policy(await store.get_policy(self._rt.pool)))

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
                policy=_policy(stored), reweighted_vote_count=len(changed)
            )

        return await idempotency.run_once(
            self._rt.pool,
            caller.member_id,
            "UpdateWeightPolicy",
            request.request_id,
            pb.UpdateWeightPolicyResponse,
            work,
        )

    async def VoidMemberVotes(
        self, request: pb.VoidMemberVotesRequest, context: grpc.aio.ServicerContext
    ) -> pb.VoidMemberVotesResponse:
        caller = require_role(Role.PM, Role.ADMIN)
        violations = Violations()
        domain.check_id(violations, "member_id", request.member_id)
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

        return await idempotency.run_once(
            self._rt.pool,
            caller.member_id,
            "VoidMemberVotes",
            request.request_id,
            pb.VoidMemberVotesResponse,
            work,
        )

    async def LiftVoteBan(
        self, request: pb.LiftVoteBanRequest, context: grpc.aio.ServicerContext
    ) -> pb.LiftVoteBanResponse:
        caller = require_role(Role.PM, Role.ADMIN)
        violations = Violations()
        domain.check_id(violations, "member_id", request.member_id)
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

        return await idempotency.run_once(
            self._rt.pool,
            caller.member_id,
            "LiftVoteBan",
            request.request_id,
            pb.LiftVoteBanResponse,
            work,
        )

    async def _known_idea(self, idea_id: str) -> None:
        if await store.get_idea(self._rt.pool, idea_id) is None:
            raise NotFound("idea", idea_id)


def _is_staff(caller: Caller) -> bool:
    return caller.role in (Role.PM, Role.ADMIN)


def _check_ids(*fields: tuple[str, str]) -> None:
    violations = Violations()
    for name, value in fields:
        domain.check_id(violations, name, value)
    violations.raise_if_any()


async def _open_idea(conn: Any, idea_id: str) -> None:
    idea = await store.get_idea(conn, idea_id)
    if idea is None:
        raise NotFound("idea", idea_id)
    if not idea["open"]:
        status = idea_status_pb2.IdeaStatus.Name(idea["status"])
        raise FailedPrecondition(
            f"idea {idea_id!r} is closed ({status}); it takes no more votes",
            reason="IDEA_CLOSED",
            metadata={"idea_id": idea_id, "status": status},
        )


def _after(position: dict[str, Any] | None, key: str) -> tuple[datetime, str] | None:
    if position is None:
        return None
    return datetime.fromisoformat(position["cast_at"]), str(position[key])


def _vote(row: store.Record) -> pb.Vote:
    vote = pb.Vote(
        idea_id=row["idea_id"],
        member_id=row["member_id"],
        weight=row["weight"],
        tier=row["tier"],
        active=row["active"],
    )
    vote.cast_at.FromDatetime(row["cast_at"])
    if row["retracted_at"] is not None:
        vote.retracted_at.FromDatetime(row["retracted_at"])
    return vote


def _tally(row: store.Record) -> pb.Tally:
    tally = pb.Tally(
        idea_id=row["idea_id"],
        version=row["version"] or 0,
        weighted_score=row["weighted_score"] or 0,
        voter_count=row["voter_count"] or 0,
        trending_score=row["trending_score"] or 0.0,
        open=row["open"],
    )
    tally.voters_by_tier.update(store.tier_counts(row["voters_by_tier"]))
    tally.updated_at.FromDatetime(row["updated_at"] or row["idea_updated_at"])
    return tally


def _history(row: store.Record) -> pb.VoteHistoryEntry:
    entry = pb.VoteHistoryEntry(
        id=row["id"],
        idea_id=row["idea_id"],
        member_id=row["member_id"],
        action=row["action"],
        cause=row["cause"],
        weight=row["weight"],
        previous_weight=row["previous_weight"],
        tier=row["tier"],
        actor_id=row["actor_id"],
        note=row["note"],
    )
    entry.occurred_at.FromDatetime(row["occurred_at"])
    return entry


def _policy(stored: store.StoredPolicy) -> pb.WeightPolicy:
    policy = pb.WeightPolicy(
        lowest_tier=stored.policy.lowest_tier,
        version=stored.version,
        updated_by=stored.updated_by,
    )
    policy.weights.update(stored.policy.weights)
    policy.updated_at.FromDatetime(stored.updated_at)
    return policy
