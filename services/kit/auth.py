"""Who is calling: a bearer JWT in the `authorization` metadata.

Claims: `sub` = member id, `role` in member|pm|admin|service, `exp`; `iss`
and `aud` when the deployment names them. Tokens are HS256 with the shared
secret, or signed by a key of the deployment's JWKS (public keys only: the
services verify tokens they cannot mint). A token living longer than the
policy's maximum is refused, so a stolen one cannot serve for years.
The verified caller is kept in a contextvar for the handler; a member's tier
is never taken from the token (the services own it).
"""

from __future__ import annotations

import contextvars
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from services.kit import hs256
from services.kit.errors import PermissionDenied, Unauthenticated


class Role(StrEnum):
    MEMBER = "member"
    PM = "pm"
    ADMIN = "admin"
    SERVICE = "service"


_ROLE_VALUES = frozenset(role.value for role in Role)


@dataclass(frozen=True)
class Caller:
    member_id: str
    role: Role
    # No token: someone reading one of the PUBLIC_METHODS. They see what a
    # member sees (never a hidden idea or comment) and can call nothing else.
    visitor: bool = False

    @property
    def is_staff(self) -> bool:
        """PMs, admins and the release tooling may act on anything."""
        return self.role in (Role.PM, Role.ADMIN, Role.SERVICE) and not self.visitor


VISITOR = Caller(member_id="", role=Role.MEMBER, visitor=True)

# The deliberate list of reads anyone may make without a token, so a community's
# board can be read by whoever the community shows it to: products, boards and
# ideas, comments (official responses among them), an idea's history, similar
# ideas, and releases with their notes. What a member cannot see (hidden ideas
# and comments, report counts, hidden reasons) a visitor cannot either; every
# other method, and any call that carries a token, is authenticated as before.
PUBLIC_METHODS = frozenset(
    {
        "/cocreate.ideas.v1.IdeaService/ListProducts",
        "/cocreate.ideas.v1.IdeaService/GetProduct",
        "/cocreate.ideas.v1.IdeaService/ListIdeas",
        "/cocreate.ideas.v1.IdeaService/GetIdea",
        "/cocreate.ideas.v1.IdeaService/FindSimilarIdeas",
        "/cocreate.ideas.v1.IdeaService/ListComments",
        "/cocreate.ideas.v1.IdeaService/ListIdeaHistory",
        "/cocreate.ideas.v1.ReleaseService/ListReleases",
        "/cocreate.ideas.v1.ReleaseService/GetRelease",
        "/cocreate.ideas.v1.ReleaseService/GetReleaseNotes",
    }
)


_current: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "cocreate_caller", default=None
)


def current_caller() -> Caller:
    caller = _current.get()
    if caller is None:
        raise Unauthenticated("no verified caller for this call")
    return caller


def set_caller(caller: Caller | None) -> contextvars.Token[Caller | None]:
    return _current.set(caller)


def reset_caller(token: contextvars.Token[Caller | None]) -> None:
    _current.reset(token)


def require_role(*roles: Role) -> Caller:
    """The caller, if their role is one of `roles`; PERMISSION_DENIED otherwise.
    Call it before looking anything up, so a member learns nothing about what exists."""
    caller = current_caller()
    if caller.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise PermissionDenied(
            f"this call needs the role {allowed}; the caller is {caller.role.value}",
            metadata={"required_roles": allowed, "role": caller.role.value},
        )
    return caller


@dataclass(frozen=True)
class TokenPolicy:
    """What a token must carry beyond a valid signature and `exp`."""

    issuer: str | None = None
    audience: str | None = None
    # 0: no maximum.
    max_ttl_seconds: int = 0
    public_keys: jwt.PyJWKSet | None = None


_DEFAULT_POLICY = TokenPolicy()


class TokenCache:
    """The callers of tokens already verified, each until its token's `exp`.
    A member's session makes many calls with one token, and verifying it again
    (base64, JSON, the signature, the claims: about 60 µs in PyJWT, 15 through
    hs256.py) on each call was a twelfth of a vote's CPU in the votes process. Only tokens that
    passed every check are kept; the least recently used go first.

    An entry is a tuple of two strings and a float, not a Caller: CPython's
    collector stops tracking such a tuple, where a Caller (an object with a
    dict of its own) stayed tracked, so a full collection walked every cached
    token and a young one every token cached since the last. With a new
    member's token on every cast, 20,000 casts left 45,000 more objects to
    walk, and a full collection paused the calls loop for about 90 ms."""

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[str, str, float]] = OrderedDict()

    def get(self, token: str) -> Caller | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        member_id, role, expires = entry
        if expires <= time.time():
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return Caller(member_id=member_id, role=Role(role))

    def put(self, token: str, caller: Caller, expires: float) -> None:
        # The role's value, a plain string: the enum member is a tracked object.
        self._entries[token] = (caller.member_id, caller.role.value, expires)
        self._entries.move_to_end(token)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


def verify_token(
    authorization: str | None,
    secret: str,
    policy: TokenPolicy = _DEFAULT_POLICY,
    *,
    method: str = "",
    cache: TokenCache | None = None,
) -> Caller:
    """The caller a token names. Without one, a call of a PUBLIC_METHODS
    `method` (its gRPC path) is a visitor's; any other is UNAUTHENTICATED. A
    token that is there but wrong is refused even on a public method. With a
    `cache` (one per secret and policy), a token verified before is not
    verified again until it expires."""
    if not authorization and method in PUBLIC_METHODS:
        return VISITOR
    if not authorization:
        raise Unauthenticated("missing authorization metadata (expected 'Bearer <jwt>')")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization must be 'Bearer <jwt>'")
    token = token.strip()
    if cache is not None and (known := cache.get(token)) is not None:
        return known
    claims = _decode(token, secret, policy)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or not subject.isprintable():
        raise Unauthenticated(
            "token has no subject, or one with control characters", reason="TOKEN_INVALID"
        )
    role_claim = claims.get("role", "member")
    if not isinstance(role_claim, str) or role_claim not in _ROLE_VALUES:
        raise Unauthenticated(
            "token role is not one of " + ", ".join(r.value for r in Role),
            reason="TOKEN_INVALID",
        )
    _check_lifetime(claims, policy.max_ttl_seconds)
    caller = Caller(member_id=subject, role=Role(role_claim))
    if cache is not None:
        cache.put(token, caller, float(claims["exp"]))
    return caller


def _decode(token: str, secret: str, policy: TokenPolicy) -> dict[str, Any]:
    if policy.public_keys is None:
        # The platform's own tokens, checked fast; PyJWT decides the rest.
        quick = hs256.claims(token, secret, issuer=policy.issuer, audience=policy.audience)
        if quick is not None:
            return quick
    required = ["sub", "exp"]
    if policy.issuer is not None:
        required.append("iss")
    if policy.audience is not None:
        required.append("aud")
    try:
        key, algorithm = _key_for(token, secret, policy.public_keys)
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=policy.issuer,
            audience=policy.audience,
            options={"require": required, "verify_aud": policy.audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired", reason="TOKEN_EXPIRED") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"invalid token: {exc}", reason="TOKEN_INVALID") from None
    return claims


def _key_for(token: str, secret: str, public_keys: jwt.PyJWKSet | None) -> tuple[Any, str]:
    """The key and algorithm that must have signed the token (never the
    algorithm the token claims for itself): the JWKS key it names by `kid`,
    else the shared secret for HS256, else the JWKS's only key."""
    if public_keys is None:
        return secret, "HS256"
    header = jwt.get_unverified_header(token)
    kid = header.get("kid")
    if kid is not None:
        for candidate in public_keys.keys:
            if candidate.key_id == kid:
                return candidate.key, candidate.algorithm_name
        raise jwt.InvalidTokenError("the token's key id is not in the configured JWKS")
    if header.get("alg") == "HS256":
        return secret, "HS256"
    if len(public_keys.keys) == 1:
        only = public_keys.keys[0]
        return only.key, only.algorithm_name
    raise jwt.InvalidTokenError("the token names no key (kid) of the configured JWKS")


def _check_lifetime(claims: dict[str, Any], max_ttl_seconds: int) -> None:
    if max_ttl_seconds <= 0:
        return
    issued = claims.get("iat")
    if issued is not None and not isinstance(issued, int | float):
        raise Unauthenticated("token iat is not a number", reason="TOKEN_INVALID")
    start = time.time() if issued is None else float(issued)
    lifetime = float(claims["exp"]) - start
    if lifetime > max_ttl_seconds:
        raise Unauthenticated(
            f"token lives {int(lifetime)} s, longer than the allowed {max_ttl_seconds} s",
            reason="TOKEN_TTL_TOO_LONG",
            metadata={"max_ttl_seconds": str(max_ttl_seconds)},
        )


def mint_token(
    member_id: str,
    role: Role | str,
    secret: str,
    ttl_seconds: int = 3600,
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": member_id,
        "role": Role(role).value,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
