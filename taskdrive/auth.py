"""JWT bearer tokens: the account is the subject; ``admin: true`` sees every account's data."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from taskdrive.settings import Settings

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    account_id: uuid.UUID
    is_admin: bool = False


class InvalidToken(Exception):
    pass


def issue_token(
    settings: Settings, account_id: uuid.UUID, *, admin: bool = False, ttl: int | None = None
) -> str:
    now = int(time.time())
    claims = {
        "sub": str(account_id),
        "iss": settings.jwt_issuer,
        "iat": now,
        "exp": now + (ttl if ttl is not None else settings.jwt_ttl_seconds),
        "admin": admin,
    }
    return jwt.encode(claims, settings.signing_key, algorithm=ALGORITHM)


def verify_token(settings: Settings, token: str) -> Principal:
    return _verify(settings, token)[0]


def _verify(settings: Settings, token: str) -> tuple[Principal, float]:
    """The token's principal and its expiry (a UNIX time); InvalidToken unless it is valid now."""
    try:
        claims = jwt.decode(
            token,
            settings.signing_key,
            algorithms=[ALGORITHM],
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "exp", "iss"]},
        )
        account = uuid.UUID(str(claims["sub"]))
        expires = float(claims["exp"])
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidToken(str(exc)) from exc
    return Principal(account_id=account, is_admin=claims.get("admin") is True), expires


class TokenVerifier:
    """``verify_token`` remembering the tokens it accepted, each until it expires.

    A client sends the same token with every request, a chunk upload with every chunk, and
    PyJWT spends some 25 µs of the event loop's time on each (its base64 checks, the HMAC, the
    JSON). A token is remembered by its exact text, which was verified whole, so a remembered
    one says what it said then; only its expiry can change that, and it is checked each time."""

    def __init__(self, settings: Settings, *, max_tokens: int = 4096) -> None:
        self._settings = settings
        self._max_tokens = max_tokens
        self._accepted: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        accepted = self._accepted.get(token)
        if accepted is not None and time.time() < accepted[1]:
            self._accepted.move_to_end(token)
            return accepted[0]
        self._accepted.pop(token, None)
        accepted = _verify(self._settings, token)  # raises for an expired one
        self._accepted[token] = accepted
        if len(self._accepted) > self._max_tokens:
            self._accepted.popitem(last=False)  # the least recently used
        return accepted[0]
