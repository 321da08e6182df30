"""A fast check of the plain HS256 tokens the platform mints, with the
standard library; anything else is left to PyJWT.

Why: every call carries a bearer token, and a member's first call with a new
token pays for its verification. PyJWT checks each base64 character in
Python, prepares the key and parses the token again on every call: about
44 µs alone, and under load (A/B at 64 casts in flight, the votes process
answering canned casts with the interceptor's other steps on) about 0.13 ms
of the calls loop's 0.57 ms a cast. This check costs about 11 µs, and 5 µs
since the header is decoded once and the signature compared as text (timed
on a faster host, where it had cost 8 µs).

The contract: `claims()` answers only for a token that PyJWT would accept
with the same key, algorithm and policy, and then with the claims PyJWT
would return. It answers None for anything unusual — another header, a
claim of an unexpected type, a signature that does not match, an expired
token, padding — and auth.py asks PyJWT, whose refusal the caller sees. So
a refusal's reason and message stay PyJWT's, and this module can only make
the common case faster, never accept more. tests/backbone/test_hs256.py
checks both against PyJWT on generated and mutated tokens.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import re
import time
from typing import Any, TypeGuard

import jwt
from jwt.algorithms import HMACAlgorithm

# Unpadded base64url, as JWS compact serialization writes it.
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
# The headers of a plain HS256 JWT: PyJWT's own, and `typ` left out.
_PLAIN_HEADERS = ({"alg": "HS256", "typ": "JWT"}, {"alg": "HS256"})


@functools.lru_cache(maxsize=8)
def _pyjwt_takes(secret: str) -> bool:
    """Whether PyJWT verifies with this secret at all: it refuses one that
    looks like a PEM or SSH key, and then so does this module."""
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.InvalidKeyError:
        return False
    return True


def _decoded(segment: str) -> bytes | None:
    """The bytes of a canonical unpadded base64url segment; None otherwise
    (PyJWT refuses an encoding whose unused bits are set)."""
    if len(segment) % 4 == 1 or not _SEGMENT.fullmatch(segment):
        return None
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error:
        return None
    if base64.urlsafe_b64encode(data).rstrip(b"=") != segment.encode("ascii"):
        return None
    return data


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _is_int(value: Any) -> TypeGuard[int]:
    return type(value) is int  # not a bool, not a float: PyJWT would truncate those


def claims(
    token: str, secret: str, *, issuer: str | None = None, audience: str | None = None
) -> dict[str, Any] | None:
    """The token's claims when it is a plain HS256 JWT signed with `secret`,
    in date, naming `issuer` and `audience` when they are given, with a
    string `sub` and an integer `exp`; None when PyJWT must decide."""
    segments = token.split(".")
    if len(segments) != 3 or not _pyjwt_takes(secret):
        return None
    header_segment, payload_segment, signature_segment = segments
    payload_data = _decoded(payload_segment)
    if payload_data is None or not _plain_header(header_segment):
        return None  # another header, or not base64url: PyJWT says what is wrong
    expected = hmac.new(
        secret.encode("utf-8"),
        f"{header_segment}.{payload_segment}".encode("ascii"),
        hashlib.sha256,
    ).digest()
    # The signature segment must be the canonical encoding of the expected
    # digest: compared as text, it need not be decoded (and re-encoded, to
    # refuse a non-canonical one) first.
    if not hmac.compare_digest(
        base64.urlsafe_b64encode(expected).rstrip(b"="),
        signature_segment.encode("ascii", "replace"),
    ):
        return None
    payload = _json_object(payload_data)
    if payload is None or not _claims_in_order(payload, issuer, audience):
        return None
    return payload


@functools.lru_cache(maxsize=64)
def _plain_header(segment: str) -> bool:
    """Whether a header segment is one of the plain HS256 headers. Every
    token the platform mints has the same one, so it is decoded once."""
    data = _decoded(segment)
    return data is not None and _json_object(data) in _PLAIN_HEADERS


def _claims_in_order(payload: dict[str, Any], issuer: str | None, audience: str | None) -> bool:
    now = time.time()
    exp, sub = payload.get("exp"), payload.get("sub")
    if not _is_int(exp) or exp <= now or not isinstance(sub, str):
        return False
    for not_before in ("iat", "nbf"):
        if not_before in payload:
            when = payload[not_before]
            if not (_is_int(when) and when <= now):
                return False
    if "jti" in payload and not isinstance(payload["jti"], str):
        return False
    if issuer is not None and payload.get("iss") != issuer:
        return False
    if audience is not None:
        named = payload.get("aud")
        if not (named == audience or (isinstance(named, list) and audience in named)):
            return False
        if isinstance(named, list) and not all(isinstance(a, str) for a in named):
            return False
    return True
