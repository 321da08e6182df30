"""The fast HS256 check (services/kit/hs256.py) against PyJWT, the oracle:
whatever token it answers for, PyJWT accepts with the same claims; the
platform's own tokens take the fast path; and a fast check that skipped a
step would be caught by the same comparison."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.kit import auth, hs256
from services.kit.errors import Unauthenticated

SECRET = "a-shared-secret-of-the-deployment-0123456789"
OTHER_SECRET = "another-secret-of-another-deployment-987654"
ISSUERS = (None, "cocreate")
AUDIENCES = (None, "votes")
NOW = int(time.time())


def _pyjwt(token: str, secret: str, issuer: str | None, audience: str | None) -> Any:
    """PyJWT's verdict, called as auth.py calls it: the claims, or None when refused."""
    required = ["sub", "exp"] + (["iss"] if issuer else []) + (["aud"] if audience else [])
    try:
        return jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=issuer,
            audience=audience,
            options={"require": required, "verify_aud": audience is not None},
        )
    except (jwt.InvalidTokenError, jwt.InvalidKeyError):
        return None


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64(data: bytes, *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if padded else text.rstrip("=")


def _sign(header_and_payload: str, secret: str) -> bytes:
    return hmac.new(secret.encode(), header_and_payload.encode(), hashlib.sha256).digest()


def mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values that pass three times in four."""
    return st.one_of(valid, valid, valid, odd)


past = st.integers(NOW - 10**6, NOW - 1)
odd_times = st.one_of(
    st.sampled_from([NOW + 3600, 2**70, -1, 0]),
    st.floats(NOW - 100, NOW + 3600),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
odd_strings = st.one_of(st.sampled_from(["", "other"]), st.integers(), st.none())
# Each claim's values that PyJWT accepts (with the policy's issuer and
# audience), and others.
good_claims: dict[str, st.SearchStrategy[Any]] = {
    "sub": st.sampled_from(["m1", "m2"]),
    "role": st.sampled_from(["member", "admin"]),
    "exp": st.integers(NOW + 1, NOW + 10**6),
    "iat": past,
    "nbf": past,
    "jti": st.just("j1"),
    "iss": st.just("cocreate"),
    "aud": st.sampled_from(["votes", ["web", "votes"]]),
}
odd_claims: dict[str, st.SearchStrategy[Any]] = {
    **{name: mostly(good, odd_strings) for name, good in good_claims.items()},
    "exp": mostly(good_claims["exp"], st.one_of(past, odd_times)),
    "iat": mostly(past, odd_times),
    "nbf": mostly(past, odd_times),
    "aud": mostly(
        good_claims["aud"],
        st.one_of(odd_strings, st.lists(odd_strings, max_size=3), st.just(["votes", 1])),
    ),
}


@st.composite
def payloads(draw: st.DrawFn, values: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """Claims in date naming a subject, some of them then changed, added or
    (one time in ten) left out."""
    claims: dict[str, Any] = {"sub": "m1", "exp": NOW + 3600}
    claims.update(draw(st.fixed_dictionaries({}, optional=values)))
    if draw(st.integers(0, 9)) == 0:
        del claims[draw(st.sampled_from(["sub", "exp"]))]
    return claims


headers = mostly(
    st.sampled_from([{"alg": "HS256", "typ": "JWT"}, {"alg": "HS256"}]),
    st.fixed_dictionaries(
        {"alg": st.sampled_from(["HS256", "HS384", "none", "RS256", ""])},
        optional={
            "typ": st.sampled_from(["JWT", "at+jwt", 1]),
            "kid": st.sampled_from(["k1", 7]),
            "b64": st.booleans(),
            "crit": st.just(["b64"]),
        },
    ),
)


@st.composite
def tokens(draw: st.DrawFn) -> str:
    """Half of them plain tokens with good claims, signed with the secret;
    the others of every shape: generated headers and claims, signed with the
    secret or another, JSON that is not an object, padding, non-canonical
    encodings, extra or missing segments, flipped characters."""
    if draw(st.booleans()):
        header = draw(st.sampled_from([{"alg": "HS256", "typ": "JWT"}, {"alg": "HS256"}]))
        signed = ".".join(
            _b64(json.dumps(part).encode()) for part in (header, draw(payloads(good_claims)))
        )
        return f"{signed}.{_b64(_sign(signed, SECRET))}"
    header = draw(mostly(headers, st.sampled_from([[1], "x", 5])))
    payload = draw(mostly(payloads(odd_claims), st.sampled_from([[1], "x", None])))
    padded = draw(st.booleans())
    first = _b64(json.dumps(header).encode(), padded=padded)
    second = _b64(json.dumps(payload).encode(), padded=padded)
    signed = f"{first}.{second}"
    signature = _b64(_sign(signed, draw(st.sampled_from([SECRET, SECRET, OTHER_SECRET]))))
    mutation = draw(st.sampled_from(["none"] * 6 + ["flip", "cut", "extra", "tail"]))
    if mutation == "tail":
        # The signature's last character with an unused bit set: the same
        # bytes under another spelling, which PyJWT refuses.
        signature = signature[:-1] + _ALPHABET[_ALPHABET.index(signature[-1]) | 1]
    token = f"{signed}.{signature}" + ("=" if padded else "")
    if mutation == "flip":
        at = draw(st.integers(0, len(token) - 1))
        token = token[:at] + draw(st.sampled_from("AQgw_-.=!+/é\x00")) + token[at + 1 :]
    elif mutation == "cut":
        token = token[: draw(st.integers(0, len(token) - 1))]
    elif mutation == "extra":
        token += "." + _b64(b"more")
    return token


def _agrees(fast: Callable[..., Any]) -> Callable[[str], None]:
    def check(token: str) -> None:
        for issuer in ISSUERS:
            for audience in AUDIENCES:
                quick = fast(token, SECRET, issuer=issuer, audience=audience)
                if quick is not None:
                    assert quick == _pyjwt(token, SECRET, issuer, audience), (
                        f"the fast check accepted what PyJWT does not: {token} "
                        f"(issuer {issuer}, audience {audience})"
                    )

    return check


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token=tokens())
def test_the_fast_check_accepts_only_what_pyjwt_accepts_with_the_same_claims(token: str) -> None:
    _agrees(hs256.claims)(token)


def test_the_platforms_own_tokens_take_the_fast_path() -> None:
    for issuer in ISSUERS:
        for audience in AUDIENCES:
            token = auth.mint_token("m1", "member", SECRET, issuer=issuer, audience=audience)
            claims = hs256.claims(token, SECRET, issuer=issuer, audience=audience)
            assert claims is not None
            assert claims == _pyjwt(token, SECRET, issuer, audience)
    listed = jwt.encode({"sub": "m1", "exp": NOW + 60, "aud": ["web", "votes"]}, SECRET)
    assert hs256.claims(listed, SECRET, audience="votes") is not None


def test_a_refused_token_is_refused_with_pyjwts_reason() -> None:
    expired = auth.mint_token("m1", "member", SECRET, ttl_seconds=-10)
    forged = auth.mint_token("m1", "admin", OTHER_SECRET)
    assert hs256.claims(expired, SECRET) is None
    assert hs256.claims(forged, SECRET) is None
    with pytest.raises(Unauthenticated) as refused:
        auth.verify_token(f"Bearer {expired}", SECRET)
    assert refused.value.reason == "TOKEN_EXPIRED"
    with pytest.raises(Unauthenticated) as refused:
        auth.verify_token(f"Bearer {forged}", SECRET)
    assert refused.value.reason == "TOKEN_INVALID"


def test_characters_outside_base64url_anywhere_are_left_to_pyjwt() -> None:
    token = auth.mint_token("m1", "member", SECRET)
    first, second, third = token.split(".")
    for odd in (
        f"{first}é.{second}.{third}",
        f"{first}.{second}\x00.{third}",
        f"{first}.{second}.{third}é",
    ):
        assert hs256.claims(odd, SECRET) is None
        with pytest.raises(Unauthenticated):
            auth.verify_token(f"Bearer {odd}", SECRET)


def test_a_secret_pyjwt_will_not_use_is_not_used_here_either() -> None:
    pem_like = (
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
    )
    header_and_payload = ".".join(
        _b64(json.dumps(part).encode())
        for part in ({"alg": "HS256", "typ": "JWT"}, {"sub": "m1", "exp": NOW + 60})
    )
    token = f"{header_and_payload}.{_b64(_sign(header_and_payload, pem_like))}"
    assert _pyjwt(token, pem_like, None, None) is None
    assert hs256.claims(token, pem_like) is None


@pytest.mark.parametrize(
    "fault",
    ["no signature check", "no expiry check", "no issuer check", "any header"],
)
def test_the_comparison_catches_a_fast_check_that_skips_a_step(
    fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The property above, run against a fast check with one step planted
    away, finds a token on which it accepts what PyJWT refuses."""
    real = hs256._claims_in_order
    if fault == "no signature check":
        monkeypatch.setattr(hs256, "hmac", _TrustingHmac)
    elif fault == "no expiry check":
        monkeypatch.setattr(
            hs256,
            "_claims_in_order",
            lambda payload, issuer, audience: real({**payload, "exp": 2**40}, issuer, audience),
        )
    elif fault == "no issuer check":
        monkeypatch.setattr(
            hs256,
            "_claims_in_order",
            lambda payload, issuer, audience: real(payload, None, audience),
        )
    else:
        monkeypatch.setattr(hs256, "_PLAIN_HEADERS", _AnyHeader())
    planted = settings(max_examples=3000, deadline=None, database=None)(
        given(token=tokens())(_agrees(hs256.claims))
    )
    with pytest.raises(AssertionError, match="accepted what PyJWT does not"):
        planted()


class _TrustingHmac:
    """hmac for the fast check alone, finding every signature right."""

    new = staticmethod(hmac.new)

    @staticmethod
    def compare_digest(expected: bytes, given: bytes) -> bool:
        return True


class _AnyHeader:
    def __contains__(self, header: object) -> bool:
        return True
