"""The rewards service's wiring: servicer, migrations and consumers.

Settings: COCREATE_REWARDS_TIER_MEMBER_POINTS (default 100) and
COCREATE_REWARDS_TIER_CORE_POINTS (default 1000), the lifetime points the
member and core tiers start at.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from cocreate.rewards.v1 import rewards_service_pb2, rewards_service_pb2_grpc

from services.kit import inbox
from services.kit.config import Config, ConfigError
from services.kit.server import Runtime, ServiceDefinition
from services.rewards.api import RewardsServicer
from services.rewards.domain import TierThresholds
from services.rewards.handlers import (
    SHIP_WAITS_FOR_VOTES_SECONDS,
    VOTES_CONSUMER,
    RewardHandlers,
)


def tier_thresholds(config: Config) -> TierThresholds:
    defaults = TierThresholds()
    try:
        return TierThresholds(
            member=config.get_int("COCREATE_REWARDS_TIER_MEMBER_POINTS", defaults.member),
            core=config.get_int("COCREATE_REWARDS_TIER_CORE_POINTS", defaults.core),
        )
    except ValueError as exc:
        raise ConfigError(f"COCREATE_REWARDS_TIER_*_POINTS: {exc}") from None


def _register(server: grpc.aio.Server, runtime: Runtime) -> None:
    rewards_service_pb2_grpc.add_RewardsServiceServicer_to_server(
        RewardsServicer(runtime, tier_thresholds(runtime.config)), server
    )


def _consumers(runtime: Runtime) -> Sequence[inbox.InboxConsumer]:
    async def votes_heard() -> bool:
        return await inbox.applied_all_published(
            runtime.js, runtime.config.stream, VOTES_CONSUMER, within=SHIP_WAITS_FOR_VOTES_SECONDS
        )

    handlers = RewardHandlers(
        runtime.outbox, tier_thresholds(runtime.config), votes_heard=votes_heard
    )
    return handlers.consumers()


DEFINITION = ServiceDefinition(
    name="rewards",
    service_names=[rewards_service_pb2.DESCRIPTOR.services_by_name["RewardsService"].full_name],
    register=_register,
    migrations=Path(__file__).parent / "migrations",
    consumers=_consumers,
)
