"""The gateway's settings, from environment variables with documented defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.kit import config
from services.kit.auth import TokenPolicy
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
    # The whole body must arrive within this (a client trickling bytes is cut off).
    body_timeout_seconds: float = 10.0
    # Upstream calls in flight per client and in all (more wait for a slot).
    max_calls_per_client: int = 32
    max_calls: int = 1024
    # Upstream streams open per client and in all (more are refused at once).
    max_streams_per_client: int = 8
    max_streams: int = 1000
    # Calls per second per client, with bursts; 0 switches the rate limit off.
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 500
    # The web app's development sign-in (POST /dev/token) mints tokens under
    # this policy; None (production, or a secret of the deployment's own): off.
    dev_tokens: TokenPolicy | None = None
    # Where the web app sends a person to sign in (the community's own site,
    # which sends them back with a token in the URL's fragment); empty: none.
    sign_in_url: str = ""


def dev_token_policy(env: Mapping[str, str]) -> TokenPolicy | None:
    """The policy development tokens are minted under, when the gateway may
    mint them: as for `cocreate token`, only with COCREATE_ENV=development and
    the development secret (a deployment's tokens come from its identity provider)."""
    if not config.is_development(env):
        return None
    secret = env.get("COCREATE_JWT_SECRET")
    if secret and secret != config.DEV_JWT_SECRET:
        return None
    return config.token_policy(env)


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
    env: Mapping[str, str],
    name: str,
    default: float,
    kind: type[float] | type[int],
    *,
    allow_zero: bool = False,
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}={raw!r} must be positive" + (" or 0" if allow_zero else ""))
    return value


def _sign_in_url(env: Mapping[str, str]) -> str:
    url = env.get("COCREATE_GATEWAY_SIGN_IN_URL", "").strip()
    if url and not url.startswith(("https://", "http://")):
        raise ConfigError(f"COCREATE_GATEWAY_SIGN_IN_URL={url!r} must be an http(s) URL")
    return url


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
        body_timeout_seconds=_number(
            env, "COCREATE_GATEWAY_BODY_TIMEOUT_SECONDS", Settings.body_timeout_seconds, float
        ),
        max_calls_per_client=int(
            _number(
                env, "COCREATE_GATEWAY_MAX_CALLS_PER_CLIENT", Settings.max_calls_per_client, int
            )
        ),
        max_calls=int(_number(env, "COCREATE_GATEWAY_MAX_CALLS", Settings.max_calls, int)),
        max_streams_per_client=int(
            _number(
                env,
                "COCREATE_GATEWAY_MAX_STREAMS_PER_CLIENT",
                Settings.max_streams_per_client,
                int,
            )
        ),
        max_streams=int(_number(env, "COCREATE_GATEWAY_MAX_STREAMS", Settings.max_streams, int)),
        rate_limit_per_second=_number(
            env,
            "COCREATE_GATEWAY_RATE_LIMIT_PER_SECOND",
            Settings.rate_limit_per_second,
            float,
            allow_zero=True,
        ),
        rate_limit_burst=int(
            _number(env, "COCREATE_GATEWAY_RATE_LIMIT_BURST", Settings.rate_limit_burst, int)
        ),
        dev_tokens=dev_token_policy(env),
        sign_in_url=_sign_in_url(env),
    )
