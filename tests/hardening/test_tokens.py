"""Finding 5: production mode for tokens. Outside development a service needs a
secret of its own of at least 32 bytes; issuer, audience and a maximum lifetime
are enforced when set; a JWKS lets services verify tokens they cannot mint."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cocreate.ops.v1 import dead_letter_service_pb2 as ops
from cocreate.ops.v1 import dead_letter_service_pb2_grpc as ops_grpc
from cryptography.hazmat.primitives.asymmetric import rsa

from services.kit import auth, config
from services.kit.errors import Unauthenticated
from services.kit.server import ServiceDefinition
from tests.support import Platform, error_reason, stub

SECRET = "a-production-secret-with-more-than-32-bytes"
BASE = {"COCREATE_IDEAS_DATABASE_URL": "postgresql://x/y"}
BARE = ServiceDefinition(name="bare", service_names=[], register=lambda server, runtime: None)


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "m1", "role": "member", "iat": now, "exp": now + 600, **extra}


def _bearer(claims: dict[str, Any], key: Any = SECRET, **kwargs: Any) -> str:
    return "Bearer " + jwt.encode(claims, key, **kwargs)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "COCREATE_JWT_SECRET is required in production"),
        ({"COCREATE_ENV": "production"}, "COCREATE_JWT_SECRET is required in production"),
        ({"COCREATE_JWT_SECRET": "x"}, "COCREATE_JWT_SECRET must be at least 32 bytes"),
        ({"COCREATE_JWT_SECRET": config.DEV_JWT_SECRET}, "COCREATE_JWT_SECRET is the development"),
        ({"COCREATE_ENV": "staging"}, "COCREATE_ENV='staging'"),
        (
            {"COCREATE_ENV": "development", "COCREATE_JWT_SECRET": "short"},
            "COCREATE_JWT_SECRET must be at least 32 bytes",
        ),
        (
            {"COCREATE_JWT_SECRET": SECRET, "COCREATE_JWT_MAX_TTL_SECONDS": "-1"},
            "COCREATE_JWT_MAX_TTL_SECONDS",
        ),
        (
            {"COCREATE_JWT_SECRET": SECRET, "COCREATE_JWT_PUBLIC_KEYS": "/no/such/jwks.json"},
            "COCREATE_JWT_PUBLIC_KEYS",
        ),
    ],
)
def test_settings_refuse_what_production_must_not_run_with(env: dict[str, str], named: str) -> None:
    with pytest.raises(config.ConfigError, match=named.replace("(", r"\(")):
        config.load("ideas", {**BASE, **env})


def test_production_defaults() -> None:
    production = config.load("ideas", {**BASE, "COCREATE_JWT_SECRET": SECRET})
    assert production.environment == "production"
    assert production.token_policy.max_ttl_seconds == 86400
    development = config.load("ideas", {**BASE, "COCREATE_ENV": "development"})
    assert development.jwt_secret == config.DEV_JWT_SECRET
    assert development.token_policy.max_ttl_seconds == 0


def test_a_service_refuses_to_start_in_production_without_a_proper_secret() -> None:
    for secret in ("", "too-short"):
        result = subprocess.run(
            [sys.executable, "-m", "services.votes"],
            env={
                "PATH": "/usr/bin:/bin",
                "COCREATE_VOTES_DATABASE_URL": "postgresql://127.0.0.1:1/none",
                "COCREATE_JWT_SECRET": secret,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "COCREATE_JWT_SECRET" in result.stderr
        assert "Traceback" not in result.stderr


POLICY = auth.TokenPolicy(issuer="https://id.example", audience="cocreate", max_ttl_seconds=3600)
GOOD = {"iss": "https://id.example", "aud": "cocreate"}


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (_claims(aud="cocreate"), "TOKEN_INVALID"),  # no issuer
        (_claims(iss="https://id.example"), "TOKEN_INVALID"),  # no audience
        (_claims(iss="https://evil.example", aud="cocreate"), "TOKEN_INVALID"),
        (_claims(iss="https://id.example", aud="other"), "TOKEN_INVALID"),
        (_claims(**GOOD, exp=int(time.time()) + 7200), "TOKEN_TTL_TOO_LONG"),
        (
            {**{k: v for k, v in _claims(**GOOD).items() if k != "iat"}, "exp": 32503680000},
            "TOKEN_TTL_TOO_LONG",
        ),
        (_claims(**GOOD, sub="m\x001"), "TOKEN_INVALID"),
        (_claims(**GOOD, sub="m\n1"), "TOKEN_INVALID"),
        (_claims(**GOOD, role=["admin"]), "TOKEN_INVALID"),
        (_claims(**GOOD, iat="yesterday"), "TOKEN_INVALID"),
    ],
    ids=[
        "no-issuer",
        "no-audience",
        "wrong-issuer",
        "wrong-audience",
        "ttl-too-long",
        "no-iat-year-3000",
        "nul-in-sub",
        "newline-in-sub",
        "role-not-a-string",
        "iat-not-a-number",
    ],
)
def test_each_token_rule(claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        auth.verify_token(_bearer(claims), SECRET, POLICY)
    assert caught.value.reason == reason


def test_a_token_within_the_rules_is_accepted() -> None:
    caller = auth.verify_token(_bearer(_claims(**GOOD, role="pm")), SECRET, POLICY)
    assert caller == auth.Caller("m1", auth.Role.PM)
    minted = auth.mint_token(
        "m2", "admin", SECRET, 3600, issuer="https://id.example", audience="cocreate"
    )
    assert auth.verify_token("Bearer " + minted, SECRET, POLICY).member_id == "m2"


def test_public_keys_verify_tokens_the_services_cannot_mint(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**public_jwk, "kid": "k1", "alg": "RS256"}]}))
    loaded = config.load(
        "ideas",
        {**BASE, "COCREATE_JWT_SECRET": SECRET, "COCREATE_JWT_PUBLIC_KEYS": str(jwks)},
    )
    policy = loaded.token_policy
    signed = _bearer(_claims(), private, algorithm="RS256", headers={"kid": "k1"})
    assert auth.verify_token(signed, SECRET, policy).member_id == "m1"
    without_kid = _bearer(_claims(), private, algorithm="RS256")
    assert auth.verify_token(without_kid, SECRET, policy).member_id == "m1"
    # The shared secret still verifies HS256 tokens.
    assert auth.verify_token(_bearer(_claims()), SECRET, policy).member_id == "m1"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for forged in (
        _bearer(_claims(), other, algorithm="RS256", headers={"kid": "k1"}),
        _bearer(_claims(), other, algorithm="RS256", headers={"kid": "k2"}),
        # HS256 signed with the public key as secret: the algorithm comes from the key.
        _bearer(_claims(), SECRET, algorithm="HS256", headers={"kid": "k1"}),
    ):
        with pytest.raises(Unauthenticated):
            auth.verify_token(forged, SECRET, policy)


async def test_a_running_service_enforces_the_policy(platform: Platform) -> None:
    service = await platform.start(
        "bare",
        env={
            "COCREATE_JWT_SECRET": SECRET,
            "COCREATE_JWT_ISSUER": "https://id.example",
            "COCREATE_JWT_AUDIENCE": "cocreate",
            "COCREATE_JWT_MAX_TTL_SECONDS": "3600",
        },
        definition=BARE,
    )
    dead_letters = stub(service, ops_grpc.DeadLetterServiceStub)
    request = ops.ListDeadLettersRequest()
    good = _bearer(_claims(**GOOD, role="admin"))
    await dead_letters.ListDeadLetters(request, metadata=(("authorization", good),))
    for bad, reason in (
        (_bearer(_claims(role="admin")), "TOKEN_INVALID"),
        (
            _bearer(_claims(**GOOD, role="admin", exp=int(time.time()) + 86400)),
            "TOKEN_TTL_TOO_LONG",
        ),
        (_bearer(_claims(**GOOD, role="admin", sub="a\x00b")), "TOKEN_INVALID"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await dead_letters.ListDeadLetters(request, metadata=(("authorization", bad),))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(caught.value) == reason


# The verified-token cache: a token is verified once per process, not on
# every call, and the cache never answers for a token that would now fail.


def test_a_verified_token_is_kept_and_answers_the_next_call() -> None:
    cache = auth.TokenCache()
    bearer = "Bearer " + auth.mint_token("alice", "pm", SECRET)
    first = auth.verify_token(bearer, SECRET, cache=cache)
    assert cache.get(bearer.split()[1]) == first
    assert auth.verify_token(bearer, SECRET, cache=cache) == first


def test_a_refused_token_is_never_kept() -> None:
    cache = auth.TokenCache()
    forged = "Bearer " + auth.mint_token("alice", "admin", "another-secret-of-more-than-32-bytes!")
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            auth.verify_token(forged, SECRET, cache=cache)
    assert cache.get(forged.split()[1]) is None


def test_a_kept_token_is_not_answered_for_once_its_exp_has_passed() -> None:
    cache = auth.TokenCache()
    forged = auth.mint_token("alice", "admin", "another-secret-of-more-than-32-bytes!")
    # As if this token had been kept and its exp had just passed: the cache
    # must not answer for it, so it is verified again — and refused.
    cache.put(forged, auth.Caller(member_id="alice", role=auth.Role.ADMIN), time.time() - 1)
    with pytest.raises(Unauthenticated):
        auth.verify_token("Bearer " + forged, SECRET, cache=cache)
    assert cache.get(forged) is None


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = auth.TokenCache(size=2)
    callers = {name: auth.Caller(member_id=name, role=auth.Role.MEMBER) for name in "abc"}
    far = time.time() + 3600
    cache.put("a", callers["a"], far)
    cache.put("b", callers["b"], far)
    assert cache.get("a") == callers["a"]  # now b is the least recently used
    cache.put("c", callers["c"], far)
    assert cache.get("b") is None
    assert cache.get("a") == callers["a"] and cache.get("c") == callers["c"]


def test_kept_tokens_leave_the_collector_nothing_to_walk() -> None:
    """A process under load keeps up to 100,000 tokens (a new member's on
    every call), and the garbage collector walks every object it tracks: the
    kept tokens must add none (each cached Caller once added two, and a full
    collection under load paused the calls loop for about 90 ms)."""
    cache = auth.TokenCache()
    far = time.time() + 3600
    roles = list(auth.Role)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(2000):
        caller = auth.Caller(member_id=f"member-{n}", role=roles[n % len(roles)])
        cache.put(f"token-{n}", caller, far)
    del caller
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert cache.get("token-7") == auth.Caller(member_id="member-7", role=roles[7 % len(roles)])
