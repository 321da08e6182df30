"""SQL for the votes service's tables. Every function runs on the caller's
connection, inside the caller's transaction. By area:

- locks.py: the advisory locks writers take, and their keys
- policy.py: the tier → weight policy, and re-weighting votes to it
- replicas.py: ideas and member tiers as the other services report them
- votes.py: vote rows and their history, one at a time and in batches
- moderation.py: voids and vote bans
- tallies.py: marks of tallies to fold again, the fold's sums, stored tallies
- lists.py: the pages of the list calls
- record.py: Record, a row as asyncpg returns it

Callers use them through this package (`store.get_policy`).

Locks: writers take transaction-level advisory locks in one order — the
weight policy, then ideas (sorted), then the member — shared where they only
need the thing to stay as read (a cast: the policy, the idea's state, the
member's tier) and exclusive where they change it (a policy update, a status
change or merge, a tier change, a void or a ban's lift). Shared locks do not
wait for each other, so thousands of casts on one idea proceed side by side.
A merge holds its voters' member rows (not one advisory lock per voter, which
would fill the lock table on a popular idea), so a tier change of one of them
waits for it. Vote rows come last: a cast locks only its own (idea, member)
row; the few bulk writers lock theirs in (idea_id, member_id) order.
"""

from __future__ import annotations

from services.votes.store.lists import list_history, list_member_votes, list_supporters
from services.votes.store.locks import (
    idea_key,
    lock_ideas,
    lock_keys,
    lock_member,
    lock_policy,
    member_key,
    policy_key,
)
from services.votes.store.moderation import is_vote_banned, record_void, record_vote_ban
from services.votes.store.policy import (
    StoredPolicy,
    get_policy,
    policy_of,
    replace_policy,
    reweight_to_policy,
)
from services.votes.store.record import Record
from services.votes.store.replicas import (
    ensure_idea,
    final_target,
    get_idea,
    get_member_tier,
    hold_members,
    mark_merged,
    set_hidden,
    upsert_idea,
    upsert_member_tier,
)
from services.votes.store.tallies import (
    TALLY_DIRTY_CHANNEL,
    get_tallies,
    mark_dirty,
    oldest_mark_age_seconds,
    record_fold,
    recount,
    save_tallies,
    stored_tallies,
    take_marks,
    tier_counts,
)
from services.votes.store.votes import (
    CastCount,
    HistoryEntry,
    activate_vote,
    activation,
    active_votes_of_ideas,
    active_votes_of_member,
    add_history,
    deactivate_vote,
    deactivation,
    get_vote,
    read_for_vote_changes,
    set_vote_weight,
    vote_change_rows,
    voters_of,
)

__all__ = [
    "TALLY_DIRTY_CHANNEL",
    "CastCount",
    "HistoryEntry",
    "Record",
    "StoredPolicy",
    "activate_vote",
    "activation",
    "active_votes_of_ideas",
    "active_votes_of_member",
    "add_history",
    "deactivate_vote",
    "deactivation",
    "ensure_idea",
    "final_target",
    "get_idea",
    "get_member_tier",
    "get_policy",
    "get_tallies",
    "get_vote",
    "hold_members",
    "idea_key",
    "is_vote_banned",
    "list_history",
    "list_member_votes",
    "list_supporters",
    "lock_ideas",
    "lock_keys",
    "lock_member",
    "lock_policy",
    "mark_dirty",
    "mark_merged",
    "member_key",
    "oldest_mark_age_seconds",
    "policy_key",
    "policy_of",
    "read_for_vote_changes",
    "record_fold",
    "record_void",
    "record_vote_ban",
    "recount",
    "replace_policy",
    "reweight_to_policy",
    "save_tallies",
    "set_hidden",
    "set_vote_weight",
    "stored_tallies",
    "take_marks",
    "tier_counts",
    "upsert_idea",
    "upsert_member_tier",
    "vote_change_rows",
    "voters_of",
]
