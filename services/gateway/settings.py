"""The gateway's settings, from environment variables with documented defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.kit.config import DEFAULT_PORTS, ConfigError

# The services behind the gateway, by the second part of their proto package.
UPSTREAMS = ("ideas", "votes", "rewards")


@dataclass(frozen=True)
class Settings:
    listen_addr: str = f"127.0.0.1:{DEFAULT_PORTS['gateway']}"
    # Upstream gRPC address per service (ideas, votes, rewards).
    targets: Mapping[str, str] = field(
        default_factory=lambda: {s: f"127.0.0.1:{DEFAULT_PORTS[s]}" for s in UPSTREAMS}
    )
    max_body_bytes: int = 1024 * 1024
    max_batch: int = 100
    # Messages of a server-streaming method collected into one /rpc answer.
    max_stream_items: int = 10_000
    # Deadline of one unary upstream call, and of a whole server-streaming call.
    deadline_seconds: float = 10.0
    stream_deadline_seconds: float = 300.0
    # Origins allowed to call from a browser; "*" allows any; empty: no CORS headers.
    cors_origins: tuple[str, ...] = ()


def upstream_target(env: Mapping[str, str], service: str) -> str:
    """Where `service` answers gRPC: COCREATE_<SVC>_TARGET, else the address it
    listens on (COCREATE_<SVC>_ADDR, as `make run` sets it), else its default port."""
    target = env.get(f"COCREATE_{service.upper()}_TARGET")
    if target:
        return target
    # The address the service listens on (make run sets it) is where it can be reached.
    listen = env.get(f"COCREATE_{service.upper()}_ADDR")
    if listen:
        host, _, port = listen.rpartition(":")
        return f"127.0.0.1:{port}" if host in ("", "0.0.0.0", "[::]") else listen
    return f"127.0.0.1:{DEFAULT_PORTS[service]}"


def _number(
    env: Mapping[str, str], name: str, default: float, kind: type[float] | type[int]
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    origins = tuple(
        o.strip() for o in env.get("COCREATE_GATEWAY_CORS_ORIGINS", "").split(",") if o.strip()
    )
    return Settings(
        listen_addr=env.get("COCREATE_GATEWAY_ADDR", Settings.listen_addr),
        targets={s: upstream_target(env, s) for s in UPSTREAMS},
        max_body_bytes=int(
            _number(env, "COCREATE_GATEWAY_MAX_BODY_BYTES", Settings.max_body_bytes, int)
        ),
        max_batch=int(_number(env, "COCREATE_GATEWAY_MAX_BATCH", Settings.max_batch, int)),
        max_stream_items=int(
            _number(env, "COCREATE_GATEWAY_MAX_STREAM_ITEMS", Settings.max_stream_items, int)
        ),
        deadline_seconds=_number(
            env, "COCREATE_GATEWAY_DEADLINE_SECONDS", Settings.deadline_seconds, float
        ),
        stream_deadline_seconds=_number(
            env, "COCREATE_GATEWAY_STREAM_DEADLINE_SECONDS", Settings.stream_deadline_seconds, float
        ),
        cors_origins=origins,
    )
