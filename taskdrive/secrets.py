"""Sealed secrets: how a password travels to an activity without appearing in plain text.

The API seals a task's secret parameters with AES-256-GCM under a key derived from the server
secret, bound to the task id (so a sealed value is useless in another task). Temporal history,
the Web UI and anything logging workflow inputs see only the sealed form; the activity that
needs the password unseals it in memory. Postgres gets the redacted parameters, never these.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from taskdrive.settings import Settings

PREFIX = "sealed:v1:"


class SecretError(Exception):
    """A sealed value could not be opened (wrong server secret, another task, tampering)."""


def _key(settings: Settings) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"taskdrive sealed secrets v1"
    ).derive(settings.signing_key.encode())


def seal(settings: Settings, task_id: str, secret: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_key(settings)).encrypt(nonce, secret.encode(), task_id.encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(settings: Settings, task_id: str, sealed: str) -> str:
    if not sealed.startswith(PREFIX):
        raise SecretError("not a sealed secret")
    try:
        raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :])
        plain = AESGCM(_key(settings)).decrypt(raw[:12], raw[12:], task_id.encode())
    except (ValueError, InvalidTag):
        raise SecretError("the sealed secret cannot be opened with this server's secret") from None
    return plain.decode()
