"""Accounts, the append-only hash-chained ledger, admin grants and corrections,
the statement and VerifyLedger."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from cocreate.events.v1 import rewards_events_pb2
from cocreate.rewards.v1 import rewards_service_pb2 as pb

from services.kit.server import RunningService
from tests.rewards.helpers import ADMIN, emitted, entries, rewards_stub, subject_of
from tests.support import error_reason, metadata, violated_fields


async def test_a_new_member_gets_an_empty_newcomer_account(rewards: RunningService) -> None:
    answer = await rewards_stub(rewards).GetAccount(pb.GetAccountRequest(), metadata=metadata("m1"))
    account = answer.account
    assert account.member_id == "m1"
    assert (account.balance, account.lifetime_points) == (0, 0)
    assert (account.tier, account.next_tier, account.points_to_next_tier) == (
        "newcomer",
        "member",
        100,
    )


async def test_members_see_only_their_own_account_and_admins_any(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.GetAccount(pb.GetAccountRequest(member_id="m2"), metadata=metadata("m1"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.ListEntries(pb.ListEntriesRequest(member_id="m2"), metadata=metadata("m1"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    answer = await service.GetAccount(pb.GetAccountRequest(member_id="m2"), metadata=ADMIN)
    assert answer.account.member_id == "m2"


async def test_grant_and_deduct_are_entries_with_the_admin_as_actor(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    granted = await service.GrantPoints(
        pb.GrantPointsRequest(member_id="m1", amount=70, reason="beta tester"), metadata=ADMIN
    )
    deducted = await service.DeductPoints(
        pb.DeductPointsRequest(member_id="m1", amount=20, reason="duplicate grant"),
        metadata=ADMIN,
    )
    assert granted.entry.kind == pb.ENTRY_KIND_GRANT and granted.entry.amount == 70
    assert deducted.entry.kind == pb.ENTRY_KIND_DEDUCTION and deducted.entry.amount == -20
    assert deducted.entry.actor_id == "admin-1"
    assert deducted.entry.reason == "duplicate grant"
    assert (deducted.account.balance, deducted.account.lifetime_points) == (50, 50)
    awarded = await emitted(rewards, subject_of(rewards_events_pb2.PointsAwarded))
    amounts = []
    for envelope in awarded:
        event = rewards_events_pb2.PointsAwarded()
        envelope.payload.Unpack(event)
        amounts.append((event.member_id, event.amount, event.balance))
    assert amounts == [("m1", 70, 70), ("m1", -20, 50)]


async def test_a_grant_retried_with_its_request_id_is_applied_once(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    request = pb.GrantPointsRequest(member_id="m1", amount=10, reason="gift", request_id="g-1")
    first = await service.GrantPoints(request, metadata=ADMIN)
    again = await service.GrantPoints(request, metadata=ADMIN)
    assert again.entry.entry_id == first.entry.entry_id
    assert len(await entries(rewards, "m1")) == 1


@pytest.mark.parametrize(
    ("amount", "reason", "fields"),
    [
        (0, "ok", {"amount"}),
        (-5, "ok", {"amount"}),
        (1_000_001, "ok", {"amount"}),
        (10, "", {"reason"}),
        (0, " ", {"amount", "reason"}),
    ],
)
async def test_bad_grants_are_invalid_argument_and_write_nothing(
    rewards: RunningService, amount: int, reason: str, fields: set[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rewards_stub(rewards).GrantPoints(
            pb.GrantPointsRequest(member_id="m1", amount=amount, reason=reason), metadata=ADMIN
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == fields
    assert await rewards.runtime.pool.fetchval("select count(*) from ledger_entries") == 0


async def test_grants_are_admin_only(rewards: RunningService) -> None:
    for role in ("member", "pm"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await rewards_stub(rewards).GrantPoints(
                pb.GrantPointsRequest(member_id="m1", amount=5, reason="x"),
                metadata=metadata("m1", role),
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_deduction_below_zero_is_failed_precondition(rewards: RunningService) -> None:
    service = rewards_stub(rewards)
    await service.GrantPoints(
        pb.GrantPointsRequest(member_id="m1", amount=5, reason="gift"), metadata=ADMIN
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.DeductPoints(
            pb.DeductPointsRequest(member_id="m1", amount=6, reason="too much"), metadata=ADMIN
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "INSUFFICIENT_POINTS"
    assert len(await entries(rewards, "m1")) == 1


async def test_the_statement_lists_own_entries_newest_first_in_pages(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    for amount in range(1, 6):
        await service.GrantPoints(
            pb.GrantPointsRequest(member_id="m1", amount=amount, reason=f"gift {amount}"),
            metadata=ADMIN,
        )
    seen: list[int] = []
    token = ""
    while True:
        page = await service.ListEntries(
            pb.ListEntriesRequest(page_size=2, page_token=token), metadata=metadata("m1")
        )
        seen.extend(e.amount for e in page.entries)
        assert all(e.reason and e.source.startswith("request:") for e in page.entries)
        token = page.next_page_token
        if not token:
            break
    assert seen == [5, 4, 3, 2, 1]
    first = await service.ListEntries(pb.ListEntriesRequest(page_size=2), metadata=metadata("m1"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.ListEntries(
            pb.ListEntriesRequest(member_id="m9", page_size=2, page_token=first.next_page_token),
            metadata=ADMIN,
        )
    assert violated_fields(caught.value) == {"page_token"}


async def test_the_ledger_refuses_update_and_delete(rewards: RunningService) -> None:
    await rewards_stub(rewards).GrantPoints(
        pb.GrantPointsRequest(member_id="m1", amount=5, reason="gift"), metadata=ADMIN
    )
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await rewards.runtime.pool.execute("update ledger_entries set amount = 500")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await rewards.runtime.pool.execute("delete from ledger_entries")
    with pytest.raises(asyncpg.CheckViolationError):
        await rewards.runtime.pool.execute("update accounts set balance = -1")


async def test_verify_ledger_passes_on_an_untouched_ledger(rewards: RunningService) -> None:
    service = rewards_stub(rewards)
    for member in ("m1", "m2"):
        await service.GrantPoints(
            pb.GrantPointsRequest(member_id=member, amount=30, reason="gift"), metadata=ADMIN
        )
        await service.DeductPoints(
            pb.DeductPointsRequest(member_id=member, amount=10, reason="fix"), metadata=ADMIN
        )
    answer = await service.VerifyLedger(pb.VerifyLedgerRequest(), metadata=ADMIN)
    assert answer.ok
    assert (answer.accounts_checked, answer.entries_checked) == (2, 4)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.VerifyLedger(pb.VerifyLedgerRequest(), metadata=metadata("m1"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_tampering_with_a_stored_entry_is_reported_by_verify_ledger(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    for amount in (10, 20, 30):
        await service.GrantPoints(
            pb.GrantPointsRequest(member_id="m1", amount=amount, reason="gift"), metadata=ADMIN
        )
    second = (await entries(rewards, "m1"))[1]
    # Someone with superuser rights switches the guard off and edits history.
    async with rewards.runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute("alter table ledger_entries disable trigger user")
        await conn.execute(
            "update ledger_entries set reason = 'tampered' where id = $1", second["id"]
        )
        await conn.execute("alter table ledger_entries enable trigger user")
    answer = await service.VerifyLedger(pb.VerifyLedgerRequest(member_id="m1"), metadata=ADMIN)
    assert not answer.ok
    assert answer.first_mismatch.entry_id == str(second["id"])
    assert answer.first_mismatch.problem == "hash"


async def test_a_balance_edited_in_sql_is_reported_by_verify_ledger(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    await service.GrantPoints(
        pb.GrantPointsRequest(member_id="m1", amount=10, reason="gift"), metadata=ADMIN
    )
    await rewards.runtime.pool.execute("update accounts set balance = 1000 where member_id = 'm1'")
    answer = await service.VerifyLedger(pb.VerifyLedgerRequest(), metadata=ADMIN)
    assert not answer.ok
    mismatch = answer.first_mismatch
    assert (mismatch.member_id, mismatch.problem, mismatch.expected, mismatch.actual) == (
        "m1",
        "account_balance",
        "10",
        "1000",
    )


async def test_the_database_refuses_a_second_reward_for_the_same_key(
    rewards: RunningService,
) -> None:
    await rewards_stub(rewards).GrantPoints(
        pb.GrantPointsRequest(member_id="m1", amount=5, reason="gift", request_id="once"),
        metadata=ADMIN,
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await rewards.runtime.pool.execute(
            """
            insert into ledger_entries
                (id, member_id, seq, amount, balance_after, kind, reason, source, rule_id,
                 rule_version, actor_id, award_key, occurred_at, created_at, hash)
            select gen_random_uuid(), member_id, seq + 1, amount, balance_after + amount, kind,
                   reason, source, rule_id, rule_version, actor_id, award_key, occurred_at,
                   created_at, hash
            from ledger_entries
            """
        )


async def test_a_deduction_reusing_a_grants_request_id_is_its_own_entry(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    await service.GrantPoints(
        pb.GrantPointsRequest(member_id="m1", amount=9, reason="gift", request_id="same"),
        metadata=ADMIN,
    )
    deducted = await service.DeductPoints(
        pb.DeductPointsRequest(member_id="m1", amount=4, reason="fix", request_id="same"),
        metadata=ADMIN,
    )
    assert deducted.entry.kind == pb.ENTRY_KIND_DEDUCTION
    assert deducted.account.balance == 5
