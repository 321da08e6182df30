"""Remembered answers are keyed `Service.Method`, derived from the request's
RPC, and answers remembered under the old bare method names still replay
after the upgrade that renamed them."""

from __future__ import annotations

import shutil
from pathlib import Path

from cocreate.ideas.v1 import ideas_service_pb2, release_service_pb2
from cocreate.rewards.v1 import rewards_service_pb2
from cocreate.votes.v1 import notification_service_pb2, votes_service_pb2
from google.protobuf import message_factory

from services.ideas.service import DEFINITION as IDEAS
from services.kit import idempotency
from services.kit.db import KIT_MIGRATIONS, create_pool, migrate
from services.rewards.service import DEFINITION as REWARDS
from services.votes.service import DEFINITION as VOTES
from services.votes.writer import Kind
from tests.support import Platform

SERVICES = [
    ideas_service_pb2.DESCRIPTOR.services_by_name["IdeaService"],
    release_service_pb2.DESCRIPTOR.services_by_name["ReleaseService"],
    votes_service_pb2.DESCRIPTOR.services_by_name["VoteService"],
    notification_service_pb2.DESCRIPTOR.services_by_name["NotificationService"],
    rewards_service_pb2.DESCRIPTOR.services_by_name["RewardsService"],
]


def test_every_mutation_is_keyed_by_its_service_and_method() -> None:
    mutations = idempotency.Mutations(None, *SERVICES)  # keys only: no pool needed
    keyed = 0
    for service in SERVICES:
        for method in service.methods:
            if "request_id" in method.input_type.fields_by_name:
                request = message_factory.GetMessageClass(method.input_type)()
                assert mutations.key_of(request) == f"{service.name}.{method.name}"
                keyed += 1
    assert keyed >= 30
    # The vote writer remembers casts and retracts itself, under the same keys.
    assert Kind.CAST.value == mutations.key_of(votes_service_pb2.CastVoteRequest())
    assert Kind.RETRACT.value == mutations.key_of(votes_service_pb2.RetractVoteRequest())


async def test_answers_remembered_under_the_old_names_are_renamed(
    platform: Platform, tmp_path: Path
) -> None:
    cases = [
        (IDEAS, "SubmitIdea", "IdeaService.SubmitIdea"),
        (IDEAS, "ReleaseService.CutRelease", "ReleaseService.CutRelease"),
        (VOTES, "CastVote", "VoteService.CastVote"),
        (
            VOTES,
            "NotificationService.MarkNotificationsRead",
            "NotificationService.MarkNotificationsRead",
        ),
        (REWARDS, "GrantPoints", "RewardsService.GrantPoints"),
    ]
    for definition in (IDEAS, VOTES, REWARDS):
        assert definition.migrations is not None
        folder = definition.migrations
        before = tmp_path / definition.name
        before.mkdir()
        for path in sorted(folder.glob("*.sql")):
            if not path.name.endswith("_idempotency_keys.sql"):
                shutil.copy(path, before / path.name)
        pool = await create_pool(platform.database_url(f"keys_{definition.name}"))
        try:
            await migrate(pool, [("kit", KIT_MIGRATIONS), (definition.name, before)])
            olds = [(old, new) for d, old, new in cases if d is definition]
            for old, _ in olds:
                await pool.execute(
                    "insert into idempotent_requests (caller, method, request_id, response) "
                    "values ('m-1', $1, 'r-1', '')",
                    old,
                )
            applied = await migrate(pool, [("kit", KIT_MIGRATIONS), (definition.name, folder)])
            assert [name for name in applied if "idempotency_keys" in name], applied
            rows = await pool.fetch("select method from idempotent_requests")
            stored = {row["method"] for row in rows}
            assert stored == {new for _, new in olds}
        finally:
            await pool.close()
