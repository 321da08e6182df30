"""What must hold once a crash schedule is over and the platform is quiet,
checked through the API and directly in each service's database. Each
function returns the violations it found, in words; none is the goal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
import nats
from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.rewards.v1 import rewards_service_pb2 as rewards_pb
from cocreate.votes.v1 import notification_service_pb2 as notification_pb

from services.kit.config import nats_servers
from tests.faults.harness import SERVICES
from tests.faults.load import ADMIN, Clients, Record

STREAM = "COCREATE"
SHIPPED = status.IDEA_STATUS_SHIPPED


class Broker(Protocol):
    @property
    def url(self) -> str: ...  # one server, or a cluster's nodes separated by commas


class Stack(Protocol):
    """What the checker needs of a running platform: its broker and databases
    (a CrashStack of processes, or services started in the test's loop)."""

    @property
    def nats(self) -> Broker: ...

    @property
    def database_urls(self) -> dict[str, str]: ...


class Databases:
    def __init__(self, connections: dict[str, asyncpg.Connection]) -> None:
        self.ideas = connections["ideas"]
        self.votes = connections["votes"]
        self.rewards = connections["rewards"]
        self.all = connections

    @classmethod
    async def open(cls, stack: Stack) -> Databases:
        return cls({name: await asyncpg.connect(stack.database_urls[name]) for name in SERVICES})

    async def close(self) -> None:
        for conn in self.all.values():
            await conn.close()


async def connect(stack: Stack) -> nats.NATS:
    return await nats.connect(servers=nats_servers(stack.nats.url))


async def pending_work(stack: Stack, dbs: Databases) -> list[str]:
    """What is still in flight: unpublished events, undelivered or unacked
    events, unfolded tally marks. Empty when the platform is quiet."""
    left = []
    for name, conn in dbs.all.items():
        unpublished = await conn.fetchval("select count(*) from outbox where published_at is null")
        if unpublished:
            left.append(f"{name}: {unpublished} outbox rows unpublished")
    dirty = await dbs.votes.fetchval("select count(*) from tally_dirty")
    if dirty:
        left.append(f"votes: {dirty} tally marks not folded")
    nc = await connect(stack)
    try:
        js = nc.jetstream()
        for info in await js.consumers_info(STREAM):
            if info.num_pending or info.num_ack_pending:
                left.append(
                    f"consumer {info.name}: {info.num_pending} pending, "
                    f"{info.num_ack_pending} unacknowledged"
                )
    finally:
        await nc.close()
    return left


async def wait_for_quiet(
    stack: Stack, dbs: Databases, within: float = 120.0, quiet_for: float = 1.0
) -> None:
    deadline = time.monotonic() + within
    quiet_since: float | None = None
    while True:
        left = await pending_work(stack, dbs)
        if left:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > quiet_for:  # quiet, and still quiet a moment later
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not quiet within {within}s: {left}")
        await asyncio.sleep(min(0.2, quiet_for / 3))


async def check_all(stack: Stack, dbs: Databases, clients: Clients) -> list[str]:
    checks: list[Callable[[], Awaitable[list[str]]]] = [
        lambda: answered_ok_is_stored(dbs, clients.record),
        lambda: votes_and_tallies(dbs),
        lambda: ledger(dbs, clients),
        lambda: redemptions_and_releases(dbs, clients.record),
        lambda: events_delivered(stack, dbs),
        lambda: supporters_notified(dbs),
    ]
    found: list[str] = []
    for check in checks:
        found += await check()
    found += [f"a call answered {answer}" for answer in clients.record.forbidden]
    return found


async def answered_ok_is_stored(dbs: Databases, record: Record) -> list[str]:
    found = []
    ideas = {str(r["id"]): r for r in await dbs.ideas.fetch("select * from ideas")}
    for idea_id in record.ideas:
        if idea_id not in ideas:
            found.append(f"idea {idea_id} was answered OK but is not stored")
    history = {
        (str(r["idea_id"]), r["new_status"])
        for r in await dbs.ideas.fetch("select idea_id, new_status from idea_history")
    }
    for idea_id, new_status in record.statuses:
        if (idea_id, new_status) not in history:
            found.append(f"status {new_status} of idea {idea_id} was answered OK but not stored")
    for source, _target in record.merges:
        if ideas[source]["merged_into"] is None:
            found.append(f"the merge of {source} was answered OK but is not stored")
    comments = {str(r["id"]) for r in await dbs.ideas.fetch("select id from comments")}
    found += [
        f"comment {c} answered OK is not stored" for c in record.comments if c not in comments
    ]

    # A vote on an idea that took part in a merge may have moved, and been
    # changed again on the target: those are checked by the tallies below.
    merged = {source for source, _ in record.merges} | {target for _, target in record.merges}
    merged |= {i for i, r in ideas.items() if r["merged_into"] is not None}
    merged |= {str(r["merged_into"]) for r in ideas.values() if r["merged_into"] is not None}
    votes = {
        (r["member_id"], r["idea_id"]): r["active"]
        for r in await dbs.votes.fetch("select member_id, idea_id, active from votes")
    }
    for (member, idea_id), cast in record.votes.items():
        if idea_id in merged:
            continue
        if cast and not votes.get((member, idea_id)):
            found.append(f"the cast of {member} on {idea_id} was answered OK but is not active")
        if not cast and votes.get((member, idea_id)):
            found.append(f"the retract of {member} on {idea_id} was answered OK but is active")
    accounts = {r["member_id"]: r for r in await dbs.rewards.fetch("select * from accounts")}
    tiers = {r["member_id"]: r["tier"] for r in await dbs.votes.fetch("select * from members")}
    for member, tier in record.granted.items():
        stored = accounts[member]["granted_tier"] if member in accounts else None
        if (stored or "") != tier:
            found.append(f"{member}'s granted tier is {stored!r}, answered {tier!r}")
        if member in accounts and (tiers.get(member) or "newcomer") != accounts[member]["tier"]:
            found.append(
                f"votes counts {member} at {tiers.get(member)!r}, rewards says "
                f"{accounts[member]['tier']!r}"
            )
    return found


async def votes_and_tallies(dbs: Databases) -> list[str]:
    found = []
    doubled = await dbs.votes.fetchval(
        "select count(*) from (select 1 from votes where active "
        "group by idea_id, member_id having count(*) > 1) d"
    )
    if doubled:
        found.append(f"{doubled} (member, idea) pairs have more than one active vote")
    recount = {
        r["idea_id"]: (r["score"], r["voters"])
        for r in await dbs.votes.fetch(
            "select idea_id, sum(weight) as score, count(*) as voters from votes "
            "where active group by idea_id"
        )
    }
    tallies = {
        r["idea_id"]: (r["weighted_score"], r["voter_count"])
        for r in await dbs.votes.fetch("select * from tallies")
    }
    for idea_id in set(recount) | set(tallies):
        if recount.get(idea_id, (0, 0)) != tallies.get(idea_id, (0, 0)):
            found.append(
                f"tally of {idea_id} is {tallies.get(idea_id)}, the recount {recount.get(idea_id)}"
            )
    weights = await dbs.votes.fetchval("select weights from weight_policy")
    wrong = await dbs.votes.fetch(
        """
        select v.idea_id, v.member_id, v.weight from votes v
        join ideas i using (idea_id) left join members m using (member_id)
        where v.active and i.open and v.weight <> coalesce(
            ($1::jsonb ->> coalesce(nullif(m.tier, ''), 'newcomer'))::bigint, 1)
        """,
        weights,
    )
    found += [f"vote {dict(r)} does not weigh its member's tier" for r in wrong]
    read_model = {
        str(r["idea_id"]): (r["weighted_score"], r["voter_count"])
        for r in await dbs.ideas.fetch(
            "select idea_id, weighted_score, voter_count from idea_tallies"
        )
    }
    for idea_id, model in read_model.items():
        if model != tallies.get(idea_id, (0, 0)):
            found.append(f"ideas shows {idea_id} at {model}, votes at {tallies.get(idea_id)}")
    return found


async def ledger(dbs: Databases, clients: Clients) -> list[str]:
    found = []
    twice = await dbs.rewards.fetch(
        "select member_id, rule_id, award_key, count(*) as n from ledger_entries "
        "where rule_id <> '' group by 1, 2, 3 having count(*) > 1"
    )
    found += [
        f"reward paid {r['n']} times: {r['member_id']} {r['rule_id']} {r['award_key']}"
        for r in twice
    ]
    off = await dbs.rewards.fetch(
        "select a.member_id, a.balance, coalesce(sum(e.amount), 0) as total "
        "from accounts a left join ledger_entries e using (member_id) "
        "group by a.member_id, a.balance having a.balance <> coalesce(sum(e.amount), 0) "
        "or a.balance < 0"
    )
    found += [
        f"balance of {r['member_id']} is {r['balance']}, its entries sum to {r['total']}"
        for r in off
    ]
    verdict = await clients.call(
        clients.rewards.VerifyLedger, rewards_pb.VerifyLedgerRequest(), ADMIN
    )
    if not getattr(verdict, "ok", False):
        found.append(f"VerifyLedger: {verdict}")
    # Authors and the supporters of each shipped idea at its shipping are paid.
    shipped = {
        str(r["idea_id"]): r["occurred_at"]
        for r in await dbs.ideas.fetch(
            "select idea_id, min(occurred_at) as occurred_at from idea_history "
            "where new_status = $1 group by idea_id",
            SHIPPED,
        )
    }
    paid = {
        (r["member_id"], r["rule_id"], r["award_key"])
        for r in await dbs.rewards.fetch("select member_id, rule_id, award_key from ledger_entries")
    }
    authors = {
        str(r["id"]): r["author_id"]
        for r in await dbs.ideas.fetch("select id, author_id from ideas")
    }
    for idea_id, shipped_at in shipped.items():
        if (authors[idea_id], "idea_shipped_author", f"idea:{idea_id}") not in paid:
            found.append(f"the author of shipped idea {idea_id} was not paid")
        supporters = await dbs.votes.fetch(
            "select member_id from votes where idea_id = $1 and active and cast_at <= $2",
            idea_id,
            shipped_at,
        )
        for row in supporters:
            if (row["member_id"], "idea_shipped_supporter", f"idea:{idea_id}") not in paid:
                found.append(f"supporter {row['member_id']} of shipped {idea_id} was not paid")
    return found


async def redemptions_and_releases(dbs: Databases, record: Record) -> list[str]:
    found = []
    entries = {str(r["id"]) for r in await dbs.rewards.fetch("select id from ledger_entries")}
    found += [
        f"grant {e} answered OK is not in the ledger" for e in record.points if e not in entries
    ]
    stored = {
        str(r["id"]): r
        for r in await dbs.rewards.fetch(
            "select r.id, r.entry_id, e.amount, r.price from redemptions r "
            "left join ledger_entries e on e.id = r.entry_id"
        )
    }
    found += [
        f"redemption {r} answered OK is not stored" for r in record.redemptions if r not in stored
    ]
    found += [
        f"redemption {r['id']} was paid {r['amount']}, its price is {r['price']}"
        for r in stored.values()
        if r["amount"] != -r["price"]
    ]
    if record.item_id:
        stock = await dbs.rewards.fetchval(
            "select stock from catalogue_items where id = $1", record.item_id
        )
        redeemed = await dbs.rewards.fetchval(
            "select count(*) from redemptions where item_id = $1", record.item_id
        )
        if stock != record.item_stock - redeemed:
            found.append(f"the item's stock is {stock} after {redeemed} of {record.item_stock}")
    shipped = {
        str(r["idea_id"])
        for r in await dbs.ideas.fetch(
            "select idea_id from idea_history where new_status = $1", SHIPPED
        )
    }
    releases = {str(r["id"]) for r in await dbs.ideas.fetch("select id from releases")}
    for release, ideas in record.releases.items():
        if release not in releases:
            found.append(f"release {release} answered OK is not stored")
        found += [
            f"idea {i} of release {release} is not shipped" for i in ideas if i not in shipped
        ]
    return found


async def events_delivered(stack: Stack, dbs: Databases) -> list[str]:
    found = await pending_work(stack, dbs)
    outbox_rows = 0
    for name, conn in dbs.all.items():
        outbox_rows += await conn.fetchval("select count(*) from outbox")
        parked = await conn.fetch("select consumer, event_type, error from dead_letters")
        found += [f"{name} parked {dict(r)}" for r in parked]
    nc = await connect(stack)
    try:
        info = await nc.jetstream().stream_info(STREAM)
    finally:
        await nc.close()
    if info.state.messages != outbox_rows:
        found.append(f"the stream holds {info.state.messages} events, the outboxes {outbox_rows}")
    return found


async def supporters_notified(dbs: Databases) -> list[str]:
    """Every member supporting a shipped idea is told, once."""
    rows = await dbs.votes.fetch(
        """
        select v.member_id, v.idea_id, count(n.id) as told
        from votes v join ideas i using (idea_id)
        left join notifications n on n.member_id = v.member_id and n.idea_id = v.idea_id
             and n.kind = $1 and n.new_status = $2
        where v.active and i.status = $2
        group by v.member_id, v.idea_id having count(n.id) <> 1
        """,
        notification_pb.NOTIFICATION_KIND_IDEA_STATUS_CHANGED,
        SHIPPED,
    )
    return [
        f"{r['member_id']} was told {r['told']} times that {r['idea_id']} shipped" for r in rows
    ]


def summary(record: Record, seconds: float) -> dict[str, Any]:
    return {
        "calls": record.calls,
        "ok": record.ok,
        "gave_up": record.gave_up,
        "ideas": len(record.ideas),
        "votes": len(record.votes),
        "statuses": len(record.statuses),
        "merges": len(record.merges),
        "comments": len(record.comments),
        "tier_changes": len(record.granted),
        "point_grants": len(record.points),
        "redemptions": len(record.redemptions),
        "releases": len(record.releases),
        "released_ideas": sum(len(i) for i in record.releases.values()),
        "kills": record.kills,
        "seconds": round(seconds, 1),
    }


# --- replicas: two processes of each service share its database and consumers


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, `>` the rest (one or more)."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for n, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > n
        if n >= len(tokens) or token not in ("*", tokens[n]):
            return False
    return len(wanted) == len(tokens)


async def handled_once(stack: Stack, dbs: Databases) -> list[str]:
    """Each event was handled once per consumer: the inbox of each durable
    consumer holds one row per event of the stream its subjects take (the
    primary key forbids a second row; a missing one is an event never
    handled), and only events some outbox published."""
    found = []
    nc = await connect(stack)
    try:
        js = nc.jetstream()
        counts = (await js.stream_info(STREAM, subjects_filter=">")).state.subjects or {}
        filters = {}
        for info in await js.consumers_info(STREAM):
            config = info.config
            filters[info.name] = list(config.filter_subjects or [config.filter_subject or ">"])
    finally:
        await nc.close()
    published: set[Any] = set()
    for conn in dbs.all.values():
        published |= {r["event_id"] for r in await conn.fetch("select event_id from outbox")}
    handled: dict[str, int] = {}
    for name, conn in dbs.all.items():
        for row in await conn.fetch(
            "select consumer, count(*) as n, count(*) filter "
            "(where not (event_id = any($1::uuid[]))) as unknown from inbox group by consumer",
            list(published),
        ):
            handled[row["consumer"]] = row["n"]
            if row["unknown"]:
                found.append(f"{name}'s {row['consumer']} handled {row['unknown']} unknown events")
    for consumer, patterns in filters.items():
        expected = sum(
            n for subject, n in counts.items() if any(subject_matches(p, subject) for p in patterns)
        )
        if handled.get(consumer, 0) != expected:
            found.append(
                f"consumer {consumer} handled {handled.get(consumer, 0)} events "
                f"of the {expected} its subjects took"
            )
    return found


async def every_replica_consumed(dbs: Databases, instances: dict[str, list[str]]) -> list[str]:
    """The replicas of a service share its durable consumers: each of them
    handled some of the events."""
    found = []
    for name, conn in dbs.all.items():
        by = {r["handled_by"] for r in await conn.fetch("select distinct handled_by from inbox")}
        missing = sorted(set(instances[name]) - by)
        if missing:
            found.append(f"{name}: replicas {missing} handled no event (only {sorted(by)})")
    return found


async def one_folder_at_a_time(dbs: Databases) -> list[str]:
    """No two folds of the tallies overlapped in time."""
    overlaps = await dbs.votes.fetch(
        "select a.id as a, a.folded_by as a_by, b.id as b, b.folded_by as b_by "
        "from tally_folds a join tally_folds b on a.id < b.id "
        "and a.started_at < b.finished_at and b.started_at < a.finished_at"
    )
    return [f"folds {r['a']} ({r['a_by']}) and {r['b']} ({r['b_by']}) overlapped" for r in overlaps]


def migrations_applied_once(logs: dict[str, list[str]], applied: dict[str, set[str]]) -> list[str]:
    """Each migration of a service was applied by exactly one of its replicas
    (as their logs say), and every one is recorded. `logs`: service → the log
    lines of its replicas; `applied`: service → the migrations it records."""
    found = []
    for service, lines in logs.items():
        by_file: dict[str, int] = {}
        for line in lines:
            if '"applied migration"' in line:
                migration = json.loads(line)["migration"]
                by_file[migration] = by_file.get(migration, 0) + 1
        found += [
            f"{service}: {migration} was applied {n} times"
            for migration, n in sorted(by_file.items())
            if n != 1
        ]
        found += [
            f"{service}: {migration} is recorded but no replica applied it"
            for migration in sorted(applied[service] - set(by_file))
        ]
    return found
