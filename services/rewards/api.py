"""The RewardsService servicer: check the caller and the request
(request_checks.py), call the change (ledger.py, rules.py, shop.py) or the
read, map the rows (mappers.py). SQL lives in the store modules, the rules in
domain.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import asyncpg
import grpc
from cocreate.rewards.v1 import rewards_service_pb2 as pb
from cocreate.rewards.v1 import rewards_service_pb2_grpc as pb_grpc

from services.kit import auth, idempotency
from services.kit.errors import (
    Aborted,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Violations,
)
from services.kit.validation import check_key
from services.rewards import (
    domain,
    ledger,
    mappers,
    request_checks,
    rules,
    shop,
    shop_store,
    store,
    verify,
)

if TYPE_CHECKING:
    from services.kit.server import Runtime


def _subject(member_id: str) -> str:
    """Whose account a read is about: the caller's, or (admin) anyone's."""
    caller = auth.current_caller()
    if not member_id or member_id == caller.member_id:
        return caller.member_id
    if caller.role != auth.Role.ADMIN:
        raise PermissionDenied(
            "members may only read their own account",
            metadata={"role": caller.role.value},
        )
    v = Violations()
    check_key(v, member_id, "member_id")
    v.raise_if_any()
    return member_id


# GrantTier and RevokeTier answer the same account in their own message.
TierResponse = TypeVar("TierResponse", pb.GrantTierResponse, pb.RevokeTierResponse)


def _request_source(caller: auth.Caller, method: str, request_id: str) -> tuple[str, str]:
    """The (source, award key) of an entry made by a request."""
    request_id = request_id or str(uuid.uuid4())
    return f"request:{request_id}", f"request:{method}:{caller.member_id}:{request_id}"


class RewardsServicer(pb_grpc.RewardsServiceServicer):
    def __init__(self, runtime: Runtime, tiers: domain.TierThresholds) -> None:
        self._rt = runtime
        self._pool = runtime.pool
        self._mutations = idempotency.Mutations(
            runtime.pool, pb.DESCRIPTOR.services_by_name["RewardsService"]
        )
        self._tiers = tiers

    # ---- accounts and the ledger -------------------------------------------

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAccountResponse:
        member_id = _subject(request.member_id)
        async with self._pool.acquire() as conn:
            row = await store.get_account(conn, member_id)
        return pb.GetAccountResponse(account=mappers.account(row, self._tiers))

    async def ListEntries(
        self, request: pb.ListEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEntriesResponse:
        member_id = _subject(request.member_id)
        # The filter is the resolved member, so a token from the list without a
        # member_id goes on with the caller's own member_id named, and back.
        page = self._rt.page_tokens.page(
            pb.ListEntriesRequest(
                member_id=member_id, page_size=request.page_size, page_token=request.page_token
            )
        )
        before = int(page.after["seq"]) if page.after else None
        async with self._pool.acquire() as conn:
            await store.ensure_account(conn, member_id)
            rows = await store.list_entries(conn, member_id, before, page.fetch)
        return pb.ListEntriesResponse(
            entries=[mappers.entry(r) for r in page.items(rows)],
            next_page_token=page.next_token(rows, lambda r: {"seq": r["seq"]}),
        )

    async def VerifyLedger(
        self, request: pb.VerifyLedgerRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyLedgerResponse:
        auth.require_role(auth.Role.ADMIN)
        if request.member_id:
            v = Violations()
            check_key(v, request.member_id, "member_id")
            v.raise_if_any()
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            if request.member_id:
                if await store.find_account(conn, request.member_id) is None:
                    raise NotFound("account", request.member_id)
                members = [request.member_id]
            else:
                members = await store.all_member_ids(conn)
            return await verify.verify_accounts(conn, members)

    # ---- rules ------------------------------------------------------------

    async def GetRule(
        self, request: pb.GetRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRuleResponse:
        auth.require_role(auth.Role.ADMIN)
        v = Violations()
        request_checks.check_rule_id(v, request.rule_id)
        v.raise_if_any()
        async with self._pool.acquire() as conn:
            row = await store.get_rule(conn, request.rule_id)
        if row is None:
            raise NotFound("rule", request.rule_id)
        return pb.GetRuleResponse(rule=mappers.rule(row))

    async def ListRules(
        self, request: pb.ListRulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRulesResponse:
        auth.require_role(auth.Role.ADMIN)
        page = self._rt.page_tokens.page(request)
        after = str(page.after["rule_id"]) if page.after else ""
        async with self._pool.acquire() as conn:
            rows = await store.list_rules(conn, after, page.fetch)
        return pb.ListRulesResponse(
            rules=[mappers.rule(r) for r in page.items(rows)],
            next_page_token=page.next_token(rows, lambda r: {"rule_id": r["rule_id"]}),
        )

    async def UpdateRule(
        self, request: pb.UpdateRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateRuleResponse:
        caller = auth.require_role(auth.Role.ADMIN)
        v = Violations()
        if request.HasField("points"):
            request_checks.check_points(v, request.points)
        if request.HasField("daily_cap"):
            request_checks.check_daily_cap(v, request.daily_cap)
        request_checks.check_rule_id(v, request.rule_id)
        v.check(request.expected_version >= 0, "expected_version", "must not be negative")
        idempotency.check_request_id(request.request_id, v)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UpdateRuleResponse:
            row = await rules.update_rule(
                conn,
                request.rule_id,
                expected_version=request.expected_version,
                points=request.points if request.HasField("points") else None,
                daily_cap=request.daily_cap if request.HasField("daily_cap") else None,
                enabled=request.enabled if request.HasField("enabled") else None,
                updated_by=caller.member_id,
            )
            return pb.UpdateRuleResponse(rule=mappers.rule(row))

        return await self._mutations.run(caller.member_id, request, work)

    # ---- grants and corrections ------------------------------------------

    async def GrantPoints(
        self, request: pb.GrantPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GrantPointsResponse:
        response = await self._adjust(
            request,
            pb.GrantPointsResponse,
            kind=domain.KIND_GRANT,
        )
        assert isinstance(response, pb.GrantPointsResponse)
        return response

    async def DeductPoints(
        self, request: pb.DeductPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeductPointsResponse:
        response = await self._adjust(
            request,
            pb.DeductPointsResponse,
            kind=domain.KIND_DEDUCTION,
        )
        assert isinstance(response, pb.DeductPointsResponse)
        return response

    async def _adjust(
        self,
        request: pb.GrantPointsRequest | pb.DeductPointsRequest,
        response_type: type[pb.GrantPointsResponse] | type[pb.DeductPointsResponse],
        *,
        kind: str,
    ) -> pb.GrantPointsResponse | pb.DeductPointsResponse:
        member_id, amount, reason = request.member_id, request.amount, request.reason
        request_id = request.request_id
        caller = auth.require_role(auth.Role.ADMIN)
        v = Violations()
        check_key(v, member_id, "member_id")
        request_checks.check_amount(v, amount, "amount")
        request_checks.check_reason(v, reason)
        idempotency.check_request_id(request_id, v)
        v.raise_if_any()
        method = response_type.DESCRIPTOR.name.removesuffix("Response")

        async def work(
            conn: asyncpg.Connection,
        ) -> pb.GrantPointsResponse | pb.DeductPointsResponse:
            source, award_key = _request_source(caller, method, request_id)
            row = await ledger.append_entry(
                conn,
                self._rt.outbox,
                self._tiers,
                ledger.NewEntry(
                    member_id=member_id,
                    amount=amount if kind == domain.KIND_GRANT else -amount,
                    kind=kind,
                    reason=reason,
                    source=source,
                    actor_id=caller.member_id,
                    award_key=award_key,
                    occurred_at=datetime.now(UTC),
                ),
            )
            if row is None:
                # Only a request_id seen before (and remembered) can land here.
                raise Aborted("this request is being applied; retry it", reason="IN_PROGRESS")
            account = await store.get_account(conn, member_id)
            return response_type(
                entry=mappers.entry(row),
                account=mappers.account(account, self._tiers),
            )

        return await self._mutations.run(caller.member_id, request, work)

    # ---- tiers ------------------------------------------------------------

    async def GrantTier(
        self, request: pb.GrantTierRequest, context: grpc.aio.ServicerContext
    ) -> pb.GrantTierResponse:
        caller = auth.require_role(auth.Role.ADMIN)
        v = Violations()
        check_key(v, request.member_id, "member_id")
        v.check(
            request.tier in domain.GRANTABLE_TIERS,
            "tier",
            "must be one of " + ", ".join(sorted(domain.GRANTABLE_TIERS)),
        )
        request_checks.check_reason(v, request.reason)
        idempotency.check_request_id(request.request_id, v)
        v.raise_if_any()
        return await self._set_granted_tier(caller, request, pb.GrantTierResponse, request.tier)

    async def RevokeTier(
        self, request: pb.RevokeTierRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeTierResponse:
        caller = auth.require_role(auth.Role.ADMIN)
        v = Violations()
        check_key(v, request.member_id, "member_id")
        request_checks.check_reason(v, request.reason)
        idempotency.check_request_id(request.request_id, v)
        v.raise_if_any()
        return await self._set_granted_tier(caller, request, pb.RevokeTierResponse, None)

    async def _set_granted_tier(
        self,
        caller: auth.Caller,
        request: pb.GrantTierRequest | pb.RevokeTierRequest,
        response_type: type[TierResponse],
        tier: str | None,
    ) -> TierResponse:
        member_id, reason = request.member_id, request.reason

        async def work(conn: asyncpg.Connection) -> TierResponse:
            account = await store.lock_account(conn, member_id)
            updated = await ledger.refresh_tier(
                conn,
                self._rt.outbox,
                self._tiers,
                account,
                reason=reason,
                actor_id=caller.member_id,
                granted_tier=tier,
            )
            return response_type(account=mappers.account(updated, self._tiers))

        return await self._mutations.run(caller.member_id, request, work)

    async def ListTierChanges(
        self, request: pb.ListTierChangesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTierChangesResponse:
        member_id = _subject(request.member_id)
        # As in ListEntries: the filter is the resolved member.
        page = self._rt.page_tokens.page(
            pb.ListTierChangesRequest(
                member_id=member_id, page_size=request.page_size, page_token=request.page_token
            )
        )
        before = int(page.after["version"]) if page.after else None
        async with self._pool.acquire() as conn:
            rows = await store.list_tier_changes(conn, member_id, before, page.fetch)
        return pb.ListTierChangesResponse(
            tier_changes=[mappers.tier_change(r) for r in page.items(rows)],
            next_page_token=page.next_token(rows, lambda r: {"version": r["version"]}),
        )

    # ---- the catalogue ----------------------------------------------------

    async def CreateCatalogueItem(
        self, request: pb.CreateCatalogueItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCatalogueItemResponse:
        caller = auth.require_role(auth.Role.ADMIN)
        v = Violations()
        request_checks.check_name(v, request.name)
        request_checks.check_description(v, request.description)
        request_checks.check_amount(v, request.price, "price")
        request_checks.check_stock(v, request.stock)
        idempotency.check_request_id(request.request_id, v)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.CreateCatalogueItemResponse:
            row = await shop_store.create_item(
                conn, request.name.strip(), request.description, request.price, request.stock
            )
            return pb.CreateCatalogueItemResponse(item=mappers.catalogue_item(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def UpdateCatalogueItem(
        self, request: pb.UpdateCatalogueItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCatalogueItemResponse:
        caller = auth.require_role(auth.Role.ADMIN)
        v = Violations()
        item_id = request_checks.parse_item_id(v, request.item_id)
        if request.HasField("name"):
            request_checks.check_name(v, request.name)
        if request.HasField("description"):
            request_checks.check_description(v, request.description)
        if request.HasField("price"):
            request_checks.check_amount(v, request.price, "price")
        if request.HasField("stock"):
            request_checks.check_stock(v, request.stock)
        idempotency.check_request_id(request.request_id, v)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.UpdateCatalogueItemResponse:
            row = await shop_store.update_item(
                conn,
                item_id,
                name=request.name.strip() if request.HasField("name") else None,
                description=request.description if request.HasField("description") else None,
                price=request.price if request.HasField("price") else None,
                stock=request.stock if request.HasField("stock") else None,
                available=request.available if request.HasField("available") else None,
            )
            return pb.UpdateCatalogueItemResponse(item=mappers.catalogue_item(row))

        return await self._mutations.run(caller.member_id, request, work)

    async def GetCatalogueItem(
        self, request: pb.GetCatalogueItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCatalogueItemResponse:
        caller = auth.current_caller()
        v = Violations()
        item_id = request_checks.parse_item_id(v, request.item_id)
        v.raise_if_any()
        async with self._pool.acquire() as conn:
            row = await shop_store.get_item(conn, item_id)
        if not row["available"] and caller.role != auth.Role.ADMIN:
            raise NotFound("catalogue item", request.item_id)
        return pb.GetCatalogueItemResponse(item=mappers.catalogue_item(row))

    async def ListCatalogueItems(
        self, request: pb.ListCatalogueItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCatalogueItemsResponse:
        caller = auth.current_caller()
        if request.include_unavailable and caller.role != auth.Role.ADMIN:
            raise PermissionDenied("only admins may list unavailable items")
        page = self._rt.page_tokens.page(request)
        after = (str(page.after["name"]), str(page.after["id"])) if page.after else None
        async with self._pool.acquire() as conn:
            rows = await shop_store.list_items(
                conn, after, page.fetch, include_unavailable=request.include_unavailable
            )
        return pb.ListCatalogueItemsResponse(
            items=[mappers.catalogue_item(r) for r in page.items(rows)],
            next_page_token=page.next_token(
                rows, lambda last: {"name": last["name"], "id": str(last["id"])}
            ),
        )

    async def RedeemItem(
        self, request: pb.RedeemItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedeemItemResponse:
        caller = auth.current_caller()
        v = Violations()
        item_id = request_checks.parse_item_id(v, request.item_id)
        idempotency.check_request_id(request.request_id, v)
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.RedeemItemResponse:
            redemption = await shop.redeem(
                conn,
                self._rt.outbox,
                self._tiers,
                member_id=caller.member_id,
                item_id=item_id,
                request_id=request.request_id,
            )
            account = await store.get_account(conn, caller.member_id)
            return pb.RedeemItemResponse(
                redemption=mappers.redemption(redemption),
                account=mappers.account(account, self._tiers),
            )

        return await self._mutations.run(caller.member_id, request, work)

    async def ListRedemptions(
        self, request: pb.ListRedemptionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRedemptionsResponse:
        member_id = _subject(request.member_id)
        # As in ListEntries: the filter is the resolved member.
        page = self._rt.page_tokens.page(
            pb.ListRedemptionsRequest(
                member_id=member_id, page_size=request.page_size, page_token=request.page_token
            )
        )
        before = (
            (datetime.fromisoformat(str(page.after["at"])), uuid.UUID(str(page.after["id"])))
            if page.after
            else None
        )
        async with self._pool.acquire() as conn:
            rows = await shop_store.list_redemptions(conn, member_id, before, page.fetch)
        return pb.ListRedemptionsResponse(
            redemptions=[mappers.redemption(r) for r in page.items(rows)],
            next_page_token=page.next_token(
                rows, lambda r: {"at": r["created_at"].isoformat(), "id": str(r["id"])}
            ),
        )

    # ---- the leaderboard -------------------------------------------------

    async def ListLeaderboard(
        self, request: pb.ListLeaderboardRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLeaderboardResponse:
        auth.current_caller()
        if request.period == pb.LEADERBOARD_PERIOD_UNSPECIFIED or (
            request.period not in pb.LeaderboardPeriod.values()
        ):
            raise InvalidArgument([FieldViolation("period", "must be WEEK, MONTH or ALL_TIME")])
        page = self._rt.page_tokens.page(request, default=20, maximum=100)
        offset = int(page.after["offset"]) if page.after else 0
        async with self._pool.acquire() as conn:
            rows = await store.leaderboard(conn, _period_start(request.period), offset, page.fetch)
        return pb.ListLeaderboardResponse(
            entries=[
                mappers.leaderboard_entry(row, rank=offset + index + 1)
                for index, row in enumerate(page.items(rows))
            ],
            # Offset paging: the next page starts after this one's rows.
            next_page_token=page.next_token(rows, lambda _: {"offset": offset + page.size}),
        )


def _period_start(period: int) -> datetime | None:
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == pb.LEADERBOARD_PERIOD_WEEK:
        return midnight - timedelta(days=midnight.weekday())
    if period == pb.LEADERBOARD_PERIOD_MONTH:
        return midnight.replace(day=1)
    return None
