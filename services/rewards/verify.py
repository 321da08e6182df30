"""VerifyLedger: recompute each account's hash chain and balances from the
stored entries and report the first place they disagree with what is stored."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from cocreate.rewards.v1 import rewards_service_pb2 as pb

from services.rewards import domain, store


def _fields(row: asyncpg.Record) -> domain.EntryFields:
    return domain.EntryFields(
        entry_id=str(row["id"]),
        member_id=row["member_id"],
        seq=row["seq"],
        amount=row["amount"],
        balance_after=row["balance_after"],
        kind=row["kind"],
        reason=row["reason"],
        source=row["source"],
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        actor_id=row["actor_id"],
        award_key=row["award_key"],
        occurred_at=row["occurred_at"],
        created_at=row["created_at"],
    )


async def verify_accounts(
    conn: asyncpg.Connection, member_ids: Sequence[str]
) -> pb.VerifyLedgerResponse:
    response = pb.VerifyLedgerResponse(ok=True)
    for member_id in member_ids:
        account = await store.find_account(conn, member_id)
        assert account is not None
        entries = await store.entries_in_order(conn, member_id)
        response.accounts_checked += 1
        response.entries_checked += len(entries)
        mismatch = _check_account(account, entries)
        if mismatch is not None:
            response.ok = False
            response.first_mismatch.CopyFrom(mismatch)
            break
    return response


def _check_account(
    account: asyncpg.Record, entries: Sequence[asyncpg.Record]
) -> pb.LedgerMismatch | None:
    member_id = account["member_id"]
    previous = domain.chain_seed(member_id, bytes(account["seed"]))
    balance = 0
    lifetime = 0

    def entry_mismatch(
        row: asyncpg.Record, problem: str, expected: object, actual: object
    ) -> pb.LedgerMismatch:
        return pb.LedgerMismatch(
            member_id=member_id,
            entry_id=str(row["id"]),
            sequence=row["seq"],
            problem=problem,
            expected=str(expected),
            actual=str(actual),
        )

    for position, row in enumerate(entries, start=1):
        if row["seq"] != position:
            return entry_mismatch(row, "sequence", position, row["seq"])
        recomputed = domain.entry_hash(previous, _fields(row))
        if recomputed != bytes(row["hash"]):
            return entry_mismatch(row, "hash", recomputed.hex(), bytes(row["hash"]).hex())
        balance += row["amount"]
        if domain.counts_as_lifetime(row["kind"]):
            lifetime += row["amount"]
        if row["balance_after"] != balance:
            return entry_mismatch(row, "balance_after", balance, row["balance_after"])
        if balance < 0:
            return entry_mismatch(row, "negative_balance", ">= 0", balance)
        previous = bytes(row["hash"])

    def account_mismatch(problem: str, expected: object, actual: object) -> pb.LedgerMismatch:
        return pb.LedgerMismatch(
            member_id=member_id, problem=problem, expected=str(expected), actual=str(actual)
        )

    if account["entry_count"] != len(entries):
        return account_mismatch("account_entry_count", len(entries), account["entry_count"])
    if bytes(account["last_hash"]) != previous:
        return account_mismatch(
            "account_last_hash", previous.hex(), bytes(account["last_hash"]).hex()
        )
    if account["balance"] != balance:
        return account_mismatch("account_balance", balance, account["balance"])
    if account["lifetime_points"] != lifetime:
        return account_mismatch("account_lifetime_points", lifetime, account["lifetime_points"])
    return None
