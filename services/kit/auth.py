"""Who is calling: a bearer JWT (HS256) in the `authorization` metadata.

Claims: `sub` = member id, `role` in member|pm|admin|service, `exp`.
The verified caller is kept in a contextvar for the handler; a member's tier
is never taken from the token (the services own it).
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt

from services.kit.errors import PermissionDenied, Unauthenticated


class Role(StrEnum):
    MEMBER = "member"
    PM = "pm"
    ADMIN = "admin"
    SERVICE = "service"


@dataclass(frozen=True)
class Caller:
    member_id: str
    role: Role

    @property
    def is_staff(self) -> bool:
        """PMs, admins and the release tooling may act on anything."""
        return self.role in (Role.PM, Role.ADMIN, Role.SERVICE)


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


def verify_token(authorization: str | None, secret: str) -> Caller:
    if not authorization:
        raise Unauthenticated("missing authorization metadata (expected 'Bearer <jwt>')")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization must be 'Bearer <jwt>'")
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired", reason="TOKEN_EXPIRED") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"invalid token: {exc}", reason="TOKEN_INVALID") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise Unauthenticated("token has no subject", reason="TOKEN_INVALID")
    try:
        role = Role(claims.get("role", "member"))
    except ValueError:
        raise Unauthenticated(
            f"token role {claims.get('role')!r} is not one of " + ", ".join(r.value for r in Role),
            reason="TOKEN_INVALID",
        ) from None
    return Caller(member_id=subject, role=role)


def mint_token(member_id: str, role: Role | str, secret: str, ttl_seconds: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": member_id, "role": Role(role).value, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm="HS256")
