"""The tier → weight policy (admins change it) and voiding a spam account's
votes (PMs do it)."""

from __future__ import annotations

import grpc
from cocreate.events.v1 import votes_events_pb2 as events_pb
from cocreate.votes.v1 import votes_service_pb2 as pb

from tests.support import Platform, error_reason, metadata, violated_fields
from tests.votes import feed

ADMIN = metadata("admin-1", "admin")
PM = metadata("pm-1", "pm")


async def test_the_default_policy_is_newcomer_1_member_2_core_3_honorary_5(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")

    answer = await feed.votes(svc).GetWeightPolicy(
        pb.GetWeightPolicyRequest(), metadata=metadata("m1")
    )

    assert dict(answer.policy.weights) == {"newcomer": 1, "member": 2, "core": 3, "honorary": 5}
    assert answer.policy.lowest_tier == "newcomer"


async def test_only_admins_change_the_policy(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    request = pb.UpdateWeightPolicyRequest(weights={"newcomer": 9})

    for caller in (metadata("m1"), PM):
        await feed.expect_error(
            client.UpdateWeightPolicy(request, metadata=caller), grpc.StatusCode.PERMISSION_DENIED
        )
    answer = await client.GetWeightPolicy(pb.GetWeightPolicyRequest(), metadata=ADMIN)
    assert answer.policy.weights["newcomer"] == 1


async def test_a_bad_policy_is_invalid_and_changes_nothing(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)

    for weights, fields in (
        ({}, {"weights"}),
        ({"newcomer": 0}, {"weights['newcomer']"}),
        ({"core": 1001, "": 1}, {"weights['core']", "weights['']"}),
    ):
        error = await feed.expect_error(
            client.UpdateWeightPolicy(
                pb.UpdateWeightPolicyRequest(weights=weights), metadata=ADMIN
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert violated_fields(error) == fields
    answer = await client.GetWeightPolicy(pb.GetWeightPolicyRequest(), metadata=ADMIN)
    assert answer.policy.version == 1


async def test_a_new_policy_reweights_votes_on_open_ideas_and_new_casts(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "open", "shipped", "later")
    await feed.cast(client, "m1", "open")
    await feed.cast(client, "m1", "shipped")
    await feed.close(svc, "shipped")

    answer = await client.UpdateWeightPolicy(
        pb.UpdateWeightPolicyRequest(
            weights={"newcomer": 2, "member": 4, "core": 6, "honorary": 10}, request_id="p-1"
        ),
        metadata=ADMIN,
    )

    assert answer.reweighted_vote_count == 1
    assert answer.policy.version == 2
    await feed.tally_settles(client, "open", score=2, voters=1)
    await feed.folded(svc)
    assert (await feed.tally(client, "shipped")).weighted_score == 1
    assert (await feed.cast(client, "m2", "later")).weight == 2
    replayed = await client.UpdateWeightPolicy(
        pb.UpdateWeightPolicyRequest(weights={"newcomer": 7}, request_id="p-1"), metadata=ADMIN
    )
    assert replayed == answer


async def test_a_pm_voids_a_spam_accounts_votes_and_the_tallies_are_corrected(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "a", "b")
    for idea_id in ("a", "b"):
        await feed.cast(client, "spammer", idea_id)
        await feed.cast(client, "honest", idea_id)

    await feed.expect_error(
        client.VoidMemberVotes(
            pb.VoidMemberVotesRequest(member_id="spammer"), metadata=metadata("honest")
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    answer = await client.VoidMemberVotes(
        pb.VoidMemberVotesRequest(member_id="spammer", reason="sock puppet ring"), metadata=PM
    )

    assert answer.voided_vote_count == 2
    assert sorted(answer.idea_ids) == ["a", "b"]
    for idea_id in ("a", "b"):
        await feed.tally_settles(client, idea_id, score=1, voters=1)
    record = await svc.runtime.pool.fetchrow("select * from vote_voids")
    assert (record["member_id"], record["actor_id"], record["reason"]) == (
        "spammer",
        "pm-1",
        "sock puppet ring",
    )
    history = await client.ListVoteHistory(pb.ListVoteHistoryRequest(idea_id="a"), metadata=PM)
    voided = [e for e in history.entries if e.cause == pb.VOTE_CAUSE_VOID]
    assert [(e.member_id, e.actor_id, e.note) for e in voided] == [
        ("spammer", "pm-1", "sock puppet ring")
    ]
    retracts = await feed.outbox_events(
        svc, "cocreate.votes.vote.retracted", events_pb.VoteRetracted
    )
    assert {(r.idea_id, r.reason) for r in retracts} == {
        ("a", events_pb.VOTE_CHANGE_REASON_VOID),
        ("b", events_pb.VOTE_CHANGE_REASON_VOID),
    }


async def test_an_outdated_expected_version_is_aborted_and_changes_nothing(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "open")
    await feed.cast(client, "m1", "open")

    error = await feed.expect_error(
        client.UpdateWeightPolicy(
            pb.UpdateWeightPolicyRequest(
                weights={"newcomer": 7}, expected_version=5, request_id="stale"
            ),
            metadata=ADMIN,
        ),
        grpc.StatusCode.ABORTED,
    )

    assert error_reason(error) == "POLICY_VERSION_MISMATCH"
    answer = await client.GetWeightPolicy(pb.GetWeightPolicyRequest(), metadata=ADMIN)
    assert answer.policy.version == 1
    assert dict(answer.policy.weights) == {"newcomer": 1, "member": 2, "core": 3, "honorary": 5}
    weight = await svc.runtime.pool.fetchval("select weight from votes where member_id = 'm1'")
    assert weight == 1


async def test_a_matching_expected_version_is_applied_once(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    request = pb.UpdateWeightPolicyRequest(weights={"newcomer": 4, "core": 8}, expected_version=1)

    answer = await client.UpdateWeightPolicy(request, metadata=ADMIN)

    assert answer.policy.version == 2
    assert dict(answer.policy.weights) == {"newcomer": 4, "core": 8}
    error = await feed.expect_error(
        client.UpdateWeightPolicy(request, metadata=ADMIN), grpc.StatusCode.ABORTED
    )
    assert error_reason(error) == "POLICY_VERSION_MISMATCH"
    read = await client.GetWeightPolicy(pb.GetWeightPolicyRequest(), metadata=ADMIN)
    assert read.policy == answer.policy
