"""Configuration from environment variables, with documented defaults.

Every setting a service reads is declared here or through `Config.get_int` /
`Config.get_float` so the README's configuration table has one source.
A required setting that is missing stops the service at start with its name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

# The secret `make run` and the tests use. `cocreate token` refuses to mint
# tokens when the configured secret is anything else.
DEV_JWT_SECRET = "cocreate-development-secret-not-for-production"

DEFAULT_PORTS = {"ideas": 50051, "votes": 50052, "rewards": 50053, "gateway": 8080}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Config:
    service: str
    database_url: str
    nats_url: str
    listen_addr: str
    jwt_secret: str
    stream: str = "COCREATE"
    stream_replicas: int = 1
    relay_poll_seconds: float = 1.0
    consumer_max_deliver: int = 5
    shutdown_grace_seconds: float = 10.0
    max_pending_calls: int = 10000
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def get_int(self, name: str, default: int) -> int:
        return _parse(self.env, name, default, int)

    def get_float(self, name: str, default: float) -> float:
        return _parse(self.env, name, default, float)

    def get_str(self, name: str, default: str) -> str:
        return self.env.get(name, default)


T = TypeVar("T", int, float)


def _parse(env: Mapping[str, str], name: str, default: T, kind: type[T]) -> T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def load(service: str, env: Mapping[str, str] | None = None) -> Config:
    """Read the settings of one service (ideas, votes, rewards)."""
    env = dict(os.environ if env is None else env)
    prefix = f"COCREATE_{service.upper()}_"
    database_url = env.get(prefix + "DATABASE_URL", "")
    if not database_url:
        raise ConfigError(f"{prefix}DATABASE_URL is required (a postgresql:// URL)")
    base = Config(
        service=service,
        database_url=database_url,
        nats_url=env.get("COCREATE_NATS_URL", "nats://127.0.0.1:4222"),
        listen_addr=env.get(prefix + "ADDR", f"127.0.0.1:{DEFAULT_PORTS.get(service, 0)}"),
        jwt_secret=env.get("COCREATE_JWT_SECRET", DEV_JWT_SECRET),
        stream=env.get("COCREATE_STREAM", "COCREATE"),
        env=env,
    )
    return Config(
        service=base.service,
        database_url=base.database_url,
        nats_url=base.nats_url,
        listen_addr=base.listen_addr,
        jwt_secret=base.jwt_secret,
        stream=base.stream,
        stream_replicas=base.get_int("COCREATE_STREAM_REPLICAS", 1),
        relay_poll_seconds=base.get_float("COCREATE_RELAY_POLL_SECONDS", 1.0),
        consumer_max_deliver=base.get_int("COCREATE_CONSUMER_MAX_DELIVER", 5),
        shutdown_grace_seconds=base.get_float("COCREATE_SHUTDOWN_GRACE_SECONDS", 10.0),
        max_pending_calls=base.get_int("COCREATE_MAX_PENDING_CALLS", 10000),
        env=env,
    )
