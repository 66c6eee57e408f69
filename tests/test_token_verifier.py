"""TokenVerifier: remembering accepted tokens changes nothing a client can observe."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from taskdrive.auth import InvalidToken, TokenVerifier, issue_token
from taskdrive.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, jwt_secret=SecretStr("s" * 48))


def test_each_token_gives_its_own_principal_every_time(settings: Settings) -> None:
    verifier = TokenVerifier(settings, max_tokens=1)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    tokens = {alice: issue_token(settings, alice), bob: issue_token(settings, bob, admin=True)}
    for _ in range(2):  # the second round meets remembered and forgotten tokens alike
        for account, token in tokens.items():
            principal = verifier.verify(token)
            assert (principal.account_id, principal.is_admin) == (account, account == bob)


def test_a_tampered_copy_of_an_accepted_token_is_refused(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    token = issue_token(settings, uuid.uuid4())
    verifier.verify(token)
    header, _payload, signature = token.split(".")
    forged = issue_token(
        settings.model_copy(update={"jwt_secret": SecretStr("x" * 48)}), uuid.uuid4()
    )
    with pytest.raises(InvalidToken):
        verifier.verify(f"{header}.{forged.split('.')[1]}.{signature}")


def test_an_accepted_token_is_refused_once_it_expires(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    token = issue_token(settings, uuid.uuid4(), ttl=1)
    verifier.verify(token)
    deadline = time.time() + 5
    while time.time() < deadline:  # the token's expiry is a whole second: wait until it passes
        try:
            verifier.verify(token)
        except InvalidToken as exc:
            assert "expired" in str(exc).lower()
            return
        time.sleep(0.05)
    pytest.fail("an expired token was still accepted")
