"""JWT bearer tokens: the account is the subject; ``admin: true`` sees every account's data."""

from __future__ import annotations

import time
import uuid
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
    try:
        claims = jwt.decode(
            token,
            settings.signing_key,
            algorithms=[ALGORITHM],
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "exp", "iss"]},
        )
        account = uuid.UUID(str(claims["sub"]))
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc
    return Principal(account_id=account, is_admin=claims.get("admin") is True)
