"""Configuration from environment variables, with documented defaults.

Every setting a service reads is declared here or through `Config.get_int` /
`Config.get_float` so the README's configuration table has one source.
A required setting that is missing stops the service at start with its name.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import jwt

from services.kit.auth import TokenPolicy

# Why 25 ms: see outbox.OutboxRelay (the relay's rounds under load).
DEFAULT_RELAY_GATHER_SECONDS = 0.025

# The secret `make run` and the tests use. `cocreate token` refuses to mint
# tokens when the configured secret is anything else, and everything refuses
# it outside development.
DEV_JWT_SECRET = "cocreate-development-secret-not-for-production"

DEVELOPMENT = "development"
PRODUCTION = "production"
ENVIRONMENTS = (DEVELOPMENT, PRODUCTION)
MIN_JWT_SECRET_BYTES = 32
# A day: the longest a token may live in production unless set otherwise.
PRODUCTION_MAX_TTL_SECONDS = 86400

DEFAULT_PORTS = {"ideas": 50051, "votes": 50052, "rewards": 50053, "gateway": 8080}

# What a process of a service runs (COCREATE_ROLE; see `role`).
ROLE_ALL = "all"
ROLE_CALLS = "calls"
ROLE_EVENTS = "events"
ROLES = (ROLE_ALL, ROLE_CALLS, ROLE_EVENTS)


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Config:
    service: str
    database_url: str
    nats_url: str
    listen_addr: str
    jwt_secret: str
    token_policy: TokenPolicy = field(default_factory=TokenPolicy)
    environment: str = PRODUCTION
    stream: str = "COCREATE"
    stream_replicas: int = 1
    relay_poll_seconds: float = 1.0
    relay_gather_seconds: float = DEFAULT_RELAY_GATHER_SECONDS
    consumer_max_deliver: int = 5
    consumer_backoff_seconds: tuple[float, ...] = (0.2, 1.0, 3.0, 10.0, 30.0)
    shutdown_grace_seconds: float = 10.0
    max_pending_calls: int = 10000
    # Which replica this process is (recorded with each event it handles).
    instance: str = ""
    # What this process runs (COCREATE_ROLE): ROLE_ALL, ROLE_CALLS or ROLE_EVENTS.
    role: str = ROLE_ALL
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def serves_calls(self) -> bool:
        """Whether this process answers the service's calls (COCREATE_ROLE)."""
        return self.role != ROLE_EVENTS

    @property
    def does_event_work(self) -> bool:
        """Whether this process relays, consumes and runs the background loops."""
        return self.role != ROLE_CALLS

    @property
    def nats_servers(self) -> list[str]:
        """COCREATE_NATS_URL as a list: one URL, or the nodes of a cluster
        separated by commas. The client connects to any of them and, when
        that node goes away, to another."""
        return nats_servers(self.nats_url)

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


def backoff_seconds(env: Mapping[str, str]) -> tuple[float, ...]:
    """`COCREATE_CONSUMER_BACKOFF_SECONDS`: the delays before an event's 2nd,
    3rd, … delivery, comma-separated (the last repeats)."""
    name = "COCREATE_CONSUMER_BACKOFF_SECONDS"
    raw = env.get(name, "") or "0.2,1,3,10,30"
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        delays = ()
    if not delays or any(not 0 <= delay <= 3600 for delay in delays):
        raise ConfigError(f"{name}={raw!r} must be seconds (0..3600), comma-separated")
    return delays


def environment(env: Mapping[str, str]) -> str:
    """`COCREATE_ENV`: development (make run, the tests) or production (the default)."""
    value = env.get("COCREATE_ENV", "") or PRODUCTION
    if value not in ENVIRONMENTS:
        raise ConfigError(f"COCREATE_ENV={value!r} must be one of {', '.join(ENVIRONMENTS)}")
    return value


def is_development(env: Mapping[str, str] | None = None) -> bool:
    return environment(os.environ if env is None else env) == DEVELOPMENT


def jwt_secret(env: Mapping[str, str]) -> str:
    """`COCREATE_JWT_SECRET`: in development the development secret when unset;
    in production required, at least 32 bytes, and not the development one."""
    secret = env.get("COCREATE_JWT_SECRET", "")
    production = environment(env) == PRODUCTION
    if not secret:
        if production:
            raise ConfigError(
                "COCREATE_JWT_SECRET is required in production (COCREATE_ENV=production, the "
                f"default): at least {MIN_JWT_SECRET_BYTES} random bytes"
            )
        return DEV_JWT_SECRET
    if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(
            f"COCREATE_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes "
            f"(it has {len(secret.encode())})"
        )
    if production and secret == DEV_JWT_SECRET:
        raise ConfigError("COCREATE_JWT_SECRET is the development secret; production needs its own")
    return secret


def token_policy(env: Mapping[str, str]) -> TokenPolicy:
    """Issuer, audience, maximum lifetime and public keys tokens are checked against."""
    default_ttl = PRODUCTION_MAX_TTL_SECONDS if environment(env) == PRODUCTION else 0
    max_ttl = _parse(env, "COCREATE_JWT_MAX_TTL_SECONDS", default_ttl, int)
    if max_ttl < 0:
        raise ConfigError("COCREATE_JWT_MAX_TTL_SECONDS must be 0 (no maximum) or more")
    return TokenPolicy(
        issuer=env.get("COCREATE_JWT_ISSUER") or None,
        audience=env.get("COCREATE_JWT_AUDIENCE") or None,
        max_ttl_seconds=max_ttl,
        public_keys=_public_keys(env.get("COCREATE_JWT_PUBLIC_KEYS", "")),
    )


def _public_keys(path: str) -> jwt.PyJWKSet | None:
    if not path:
        return None
    try:
        return jwt.PyJWKSet.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        raise ConfigError(
            f"COCREATE_JWT_PUBLIC_KEYS={path!r} is not a readable JWKS file: {exc}"
        ) from None


def nats_servers(url: str) -> list[str]:
    return [server.strip() for server in url.split(",") if server.strip()]


def instance_name(env: Mapping[str, str]) -> str:
    """`COCREATE_INSTANCE`: this replica's name; by default the host's name and
    the process id (in Kubernetes the host name is the pod's)."""
    return env.get("COCREATE_INSTANCE") or f"{socket.gethostname()}-{os.getpid()}"


def role(env: Mapping[str, str]) -> str:
    """`COCREATE_ROLE`: what a process of the service runs.
    - `all` (the default): the service's calls and its event work (the outbox
      relay, the consumers, the background loops such as the tally folder);
    - `calls`: only the calls, with the loops their servicers need (the votes
      writer, the live notification streams). Another process of the service
      must run `events`, or nothing is relayed, consumed or folded;
    - `events`: only the event work; its gRPC port answers health, reflection
      and the dead-letter service.
    Splitting keeps the event work off the event loop that answers the calls."""
    value = (env.get("COCREATE_ROLE") or ROLE_ALL).strip().lower()
    if value not in ROLES:
        raise ConfigError(f"COCREATE_ROLE={value!r} must be one of {', '.join(ROLES)}")
    return value


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
        jwt_secret=jwt_secret(env),
        token_policy=token_policy(env),
        environment=environment(env),
        stream=env.get("COCREATE_STREAM", "COCREATE"),
        env=env,
    )
    return Config(
        service=base.service,
        database_url=base.database_url,
        nats_url=base.nats_url,
        listen_addr=base.listen_addr,
        jwt_secret=base.jwt_secret,
        token_policy=base.token_policy,
        environment=base.environment,
        stream=base.stream,
        stream_replicas=base.get_int("COCREATE_STREAM_REPLICAS", 1),
        relay_poll_seconds=base.get_float("COCREATE_RELAY_POLL_SECONDS", 1.0),
        relay_gather_seconds=base.get_float(
            "COCREATE_RELAY_GATHER_SECONDS", DEFAULT_RELAY_GATHER_SECONDS
        ),
        consumer_max_deliver=base.get_int("COCREATE_CONSUMER_MAX_DELIVER", 5),
        consumer_backoff_seconds=backoff_seconds(env),
        shutdown_grace_seconds=base.get_float("COCREATE_SHUTDOWN_GRACE_SECONDS", 10.0),
        max_pending_calls=base.get_int("COCREATE_MAX_PENDING_CALLS", 10000),
        instance=instance_name(env),
        role=role(env),
        env=env,
    )
