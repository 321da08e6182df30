"""The gateway's settings from the environment."""

from __future__ import annotations

import pytest

from services.gateway.settings import Settings, load
from services.kit.config import ConfigError


def test_defaults() -> None:
    settings = load({})
    assert settings == Settings()
    assert settings.targets == {
        "ideas": "127.0.0.1:50051",
        "votes": "127.0.0.1:50052",
        "rewards": "127.0.0.1:50053",
    }
    assert settings.listen_addr == "127.0.0.1:8080"


def test_targets_come_from_target_then_listen_address() -> None:
    settings = load(
        {
            "COCREATE_IDEAS_TARGET": "ideas.internal:7000",
            "COCREATE_VOTES_ADDR": "0.0.0.0:6001",
            "COCREATE_REWARDS_ADDR": "10.0.0.5:6002",
        }
    )
    assert settings.targets == {
        "ideas": "ideas.internal:7000",
        "votes": "127.0.0.1:6001",
        "rewards": "10.0.0.5:6002",
    }


def test_limits_and_cors_are_read() -> None:
    settings = load(
        {
            "COCREATE_GATEWAY_ADDR": "0.0.0.0:9000",
            "COCREATE_GATEWAY_MAX_BODY_BYTES": "2048",
            "COCREATE_GATEWAY_MAX_BATCH": "7",
            "COCREATE_GATEWAY_MAX_STREAM_ITEMS": "50",
            "COCREATE_GATEWAY_DEADLINE_SECONDS": "2.5",
            "COCREATE_GATEWAY_STREAM_DEADLINE_SECONDS": "60",
            "COCREATE_GATEWAY_CORS_ORIGINS": "https://a.example, https://b.example",
        }
    )
    assert settings.listen_addr == "0.0.0.0:9000"
    assert (settings.max_body_bytes, settings.max_batch, settings.max_stream_items) == (2048, 7, 50)
    assert (settings.deadline_seconds, settings.stream_deadline_seconds) == (2.5, 60)
    assert settings.cors_origins == ("https://a.example", "https://b.example")


@pytest.mark.parametrize("value", ["many", "0", "-5"])
def test_bad_numbers_name_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match="COCREATE_GATEWAY_MAX_BATCH"):
        load({"COCREATE_GATEWAY_MAX_BATCH": value})
