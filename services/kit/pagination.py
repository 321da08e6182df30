"""List pagination: page sizes and opaque page tokens.

A token carries the position after the last item of a page and a fingerprint
of the request's filter, compressed and signed with the service's secret. A
client cannot read or forge it, and a token used with a different filter is
INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import message as pb_message

from services.kit.errors import FieldViolation, InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(
    requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    """0 means the default, a negative size is INVALID_ARGUMENT, too big is capped."""
    if requested < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    if requested == 0:
        return default
    return min(requested, maximum)


def filter_fingerprint(request: pb_message.Message) -> str:
    """A digest of everything in a list request except its paging fields."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ("page_size", "page_token"):
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]


@dataclass(frozen=True)
class Page:
    """One page of a list call: its size, where the previous page ended, and
    the token of the next page. Fetch `page.fetch` rows (one more than the
    size, to learn whether another page follows), answer `page.items(rows)`
    and `page.next_token(rows, position_of)`."""

    size: int
    after: dict[str, Any] | None
    fingerprint: str
    tokens: PageTokens

    @property
    def fetch(self) -> int:
        return self.size + 1

    def items(self, rows: Sequence[T]) -> Sequence[T]:
        return rows[: self.size]

    def next_token(self, rows: Sequence[T], position_of: Callable[[T], dict[str, Any]]) -> str:
        """The token after the last item of this page; empty at the end of the list."""
        if len(rows) <= self.size:
            return ""
        return self.tokens.encode(self.fingerprint, position_of(rows[self.size - 1]))


class PageTokens:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"page-token:" + secret.encode()).digest()

    def page(
        self,
        request: Any,  # a protobuf list request: it has page_size and page_token
        *,
        default: int = DEFAULT_PAGE_SIZE,
        maximum: int = MAX_PAGE_SIZE,
    ) -> Page:
        """The page a list request (with page_size and page_token) asks for."""
        size = page_size(request.page_size, default=default, maximum=maximum)
        fingerprint = filter_fingerprint(request)
        after = self.decode(request.page_token, fingerprint)
        return Page(size=size, after=after, fingerprint=fingerprint, tokens=self)

    def encode(self, fingerprint: str, position: dict[str, Any]) -> str:
        body = zlib.compress(json.dumps([fingerprint, position], separators=(",", ":")).encode())
        tag = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(tag + body).decode().rstrip("=")

    def decode(self, token: str, fingerprint: str) -> dict[str, Any] | None:
        """The position in `token`, or None for an empty token (the first page)."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            tag, body = raw[:16], raw[16:]
            if not hmac.compare_digest(
                tag, hmac.new(self._key, body, hashlib.sha256).digest()[:16]
            ):
                raise ValueError("bad signature")
            token_fingerprint, position = json.loads(zlib.decompress(body))
        except (ValueError, binascii.Error, zlib.error, TypeError):
            raise InvalidArgument(
                [FieldViolation("page_token", "is not a token this list gave out")]
            ) from None
        if token_fingerprint != fingerprint:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "page_token", "belongs to a list with other filters; start again without it"
                    )
                ]
            )
        if not isinstance(position, dict):
            raise InvalidArgument(
                [FieldViolation("page_token", "is not a token this list gave out")]
            )
        return position
